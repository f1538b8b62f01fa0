//! Message bodies on the wire: protobuf, gzip-compressed when that helps,
//! with inflation capped so a small body cannot expand without limit.

use std::io::{Read, Write};

use axum::http::{HeaderMap, header};
use yui_protocol::wire::MAX_MESSAGE_BYTES;

pub const CONTENT_TYPE: &str = "application/x-protobuf";
/// Bodies smaller than this are sent as they are.
const COMPRESS_FROM: usize = 512;

/// Gzip-compresses a message when it is large enough to gain from it.
pub fn compress(raw: Vec<u8>) -> (Vec<u8>, bool) {
    if raw.len() < COMPRESS_FROM {
        return (raw, false);
    }
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(raw.len() / 3),
        // Level 6 (the default). Level 3 took half the CPU but sent 13 %
        // more bytes on the consortium workload (benches/sync.rs prints
        // levels 1, 3, 6 and 9). The CPU only competed with the receiver
        // because the benchmark runs both nodes on one machine; between
        // towns, on rural links, the bytes are what costs.
        flate2::Compression::default(),
    );
    if enc.write_all(&raw).is_err() {
        return (raw, false);
    }
    match enc.finish() {
        Ok(z) if z.len() < raw.len() => (z, true),
        _ => (raw, false),
    }
}

/// Inflates a gzip body, refusing more than [`MAX_MESSAGE_BYTES`].
pub fn inflate(body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .take(MAX_MESSAGE_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("undecodable gzip body: {e}"))?;
    if out.len() > MAX_MESSAGE_BYTES {
        return Err(format!(
            "the body inflates beyond {MAX_MESSAGE_BYTES} bytes"
        ));
    }
    Ok(out)
}

/// The raw message of a request or response, given its headers.
pub fn decode_body(headers: &HeaderMap, body: &[u8]) -> Result<Vec<u8>, String> {
    match headers.get(header::CONTENT_ENCODING).map(|v| v.as_bytes()) {
        None | Some(b"identity") => Ok(body.to_vec()),
        Some(b"gzip") => inflate(body),
        Some(other) => Err(format!(
            "unsupported content encoding {:?}",
            String::from_utf8_lossy(other)
        )),
    }
}

/// Compresses a response when the request said it accepts gzip.
pub fn encode_body(request_headers: &HeaderMap, raw: Vec<u8>) -> (Vec<u8>, bool) {
    let accepts = request_headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    if accepts { compress(raw) } else { (raw, false) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bomb() {
        let raw = "研修".repeat(10_000).into_bytes();
        let (z, gz) = compress(raw.clone());
        assert!(gz && z.len() < raw.len() / 10);
        assert_eq!(inflate(&z).expect("inflate"), raw);
        let (small, gz) = compress(b"tiny".to_vec());
        assert!(!gz);
        assert_eq!(small, b"tiny");
        // 64 MiB of zeros compress to ~64 KiB: refused, not inflated.
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![0u8; 64 * 1024 * 1024]).expect("write");
        let bomb = enc.finish().expect("finish");
        assert!(bomb.len() < 100_000, "{}", bomb.len());
        assert!(inflate(&bomb).is_err());
        assert!(inflate(b"not gzip").is_err());
    }
}
