//! The sandbox's registry: beneficiary records in the spec's `Beneficiary` shape, indexed for
//! O(1) lookup by identifier and by name.
//!
//! Records are kept as canonical JSON text (small in memory, spliced into answers as is) next to what the queries need
//! (identifiers, names, enrolments). Sources: a JSON list of records (or `{"reg_records": [...]}`),
//! a CSV file with one row per enrolment, or N synthetic beneficiaries generated from a seed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::faults::SplitMix64;
use crate::dci::canonical;
use crate::dci::error::{Error, Result};

/// Enrolment status (IBR code directory cd.ibr.02): 1 Active, 2 Deceased, 3 Graduated, 4 Suspended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EnrolmentStatus {
    Active,
    Deceased,
    Graduated,
    Suspended,
}

impl EnrolmentStatus {
    pub const ALL: [EnrolmentStatus; 4] = [
        EnrolmentStatus::Active,
        EnrolmentStatus::Deceased,
        EnrolmentStatus::Graduated,
        EnrolmentStatus::Suspended,
    ];

    pub fn label(self) -> &'static str {
        match self {
            EnrolmentStatus::Active => "Active",
            EnrolmentStatus::Deceased => "Deceased",
            EnrolmentStatus::Graduated => "Graduated",
            EnrolmentStatus::Suspended => "Suspended",
        }
    }

    pub fn code(self) -> u8 {
        match self {
            EnrolmentStatus::Active => 1,
            EnrolmentStatus::Deceased => 2,
            EnrolmentStatus::Graduated => 3,
            EnrolmentStatus::Suspended => 4,
        }
    }

    /// Reads a label (any case) or a code (number or numeric string).
    pub fn from_value(v: &Value) -> Option<Self> {
        let text = match v {
            Value::String(s) => s.trim().to_owned(),
            Value::Number(n) => n.to_string(),
            _ => return None,
        };
        Some(match text.to_ascii_lowercase().as_str() {
            "1" | "active" => EnrolmentStatus::Active,
            "2" | "deceased" => EnrolmentStatus::Deceased,
            "3" | "graduated" => EnrolmentStatus::Graduated,
            "4" | "suspended" => EnrolmentStatus::Suspended,
            _ => return None,
        })
    }

    /// Active and Suspended enrolments are current (PROTOCOL §7: a confirmed match).
    pub fn is_current(self) -> bool {
        matches!(self, EnrolmentStatus::Active | EnrolmentStatus::Suspended)
    }
}

/// How a beneficiary is classified for [`Dataset::sample_identifiers`]: by its strongest
/// enrolment, Active > Suspended > Graduated > Deceased.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sample {
    Active,
    Suspended,
    Graduated,
    Deceased,
    /// Identifiers that are in no record.
    Unknown,
}

impl Sample {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "active" => Sample::Active,
            "suspended" => Sample::Suspended,
            "graduated" => Sample::Graduated,
            "deceased" => Sample::Deceased,
            "unknown" => Sample::Unknown,
            _ => return None,
        })
    }
}

/// One enrolment of a beneficiary, as far as queries need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enrolment {
    pub programme_id: String,
    pub status: Option<EnrolmentStatus>,
}

/// One record and the fields queries look at.
#[derive(Clone, Debug)]
pub struct Entry {
    /// `(type, value)` of every identifier, types as written.
    pub ids: Vec<(String, String)>,
    pub given_name: String,
    pub family_name: String,
    pub enrolments: Vec<Enrolment>,
    /// The record as canonical JSON (sorted keys, ASCII escapes): answers splice it in as is.
    pub canonical: Arc<str>,
}

impl Entry {
    fn from_record(record: &Value) -> Result<Self> {
        if !record.is_object() {
            return Err(Error::Config("a record must be a JSON object".into()));
        }
        let ids = record_identifiers(record);
        if ids.is_empty() {
            return Err(Error::Config(
                "a record has no identifier (member.demographic_info.person.identifier_type/identifier_value)"
                    .into(),
            ));
        }
        let (given_name, family_name) = record_names(record);
        Ok(Entry {
            ids,
            given_name,
            family_name,
            enrolments: record_enrolments(record),
            canonical: canonical::value_to_string(record)?.into(),
        })
    }

