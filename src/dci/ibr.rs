//! The IBR service (PROTOCOL §7): reads beneficiary records, classifies duplication checks
//! fail-closed, and runs large batches many identifiers per envelope, several envelopes at once.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde_json::{json, Value};

use super::client::{
    match_items, read_enrolled, search_criteria, DciClient, Endpoint, Enrolled, ItemAnswer,
    ItemStatus, IBR_REG_TYPE,
};
use super::error::{Error, Redactor, Result};

/// One identifier of a registrant.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identifier {
    pub id_type: String,
    pub value: String,
}

impl Identifier {
    pub fn new(id_type: impl Into<String>, value: impl Into<String>) -> Self {
        Identifier {
            id_type: id_type.into(),
            value: value.into(),
        }
    }

    /// Why this identifier cannot be sent, if it cannot.
    fn problem(&self) -> Option<String> {
        let bad = |s: &str| s.trim().is_empty() || s.len() > 256 || s.chars().any(char::is_control);
        if bad(&self.id_type) {
            Some("invalid identifier: the type is empty, too long or has control characters".into())
        } else if bad(&self.value) {
            Some(
                "invalid identifier: the value is empty, too long or has control characters".into(),
            )
        } else {
            None
        }
    }

    /// The `enrolled_criteria` query (`expression`) for this identifier, within one programme
    /// when `programme_id` is given.
    pub fn enrolled_query(&self, programme_id: Option<&str>) -> Value {
        let mut query = json!({"identifier_type": self.id_type, "identifier_value": self.value, "person_identifier": {"eq": self.value}});
        if let Some(p) = programme_id {
            query["programme_identifier.program.programme_identifier"] = json!({"eq": p});
        }
        query
    }

    fn criteria(&self) -> Value {
        search_criteria(
            "idtype-value",
            json!({"type": self.id_type, "value": self.value}),
            IBR_REG_TYPE,
            None,
            MAX_RECORDS_PER_IDENTIFIER,
            1,
        )
    }
}

/// Records asked for per identifier (page size of each search item).
pub const MAX_RECORDS_PER_IDENTIFIER: u32 = 100;

/// Enrolment status codes of the IBR code directory (cd.ibr.02).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnrolmentStatus {
    Active,
    Deceased,
    Graduated,
    Suspended,
    Other(String),
}

impl EnrolmentStatus {
    pub fn parse(value: &Value) -> Option<Self> {
        let text = match value {
            Value::String(s) => s.trim().to_ascii_lowercase(),
            Value::Number(n) => n.as_str().to_owned(),
            _ => return None,
        };
        let last = text
            .rsplit([':', '.', '/'])
            .next()
            .unwrap_or(&text)
            .to_owned();
        Some(match last.as_str() {
            "1" | "active" | "enrolled" => EnrolmentStatus::Active,
            "2" | "deceased" => EnrolmentStatus::Deceased,
            "3" | "graduated" => EnrolmentStatus::Graduated,
            "4" | "suspended" => EnrolmentStatus::Suspended,
            "" => return None,
            _ => EnrolmentStatus::Other(last),
        })
    }

    pub fn as_str(&self) -> &str {
        match self {
            EnrolmentStatus::Active => "active",
            EnrolmentStatus::Deceased => "deceased",
            EnrolmentStatus::Graduated => "graduated",
            EnrolmentStatus::Suspended => "suspended",
            EnrolmentStatus::Other(s) => s,
        }
    }

    /// Active or Suspended: the person still holds the enrolment.
    pub fn is_current(&self) -> bool {
        matches!(self, EnrolmentStatus::Active | EnrolmentStatus::Suspended)
    }
}

/// One programme enrolment read from a record.
#[derive(Clone, Debug, PartialEq)]
pub struct Enrolment {
    pub programme_id: Option<String>,
    pub programme_name: Option<String>,
    pub status: Option<EnrolmentStatus>,
    pub enrolment_date: Option<String>,
    pub benefits: Value,
}

