//! Behaviour of the TCP relay over real sockets on 127.0.0.1.

mod support;
mod throughput;

use std::time::Duration;

use rig_types::EventType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{oneshot, Barrier};

use super::TcpSettings;
use support::*;

const MIB: u64 = 1024 * 1024;

fn copy_only() -> TcpSettings {
    TcpSettings {
        zero_copy: false,
        ..TcpSettings::default()
    }
}

#[test]
fn a_small_exchange_reports_opened_then_closed_with_exact_counts() {
    run(async {
        // The target answers 5 bytes with 9, so swapped directions would show.
        let target = spawn_server(|mut stream: TcpStream| async move {
            let mut request = [0u8; 5];
            stream.read_exact(&mut request).await.unwrap();
            assert_eq!(&request, b"hello");
            stream.write_all(b"hi there!").await.unwrap();
            read_to_end(&mut stream).await;
        })
        .await;
        let proxy = Proxy::start(target, TcpSettings::default()).await;

        let mut client = proxy.connect().await;
        client.write_all(b"hello").await.unwrap();
        let mut reply = [0u8; 9];
        client.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"hi there!");
        client.shutdown().await.unwrap();
        assert!(read_to_end(&mut client).await.is_empty());

        let events = proxy
            .sink
            .wait_for_count(EventType::ConnectionClosed, 1)
            .await;
        let types: Vec<_> = events.iter().map(|e| e.event_type.clone()).collect();
        assert_eq!(
            types,
            [EventType::ConnectionOpened, EventType::ConnectionClosed]
        );
        let opened = &connections(&events, EventType::ConnectionOpened)[0];
        assert_eq!((opened.bytes_in, opened.bytes_out), (0, 0));
        assert_eq!(opened.duration_ms, 0.0);
        let closed = &connections(&events, EventType::ConnectionClosed)[0];
        assert_eq!((closed.bytes_in, closed.bytes_out), (5, 9));
        assert!(closed.duration_ms > 0.0);
        assert_eq!(closed.error, "", "a clean close carries no error");
        assert_eq!(
            (&*closed.source, &*closed.target, &*closed.ingress),
            ("~test", "db", "default")
        );
        for event in &events {
            let json = serde_json::to_value(event).unwrap();
            assert!(json.get("service").is_none(), "{json}");
            assert_eq!(json["connection"].as_object().unwrap().len(), 6, "{json}");
        }
        proxy.shutdown().await;
    })
}

/// Sends `total` bytes through an echo target via the proxy, reading the echo concurrently,
/// and checks the content and the closed event's counts.
async fn echo_through_proxy(total: u64, settings: TcpSettings) {
    let proxy = Proxy::start(spawn_echo().await, settings).await;
    let client = proxy.connect().await;
    let (mut read, mut write) = client.into_split();
    let sender = tokio::spawn(async move {
        send_pattern(&mut write, total).await;
        write.shutdown().await.unwrap();
    });
    let received = guarded("the echo", receive_pattern(&mut read)).await;
    sender.await.unwrap();
    assert_eq!(received, total);

    let events = proxy
        .sink
        .wait_for_count(EventType::ConnectionClosed, 1)
        .await;
    let closed = &connections(&events, EventType::ConnectionClosed)[0];
    assert_eq!(closed.bytes_in, total as i64);
    assert_eq!(closed.bytes_out, total as i64);
    assert_eq!(closed.error, "");
    proxy.shutdown().await;
}

#[test]
fn a_hundred_mib_each_way_arrives_intact_and_is_counted_exactly() {
    run(async {
        echo_through_proxy(100 * MIB + 7, TcpSettings::default()).await;
    })
}

#[test]
fn the_buffered_copy_relays_a_hundred_mib_each_way_exactly() {
    run(async {
        echo_through_proxy(100 * MIB + 7, copy_only()).await;
    })
}

