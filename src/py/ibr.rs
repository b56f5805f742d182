//! Binding of the IBR service: identifier extraction, result objects, the streaming batch iterator.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyIterator, PyList, PyString, PyTuple};
use serde_json::Value;

use super::client::PyDciClient;
use super::gil::blocking;
use super::json::{to_python, to_value};
use crate::dci::client::DciClient;
use crate::dci::ibr::{self, Beneficiary, DuplicationResult, Identifier};

fn text_of(obj: &Bound<'_, PyAny>) -> String {
    if obj.is_none() {
        return String::new();
    }
    obj.downcast::<PyString>()
        .map(|s| s.to_string())
        .or_else(|_| obj.str().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// One identifier from a `(type, value)` pair or an object with `type`/`value`, `id_type`/
/// `id_value` or `identifier_type`/`identifier_value` (attributes or dict keys).
fn identifier_of(obj: &Bound<'_, PyAny>) -> std::result::Result<Identifier, String> {
    if let Ok(t) = obj.downcast::<PyTuple>() {
        if t.len() == 2 {
            return Ok(Identifier::new(
                text_of(&t.get_item(0).map_err(|e| e.to_string())?),
                text_of(&t.get_item(1).map_err(|e| e.to_string())?),
            ));
        }
    }
    for (ty, val) in [
        ("id_type", "id_value"),
        ("identifier_type", "identifier_value"),
        ("type", "value"),
    ] {
        let pair = if let Ok(d) = obj.downcast::<PyDict>() {
            (
                d.get_item(ty).ok().flatten(),
                d.get_item(val).ok().flatten(),
            )
        } else {
            (obj.getattr(ty).ok(), obj.getattr(val).ok())
        };
        if let (Some(t), Some(v)) = pair {
            return Ok(Identifier::new(text_of(&t), text_of(&v)));
        }
    }
    if let Ok(l) = obj.downcast::<PyList>() {
        if l.len() == 2 {
            return Ok(Identifier::new(
                text_of(&l.get_item(0).map_err(|e| e.to_string())?),
                text_of(&l.get_item(1).map_err(|e| e.to_string())?),
            ));
        }
    }
    Err("each identifier must be a (type, value) pair or have type/value attributes".into())
}

fn identifiers_of(obj: &Bound<'_, PyAny>) -> std::result::Result<Vec<Identifier>, String> {
    if obj.is_instance_of::<PyString>() || obj.is_instance_of::<PyDict>() {
        return Err("identifiers must be a list of (type, value) pairs".into());
    }
    let iter = obj
        .try_iter()
        .map_err(|_| "identifiers must be a list of (type, value) pairs".to_owned())?;
    let mut out = Vec::new();
    for item in iter {
        out.push(identifier_of(&item.map_err(|e| e.to_string())?)?);
    }
    Ok(out)
}

/// One identifier's outcome in a `DuplicationResult`.
#[pyclass(
    name = "IdentifierOutcome",
    module = "spp_dci_ibr._native",
    frozen,
    get_all
)]
pub struct PyOutcome {
    id_type: String,
    id_value: String,
    /// records | no_records | failed | pending
    status: &'static str,
    reason: Option<String>,
    record_count: usize,
    reference_id: Option<String>,
}

#[pymethods]
impl PyOutcome {
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("id_type", &self.id_type)?;
        d.set_item("id_value", &self.id_value)?;
        d.set_item("status", self.status)?;
        d.set_item("reason", &self.reason)?;
        d.set_item("record_count", self.record_count)?;
        d.set_item("reference_id", &self.reference_id)?;
        Ok(d)
    }
    fn __repr__(&self) -> String {
        format!(
            "IdentifierOutcome({} {}: {})",
            self.id_type, self.id_value, self.status
        )
    }
}

/// The result of a duplication check. `state` is "completed" or "failed"; `result` is
/// "no_match" | "possible_match" | "confirmed_match", or None exactly when the check failed
/// (see `reasons`). An identifier that could not be checked never yields "no_match".
#[pyclass(name = "DuplicationResult", module = "spp_dci_ibr._native", frozen)]
pub struct PyDuplicationResult {
    key: PyObject,
    inner: DuplicationResult,
}

