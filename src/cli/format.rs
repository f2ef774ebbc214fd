//! Formatting of latencies, sizes, elapsed times, gRPC statuses and endpoints, shared by every
//! command that prints them (rules from upstream's CLI, section 3.13 of the reference).

use rig_types::event::{GrpcMessage, KafkaRequestInfo, KafkaTopic};
use rig_types::{Endpoint, Protocol, Timestamp};
use serde_json::Value;

/// A latency in milliseconds: `500µs` below 1 ms, `2.1ms` below 1 s, else `1.50s`.
pub fn latency(ms: f64) -> String {
    if !ms.is_finite() || ms < 0.0 {
        return "?".into();
    }
    if ms < 1.0 {
        format!("{:.0}µs", ms * 1000.0)
    } else if ms < 1000.0 {
        format!("{ms:.1}ms")
    } else {
        format!("{:.2}s", ms / 1000.0)
    }
}

/// A byte count, base 1024: `100B`, `1.5KB`, `1.0MB`.
pub fn bytes(n: i64) -> String {
    const KIB: f64 = 1024.0;
    let v = n as f64;
    if n < 1024 {
        format!("{n}B")
    } else if v < KIB * KIB {
        format!("{:.1}KB", v / KIB)
    } else {
        format!("{:.1}MB", v / (KIB * KIB))
    }
}

/// Elapsed seconds with two decimals: `0.21s`.
pub fn seconds(secs: f64) -> String {
    format!("{:.2}s", secs.max(0.0))
}

/// A gRPC status code (a decimal string on the wire) as its canonical name: `"0"` → `OK`,
/// `"14"` → `UNAVAILABLE`. Unknown codes are shown as given.
pub fn grpc_status(code: &str) -> String {
    match code
        .trim()
        .parse::<u32>()
        .ok()
        .and_then(rig_protocols::grpc::status_name)
    {
        Some(name) => name.to_string(),
        _ if code.is_empty() => "OK".to_string(),
        _ => code.to_string(),
    }
}

/// True when a gRPC status string means success.
pub fn grpc_ok(code: &str) -> bool {
    matches!(code.trim(), "" | "0" | "OK")
}

/// The decoded messages of one side of a gRPC call: every message rigd recorded
/// (`request_messages`/`response_messages`), else the first one alone (`first`: upstream's
/// `*_body_decoded`, all that upstream logs carry).
pub fn grpc_decoded<'a>(messages: &'a [GrpcMessage], first: Option<&'a Value>) -> Vec<&'a Value> {
    if messages.is_empty() {
        return first.into_iter().collect();
    }
    messages.iter().filter_map(|m| m.decoded.as_ref()).collect()
}

/// The topics and partitions of a Kafka exchange: `orders[0,1] payments[2]` (a topic without
/// decoded partitions is just its name); empty when none were decoded.
pub fn kafka_topics(topics: &[KafkaTopic]) -> String {
    let topic = |t: &KafkaTopic| {
        if t.partitions.is_empty() {
            return t.topic.clone();
        }
        let parts: Vec<String> = t
            .partitions
            .iter()
            .map(|p| p.partition.to_string())
            .collect();
        format!("{}[{}]", t.topic, parts.join(","))
    };
    topics.iter().map(topic).collect::<Vec<_>>().join(" ")
}

/// What went wrong with a Kafka exchange: the proxy's error (no response came, say), the
/// response's top-level error code, then each failing partition's as `topic[partition]:
/// code`; empty when the exchange completed and every code is 0.
pub fn kafka_errors(k: &KafkaRequestInfo) -> Vec<String> {
    let mut out = Vec::new();
    if !k.error.is_empty() {
        out.push(k.error.clone());
    }
    if k.error_code != 0 {
        out.push(format!("error code {}", k.error_code));
    }
    for t in &k.topics {
        for p in t.partitions.iter().filter(|p| p.error_code != 0) {
            out.push(format!(
                "{}[{}]: error code {}",
                t.topic, p.partition, p.error_code
            ));
        }
    }
    out
}