/// The client sends a request and shuts down its write side; the target only answers after
/// that EOF, and the client must still receive the whole answer.
async fn half_close(settings: TcpSettings) {
    const REQUEST: u64 = 3 * MIB + 1;
    const REPLY: u64 = 2 * MIB + 3;
    let target = spawn_server(|mut stream: TcpStream| async move {
        let received = receive_pattern(&mut stream).await;
        assert_eq!(
            received, REQUEST,
            "the target got the whole request before EOF"
        );
        send_pattern(&mut stream, REPLY).await;
    })
    .await;
    let proxy = Proxy::start(target, settings).await;

    let mut client = proxy.connect().await;
    send_pattern(&mut client, REQUEST).await;
    client.shutdown().await.unwrap();
    let received = guarded("the reply", receive_pattern(&mut client)).await;
    assert_eq!(received, REPLY);

    let events = proxy
        .sink
        .wait_for_count(EventType::ConnectionClosed, 1)
        .await;
    let closed = &connections(&events, EventType::ConnectionClosed)[0];
    assert_eq!(
        (closed.bytes_in, closed.bytes_out),
        (REQUEST as i64, REPLY as i64)
    );
    assert_eq!(closed.error, "");
    proxy.shutdown().await;
}

#[test]
fn half_close_is_propagated_and_the_reply_still_arrives() {
    run(async {
        half_close(TcpSettings::default()).await;
    })
}

#[test]
fn half_close_is_propagated_by_the_buffered_copy_too() {
    run(async {
        half_close(copy_only()).await;
    })
}

#[test]
fn a_refused_dial_closes_the_client_and_reports_the_error() {
    run(async {
        let (_closed, target) = closed_port().await;
        let proxy = Proxy::start(target, TcpSettings::default()).await;

        let mut client = proxy.connect().await;
        assert!(
            read_to_end(&mut client).await.is_empty(),
            "the client sees the connection end"
        );

        let events = proxy
            .sink
            .wait_for_count(EventType::ConnectionClosed, 1)
            .await;
        let types: Vec<_> = events.iter().map(|e| e.event_type.clone()).collect();
        assert_eq!(
            types,
            [EventType::ConnectionOpened, EventType::ConnectionClosed]
        );
        let closed = &connections(&events, EventType::ConnectionClosed)[0];
        assert_eq!((closed.bytes_in, closed.bytes_out), (0, 0));
        assert_eq!(
            closed.error,
            format!("dial tcp {target}: connection refused")
        );
        assert!(closed.duration_ms >= 0.0);
        proxy.shutdown().await;
    })
}

#[test]
fn a_target_that_never_answers_times_out() {
    run(async {
        // A listener that never accepts, with its one-slot queue already taken: the kernel drops
        // further SYNs, so the proxy's dial hangs until its timeout.
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(0).unwrap();
        let target = listener.local_addr().unwrap();
        let mut fillers = Vec::new();
        for _ in 0..2 {
            if let Ok(Ok(stream)) =
                tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(target)).await
            {
                fillers.push(stream);
            }
        }
        let settings = TcpSettings {
            dial_timeout: Duration::from_millis(300),
            ..TcpSettings::default()
        };
        let proxy = Proxy::start(target, settings).await;

        let mut client = proxy.connect().await;
        assert!(read_to_end(&mut client).await.is_empty());
        let events = proxy
            .sink
            .wait_for_count(EventType::ConnectionClosed, 1)
            .await;
        let closed = &connections(&events, EventType::ConnectionClosed)[0];
        assert_eq!(
            closed.error,
            format!("dial tcp {target}: i/o timeout after 300ms")
        );
        assert!(closed.duration_ms >= 300.0, "{}", closed.duration_ms);
        drop(listener);
        proxy.shutdown().await;
    })
}

