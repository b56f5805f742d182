//! Binding of the DCI client: argument conversion, GIL release around every call that waits.

use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use serde_json::{json, Value};

use super::gil::blocking;
use super::json::{to_python, to_value};
use super::keys::{PublicKeyArg, PySigningKey};
use crate::dci::auth::{Auth, CredentialLocation, OAuth2};
use crate::dci::client::{
    search_criteria, Ack, Answer, Callback, ClientConfig, DciClient, ItemAnswer, ItemStatus, Reply,
    Retry, Sent, Signing,
};
use crate::dci::http::{HttpSettings, Secret};
use crate::dci::ibr::Identifier;
use crate::dci::keysource::{self, check_jwks_url, RegistryKeys};
use crate::dci::Error;

fn seconds(value: f64, what: &str) -> PyResult<Duration> {
    if !(value.is_finite() && value > 0.0 && value <= 86400.0) {
        return Err(PyValueError::new_err(format!(
            "{what} must be between 0 and 86400 seconds"
        )));
    }
    Ok(Duration::from_secs_f64(value))
}

/// A DCI client for one registry: signs every request, sends it over one pooled keep-alive
/// connection (created on first use, recreated after `fork()`), verifies signed answers, and
/// raises typed errors from `spp_dci_ibr.exceptions`. Every call releases the GIL while it waits.
#[pyclass(name = "DCIClient", module = "spp_dci_ibr._native", frozen)]
pub struct PyDciClient {
    pub inner: Arc<DciClient>,
}

