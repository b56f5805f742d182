//! The search queries the sandbox understands, and their evaluation against the [`Dataset`].
//!
//! - `idtype-value`: `{"type": "UIN", "value": "UIN-00000042"}`.
//! - `expression`: a Mongo-like document, bare or wrapped as `{"type": …, "value": {"expression":
//!   {"collection": …, "query": Q}}}` or `{"expression": …}`; `Q` is `{"$and": [Q…]}`,
//!   `{"$or": [Q…]}`, `{"$not": Q}` or `{attribute: value | {"$eq": value} | {"$in": [values]}}`
//!   (several attributes in one object are AND-ed; `and`/`or`/`eq`/`in` without `$` too).
//! - `predicate`: the spec's list of `{seq_num, expression1: {attribute_name, operator,
//!   attribute_value}, condition, expression2}`; items are AND-ed in `seq_num` order; operators
//!   `eq` and `in`; conditions `and`, `or`, `not` (expression1 and not expression2).
//!
//! Attributes: `identifier_type`, `identifier_value` (also `identifier`, `person_identifier`,
//! `member_identifier`), any identifier type of the dataset used as a name (`"UIN": "…"`),
//! `given_name`/`first_name`, `family_name`/`surname`/`last_name`, and `programme_identifier`
//! (also the spec's dotted `programme_identifier.program.programme_identifier`). Identifier and
//! name conditions are answered from hash indexes; anything else falls back to a scan.

use serde_json::Value;

use super::dataset::{Dataset, Entry};

/// One condition on a record.
#[derive(Clone, Debug, PartialEq)]
pub enum Cond {
    /// An identifier with this type (case-insensitive) and value.
    Id(String, String),
    IdType(String),
    IdValue(String),
    GivenName(String),
    FamilyName(String),
    Programme(String),
    And(Vec<Cond>),
    Or(Vec<Cond>),
    Not(Box<Cond>),
}

/// Why a query cannot be read (the item is rejected with `rjct.search_criteria.invalid`).
pub type QueryError = String;

fn scalar(v: &Value) -> Result<String, QueryError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(format!("value {v} must be a string or a number")),
    }
}

fn attribute(ds: &Dataset, name: &str, value: &Value) -> Result<Cond, QueryError> {
    let v = scalar(value)?;
    let lower = name.to_ascii_lowercase();
    Ok(match lower.as_str() {
        "identifier_type" | "id_type" => Cond::IdType(v),
        "identifier_value" | "id_value" | "identifier" | "person_identifier"
        | "member_identifier" => Cond::IdValue(v),
        "given_name" | "first_name" => Cond::GivenName(v),
        "family_name" | "surname" | "last_name" => Cond::FamilyName(v),
        "programme_identifier"
        | "program_identifier"
        | "programme_id"
        | "programme_identifier.program.programme_identifier"
        | "programme_identifier.programme.programme_identifier" => Cond::Programme(v),
        _ if ds.has_identifier_type(name) => Cond::Id(name.to_owned(), v),
        _ => return Err(format!("unsupported attribute '{name}'")),
    })
}

fn operator(ds: &Dataset, name: &str, op: &str, value: &Value) -> Result<Cond, QueryError> {
    match op.trim_start_matches('$').to_ascii_lowercase().as_str() {
        "eq" => attribute(ds, name, value),
        "in" => {
            let Value::Array(items) = value else {
                return Err(format!("operator 'in' on '{name}' needs a list"));
            };
            Ok(Cond::Or(
                items
                    .iter()
                    .map(|v| attribute(ds, name, v))
                    .collect::<Result<_, _>>()?,
            ))
        }
        other => Err(format!("unsupported operator '{other}' (eq and in are)")),
    }
}

/// Joins conditions with AND, pairing a lone `identifier_type` with a lone `identifier_value`
/// into one identifier condition (they describe the same identifier).
fn and(mut conds: Vec<Cond>) -> Cond {
    let types: Vec<usize> = (0..conds.len())
        .filter(|i| matches!(conds[*i], Cond::IdType(_)))
        .collect();
    let values: Vec<usize> = (0..conds.len())
        .filter(|i| matches!(conds[*i], Cond::IdValue(_)))
        .collect();
    if let ([t], [v]) = (types.as_slice(), values.as_slice()) {
        let (t, v) = (*t, *v);
        let (Cond::IdType(ty), Cond::IdValue(val)) = (conds[t].clone(), conds[v].clone()) else {
            unreachable!()
        };
        conds[t] = Cond::Id(ty, val);
        conds.remove(v);
    }
    if conds.len() == 1 {
        conds.remove(0)
    } else {
        Cond::And(conds)
    }
}

