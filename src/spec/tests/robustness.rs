//! Fuzz-style robustness: mangled specs give errors, never panics, and whatever decodes can
//! be validated and transformed without panicking.

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::spec::{decode_environment, insert_test_node, transform_observe, validate_environment};

const VALID: &str = r#"{
  "name": "orders", "observe": true, "ttl": "5m", "dir": "/src", "host_env": {"A": "b"},
  "services": {
    "db": {"type": "postgres", "ingresses": {"default": {"protocol": "tcp", "container_port": 5432,
           "attributes": {"PGHOST": "${HOST}"}}},
           "hooks": {"init": [{"type": "sql", "config": {"statements": ["SELECT 1"]}}]}},
    "api": {"type": "go", "config": {"module": "./cmd/api"}, "args": ["-x", "${DB_HOST}"],
            "ingresses": {"default": {"protocol": "http", "ready": {"path": "/h", "interval": "10ms", "timeout": "1s"}},
                          "grpc": {"protocol": "grpc"}},
            "egresses": {"db": {"service": "db"}},
            "hooks": {"prestart": [{"type": "client_func", "client_func": {"name": "_hook_1"}}]}},
    "worker": {"type": "process", "egresses": {"api": {"service": "api", "ingress": "grpc"}}}
  }
}"#;

/// Runs the whole pipeline on `body`; returns whether it decoded. Panics name the input.
fn pipeline(body: &[u8]) -> bool {
    let outcome = catch_unwind(AssertUnwindSafe(|| match decode_environment(body) {
        Ok(mut env) => {
            let _ = validate_environment(&mut env);
            insert_test_node(&mut env);
            transform_observe(&mut env);
            let _ = validate_environment(&mut env);
            true
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            false
        }
    }));
    match outcome {
        Ok(decoded) => decoded,
        Err(_) => panic!("panicked on input {:?}", String::from_utf8_lossy(body)),
    }
}

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn the_base_spec_is_valid() {
    let mut env = decode_environment(VALID.as_bytes()).expect("valid spec decodes");
    assert_eq!(validate_environment(&mut env), Vec::<String>::new());
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let bytes = VALID.as_bytes();
    for len in 0..bytes.len() {
        // Only whitespace may follow the final brace, so every proper prefix is incomplete.
        assert!(!pipeline(&bytes[..len]), "prefix of {len} bytes decoded");
    }
}

#[test]
fn mangled_variants_never_panic() {
    let bytes = VALID.as_bytes();
    let specials: &[&[u8]] = &[
        b"null",
        b"[",
        b"]",
        b"{",
        b"}",
        b",",
        b":",
        b"\"",
        b"\\",
        b"~",
        b"0",
        b"-1",
        b"1e999",
        b"true",
        b"\xff",
        b"\x00",
        b"[null]",
        b"{\"\":{}}",
        b"\"\\ud800\"",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut decoded = 0;
    for _ in 0..600 {
        let mut body = bytes.to_vec();
        for _ in 0..=rng.below(3) {
            let at = rng.below(body.len());
            match rng.below(4) {
                0 => {
                    body.remove(at);
                }
                1 => body[at] = rng.next() as u8,
                2 => {
                    let s = specials[rng.below(specials.len())];
                    body.splice(at..at, s.iter().copied());
                }
                _ => {
                    let end = (at + rng.below(40)).min(body.len());
                    body.drain(at..end);
                }
            }
        }
        if pipeline(&body) {
            decoded += 1;
        }
    }
    // Some mutations only touch string contents or whitespace; the test must exercise both
    // the error path and the full pipeline.
    assert!(decoded > 0 && decoded < 600, "decoded {decoded} of 600");
}

#[test]
fn hostile_shapes_are_errors_or_handled() {
    let deep = format!(
        r#"{{"services":{{"a":{{"config":{}{}}}}}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let deep_hooks = format!(
        r#"{{"services":{{"a":{{"hooks":{{"init":[{}]}}}}}}}}"#,
        "[".repeat(50_000)
    );
    let many_dups = format!(
        r#"{{"services":{{{}"a":{{}}}}}}"#,
        (0..5000)
            .map(|i| format!(r#""s{i}":{{}},"#))
            .collect::<String>()
    );
    let cases = [
        deep.as_str(),
        deep_hooks.as_str(),
        many_dups.as_str(),
        r#"{"services":{"a":{"ingresses":{"d":{"container_port":70000}}}}}"#,
        r#"{"services":{"a":{"ingresses":{"d":{"container_port":-1}}}}}"#,
        r#"{"services":{"a":{"ingresses":{"d":{"ready":{"timeout":"9999999999h"}}}}}}"#,
        r#"{"services":{"a":{"hooks":{"prestart":[{"client_func":null}]}}}}"#,
        r#"{"services":{"a":{"egresses":{"e":{"service":"a\u0000b"}}}}}"#,
        r#"{"services":{"\ud800":{}}}"#,
        r#"{"name":"x","services":{"a":{"type":"process","egresses":{"e":{"service":"b"}}},"b":{"type":"process","ingresses":{"~":{"protocol":"http"}}}}}"#,
    ];
    for body in cases {
        pipeline(body.as_bytes());
    }
    // The duplicate at the end of a large object is still found.
    assert!(decode_environment(many_dups.as_bytes()).is_ok());
    let dup_at_end = many_dups.replace(r#""a":{}"#, r#""s4999":{}"#);
    assert_eq!(
        decode_environment(dup_at_end.as_bytes()).map_err(|e| e.to_string()),
        Err(r#"duplicate services key: "s4999""#.to_string())
    );
}
