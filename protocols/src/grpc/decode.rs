//! A captured gRPC body to its decoded messages: framing, decompression, then the method's
//! schema when there is one, else the schema-less wire rendering.

use bytes::Bytes;
use serde_json::Value;

use super::compression::decompress;
use super::framing::{FrameDecoder, FramingError, Incomplete, Message};
use super::schema::{Direction, MethodSchema};
use super::wire;

/// Bounds on decoding one body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// The largest message payload accepted by the framing.
    pub max_message: usize,
    /// Decompressed bytes allowed for the whole body (a decompression bomb stops here).
    pub max_decompressed: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_message: 4 << 20,
            max_decompressed: 4 << 20,
        }
    }
}

/// How a message was decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoding {
    /// With the method's descriptor (canonical protobuf JSON).
    Schema,
    /// Schema-less, from the wire format (see [`wire`]).
    Wire,
}

/// One message of a body.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodedMessage {
    /// Payload bytes as sent (compressed size when compressed), without the prefix.
    pub size: usize,
    /// Whether the message was flagged compressed.
    pub compressed: bool,
    /// The message as JSON, when it decoded.
    pub json: Option<Value>,
    /// How `json` was produced.
    pub decoding: Option<Decoding>,
    /// Why the message did not decode (or, with `json` set, why the schema did not apply).
    pub error: Option<String>,
}

/// Every message of a body, and how the body ended.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DecodedBody {
    /// The messages, in order: every complete one, then one the body holds only part of or
    /// that is too large to decode, if any (with its declared size, no JSON and an `error`
    /// saying why).
    pub messages: Vec<DecodedMessage>,
    /// Why the framing broke off, or that the body ended inside a message.
    pub error: Option<String>,
}

/// Decodes the messages of `chunks` (a body's captured data frames, in order): `encoding` is
/// the stream's `grpc-encoding`, `method` the method's schema when known.
pub fn decode_body<I>(
    chunks: I,
    encoding: Option<&str>,
    method: Option<&MethodSchema>,
    direction: Direction,
    limits: DecodeLimits,
) -> DecodedBody
where
    I: IntoIterator<Item = Bytes>,
{
    let mut framer = FrameDecoder::new(limits.max_message);
    let mut messages = Vec::new();
    let mut error = None;
    // A message whose prefix is known but whose payload will not be decoded.
    let mut undecoded = None;
    for chunk in chunks {
        if let Err(e) = framer.push(chunk, &mut messages) {
            if let FramingError::TooLong {
                len, compressed, ..
            } = e
            {
                undecoded = Some((len as usize, compressed, e.to_string()));
            }
            error = Some(e.to_string());
            break;
        }
    }
    if error.is_none() {
        error = framer.incomplete().map(|rest| match rest {
            Incomplete::Prefix { have } => {
                format!("the body ends {have} bytes into a message prefix")
            }
            Incomplete::Payload {
                have,
                declared,
                compressed,
            } => {
                let kept = format!("only {have} of its {declared} bytes were captured");
                undecoded = Some((declared, compressed, kept));
                format!("the body ends {have} bytes into a {declared}-byte message")
            }
        });
    }
    let mut budget = limits.max_decompressed;
    let mut messages: Vec<DecodedMessage> = messages
        .into_iter()
        .map(|m| decode_message(m, encoding, method, direction, &mut budget))
        .collect();
    if let Some((size, compressed, why)) = undecoded {
        messages.push(DecodedMessage {
            size,
            compressed,
            json: None,
            decoding: None,
            error: Some(why),
        });
    }
    DecodedBody { messages, error }
}

fn decode_message(
    message: Message,
    encoding: Option<&str>,
    method: Option<&MethodSchema>,
    direction: Direction,
    budget: &mut usize,
) -> DecodedMessage {
    let mut out = DecodedMessage {
        size: message.payload.len(),
        compressed: message.compressed,
        json: None,
        decoding: None,
        error: None,
    };
    let inflated;
    let payload: &[u8] = if message.compressed {
        match decompress(encoding, &message.payload, *budget) {
            Ok(bytes) => {
                *budget -= bytes.len();
                inflated = bytes;
                &inflated
            }
            Err(e) => {
                out.error = Some(e.to_string());
                return out;
            }
        }
    } else {
        &message.payload
    };
    if let Some(method) = method {
        match method.decode(direction, payload) {
            Ok(json) => {
                out.json = Some(json);
                out.decoding = Some(Decoding::Schema);
                return out;
            }
            Err(e) => out.error = Some(e.to_string()),
        }
    }
    match wire::decode(payload) {
        Ok(json) => {
            out.json = Some(json);
            out.decoding = Some(Decoding::Wire);
        }
        Err(e) => {
            if out.error.is_none() {
                out.error = Some(e.to_string());
            }
        }
    }
    out
}
