//! An HPACK decoder (RFC 7541) for the relay: it follows one direction's header blocks in
//! order, so its dynamic table matches the peer's, and hands each field to a callback as
//! borrowed bytes. No allocation per field but the table's own entries; Huffman strings are
//! decoded into buffers the decoder keeps.
//!
//! It is lenient where only the receiving peer must be strict: a table size update is taken
//! at any size (the receiver enforces the limit it advertised), so the decoder never falls
//! out of step with a peer the receiver accepts.

use std::collections::VecDeque;
use std::sync::LazyLock;

use super::hpack_tables::{HUFFMAN_CODES, STATIC_TABLE};

/// The dynamic table size both peers start with (RFC 7541 §4.2, RFC 9113 §6.5.2).
const INITIAL_TABLE_SIZE: usize = 4096;
/// The overhead counted for every table entry (RFC 7541 §4.1).
const ENTRY_OVERHEAD: usize = 32;

/// Why a header block could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum HpackError {
    #[error("the header block ends in the middle of a field")]
    Truncated,
    #[error("an integer is too large")]
    IntegerOverflow,
    #[error("index {0} is not in the table")]
    BadIndex(usize),
    #[error("a Huffman-coded string is invalid")]
    BadHuffman,
}

/// One direction's decoding state.
pub(super) struct Decoder {
    /// Newest entry first: (name and value in one buffer, name length).
    table: VecDeque<(Box<[u8]>, usize)>,
    size: usize,
    max_size: usize,
    name: Vec<u8>,
    value: Vec<u8>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            table: VecDeque::new(),
            size: 0,
            max_size: INITIAL_TABLE_SIZE,
            name: Vec::new(),
            value: Vec::new(),
        }
    }
}

impl Decoder {
    /// Decodes one whole header block, calling `field` with every name and value in order.
    pub(super) fn decode(
        &mut self,
        mut block: &[u8],
        mut field: impl FnMut(&[u8], &[u8]),
    ) -> Result<(), HpackError> {
        while let Some(&first) = block.first() {
            if first & 0x80 != 0 {
                let index = integer(&mut block, 7)?;
                let (name, value) = self.entry(index)?;
                field(name, value);
            } else if first & 0x40 != 0 {
                self.literal(&mut block, 6, true, &mut field)?;
            } else if first & 0x20 != 0 {
                self.max_size = integer(&mut block, 5)?;
                self.evict(0);
            } else {
                // Without indexing (0000) or never indexed (0001): the same to a decoder.
                self.literal(&mut block, 4, false, &mut field)?;
            }
        }
        Ok(())
    }

    /// A literal field whose name is indexed (prefix `bits`) or follows as a string.
    fn literal(
        &mut self,
        block: &mut &[u8],
        bits: u8,
        index: bool,
        field: &mut impl FnMut(&[u8], &[u8]),
    ) -> Result<(), HpackError> {
        let name_index = integer(block, bits)?;
        let mut name = std::mem::take(&mut self.name);
        name.clear();
        if name_index == 0 {
            string(block, &mut name)?;
        } else {
            let (indexed, _) = self.entry(name_index)?;
            name.extend_from_slice(indexed);
        }
        let mut value = std::mem::take(&mut self.value);
        value.clear();
        let read = string(block, &mut value);
        if read.is_ok() {
            field(&name, &value);
            if index {
                self.insert(&name, &value);
            }
        }
        self.name = name;
        self.value = value;
        read
    }

    /// The entry at `index` (1-based, static table first).
    fn entry(&self, index: usize) -> Result<(&[u8], &[u8]), HpackError> {
        if let Some(&(name, value)) = index.checked_sub(1).and_then(|i| STATIC_TABLE.get(i)) {
            return Ok((name, value));
        }
        let (bytes, name_len) = index
            .checked_sub(STATIC_TABLE.len() + 1)
            .and_then(|i| self.table.get(i))
            .ok_or(HpackError::BadIndex(index))?;
        Ok(bytes.split_at(*name_len))
    }

    fn insert(&mut self, name: &[u8], value: &[u8]) {
        let size = name.len() + value.len() + ENTRY_OVERHEAD;
        self.evict(size);
        if size > self.max_size {
            // An entry larger than the table empties it and is not added (RFC 7541 §4.4).
            return;
        }
        let mut bytes = Vec::with_capacity(name.len() + value.len());
        bytes.extend_from_slice(name);
        bytes.extend_from_slice(value);
        self.table
            .push_front((bytes.into_boxed_slice(), name.len()));
        self.size += size;
    }

    /// Evicts the oldest entries until `room` more octets fit.
    fn evict(&mut self, room: usize) {
        while self.size + room > self.max_size {
            let Some((bytes, _)) = self.table.pop_back() else {
                break;
            };
            self.size -= bytes.len() + ENTRY_OVERHEAD;
        }
    }
}

