//! Both directions of one relayed connection, run concurrently on the connection's task.

use tokio::net::TcpStream;

use super::pump::{pump, Direction, PumpEnd};
use super::record::ByteCounts;

/// Relays `client` ⇄ `target` until both directions are done, counting delivered bytes in
/// `counts` as they go. Returns the first failure (for the `connection.closed` event's
/// `error`), or `None` when both sides closed cleanly.
///
/// Half-close is propagated: when one side finishes sending, the other side's write half is
/// shut down and the opposite direction carries on until it finishes too. When a side fails to
/// read (it reset the connection), nothing more can be delivered to it either, so the relay
/// ends at once instead of waiting for the other side to notice, and the other side's
/// connection is reset when it is closed (see [`pump`]).
///
/// Dropping the future stops the relay; the counts stay valid.
pub(super) async fn relay(
    client: &mut TcpStream,
    target: &mut TcpStream,
    counts: &ByteCounts,
    zero_copy: bool,
) -> Option<String> {
    let (client_read, client_write) = client.split();
    let (target_read, target_write) = target.split();
    let upstream = pump(client_read, target_write, &counts.bytes_in, zero_copy);
    let downstream = pump(target_read, client_write, &counts.bytes_out, zero_copy);
    tokio::pin!(upstream, downstream);

    let (mut upstream_done, mut downstream_done) = (false, false);
    let mut first_failure = None;
    loop {
        let (direction, end): (Direction, PumpEnd) = tokio::select! {
            end = &mut upstream, if !upstream_done => {
                upstream_done = true;
                (Direction::Upstream, end)
            }
            end = &mut downstream, if !downstream_done => {
                downstream_done = true;
                (Direction::Downstream, end)
            }
        };
        if first_failure.is_none() {
            first_failure = end.failure(direction);
        }
        if end.source_is_dead() || (upstream_done && downstream_done) {
            return first_failure;
        }
    }
}