impl Enrolment {
    /// The name shown in `matched_programs`: the programme name, else its identifier.
    pub fn label(&self) -> Option<&str> {
        self.programme_name
            .as_deref()
            .or(self.programme_id.as_deref())
    }
}

/// A beneficiary record as read from an answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Beneficiary {
    pub identifier: Option<Identifier>,
    pub name: Option<String>,
    pub enrolments: Vec<Enrolment>,
    pub raw: Value,
}

fn first_str<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a str> {
    keys.iter()
        .find_map(|k| v.get(*k).and_then(Value::as_str))
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn scalar_text(v: &Value, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| match v.get(*k) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Some(Value::Number(n)) => Some(n.as_str().to_owned()),
        _ => None,
    })
}

fn read_enrolment(entry: &Value) -> Enrolment {
    // `programme` (spec), `program` (variant), or the programme fields on the entry itself.
    let programme = ["programme", "program"]
        .iter()
        .find_map(|k| entry.get(*k).filter(|v| v.is_object()))
        .unwrap_or(entry);
    let status = ["enrolment_status", "enrollment_status", "status"]
        .iter()
        .find_map(|k| entry.get(*k).and_then(EnrolmentStatus::parse));
    Enrolment {
        programme_id: scalar_text(
            programme,
            &[
                "programme_identifier",
                "program_identifier",
                "programme_id",
                "id",
            ],
        ),
        programme_name: scalar_text(programme, &["programme_name", "program_name", "name"]),
        status,
        enrolment_date: scalar_text(entry, &["enrolment_date", "enrollment_date"]),
        benefits: entry.get("benefits").cloned().unwrap_or(Value::Null),
    }
}

impl Beneficiary {
    /// Reads one record (spec shape `member.programme_identifier`, object or list, and variants).
    pub fn from_record(record: Value) -> Self {
        let (identifier, name, enrolments) = Self::read(&record);
        Beneficiary {
            identifier,
            name,
            enrolments,
            raw: record,
        }
    }

    fn read(record: &Value) -> (Option<Identifier>, Option<String>, Vec<Enrolment>) {
        let member = record
            .get("member")
            .filter(|m| m.is_object())
            .unwrap_or(record);
        let person = member
            .get("demographic_info")
            .map(|d| d.get("person").unwrap_or(d))
            .unwrap_or(member);
        let identifier = match (
            first_str(person, &["identifier_type"]),
            scalar_text(person, &["identifier_value"]),
        ) {
            (Some(t), Some(v)) => Some(Identifier::new(t, v)),
            _ => None,
        };
        let name = person.get("name").map(|n| match n {
            Value::String(s) => s.trim().to_owned(),
            _ => {
                let parts = [
                    "first_name",
                    "given_name",
                    "second_name",
                    "middle_name",
                    "surname",
                    "family_name",
                ];
                parts
                    .iter()
                    .filter_map(|k| first_str(n, &[k]))
                    .collect::<Vec<_>>()
                    .join(" ")
            }
        });
        let entries = [
            "programme_identifier",
            "program_identifier",
            "enrolments",
            "enrollments",
        ]
        .iter()
        .find_map(|k| member.get(*k).or_else(|| record.get(*k)));
        let enrolments = match entries {
            Some(Value::Array(list)) => list.iter().map(read_enrolment).collect(),
            Some(v @ Value::Object(_)) => vec![read_enrolment(v)],
            _ => vec![],
        };
        (identifier, name.filter(|n| !n.is_empty()), enrolments)
    }

    pub fn is_currently_enrolled(&self) -> bool {
        self.enrolments
            .iter()
            .any(|e| e.status.as_ref().is_some_and(EnrolmentStatus::is_current))
    }
}

/// What happened to one identifier of a check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutcomeStatus {
    Records,
    NoRecords,
    Failed,
    Pending,
}

impl OutcomeStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            OutcomeStatus::Records => "records",
            OutcomeStatus::NoRecords => "no_records",
            OutcomeStatus::Failed => "failed",
            OutcomeStatus::Pending => "pending",
        }
    }
}