#[pymethods]
impl PyDuplicationResult {
    /// The registrant's key given to `check_many` (None for `check_duplication`).
    #[getter]
    fn key(&self, py: Python<'_>) -> PyObject {
        self.key.clone_ref(py)
    }
    #[getter]
    fn state(&self) -> &'static str {
        if self.inner.failed() {
            "failed"
        } else {
            "completed"
        }
    }
    #[getter]
    fn result(&self) -> Option<&'static str> {
        self.inner.result.map(|r| r.as_str())
    }
    /// True for confirmed or possible matches; False otherwise, including failed checks.
    #[getter]
    fn is_duplicate(&self) -> bool {
        self.inner.is_duplicate()
    }
    #[getter]
    fn matched_programs(&self) -> Vec<String> {
        self.inner.matched_programs.clone()
    }
    #[getter]
    fn reasons(&self) -> Vec<String> {
        self.inner.reasons.clone()
    }
    #[getter]
    fn outcomes(&self) -> Vec<PyOutcome> {
        self.inner
            .outcomes
            .iter()
            .map(|o| PyOutcome {
                id_type: o.identifier.id_type.clone(),
                id_value: o.identifier.value.clone(),
                status: o.status.as_str(),
                reason: o.reason.clone(),
                record_count: o.beneficiaries.len(),
                reference_id: o.reference_id.clone(),
            })
            .collect()
    }
    #[getter]
    fn raw_responses<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_python(py, &Value::Array(self.inner.raw_responses()))
    }
    /// True when every answer it was read from was verified against the registry's keys;
    /// False for answers read unverified (``accept_unverified_answers=True`` without registry
    /// keys, or ``parse_callback`` without ``verified=True``).
    #[getter]
    fn verified(&self) -> bool {
        self.inner.verified
    }
    /// The first transaction id used (None when nothing was sent).
    #[getter]
    fn transaction_id(&self) -> Option<String> {
        self.inner.transaction_ids.first().cloned()
    }
    /// The beneficiaries found, across identifiers.
    #[getter]
    fn beneficiaries(&self) -> Vec<PyBeneficiary> {
        self.inner
            .outcomes
            .iter()
            .flat_map(|o| o.beneficiaries.iter().cloned())
            .map(|b| PyBeneficiary { inner: b })
            .collect()
    }
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("key", self.key.clone_ref(py))?;
        d.set_item("state", self.state())?;
        d.set_item("result", self.result())?;
        d.set_item("is_duplicate", self.is_duplicate())?;
        d.set_item("matched_programs", self.matched_programs())?;
        d.set_item("reasons", self.reasons())?;
        let outcomes = PyList::empty(py);
        for o in self.outcomes() {
            outcomes.append(o.to_dict(py)?)?;
        }
        d.set_item("outcomes", outcomes)?;
        d.set_item("transaction_id", self.transaction_id())?;
        d.set_item("verified", self.inner.verified)?;
        d.set_item("raw_responses", self.raw_responses(py)?)?;
        Ok(d)
    }
    fn __bool__(&self) -> bool {
        !self.inner.failed()
    }
    fn __repr__(&self) -> String {
        format!(
            "DuplicationResult(state='{}', result={}, matched_programs={:?})",
            self.state(),
            self.result()
                .map(|r| format!("'{r}'"))
                .unwrap_or_else(|| "None".into()),
            self.inner.matched_programs
        )
    }
}

/// A beneficiary record: identifier, name, programme enrolments, raw record.
#[pyclass(name = "BeneficiaryInfo", module = "spp_dci_ibr._native", frozen)]
#[derive(Clone)]
pub struct PyBeneficiary {
    inner: Beneficiary,
}

