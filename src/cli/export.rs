//! `rig export --har FILE`: a run's HTTP exchanges and gRPC calls as an HTTP Archive (HAR
//! 1.2), to open in browser dev tools, Charles, Fiddler or any HAR viewer.
//!
//! Mapping:
//! - URLs use the address the caller used: the observing proxy on its edge (each edge has its
//!   own), else the target's own published address, else the service name as host
//!   (`http://api/x`);
//! - `startedDateTime` is when the request arrived (`started_at`), else the event time minus
//!   the exchange's duration; `time` and `timings` come from the latency (`wait`, time to
//!   response headers) and the full duration (`receive`, the rest);
//! - bodies are text when they are UTF-8 (gzip and deflate decoded, with `compression`),
//!   base64 otherwise; truncated captures are marked;
//! - gRPC calls are `POST /<Service>/<Method>` over HTTP/2 whose bodies are the messages
//!   decoded to JSON (`application/json`): the message itself, or a JSON array of every
//!   message when a stream carried several (`_requestMessages`/`_responseMessages` give the
//!   count); the raw frames' size is kept in `bodySize`; the status name is the response's
//!   `statusText`;
//! - rig's own facts are extensions, prefixed `_` as HAR requires: `_source`, `_target`,
//!   `_ingress`, `_protocol`, `_probe`, `_error`, `_grpcStatus`, `_grpcMessage`,
//!   `_requestMessages`, `_responseMessages`, `_requestBodyTruncated`,
//!   `_responseBodyTruncated`, `_seq`.
//!
//! Readiness probes are left out unless `--probes`; TCP and Kafka traffic has no HAR form.

use std::collections::HashMap;
use std::io::{Read, Write};

use rig_types::event::Headers;
use rig_types::{Event, EventType, GrpcCallInfo, RequestInfo, Timestamp};
use serde_json::{json, Map, Value};

use super::args::Args;
use super::error::{CliError, CmdResult, EXIT_OK};
use super::flags::{self, Opt};
use super::format::grpc_decoded;
use super::logread::{self, LogStream, Mode};
use super::output::eprint_line;
use super::version::VERSION;
use crate::cli::output::Out;

/// `rig export --help`.
pub const USAGE: &str = concat!(
    "\
Usage: rig export [file|pattern] --har FILE [options]

Write the HTTP exchanges and gRPC calls of a run as an HTTP Archive (HAR 1.2) for browser dev
tools and other HAR viewers. gRPC messages appear decoded to JSON; rig's own details are
extensions whose names start with _ (_source, _target, _grpcStatus, ...).

Arguments:
",
    log_argument_help!(),
    "

Options:
      --har FILE   where to write the HAR (- for standard output)
      --probes     include readiness probes
  -h, --help       show this help"
);

const OPTS: &[Opt] = &[Opt::value("--har", &[]), Opt::switch("--probes", &[])];

/// Runs `rig export`.
pub fn run(args: Args) -> CmdResult {
    let parsed = flags::parse("export", args, OPTS)?;
    if parsed.help {
        Out.line(USAGE);
        return Ok(EXIT_OK);
    }
    parsed.at_most("export", 1, "one file or pattern")?;
    let Some(out_path) = parsed.value("--har") else {
        return Err(CliError::usage(
            "say where to write: rig export [file|pattern] --har out.har (- for stdout)",
        ));
    };
    let target = parsed.positional_strings().into_iter().next();
    let mut log = logread::load(target.as_deref(), Mode::Strict, None)?;
    let har = har(&mut log, parsed.has("--probes"))?;
    let path = log.path().to_path_buf();
    let entries = har["log"]["entries"].as_array().map_or(0, Vec::len);
    let text = serde_json::to_string_pretty(&har)
        .map_err(|e| CliError::failed(format!("cannot encode the HAR: {e}")))?;
    if out_path == "-" {
        Out.line(text);
    } else {
        let mut file = std::fs::File::create(out_path)
            .map_err(|e| CliError::failed(format!("cannot create {out_path}: {e}")))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.write_all(b"\n"))
            .map_err(|e| CliError::failed(format!("cannot write {out_path}: {e}")))?;
        eprint_line(format!(
            "wrote {entries} {} from {} to {out_path}",
            if entries == 1 { "entry" } else { "entries" },
            path.display()
        ));
    }
    Ok(EXIT_OK)
}

