//! Reading message heads on the raw path: which requests it takes (the common case) and how
//! each message's body is framed. Everything else is left to hyper.

use std::mem::MaybeUninit;

use httparse::{Header, ParserConfig, Status};

/// Header lines per request head the raw path takes (more go to hyper).
pub(crate) const MAX_HEADERS: usize = 100;

/// Header lines per response head accepted (on either path). Clients take more than hyper's
/// default of 100 (curl, browsers), and a proxy that refuses what its client would take
/// breaks the exchange.
pub(crate) const MAX_RESPONSE_HEADERS: usize = 256;

/// How response heads are parsed: as leniently as common clients (curl, Python) read them,
/// with obsolete line folding and spaces before the colon accepted, so that the proxy
/// forwards what the client would have taken directly.
pub(crate) fn response_parser() -> ParserConfig {
    let mut config = ParserConfig::default();
    config
        .allow_obsolete_multiline_headers_in_responses(true)
        .allow_spaces_after_header_name_in_responses(true);
    config
}

/// A request head this large (or still incomplete at this size) goes to hyper, which enforces
/// its own limits (and answers `431`/`414` as today). It also keeps the request target within
/// what `http::Uri` takes, so the event records it.
pub(crate) const MAX_REQUEST_HEAD: usize = 64 * 1024;

/// The largest response head accepted, hyper's default read buffer limit.
pub(crate) const MAX_RESPONSE_HEAD: usize = 8192 + 4096 * 100;

/// How a message body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Everything until the sender closes the connection (responses only).
    UntilClose,
}

/// A request head the raw path forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RequestHead {
    /// Bytes of the head, request line to the empty line included.
    pub(crate) len: usize,
    /// How the body is delimited.
    pub(crate) framing: Framing,
    /// `Connection: close`: the connection ends after this exchange.
    pub(crate) close: bool,
    /// A `HEAD` request (its response has no body).
    pub(crate) head_method: bool,
    /// Whether the request may be sent again when the target closes the connection without
    /// answering it: its method is safe (`GET`, `HEAD`, `OPTIONS`, `TRACE`) or it carries an
    /// `Idempotency-Key` (or `X-Idempotency-Key`), as Go's `http.Transport` decides. Other
    /// requests may have been acted on, so the client gets the failure instead.
    pub(crate) replayable: bool,
}

/// What the start of the client's buffer holds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Request {
    /// Not a whole head yet.
    Partial,
    /// A head the raw path takes.
    Raw(RequestHead),
    /// Anything else: hyper serves the connection from here on.
    Fallback,
}

/// Parses the request head at the start of `buf` and decides whether the raw path takes it:
/// HTTP/1.1, an origin-form target, one `Host`, no upgrade, not `CONNECT`, not gRPC, no
/// hop-by-hop header but `Connection: keep-alive` or `close`, and no connection-bound
/// authentication.
pub(crate) fn request(buf: &[u8]) -> Request {
    let mut headers = [MaybeUninit::<Header<'_>>::uninit(); MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut []);
    let len = match ParserConfig::default().parse_request_with_uninit_headers(
        &mut parsed,
        buf,
        &mut headers,
    ) {
        Ok(Status::Complete(len)) if len <= MAX_REQUEST_HEAD => len,
        Ok(Status::Partial) if buf.len() <= MAX_REQUEST_HEAD => return Request::Partial,
        // Too large (whether it came in one read or several), too many headers or malformed:
        // hyper answers as it always did.
        _ => return Request::Fallback,
    };
    let (Some(method), Some(path), Some(1)) = (parsed.method, parsed.path, parsed.version) else {
        return Request::Fallback;
    };
    if method == "CONNECT" || !is_origin_form(path.as_bytes()) {
        return Request::Fallback;
    }
    let mut hosts = 0;
    let mut length = None;
    let mut chunked = false;
    let mut close = false;
    let mut idempotency_key = false;
    for header in parsed.headers.iter() {
        let name = header.name.as_bytes();
        let value = header.value.trim_ascii();
        match name.len() {
            4 if name.eq_ignore_ascii_case(b"host") => hosts += 1,
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                match (length, parse_length(value)) {
                    (None, Some(n)) => length = Some(n),
                    _ => return Request::Fallback,
                }
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                if chunked || !value.eq_ignore_ascii_case(b"chunked") {
                    return Request::Fallback;
                }
                chunked = true;
            }
            15 | 17
                if name.eq_ignore_ascii_case(b"idempotency-key")
                    || name.eq_ignore_ascii_case(b"x-idempotency-key") =>
            {
                idempotency_key = true
            }
            10 if name.eq_ignore_ascii_case(b"connection") => {
                if value.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if !value.eq_ignore_ascii_case(b"keep-alive") {
                    return Request::Fallback;
                }
            }
            12 if name.eq_ignore_ascii_case(b"content-type")
                && starts_with_ignore_case(value, b"application/grpc") =>
            {
                return Request::Fallback
            }
            13 if name.eq_ignore_ascii_case(b"authorization") && binds_connection(value) => {
                return Request::Fallback
            }
            _ if is_hop_by_hop(name) => return Request::Fallback,
            _ => {}
        }
    }
    if hosts != 1 || (chunked && length.is_some()) {
        return Request::Fallback;
    }
    let framing = match (chunked, length) {
        (true, _) => Framing::Chunked,
        (false, Some(0) | None) => Framing::Empty,
        (false, Some(n)) => Framing::Length(n),
    };
    Request::Raw(RequestHead {
        len,
        framing,
        close,
        head_method: method == "HEAD",
        replayable: replayable(method, idempotency_key),
    })
}