#[test]
fn a_client_leaving_mid_stream_ends_the_relay_and_releases_the_target() {
    run(async {
        // The target streams until writing fails, then reports how it ended.
        let (ended_tx, ended_rx) = oneshot::channel();
        let ended_tx = std::sync::Mutex::new(Some(ended_tx));
        let target = spawn_server(move |mut stream: TcpStream| {
            let ended_tx = ended_tx.lock().unwrap().take();
            async move {
                let chunk = vec![7u8; 64 * 1024];
                let result = loop {
                    if let Err(err) = stream.write_all(&chunk).await {
                        break err;
                    }
                };
                if let Some(tx) = ended_tx {
                    let _ = tx.send(result.kind());
                }
            }
        })
        .await;
        let proxy = Proxy::start(target, TcpSettings::default()).await;

        let mut client = proxy.connect().await;
        let mut buf = vec![0u8; MIB as usize];
        client.read_exact(&mut buf).await.unwrap();
        assert!(buf.iter().all(|&b| b == 7));
        // Closing with unread data resets the connection.
        drop(client);

        let events = proxy
            .sink
            .wait_for_count(EventType::ConnectionClosed, 1)
            .await;
        let closed = &connections(&events, EventType::ConnectionClosed)[0];
        assert!(closed.bytes_out >= MIB as i64, "{}", closed.bytes_out);
        assert_eq!(closed.bytes_in, 0);
        assert!(
            closed.error.starts_with("write to client: ")
                || closed.error.starts_with("read from client: "),
            "the reset is reported: {:?}",
            closed.error
        );
        let target_end = guarded("the target to notice", ended_rx).await.unwrap();
        assert!(
            matches!(
                target_end,
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ),
            "{target_end:?}"
        );
        proxy.shutdown().await;
    })
}

/// The client sends a byte and then aborts (closes with a zero linger time, which sends a
/// reset) while the target, having read the byte, says nothing: the relay must end with the
/// client's reset reported, and the target must see a reset too, not a clean end of stream.
async fn client_reset(settings: TcpSettings) {
    let (got_tx, mut got_rx) = tokio::sync::mpsc::unbounded_channel();
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let target = spawn_server(move |mut stream: TcpStream| {
        let (got_tx, seen_tx) = (got_tx.clone(), seen_tx.clone());
        async move {
            let mut request = [0u8; 1];
            stream.read_exact(&mut request).await.unwrap();
            got_tx.send(request[0]).unwrap();
            // Silent from here on: only the client's end can end this read.
            let mut rest = [0u8; 1];
            let _ = seen_tx.send(stream.read(&mut rest).await.map_err(|e| e.kind()));
        }
    })
    .await;
    let proxy = Proxy::start(target, settings).await;

    let mut client = proxy.connect().await;
    client.write_all(b"x").await.unwrap();
    assert_eq!(got_rx.recv().await, Some(b'x'));
    client.set_zero_linger().unwrap();
    drop(client);

    let events = proxy
        .sink
        .wait_for_count(EventType::ConnectionClosed, 1)
        .await;
    let closed = &connections(&events, EventType::ConnectionClosed)[0];
    assert_eq!(closed.error, "read from client: connection reset by peer");
    assert_eq!((closed.bytes_in, closed.bytes_out), (1, 0));
    let seen = guarded("the target to see the end", seen_rx.recv()).await;
    assert_eq!(
        seen,
        Some(Err(std::io::ErrorKind::ConnectionReset)),
        "the target must see the client's reset, not a clean end"
    );
    proxy.shutdown().await;
}

#[test]
fn a_client_reset_reaches_the_silent_target_as_a_reset() {
    run(client_reset(TcpSettings::default()))
}

#[test]
fn the_buffered_copy_passes_a_client_reset_on_too() {
    run(client_reset(copy_only()))
}

/// The target sends part of an answer and then aborts: the client must read that part and
/// then get the reset, not a clean end that would make the cut-short answer look complete
/// (as it would to anything that reads until the connection closes).
async fn target_reset(settings: TcpSettings) {
    const PART: &[u8] = b"the first half of";
    let (release_tx, release_rx) = tokio::sync::watch::channel(());
    let target = spawn_server(move |mut stream: TcpStream| {
        let mut release = release_rx.clone();
        async move {
            stream.write_all(PART).await.unwrap();
            // Abort only once the client has read the part, so that it cannot be lost.
            let _ = release.changed().await;
            stream.set_zero_linger().unwrap();
            drop(stream);
        }
    })
    .await;
    let proxy = Proxy::start(target, settings).await;

    let mut client = proxy.connect().await;
    let mut part = [0u8; PART.len()];
    guarded("the part", client.read_exact(&mut part))
        .await
        .unwrap();
    assert_eq!(&part, PART);
    release_tx.send(()).unwrap();
    let mut rest = [0u8; 1];
    let end = guarded("the end", client.read(&mut rest)).await;
    assert_eq!(
        end.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionReset),
        "the client must see the target's reset, not a clean end"
    );

    let events = proxy
        .sink
        .wait_for_count(EventType::ConnectionClosed, 1)
        .await;
    let closed = &connections(&events, EventType::ConnectionClosed)[0];
    assert_eq!(closed.error, "read from target: connection reset by peer");
    assert_eq!((closed.bytes_in, closed.bytes_out), (0, PART.len() as i64));
    proxy.shutdown().await;
}

