//! Answers (PROTOCOL §6–7): `match_items` over whatever a registry sends as `search_response`,
//! `Beneficiary::from_record` over every record, `classify_callbacks` over the message (sync
//! answer or `on-search` callback, alone and after itself), `read_enrolled` over the message as
//! an enrolled answer, and the `Redactor` over the raw text.
//!
//! The input is JSON read three ways: as a message, as the `search_response` itself, and as an
//! envelope whose `message` is the message.
//!
//! Properties: never panics; a matched answer has exactly one item per reference id, in order,
//! with its own id; only a `succ` item of the documented shape (`data` an object,
//! `data.reg_records` an empty list) reads as zero records, and never under a pending header;
//! an item that decides nothing carries no records and says why; classification fails closed —
//! `no_match` only when every identifier was answered with zero records, a failed check always
//! says why, `matched_programs` is sorted and unique; an enrolled "no" only from items that all
//! say exactly "no" with status "succ"; a secret echoed in peer text never survives.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use spp_dci_ibr::dci::client::{
    match_items, read_enrolled, Answer, Enrolled, ItemStatus, Reply, Sent,
};
use spp_dci_ibr::dci::error::Redactor;
use spp_dci_ibr::dci::ibr::{
    classify_callbacks, Beneficiary, Classification, Identifier, OutcomeStatus,
};

const REFERENCE_SETS: [&[&str]; 4] = [&[], &["r1"], &["r1", "r2", "r3"], &["r-6"]];
const SECRET: &str = "fuzz-Secret-0123456789";

fuzz_target!(|data: &[u8]| {
    let peer = Redactor::new().with_secret(SECRET);
    let text = String::from_utf8_lossy(data);
    let masked = peer.text(&format!("{text}{SECRET}{text}"));
    assert!(!masked.to_ascii_lowercase().contains(&SECRET.to_ascii_lowercase()[..8]));
    assert!(masked.chars().count() <= 300);

    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let message = value.get("message").unwrap_or(&value);
    for set in REFERENCE_SETS {
        let refs: Vec<String> = set.iter().map(|s| s.to_string()).collect();
        let answers = [
            Some(&value),
            value.get("search_response"),
            message.get("search_response"),
        ];
        for (answer, pending) in answers.into_iter().flat_map(|a| [(a, false), (a, true)]) {
            let Ok(items) = match_items(&refs, answer.cloned(), pending, &peer) else {
                continue;
            };
            assert_eq!(items.len(), refs.len(), "one item per reference id");
            for (item, r) in items.iter().zip(&refs) {
                assert_eq!(&item.reference_id, r);
                if item.status != ItemStatus::Succ {
                    assert!(item.records.is_empty(), "only succ carries records");
                }
                if matches!(item.status, ItemStatus::Missing | ItemStatus::Undecided) {
                    assert!(item.reason_message.is_some(), "says why it decides nothing");
                }
                if item.status == ItemStatus::Succ {
                    assert!(!pending, "a pending header decides nothing");
                    assert_eq!(item.raw.get("status"), Some(&json!("succ")));
                }
                if item.status == ItemStatus::Succ && item.records.is_empty() {
                    let spec = item.raw.get("data").and_then(|d| d.get("reg_records"));
                    assert_eq!(spec, Some(&json!([])), "zero only from the documented shape");
                }
                for record in &item.records {
                    assert!(record.is_object(), "a record is an object");
                    let b = Beneficiary::from_record(record.clone());
                    assert_eq!(&b.raw, record);
                    assert!(b.name.as_deref() != Some(""));
                }
            }
        }
        let identifiers: Vec<Identifier> = refs
            .iter()
            .map(|r| Identifier::new("UIN", r.clone()))
            .collect();
        for messages in [vec![message], vec![message, message]] {
            let result = classify_callbacks(&messages, Some(&refs), &identifiers, None, false);
            assert_eq!(result.outcomes.len(), refs.len(), "one outcome per reference id");
            let all_empty_succ = !result.outcomes.is_empty()
                && result
                    .outcomes
                    .iter()
                    .all(|o| o.status == OutcomeStatus::NoRecords);
            assert_eq!(
                result.result == Some(Classification::NoMatch),
                all_empty_succ,
                "no_match exactly when every identifier was answered with zero records"
            );
            if messages.len() == 2 {
                assert!(
                    result.outcomes.iter().all(|o| !matches!(
                        o.status,
                        OutcomeStatus::NoRecords | OutcomeStatus::Records
                    )),
                    "an item answered twice decides nothing"
                );
            }
            let any_records = result
                .outcomes
                .iter()
                .any(|o| o.status == OutcomeStatus::Records);
            if result.outcomes.is_empty() || (!any_records && !all_empty_succ) {
                assert_eq!(result.result, None, "fail closed");
            }
            if result.result.is_none() {
                assert!(!result.reasons.is_empty(), "a failed check says why");
            }
            for o in &result.outcomes {
                if matches!(o.status, OutcomeStatus::Failed | OutcomeStatus::Pending) {
                    assert!(o.reason.is_some(), "a failure carries its reason");
                }
            }
            assert!(
                result.matched_programs.windows(2).all(|w| w[0] < w[1]),
                "matched_programs sorted and unique"
            );
        }
    }
    let header = value.get("header").cloned().unwrap_or(json!({"status": "succ"}));
    let reply = Reply {
        sent: Sent::default(),
        answer: Answer::Envelope {
            header,
            message: message.clone(),
        },
        verified: true,
        peer,
    };
    let decided = read_enrolled(&reply);
    if decided != Enrolled::Yes && decided != Enrolled::No {
        return;
    }
    let want = if decided == Enrolled::Yes { "yes" } else { "no" };
    let items = message["enrolled_response"].as_array().expect("a list");
    assert!(!items.is_empty());
    for item in items {
        assert_eq!(item["status"], json!("succ"));
        assert_eq!(item["enrolled_status"], json!(want), "every item says exactly {want}");
    }
});