    /// The record as JSON.
    pub fn record(&self) -> Value {
        serde_json::from_str(&self.canonical).unwrap_or(Value::Null)
    }

    /// The strongest enrolment status (Active > Suspended > Graduated > Deceased).
    pub fn class(&self) -> Option<EnrolmentStatus> {
        let has = |s| self.enrolments.iter().any(|e| e.status == Some(s));
        [
            EnrolmentStatus::Active,
            EnrolmentStatus::Suspended,
            EnrolmentStatus::Graduated,
            EnrolmentStatus::Deceased,
        ]
        .into_iter()
        .find(|s| has(*s))
    }

    pub fn has_identifier(&self, id_type: &str, value: &str) -> bool {
        self.ids
            .iter()
            .any(|(t, v)| v == value && t.eq_ignore_ascii_case(id_type))
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn person(record: &Value) -> Option<&Value> {
    let member = record.get("member").unwrap_or(record);
    let demo = member.get("demographic_info").unwrap_or(member);
    demo.get("person")
}

fn push_identifier(ids: &mut Vec<(String, String)>, v: &Value) {
    let items: Vec<&Value> = match v {
        Value::Array(items) => items.iter().collect(),
        Value::Object(_) => vec![v],
        _ => return,
    };
    for item in items {
        let t = text(item.get("identifier_type")).or_else(|| text(item.get("type")));
        let val = text(item.get("identifier_value")).or_else(|| text(item.get("value")));
        if let (Some(t), Some(val)) = (t, val) {
            if !ids
                .iter()
                .any(|(a, b)| *b == val && a.eq_ignore_ascii_case(&t))
            {
                ids.push((t, val));
            }
        }
    }
}

/// Every identifier of a record: `person.identifier_type/identifier_value`, `person.identifier`,
/// `demographic_info.identifier` and `member.member_identifier` (when they are objects with a type).
pub fn record_identifiers(record: &Value) -> Vec<(String, String)> {
    let mut ids = Vec::new();
    if let Some(p) = person(record) {
        push_identifier(&mut ids, p);
        if let Some(list) = p.get("identifier") {
            push_identifier(&mut ids, list);
        }
    }
    let member = record.get("member").unwrap_or(record);
    if let Some(list) = member
        .get("demographic_info")
        .and_then(|d| d.get("identifier"))
    {
        push_identifier(&mut ids, list);
    }
    if let Some(list) = member.get("member_identifier") {
        push_identifier(&mut ids, list);
    }
    ids
}

fn record_names(record: &Value) -> (String, String) {
    let member = record.get("member").unwrap_or(record);
    let name = person(record)
        .and_then(|p| p.get("name"))
        .or_else(|| member.get("demographic_info").and_then(|d| d.get("name")));
    let Some(name) = name else {
        return (String::new(), String::new());
    };
    let pick = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| text(name.get(*k)))
            .unwrap_or_default()
    };
    (
        pick(&["given_name", "first_name"]),
        pick(&["surname", "family_name", "last_name"]),
    )
}

fn enrolment_items(record: &Value) -> Vec<&Value> {
    let member = record.get("member").unwrap_or(record);
    match member.get("programme_identifier") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(v @ Value::Object(_)) => vec![v],
        _ => Vec::new(),
    }
}

fn record_enrolments(record: &Value) -> Vec<Enrolment> {
    enrolment_items(record)
        .into_iter()
        .map(|item| {
            let programme = item.get("programme").or_else(|| item.get("program"));
            let programme_id = programme
                .and_then(|p| {
                    text(p.get("programme_identifier")).or_else(|| text(p.get("programme_name")))
                })
                .unwrap_or_default();
            let status = item
                .get("enrolment_status")
                .or_else(|| item.get("enrollment_status"))
                .and_then(EnrolmentStatus::from_value);
            Enrolment {
                programme_id,
                status,
            }
        })
        .collect()
}