#[pymethods]
impl PyBeneficiary {
    #[getter]
    fn identifier(&self) -> Option<(String, String)> {
        self.inner
            .identifier
            .as_ref()
            .map(|i| (i.id_type.clone(), i.value.clone()))
    }
    #[getter]
    fn name(&self) -> Option<String> {
        self.inner.name.clone()
    }
    /// One dict per enrolment: programme_id, programme_name, status, enrolment_date, benefits.
    #[getter]
    fn programs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for e in &self.inner.enrolments {
            let d = PyDict::new(py);
            d.set_item("programme_id", &e.programme_id)?;
            d.set_item("programme_name", &e.programme_name)?;
            d.set_item("status", e.status.as_ref().map(|s| s.as_str().to_owned()))?;
            d.set_item("enrolment_date", &e.enrolment_date)?;
            d.set_item("benefits", to_python(py, &e.benefits)?)?;
            out.append(d)?;
        }
        Ok(out)
    }
    #[getter]
    fn is_enrolled(&self) -> bool {
        self.inner.is_currently_enrolled()
    }
    #[getter]
    fn raw<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_python(py, &self.inner.raw)
    }
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("identifier", self.identifier())?;
        d.set_item("name", self.name())?;
        d.set_item("programs", self.programs(py)?)?;
        d.set_item("is_enrolled", self.is_enrolled())?;
        d.set_item("raw", self.raw(py)?)?;
        Ok(d)
    }
    fn __repr__(&self) -> String {
        format!(
            "BeneficiaryInfo(identifier={:?}, programs={})",
            self.identifier(),
            self.inner.enrolments.len()
        )
    }
}

fn wrap(py: Python<'_>, key: PyObject, inner: DuplicationResult) -> PyDuplicationResult {
    let _ = py;
    PyDuplicationResult { key, inner }
}

fn failed_input(reason: String, verified: bool) -> DuplicationResult {
    let mut r = DuplicationResult::classify(vec![], vec![], verified);
    r.reasons = vec![format!("invalid input: {reason}")];
    r
}

/// Duplication checks against an IBR through a `DCIClient` (PROTOCOL §7). Every call releases the
/// GIL while it waits.
#[pyclass(name = "IBRService", module = "spp_dci_ibr._native", frozen)]
pub struct PyIbrService {
    client: Arc<DciClient>,
    enrolled_supported: AtomicBool,
}

#[pymethods]
impl PyIbrService {
    #[new]
    fn new(client: &Bound<'_, PyDciClient>) -> Self {
        PyIbrService {
            client: client.get().inner.clone(),
            enrolled_supported: AtomicBool::new(true),
        }
    }

    /// Checks one registrant's identifiers (a list of `(type, value)` pairs or objects with
    /// those attributes). Never raises for registry or transport problems: the result's `state`
    /// is "failed" with `reasons`. Wrong Python arguments raise TypeError/ValueError.
    fn check_duplication(
        &self,
        py: Python<'_>,
        identifiers: &Bound<'_, PyAny>,
    ) -> PyResult<PyDuplicationResult> {
        let ids = identifiers_of(identifiers).map_err(PyValueError::new_err)?;
        let client = self.client.clone();
        let result = blocking(py, move || ibr::check_registrants(&client, &[ids], 100, 1));
        Ok(wrap(
            py,
            py.None(),
            result.into_iter().next().expect("one result"),
        ))
    }

    /// Checks registrants streamed from any iterable of `(key, identifiers)` pairs (or bare
    /// identifier lists, keyed by position). Yields one `DuplicationResult` per registrant, in
    /// input order, `.key` set. Packs `batch_size` identifiers per envelope with `concurrency`
    /// envelopes in flight; memory stays bounded however long the input. `progress(done, failed)`
    /// is called after each window of results.
    #[pyo3(signature = (registrants, *, batch_size = 100, concurrency = 4, progress = None))]
    fn check_many(
        &self,
        registrants: &Bound<'_, PyAny>,
        batch_size: usize,
        concurrency: usize,
        progress: Option<PyObject>,
    ) -> PyResult<PyCheckIterator> {
        if !(1..=1000).contains(&batch_size) {
            return Err(PyValueError::new_err("batch_size must be 1 to 1000"));
        }
        if !(1..=64).contains(&concurrency) {
            return Err(PyValueError::new_err("concurrency must be 1 to 64"));
        }
        Ok(PyCheckIterator {
            client: self.client.clone(),
            source: registrants.try_iter()?.unbind(),
            batch_size,
            concurrency,
            progress,
            ready: VecDeque::new(),
            position: 0,
            done: 0,
            failed: 0,
            exhausted: false,
        })
    }