#[derive(Clone, Debug)]
pub struct IdentifierOutcome {
    pub identifier: Identifier,
    pub status: OutcomeStatus,
    pub reason: Option<String>,
    pub beneficiaries: Vec<Beneficiary>,
    pub reference_id: Option<String>,
    /// The answered item without its records (they live in `beneficiaries`); Null when none.
    pub raw_item: Value,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Classification {
    NoMatch,
    PossibleMatch,
    ConfirmedMatch,
}

impl Classification {
    pub fn as_str(self) -> &'static str {
        match self {
            Classification::NoMatch => "no_match",
            Classification::PossibleMatch => "possible_match",
            Classification::ConfirmedMatch => "confirmed_match",
        }
    }
}

/// The result of one duplication check. `result` is `None` exactly when the check failed:
/// an identifier that could not be checked never yields `no_match` (PROTOCOL §7).
#[derive(Clone, Debug)]
pub struct DuplicationResult {
    pub result: Option<Classification>,
    pub matched_programs: Vec<String>,
    pub outcomes: Vec<IdentifierOutcome>,
    pub reasons: Vec<String>,
    pub transaction_ids: Vec<String>,
    /// Every answer read for it was a verified one: false when answers were read unverified
    /// (explicit opt-in of the client, or a callback message not declared verified).
    pub verified: bool,
}

impl DuplicationResult {
    pub fn failed(&self) -> bool {
        self.result.is_none()
    }

    /// Records were found (confirmed or possible match).
    pub fn is_duplicate(&self) -> bool {
        matches!(
            self.result,
            Some(Classification::ConfirmedMatch | Classification::PossibleMatch)
        )
    }

    /// The registry's answer items for this check, records included.
    pub fn raw_responses(&self) -> Vec<Value> {
        self.outcomes
            .iter()
            .filter(|o| !o.raw_item.is_null())
            .map(|o| {
                let mut item = o.raw_item.clone();
                let records: Vec<Value> = o.beneficiaries.iter().map(|b| b.raw.clone()).collect();
                match item.get_mut("data") {
                    Some(Value::Object(d)) => {
                        d.insert("reg_records".into(), Value::Array(records));
                    }
                    Some(data) if !records.is_empty() => *data = Value::Array(records),
                    _ => {}
                }
                item
            })
            .collect()
    }

    /// Classifies outcomes (PROTOCOL §7).
    pub fn classify(
        outcomes: Vec<IdentifierOutcome>,
        transaction_ids: Vec<String>,
        verified: bool,
    ) -> Self {
        let mut reasons = Vec::new();
        let mut programs = BTreeSet::new();
        let mut any_records = false;
        let mut confirmed = false;
        let mut any_unchecked = false;
        for o in &outcomes {
            match o.status {
                OutcomeStatus::Records => {
                    any_records = true;
                    for b in &o.beneficiaries {
                        confirmed |= b.is_currently_enrolled();
                        programs.extend(
                            b.enrolments
                                .iter()
                                .filter_map(|e| e.label().map(str::to_owned)),
                        );
                    }
                }
                OutcomeStatus::NoRecords => {}
                OutcomeStatus::Failed | OutcomeStatus::Pending => {
                    any_unchecked = true;
                    reasons.push(format!(
                        "{} '{}': {}",
                        o.identifier.id_type,
                        o.identifier.value,
                        o.reason.as_deref().unwrap_or(o.status.as_str())
                    ));
                }
            }
        }
        let result = if outcomes.is_empty() {
            reasons.push("no identifiers to check".into());
            None
        } else if confirmed {
            Some(Classification::ConfirmedMatch)
        } else if any_records {
            Some(Classification::PossibleMatch)
        } else if any_unchecked {
            None
        } else {
            Some(Classification::NoMatch)
        };
        DuplicationResult {
            result,
            matched_programs: programs.into_iter().collect(),
            outcomes,
            reasons,
            transaction_ids,
            verified,
        }
    }
}