fn id_key(id_type: &str, value: &str) -> String {
    let mut k = String::with_capacity(id_type.len() + value.len() + 1);
    for c in id_type.chars() {
        k.push(c.to_ascii_uppercase());
    }
    k.push('\u{1f}');
    k.push_str(value);
    k
}

/// The records and their indexes.
#[derive(Debug, Default)]
pub struct Dataset {
    entries: Vec<Entry>,
    by_id: HashMap<String, Vec<u32>>,
    by_value: HashMap<String, Vec<u32>>,
    by_given: HashMap<String, Vec<u32>>,
    by_family: HashMap<String, Vec<u32>>,
    /// Identifier types present, uppercased.
    id_types: HashMap<String, usize>,
}

fn add_index(map: &mut HashMap<String, Vec<u32>>, key: String, i: u32) {
    let slot = map.entry(key).or_default();
    if slot.last() != Some(&i) {
        slot.push(i);
    }
}

fn remove_index(map: &mut HashMap<String, Vec<u32>>, key: &str, i: u32) {
    if let Some(slot) = map.get_mut(key) {
        slot.retain(|x| *x != i);
        if slot.is_empty() {
            map.remove(key);
        }
    }
}

/// What [`Dataset::apply_update`] did with one beneficiary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpdateOutcome {
    Added,
    Updated,
}

impl Dataset {
    /// Records from JSON values.
    pub fn from_records(records: &[Value]) -> Result<Self> {
        let mut ds = Dataset::default();
        for (n, record) in records.iter().enumerate() {
            let entry = Entry::from_record(record)
                .map_err(|e| Error::Config(format!("record {}: {e}", n + 1)))?;
            ds.push(entry);
        }
        Ok(ds)
    }

    /// A JSON document: a list of records, or an object with `reg_records` (or `records`).
    pub fn from_json(text: &str) -> Result<Self> {
        let doc: Value = serde_json::from_str(text.trim_start_matches('\u{feff}'))
            .map_err(|e| Error::Config(format!("dataset is not JSON: {e}")))?;
        let records = match &doc {
            Value::Array(items) => items,
            Value::Object(o) => match o.get("reg_records").or_else(|| o.get("records")) {
                Some(Value::Array(items)) => items,
                _ => {
                    return Err(Error::Config(
                        "a dataset object must have a 'reg_records' list".into(),
                    ))
                }
            },
            _ => return Err(Error::Config("a dataset must be a list of records".into())),
        };
        Self::from_records(records)
    }