#[test]
fn a_target_reset_reaches_the_client_as_a_reset_after_the_data() {
    run(target_reset(TcpSettings::default()))
}

#[test]
fn the_buffered_copy_passes_a_target_reset_on_too() {
    run(target_reset(copy_only()))
}

#[test]
fn long_connections_report_progress_while_open() {
    run(async {
        let settings = TcpSettings {
            progress_interval: Duration::from_millis(20),
            ..TcpSettings::default()
        };
        let proxy = Proxy::start(spawn_echo().await, settings).await;
        let mut client = proxy.connect().await;
        let mut echo = [0u8; 3];

        client.write_all(b"a").await.unwrap();
        client.read_exact(&mut echo[..1]).await.unwrap();
        let progress_at = |n: i64| {
            move |events: &[rig_types::Event]| {
                connections(events, EventType::ConnectionProgress)
                    .iter()
                    .any(|c| c.bytes_in == n && c.bytes_out == n)
            }
        };
        proxy
            .sink
            .wait_for("progress at 1 byte", progress_at(1))
            .await;

        client.write_all(b"bc").await.unwrap();
        client.read_exact(&mut echo[1..]).await.unwrap();
        assert_eq!(&echo, b"abc");
        proxy
            .sink
            .wait_for("progress at 3 bytes", progress_at(3))
            .await;

        client.shutdown().await.unwrap();
        read_to_end(&mut client).await;
        let events = proxy
            .sink
            .wait_for_count(EventType::ConnectionClosed, 1)
            .await;
        assert_eq!(events[0].event_type, EventType::ConnectionOpened);
        assert_eq!(
            events.last().unwrap().event_type,
            EventType::ConnectionClosed
        );
        let progress = connections(&events, EventType::ConnectionProgress);
        for pair in progress.windows(2) {
            assert_ne!(
                (pair[0].bytes_in, pair[0].bytes_out),
                (pair[1].bytes_in, pair[1].bytes_out),
                "unchanged counts are not reported again"
            );
            assert!(pair[1].duration_ms > pair[0].duration_ms);
        }
        let closed = &connections(&events, EventType::ConnectionClosed)[0];
        assert_eq!((closed.bytes_in, closed.bytes_out), (3, 3));
        proxy.shutdown().await;
    })
}

#[test]
fn an_idle_connection_does_not_repeat_its_progress() {
    // Paused time: the runtime jumps from timer to timer whenever every task waits, so one
    // virtual second on an idle connection runs 50 progress ticks deterministically.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        let settings = TcpSettings {
            progress_interval: Duration::from_millis(20),
            // No dial timer that paused time could fire early.
            dial_timeout: Duration::ZERO,
            ..TcpSettings::default()
        };
        let proxy = Proxy::start(spawn_echo().await, settings).await;
        let mut client = proxy.connect().await;
        client.write_all(b"a").await.unwrap();
        let mut echo = [0u8; 1];
        client.read_exact(&mut echo).await.unwrap();

        tokio::time::sleep(Duration::from_secs(1)).await;
        client.shutdown().await.unwrap();
        read_to_end(&mut client).await;

        let events = proxy
            .sink
            .wait_for_count(EventType::ConnectionClosed, 1)
            .await;
        let progress = connections(&events, EventType::ConnectionProgress);
        assert_eq!(
            progress.len(),
            1,
            "one report for the one change: {progress:?}"
        );
        assert_eq!((progress[0].bytes_in, progress[0].bytes_out), (1, 1));
        proxy.shutdown().await;
    });
}