/// The outcome of one identifier from its answered search item.
pub fn outcome_of(identifier: Identifier, item: ItemAnswer) -> IdentifierOutcome {
    let (status, reason) = match item.status {
        ItemStatus::Succ if item.records.is_empty() => (OutcomeStatus::NoRecords, None),
        ItemStatus::Succ => (OutcomeStatus::Records, None),
        ItemStatus::Pending if item.raw.is_null() => (OutcomeStatus::Pending, item.reason_message),
        ItemStatus::Undecided => (
            OutcomeStatus::Failed,
            Some(format!(
                "undecided: the answer decides nothing for this identifier ({})",
                item.reason_message.as_deref().unwrap_or("unreadable item")
            )),
        ),
        ItemStatus::Rjct => (
            OutcomeStatus::Failed,
            Some(format!(
                "rejected by the registry ({})",
                item.reason_code
                    .as_deref()
                    .or(item.reason_message.as_deref())
                    .unwrap_or("rjct")
            )),
        ),
        ItemStatus::Pending => (
            OutcomeStatus::Pending,
            Some("the registry has not answered yet (pending)".into()),
        ),
        ItemStatus::Missing => (
            OutcomeStatus::Failed,
            Some("the answer has no item for this identifier".into()),
        ),
    };
    IdentifierOutcome {
        identifier,
        status,
        reason,
        beneficiaries: item
            .records
            .into_iter()
            .map(Beneficiary::from_record)
            .collect(),
        raw_item: item.raw,
        reference_id: Some(item.reference_id),
    }
}

fn failed_outcome(identifier: Identifier, reason: String) -> IdentifierOutcome {
    IdentifierOutcome {
        identifier,
        status: OutcomeStatus::Failed,
        reason: Some(reason),
        beneficiaries: vec![],
        reference_id: None,
        raw_item: Value::Null,
    }
}

/// Checks many registrants: identifiers packed `batch_size` per envelope, up to `concurrency`
/// envelopes in flight, results in input order. Blocks; call without the GIL.
pub fn check_registrants(
    client: &DciClient,
    registrants: &[Vec<Identifier>],
    batch_size: usize,
    concurrency: usize,
) -> Vec<DuplicationResult> {
    // Flatten valid identifiers: (registrant index, identifier).
    let mut outcomes: Vec<Vec<Option<IdentifierOutcome>>> = registrants
        .iter()
        .map(|ids| vec![None; ids.len()])
        .collect();
    let mut work: Vec<(usize, usize, Identifier)> = Vec::new();
    for (r, ids) in registrants.iter().enumerate() {
        for (i, id) in ids.iter().enumerate() {
            match id.problem() {
                Some(p) => outcomes[r][i] = Some(failed_outcome(id.clone(), p)),
                None => work.push((r, i, id.clone())),
            }
        }
    }
    let chunks: Vec<&[(usize, usize, Identifier)]> = work.chunks(batch_size.max(1)).collect();
    let next = AtomicUsize::new(0);
    // (registrant, identifier position, outcome, transaction id of the envelope that answered)
    type Done = Vec<(usize, usize, IdentifierOutcome, Option<String>)>;
    let done: Mutex<Done> = Mutex::new(Vec::with_capacity(work.len()));
    std::thread::scope(|s| {
        for _ in 0..concurrency.clamp(1, 64).min(chunks.len().max(1)) {
            s.spawn(|| loop {
                let c = next.fetch_add(1, Ordering::Relaxed);
                let Some(chunk) = chunks.get(c) else { break };
                let criteria = chunk.iter().map(|(_, _, id)| id.criteria()).collect();
                let mut local = Vec::with_capacity(chunk.len());
                match client.search_batch(criteria, None) {
                    Ok(reply) => {
                        let txn = reply.sent.transaction_id;
                        for ((r, i, id), item) in chunk.iter().zip(reply.items) {
                            local.push((*r, *i, outcome_of(id.clone(), item), Some(txn.clone())));
                        }
                    }
                    Err(e) => {
                        let reason = reason_of(&e);
                        for (r, i, id) in chunk.iter() {
                            local.push((*r, *i, failed_outcome(id.clone(), reason.clone()), None));
                        }
                    }
                }
                done.lock().unwrap_or_else(|p| p.into_inner()).extend(local);
            });
        }
    });
    let mut txns: Vec<BTreeSet<String>> = vec![BTreeSet::new(); registrants.len()];
    for (r, i, outcome, txn) in done.into_inner().unwrap_or_else(|p| p.into_inner()) {
        outcomes[r][i] = Some(outcome);
        txns[r].extend(txn);
    }
    outcomes
        .into_iter()
        .zip(txns)
        .map(|(o, txn)| {
            let o = o
                .into_iter()
                .map(|x| x.expect("every identifier gets an outcome"))
                .collect();
            DuplicationResult::classify(o, txn.into_iter().collect(), client.verifies_answers())
        })
        .collect()
}