    /// CSV with a header row naming the columns [`CSV_COLUMNS`] (any order; extra columns are
    /// ignored). One row per enrolment; rows with the same `id_type`/`id_value` make one
    /// beneficiary with several enrolments. `programme_id`, `programme_name`,
    /// `enrolment_status`, `enrolment_date` may be empty (a beneficiary without enrolment).
    pub fn from_csv(text: &str) -> Result<Self> {
        let rows = parse_csv(text.trim_start_matches('\u{feff}'))?;
        let mut rows = rows.into_iter();
        let header = rows
            .next()
            .ok_or_else(|| Error::Config("CSV dataset is empty".into()))?;
        let col = |name: &str| -> Result<usize> {
            header
                .iter()
                .position(|h| h.trim().eq_ignore_ascii_case(name))
                .ok_or_else(|| {
                    Error::Config(format!(
                        "CSV dataset has no '{name}' column (columns: {})",
                        CSV_COLUMNS.join(",")
                    ))
                })
        };
        let idx: Vec<usize> = CSV_COLUMNS.iter().map(|c| col(c)).collect::<Result<_>>()?;
        let mut order: Vec<String> = Vec::new();
        let mut people: HashMap<String, (Vec<String>, Vec<Value>)> = HashMap::new();
        for (line, row) in rows.enumerate() {
            if row.iter().all(|c| c.trim().is_empty()) {
                continue;
            }
            let get = |i: usize| row.get(idx[i]).map(|s| s.trim()).unwrap_or("");
            let (id_type, id_value) = (get(0), get(1));
            if id_type.is_empty() || id_value.is_empty() {
                return Err(Error::Config(format!(
                    "CSV row {}: id_type and id_value are required",
                    line + 2
                )));
            }
            let key = id_key(id_type, id_value);
            let person = people.entry(key.clone()).or_insert_with(|| {
                order.push(key.clone());
                (
                    vec![
                        id_type.to_owned(),
                        id_value.to_owned(),
                        get(2).to_owned(),
                        get(3).to_owned(),
                    ],
                    Vec::new(),
                )
            });
            if !get(4).is_empty() || !get(5).is_empty() {
                let status = get(6);
                if !status.is_empty() && EnrolmentStatus::from_value(&json!(status)).is_none() {
                    return Err(Error::Config(format!(
                        "CSV row {}: enrolment_status '{status}' is not Active, Deceased, Graduated, Suspended or 1-4",
                        line + 2
                    )));
                }
                person.1.push(json!({
                    "programme": {"programme_identifier": get(4), "programme_name": get(5)},
                    "enrolment_status": status,
                    "enrolment_date": get(7),
                }));
            }
        }
        let records: Vec<Value> = order
            .iter()
            .map(|k| {
                let (p, enrolments) = &people[k];
                let programmes = if enrolments.len() == 1 {
                    enrolments[0].clone()
                } else {
                    Value::Array(enrolments.clone())
                };
                json!({
                    "@type": "Beneficiary",
                    "member": {
                        "member_identifier": p[1],
                        "demographic_info": {"person": {
                            "identifier_type": p[0],
                            "identifier_value": p[1],
                            "name": {"first_name": p[2], "surname": p[3]},
                        }},
                        "programme_identifier": programmes,
                    },
                })
            })
            .collect();
        Self::from_records(&records)
    }