/// How to reach an endpoint, in the form a developer pastes into a client: a `postgres://`
/// URL for Postgres, the Redis URL, `http://host:port` for HTTP, else `host:port`, with the
/// extra settings of Temporal, S3 and SQS endpoints.
pub fn endpoint_text(endpoint: &Endpoint) -> String {
    let attr = |key: &str| -> Option<String> {
        let value = endpoint.attributes.as_ref()?.get(key)?;
        match value {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    };
    let or_empty = |key: &str| attr(key).unwrap_or_default();
    if let Some(host) = attr("PGHOST") {
        return format!(
            "postgres://{}:{}@{}:{}/{}",
            or_empty("PGUSER"),
            or_empty("PGPASSWORD"),
            host,
            or_empty("PGPORT"),
            or_empty("PGDATABASE")
        );
    }
    if let Some(url) = attr("REDIS_URL") {
        return url;
    }
    if let Some(addr) = attr("TEMPORAL_ADDRESS") {
        return match attr("TEMPORAL_NAMESPACE") {
            Some(ns) => format!("{addr}  namespace={ns}"),
            None => addr,
        };
    }
    if let Some(s3) = attr("S3_ENDPOINT") {
        let mut out = s3;
        for (label, key) in [
            ("bucket", "S3_BUCKET"),
            ("user", "AWS_ACCESS_KEY_ID"),
            ("pass", "AWS_SECRET_ACCESS_KEY"),
        ] {
            if let Some(v) = attr(key) {
                out.push_str(&format!("  {label}={v}"));
            }
        }
        return out;
    }
    if let Some(queue) = attr("SQS_QUEUE_URL") {
        return match attr("AWS_ACCESS_KEY_ID") {
            Some(user) => format!("{queue}  user={user}"),
            None => queue,
        };
    }
    match endpoint.protocol {
        Protocol::Http => format!("http://{}", endpoint.hostport),
        _ => endpoint.hostport.clone(),
    }
}

/// A run duration in milliseconds as `ls` and `summary` show it: `500ms` below a second,
/// else `3.31s`.
pub fn run_duration(ms: f64) -> String {
    if !ms.is_finite() || ms < 0.0 {
        return "?".into();
    }
    if ms < 1000.0 {
        format!("{ms:.0}ms")
    } else {
        format!("{:.2}s", ms / 1000.0)
    }
}

/// Seconds with three decimals, for times relative to the start of a run: `1.588s`.
pub fn relative(secs: f64) -> String {
    format!("{secs:.3}s")
}

/// `ts` as local wall-clock time, `YYYY-MM-DD HH:MM:SS` (the zone from `TZ` or the system).
pub fn local_datetime(ts: &Timestamp) -> String {
    let secs = (ts.unix_nanos().div_euclid(1_000_000_000)) as i64;
    let text = ts.with_offset(local_offset(secs)).to_rfc3339();
    // `2026-02-24T20:33:00.123+01:00` → `2026-02-24 20:33:00`.
    text.get(..19).unwrap_or(&text).replacen('T', " ", 1)
}

/// The local zone's offset from UTC at `unix_secs`, in seconds east.
fn local_offset(unix_secs: i64) -> i32 {
    let t = unix_secs as libc::time_t;
    // SAFETY: `tzset` reads TZ; `localtime_r` fills the zeroed `tm` we own and returns null
    // on failure, which we check.
    unsafe {
        tzset();
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return 0;
        }
        tm.tm_gmtoff as i32
    }
}

extern "C" {
    fn tzset();
}

/// An age for humans: `45s`, `12m`, `5h`, `3d`.
pub fn age(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m", s / 60)
    } else if s < 86_400 {
        format!("{}h", s / 3600)
    } else {
        format!("{}d", s / 86_400)
    }
}

