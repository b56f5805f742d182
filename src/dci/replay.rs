//! Replay guard (PROTOCOL §3): remembers `(sender_id, message_id)` until the signature expires,
//! in bounded memory. Receivers of callbacks use it, and so does the client for the answers it
//! reads (PROTOCOL §6: an answer's message_id is never accepted twice).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use sha2::{Digest, Sha256};

use super::error::{Error, Result};

/// A remembered message: 128 bits of SHA-256 over the length-prefixed `sender_id` and
/// `message_id`. A fixed 24 bytes
/// per entry (with its expiry) whatever the peer's ids, and collisions out of reach.
type Seen = u128;

fn seen_key(sender_id: &str, message_id: &str) -> Seen {
    let mut h = Sha256::new();
    h.update((sender_id.len() as u64).to_le_bytes());
    h.update(sender_id.as_bytes());
    h.update(message_id.as_bytes());
    let d = h.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&d[..16]);
    u128::from_le_bytes(first)
}

pub struct ReplayGuard {
    seen: HashMap<Seen, i64>,
    by_expiry: BinaryHeap<Reverse<(i64, Seen)>>,
    max_entries: usize,
}

impl ReplayGuard {
    pub fn new(max_entries: usize) -> Self {
        ReplayGuard {
            seen: HashMap::new(),
            by_expiry: BinaryHeap::new(),
            max_entries: max_entries.max(1),
        }
    }

    /// `Ok(true)` the first time a message is seen (it is then remembered until `expires`),
    /// `Ok(false)` for a replay. When the guard is full of live entries it refuses with
    /// [`Error::Capacity`] rather than forget one (forgetting would let a replay in).
    pub fn check(
        &mut self,
        sender_id: &str,
        message_id: &str,
        expires: i64,
        now: i64,
    ) -> Result<bool> {
        self.purge(now);
        let key = seen_key(sender_id, message_id);
        if self.seen.contains_key(&key) {
            return Ok(false);
        }
        if self.seen.len() >= self.max_entries {
            return Err(Error::Capacity(format!(
                "replay guard holds {} unexpired messages",
                self.seen.len()
            )));
        }
        self.by_expiry.push(Reverse((expires, key)));
        self.seen.insert(key, expires);
        Ok(true)
    }

    fn purge(&mut self, now: i64) {
        while let Some(Reverse((expires, _))) = self.by_expiry.peek() {
            if *expires >= now {
                break;
            }
            if let Some(Reverse((_, key))) = self.by_expiry.pop() {
                self.seen.remove(&key);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_until_expiry_and_stays_bounded() {
        let mut g = ReplayGuard::new(2);
        assert!(g.check("s", "m1", 100, 0).unwrap());
        assert!(!g.check("s", "m1", 100, 50).unwrap());
        assert!(g.check("other", "m1", 100, 50).unwrap());
        assert!(matches!(
            g.check("s", "m2", 100, 50),
            Err(Error::Capacity(_))
        ));
        assert!(
            !g.check("s", "m1", 100, 100).unwrap(),
            "still live at its expiry second"
        );
        assert!(
            g.check("s", "m1", 300, 101).unwrap(),
            "forgotten after expiry"
        );
        assert_eq!(g.len(), 1);
        // the length prefix keeps ("ab", "c") and ("a", "bc") apart
        let mut g = ReplayGuard::new(10);
        assert!(g.check("ab", "c", 100, 0).unwrap());
        assert!(g.check("a", "bc", 100, 0).unwrap());
    }
}
