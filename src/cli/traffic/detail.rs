//! `rig traffic --detail N`: one exchange in full: headers, bodies (JSON pretty-printed,
//! gzip and deflate decoded, binary as a hex dump), gRPC metadata and decoded messages, TCP
//! and Kafka counters.

use std::io::Read;

use rig_types::event::{GrpcMessage, Headers};

use super::rows::{Protocol, Row};
use crate::cli::format;
use crate::cli::output::{Paint, Style};

/// Width of the `── Request #N ──…` rule.
const RULE_WIDTH: usize = 70;
/// Bytes per hex dump line.
const HEX_PER_LINE: usize = 16;

/// The lines of the detail view of `row`.
pub fn render(row: &Row, style: Style) -> Vec<String> {
    let s = style;
    let mut out = Vec::new();
    let title = format!("── Request #{} ", row.index);
    let fill = RULE_WIDTH.saturating_sub(title.chars().count());
    out.push(s.paint(Paint::Bold, &format!("{title}{}", "─".repeat(fill))));
    let mut summary = format!(
        "  {}  {} → {}  {}",
        s.paint(Paint::Dim, &format::relative(row.time_s)),
        row.source,
        row.target,
        s.paint(Paint::Cyan, row.protocol.label()),
    );
    if row.protocol == Protocol::Http || row.protocol == Protocol::Kafka {
        summary.push_str(&format!(" {}", s.paint(Paint::Cyan, &row.method)));
    }
    if row.path != "—" {
        summary.push_str(&format!("  {}", row.path));
    }
    if row.status != "—" {
        summary.push_str(&format!(
            "  {}",
            match row.status_paint {
                Some(p) => s.paint(p, &row.status),
                None => row.status.clone(),
            }
        ));
    }
    summary.push_str(&format!("  {}", format::latency(row.latency_ms)));
    if row.probe {
        summary.push_str(&format!("  {}", s.paint(Paint::Dim, "(readiness probe)")));
    }
    out.push(summary);

    let e = row.event;
    if let Some(r) = &e.request {
        if !r.error.is_empty() {
            section(&mut out, s, "Error");
            out.push(format!("    {}", s.paint(Paint::Red, &r.error)));
        }
        if !r.http_version.is_empty() {
            out.push(format!(
                "  {} {}",
                s.paint(Paint::Dim, "Version:"),
                r.http_version
            ));
        }
        headers(&mut out, s, "Request Headers", &r.request_headers);
        body(
            &mut out,
            s,
            "Request Body",
            r.request_body.as_deref(),
            r.request_size,
            r.request_body_truncated,
            &r.request_headers,
        );
        headers(&mut out, s, "Response Headers", &r.response_headers);
        body(
            &mut out,
            s,
            "Response Body",
            r.response_body.as_deref(),
            r.response_size,
            r.response_body_truncated,
            &r.response_headers,
        );
    } else if let Some(g) = &e.grpc_call {
        if !g.grpc_message.is_empty() {
            out.push(String::new());
            out.push(format!(
                "  {} {}",
                s.paint(Paint::Bold, "gRPC Message:"),
                g.grpc_message
            ));
        }
        headers(&mut out, s, "Request Metadata", &g.request_metadata);
        grpc_side(
            &mut out,
            s,
            GrpcSide {
                title: "Request",
                messages: &g.request_messages,
                messages_truncated: g.request_messages_truncated,
                decoded: g.request_body_decoded.as_ref(),
                raw: g.request_body.as_deref(),
                raw_truncated: g.request_body_truncated,
            },
        );
        headers(&mut out, s, "Response Headers", &g.response_headers);
        headers(&mut out, s, "Response Metadata", &g.response_metadata);
        grpc_side(
            &mut out,
            s,
            GrpcSide {
                title: "Response",
                messages: &g.response_messages,
                messages_truncated: g.response_messages_truncated,
                decoded: g.response_body_decoded.as_ref(),
                raw: g.response_body.as_deref(),
                raw_truncated: g.response_body_truncated,
            },
        );
    } else if let Some(c) = &e.connection {
        out.push(String::new());
        out.push(format!("  Bytes In:   {}", format::bytes(c.bytes_in)));
        out.push(format!("  Bytes Out:  {}", format::bytes(c.bytes_out)));
        out.push(format!("  Duration:   {}", format::latency(c.duration_ms)));
        if !c.upgrade.is_empty() {
            out.push(format!("  Upgrade:    {}", c.upgrade));
        }
        if !c.error.is_empty() {
            out.push(format!("  Error:      {}", s.paint(Paint::Red, &c.error)));
        }
    } else if let Some(k) = &e.kafka_request {
        out.push(String::new());
        out.push(format!(
            "  API Name:        {} (key {})",
            k.api_name, k.api_key
        ));
        out.push(format!("  API Version:     {}", k.api_version));
        out.push(format!("  Correlation ID:  {}", k.correlation_id));
        if !k.client_id.is_empty() {
            out.push(format!("  Client ID:       {}", k.client_id));
        }
        if !k.broker.is_empty() {
            out.push(format!("  Broker:          {}", k.broker));
        }
        let topics = format::kafka_topics(&k.topics);
        if !topics.is_empty() {
            out.push(format!("  Topics:          {topics}"));
        }
        out.push(format!(
            "  Request Size:    {}",
            format::bytes(k.request_size)
        ));
        if k.no_response {
            out.push("  Response:        none (acks=0)".to_string());
        } else {
            out.push(format!(
                "  Response Size:   {}",
                format::bytes(k.response_size)
            ));
            out.push(format!(
                "  Latency:         {}",
                format::latency(k.latency_ms)
            ));
        }
        if k.rewritten {
            out.push("  Rewritten:       broker addresses point at rig's proxy".to_string());
        }
        for error in format::kafka_errors(k) {
            out.push(format!(
                "  Error:           {}",
                s.paint(Paint::Red, &error)
            ));
        }
    }
    // Bodies, messages, headers and errors come from services: they may not drive the
    // terminal.
    out.into_iter()
        .map(|line| s.service_text(&line).into_owned())
        .collect()
}