/// Parses a duration: Go syntax (`90s`, `1h30m`) extended with days (`7d`, `1d12h`).
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let mut days = 0.0f64;
    let mut rest = String::new();
    let mut number = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        if c == 'd' && !number.is_empty() {
            let n: f64 = number
                .parse()
                .map_err(|_| format!("invalid duration {text:?}: bad number {number:?}"))?;
            days += n;
            number.clear();
            continue;
        }
        rest.push_str(&number);
        number.clear();
        rest.push(c);
    }
    rest.push_str(&number);
    let base = if rest.is_empty() {
        std::time::Duration::ZERO
    } else {
        let d = rig_types::GoDuration::parse(&rest)
            .map_err(|e| format!("invalid duration {text:?}: {e} (use e.g. 90s, 30m, 24h, 7d)"))?;
        d.to_std()
            .ok_or_else(|| format!("invalid duration {text:?}: must not be negative"))?
    };
    if t.is_empty() {
        return Err("invalid duration \"\": empty (use e.g. 90s, 30m, 24h, 7d)".into());
    }
    let day_secs = days * 86_400.0;
    if !day_secs.is_finite() || day_secs > 1e12 {
        return Err(format!("invalid duration {text:?}: too long"));
    }
    Ok(base + std::time::Duration::from_secs_f64(day_secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn latency_matches_upstream_examples() {
        assert_eq!(latency(0.5), "500µs");
        assert_eq!(latency(2.1), "2.1ms");
        assert_eq!(latency(123.4), "123.4ms");
        assert_eq!(latency(1500.0), "1.50s");
        assert_eq!(latency(f64::NAN), "?");
    }

    #[test]
    fn bytes_match_upstream_examples() {
        assert_eq!(bytes(0), "0B");
        assert_eq!(bytes(100), "100B");
        assert_eq!(bytes(1024), "1.0KB");
        assert_eq!(bytes(1536), "1.5KB");
        assert_eq!(bytes(1_048_576), "1.0MB");
    }

    #[test]
    fn grpc_status_names() {
        assert_eq!(grpc_status("0"), "OK");
        assert_eq!(grpc_status("14"), "UNAVAILABLE");
        assert_eq!(grpc_status("99"), "99");
        assert!(grpc_ok("0") && grpc_ok("OK") && !grpc_ok("2"));
    }

    fn endpoint(protocol: Protocol, attrs: serde_json::Value) -> Endpoint {
        let mut ep = Endpoint::new("127.0.0.1:5000", protocol);
        ep.attributes = serde_json::from_value(attrs).unwrap();
        ep
    }

    #[test]
    fn endpoint_text_by_kind() {
        assert_eq!(
            endpoint_text(&Endpoint::new("127.0.0.1:80", Protocol::Http)),
            "http://127.0.0.1:80"
        );
        assert_eq!(
            endpoint_text(&Endpoint::new("127.0.0.1:80", Protocol::Grpc)),
            "127.0.0.1:80"
        );
        let pg = endpoint(
            Protocol::Tcp,
            json!({"PGHOST": "127.0.0.1", "PGPORT": 5432, "PGUSER": "postgres",
                   "PGPASSWORD": "pw", "PGDATABASE": "rig_3"}),
        );
        assert_eq!(
            endpoint_text(&pg),
            "postgres://postgres:pw@127.0.0.1:5432/rig_3"
        );
        let temporal = endpoint(
            Protocol::Grpc,
            json!({"TEMPORAL_ADDRESS": "127.0.0.1:7233", "TEMPORAL_NAMESPACE": "ns"}),
        );
        assert_eq!(endpoint_text(&temporal), "127.0.0.1:7233  namespace=ns");
        let s3 = endpoint(
            Protocol::Http,
            json!({"S3_ENDPOINT": "http://127.0.0.1:9000", "S3_BUCKET": "b"}),
        );
        assert_eq!(endpoint_text(&s3), "http://127.0.0.1:9000  bucket=b");
    }

    #[test]
    fn run_durations_and_relative_times() {
        assert_eq!(run_duration(500.0), "500ms");
        assert_eq!(run_duration(3312.0), "3.31s");
        assert_eq!(relative(1.5884), "1.588s");
    }

    #[test]
    fn durations_accept_days() {
        use std::time::Duration;
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86_400)
        );
        assert_eq!(
            parse_duration("1d12h").unwrap(),
            Duration::from_secs(36 * 3600)
        );
        assert_eq!(
            parse_duration("1.5d").unwrap(),
            Duration::from_secs(36 * 3600)
        );
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("7 days").is_err());
        assert!(parse_duration("-1h").is_err());
        assert!(parse_duration("d").is_err());
    }

    #[test]
    fn kafka_topics_and_errors() {
        use rig_types::event::KafkaPartition;
        let part = |partition, error_code| KafkaPartition {
            partition,
            error_code,
        };
        let k = KafkaRequestInfo {
            topics: vec![
                KafkaTopic {
                    topic: "orders".into(),
                    partitions: vec![part(0, 0), part(1, 6)],
                },
                KafkaTopic {
                    topic: "audit".into(),
                    partitions: vec![],
                },
            ],
            ..KafkaRequestInfo::default()
        };
        assert_eq!(kafka_topics(&k.topics), "orders[0,1] audit");
        assert_eq!(kafka_errors(&k), ["orders[1]: error code 6"]);
        let cut = KafkaRequestInfo {
            error: "no response came before the connection closed".into(),
            ..KafkaRequestInfo::default()
        };
        assert_eq!(
            kafka_errors(&cut),
            ["no response came before the connection closed"]
        );
        assert!(kafka_errors(&KafkaRequestInfo::default()).is_empty());
    }

    #[test]
    fn ages() {
        use std::time::Duration;
        assert_eq!(age(Duration::from_secs(5)), "5s");
        assert_eq!(age(Duration::from_secs(3 * 86_400 + 5)), "3d");
    }
}
