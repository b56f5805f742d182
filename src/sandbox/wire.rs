//! What of HTTP/1.1 framing the sandbox still reads by hand: where a request head ends on the
//! connection, and the frames of a chunked body (the chunk sizes themselves are parsed by
//! `httparse::parse_chunk_size`, the head by `httparse` in `http1.rs`). Public for the
//! `http1_framing` fuzz target; not an API.

use std::io::{BufRead, Read};

/// A chunk-size line (size and extensions), bytes.
const MAX_CHUNK_LINE: usize = 1024;

/// Why a line could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineError {
    /// Closed, cut or a read error before the end of the line.
    Closed,
    /// The budget ran out before the end of the line.
    TooLong,
}

/// Why a chunked body could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkError {
    /// The data is longer than the limit.
    TooLarge,
    /// Cut, timed out or not chunked framing.
    Malformed,
}

/// Appends one line, its terminator (LF, or CRLF) included, to `out`, using up `budget` bytes.
fn read_line(r: &mut impl BufRead, budget: &mut usize, out: &mut Vec<u8>) -> Result<(), LineError> {
    let n = r
        .by_ref()
        .take(*budget as u64)
        .read_until(b'\n', out)
        .map_err(|_| LineError::Closed)?;
    *budget -= n;
    if n > 0 && out.last() == Some(&b'\n') {
        Ok(())
    } else if n > 0 && *budget == 0 {
        Err(LineError::TooLong)
    } else {
        Err(LineError::Closed)
    }
}

fn is_blank(line: &[u8]) -> bool {
    matches!(line, b"\n" | b"\r\n")
}

/// Reads a request head into `out`: its lines up to and including the first empty one, empty
/// lines before the request line left out (RFC 9112 §2.2), at most `max` bytes in all. Reads
/// nothing past the head.
pub fn read_head_bytes(
    r: &mut impl BufRead,
    max: usize,
    out: &mut Vec<u8>,
) -> Result<(), LineError> {
    let mut budget = max;
    out.clear();
    loop {
        let start = out.len();
        read_line(r, &mut budget, out)?;
        if is_blank(&out[start..]) {
            if start > 0 {
                return Ok(());
            }
            out.clear();
        }
    }
}

/// Reads a chunked body (RFC 9112 §7.1): chunks of at most `limit` bytes in all, then trailer
/// fields (at most `max_trailers` bytes, ignored). Reads nothing past the body.
pub fn read_chunked(
    r: &mut impl BufRead,
    limit: usize,
    max_trailers: usize,
) -> Result<Vec<u8>, ChunkError> {
    let mut body = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let mut budget = MAX_CHUNK_LINE;
        read_line(r, &mut budget, &mut line).map_err(|_| ChunkError::Malformed)?;
        // httparse reads an empty size as 0: a size has at least one digit.
        let size = match httparse::parse_chunk_size(&line) {
            Ok(httparse::Status::Complete((n, size)))
                if n == line.len() && line[0].is_ascii_hexdigit() =>
            {
                size
            }
            _ => return Err(ChunkError::Malformed),
        };
        if size == 0 {
            break;
        }
        if (body.len() as u64).saturating_add(size) > limit as u64 {
            return Err(ChunkError::TooLarge);
        }
        // Grown as the data comes, not allocated from the announced size.
        let read = r.by_ref().take(size).read_to_end(&mut body);
        if read.ok() != Some(size as usize) {
            return Err(ChunkError::Malformed);
        }
        line.clear();
        read_line(r, &mut 2, &mut line).map_err(|_| ChunkError::Malformed)?;
        if line != b"\r\n" {
            return Err(ChunkError::Malformed);
        }
    }
    // Trailer fields, ignored.
    let mut budget = max_trailers;
    loop {
        line.clear();
        read_line(r, &mut budget, &mut line).map_err(|_| ChunkError::Malformed)?;
        if is_blank(&line) {
            return Ok(body);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(text: &str, limit: usize) -> Result<Vec<u8>, ChunkError> {
        read_chunked(&mut text.as_bytes(), limit, 1024)
    }

    #[test]
    fn chunked_bodies() {
        assert_eq!(
            body("5;ext=1\r\nhello\r\n1\r\n!\r\n0\r\nTrailer: x\r\n\r\n", 100).unwrap(),
            b"hello!"
        );
        assert_eq!(body("0\r\n\r\n", 0).unwrap(), b"");
        assert_eq!(
            body("5\r\nhello\r\n0\r\n\r\n", 4),
            Err(ChunkError::TooLarge)
        );
        assert_eq!(
            body("5\r\nhelloX\r\n0\r\n\r\n", 100),
            Err(ChunkError::Malformed)
        );
        assert_eq!(body("5\r\nhello", 100), Err(ChunkError::Malformed));
        assert_eq!(body("5\r\nhel", 100), Err(ChunkError::Malformed));
    }

    #[test]
    fn bad_chunk_sizes_are_refused() {
        for bad in [
            "zz\r\n",
            "\r\n",
            "-1\r\nx\r\n0\r\n\r\n",
            "+5\r\nhello\r\n0\r\n\r\n",
            "0x5\r\nhello\r\n0\r\n\r\n",
            "5 5\r\nhello\r\n0\r\n\r\n",
            // 17 hex digits overflow a u64.
            "10000000000000000\r\n",
            "5\rX\nhello\r\n0\r\n\r\n",
        ] {
            assert_eq!(body(bad, 100), Err(ChunkError::Malformed), "{bad:?}");
        }
        // The largest sizes are refused by the limit, without overflow or allocation.
        assert_eq!(body("ffffffffffffffff\r\n", 100), Err(ChunkError::TooLarge));
        assert_eq!(
            body("1\r\na\r\nffffffffffffffff\r\n", usize::MAX),
            Err(ChunkError::Malformed)
        );
        let long_ext = format!("1;{}\r\na\r\n0\r\n\r\n", "e".repeat(MAX_CHUNK_LINE));
        assert_eq!(body(&long_ext, 100), Err(ChunkError::Malformed));
        // Trailers past their budget.
        let trailers = format!("0\r\nX: {}\r\n\r\n", "t".repeat(2000));
        assert_eq!(body(&trailers, 100), Err(ChunkError::Malformed));
    }

    #[test]
    fn heads_end_at_their_empty_line() {
        let mut r = "\r\n\nGET / HTTP/1.1\r\nA: b\r\n\r\nGET /next".as_bytes();
        let mut out = Vec::new();
        read_head_bytes(&mut r, 1024, &mut out).unwrap();
        assert_eq!(out, b"GET / HTTP/1.1\r\nA: b\r\n\r\n");
        assert_eq!(r, b"GET /next");
        assert_eq!(
            read_head_bytes(&mut r, 1024, &mut out),
            Err(LineError::Closed)
        );
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(100));
        assert_eq!(
            read_head_bytes(&mut big.as_bytes(), 64, &mut out),
            Err(LineError::TooLong)
        );
    }
}