/// The HAR document of a log, read as a stream: only the exchanges it lists and the
/// addresses are kept.
pub fn har(log: &mut LogStream, probes: bool) -> Result<Value, CliError> {
    let mut addresses = HashMap::new();
    let mut exchanges = Vec::new();
    while let Some(e) = log.next_event()? {
        if let Some((key, hostport)) = address(&e) {
            addresses.insert(key, hostport);
        }
        let listed = match e.event_type {
            EventType::RequestCompleted => e.request.as_deref().is_some_and(|r| probes || !r.probe),
            EventType::GrpcCallCompleted => {
                e.grpc_call.as_deref().is_some_and(|g| probes || !g.probe)
            }
            _ => false,
        };
        if listed {
            exchanges.push(e);
        }
    }
    // An exchange's address may be published after it in the log: entries are made at the end.
    let entries: Vec<Value> = exchanges
        .iter()
        .filter_map(|e| match (&e.request, &e.grpc_call) {
            (Some(r), _) if e.event_type == EventType::RequestCompleted => {
                Some(http_entry(e, r, &addresses))
            }
            (_, Some(g)) => Some(grpc_entry(e, g, &addresses)),
            _ => None,
        })
        .collect();
    Ok(json!({
        "log": {
            "version": "1.2",
            "creator": {"name": "rig", "version": VERSION},
            "comment": format!("environment {}", log.environment()),
            "entries": entries,
        }
    }))
}

/// `(service, ingress)` → `host:port` of an `ingress.published` event (proxies' included).
fn address(e: &Event) -> Option<((String, String), String)> {
    if e.event_type != EventType::IngressPublished {
        return None;
    }
    let endpoint = e.endpoint.as_ref()?;
    Some((
        (e.service.clone(), e.ingress.clone()),
        endpoint.hostport.clone(),
    ))
}

/// The address `source` called to reach `target`'s `ingress`: the observing proxy on that
/// edge, else the target's own, else the target's name.
fn host(
    addresses: &HashMap<(String, String), String>,
    source: &str,
    target: &str,
    ingress: &str,
) -> String {
    let proxy = crate::spec::proxy_node_name(source, target, ingress);
    let at =
        |service: &str, ingress: &str| addresses.get(&(service.to_string(), ingress.to_string()));
    at(&proxy, "default")
        .or_else(|| at(target, ingress))
        .or_else(|| at(target, "default"))
        .cloned()
        .unwrap_or_else(|| target.replace(['/', ' ', '~'], "-"))
}

fn http_entry(e: &Event, r: &RequestInfo, addresses: &HashMap<(String, String), String>) -> Value {
    let total = r
        .duration_ms
        .unwrap_or(r.latency_ms)
        .max(r.latency_ms)
        .max(0.0);
    let started = started(e, r.started_at, total);
    let version = if r.http_version.is_empty() {
        "HTTP/1.1".to_string()
    } else {
        r.http_version.clone()
    };
    let url = format!(
        "http://{}{}",
        host(addresses, &r.source, &r.target, &r.ingress),
        if r.path.starts_with('/') {
            r.path.clone()
        } else {
            format!("/{}", r.path)
        }
    );
    let mut request = json!({
        "method": r.method,
        "url": url,
        "httpVersion": version,
        "cookies": [],
        "headers": headers(&r.request_headers),
        "queryString": query(&r.path),
        "headersSize": -1,
        "bodySize": r.request_size,
    });
    if let Some(body) = r.request_body.as_deref().filter(|b| !b.is_empty()) {
        let mime = header(&r.request_headers, "Content-Type").unwrap_or("application/octet-stream");
        let content = content(
            body,
            r.request_size,
            mime,
            header(&r.request_headers, "Content-Encoding"),
        );
        let mut post = json!({"mimeType": mime});
        if content.get("encoding").is_some() {
            post["text"] = content["text"].clone();
            post["comment"] = json!("base64-encoded binary body");
        } else if let Some(text) = content.get("text") {
            post["text"] = text.clone();
        }
        request["postData"] = post;
    }
    let mime = header(&r.response_headers, "Content-Type").unwrap_or("");
    let response_content = match r.response_body.as_deref().filter(|b| !b.is_empty()) {
        Some(body) => content(
            body,
            r.response_size,
            mime,
            header(&r.response_headers, "Content-Encoding"),
        ),
        None => json!({"size": r.response_size.max(0), "mimeType": mime}),
    };
    let mut entry = json!({
        "startedDateTime": started,
        "time": total,
        "request": request,
        "response": {
            "status": r.status_code,
            "statusText": status_text(r.status_code),
            "httpVersion": version,
            "cookies": [],
            "headers": headers(&r.response_headers),
            "content": response_content,
            "redirectURL": header(&r.response_headers, "Location").unwrap_or(""),
            "headersSize": -1,
            "bodySize": r.response_size,
        },
        "cache": {},
        "timings": timings(r.latency_ms, total),
    });
    let ext = extensions(&mut entry, e, "HTTP", &r.source, &r.target, &r.ingress);
    probe_and_error(ext, r.probe, &r.error);
    if r.request_body_truncated {
        ext.insert("_requestBodyTruncated".into(), json!(true));
    }
    if r.response_body_truncated {
        ext.insert("_responseBodyTruncated".into(), json!(true));
    }
    entry
}