    /// Loads a file: CSV when the name ends in `.csv`, JSON otherwise.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read dataset {}: {e}", path.display())))?;
        let is_csv = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
        if is_csv {
            Self::from_csv(&text)
        } else {
            Self::from_json(&text)
        }
    }

    /// `count` synthetic beneficiaries, the same for the same `seed`: see [`synthetic_record`].
    pub fn synthetic(count: usize, seed: u64) -> Self {
        let mut ds = Dataset::default();
        ds.entries.reserve(count);
        for i in 0..count {
            let record = synthetic_record(i, seed);
            ds.push(Entry::from_record(&record).expect("synthetic records are valid"));
        }
        ds
    }

    fn push(&mut self, entry: Entry) {
        let i = self.entries.len() as u32;
        self.index(&entry, i);
        self.entries.push(entry);
    }

    fn index(&mut self, entry: &Entry, i: u32) {
        for (t, v) in &entry.ids {
            add_index(&mut self.by_id, id_key(t, v), i);
            add_index(&mut self.by_value, v.clone(), i);
            *self.id_types.entry(t.to_ascii_uppercase()).or_default() += 1;
        }
        if !entry.given_name.is_empty() {
            add_index(&mut self.by_given, entry.given_name.to_lowercase(), i);
        }
        if !entry.family_name.is_empty() {
            add_index(&mut self.by_family, entry.family_name.to_lowercase(), i);
        }
    }

    fn unindex(&mut self, i: u32) {
        let entry = self.entries[i as usize].clone();
        for (t, v) in &entry.ids {
            remove_index(&mut self.by_id, &id_key(t, v), i);
            remove_index(&mut self.by_value, v, i);
            let upper = t.to_ascii_uppercase();
            if let Some(n) = self.id_types.get_mut(&upper) {
                *n -= 1;
                if *n == 0 {
                    self.id_types.remove(&upper);
                }
            }
        }
        remove_index(&mut self.by_given, &entry.given_name.to_lowercase(), i);
        remove_index(&mut self.by_family, &entry.family_name.to_lowercase(), i);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entry(&self, i: u32) -> &Entry {
        &self.entries[i as usize]
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Records with this identifier (type compared case-insensitively): O(1).
    pub fn by_identifier(&self, id_type: &str, value: &str) -> &[u32] {
        self.by_id
            .get(&id_key(id_type, value))
            .map_or(&[], Vec::as_slice)
    }

    /// Records with an identifier of this value, whatever its type: O(1).
    pub fn by_identifier_value(&self, value: &str) -> &[u32] {
        self.by_value.get(value).map_or(&[], Vec::as_slice)
    }

    /// Records with this given name (case-insensitive): O(1).
    pub fn by_given_name(&self, name: &str) -> &[u32] {
        self.by_given
            .get(&name.to_lowercase())
            .map_or(&[], Vec::as_slice)
    }

    /// Records with this family name (case-insensitive): O(1).
    pub fn by_family_name(&self, name: &str) -> &[u32] {
        self.by_family
            .get(&name.to_lowercase())
            .map_or(&[], Vec::as_slice)
    }

    /// True when some record has an identifier of this type (case-insensitive).
    pub fn has_identifier_type(&self, id_type: &str) -> bool {
        self.id_types.contains_key(&id_type.to_ascii_uppercase())
    }

    /// Every record, in dataset order.
    pub fn records(&self) -> Vec<Value> {
        self.entries.iter().map(Entry::record).collect()
    }

    /// Up to `n` identifiers `(type, value)` of beneficiaries of this class, in dataset order
    /// (the first identifier of each record). [`Sample::Unknown`] gives `n` UIN-shaped
    /// identifiers that no record has.
    pub fn sample_identifiers(&self, class: Sample, n: usize) -> Vec<(String, String)> {
        let want = match class {
            Sample::Active => EnrolmentStatus::Active,
            Sample::Suspended => EnrolmentStatus::Suspended,
            Sample::Graduated => EnrolmentStatus::Graduated,
            Sample::Deceased => EnrolmentStatus::Deceased,
            Sample::Unknown => {
                let mut out = Vec::with_capacity(n);
                let mut k = 0u64;
                while out.len() < n {
                    let value = format!("UIN-9{k:08}");
                    k += 1;
                    if self.by_identifier("UIN", &value).is_empty()
                        && self.by_identifier_value(&value).is_empty()
                    {
                        out.push(("UIN".to_owned(), value));
                    }
                }
                return out;
            }
        };
        self.entries
            .iter()
            .filter(|e| e.class() == Some(want))
            .filter_map(|e| e.ids.first().cloned())
            .take(n)
            .collect()
    }

    /// Applies one beneficiary of an enrollment update: a record with an identifier already in
    /// the dataset gets its enrolments merged (same programme replaced, new ones added) and its
    /// other members replaced; an unknown one is added. Returns what was done, and to which entry.
    pub fn apply_update(&mut self, record: &Value) -> Result<(UpdateOutcome, u32)> {
        let incoming = Entry::from_record(record)?;
        let existing = incoming
            .ids
            .iter()
            .find_map(|(t, v)| self.by_identifier(t, v).first().copied());
        let Some(i) = existing else {
            self.push(incoming);
            return Ok((UpdateOutcome::Added, self.entries.len() as u32 - 1));
        };
        let mut merged = self.entries[i as usize].record();
        merge_record(&mut merged, record);
        let entry = Entry::from_record(&merged)?;
        self.unindex(i);
        self.index(&entry, i);
        self.entries[i as usize] = entry;
        Ok((UpdateOutcome::Updated, i))
    }
}

/// The columns of a CSV dataset, one row per enrolment.
pub const CSV_COLUMNS: [&str; 8] = [
    "id_type",
    "id_value",
    "given_name",
    "family_name",
    "programme_id",
    "programme_name",
    "enrolment_status",
    "enrolment_date",
];

fn programme_key(item: &Value) -> Option<String> {
    let p = item.get("programme").or_else(|| item.get("program"))?;
    text(p.get("programme_identifier")).or_else(|| text(p.get("programme_name")))
}

fn merge_record(base: &mut Value, update: &Value) {
    let old_items: Vec<Value> = enrolment_items(base).into_iter().cloned().collect();
    let new_items: Vec<Value> = enrolment_items(update).into_iter().cloned().collect();
    let mut merged = old_items;
    for item in new_items {
        let key = programme_key(&item);
        match merged
            .iter_mut()
            .find(|m| key.is_some() && programme_key(m) == key)
        {
            Some(slot) => *slot = item,
            None => merged.push(item),
        }
    }
    if let (Some(b), Some(u)) = (base.as_object_mut(), update.as_object()) {
        for (k, v) in u {
            if k != "member" {
                b.insert(k.clone(), v.clone());
            }
        }
        let member = b
            .entry("member")
            .or_insert_with(|| Value::Object(Map::new()));
        if let (Some(m), Some(um)) = (
            member.as_object_mut(),
            u.get("member").and_then(Value::as_object),
        ) {
            for (k, v) in um {
                if k != "programme_identifier" {
                    m.insert(k.clone(), v.clone());
                }
            }
            m.insert(
                "programme_identifier".into(),
                if merged.len() == 1 {
                    merged.remove(0)
                } else {
                    Value::Array(merged)
                },
            );
        }
    }
}

/// A minimal RFC 4180 reader: quoted fields (with `""` escapes, commas and line breaks inside),
/// `\n` or `\r\n` line ends.
pub fn parse_csv(text: &str) -> Result<Vec<Vec<String>>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    let mut at_field_start = true;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if at_field_start => {
                quoted = true;
                at_field_start = false;
            }
            ',' => {
                row.push(std::mem::take(&mut field));
                at_field_start = true;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
                at_field_start = true;
            }
            _ => {
                field.push(c);
                at_field_start = false;
            }
        }
    }
    if quoted {
        return Err(Error::Config(
            "CSV dataset has an unterminated quote".into(),
        ));
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    Ok(rows)
}