/// An integer with a `bits`-bit prefix (RFC 7541 §5.1).
fn integer(block: &mut &[u8], bits: u8) -> Result<usize, HpackError> {
    let mask = (1u16 << bits) as usize - 1;
    let (&first, mut rest) = block.split_first().ok_or(HpackError::Truncated)?;
    let mut value = usize::from(first) & mask;
    if value == mask {
        let mut shift = 0;
        loop {
            let (&byte, tail) = rest.split_first().ok_or(HpackError::Truncated)?;
            rest = tail;
            if shift > 28 {
                return Err(HpackError::IntegerOverflow);
            }
            value += usize::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                break;
            }
        }
    }
    *block = rest;
    Ok(value)
}

/// A string literal (RFC 7541 §5.2), appended to `out`.
fn string(block: &mut &[u8], out: &mut Vec<u8>) -> Result<(), HpackError> {
    let huffman = block.first().ok_or(HpackError::Truncated)? & 0x80 != 0;
    let len = integer(block, 7)?;
    if block.len() < len {
        return Err(HpackError::Truncated);
    }
    let (bytes, rest) = block.split_at(len);
    *block = rest;
    if huffman {
        huffman_decode(bytes, out)
    } else {
        out.extend_from_slice(bytes);
        Ok(())
    }
}

/// The canonical Huffman code by length: for each length, the first code, how many codes
/// and where their symbols start in `symbols`.
struct Canonical {
    first: [u32; 31],
    count: [u32; 31],
    offset: [usize; 31],
    symbols: Vec<u16>,
}

static CANONICAL: LazyLock<Canonical> = LazyLock::new(|| {
    let mut by_code: Vec<(u8, u32, u16)> = HUFFMAN_CODES
        .iter()
        .enumerate()
        .map(|(symbol, &(code, len))| (len, code, symbol as u16))
        .collect();
    by_code.sort_unstable();
    let mut table = Canonical {
        first: [0; 31],
        count: [0; 31],
        offset: [0; 31],
        symbols: Vec::with_capacity(by_code.len()),
    };
    for (i, &(len, code, symbol)) in by_code.iter().enumerate() {
        let len = usize::from(len);
        if table.count[len] == 0 {
            table.first[len] = code;
            table.offset[len] = i;
        }
        table.count[len] += 1;
        table.symbols.push(symbol);
    }
    table
});

