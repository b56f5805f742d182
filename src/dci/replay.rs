//! Replay guard for receivers (PROTOCOL §3): remembers `(sender_id, message_id)` until the
//! signature expires, in bounded memory.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::error::{Error, Result};

pub struct ReplayGuard {
    seen: HashMap<(String, String), i64>,
    by_expiry: BinaryHeap<Reverse<(i64, String, String)>>,
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
        let key = (sender_id.to_owned(), message_id.to_owned());
        if self.seen.contains_key(&key) {
            return Ok(false);
        }
        if self.seen.len() >= self.max_entries {
            return Err(Error::Capacity(format!(
                "replay guard holds {} unexpired messages",
                self.seen.len()
            )));
        }
        self.by_expiry
            .push(Reverse((expires, key.0.clone(), key.1.clone())));
        self.seen.insert(key, expires);
        Ok(true)
    }

    fn purge(&mut self, now: i64) {
        while let Some(Reverse((expires, _, _))) = self.by_expiry.peek() {
            if *expires >= now {
                break;
            }
            if let Some(Reverse((_, s, m))) = self.by_expiry.pop() {
                self.seen.remove(&(s, m));
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
    }
}