    /// Beneficiary records for one identifier. Raises the client's errors.
    fn search_beneficiary(
        &self,
        py: Python<'_>,
        id_type: String,
        id_value: String,
    ) -> PyResult<Vec<PyBeneficiary>> {
        let client = self.client.clone();
        let result = blocking(py, move || {
            ibr::search_beneficiaries(&client, Identifier::new(id_type, id_value))
        })?;
        Ok(result
            .into_iter()
            .map(|inner| PyBeneficiary { inner })
            .collect())
    }

    /// `{"enrolled": bool, "programs": [...], "beneficiary_info": [...], "verified": bool}`
    /// from `/registry/sync/enrolled` when the registry offers it (search otherwise, and for
    /// detail). An answer that does not decide raises `UndecidedError`, never "not enrolled".
    fn get_enrollment_status<'py>(
        &self,
        py: Python<'py>,
        id_type: String,
        id_value: String,
    ) -> PyResult<Bound<'py, PyDict>> {
        let client = self.client.clone();
        let use_enrolled = self.enrolled_supported.load(Ordering::Relaxed);
        let status = blocking(py, move || {
            ibr::enrollment_status(&client, Identifier::new(id_type, id_value), use_enrolled)
        })?;
        if !status.via_enrolled {
            self.enrolled_supported.store(false, Ordering::Relaxed);
        }
        let d = PyDict::new(py);
        d.set_item("enrolled", status.enrolled)?;
        d.set_item("programs", status.programs())?;
        let info = PyList::empty(py);
        for b in status.records {
            info.append(PyBeneficiary { inner: b }.to_dict(py)?)?;
        }
        d.set_item("beneficiary_info", info)?;
        d.set_item("verified", status.verified)?;
        Ok(d)
    }

    /// Classifies `on-search` callback messages (or a search answer message) with the same
    /// strict reading and matching as a sync answer; see the stub for the arguments.
    #[staticmethod]
    #[pyo3(signature = (message, *, reference_ids = None, identifiers = None, transaction_id = None, earlier = None, verified = false))]
    fn parse_callback(
        py: Python<'_>,
        message: &Bound<'_, PyAny>,
        reference_ids: Option<Vec<String>>,
        identifiers: Option<&Bound<'_, PyAny>>,
        transaction_id: Option<String>,
        earlier: Option<&Bound<'_, PyAny>>,
        verified: bool,
    ) -> PyResult<PyDuplicationResult> {
        let ids = identifiers
            .map(identifiers_of)
            .transpose()
            .map_err(PyValueError::new_err)?
            .unwrap_or_default();
        match &reference_ids {
            Some(refs)
                if refs.iter().collect::<std::collections::BTreeSet<_>>().len() != refs.len() =>
            {
                return Err(PyValueError::new_err("reference_ids repeat"))
            }
            Some(refs) if !ids.is_empty() && refs.len() != ids.len() => {
                return Err(PyValueError::new_err(
                    "reference_ids and identifiers must have the same length (same order)",
                ))
            }
            None if ids.len() > 1 => {
                return Err(PyValueError::new_err(
                    "several identifiers need their reference_ids (same order): answers are \
                     matched by reference_id only",
                ))
            }
            _ => {}
        }
        let mut messages = match earlier {
            None => vec![],
            Some(e) => match to_value(e)? {
                Value::Array(list) => list,
                _ => return Err(PyValueError::new_err("earlier must be a list of messages")),
            },
        };
        messages.push(to_value(message)?);
        let views: Vec<&Value> = messages.iter().collect();
        Ok(wrap(
            py,
            py.None(),
            ibr::classify_callbacks(
                &views,
                reference_ids.as_deref(),
                &ids,
                transaction_id.as_deref(),
                verified,
            ),
        ))
    }
}