fn grpc_entry(e: &Event, g: &GrpcCallInfo, addresses: &HashMap<(String, String), String>) -> Value {
    let total = g.latency_ms.max(0.0);
    let started = started(e, None, total);
    let url = format!(
        "http://{}/{}/{}",
        host(addresses, &g.source, &g.target, &g.ingress),
        g.service,
        g.method
    );
    let request_messages = grpc_decoded(&g.request_messages, g.request_body_decoded.as_ref());
    let response_messages = grpc_decoded(&g.response_messages, g.response_body_decoded.as_ref());
    // One message as itself, several (a stream) as a JSON array.
    let json_text = |v: &[&Value]| match v {
        [] => None,
        [one] => Some(serde_json::to_string_pretty(one).unwrap_or_default()),
        many => Some(serde_json::to_string_pretty(many).unwrap_or_default()),
    };
    let mut request = json!({
        "method": "POST",
        "url": url,
        "httpVersion": "HTTP/2",
        "cookies": [],
        "headers": headers(&g.request_metadata),
        "queryString": [],
        "headersSize": -1,
        "bodySize": g.request_size,
    });
    match json_text(&request_messages) {
        Some(text) => request["postData"] = json!({"mimeType": "application/json", "text": text}),
        None => {
            if let Some(raw) = g.request_body.as_deref().filter(|b| !b.is_empty()) {
                request["postData"] = json!({
                    "mimeType": "application/grpc",
                    "text": rig_types::base64::encode(raw),
                    "comment": "base64-encoded gRPC frames (no reflection to decode them)",
                });
            }
        }
    }
    let content = match json_text(&response_messages) {
        Some(text) => json!({"size": text.len(), "mimeType": "application/json", "text": text}),
        None => match g.response_body.as_deref().filter(|b| !b.is_empty()) {
            Some(raw) => json!({
                "size": raw.len(),
                "mimeType": "application/grpc",
                "text": rig_types::base64::encode(raw),
                "encoding": "base64",
            }),
            None => json!({"size": 0, "mimeType": "application/grpc"}),
        },
    };
    let status = crate::cli::format::grpc_status(&g.grpc_status);
    let mut entry = json!({
        "startedDateTime": started,
        "time": total,
        "request": request,
        "response": {
            "status": 200,
            "statusText": status,
            "httpVersion": "HTTP/2",
            "cookies": [],
            "headers": headers(&g.response_metadata),
            "content": content,
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": g.response_size,
        },
        "cache": {},
        "timings": timings(g.latency_ms, total),
    });
    let ext = extensions(&mut entry, e, "gRPC", &g.source, &g.target, &g.ingress);
    probe_and_error(ext, g.probe, &g.error);
    ext.insert("_grpcStatus".into(), json!(status));
    if !g.grpc_message.is_empty() {
        ext.insert("_grpcMessage".into(), json!(g.grpc_message));
    }
    for (key, messages) in [
        ("_requestMessages", &request_messages),
        ("_responseMessages", &response_messages),
    ] {
        if messages.len() > 1 {
            ext.insert(key.into(), json!(messages.len()));
        }
    }
    if g.request_body_truncated || g.request_messages_truncated {
        ext.insert("_requestBodyTruncated".into(), json!(true));
    }
    if g.response_body_truncated || g.response_messages_truncated {
        ext.insert("_responseBodyTruncated".into(), json!(true));
    }
    entry
}

fn extensions<'a>(
    entry: &'a mut Value,
    e: &Event,
    protocol: &str,
    source: &str,
    target: &str,
    ingress: &str,
) -> &'a mut Map<String, Value> {
    let map = entry.as_object_mut().expect("entries are objects");
    map.insert("_protocol".into(), json!(protocol));
    map.insert("_source".into(), json!(source));
    map.insert("_target".into(), json!(target));
    map.insert("_ingress".into(), json!(ingress));
    if e.seq > 0 {
        map.insert("_seq".into(), json!(e.seq));
    }
    map
}

/// `_probe` for a readiness probe, `_error` when the proxy could not complete the exchange.
fn probe_and_error(ext: &mut Map<String, Value>, probe: bool, error: &str) {
    if probe {
        ext.insert("_probe".into(), json!(true));
    }
    if !error.is_empty() {
        ext.insert("_error".into(), json!(error));
    }
}

/// When the exchange started, RFC 3339.
fn started(e: &Event, started_at: Option<Timestamp>, total_ms: f64) -> String {
    let t = match started_at {
        Some(t) if !t.is_zero() => t,
        _ => {
            let nanos = (total_ms * 1e6) as i128;
            Timestamp::from_unix_nanos(e.timestamp.unix_nanos() - nanos)
                .with_offset(e.timestamp.offset_secs())
        }
    };
    t.to_rfc3339()
}