const GIVEN: [&str; 24] = [
    "Zoë", "José", "Ådne", "Þóra", "Amélie", "Søren", "Chloé", "Łukasz", "Renée", "Björn",
    "Aiyana", "Mateo", "Fatima", "Kwame", "Siobhán", "Anaïs", "Nguyệt", "Ōta", "Íñigo", "Maria",
    "Jürgen", "Aarav", "Leilani", "Olusegun",
];
const FAMILY: [&str; 20] = [
    "Nguyễn",
    "Ōkubo",
    "García",
    "Müller",
    "Öztürk",
    "Kowalski",
    "Ndlovu",
    "Smith",
    "Dvořák",
    "Hernández",
    "Þórsdóttir",
    "Jørgensen",
    "Mbeki",
    "Santos",
    "O'Brien",
    "Čapek",
    "Åberg",
    "Śliwa",
    "Ibáñez",
    "Tanaka",
];
/// `(programme_identifier, programme_name)` of the synthetic programmes.
pub const PROGRAMMES: [(&str, &str); 5] = [
    ("PRG-CASH-01", "Cash Transfer Programme"),
    ("PRG-FOOD-02", "Programme d'Aide Alimentaire (Sécurité)"),
    ("PRG-PENS-03", "Social Pension"),
    ("PRG-SCHL-04", "School Feeding"),
    ("PRG-HLTH-05", "Health Insurance Subsidy"),
];
const BENEFITS: [(&str, &str, &str); 3] = [
    ("Cash", "USD 50", "Monthly"),
    ("In-kind", "Food basket", "Monthly"),
    ("Voucher", "USD 120", "Quarterly"),
];

fn date(rng: &mut SplitMix64, from_year: u64, years: u64) -> String {
    format!(
        "{}-{:02}-{:02}",
        from_year + rng.below(years),
        1 + rng.below(12),
        1 + rng.below(28)
    )
}