/// `(key, identifiers)` from a `(key, identifiers)` tuple, a `{"key", "identifiers"}` dict, or a
/// bare identifier list (keyed by position). Anything else becomes a failed result, not an error.
fn registrant_of(
    item: &Bound<'_, PyAny>,
    position: usize,
) -> PyResult<(PyObject, std::result::Result<Vec<Identifier>, String>)> {
    let py = item.py();
    let by_position =
        || -> PyResult<PyObject> { Ok(position.into_pyobject(py)?.into_any().unbind()) };
    if let Ok(t) = item.downcast::<PyTuple>() {
        if t.len() == 2 {
            return Ok((t.get_item(0)?.unbind(), identifiers_of(&t.get_item(1)?)));
        }
    }
    if let Ok(d) = item.downcast::<PyDict>() {
        if let Some(ids) = d.get_item("identifiers")? {
            let key = d
                .get_item("key")?
                .map(Bound::unbind)
                .map_or_else(by_position, Ok)?;
            return Ok((key, identifiers_of(&ids)));
        }
    }
    if item.is_instance_of::<PyList>() {
        return Ok((by_position()?, identifiers_of(item)));
    }
    Ok((
        by_position()?,
        Err("each registrant must be a (key, identifiers) pair, a {'key', 'identifiers'} dict or a list of identifiers".into()),
    ))
}

/// The iterator returned by `IBRService.check_many`.
#[pyclass(name = "CheckIterator", module = "spp_dci_ibr._native")]
pub struct PyCheckIterator {
    client: Arc<DciClient>,
    source: Py<PyIterator>,
    batch_size: usize,
    concurrency: usize,
    progress: Option<PyObject>,
    ready: VecDeque<PyDuplicationResult>,
    position: usize,
    done: usize,
    failed: usize,
    exhausted: bool,
}

impl PyCheckIterator {
    /// Pulls the next window of registrants, checks it without the GIL, queues the results.
    fn fill(&mut self, py: Python<'_>) -> PyResult<()> {
        let window = self.batch_size * self.concurrency * 2;
        let mut keys: Vec<PyObject> = Vec::with_capacity(window);
        let mut inputs: Vec<std::result::Result<Vec<Identifier>, String>> =
            Vec::with_capacity(window);
        let source = self.source.bind(py).clone();
        let mut ids_in_window = 0usize;
        while ids_in_window < window {
            let Some(item) = source.clone().next() else {
                self.exhausted = true;
                break;
            };
            let item = item?;
            let (key, ids) = registrant_of(&item, self.position)?;
            self.position += 1;
            ids_in_window += ids.as_ref().map(|v| v.len().max(1)).unwrap_or(1);
            keys.push(key);
            inputs.push(ids);
        }
        if keys.is_empty() {
            return Ok(());
        }
        let valid: Vec<Vec<Identifier>> = inputs
            .iter()
            .map(|r| r.clone().unwrap_or_default())
            .collect();
        let client = self.client.clone();
        let (batch, conc) = (self.batch_size, self.concurrency);
        let mut results = blocking(py, move || {
            ibr::check_registrants(&client, &valid, batch, conc)
        })
        .into_iter();
        for (key, input) in keys.into_iter().zip(inputs) {
            let result = results.next().expect("one result per registrant");
            let result = match input {
                Ok(_) => result,
                Err(reason) => failed_input(reason, self.client.verifies_answers()),
            };
            self.done += 1;
            self.failed += usize::from(result.failed());
            self.ready.push_back(wrap(py, key, result));
        }
        if let Some(cb) = &self.progress {
            cb.call1(py, (self.done, self.failed))?;
        }
        Ok(())
    }
}

#[pymethods]
impl PyCheckIterator {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<PyDuplicationResult>> {
        if self.ready.is_empty() && !self.exhausted {
            self.fill(py)?;
        }
        Ok(self.ready.pop_front())
    }
}