/// Whether a request the target may not have answered can be sent again: its method is
/// safe (`GET`, `HEAD`, `OPTIONS`, `TRACE`) or it carries an idempotency key, as Go's
/// `http.Transport` decides. Shared by the raw path and the hyper path.
pub(crate) fn replayable(method: &str, idempotency_key: bool) -> bool {
    idempotency_key || matches!(method, "GET" | "HEAD" | "OPTIONS" | "TRACE")
}

/// A response head of the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Response {
    /// Not a whole head yet.
    Partial,
    /// A `1xx` interim response (`100 Continue`, `103 Early Hints`) of `len` bytes, forwarded
    /// as it is; the final response follows.
    Interim(usize),
    /// `101 Switching Protocols`, which the raw path never asks for.
    Switching,
    /// The final response head.
    Final(ResponseHead),
}

/// The final response head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ResponseHead {
    /// Bytes of the head.
    pub(crate) len: usize,
    /// How the body is delimited.
    pub(crate) framing: Framing,
    /// The target ends the connection after this response.
    pub(crate) close: bool,
    /// Both `Transfer-Encoding` and `Content-Length` came: the length is ignored and must be
    /// removed before the head is passed on (RFC 9112 §6.3).
    pub(crate) drop_length: bool,
}

/// Parses the response head at the start of `buf`; `head_method` says whether it answers a
/// `HEAD` request. An error is the reason the response is not valid HTTP/1.1, worded as hyper
/// words it.
pub(crate) fn response(buf: &[u8], head_method: bool) -> Result<Response, &'static str> {
    let mut headers = [MaybeUninit::<Header<'_>>::uninit(); MAX_RESPONSE_HEADERS];
    let mut parsed = httparse::Response::new(&mut []);
    let len = match response_parser().parse_response_with_uninit_headers(
        &mut parsed,
        buf,
        &mut headers,
    ) {
        Ok(Status::Complete(len)) => len,
        Ok(Status::Partial) if buf.len() <= MAX_RESPONSE_HEAD => return Ok(Response::Partial),
        Ok(Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
            return Err("message head is too large")
        }
        Err(httparse::Error::Version) => return Err("invalid HTTP version parsed"),
        Err(httparse::Error::Status) => return Err("invalid HTTP status-code parsed"),
        Err(_) => return Err("invalid HTTP header parsed"),
    };
    let code = parsed.code.unwrap_or_default();
    if !(100..=999).contains(&code) {
        return Err("invalid HTTP status-code parsed");
    }
    if code == 101 {
        return Ok(Response::Switching);
    }
    if code < 200 {
        return Ok(Response::Interim(len));
    }
    // HTTP/1.0 closes unless the response says `Connection: keep-alive` (RFC 9112 §9.3).
    let http10 = parsed.version != Some(1);
    let mut close = false;
    let mut keep_alive = false;
    let mut length = None;
    let mut transfer_encoding: Option<&[u8]> = None;
    for header in parsed.headers.iter() {
        let name = header.name.as_bytes();
        let value = header.value.trim_ascii();
        match name.len() {
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                match (length, parse_length(value)) {
                    (_, None) => return Err("invalid content-length parsed"),
                    (Some(a), Some(b)) if a != b => return Err("invalid content-length parsed"),
                    (_, n) => length = n,
                }
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                transfer_encoding = Some(value);
            }
            10 if name.eq_ignore_ascii_case(b"connection") => {
                close |= has_token(value, b"close");
                keep_alive |= has_token(value, b"keep-alive");
            }
            _ => {}
        }
    }
    close |= http10 && !keep_alive;
    let framing = if head_method || code == 204 || code == 304 {
        Framing::Empty
    } else if let Some(coding) = transfer_encoding {
        // Only a last coding of `chunked` delimits the body; anything else runs to the close.
        let last = coding.rsplit(|&b| b == b',').next().unwrap_or_default();
        if last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else {
        match length {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    };
    Ok(Response::Final(ResponseHead {
        len,
        framing,
        close: close || framing == Framing::UntilClose,
        drop_length: transfer_encoding.is_some() && length.is_some(),
    }))
}

/// `head` without its `Content-Length` lines, for a head whose `Transfer-Encoding` overrides
/// them.
pub(crate) fn without_content_length(head: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(head.len());
    for line in head.split_inclusive(|&b| b == b'\n') {
        let name = line.split(|&b| b == b':').next().unwrap_or_default();
        if !(line.contains(&b':') && name.trim_ascii().eq_ignore_ascii_case(b"content-length")) {
            out.extend_from_slice(line);
        }
    }
    out
}

/// An origin-form target hyper would take as it is: `/` then visible ASCII, no fragment.
fn is_origin_form(path: &[u8]) -> bool {
    path.first() == Some(&b'/') && path.iter().all(|&b| (0x21..0x7f).contains(&b) && b != b'#')
}

/// Headers that describe one connection (see [`super::super::headers`]); `Connection` is
/// handled by the caller.
fn is_hop_by_hop(name: &[u8]) -> bool {
    match name.len() {
        2 => name.eq_ignore_ascii_case(b"te"),
        7 => name.eq_ignore_ascii_case(b"upgrade"),
        10 => name.eq_ignore_ascii_case(b"keep-alive"),
        14 => name.eq_ignore_ascii_case(b"http2-settings"),
        _ => starts_with_ignore_case(name, b"proxy-"),
    }
}

/// Whether an `Authorization` value is of a scheme that authenticates the TCP connection
/// rather than the request (NTLM, Negotiate/Kerberos). The raw path shares upstream
/// connections between client connections, so such requests go to hyper, which gives the
/// client connection an upstream connection of its own.
fn binds_connection(authorization: &[u8]) -> bool {
    let scheme = authorization
        .split(|&b| b == b' ')
        .next()
        .unwrap_or_default();
    scheme.eq_ignore_ascii_case(b"ntlm") || scheme.eq_ignore_ascii_case(b"negotiate")
}

fn starts_with_ignore_case(value: &[u8], prefix: &[u8]) -> bool {
    value.len() >= prefix.len() && value[..prefix.len()].eq_ignore_ascii_case(prefix)
}

fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// A `Content-Length` value: decimal digits only, as hyper accepts.
fn parse_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 19 {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> RequestHead {
        match request(text.as_bytes()) {
            Request::Raw(head) => head,
            other => panic!("{text:?}: {other:?}"),
        }
    }

    #[test]
    fn plain_requests_take_the_raw_path() {
        let head = raw("GET /a?b=1 HTTP/1.1\r\nHost: api\r\nAccept: */*\r\n\r\nnext");
        assert_eq!(head.len, 47);
        assert_eq!(head.framing, Framing::Empty);
        assert!(!head.close && !head.head_method);
        let head =
            raw("POST / HTTP/1.1\r\nhost: a\r\nContent-Length: 12\r\nConnection: close\r\n\r\n");
        assert_eq!(head.framing, Framing::Length(12));
        assert!(head.close);
        let head = raw("PUT / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n");
        assert_eq!(head.framing, Framing::Chunked);
        assert!(raw("HEAD / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n").head_method);
        raw("GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer NTLM\r\n\r\n");
        raw("GET / HTTP/1.1\r\nHost: a\r\nAuthorization: NTLMish x\r\n\r\n");
        assert_eq!(request(b"GET / HTTP/1.1\r\nHost: a\r\n"), Request::Partial);
    }

    #[test]
    fn only_safe_or_idempotency_keyed_requests_are_replayable() {
        for method in ["GET", "HEAD", "OPTIONS", "TRACE"] {
            let head = raw(&format!("{method} / HTTP/1.1\r\nHost: a\r\n\r\n"));
            assert!(head.replayable, "{method}");
        }
        for method in ["POST", "PUT", "PATCH", "DELETE", "get"] {
            let head = raw(&format!("{method} / HTTP/1.1\r\nHost: a\r\n\r\n"));
            assert!(!head.replayable, "{method}");
        }
        for key in ["Idempotency-Key", "x-idempotency-key"] {
            let head = raw(&format!("POST / HTTP/1.1\r\nHost: a\r\n{key}: k\r\n\r\n"));
            assert!(head.replayable, "{key}");
        }
        let head = raw("POST / HTTP/1.1\r\nHost: a\r\nIdempotency: k\r\n\r\n");
        assert!(!head.replayable);
    }

    #[test]
    fn everything_unusual_falls_back_to_hyper() {
        for text in [
            "GET / HTTP/1.0\r\nHost: a\r\n\r\n",
            "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n",
            "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
            "CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Hop\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nKeep-Alive: timeout=5\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nProxy-Authorization: x\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Type: application/grpc\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            "GET /x HTTP/1.1\r\nHost: api\r\nthis is not a header\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nAuthorization: NTLM TlRMTVNTUAABAAAA\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nauthorization:  negotiate YIIG\r\n\r\n",
        ] {
            assert_eq!(request(text.as_bytes()), Request::Fallback, "{text:?}");
        }
        let mut many = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
        for i in 0..100 {
            many.push_str(&format!("X-{i}: v\r\n"));
        }
        many.push_str("\r\n");
        assert_eq!(request(many.as_bytes()), Request::Fallback);
        let huge = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_REQUEST_HEAD));
        assert_eq!(request(huge.as_bytes()), Request::Fallback);
        let whole = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(70_000));
        assert_eq!(
            request(whole.as_bytes()),
            Request::Fallback,
            "in one read too"
        );
    }

    fn last(text: &str, head_method: bool) -> ResponseHead {
        match response(text.as_bytes(), head_method) {
            Ok(Response::Final(head)) => head,
            other => panic!("{text:?}: {other:?}"),
        }
    }

    #[test]
    fn a_length_beside_chunked_is_ignored_and_removed() {
        let text = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nX-A: content-length: 1\r\n\r\n";
        let head = last(text, false);
        assert_eq!(head.framing, Framing::Chunked);
        assert!(head.drop_length);
        assert!(!last("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false).drop_length);
        assert_eq!(
            without_content_length(text.as_bytes()),
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: content-length: 1\r\n\r\n"
        );
    }

    #[test]
    fn response_bodies_are_framed_as_rfc_9112_says() {
        let head = last("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false);
        assert_eq!(
            (head.len, head.framing, head.close),
            (38, Framing::Length(5), false)
        );
        assert_eq!(
            last("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true).framing,
            Framing::Empty
        );
        assert_eq!(
            last("HTTP/1.1 204 No Content\r\n\r\n", false).framing,
            Framing::Empty
        );
        assert_eq!(
            last(
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
                false
            )
            .framing,
            Framing::Empty
        );
        let head = last(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        );
        assert_eq!(head.framing, Framing::Chunked);
        let head = last("HTTP/1.1 200 OK\r\n\r\n", false);
        assert_eq!((head.framing, head.close), (Framing::UntilClose, true));
        let head = last(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
            false,
        );
        assert!(head.close);
        assert!(last("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false).close);
        // An HTTP/1.0 response that asks to keep the connection keeps it, as the client reads
        // it; without a length it still ends with the close.
        let kept = "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n";
        assert!(!last(kept, false).close);
        let unframed = "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n\r\n";
        assert!(last(unframed, false).close);
        assert_eq!(
            response(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200", false),
            Ok(Response::Interim(25))
        );
        assert_eq!(
            response(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", false),
            Ok(Response::Switching)
        );
        assert_eq!(
            response(b"HTTP/1.1 200 OK\r\n", false),
            Ok(Response::Partial)
        );
        assert!(response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            false
        )
        .is_err());
        assert!(response(b"SSH-2.0-OpenSSH\r\n\r\n", false).is_err());
    }
}
