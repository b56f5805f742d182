//! Fault injection, deterministic from a seed.
//!
//! Every request to a `/registry/*` route gets a sequence number in arrival order; the fault
//! decision for it is a pure function of `(seed, sequence number)` ([`Faults::decide`]), so the
//! same seed and the same request order give the same faults, whatever the thread timing. The
//! sequence restarts at 0 whenever the faults are replaced.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::dci::error::{Error, Result};

/// SplitMix64: a tiny, good-enough PRNG (Steele, Lea, Flood 2014). Not for secrets.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// What can go wrong, and how often. Rates are probabilities in `[0, 1]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    pub seed: u64,
    /// Added to every faultable request before it is handled.
    pub latency_ms: u64,
    /// Plus a uniform random extra of `0..=jitter_ms`.
    pub jitter_ms: u64,
    /// HTTP status → probability of answering that status (in the configured error style).
    pub error_rates: BTreeMap<u16, f64>,
    /// Probability of a broken connection: the sandbox reads the request, then closes the
    /// connection without an HTTP answer (clients see a transport error).
    pub drop_rate: f64,
    /// Probability of answering 200 with a body that is not JSON.
    pub garbage_rate: f64,
    /// Probability that a request waits an extra `stall_ms` before it is handled (a client
    /// with a shorter read timeout times out).
    pub stall_rate: f64,
    pub stall_ms: u64,
    /// Probability that a signed answer or callback carries a signature that does not verify.
    pub bad_signature_rate: f64,
    /// Probability that the `reference_id`s of an answer or callback are replaced.
    pub wrong_reference_rate: f64,
    /// Probability that a callback is delivered twice (same body, same `message_id`).
    pub duplicate_callback_rate: f64,
    /// Delay before every callback is sent.
    pub callback_delay_ms: u64,
    /// `Retry-After` seconds sent with injected 429 and 503 answers.
    pub retry_after: Option<u64>,
    /// Probability that a signed answer or callback goes out with an empty signature.
    pub unsigned_rate: f64,
    /// Probability that a signed answer or callback is signed by a key that is not in the
    /// sandbox's JWKS (under a kid that is not there either: a registry that rotated its key
    /// without publishing the new one).
    pub wrong_key_rate: f64,
    /// Probability that a registry route refuses a valid bearer token (401, as for an expired
    /// or revoked one).
    pub bad_token_rate: f64,
    /// The token endpoint refuses every client (401 `invalid_client`).
    pub refuse_tokens: bool,
    /// Seconds added to the sandbox's clock in what it sends: the `Date` header, header
    /// timestamps and signatures' `created`/`expires` (negative: behind).
    pub clock_skew_s: i64,
}

/// What happens to one request before it is handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Injected {
    /// Handled normally.
    None,
    /// The connection is closed without an HTTP answer.
    Drop,
    /// 200 with a body that is not JSON.
    Garbage,
    /// An error answer with this HTTP status.
    Status(u16),
}

/// The fault decision for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub latency_ms: u64,
    pub injected: Injected,
    pub bad_signature: bool,
    pub wrong_reference: bool,
    pub duplicate_callback: bool,
    pub unsigned: bool,
    pub wrong_key: bool,
    pub bad_token: bool,
}

impl Decision {
    pub const NONE: Decision = Decision {
        latency_ms: 0,
        injected: Injected::None,
        bad_signature: false,
        wrong_reference: false,
        duplicate_callback: false,
        unsigned: false,
        wrong_key: false,
        bad_token: false,
    };
}

const KEYS: [&str; 18] = [
    "seed",
    "stall_rate",
    "stall_ms",
    "latency_ms",
    "jitter_ms",
    "error_rates",
    "drop_rate",
    "garbage_rate",
    "bad_signature_rate",
    "wrong_reference_rate",
    "duplicate_callback_rate",
    "callback_delay_ms",
    "retry_after",
    "unsigned_rate",
    "wrong_key_rate",
    "bad_token_rate",
    "refuse_tokens",
    "clock_skew_s",
];

fn config(msg: impl Into<String>) -> Error {
    Error::Config(format!("faults: {}", msg.into()))
}

fn rate(name: &str, v: &Value) -> Result<f64> {
    let r = v
        .as_f64()
        .ok_or_else(|| config(format!("'{name}' must be a number")))?;
    if !(0.0..=1.0).contains(&r) {
        return Err(config(format!("'{name}' must be between 0 and 1, not {r}")));
    }
    Ok(r)
}

fn count(name: &str, v: &Value) -> Result<u64> {
    v.as_u64()
        .ok_or_else(|| config(format!("'{name}' must be a non-negative integer")))
}

fn status(key: &str) -> Result<u16> {
    match key.trim().parse::<u16>() {
        Ok(s) if (400..=599).contains(&s) => Ok(s),
        _ => Err(config(format!(
            "error status '{key}' must be an HTTP status from 400 to 599"
        ))),
    }
}

impl Faults {
    /// No faults at all.
    pub fn none() -> Self {
        Faults::default()
    }