/// Decodes Huffman-coded `bytes` (RFC 7541 §5.2, Appendix B) onto `out`.
fn huffman_decode(bytes: &[u8], out: &mut Vec<u8>) -> Result<(), HpackError> {
    let table = &*CANONICAL;
    let (mut code, mut len) = (0u32, 0usize);
    for &byte in bytes {
        for bit in (0..8).rev() {
            code = code << 1 | u32::from(byte >> bit & 1);
            len += 1;
            if len > 30 {
                return Err(HpackError::BadHuffman);
            }
            let at = code.wrapping_sub(table.first[len]);
            if table.count[len] > 0 && code >= table.first[len] && at < table.count[len] {
                let symbol = table.symbols[table.offset[len] + at as usize];
                if symbol == 256 {
                    // End-of-string inside a string is an error (RFC 7541 §5.2).
                    return Err(HpackError::BadHuffman);
                }
                out.push(symbol as u8);
                code = 0;
                len = 0;
            }
        }
    }
    // What is left must be padding: fewer than 8 bits, all ones (the start of EOS).
    if len > 7 || code != (1 << len) - 1 {
        return Err(HpackError::BadHuffman);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(decoder: &mut Decoder, block: &[u8]) -> Vec<(String, String)> {
        let mut fields = Vec::new();
        decoder
            .decode(block, |n, v| {
                fields.push((
                    String::from_utf8(n.to_vec()).unwrap(),
                    String::from_utf8(v.to_vec()).unwrap(),
                ))
            })
            .unwrap();
        fields
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn every_symbol_round_trips_through_the_huffman_code() {
        for (symbol, &(code, len)) in HUFFMAN_CODES.iter().enumerate().take(256) {
            // The symbol's code, then padding with ones to a whole number of bytes.
            let bits = u64::from(len);
            let padded = bits.div_ceil(8) * 8;
            let word = (u64::from(code) << (padded - bits)) | ((1u64 << (padded - bits)) - 1);
            let bytes: Vec<u8> = (0..padded / 8)
                .rev()
                .map(|i| (word >> (i * 8)) as u8)
                .collect();
            let mut out = Vec::new();
            huffman_decode(&bytes, &mut out).unwrap();
            assert_eq!(out, [symbol as u8], "symbol {symbol}");
        }
    }

    /// RFC 7541 C.4: requests with Huffman coding, sharing one dynamic table.
    #[test]
    fn the_rfc_request_examples_decode() {
        let mut decoder = Decoder::default();
        let first = decode_all(
            &mut decoder,
            &hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff"),
        );
        assert_eq!(
            first,
            [
                (":method".into(), "GET".into()),
                (":scheme".into(), "http".into()),
                (":path".into(), "/".into()),
                (":authority".into(), "www.example.com".into()),
            ]
        );
        let second = decode_all(&mut decoder, &hex("8286 84be 5886 a8eb 1064 9cbf"));
        assert_eq!(second[3], (":authority".into(), "www.example.com".into()));
        assert_eq!(second[4], ("cache-control".into(), "no-cache".into()));
        let third = decode_all(
            &mut decoder,
            &hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf"),
        );
        assert_eq!(third[1], (":scheme".into(), "https".into()));
        assert_eq!(third[2], (":path".into(), "/index.html".into()));
        assert_eq!(third[4], ("custom-key".into(), "custom-value".into()));
        assert_eq!(
            decoder.size, 164,
            "the table holds what RFC 7541 C.4.3 says"
        );
    }

    /// RFC 7541 C.5: responses with a 256-octet table, so entries are evicted.
    #[test]
    fn the_rfc_response_examples_decode_with_eviction() {
        let mut decoder = Decoder {
            max_size: 256,
            ..Decoder::default()
        };
        decode_all(
            &mut decoder,
            &hex(
                "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 \
                 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 \
                 6c65 2e63 6f6d",
            ),
        );
        let second = decode_all(&mut decoder, &hex("4803 3330 37c1 c0bf"));
        assert_eq!(second[0], (":status".into(), "307".into()));
        assert_eq!(
            second[3],
            ("location".into(), "https://www.example.com".into())
        );
        assert_eq!(decoder.size, 222);
        assert_eq!(decoder.table.len(), 4);
    }

    #[test]
    fn the_proxys_own_literals_decode() {
        let mut block = Vec::new();
        crate::http::h2_wire::put_literal(&mut block, b":status", b"502");
        crate::http::h2_wire::put_literal(&mut block, b"x-long", &[b'v'; 300]);
        let mut decoder = Decoder::default();
        let fields = decode_all(&mut decoder, &block);
        assert_eq!(fields[0], (":status".into(), "502".into()));
        assert_eq!(fields[1], ("x-long".into(), "v".repeat(300)));
        assert!(decoder.table.is_empty(), "literals without indexing");
    }

    /// Random and mutated blocks (a fixed xorshift sequence, so a failure reproduces): the
    /// decoder never panics and its table never exceeds its size.
    #[test]
    fn random_and_mutated_blocks_never_panic() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let valid = [
            hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff"),
            hex("8286 84be 5886 a8eb 1064 9cbf"),
            hex("4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c"),
            hex("3fe1 1f 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf"),
        ];
        let mut decoder = Decoder::default();
        for round in 0..50_000 {
            let mut block = if round % 2 == 0 {
                valid[(next() % valid.len() as u64) as usize].clone()
            } else {
                (0..next() % 64).map(|_| next() as u8).collect()
            };
            for _ in 0..next() % 4 {
                if block.is_empty() {
                    break;
                }
                let at = (next() % block.len() as u64) as usize;
                block[at] = next() as u8;
            }
            let _ = decoder.decode(&block, |name, value| {
                std::hint::black_box((name.len(), value.len()));
            });
            assert!(decoder.size <= decoder.max_size || decoder.table.is_empty());
            if round % 1000 == 0 {
                decoder = Decoder::default();
            }
        }
    }

    #[test]
    fn bad_blocks_are_errors_not_panics() {
        let mut decoder = Decoder::default();
        assert_eq!(
            decoder.decode(&[0x80], |_, _| {}),
            Err(HpackError::BadIndex(0))
        );
        assert_eq!(
            decoder.decode(&[0xff, 0x80], |_, _| {}),
            Err(HpackError::Truncated)
        );
        assert_eq!(
            decoder.decode(&[0x00, 0x05, b'a'], |_, _| {}),
            Err(HpackError::Truncated)
        );
        assert_eq!(
            decoder.decode(&[0xbe], |_, _| {}),
            Err(HpackError::BadIndex(62)),
            "an empty dynamic table"
        );
        assert_eq!(
            decoder.decode(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], |_, _| {}),
            Err(HpackError::IntegerOverflow)
        );
        // A Huffman string of one zero byte: "000000" is not padding.
        assert_eq!(
            decoder.decode(&[0x00, 0x01, b'a', 0x81, 0x00], |_, _| {}),
            Err(HpackError::BadHuffman)
        );
    }
}