fn section(out: &mut Vec<String>, s: Style, title: &str) {
    out.push(String::new());
    out.push(format!("  {}", s.paint(Paint::Bold, &format!("{title}:"))));
}

fn headers(out: &mut Vec<String>, s: Style, title: &str, h: &Headers) {
    if h.is_empty() {
        return;
    }
    section(out, s, title);
    let mut names: Vec<&String> = h.keys().collect();
    names.sort_by_key(|n| n.to_ascii_lowercase());
    for name in names {
        for v in &h[name] {
            out.push(format!("    {}: {v}", s.paint(Paint::Dim, name)));
        }
    }
}

/// The value of header `name` (any case), joined.
fn header<'a>(h: &'a Headers, name: &str) -> Option<&'a str> {
    h.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.first())
        .map(String::as_str)
}

#[allow(clippy::too_many_arguments)]
fn body(
    out: &mut Vec<String>,
    s: Style,
    title: &str,
    body: Option<&[u8]>,
    size: i64,
    truncated: bool,
    h: &Headers,
) {
    let Some(raw) = body.filter(|b| !b.is_empty()) else {
        return;
    };
    let mut label = format!("{title} ({})", format::bytes(size.max(raw.len() as i64)));
    if truncated {
        label.push_str(&format!(
            ", first {} captured",
            format::bytes(raw.len() as i64)
        ));
    }
    let encoding = header(h, "Content-Encoding")
        .unwrap_or("")
        .to_ascii_lowercase();
    let decoded = match decode_content(raw, &encoding) {
        Some(d) => {
            label.push_str(&format!(", {encoding} decoded"));
            d
        }
        None => raw.to_vec(),
    };
    section(out, s, &label);
    let json_type = header(h, "Content-Type").is_some_and(|t| t.contains("json"));
    out.extend(body_lines(&decoded, json_type));
}

/// Decodes a gzip or deflate body; `None` for other encodings or when decoding fails (e.g. a
/// truncated capture).
fn decode_content(raw: &[u8], encoding: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let ok = match encoding {
        "gzip" | "x-gzip" => flate2::read::MultiGzDecoder::new(raw)
            .read_to_end(&mut out)
            .is_ok(),
        "deflate" => {
            flate2::read::ZlibDecoder::new(raw)
                .read_to_end(&mut out)
                .is_ok()
                || {
                    out.clear();
                    flate2::read::DeflateDecoder::new(raw)
                        .read_to_end(&mut out)
                        .is_ok()
                }
        }
        _ => false,
    };
    ok.then_some(out)
}