/// The synthetic beneficiary number `i` (0-based) for `seed`: a pure function of both.
///
/// - identifier `UIN` / `UIN-<i+1, 8 digits>` (e.g. `UIN-00000042` for `i = 41`); about 40 %
///   also have an `NID` (`NID-<10 digits>`), listed with the UIN in
///   `member.demographic_info.identifier`;
/// - names drawn from lists with non-ASCII letters (Zoë, José, Nguyễn, Ōkubo, Ådne, Þóra …);
/// - one or two enrolments in the programmes of [`PROGRAMMES`]. The beneficiary's class is
///   Active (about 50 %), Suspended (15 %), Graduated (20 %) or Deceased (15 %), and records 0–3
///   are one of each. An Active or Suspended beneficiary may also have a Graduated enrolment;
///   Graduated and Deceased ones have only that status;
/// - the status is written as a label, and in about 20 % of records as a code (1–4, as a number
///   or a string); about 30 % of records spell the field `enrollment_status`;
/// - `programme_identifier` is an object for about half of the single-enrolment records and a
///   list otherwise.
pub fn synthetic_record(i: usize, seed: u64) -> Value {
    let mut rng = SplitMix64::new(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    rng.next_u64();
    let class = match i {
        0 => EnrolmentStatus::Active,
        1 => EnrolmentStatus::Suspended,
        2 => EnrolmentStatus::Graduated,
        3 => EnrolmentStatus::Deceased,
        _ => match rng.below(100) {
            0..=49 => EnrolmentStatus::Active,
            50..=64 => EnrolmentStatus::Suspended,
            65..=84 => EnrolmentStatus::Graduated,
            _ => EnrolmentStatus::Deceased,
        },
    };
    let uin = format!("UIN-{:08}", i + 1);
    let given = GIVEN[rng.below(GIVEN.len() as u64) as usize];
    let family = FAMILY[rng.below(FAMILY.len() as u64) as usize];
    let sex = if rng.below(2) == 0 { "F" } else { "M" };
    let birth = date(&mut rng, 1940, 65);
    let spelling = if rng.below(10) < 3 {
        "enrollment_status"
    } else {
        "enrolment_status"
    };
    let status_form = rng.below(10); // 0: numeric code, 1: string code, else label
    let second_id = rng.below(10) < 4;
    let first_programme = rng.below(PROGRAMMES.len() as u64) as usize;
    let two = rng.below(3) == 0;
    let as_object = !two && rng.below(2) == 0;

    let mut statuses = vec![class];
    if two {
        statuses.push(if class.is_current() {
            EnrolmentStatus::Graduated
        } else {
            class
        });
    }
    let enrolments: Vec<Value> = statuses
        .iter()
        .enumerate()
        .map(|(k, status)| {
            let (pid, pname) = PROGRAMMES[(first_programme + k) % PROGRAMMES.len()];
            let (btype, bvalue, bfreq) = BENEFITS[rng.below(BENEFITS.len() as u64) as usize];
            let status_value = match status_form {
                0 => json!(status.code()),
                1 => json!(status.code().to_string()),
                _ => json!(status.label()),
            };
            let mut item = json!({
                "programme": {"programme_identifier": pid, "programme_name": pname},
                "enrolment_date": date(&mut rng, 2015, 9),
                "status_change_date": if *status == EnrolmentStatus::Active { String::new() } else { date(&mut rng, 2024, 2) },
                "benefits": {
                    "benefit_type": btype,
                    "benefit_date": date(&mut rng, 2024, 2),
                    "benefit_value": bvalue,
                    "benefit_frequency": bfreq,
                },
            });
            item.as_object_mut()
                .expect("object literal")
                .insert(spelling.into(), status_value);
            item
        })
        .collect();
    let programmes = if as_object {
        enrolments.into_iter().next().expect("one enrolment")
    } else {
        Value::Array(enrolments)
    };
    let mut demographic = json!({
        "person": {
            "identifier_type": "UIN",
            "identifier_value": uin,
            "name": {"first_name": given, "surname": family},
            "sex": sex,
            "birth_date": birth,
        },
    });
    if second_id {
        let nid = format!("NID-{:010}", 3_000_000_000u64 + (i as u64) * 7 + seed % 7);
        demographic["identifier"] = json!([
            {"identifier_type": "UIN", "identifier_value": uin},
            {"identifier_type": "NID", "identifier_value": nid},
        ]);
    }
    json!({
        "@type": "Beneficiary",
        "assistance_unit": "1",
        "member": {
            "member_identifier": uin,
            "demographic_info": demographic,
            "registration_date": date(&mut rng, 2014, 10),
            "programme_identifier": programmes,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_data_is_deterministic_and_varied() {
        let a = Dataset::synthetic(300, 7);
        let b = Dataset::synthetic(300, 7);
        assert_eq!(a.records(), b.records());
        assert_ne!(a.records(), Dataset::synthetic(300, 8).records());
        let text = serde_json::to_string(&a.records()).unwrap();
        for needle in [
            "\"enrolment_status\"",
            "\"enrollment_status\"",
            "\"Active\"",
            "\"Deceased\"",
            "\"Graduated\"",
            "\"Suspended\"",
            "_status\":1",
            "_status\":\"4\"",
            "\"programme_identifier\":[",
            "\"programme_identifier\":{\"benefits\"",
            "NID-",
        ] {
            assert!(text.contains(needle), "{needle}");
        }
        assert!(!text.is_ascii());
        for class in EnrolmentStatus::ALL {
            assert!(a.entries().iter().any(|e| e.class() == Some(class)));
        }
        let first = &a.entries()[41];
        assert_eq!(first.ids[0], ("UIN".into(), "UIN-00000042".into()));
        assert_eq!(a.by_identifier("uin", "UIN-00000042"), &[41]);
    }

    #[test]
    fn csv_rows_group_into_beneficiaries() {
        let csv = "id_type,id_value,given_name,family_name,programme_id,programme_name,enrolment_status,enrolment_date\r\n\
                   UIN,U1,Zoë,\"O'Brien, Jr\",P1,Cash,Active,2024-01-02\r\n\
                   UIN,U1,Zoë,\"O'Brien, Jr\",P2,\"Food \"\"Plus\"\"\",3,2023-05-06\n\
                   NID,N2,José,Nguyễn,,,,\n";
        let ds = Dataset::from_csv(csv).unwrap();
        assert_eq!(ds.len(), 2);
        let e = ds.entry(ds.by_identifier("UIN", "U1")[0]);
        assert_eq!(e.family_name, "O'Brien, Jr");
        assert_eq!(e.enrolments.len(), 2);
        assert_eq!(e.enrolments[1].status, Some(EnrolmentStatus::Graduated));
        assert_eq!(
            e.record()["member"]["programme_identifier"][1]["programme"]["programme_name"],
            "Food \"Plus\""
        );
        assert_eq!(
            ds.entry(ds.by_identifier("NID", "N2")[0]).enrolments,
            vec![]
        );
        assert!(Dataset::from_csv("id_type,id_value\nUIN,1\n").is_err());
    }

    #[test]
    fn updates_merge_enrolments_by_programme() {
        let mut ds = Dataset::synthetic(5, 1);
        let update = json!({"member": {"demographic_info": {"person": {
            "identifier_type": "UIN", "identifier_value": "UIN-00000001"}},
            "programme_identifier": {"programme": {"programme_identifier": "NEW-1"}, "enrolment_status": "Suspended"}}});
        assert_eq!(ds.apply_update(&update).unwrap().0, UpdateOutcome::Updated);
        let e = ds.entry(0);
        assert!(e.enrolments.iter().any(|x| x.programme_id == "NEW-1"));
        assert_eq!(e.given_name, ds.entry(0).given_name);
        let fresh = json!({"member": {"demographic_info": {"person": {
            "identifier_type": "UIN", "identifier_value": "X-1", "name": {"first_name": "Þóra"}}}}});
        assert_eq!(ds.apply_update(&fresh).unwrap().0, UpdateOutcome::Added);
        assert_eq!(ds.by_given_name("þóra"), &[5]);
        assert!(ds.apply_update(&json!({"member": {}})).is_err());
    }

    #[test]
    fn unknown_samples_are_not_in_the_dataset() {
        let ds = Dataset::synthetic(50, 0);
        for (t, v) in ds.sample_identifiers(Sample::Unknown, 5) {
            assert!(ds.by_identifier(&t, &v).is_empty());
        }
        assert_eq!(ds.sample_identifiers(Sample::Deceased, 2).len(), 2);
    }
}