/// The beneficiary records for one identifier, read as strictly as a duplication check: a
/// rejected item is a registry error, any item that decides nothing (pending, missing, of
/// another shape) an [`Error::Undecided`] — never an empty list.
pub fn search_beneficiaries(client: &DciClient, id: Identifier) -> Result<Vec<Beneficiary>> {
    let reply = client.search_batch(vec![id.criteria()], None)?;
    let item = reply.items.into_iter().next().expect("one item");
    item.decided()?;
    Ok(outcome_of(id, item).beneficiaries)
}

/// Whether an identifier is enrolled (PROTOCOL §6), decided by a verified (or explicitly
/// accepted unverified) answer.
#[derive(Clone, Debug)]
pub struct EnrollmentStatus {
    pub enrolled: bool,
    /// The answer came from `/registry/sync/enrolled` (false: from search, the registry does
    /// not offer the call).
    pub via_enrolled: bool,
    /// Detail: the identifier's records (best effort after an enrolled "yes").
    pub records: Vec<Beneficiary>,
    pub verified: bool,
}

impl EnrollmentStatus {
    /// The programmes of the records' enrolments (their labels), sorted, each once.
    pub fn programs(&self) -> Vec<String> {
        let mut programs: Vec<String> = self
            .records
            .iter()
            .flat_map(|b| {
                b.enrolments
                    .iter()
                    .filter_map(|e| e.label().map(str::to_owned))
            })
            .collect();
        programs.sort();
        programs.dedup();
        programs
    }
}

/// The enrolled call when offered (with a search for detail when the answer is yes), search
/// otherwise. An answer that does not decide (an enrolled status other than exactly yes/no, a
/// search item that decides nothing) is [`Error::Undecided`], never "not enrolled".
pub fn enrollment_status(
    client: &DciClient,
    id: Identifier,
    use_enrolled: bool,
) -> Result<EnrollmentStatus> {
    let by_search = |id: Identifier| -> Result<EnrollmentStatus> {
        let records = search_beneficiaries(client, id)?;
        Ok(EnrollmentStatus {
            enrolled: records.iter().any(Beneficiary::is_currently_enrolled),
            via_enrolled: false,
            records,
            verified: client.verifies_answers(),
        })
    };
    if !use_enrolled {
        return by_search(id);
    }
    let reply = match client.enrolled("expression", id.enrolled_query(None), None) {
        Ok(reply) => reply,
        Err(Error::HttpStatus {
            status: 404 | 405 | 501,
            ..
        }) => {
            log::debug!(
                "{} is not offered; using search",
                client.path(Endpoint::Enrolled)
            );
            return by_search(id);
        }
        Err(e) => return Err(e),
    };
    let enrolled = match read_enrolled(&reply) {
        Enrolled::Yes => true,
        Enrolled::No => false,
        Enrolled::Undecided(why) => {
            return Err(Error::Undecided(format!(
                "the enrolled answer does not say whether {} '{}' is enrolled: {why}",
                id.id_type, id.value
            )))
        }
    };
    // Detail is best effort: the enrolled answer decides.
    let records = if enrolled {
        search_beneficiaries(client, id).unwrap_or_default()
    } else {
        vec![]
    };
    Ok(EnrollmentStatus {
        enrolled,
        via_enrolled: true,
        records,
        verified: reply.verified,
    })
}

