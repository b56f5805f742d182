//! The sandbox's hand-written HTTP/1.1 framing (`spp_dci_ibr::sandbox::wire`): where a request
//! head ends on the connection, and chunked bodies (sizes by `httparse::parse_chunk_size`,
//! the frames around them by hand). The first byte picks the body limit.
//!
//! Properties: never panics nor allocates past what arrived; a head read is a prefix of the
//! input that ends with its one empty line, and reading consumes exactly it; an accepted
//! chunked body is at most the limit, consumed exactly its framing, and the same data framed
//! again as one chunk reads back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spp_dci_ibr::sandbox::wire::{read_chunked, read_head_bytes, ChunkError};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, input)) = data.split_first() else {
        return;
    };
    let limit = [0usize, 1, 16, 4096][usize::from(pick & 3)];

    let mut r = input;
    let mut head = Vec::new();
    if read_head_bytes(&mut r, 1024, &mut head).is_ok() {
        assert!(head.ends_with(b"\n\r\n") || head.ends_with(b"\n\n"));
        assert!(head.len() <= 1024);
        let consumed = input.len() - r.len();
        assert!(input[..consumed].ends_with(&head));
    }

    let mut r = input;
    match read_chunked(&mut r, limit, 1024) {
        Ok(body) => {
            assert!(body.len() <= limit);
            let consumed = input.len() - r.len();
            assert!(consumed >= 4, "at least the last chunk and the empty line");
            let mut again = Vec::new();
            if !body.is_empty() {
                again.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
                again.extend_from_slice(&body);
                again.extend_from_slice(b"\r\n");
            }
            again.extend_from_slice(b"0\r\n\r\n");
            let mut a = again.as_slice();
            assert_eq!(read_chunked(&mut a, limit, 1024).as_deref(), Ok(&body[..]));
            assert!(a.is_empty());
        }
        Err(ChunkError::TooLarge | ChunkError::Malformed) => {}
    }
});