#[test]
fn cancelling_closes_live_connections_and_reports_them() {
    run(async {
        let proxy = Proxy::start(spawn_echo().await, TcpSettings::default()).await;
        let mut clients = Vec::new();
        for i in 0..3u8 {
            let mut client = proxy.connect().await;
            client.write_all(&[i]).await.unwrap();
            let mut echo = [0u8; 1];
            client.read_exact(&mut echo).await.unwrap();
            assert_eq!(echo, [i]);
            clients.push(client);
        }

        let events = proxy.shutdown().await;
        assert_eq!(count(&events, &EventType::ConnectionOpened), 3);
        let closed = connections(&events, EventType::ConnectionClosed);
        assert_eq!(closed.len(), 3, "every live connection is reported");
        for c in closed {
            assert_eq!((c.bytes_in, c.bytes_out), (1, 1));
        }
        for mut client in clients {
            // The proxy closed the connection: the client sees the end of the stream.
            assert!(
                guarded("the close", async { read_to_end(&mut client).await })
                    .await
                    .is_empty()
            );
        }
    })
}

#[test]
fn a_thousand_concurrent_connections_are_all_relayed_and_counted() {
    run(async {
        const CONNECTIONS: usize = 1000;
        let proxy = Proxy::start(spawn_echo().await, TcpSettings::default()).await;
        let barrier = std::sync::Arc::new(Barrier::new(CONNECTIONS));
        // Dialling all at once can overflow a listen queue on a busy machine, and the kernel
        // then leaves a connection stuck for a minute of SYN-ACK retries: at most 100 dial
        // and echo at a time (all 1,000 are still open together below).
        let dialling = std::sync::Arc::new(tokio::sync::Semaphore::new(100));
        let mut clients = tokio::task::JoinSet::new();
        for i in 0..CONNECTIONS {
            let addr = proxy.addr;
            let barrier = barrier.clone();
            let dialling = dialling.clone();
            clients.spawn(async move {
                let permit = dialling.acquire_owned().await.unwrap();
                let mut client = TcpStream::connect(addr).await.unwrap();
                let message = format!("connection {i:04} says hello, {}", "x".repeat(i % 50));
                client.write_all(message.as_bytes()).await.unwrap();
                let mut echo = vec![0u8; message.len()];
                client.read_exact(&mut echo).await.unwrap();
                assert_eq!(echo, message.as_bytes());
                drop(permit);
                // All connections are open at the same time before any closes.
                barrier.wait().await;
                client.shutdown().await.unwrap();
                assert!(read_to_end(&mut client).await.is_empty());
                message.len() as i64
            });
        }
        let mut expected = Vec::new();
        while let Some(sent) = guarded("the clients", clients.join_next()).await {
            expected.push(sent.unwrap());
        }

        let mut events = proxy
            .sink
            .wait_for_count(EventType::ConnectionClosed, CONNECTIONS)
            .await;
        // On a busy machine another program can dial the proxy's ephemeral port (one that
        // was a dead target of its own a moment before): such strays are relayed and counted
        // too. Wait until every opened connection has closed, then find all of ours.
        let opened = count(&events, &EventType::ConnectionOpened);
        assert!(opened >= CONNECTIONS, "{opened} connections opened");
        if opened > CONNECTIONS {
            events = proxy
                .sink
                .wait_for_count(EventType::ConnectionClosed, opened)
                .await;
        }
        let mut counted: Vec<_> = connections(&events, EventType::ConnectionClosed)
            .iter()
            .map(|c| {
                assert_eq!(c.bytes_in, c.bytes_out);
                assert_eq!(c.error, "");
                c.bytes_in
            })
            .collect();
        expected.sort_unstable();
        // Every one of ours, with its exact byte counts; strays may add to them.
        for sent in &expected {
            let at = counted
                .iter()
                .position(|c| c == sent)
                .unwrap_or_else(|| panic!("no connection counted {sent} bytes each way"));
            counted.swap_remove(at);
        }
        assert_eq!(counted.len(), opened - CONNECTIONS, "strays: {counted:?}");
        proxy.shutdown().await;
    })
}