/// A failure reason: the error kind and its message (never secrets: errors carry none).
pub fn reason_of(e: &Error) -> String {
    format!("{}: {}", e.kind(), e)
}

/// Classifies the `on-search` callback messages of one request (PROTOCOL §6–8), in arrival
/// order: the same strict reading and matching as a sync answer ([`match_items`]).
///
/// `reference_ids` (with `identifiers` in the same order, or empty) name the request items;
/// without them, one identifier takes the only reference_id the messages answer, and no
/// identifier at all means "the reference_ids the messages answer". `transaction_id`, when
/// given, must be every message's. A pending item is superseded by a later answer to its
/// reference_id; any other second answer makes it undecided (never "last wins"). An identifier
/// no message answered yet is pending — the result is then not complete, never `no_match`.
/// `verified`: the caller verified every message (the callback router does).
pub fn classify_callbacks(
    messages: &[&Value],
    reference_ids: Option<&[String]>,
    identifiers: &[Identifier],
    transaction_id: Option<&str>,
    verified: bool,
) -> DuplicationResult {
    let txns: Vec<String> = messages
        .iter()
        .find_map(|m| m.get("transaction_id").and_then(Value::as_str))
        .map(|t| vec![t.to_owned()])
        .unwrap_or_default();
    let answered_refs = || {
        let mut refs: Vec<String> = Vec::new();
        for m in messages {
            if let Some(Value::Array(items)) = m.get("search_response") {
                for r in items.iter().filter_map(|i| i.get("reference_id")?.as_str()) {
                    if !refs.iter().any(|x| x == r) {
                        refs.push(r.to_owned());
                    }
                }
            }
        }
        refs
    };
    let (refs, ids): (Vec<String>, Vec<Identifier>) =
        match (reference_ids, identifiers.len()) {
            (Some(refs), n) if n == refs.len() => (refs.to_vec(), identifiers.to_vec()),
            (Some(refs), 0) => (
                refs.to_vec(),
                refs.iter()
                    .map(|r| Identifier::new("reference_id", r.clone()))
                    .collect(),
            ),
            (None, 0) => {
                let refs = answered_refs();
                let ids = refs
                    .iter()
                    .map(|r| Identifier::new("reference_id", r.clone()))
                    .collect();
                (refs, ids)
            }
            (None, 1) => {
                let mut refs = answered_refs();
                if refs.len() > 1 {
                    return all_failed(
                    identifiers,
                    "protocol error: the callbacks answer several reference_ids for one identifier",
                    txns,
                    verified,
                );
                }
                (vec![refs.pop().unwrap_or_default()], identifiers.to_vec())
            }
            _ => return all_failed(
                identifiers,
                "invalid input: several identifiers need their reference_ids, in the same order",
                txns,
                verified,
            ),
        };
    let distinct: BTreeSet<&String> = refs.iter().collect();
    if distinct.len() != refs.len() {
        return all_failed(&ids, "invalid input: reference_ids repeat", txns, verified);
    }
    let mut slots: Vec<Option<ItemAnswer>> = vec![None; refs.len()];
    for message in messages {
        if let Some(want) = transaction_id {
            if message.get("transaction_id").and_then(Value::as_str) != Some(want) {
                return all_failed(
                    &ids,
                    "protocol error: a callback belongs to another transaction (or names none)",
                    txns,
                    verified,
                );
            }
        }
        let answered = message.get("search_response").cloned();
        let items = match match_items(&refs, answered, false, &Redactor::new()) {
            Ok(items) => items,
            Err(e) => return all_failed(&ids, &reason_of(&e), txns, verified),
        };
        for (slot, item) in slots.iter_mut().zip(items) {
            if item.status == ItemStatus::Missing {
                continue; // this message says nothing about it
            }
            *slot = Some(match slot.take() {
                None => item,
                Some(earlier) if earlier.status == ItemStatus::Pending => item,
                Some(_) => ItemAnswer {
                    status: ItemStatus::Undecided,
                    reason_message: Some(
                        "two callbacks answer this reference_id (never the last one wins)".into(),
                    ),
                    records: vec![],
                    ..item
                },
            });
        }
    }
    let outcomes = ids
        .into_iter()
        .zip(refs)
        .zip(slots)
        .map(|((id, r), slot)| {
            let item = slot.unwrap_or_else(|| ItemAnswer {
                reference_id: r,
                status: ItemStatus::Pending,
                reason_code: None,
                reason_message: Some("no callback has answered this identifier yet".into()),
                records: vec![],
                raw: Value::Null,
            });
            outcome_of(id, item)
        })
        .collect();
    DuplicationResult::classify(outcomes, txns, verified)
}