fn expression(ds: &Dataset, q: &Value, depth: usize) -> Result<Cond, QueryError> {
    if depth > 16 {
        return Err("expression nested too deeply".into());
    }
    let Value::Object(obj) = q else {
        return Err("an expression must be an object".into());
    };
    if obj.is_empty() {
        return Err("empty expression".into());
    }
    let mut conds = Vec::with_capacity(obj.len());
    for (key, v) in obj {
        let k = key.trim_start_matches('$').to_ascii_lowercase();
        let cond = match k.as_str() {
            "and" | "or" => {
                let Value::Array(items) = v else {
                    return Err(format!("'{key}' needs a list"));
                };
                if items.is_empty() {
                    return Err(format!("'{key}' needs at least one expression"));
                }
                let parts: Vec<Cond> = items
                    .iter()
                    .map(|i| expression(ds, i, depth + 1))
                    .collect::<Result<_, _>>()?;
                if k == "and" {
                    and(parts)
                } else {
                    Cond::Or(parts)
                }
            }
            "not" => Cond::Not(Box::new(expression(ds, v, depth + 1)?)),
            _ => match v {
                Value::Object(ops) => {
                    if ops.is_empty() {
                        return Err(format!("no operator for '{key}'"));
                    }
                    and(ops
                        .iter()
                        .map(|(op, value)| operator(ds, key, op, value))
                        .collect::<Result<_, _>>()?)
                }
                _ => attribute(ds, key, v)?,
            },
        };
        conds.push(cond);
    }
    Ok(and(conds))
}

fn predicate_expr(ds: &Dataset, e: &Value) -> Result<Cond, QueryError> {
    let name = e
        .get("attribute_name")
        .and_then(Value::as_str)
        .ok_or("a predicate expression needs 'attribute_name'")?;
    let op = e.get("operator").and_then(Value::as_str).unwrap_or("eq");
    let value = e
        .get("attribute_value")
        .ok_or("a predicate expression needs 'attribute_value'")?;
    operator(ds, name, op, value)
}

fn predicate(ds: &Dataset, q: &Value) -> Result<Cond, QueryError> {
    let Value::Array(items) = q else {
        return Err("a predicate query must be a list".into());
    };
    if items.is_empty() {
        return Err("empty predicate list".into());
    }
    let mut ordered: Vec<&Value> = items.iter().collect();
    ordered.sort_by(|a, b| {
        let n = |v: &Value| v.get("seq_num").and_then(Value::as_f64).unwrap_or(0.0);
        n(a).total_cmp(&n(b))
    });
    let mut conds = Vec::with_capacity(items.len());
    for item in ordered {
        let first = predicate_expr(
            ds,
            item.get("expression1")
                .ok_or("a predicate needs 'expression1'")?,
        )?;
        let cond = match item.get("expression2") {
            None | Some(Value::Null) => first,
            Some(e2) => {
                let second = predicate_expr(ds, e2)?;
                match item
                    .get("condition")
                    .and_then(Value::as_str)
                    .unwrap_or("and")
                    .to_ascii_lowercase()
                    .as_str()
                {
                    "and" => and(vec![first, second]),
                    "or" => Cond::Or(vec![first, second]),
                    "not" => and(vec![first, Cond::Not(Box::new(second))]),
                    other => return Err(format!("unsupported condition '{other}'")),
                }
            }
        };
        conds.push(cond);
    }
    Ok(and(conds))
}

/// Reads the `query` of a search criteria for its `query_type`.
pub fn parse(ds: &Dataset, query_type: &str, query: &Value) -> Result<Cond, QueryError> {
    match query_type {
        "idtype-value" => {
            let t = query
                .get("type")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .ok_or("idtype-value query needs a non-empty 'type'")?;
            let v = scalar(
                query
                    .get("value")
                    .ok_or("idtype-value query needs a 'value'")?,
            )?;
            if v.is_empty() {
                return Err("idtype-value query needs a non-empty 'value'".into());
            }
            Ok(Cond::Id(t.to_owned(), v))
        }
        "expression" => {
            let mut q = query;
            // {"type": ..., "value": {"expression": {"collection": ..., "query": Q}}}
            if let Some(v) = q.get("value").filter(|_| q.get("type").is_some()) {
                q = v;
            }
            if let Some(e) = q.get("expression") {
                q = e;
            }
            if let Some(inner) = q.get("query").filter(|_| q.get("collection").is_some()) {
                q = inner;
            }
            expression(ds, q, 0)
        }
        "predicate" => {
            let q = match query {
                Value::Object(o) if o.contains_key("value") => &o["value"],
                other => other,
            };
            predicate(ds, q)
        }
        "" => Err("search criteria needs a 'query_type'".into()),
        other => Err(format!(
            "unsupported query_type '{other}' (idtype-value, expression and predicate are)"
        )),
    }
}

