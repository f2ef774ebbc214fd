//! Header handling: what is hop-by-hop, how upgrades and probes are recognised, and how header
//! maps become the `map[string][]string` shape of recorded events.
//!
//! The proxy is transparent: it sits between a client and the service the client believes it
//! is talking to. So `Host` (and HTTP/2 `:authority`) stay as the client sent them, nothing is
//! added (no `X-Forwarded-For`, no `Via`), and only headers that describe a single connection are
//! dropped: `Connection` and every header it names, `Keep-Alive`, `Proxy-Connection`,
//! `Transfer-Encoding`, `Upgrade` (kept on the upgrade path), `HTTP2-Settings`, and `TE` other
//! than `trailers`. `Proxy-Authorization` and `Proxy-Authenticate` are forwarded: a client
//! sends them to the service behind us (which may itself be a forward proxy), never to rig.

use std::collections::btree_map::Entry;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use rig_types::event::Headers;

use super::settings::REDACTED;

/// The header rigd's readiness probes carry (`x-rig-probe: 1`).
pub const PROBE_HEADER: &str = "x-rig-probe";

/// The marker header on responses the proxy generates itself (502s and 400s), whose value is
/// the failure kind, e.g. `connect-refused`.
pub const ERROR_HEADER: &str = "x-rig-proxy-error";

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
pub(crate) static HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// Removes the hop-by-hop headers of one message in place. With `keep_upgrade`, the `Upgrade`
/// header survives and `Connection: upgrade` is set, as the upgrade handshake needs.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let upgrade = if keep_upgrade {
        headers.remove(header::UPGRADE)
    } else {
        None
    };
    let te_trailers = headers
        .get_all(header::TE)
        .iter()
        .any(|value| has_token(value, "trailers"));
    if headers.contains_key(header::CONNECTION) {
        let listed: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
            .collect();
        for name in listed {
            headers.remove(name);
        }
        headers.remove(header::CONNECTION);
    }
    headers.remove(&KEEP_ALIVE);
    headers.remove(&PROXY_CONNECTION);
    headers.remove(&HTTP2_SETTINGS);
    headers.remove(header::TRANSFER_ENCODING);
    headers.remove(header::UPGRADE);
    headers.remove(header::TE);
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if let Some(upgrade) = upgrade {
        headers.insert(header::UPGRADE, upgrade);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Removes the hop-by-hop headers of an HTTP/2 message in place: only `HTTP2-Settings` can
/// be left. h2 refuses a message with `Connection`, `Keep-Alive`, `Proxy-Connection`,
/// `Transfer-Encoding`, `Upgrade` or a `TE` other than `trailers` as malformed, so the dozen
/// lookups of [`strip_hop_by_hop`] would find nothing (and `TE: trailers` stays either way).
pub(crate) fn strip_http2_hop_by_hop(headers: &mut HeaderMap) {
    headers.remove(&HTTP2_SETTINGS);
}

/// Whether an HTTP/1.1 request asks to switch protocols (`Connection: upgrade` plus
/// `Upgrade: ...`). A request for `h2c` alone is not: the proxy answers it in HTTP/1.1, which
/// RFC 9113 allows, and observes it like any other request.
pub(crate) fn wants_upgrade(headers: &HeaderMap) -> bool {
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .any(|value| has_token(value, "upgrade"));
    connection_upgrade
        && headers.get_all(header::UPGRADE).iter().any(|value| {
            value
                .to_str()
                .map(|protocols| {
                    protocols
                        .split(',')
                        .map(str::trim)
                        .any(|p| !p.is_empty() && !p.eq_ignore_ascii_case("h2c"))
                })
                .unwrap_or(true)
        })
}

/// The protocol named by an `Upgrade` header, for the event's `upgrade` field.
pub(crate) fn upgrade_protocol(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::UPGRADE)?;
    let text = String::from_utf8_lossy(value.as_bytes());
    let first = text.split(',').next().unwrap_or_default().trim();
    (!first.is_empty()).then(|| first.to_string())
}

/// Whether the request is one of rigd's readiness probes.
pub(crate) fn is_probe(headers: &HeaderMap) -> bool {
    headers
        .get(PROBE_HEADER)
        .is_some_and(|value| value.as_bytes().trim_ascii() == b"1")
}