fn all_failed(
    identifiers: &[Identifier],
    reason: &str,
    txns: Vec<String>,
    verified: bool,
) -> DuplicationResult {
    let outcomes = identifiers
        .iter()
        .map(|id| failed_outcome(id.clone(), reason.to_owned()))
        .collect();
    let mut result = DuplicationResult::classify(outcomes, txns, verified);
    if identifiers.is_empty() {
        result.reasons = vec![reason.to_owned()];
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(status: ItemStatus, records: Vec<Value>) -> ItemAnswer {
        ItemAnswer {
            reference_id: "r".into(),
            status,
            reason_code: Some("rjct.x".into()),
            reason_message: None,
            records,
            raw: Value::Null,
        }
    }

    #[test]
    fn only_an_answered_item_is_decided() {
        assert!(item(ItemStatus::Succ, vec![]).decided().is_ok());
        match item(ItemStatus::Rjct, vec![]).decided() {
            Err(Error::Registry { code, .. }) => assert_eq!(code.as_deref(), Some("rjct.x")),
            other => panic!("rjct gave {other:?}"),
        }
        for status in [
            ItemStatus::Pending,
            ItemStatus::Missing,
            ItemStatus::Undecided,
        ] {
            assert!(
                matches!(item(status, vec![]).decided(), Err(Error::Undecided(_))),
                "{status:?}"
            );
        }
    }

    #[test]
    fn enrolled_query_and_programs() {
        let id = Identifier::new("UIN", "42");
        assert_eq!(
            id.enrolled_query(Some("P1")),
            json!({"identifier_type": "UIN", "identifier_value": "42", "person_identifier": {"eq": "42"},
                   "programme_identifier.program.programme_identifier": {"eq": "P1"}})
        );
        let status = EnrollmentStatus {
            enrolled: true,
            via_enrolled: true,
            records: [("B", "Active"), ("A", "Active"), ("B", "Graduated")]
                .into_iter()
                .map(|(name, state)| Beneficiary::from_record(record(json!(state), name)))
                .collect(),
            verified: true,
        };
        assert_eq!(status.programs(), ["A", "B"]);
    }

    fn record(status: Value, name: &str) -> Value {
        json!({"member": {"demographic_info": {"person": {"identifier_type": "UIN", "identifier_value": "1", "name": {"first_name": "Zoë", "surname": "Ōkubo"}}},
               "programme_identifier": [{"programme": {"programme_identifier": "P1", "programme_name": name}, "enrollment_status": status}]}})
    }

    fn check(items: Vec<ItemAnswer>) -> DuplicationResult {
        let outcomes = items
            .iter()
            .map(|i| outcome_of(Identifier::new("UIN", "1"), i.clone()))
            .collect();
        DuplicationResult::classify(outcomes, vec![], true)
    }

    #[test]
    fn classification_follows_protocol_section_7() {
        assert_eq!(
            check(vec![item(ItemStatus::Succ, vec![])]).result,
            Some(Classification::NoMatch)
        );
        let active = check(vec![item(
            ItemStatus::Succ,
            vec![record(json!("Active"), "Cash")],
        )]);
        assert_eq!(active.result, Some(Classification::ConfirmedMatch));
        assert_eq!(active.matched_programs, vec!["Cash"]);
        let suspended_code = check(vec![item(ItemStatus::Succ, vec![record(json!(4), "B")])]);
        assert_eq!(suspended_code.result, Some(Classification::ConfirmedMatch));
        let graduated = check(vec![item(
            ItemStatus::Succ,
            vec![record(json!("3"), "Cash")],
        )]);
        assert_eq!(graduated.result, Some(Classification::PossibleMatch));
        assert!(graduated.is_duplicate());
        // Fail closed: a failure next to "nothing found" is not no_match.
        let partly = check(vec![
            item(ItemStatus::Succ, vec![]),
            item(ItemStatus::Rjct, vec![]),
        ]);
        assert_eq!(partly.result, None);
        assert!(partly.reasons[0].contains("rjct.x"), "{:?}", partly.reasons);
        assert_eq!(check(vec![item(ItemStatus::Missing, vec![])]).result, None);
        assert_eq!(check(vec![item(ItemStatus::Pending, vec![])]).result, None);
        // A match found next to a failure is still a match.
        let found = check(vec![
            item(ItemStatus::Rjct, vec![]),
            item(ItemStatus::Succ, vec![record(json!("Active"), "C")]),
        ]);
        assert_eq!(found.result, Some(Classification::ConfirmedMatch));
        assert_eq!(
            DuplicationResult::classify(vec![], vec![], true).result,
            None
        );
    }

    #[test]
    fn callbacks_merge_per_reference_id_and_fail_closed() {
        let ids = [Identifier::new("UIN", "1"), Identifier::new("UIN", "2")];
        let refs = ["a".to_string(), "b".to_string()];
        let msg = |items: Value| json!({"transaction_id": "t", "search_response": items});
        let zero =
            |r: &str| json!({"reference_id": r, "status": "succ", "data": {"reg_records": []}});
        let first = msg(json!([{"reference_id": "a", "status": "pdng"}]));
        let a = msg(json!([zero("a")]));
        let b = msg(json!([zero("b")]));
        let run =
            |m: &[&Value], txn: Option<&str>| classify_callbacks(m, Some(&refs), &ids, txn, true);
        let waiting = run(&[&first, &a], Some("t"));
        let statuses: Vec<_> = waiting.outcomes.iter().map(|o| o.status.clone()).collect();
        assert_eq!(statuses, [OutcomeStatus::NoRecords, OutcomeStatus::Pending]);
        assert_eq!(waiting.result, None);
        assert_eq!(
            run(&[&first, &a, &b], Some("t")).result,
            Some(Classification::NoMatch)
        );
        let twice = run(&[&a, &b, &a], None);
        assert_eq!(twice.outcomes[0].status, OutcomeStatus::Failed);
        assert_eq!(twice.result, None);
        assert_eq!(run(&[&a, &b], Some("other")).result, None);
        let unbound = msg(json!([zero("a"), zero("zzz")]));
        assert!(run(&[&unbound], None).reasons[0].contains("not sent"));
        let single = classify_callbacks(
            &[&msg(
                json!([{"status": "succ", "data": {"reg_records": []}}]),
            )],
            None,
            &ids[..1],
            None,
            false,
        );
        assert_eq!(single.result, Some(Classification::NoMatch));
        assert!(!single.verified);
    }

    #[test]
    fn records_are_read_in_their_variants() {
        let b = Beneficiary::from_record(record(json!("Active"), "Cash"));
        assert_eq!(b.name.as_deref(), Some("Zoë Ōkubo"));
        assert_eq!(b.identifier, Some(Identifier::new("UIN", "1")));
        assert_eq!(b.enrolments[0].status, Some(EnrolmentStatus::Active));
        let single = json!({"member": {"programme_identifier": {"program": {"program_identifier": "X"}, "enrolment_status": "Graduated"}}});
        let b = Beneficiary::from_record(single);
        assert_eq!(b.enrolments[0].label(), Some("X"));
        assert_eq!(b.enrolments[0].status, Some(EnrolmentStatus::Graduated));
        assert!(!b.is_currently_enrolled());
        assert!(Identifier::new("UIN", " ").problem().is_some());
    }
}