impl Cond {
    /// True when the record satisfies the condition.
    pub fn matches(&self, e: &Entry) -> bool {
        match self {
            Cond::Id(t, v) => e.has_identifier(t, v),
            Cond::IdType(t) => e.ids.iter().any(|(x, _)| x.eq_ignore_ascii_case(t)),
            Cond::IdValue(v) => e.ids.iter().any(|(_, x)| x == v),
            Cond::GivenName(n) => e.given_name.to_lowercase() == n.to_lowercase(),
            Cond::FamilyName(n) => e.family_name.to_lowercase() == n.to_lowercase(),
            Cond::Programme(p) => e.enrolments.iter().any(|x| x.programme_id == *p),
            Cond::And(parts) => parts.iter().all(|c| c.matches(e)),
            Cond::Or(parts) => parts.iter().any(|c| c.matches(e)),
            Cond::Not(c) => !c.matches(e),
        }
    }

    /// Candidate records from the indexes, or None when the condition needs a scan.
    fn candidates(&self, ds: &Dataset) -> Option<Vec<u32>> {
        match self {
            Cond::Id(t, v) => Some(ds.by_identifier(t, v).to_vec()),
            Cond::IdValue(v) => Some(ds.by_identifier_value(v).to_vec()),
            Cond::GivenName(n) => Some(ds.by_given_name(n).to_vec()),
            Cond::FamilyName(n) => Some(ds.by_family_name(n).to_vec()),
            Cond::And(parts) => parts
                .iter()
                .filter_map(|c| c.candidates(ds))
                .min_by_key(Vec::len),
            Cond::Or(parts) => {
                let mut all = Vec::new();
                for c in parts {
                    all.extend(c.candidates(ds)?);
                }
                all.sort_unstable();
                all.dedup();
                Some(all)
            }
            Cond::IdType(_) | Cond::Programme(_) | Cond::Not(_) => None,
        }
    }

    /// The programmes this condition requires (AND-ed `programme_identifier` conditions).
    pub fn programmes(&self) -> Vec<&str> {
        match self {
            Cond::Programme(p) => vec![p.as_str()],
            Cond::And(parts) => parts.iter().flat_map(Cond::programmes).collect(),
            _ => Vec::new(),
        }
    }

    /// Indexes of the matching records, in dataset order.
    pub fn find(&self, ds: &Dataset) -> Vec<u32> {
        match self.candidates(ds) {
            Some(mut c) => {
                c.retain(|i| self.matches(ds.entry(*i)));
                c.sort_unstable();
                c.dedup();
                c
            }
            None => (0..ds.len() as u32)
                .filter(|i| self.matches(ds.entry(*i)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ds() -> Dataset {
        Dataset::synthetic(200, 3)
    }

    #[test]
    fn every_query_type_finds_the_same_beneficiary() {
        let ds = ds();
        let e = ds.entry(41);
        let (given, family) = (e.given_name.clone(), e.family_name.clone());
        let queries = [
            (
                "idtype-value",
                json!({"type": "UIN", "value": "UIN-00000042"}),
            ),
            (
                "idtype-value",
                json!({"type": "uin", "value": "UIN-00000042"}),
            ),
            ("expression", json!({"UIN": {"$eq": "UIN-00000042"}})),
            (
                "expression",
                json!({"type": "ns:org:QueryType:expression", "value": {"expression": {
                    "collection": "Beneficiary",
                    "query": {"$and": [{"identifier_type": {"$eq": "UIN"}}, {"identifier_value": "UIN-00000042"}]}}}}),
            ),
            (
                "predicate",
                json!([{"seq_num": 1, "expression1": {"attribute_name": "identifier_type", "operator": "eq", "attribute_value": "UIN"},
                        "condition": "and",
                        "expression2": {"attribute_name": "identifier_value", "operator": "eq", "attribute_value": "UIN-00000042"}}]),
            ),
        ];
        for (qt, q) in queries {
            assert_eq!(parse(&ds, qt, &q).unwrap().find(&ds), vec![41], "{q}");
        }
        let by_name = parse(
            &ds,
            "expression",
            &json!({"given_name": given.to_uppercase(), "family_name": family}),
        )
        .unwrap()
        .find(&ds);
        assert!(by_name.contains(&41));
        assert!(by_name
            .iter()
            .all(|i| ds.entry(*i).given_name == given && ds.entry(*i).family_name == family));
        let either = parse(
            &ds,
            "predicate",
            &json!([{"expression1": {"attribute_name": "UIN", "operator": "in", "attribute_value": ["UIN-00000001", "UIN-00000002", "nope"]}}]),
        )
        .unwrap();
        assert_eq!(either.find(&ds), vec![0, 1]);
    }

    #[test]
    fn bad_queries_are_explained() {
        let ds = ds();
        for (qt, q) in [
            ("idtype-value", json!({"type": "UIN"})),
            ("idtype-value", json!({"value": "x"})),
            ("expression", json!({"age": {"$gt": 3}})),
            ("expression", json!({"UIN": {"$gt": "3"}})),
            ("expression", json!([])),
            ("predicate", json!({"nope": 1})),
            ("graphql", json!({})),
            ("", json!({})),
        ] {
            assert!(parse(&ds, qt, &q).is_err(), "{qt} {q}");
        }
    }
}
