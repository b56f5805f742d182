//! Search answers (PROTOCOL §6–7): `match_items` over whatever a registry sends as
//! `search_response`, `Beneficiary::from_record` over every record, and `classify_message` over
//! the message (sync answer or `on-search` callback).
//!
//! The input is JSON read three ways: as a message, as the `search_response` itself, and as an
//! envelope whose `message` is the message.
//!
//! Properties: never panics; every reference id gets exactly one item, in order, with its own
//! id; a missing item carries no records; classification fails closed — `no_match` only when
//! every identifier was answered `succ` with zero records, a failed check always says why, and
//! `matched_programs` is sorted and unique.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use spp_dci_ibr::dci::client::{match_items, ItemStatus};
use spp_dci_ibr::dci::ibr::{
    classify_message, Beneficiary, Classification, Identifier, OutcomeStatus,
};

const REFERENCE_SETS: [&[&str]; 4] = [&[], &["r1"], &["r1", "r2", "r3"], &["r1", "r1"]];

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let identifiers = [Identifier::new("UIN", "1"), Identifier::new("BRN", "2")];
    let messages = [Some(&value), value.get("message")];
    for set in REFERENCE_SETS {
        let refs: Vec<String> = set.iter().map(|s| s.to_string()).collect();
        let answers = [
            Some(&value),
            value.get("search_response"),
            value.get("message").and_then(|m| m.get("search_response")),
        ];
        for answer in answers {
            let items = match_items(&refs, answer.cloned());
            assert_eq!(items.len(), refs.len(), "one item per reference id");
            for (item, r) in items.iter().zip(&refs) {
                assert_eq!(&item.reference_id, r);
                if item.status == ItemStatus::Missing {
                    assert!(item.records.is_empty() && item.raw.is_null());
                }
                for record in &item.records {
                    let b = Beneficiary::from_record(record.clone());
                    assert_eq!(&b.raw, record);
                    assert!(b.name.as_deref() != Some(""));
                }
            }
        }
        for message in messages.into_iter().flatten() {
            let result = classify_message(message, &refs, &identifiers);
            if !refs.is_empty() {
                assert_eq!(result.outcomes.len(), refs.len(), "one outcome per reference id");
            }
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
});