#[pymethods]
impl PyDciClient {
    #[new]
    #[pyo3(signature = (
        *, base_url, sender_id, receiver_id = None, callback_uri = None, callback_base_url = None,
        null_sender_uri = false, auth = "none",
        bearer_token = None, token_url = None, client_id = None, client_secret = None, scope = None,
        credentials_location = "body", signing_key = None, key_id = None, unsigned = false,
        registry_keys = None, registry_jwks_url = None, allow_insecure_jwks = false,
        accept_unverified_answers = false, paths = None,
        timeout = 30.0, connect_timeout = 10.0, verify_tls = true, ca_bundle = None,
        max_retries = 2, backoff = 0.2, max_response_bytes = 33554432
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        base_url: String,
        sender_id: String,
        receiver_id: Option<String>,
        callback_uri: Option<String>,
        callback_base_url: Option<String>,
        null_sender_uri: bool,
        auth: &str,
        bearer_token: Option<String>,
        token_url: Option<String>,
        client_id: Option<String>,
        client_secret: Option<String>,
        scope: Option<String>,
        credentials_location: &str,
        signing_key: Option<&Bound<'_, PyAny>>,
        key_id: Option<String>,
        unsigned: bool,
        registry_keys: Option<&Bound<'_, PyAny>>,
        registry_jwks_url: Option<String>,
        allow_insecure_jwks: bool,
        accept_unverified_answers: bool,
        paths: Option<std::collections::BTreeMap<String, String>>,
        timeout: f64,
        connect_timeout: f64,
        verify_tls: bool,
        ca_bundle: Option<String>,
        max_retries: u32,
        backoff: f64,
        max_response_bytes: usize,
    ) -> PyResult<Self> {
        let auth = match auth {
            "none" => Auth::None,
            "bearer" => {
                Auth::Bearer(Secret::new(bearer_token.ok_or_else(|| {
                    Error::Config("auth='bearer' needs bearer_token".into())
                })?))
            }
            "oauth2" => Auth::OAuth2(OAuth2 {
                token_url: token_url
                    .ok_or_else(|| Error::Config("auth='oauth2' needs token_url".into()))?,
                client_id: client_id
                    .ok_or_else(|| Error::Config("auth='oauth2' needs client_id".into()))?,
                client_secret: Secret::new(
                    client_secret
                        .ok_or_else(|| Error::Config("auth='oauth2' needs client_secret".into()))?,
                ),
                scope,
                location: CredentialLocation::parse(credentials_location)?,
            }),
            other => {
                return Err(Error::Config(format!(
                    "auth must be 'none', 'bearer' or 'oauth2', not '{other}'"
                ))
                .into())
            }
        };
        let signing = match (signing_key, unsigned) {
            (Some(_), true) => {
                return Err(
                    Error::Config("give signing_key or unsigned=True, not both".into()).into(),
                )
            }
            (None, true) => Signing::Unsigned,
            (None, false) => {
                return Err(Error::Config(
                    "signing_key is required (pass unsigned=True to send unsigned messages)".into(),
                )
                .into())
            }
            (Some(k), false) => {
                let key = k
                    .downcast::<PySigningKey>()
                    .map_err(|_| PyTypeError::new_err("signing_key must be a SigningKey"))?
                    .get()
                    .key
                    .clone();
                let key_id =
                    key_id.ok_or_else(|| Error::Config("signing_key needs key_id".into()))?;
                Signing::Key { key, key_id }
            }
        };
        let ca_bundle = ca_bundle
            .map(|path| {
                std::fs::read(&path)
                    .map_err(|e| Error::Config(format!("cannot read ca_bundle: {}", e.kind())))
            })
            .transpose()?;
        let http = HttpSettings {
            timeout: seconds(timeout, "timeout")?,
            connect_timeout: seconds(connect_timeout, "connect_timeout")?,
            verify_tls,
            ca_bundle: ca_bundle.clone(),
            same_origin_redirects: false,
            pool_size: 32,
        };
        let registry_keys = match (registry_keys, registry_jwks_url) {
            (Some(_), Some(_)) => {
                return Err(Error::Config(
                    "give registry_keys or registry_jwks_url, not both".into(),
                )
                .into())
            }
            (None, None) => RegistryKeys::None,
            (None, Some(url)) => {
                check_jwks_url(&url, allow_insecure_jwks)?;
                RegistryKeys::Url {
                    url,
                    allow_http: allow_insecure_jwks,
                    http: keysource::jwks_http(verify_tls, ca_bundle)?,
                }
            }
            (Some(k), None) => k.extract::<PublicKeyArg>()?.0.into(),
        };
        let callback = match (callback_base_url, callback_uri) {
            (Some(_), Some(_)) => {
                return Err(Error::Config(
                    "give callback_base_url or callback_uri, not both".into(),
                )
                .into())
            }
            (Some(base), None) => Callback::Base(base),
            (None, Some(uri)) => Callback::Uri(uri),
            (None, None) => Callback::None,
        };
        let retry = Retry {
            max_retries,
            backoff: Duration::from_secs_f64(backoff.clamp(0.0, 60.0)),
            max_backoff: Duration::from_secs(5),
        };
        let cfg = ClientConfig {
            base_url,
            sender_id,
            receiver_id,
            callback,
            null_sender_uri,
            auth,
            signing,
            registry_keys,
            paths: paths.unwrap_or_default().into_iter().collect(),
            http,
            retry,
            max_response_bytes,
            accept_unverified_answers,
        };
        Ok(PyDciClient {
            inner: Arc::new(DciClient::new(cfg)?),
        })
    }

    #[getter]
    fn base_url(&self) -> &str {
        self.inner.base_url()
    }
    #[getter]
    fn sender_id(&self) -> &str {
        self.inner.sender_id()
    }
    #[getter]
    fn receiver_id(&self) -> &str {
        self.inner.receiver_id()
    }
    /// The one callback URL given for every async call, if that is how it was configured.
    #[getter]
    fn callback_uri(&self) -> Option<&str> {
        match self.inner.callback() {
            Callback::Uri(u) => Some(u),
            _ => None,
        }
    }
    /// The base URL of the callback routes (`<base>/on-search`, …), if configured.
    #[getter]
    fn callback_base_url(&self) -> Option<&str> {
        match self.inner.callback() {
            Callback::Base(u) => Some(u),
            _ => None,
        }
    }

    /// The path used for a call (`"search"`, `"sync_search"`, … `"enrollment_updates"`).
    fn path(&self, name: &str) -> PyResult<String> {
        crate::dci::client::Endpoint::ALL
            .iter()
            .find(|e| e.key() == name)
            .map(|e| self.inner.path(*e).to_owned())
            .ok_or_else(|| PyValueError::new_err(format!("unknown call '{name}'")))
    }

    /// Fetches (or reuses) the OAuth2 token — a credentials and connection test. No-op for
    /// other auth modes.
    fn check_auth(&self, py: Python<'_>) -> PyResult<()> {
        let c = self.inner.clone();
        Ok(blocking(py, move || c.check_auth())?)
    }

    /// Sync search; returns the verified response `message` dict.
    #[pyo3(signature = (query_type, query, *, reg_type = "ns:org:RegistryType:IBR", reg_record_type = None, page_size = 10, page_number = 1, transaction_id = None))]
    #[allow(clippy::too_many_arguments)]
    fn search<'py>(
        &self,
        py: Python<'py>,
        query_type: &str,
        query: &Bound<'py, PyAny>,
        reg_type: &str,
        reg_record_type: Option<&str>,
        page_size: u32,
        page_number: u32,
        transaction_id: Option<String>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let criteria = search_criteria(
            query_type,
            to_value(query)?,
            reg_type,
            reg_record_type,
            page_size,
            page_number,
        );
        let c = self.inner.clone();
        let reply = blocking(py, move || c.search_batch(vec![criteria], transaction_id))?;
        let item = reply.items.first().expect("one item per request item");
        item.decided()?;
        let d = item_dict(py, item, reply.verified)?;
        d.set_item("transaction_id", &reply.sent.transaction_id)?;
        d.set_item("message_id", &reply.sent.message_id)?;
        Ok(d)
    }

    /// Sync search by one identifier (`idtype-value`).
    #[pyo3(signature = (id_type, id_value, **kwargs))]
    fn search_by_id<'py>(
        slf: &Bound<'py, Self>,
        id_type: &str,
        id_value: &str,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let query = PyDict::new(slf.py());
        query.set_item("type", id_type)?;
        query.set_item("value", id_value)?;
        slf.call_method("search", ("idtype-value", query), kwargs)
    }

    /// Sync search with an `expression` query.
    #[pyo3(signature = (expression, **kwargs))]
    fn search_by_expression<'py>(
        slf: &Bound<'py, Self>,
        expression: &Bound<'py, PyAny>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        slf.call_method("search", ("expression", expression), kwargs)
    }

    /// Sync search with a `predicate` query (a list of predicate dicts).
    #[pyo3(signature = (predicates, **kwargs))]
    fn search_by_predicate<'py>(
        slf: &Bound<'py, Self>,
        predicates: &Bound<'py, PyAny>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        slf.call_method("search", ("predicate", predicates), kwargs)
    }

    /// Many searches in one envelope. `queries` is a list of `(query_type, query)` pairs or of
    /// full search-criteria dicts; returns one item dict per query, in order, matched by
    /// `reference_id`: `reference_id`, `status` (succ | rjct | pdng | missing | undecided),
    /// `reason_code`, `reason_message`, `records` (a list only for succ, else None),
    /// `verified`.
    #[pyo3(signature = (queries, *, reg_type = "ns:org:RegistryType:IBR", page_size = 10, transaction_id = None))]
    fn search_batch<'py>(
        &self,
        py: Python<'py>,
        queries: &Bound<'py, PyList>,
        reg_type: &str,
        page_size: u32,
        transaction_id: Option<String>,
    ) -> PyResult<Bound<'py, PyList>> {
        let criteria = queries
            .iter()
            .map(|q| criteria_arg(&q, reg_type, page_size))
            .collect::<PyResult<Vec<_>>>()?;
        let c = self.inner.clone();
        let reply = blocking(py, move || c.search_batch(criteria, transaction_id))?;
        let out = PyList::empty(py);
        for item in &reply.items {
            out.append(item_dict(py, item, reply.verified)?)?;
        }
        Ok(out)
    }

    /// Many async searches in one envelope (`total_count` = queries), each query a
    /// `(query_type, query)` pair or a full search-criteria dict: one ACK for all of them,
    /// whose `reference_ids` are in query order; the answers arrive at our `on-search`
    /// callback.
    #[pyo3(signature = (queries, *, reg_type = "ns:org:RegistryType:IBR", page_size = 10, transaction_id = None))]
    fn search_async_batch<'py>(
        &self,
        py: Python<'py>,
        queries: &Bound<'py, PyList>,
        reg_type: &str,
        page_size: u32,
        transaction_id: Option<String>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let criteria = queries
            .iter()
            .map(|q| criteria_arg(&q, reg_type, page_size))
            .collect::<PyResult<Vec<_>>>()?;
        let c = self.inner.clone();
        let (sent, ack) = blocking(py, move || c.search_async(criteria, transaction_id))?;
        ack_dict(py, &sent, &ack)
    }

    /// Async search: returns the ACK dict (`ack_status`, `transaction_id`, `correlation_id`,
    /// `reference_ids`, `message_id`, `timestamp`); results arrive at our `on-search` callback.
    #[pyo3(signature = (query_type, query, *, reg_type = "ns:org:RegistryType:IBR", reg_record_type = None, page_size = 10, page_number = 1, transaction_id = None))]
    #[allow(clippy::too_many_arguments)]
    fn search_async<'py>(
        &self,
        py: Python<'py>,
        query_type: &str,
        query: &Bound<'py, PyAny>,
        reg_type: &str,
        reg_record_type: Option<&str>,
        page_size: u32,
        page_number: u32,
        transaction_id: Option<String>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let criteria = search_criteria(
            query_type,
            to_value(query)?,
            reg_type,
            reg_record_type,
            page_size,
            page_number,
        );
        let c = self.inner.clone();
        let (sent, ack) = blocking(py, move || c.search_async(vec![criteria], transaction_id))?;
        ack_dict(py, &sent, &ack)
    }

    /// Subscribes (one criteria dict or a list); returns the ACK dict.
    #[pyo3(signature = (criteria, *, transaction_id = None))]
    fn subscribe<'py>(
        &self,
        py: Python<'py>,
        criteria: &Bound<'py, PyAny>,
        transaction_id: Option<String>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let list = match to_value(criteria)? {
            Value::Array(items) => items,
            single => vec![single],
        };
        let c = self.inner.clone();
        let (sent, ack) = blocking(py, move || c.subscribe(list, transaction_id))?;
        ack_dict(py, &sent, &ack)
    }

    /// Unsubscribes subscription codes; returns the ACK dict.
    #[pyo3(signature = (subscription_codes, *, transaction_id = None))]
    fn unsubscribe<'py>(
        &self,
        py: Python<'py>,
        subscription_codes: Vec<String>,
        transaction_id: Option<String>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let c = self.inner.clone();
        let (sent, ack) = blocking(py, move || {
            c.unsubscribe(subscription_codes, transaction_id)
        })?;
        ack_dict(py, &sent, &ack)
    }

    /// Status of an earlier transaction: async (ACK dict) or, with `sync=True`, the
    /// TxnStatusResponse message dict.
    #[pyo3(signature = (transaction_id = None, *, reference_ids = None, correlation_id = None, txn_type = "search", sync = false))]
    fn txn_status<'py>(
        &self,
        py: Python<'py>,
        transaction_id: Option<String>,
        reference_ids: Option<Vec<String>>,
        correlation_id: Option<String>,
        txn_type: &str,
        sync: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let (attribute_type, value) = match (transaction_id, reference_ids, correlation_id) {
            (Some(t), None, None) => ("transaction_id", Value::String(t)),
            (None, Some(r), None) => ("reference_id_list", json!(r)),
            (None, None, Some(c)) => ("correlation_id", Value::String(c)),
            _ => {
                return Err(PyValueError::new_err(
                    "give exactly one of transaction_id, reference_ids, correlation_id",
                ))
            }
        };
        let c = self.inner.clone();
        let txn_type = txn_type.to_owned();
        let reply = blocking(py, move || {
            c.txn_status(&txn_type, attribute_type, value, sync)
        })?;
        reply_dict(py, &reply)
    }

    /// `/registry/sync/enrolled` for one identifier (optionally within one programme); returns
    /// the message dict (`enrolled_response[].enrolled_status` yes/no).
    #[pyo3(signature = (id_type, id_value, *, programme_id = None, response_entity = None))]
    fn enrolled<'py>(
        &self,
        py: Python<'py>,
        id_type: &str,
        id_value: &str,
        programme_id: Option<&str>,
        response_entity: Option<&str>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let query = Identifier::new(id_type, id_value).enrolled_query(programme_id);
        let c = self.inner.clone();
        let entity = response_entity.map(str::to_owned);
        let reply = blocking(py, move || {
            c.enrolled("expression", query, entity.as_deref())
        })?;
        reply_dict(py, &reply)
    }

    /// `/registry/sync/enrollment/updates` with beneficiary records; returns the message dict.
    fn enrollment_updates<'py>(
        &self,
        py: Python<'py>,
        beneficiaries: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let Value::Array(list) = to_value(beneficiaries)? else {
            return Err(PyTypeError::new_err(
                "beneficiaries must be a list of records",
            ));
        };
        let c = self.inner.clone();
        let reply = blocking(py, move || c.enrollment_updates(list))?;
        reply_dict(py, &reply)
    }

    fn __repr__(&self) -> String {
        let auth = match self.inner.auth() {
            Auth::None => "none",
            Auth::Bearer(_) => "bearer",
            Auth::OAuth2(_) => "oauth2",
        };
        let signing = match self.inner.signer() {
            None => "unsigned".to_owned(),
            Some(s) => format!("{}:{}", s.key().algorithm().as_str(), s.key_id()),
        };
        format!(
            "DCIClient(base_url='{}', sender_id='{}', receiver_id='{}', auth='{auth}', signing='{signing}')",
            self.inner.base_url(),
            self.inner.sender_id(),
            self.inner.receiver_id()
        )
    }
}