/// [`is_probe`] for header lines as they arrived (name in any case, value), in order.
pub(crate) fn lines_are_probe<'a>(mut lines: impl Iterator<Item = (&'a str, &'a [u8])>) -> bool {
    lines
        .find(|(name, _)| name.eq_ignore_ascii_case(PROBE_HEADER))
        .is_some_and(|(_, value)| value.trim_ascii() == b"1")
}

/// Converts a header map into the recorded shape: Go-canonical keys (`Content-Type`), values
/// in order, redacted where `redact` names the header. `Host` is left out of request headers
/// as upstream does (it is the request's authority, not a header there).
///
/// Runs on the observer task for every exchange, so it does each name's work once: a header
/// map yields all values of a name one after the other, and distinct names never share a
/// canonical key.
pub(crate) fn to_event_map(headers: &HeaderMap, redact: &[HeaderName], skip_host: bool) -> Headers {
    let mut out = Headers::new();
    let mut current: Option<(&HeaderName, bool, Vec<String>)> = None;
    for (name, value) in headers {
        let same = matches!(&current, Some((last, ..)) if *last == name);
        if !same {
            if let Some((last, _, values)) = current.take() {
                out.insert(canonical_key(last.as_str()), values);
            }
            if skip_host && name == header::HOST {
                continue;
            }
            current = Some((name, redact.contains(name), Vec::with_capacity(1)));
        }
        if let Some((_, redacted, values)) = current.as_mut() {
            values.push(if *redacted {
                REDACTED.to_string()
            } else {
                value_string(value)
            });
        }
    }
    if let Some((last, _, values)) = current {
        out.insert(canonical_key(last.as_str()), values);
    }
    out
}

/// [`to_event_map`] for header lines as they arrived (name in any case, value), in order:
/// the same map, without building a [`HeaderMap`] first. The lines must be valid header
/// lines (as `httparse` accepts them) and hold no hop-by-hop headers.
pub(crate) fn lines_to_event_map<'a>(
    lines: impl Iterator<Item = (&'a str, &'a [u8])>,
    redact: &[HeaderName],
    skip_host: bool,
) -> Headers {
    let mut out = Headers::new();
    for (name, value) in lines {
        if skip_host && name.eq_ignore_ascii_case(header::HOST.as_str()) {
            continue;
        }
        let redacted = redact.iter().any(|r| r.as_str().eq_ignore_ascii_case(name));
        let value = if redacted {
            REDACTED.to_string()
        } else {
            value_string(value)
        };
        match out.entry(canonical_key(name)) {
            Entry::Vacant(entry) => {
                entry.insert(vec![value]);
            }
            Entry::Occupied(mut entry) => entry.get_mut().push(value),
        }
    }
    out
}

