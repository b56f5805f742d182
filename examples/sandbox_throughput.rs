//! Throughput of the embedded sandbox for batched, signed sync searches over loopback.
//!
//! `cargo run --release --example sandbox_throughput [-- IDS BATCH THREADS]` prints identifiers
//! per second. The client side here does what a real client does (sign every request, parse and
//! verify every answer), so the figure is end to end on this machine.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};
use spp_dci_ibr::dci::envelope::{self, request_header, Signer};
use spp_dci_ibr::dci::jwk::{Jwk, Jwks};
use spp_dci_ibr::dci::keys::{Algorithm, SigningKey};
use spp_dci_ibr::dci::signature::{check, Keys, Policy};
use spp_dci_ibr::sandbox::{DatasetSource, Sandbox, SandboxConfig};

/// The body as JSON (reqwest's `json` feature is not enabled in this crate).
trait JsonBody {
    fn json_value(self) -> Result<Value, String>;
}

impl JsonBody for reqwest::blocking::Response {
    fn json_value(self) -> Result<Value, String> {
        let text = self.text().map_err(|e| e.to_string())?;
        serde_json::from_str(&text).map_err(|e| e.to_string())
    }
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers"))
        .collect();
    let total = args.first().copied().unwrap_or(200_000);
    let batch = args.get(1).copied().unwrap_or(100);
    let threads = args.get(2).copied().unwrap_or(2);
    let records = 10_000;
    let sb = Sandbox::start(SandboxConfig {
        dataset: DatasetSource::Synthetic {
            count: records,
            seed: 1,
        },
        max_page_size: 10,
        ..SandboxConfig::default()
    })
    .unwrap();
    let key = Arc::new(SigningKey::generate(Algorithm::Ed25519, 0).unwrap());
    let signer = Signer::new(key.clone(), "bench.sp", "k1").unwrap();
    sb.register_client_key(
        "bench.sp",
        Jwk {
            kid: Some(signer.kid()),
            key: key.verifying_key(),
        },
    );
    let http = reqwest::blocking::Client::new();
    let token: Value = http
        .post(sb.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", sb.client_id()),
            ("client_secret", sb.client_secret()),
        ])
        .send()
        .unwrap()
        .json_value()
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    let jwks = Arc::new(Jwks::from_value(&sb.public_jwks()).unwrap());
    let url = format!("{}/registry/sync/search", sb.url());
    let per_thread = total / threads / batch;
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (http, signer, token, url, jwks, receiver) = (
                http.clone(),
                signer.clone(),
                token.clone(),
                url.clone(),
                jwks.clone(),
                sb.sender_id().to_owned(),
            );
            std::thread::spawn(move || {
                let mut found = 0usize;
                for b in 0..per_thread {
                    let items: Vec<Value> = (0..batch)
                        .map(|i| {
                            // Half the identifiers exist, half do not.
                            let n = (t * per_thread * batch + b * batch + i) % (2 * records);
                            json!({
                                "reference_id": format!("{b}-{i}"),
                                "timestamp": "2025-01-01T00:00:00Z",
                                "search_criteria": {"query_type": "idtype-value",
                                    "query": {"type": "UIN", "value": format!("UIN-{:08}", n + 1)}},
                            })
                        })
                        .collect();
                    let message =
                        json!({"transaction_id": envelope::new_id(), "search_request": items});
                    let header = request_header("search", "bench.sp", None, &receiver, batch);
                    let body = envelope::envelope_body(&header, &message, Some(&signer)).unwrap();
                    let answer: Value = http
                        .post(&url)
                        .bearer_auth(&token)
                        .body(body)
                        .send()
                        .unwrap()
                        .json_value()
                        .unwrap();
                    let verdict = check(
                        answer["signature"].as_str().unwrap(),
                        &&answer["header"],
                        &&answer["message"],
                        &Keys::Set(&jwks),
                        Policy::at(envelope::now_unix()),
                    )
                    .unwrap();
                    assert!(verdict.is_valid());
                    found += answer["message"]["search_response"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter(|i| !i["data"]["reg_records"].as_array().unwrap().is_empty())
                        .count();
                }
                found
            })
        })
        .collect();
    let found: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    let secs = started.elapsed().as_secs_f64();
    let ids = per_thread * threads * batch;
    println!(
        "{ids} identifiers in {secs:.2} s: {:.0} identifiers/s ({found} found), batch {batch}, {threads} client threads",
        ids as f64 / secs
    );
}
