//! Python objects as JSON: a [`JsonView`] over live Python objects (no intermediate tree), and
//! conversions between Python objects and `serde_json::Value` at the edges.

use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::Value;

use crate::dci::canonical::{self, JsonView, View};
use crate::dci::{Error, Result};

/// A Python object walked as JSON, the way `json.dumps` walks it.
pub struct PyJson<'py>(pub Bound<'py, PyAny>);

fn type_error(obj: &Bound<'_, PyAny>) -> Error {
    let name = obj
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into());
    Error::Json(format!("Object of type {name} is not JSON serializable"))
}

fn text(s: &Bound<'_, PyString>) -> Result<PyBackedStr> {
    s.clone()
        .try_into()
        .map_err(|_| Error::Json("string is not valid Unicode (lone surrogate)".into()))
}

impl<'py> JsonView for PyJson<'py> {
    type Str = PyBackedStr;

    fn view(&self) -> Result<View<Self>> {
        let o = &self.0;
        if o.is_none() {
            return Ok(View::Null);
        }
        if let Ok(s) = o.downcast::<PyString>() {
            return Ok(View::Str(text(s)?));
        }
        if let Ok(b) = o.downcast::<PyBool>() {
            return Ok(View::Bool(b.is_true()));
        }
        if let Ok(i) = o.downcast::<PyInt>() {
            return Ok(match i.extract::<i64>() {
                Ok(v) => View::Int(v),
                // `int.__repr__` itself: a subclass's `__str__`/`__repr__` must not reach the
                // signed text (json.dumps does the same).
                Err(_) => View::BigInt(
                    o.py()
                        .get_type::<PyInt>()
                        .call_method1("__repr__", (i,))
                        .and_then(|r| r.extract::<String>())
                        .map_err(|_| {
                            Error::Json(
                                "integer too large to write (sys.set_int_max_str_digits)".into(),
                            )
                        })?,
                ),
            });
        }
        if let Ok(f) = o.downcast::<PyFloat>() {
            return Ok(View::Float(f.value()));
        }
        if let Ok(d) = o.downcast::<PyDict>() {
            let mut entries = Vec::with_capacity(d.len());
            for (k, v) in d.iter() {
                let key = k.downcast::<PyString>().map_err(|_| {
                    Error::Json("object keys must be str (canonical JSON sorts string keys)".into())
                })?;
                entries.push((text(key)?, PyJson(v)));
            }
            return Ok(View::Object(entries));
        }
        if let Ok(l) = o.downcast::<PyList>() {
            return Ok(View::Array(l.iter().map(PyJson).collect()));
        }
        if let Ok(t) = o.downcast::<PyTuple>() {
            return Ok(View::Array(t.iter().map(PyJson).collect()));
        }
        Err(type_error(o))
    }
}

/// A Python JSON-like object as a `serde_json::Value` (through its canonical text, so numbers keep
/// exactly the form Python would write).
pub fn to_value(obj: &Bound<'_, PyAny>) -> Result<Value> {
    let text = canonical::to_string(&PyJson(obj.clone()))?;
    serde_json::from_str(&text).map_err(|e| Error::Json(e.to_string()))
}

/// A `serde_json::Value` as Python objects (dict, list, str, int, float, bool, None).
pub fn to_python<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => {
            let t = n.as_str();
            if t.contains(['.', 'e', 'E']) {
                PyFloat::new(py, t.parse::<f64>().unwrap_or(f64::NAN)).into_any()
            } else if let Ok(i) = t.parse::<i64>() {
                i.into_pyobject(py)?.into_any()
            } else {
                py.get_type::<PyInt>().call1((t,))?
            }
        }
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_python(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (k, v) in map {
                dict.set_item(k, to_python(py, v)?)?;
            }
            dict.into_any()
        }
    })
}