/// A body as indented lines: pretty JSON when it parses (or is declared JSON), text when it
/// is UTF-8, else a hex dump.
pub fn body_lines(body: &[u8], declared_json: bool) -> Vec<String> {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        if declared_json || v.is_object() || v.is_array() {
            return indent(&serde_json::to_string_pretty(&v).unwrap_or_default());
        }
    }
    match std::str::from_utf8(body) {
        Ok(text) => indent(text.trim_end_matches(['\n', '\r'])),
        Err(_) => hex_dump(body),
    }
}

/// One side of a gRPC call as the detail view shows it.
struct GrpcSide<'a> {
    /// `Request` or `Response`.
    title: &'a str,
    /// Every message rigd recorded (empty in upstream logs).
    messages: &'a [GrpcMessage],
    /// The stream went on past the messages recorded.
    messages_truncated: bool,
    /// The first message decoded (upstream's `*_body_decoded`).
    decoded: Option<&'a serde_json::Value>,
    /// The raw frames captured.
    raw: Option<&'a [u8]>,
    /// The raw frames were cut at the capture cap.
    raw_truncated: bool,
}

/// A side with one message as `<Title> Body (decoded)` (upstream's layout), with several as
/// `<Title> Messages (N)`, each numbered with its size; undecoded frames as a hex dump.
fn grpc_side(out: &mut Vec<String>, s: Style, side: GrpcSide) {
    if side.messages.len() > 1 {
        let more = if side.messages_truncated {
            ", more not captured"
        } else {
            ""
        };
        section(
            out,
            s,
            &format!("{} Messages ({}{more})", side.title, side.messages.len()),
        );
        for (n, m) in side.messages.iter().enumerate() {
            let mut label = format!("#{} ({}", n + 1, format::bytes(m.size));
            if m.compressed {
                label.push_str(", compressed");
            }
            if m.decoding == "wire" {
                label.push_str(", decoded without a schema");
            }
            label.push(')');
            match &m.decoded {
                Some(v) => {
                    out.push(format!("    {}", s.paint(Paint::Dim, &label)));
                    out.extend(
                        indent(&serde_json::to_string_pretty(v).unwrap_or_default())
                            .into_iter()
                            .map(|l| format!("  {l}")),
                    );
                }
                None => out.push(format!(
                    "    {} not decoded: {}",
                    s.paint(Paint::Dim, &label),
                    m.error
                )),
            }
        }
        return;
    }
    let title = format!("{} Body", side.title);
    if let Some(v) = side.decoded {
        section(out, s, &format!("{title} (decoded)"));
        out.extend(indent(&serde_json::to_string_pretty(v).unwrap_or_default()));
        return;
    }
    let Some(raw) = side.raw.filter(|b| !b.is_empty()) else {
        return;
    };
    let mut label = format!("{title} ({})", format::bytes(raw.len() as i64));
    if side.raw_truncated {
        label.push_str(", truncated");
    }
    section(out, s, &label);
    out.extend(hex_dump(raw));
}

fn indent(text: &str) -> Vec<String> {
    text.lines().map(|l| format!("    {l}")).collect()
}

/// 16 space-separated bytes per line, indented.
pub fn hex_dump(bytes: &[u8]) -> Vec<String> {
    bytes
        .chunks(HEX_PER_LINE)
        .map(|chunk| {
            let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
            format!("    {}", hex.join(" "))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_pretty_print_json_and_dump_binary() {
        assert_eq!(
            body_lines(br#"{"id":"123"}"#, false),
            ["    {", "    \"id\": \"123\"", "    }"].map(|s| s.replace("    \"", "      \""))
        );
        assert_eq!(
            body_lines(b"plain\ntext\n", false),
            ["    plain", "    text"]
        );
        assert_eq!(body_lines(b"42", false), ["    42"]);
        assert_eq!(body_lines(&[0xff, 0x00, 0x01], false), ["    ff 00 01"]);
    }

    #[test]
    fn gzip_bodies_are_decoded() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(b"hello").unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(decode_content(&gz, "gzip").unwrap(), b"hello");
        assert_eq!(decode_content(&gz[..5], "gzip"), None);
        assert_eq!(decode_content(b"x", "br"), None);
    }
}
