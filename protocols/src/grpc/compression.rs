//! Decompression of compressed gRPC messages, as named by the stream's `grpc-encoding`.
//!
//! Output is bounded: a message that inflates beyond the caller's limit is refused after at
//! most `limit + 1` bytes were produced, so a decompression bomb costs no more memory than
//! the limit.

use std::io::Read;

use flate2::read::{GzDecoder, ZlibDecoder};

/// Why a compressed message could not be decompressed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecompressError {
    /// The message is flagged compressed but the stream named no `grpc-encoding`.
    #[error("the message is compressed but the stream has no grpc-encoding header")]
    NoEncoding,
    /// The encoding is one rig does not decompress.
    #[error("unsupported grpc-encoding `{0}` (rig decompresses gzip, deflate and identity)")]
    Unsupported(String),
    /// The payload is not valid for its encoding.
    #[error("invalid {encoding} data: {reason}")]
    Invalid {
        /// The encoding.
        encoding: &'static str,
        /// What the decompressor said.
        reason: String,
    },
    /// The message inflates beyond the limit.
    #[error("the message inflates to more than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
}

/// Decompresses one message payload flagged compressed, `encoding` being the stream's
/// `grpc-encoding` value (`None` when absent), producing at most `limit` bytes.
pub fn decompress(
    encoding: Option<&str>,
    payload: &[u8],
    limit: usize,
) -> Result<Vec<u8>, DecompressError> {
    let encoding = encoding.map(str::trim).ok_or(DecompressError::NoEncoding)?;
    if encoding.eq_ignore_ascii_case("gzip") {
        read_bounded(GzDecoder::new(payload), "gzip", limit)
    } else if encoding.eq_ignore_ascii_case("deflate") {
        read_bounded(ZlibDecoder::new(payload), "deflate", limit)
    } else if encoding.eq_ignore_ascii_case("identity") {
        if payload.len() > limit {
            return Err(DecompressError::TooLarge { limit });
        }
        Ok(payload.to_vec())
    } else {
        Err(DecompressError::Unsupported(encoding.to_string()))
    }
}

fn read_bounded(
    reader: impl Read,
    encoding: &'static str,
    limit: usize,
) -> Result<Vec<u8>, DecompressError> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| DecompressError::Invalid {
            encoding,
            reason: e.to_string(),
        })?;
    if out.len() > limit {
        return Err(DecompressError::TooLarge { limit });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::{GzEncoder, ZlibEncoder};
    use flate2::Compression;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gzip_and_deflate_round_trip() {
        assert_eq!(
            decompress(Some("gzip"), &gzip(b"hello"), 100).unwrap(),
            b"hello"
        );
        let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
        z.write_all(b"zlib").unwrap();
        let z = z.finish().unwrap();
        assert_eq!(decompress(Some("deflate"), &z, 100).unwrap(), b"zlib");
        assert_eq!(decompress(Some("identity"), b"raw", 3).unwrap(), b"raw");
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        let bomb = gzip(&vec![0u8; 10 << 20]);
        assert!(bomb.len() < 20_000, "{}", bomb.len());
        assert_eq!(
            decompress(Some("GZIP"), &bomb, 1 << 16),
            Err(DecompressError::TooLarge { limit: 1 << 16 })
        );
        assert!(decompress(Some("gzip"), &gzip(&[1; 64]), 64).is_ok());
        assert!(decompress(Some("gzip"), &gzip(&[1; 65]), 64).is_err());
    }

    #[test]
    fn bad_input_and_unknown_encodings_are_errors() {
        assert_eq!(decompress(None, b"x", 10), Err(DecompressError::NoEncoding));
        let err = decompress(Some("snappy"), b"x", 10).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported grpc-encoding `snappy` (rig decompresses gzip, deflate and identity)"
        );
        let err = decompress(Some("gzip"), b"not gzip at all", 10).unwrap_err();
        assert!(err.to_string().starts_with("invalid gzip data"), "{err}");
        let mut cut = gzip(b"hello world");
        cut.truncate(cut.len() - 6);
        assert!(decompress(Some("gzip"), &cut, 100).is_err());
    }
}