/// A header value (or another field of a message head, such as a request target) as text:
/// as it is when it is UTF-8 (the common case, checked quickly), else with invalid bytes
/// replaced.
pub(crate) fn value_string(value: impl AsRef<[u8]>) -> String {
    let bytes = value.as_ref();
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Go's canonical MIME header key: the first letter and every letter after a hyphen upper
/// case, the rest lower case (`x-api-key` → `X-Api-Key`).
///
/// Byte by byte (a header name is ASCII): char by char costs several times as much, once per
/// header of every recorded exchange.
pub(crate) fn canonical_key(name: &str) -> String {
    let mut out = name.to_ascii_lowercase();
    let mut upper = true;
    for i in 0..out.len() {
        let hyphen = out.as_bytes()[i] == b'-';
        if upper {
            // `None` inside a multi-byte character, which has no ASCII case anyway.
            if let Some(letter) = out.get_mut(i..i + 1) {
                letter.make_ascii_uppercase();
            }
        }
        upper = hyphen;
    }
    out
}

/// Whether a comma-separated header value lists `token` (any case).
pub(crate) fn has_token(value: &HeaderValue, token: &str) -> bool {
    value
        .to_str()
        .map(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    fn names(headers: &HeaderMap) -> Vec<&str> {
        let mut names: Vec<_> = headers.keys().map(|n| n.as_str()).collect();
        names.sort();
        names
    }

    #[test]
    fn http2_messages_lose_only_http2_settings() {
        let mut h = HeaderMap::new();
        h.insert(
            HTTP2_SETTINGS.clone(),
            HeaderValue::from_static("AAMAAABkAAQCAAAAAAIAAAAA"),
        );
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-app", HeaderValue::from_static("1"));
        strip_http2_hop_by_hop(&mut h);
        assert_eq!(h.len(), 2);
        assert_eq!(h[header::TE], "trailers");
        assert_eq!(h["x-app"], "1");
    }

    #[test]
    fn hop_by_hop_headers_and_the_ones_connection_names_are_dropped() {
        let mut h = map(&[
            ("host", "api.test"),
            ("connection", "keep-alive, X-Hop"),
            ("x-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("http2-settings", "AAA"),
            ("te", "deflate"),
            ("trailer", "x-sum"),
            ("proxy-authorization", "Basic eA=="),
            ("x-keep", "yes"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(
            names(&h),
            ["host", "proxy-authorization", "trailer", "x-keep"]
        );
    }

    #[test]
    fn te_trailers_survives_alone() {
        let mut h = map(&[("te", "gzip, trailers")]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.get_all("te").iter().collect::<Vec<_>>(), ["trailers"]);
    }

    #[test]
    fn the_upgrade_path_keeps_upgrade_and_connection_upgrade() {
        let mut h = map(&[
            ("connection", "Upgrade, keep-alive"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "k"),
        ]);
        assert!(wants_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["sec-websocket-key"], "k");
    }

    #[test]
    fn h2c_upgrade_requests_are_not_tunnelled() {
        let h = map(&[
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
        ]);
        assert!(!wants_upgrade(&h));
        assert!(!wants_upgrade(&map(&[("upgrade", "websocket")])));
        assert!(wants_upgrade(&map(&[
            ("connection", "upgrade"),
            ("upgrade", "h2c, websocket")
        ])));
    }

    #[test]
    fn event_maps_are_canonical_ordered_and_redacted() {
        let h = map(&[
            ("host", "api.test"),
            ("x-api-key", "secret"),
            ("accept", "a"),
            ("accept", "b"),
            ("content-type", "text/plain"),
        ]);
        let redact = [HeaderName::from_static("x-api-key")];
        let out = to_event_map(&h, &redact, true);
        let keys: Vec<_> = out.keys().map(String::as_str).collect();
        assert_eq!(keys, ["Accept", "Content-Type", "X-Api-Key"]);
        assert_eq!(out["Accept"], ["a", "b"]);
        assert_eq!(out["X-Api-Key"], [REDACTED]);
        assert!(to_event_map(&h, &[], false).contains_key("Host"));
    }

    #[test]
    fn event_maps_group_every_value_of_a_name_and_keep_odd_bytes() {
        let mut h = map(&[("via", "1"), ("host", "a"), ("host", "b"), ("via", "2")]);
        h.append("x-raw", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        let out = to_event_map(&h, &[], true);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out["Via"], ["1", "2"]);
        assert_eq!(out["X-Raw"], ["caf\u{fffd}"]);
        let out = to_event_map(&h, &[HeaderName::from_static("via")], false);
        assert_eq!(out["Via"], [REDACTED, REDACTED]);
        assert_eq!(out["Host"], ["a", "b"]);
    }

    #[test]
    fn canonical_keys_follow_go() {
        assert_eq!(canonical_key("content-type"), "Content-Type");
        assert_eq!(canonical_key("x-rig-probe"), "X-Rig-Probe");
        assert_eq!(canonical_key("te"), "Te");
        assert_eq!(canonical_key("www-authenticate"), "Www-Authenticate");
        assert_eq!(canonical_key("X-UPPER--b"), "X-Upper--B");
        assert_eq!(canonical_key("é-ö"), "é-ö", "non-ASCII is left alone");
    }

    #[test]
    fn probes_are_recognised_by_value_one() {
        assert!(is_probe(&map(&[("x-rig-probe", "1")])));
        assert!(!is_probe(&map(&[("x-rig-probe", "0")])));
        assert!(!is_probe(&HeaderMap::new()));
    }
}