fn timings(latency_ms: f64, total_ms: f64) -> Value {
    let wait = latency_ms.max(0.0);
    json!({"send": 0, "wait": wait, "receive": (total_ms - wait).max(0.0)})
}

fn headers(h: &Headers) -> Value {
    Value::Array(
        h.iter()
            .flat_map(|(name, values)| {
                values
                    .iter()
                    .map(move |v| json!({"name": name, "value": v}))
            })
            .collect(),
    )
}

fn header<'a>(h: &'a Headers, name: &str) -> Option<&'a str> {
    h.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.first())
        .map(String::as_str)
}

/// The query string of `path` as HAR pairs (percent-decoded, `+` as space).
fn query(path: &str) -> Value {
    let Some((_, q)) = path.split_once('?') else {
        return json!([]);
    };
    let q = q.split('#').next().unwrap_or("");
    Value::Array(
        q.split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
                json!({"name": percent_decode(n), "value": percent_decode(v)})
            })
            .collect(),
    )
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A HAR `content` (or the text of a `postData`): UTF-8 text when possible (decompressed
/// when the body is gzip or deflate), else base64.
fn content(body: &[u8], size: i64, mime: &str, encoding: Option<&str>) -> Value {
    let decoded = encoding.and_then(|enc| decompress(body, enc));
    let (bytes, compression) = match &decoded {
        Some(d) => (d.as_slice(), Some(d.len() as i64 - body.len() as i64)),
        None => (body, None),
    };
    let mut c = match std::str::from_utf8(bytes) {
        Ok(text) => {
            json!({"size": bytes.len().max(size.max(0) as usize), "mimeType": mime, "text": text})
        }
        Err(_) => json!({
            "size": size.max(bytes.len() as i64),
            "mimeType": mime,
            "text": rig_types::base64::encode(bytes),
            "encoding": "base64",
        }),
    };
    if let Some(saved) = compression {
        c["size"] = json!(bytes.len());
        c["compression"] = json!(saved);
    }
    c
}

fn decompress(body: &[u8], encoding: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let ok = match encoding.trim().to_ascii_lowercase().as_str() {
        "gzip" | "x-gzip" => flate2::read::MultiGzDecoder::new(body)
            .read_to_end(&mut out)
            .is_ok(),
        "deflate" => flate2::read::ZlibDecoder::new(body)
            .read_to_end(&mut out)
            .is_ok(),
        _ => false,
    };
    ok.then_some(out)
}

/// The reason phrase of common statuses (HAR wants one; HTTP/2 has none on the wire).
fn status_text(code: u16) -> &'static str {
    match code {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_use_the_address_the_caller_used() {
        let published = |service: &str, ingress: &str, hostport: &str| {
            let mut e = Event::for_service(EventType::IngressPublished, service);
            e.ingress = ingress.into();
            e.endpoint = Some(Box::new(rig_types::Endpoint::new(
                hostport,
                rig_types::Protocol::Http,
            )));
            e
        };
        let events = [
            published("inventory", "default", "127.0.0.1:5001"),
            published("inventory~proxy~orders", "default", "127.0.0.1:6001"),
            published("inventory~proxy~~test", "default", "127.0.0.1:6002"),
            published("inventory", "admin", "127.0.0.1:5002"),
        ];
        let a: HashMap<_, _> = events.iter().filter_map(address).collect();
        // Each edge's own proxy.
        assert_eq!(host(&a, "orders", "inventory", "default"), "127.0.0.1:6001");
        assert_eq!(host(&a, "~test", "inventory", "default"), "127.0.0.1:6002");
        // Not observed: the target itself.
        assert_eq!(host(&a, "orders", "inventory", "admin"), "127.0.0.1:5002");
        assert_eq!(
            host(&a, "billing", "inventory", "default"),
            "127.0.0.1:5001"
        );
        assert_eq!(host(&a, "orders", "ghost", "default"), "ghost");
    }

    #[test]
    fn query_strings_are_split_and_decoded() {
        assert_eq!(
            query("/orders?id=abc%20123&x&q=a+b"),
            json!([
                {"name": "id", "value": "abc 123"},
                {"name": "x", "value": ""},
                {"name": "q", "value": "a b"}
            ])
        );
        assert_eq!(query("/orders"), json!([]));
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn binary_bodies_are_base64() {
        let c = content(&[0xff, 0xfe], 2, "application/octet-stream", None);
        assert_eq!(c["encoding"], "base64");
        assert_eq!(c["text"], "//4=");
        let c = content(b"{}", 2, "application/json", None);
        assert_eq!(c["text"], "{}");
    }
}
