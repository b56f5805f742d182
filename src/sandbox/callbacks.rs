//! Delivery of signed callbacks (`on-search`, `on-subscribe`, `on-unsubscribe`,
//! `txn-on-status`, `notify`) from background threads, in due-time order.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::dci::envelope::Status;

/// The callback route names, in the order [`callback_url`] recognises them.
const CALLBACK_TAILS: [&str; 5] = [
    "txn/on-status",
    "on-search",
    "on-subscribe",
    "on-unsubscribe",
    "notify",
];

/// Where a callback goes, from the request's `sender_uri` and the callback route (`on-search`,
/// `on-subscribe`, `on-unsubscribe`, `txn/on-status` or `notify`), unless the sandbox posts every
/// callback to `sender_uri` as given (`SandboxConfig::one_callback_url`):
///
/// - when the URI's path ends with a callback route (`…/on-search`, `…/on-subscribe`,
///   `…/on-unsubscribe`, `…/notify` or `…/txn/on-status`), that route is replaced by the wanted
///   one: `https://sp/registry/on-search` → `https://sp/registry/txn/on-status`;
/// - otherwise the URI is a base and the route is appended: `https://sp/cb` →
///   `https://sp/cb/on-search`.
///
/// A query string is kept; a trailing `/` is ignored.
pub fn callback_url(sender_uri: &str, route: &str) -> String {
    let (path, query) = match sender_uri.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (sender_uri, None),
    };
    let path = path.trim_end_matches('/');
    let base = CALLBACK_TAILS
        .iter()
        .find_map(|tail| {
            path.strip_suffix(tail)
                .and_then(|rest| rest.strip_suffix('/'))
        })
        .unwrap_or(path);
    let mut url = format!("{base}/{route}");
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}

/// One callback to send.
#[derive(Debug)]
pub struct CallbackJob {
    pub due: Instant,
    pub url: String,
    /// `header.action`: `on-search`, `on-subscribe`, `on-unsubscribe`, `txn-on-status`, `notify`.
    pub action: &'static str,
    pub receiver_id: String,
    pub status: Status,
    pub total_count: usize,
    pub completed_count: usize,
    pub message: Value,
    pub bad_signature: bool,
    pub duplicate: bool,
}

struct Pending {
    seq: u64,
    job: CallbackJob,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.seq == other.seq
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    /// Reversed: the heap's top is the earliest due, then the first queued.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.job.due, other.seq).cmp(&(self.job.due, self.seq))
    }
}

#[derive(Default)]
struct State {
    heap: BinaryHeap<Pending>,
    seq: u64,
    stopping: bool,
}

/// A due-time ordered queue shared by the delivery threads.
#[derive(Default)]
pub struct CallbackQueue {
    state: Mutex<State>,
    cv: Condvar,
}

impl CallbackQueue {
    pub fn push(&self, job: CallbackJob) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.stopping {
            return;
        }
        s.seq += 1;
        let seq = s.seq;
        s.heap.push(Pending { seq, job });
        self.cv.notify_one();
    }

    /// The next due job; blocks until one is due. None once stopping.
    pub fn next(&self) -> Option<CallbackJob> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if s.stopping {
                return None;
            }
            let wait = match s.heap.peek() {
                Some(top) => {
                    let now = Instant::now();
                    if top.job.due <= now {
                        return s.heap.pop().map(|p| p.job);
                    }
                    top.job.due - now
                }
                None => Duration::from_secs(3600),
            };
            s = self
                .cv
                .wait_timeout(s, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Stops the queue; returns how many callbacks were still waiting (they are discarded).
    pub fn stop(&self) -> usize {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.stopping = true;
        let n = s.heap.len();
        s.heap.clear();
        self.cv.notify_all();
        n
    }

    /// Callbacks waiting to be sent.
    pub fn pending(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .heap
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_urls_follow_the_sibling_rule() {
        let cases = [
            (
                "http://h/registry/on-search",
                "on-search",
                "http://h/registry/on-search",
            ),
            (
                "http://h/registry/on-search",
                "txn/on-status",
                "http://h/registry/txn/on-status",
            ),
            (
                "http://h/registry/txn/on-status",
                "on-subscribe",
                "http://h/registry/on-subscribe",
            ),
            ("http://h/cb", "on-search", "http://h/cb/on-search"),
            (
                "http://h/cb/",
                "on-unsubscribe",
                "http://h/cb/on-unsubscribe",
            ),
            (
                "http://h:8/x/on-search?t=1",
                "txn/on-status",
                "http://h:8/x/txn/on-status?t=1",
            ),
            ("http://h", "on-search", "http://h/on-search"),
        ];
        for (uri, route, want) in cases {
            assert_eq!(callback_url(uri, route), want, "{uri} {route}");
        }
    }

    #[test]
    fn jobs_come_out_in_due_order_and_stop_discards() {
        let q = CallbackQueue::default();
        let now = Instant::now();
        let job = |ms: u64, url: &str| CallbackJob {
            due: now + Duration::from_millis(ms),
            url: url.into(),
            action: "on-search",
            receiver_id: "r".into(),
            status: Status::Succ,
            total_count: 1,
            completed_count: 1,
            message: Value::Null,
            bad_signature: false,
            duplicate: false,
        };
        q.push(job(30, "late"));
        q.push(job(0, "first"));
        q.push(job(0, "second"));
        assert_eq!(q.next().unwrap().url, "first");
        assert_eq!(q.next().unwrap().url, "second");
        assert_eq!(q.next().unwrap().url, "late");
        assert!(Instant::now() >= now + Duration::from_millis(30));
        q.push(job(10_000, "never"));
        assert_eq!(q.stop(), 1);
        assert!(q.next().is_none());
    }
}