    /// True when no request can be affected.
    pub fn is_empty(&self) -> bool {
        let f = Faults {
            seed: self.seed,
            retry_after: self.retry_after,
            ..Faults::default()
        };
        *self == f
    }

    /// Reads `{"seed": 7, "latency_ms": 5, "error_rates": {"503": 0.1}, "drop_rate": 0.01, …}`.
    /// A status may also be given as a top-level key (`{"500": 0.02}`). Unknown keys are refused,
    /// so a typo cannot silently disable a fault.
    pub fn from_value(value: &Value) -> Result<Self> {
        let empty = Map::new();
        let obj = match value {
            Value::Null => &empty,
            Value::Object(o) => o,
            _ => return Err(config("must be an object")),
        };
        let mut f = Faults::default();
        for (key, v) in obj {
            match key.as_str() {
                "seed" => f.seed = count(key, v)?,
                "latency_ms" => f.latency_ms = count(key, v)?,
                "jitter_ms" => f.jitter_ms = count(key, v)?,
                "callback_delay_ms" => f.callback_delay_ms = count(key, v)?,
                "retry_after" => {
                    f.retry_after = if v.is_null() {
                        None
                    } else {
                        Some(count(key, v)?)
                    }
                }
                "drop_rate" => f.drop_rate = rate(key, v)?,
                "garbage_rate" => f.garbage_rate = rate(key, v)?,
                "stall_rate" => f.stall_rate = rate(key, v)?,
                "stall_ms" => f.stall_ms = count(key, v)?,
                "bad_signature_rate" => f.bad_signature_rate = rate(key, v)?,
                "wrong_reference_rate" => f.wrong_reference_rate = rate(key, v)?,
                "duplicate_callback_rate" => f.duplicate_callback_rate = rate(key, v)?,
                "unsigned_rate" => f.unsigned_rate = rate(key, v)?,
                "wrong_key_rate" => f.wrong_key_rate = rate(key, v)?,
                "bad_token_rate" => f.bad_token_rate = rate(key, v)?,
                "refuse_tokens" => {
                    f.refuse_tokens = v
                        .as_bool()
                        .ok_or_else(|| config("'refuse_tokens' must be true or false"))?
                }
                "clock_skew_s" => {
                    f.clock_skew_s = v
                        .as_i64()
                        .filter(|s| s.abs() <= 10 * 365 * 86400)
                        .ok_or_else(|| config("'clock_skew_s' must be whole seconds (±10 years)"))?
                }
                "error_rates" => {
                    let Some(rates) = v.as_object() else {
                        return Err(config("'error_rates' must map HTTP statuses to rates"));
                    };
                    for (s, r) in rates {
                        f.error_rates.insert(status(s)?, rate(s, r)?);
                    }
                }
                other if other.trim().parse::<u16>().is_ok() => {
                    f.error_rates.insert(status(other)?, rate(other, v)?);
                }
                other => {
                    return Err(config(format!(
                        "unknown key '{other}' (known: {}, or an HTTP status)",
                        KEYS.join(", ")
                    )))
                }
            }
        }
        let total: f64 = f.drop_rate + f.garbage_rate + f.error_rates.values().sum::<f64>();
        if total > 1.0 + 1e-9 {
            return Err(config(format!(
                "drop, garbage and error rates add up to {total}, more than 1"
            )));
        }
        Ok(f)
    }

    /// The faults as JSON (the form [`Faults::from_value`] reads).
    pub fn to_value(&self) -> Value {
        let rates: Map<String, Value> = self
            .error_rates
            .iter()
            .map(|(s, r)| (s.to_string(), Value::from(*r)))
            .collect();
        serde_json::json!({
            "seed": self.seed,
            "latency_ms": self.latency_ms,
            "jitter_ms": self.jitter_ms,
            "error_rates": rates,
            "drop_rate": self.drop_rate,
            "garbage_rate": self.garbage_rate,
            "stall_rate": self.stall_rate,
            "stall_ms": self.stall_ms,
            "bad_signature_rate": self.bad_signature_rate,
            "wrong_reference_rate": self.wrong_reference_rate,
            "duplicate_callback_rate": self.duplicate_callback_rate,
            "callback_delay_ms": self.callback_delay_ms,
            "retry_after": self.retry_after,
            "unsigned_rate": self.unsigned_rate,
            "wrong_key_rate": self.wrong_key_rate,
            "bad_token_rate": self.bad_token_rate,
            "refuse_tokens": self.refuse_tokens,
            "clock_skew_s": self.clock_skew_s,
        })
    }