fn criteria_arg(q: &Bound<'_, PyAny>, reg_type: &str, page_size: u32) -> PyResult<Value> {
    if let Ok((query_type, query)) = q.extract::<(String, Bound<'_, PyAny>)>() {
        return Ok(search_criteria(
            &query_type,
            to_value(&query)?,
            reg_type,
            None,
            page_size,
            1,
        ));
    }
    if q.is_instance_of::<PyDict>() {
        return Ok(to_value(q)?);
    }
    Err(PyTypeError::new_err(
        "each query must be a (query_type, query) pair or a criteria dict",
    ))
}

/// One answered item; `records` is None unless the item decided (succ): an unanswered or
/// undecided item can never be read as "nothing found".
fn item_dict<'py>(
    py: Python<'py>,
    item: &ItemAnswer,
    verified: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("reference_id", &item.reference_id)?;
    d.set_item("status", item.status.as_str())?;
    d.set_item("reason_code", &item.reason_code)?;
    d.set_item("reason_message", &item.reason_message)?;
    if item.status == ItemStatus::Succ {
        d.set_item(
            "records",
            to_python(py, &Value::Array(item.records.clone()))?,
        )?;
    } else {
        d.set_item("records", py.None())?;
    }
    d.set_item("verified", verified)?;
    Ok(d)
}

fn ack_dict<'py>(py: Python<'py>, sent: &Sent, ack: &Ack) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("ack_status", &ack.ack_status)?;
    d.set_item("transaction_id", &sent.transaction_id)?;
    d.set_item("correlation_id", &ack.correlation_id)?;
    d.set_item("reference_ids", &sent.reference_ids)?;
    d.set_item("message_id", &sent.message_id)?;
    d.set_item("timestamp", &ack.timestamp)?;
    Ok(d)
}

/// The ACK dict, or the answer's message dict with `verified` set by us (over any key of that
/// name the registry sent).
fn reply_dict<'py>(py: Python<'py>, reply: &Reply) -> PyResult<Bound<'py, PyDict>> {
    match &reply.answer {
        Answer::Ack(ack) => ack_dict(py, &reply.sent, ack),
        Answer::Envelope { message, .. } | Answer::Bare(message) => {
            let v = to_python(py, message)?;
            let d = v
                .downcast_into::<PyDict>()
                .unwrap_or_else(|_| PyDict::new(py));
            d.set_item("verified", reply.verified)?;
            Ok(d)
        }
    }
}