    /// The decision for the request with sequence number `seq`: a pure function of
    /// `(self, seq)`.
    pub fn decide(&self, seq: u64) -> Decision {
        if self.is_empty() {
            return Decision::NONE;
        }
        let mut rng = SplitMix64::new(self.seed ^ seq.wrapping_mul(0xD1B5_4A32_D192_ED03));
        rng.next_u64(); // decorrelate neighbouring sequence numbers
        let jitter = if self.jitter_ms > 0 {
            rng.below(self.jitter_ms + 1)
        } else {
            rng.next_u64();
            0
        };
        let mut draw = rng.next_f64();
        let mut injected = Injected::None;
        let outcomes = [
            (Injected::Drop, self.drop_rate),
            (Injected::Garbage, self.garbage_rate),
        ]
        .into_iter()
        .chain(
            self.error_rates
                .iter()
                .map(|(s, r)| (Injected::Status(*s), *r)),
        );
        for (what, r) in outcomes {
            if draw < r {
                injected = what;
                break;
            }
            draw -= r;
        }
        // Drawn last so that adding a stall rate keeps every other decision of a seed.
        let stalled = |rng: &mut SplitMix64| rng.next_f64() < self.stall_rate;
        let bad_signature = rng.next_f64() < self.bad_signature_rate;
        let wrong_reference = rng.next_f64() < self.wrong_reference_rate;
        let duplicate_callback = rng.next_f64() < self.duplicate_callback_rate;
        let stall = if stalled(&mut rng) { self.stall_ms } else { 0 };
        // Drawn after the others for the same reason.
        let unsigned = rng.next_f64() < self.unsigned_rate;
        let wrong_key = rng.next_f64() < self.wrong_key_rate;
        let bad_token = rng.next_f64() < self.bad_token_rate;
        Decision {
            latency_ms: self.latency_ms + jitter + stall,
            injected,
            bad_signature,
            wrong_reference,
            duplicate_callback,
            unsigned,
            wrong_key,
            bad_token,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn splitmix_matches_the_reference_sequence() {
        // First outputs of SplitMix64 seeded with 1234567 (reference C implementation).
        let mut r = SplitMix64::new(1234567);
        assert_eq!(r.next_u64(), 6457827717110365317);
        assert_eq!(r.next_u64(), 3203168211198807973);
    }

    #[test]
    fn decisions_depend_only_on_seed_and_sequence() {
        let f = Faults::from_value(&json!({
            "seed": 42, "latency_ms": 1, "jitter_ms": 4, "error_rates": {"500": 0.1, "503": 0.1},
            "429": 0.1, "drop_rate": 0.05, "garbage_rate": 0.05, "bad_signature_rate": 0.2,
        }))
        .unwrap();
        let a: Vec<Decision> = (0..500).map(|i| f.decide(i)).collect();
        let b: Vec<Decision> = (0..500).map(|i| f.decide(i)).collect();
        assert_eq!(a, b);
        let other = Faults {
            seed: 43,
            ..f.clone()
        };
        assert_ne!(a, (0..500).map(|i| other.decide(i)).collect::<Vec<_>>());
        let count = |w: Injected| a.iter().filter(|d| d.injected == w).count();
        for (what, lo, hi) in [
            (Injected::Status(500), 25, 80),
            (Injected::Status(503), 25, 80),
            (Injected::Status(429), 25, 80),
            (Injected::Drop, 8, 45),
            (Injected::Garbage, 8, 45),
            (Injected::None, 250, 400),
        ] {
            let n = count(what);
            assert!((lo..=hi).contains(&n), "{what:?}: {n}");
        }
        assert!(a.iter().all(|d| (1..=5).contains(&d.latency_ms)));
        assert!(a.iter().any(|d| d.bad_signature) && a.iter().any(|d| !d.bad_signature));
        assert_eq!(Faults::none().decide(3), Decision::NONE);
    }

    #[test]
    fn bad_fault_configurations_are_refused() {
        for bad in [
            json!({"drop_rat": 0.1}),
            json!({"drop_rate": 1.5}),
            json!({"error_rates": {"200": 0.1}}),
            json!({"error_rates": {"500": 0.6}, "503": 0.6}),
            json!({"latency_ms": -1}),
            json!([1]),
        ] {
            assert!(Faults::from_value(&bad).is_err(), "{bad}");
        }
        let f = Faults::from_value(&json!({"500": 0.25, "seed": 3})).unwrap();
        assert_eq!(Faults::from_value(&f.to_value()).unwrap(), f);
        for bad in [
            json!({"unsigned_rate": 2}),
            json!({"refuse_tokens": 1}),
            json!({"clock_skew_s": 1.5}),
        ] {
            assert!(Faults::from_value(&bad).is_err(), "{bad}");
        }
        let f = Faults::from_value(&json!({
            "unsigned_rate": 0.5, "wrong_key_rate": 0.25, "bad_token_rate": 1,
            "refuse_tokens": true, "clock_skew_s": -300,
        }))
        .unwrap();
        assert!(!f.is_empty());
        assert_eq!(Faults::from_value(&f.to_value()).unwrap(), f);
        assert!((0..20).all(|i| f.decide(i).bad_token));
        // A clock skew alone is a fault too.
        assert!(!Faults::from_value(&json!({"clock_skew_s": 5}))
            .unwrap()
            .is_empty());
    }
}
