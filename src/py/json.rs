//! Python objects as JSON: a [`JsonView`] over live Python objects (no intermediate tree), and
//! conversions between Python objects and `serde_json::Value` at the edges.
//!
//! Objects are read the way `json.dumps` reads them. Exact `dict`/`list`/`tuple` objects, and
//! every `str`/`int`/`float` (subclasses included), are read from their storage without running
//! Python code. A container subclass is read through its own methods, as `json.dumps` does
//! (`items()` of a dict, iteration of a list or tuple) — Python code that may change or free
//! what a borrowing walk holds. So [`with_json`] walks in place, and when it meets such a
//! subclass, copies the tree into plain containers (holding references) and walks the copy.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use pyo3::Borrowed;
use serde_json::Value;

use crate::dci::canonical::{self, JsonView, View};
use crate::dci::{Error, Result};

/// A Python object walked as JSON, the way `json.dumps` walks it. Children are borrowed from their
/// containers (no reference counting on the hot path); no Python code runs during a walk, so the
/// containers cannot change under it.
#[derive(Clone, Copy)]
pub struct PyJson<'a, 'py>(pub Borrowed<'a, 'py, PyAny>);

impl<'a, 'py> PyJson<'a, 'py> {
    pub fn new(obj: &'a Bound<'py, PyAny>) -> Self {
        PyJson(obj.as_borrowed())
    }
}

/// A Python `str` borrowed as UTF-8.
pub struct PyText<'a>(&'a str);

impl AsRef<str> for PyText<'_> {
    fn as_ref(&self) -> &str {
        self.0
    }
}

fn type_error(obj: &Bound<'_, PyAny>) -> Error {
    let name = obj
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into());
    Error::Json(format!("Object of type {name} is not JSON serializable"))
}

/// The UTF-8 of a `str` object (cached inside the object by CPython).
fn text<'a>(s: Borrowed<'a, '_, PyAny>) -> Result<PyText<'a>> {
    let mut size: ffi::Py_ssize_t = 0;
    // SAFETY: `s` is a str (checked by the caller); the buffer belongs to the object, which is
    // alive for 'a, and the GIL keeps it from changing.
    unsafe {
        let ptr = ffi::PyUnicode_AsUTF8AndSize(s.as_ptr(), &mut size);
        if ptr.is_null() {
            let _ = PyErr::take(s.py());
            return Err(Error::Json(
                "string is not valid Unicode (lone surrogate)".into(),
            ));
        }
        let bytes = std::slice::from_raw_parts(ptr.cast::<u8>(), size as usize);
        Ok(PyText(std::str::from_utf8_unchecked(bytes)))
    }
}

/// Which JSON kind an object's exact type is (the common case, one pointer comparison).
#[derive(Clone, Copy)]
enum Exact {
    Str,
    Dict,
    List,
    Int,
    Float,
    Bool,
    None,
    Tuple,
    Other,
}

fn exact_kind(o: Borrowed<'_, '_, PyAny>) -> Exact {
    // SAFETY: reading the type pointer of a live object and the addresses of static type objects.
    unsafe {
        let t = ffi::Py_TYPE(o.as_ptr());
        if t == std::ptr::addr_of_mut!(ffi::PyUnicode_Type) {
            Exact::Str
        } else if t == std::ptr::addr_of_mut!(ffi::PyDict_Type) {
            Exact::Dict
        } else if t == std::ptr::addr_of_mut!(ffi::PyList_Type) {
            Exact::List
        } else if t == std::ptr::addr_of_mut!(ffi::PyLong_Type) {
            Exact::Int
        } else if t == std::ptr::addr_of_mut!(ffi::PyFloat_Type) {
            Exact::Float
        } else if t == std::ptr::addr_of_mut!(ffi::PyBool_Type) {
            Exact::Bool
        } else if o.as_ptr() == ffi::Py_None() {
            Exact::None
        } else if t == std::ptr::addr_of_mut!(ffi::PyTuple_Type) {
            Exact::Tuple
        } else {
            Exact::Other
        }
    }
}

fn int_view<'a, 'py>(o: Borrowed<'a, 'py, PyAny>) -> Result<View<PyJson<'a, 'py>>> {
    Ok(match o.extract::<i64>() {
        Ok(v) => View::Int(v),
        // `int.__repr__` itself: a subclass's `__str__`/`__repr__` must not reach the signed
        // text (json.dumps does the same).
        Err(_) => View::BigInt(
            o.py()
                .get_type::<PyInt>()
                .call_method1("__repr__", (o,))
                .and_then(|r| r.extract::<String>())
                .map_err(|_| {
                    Error::Json("integer too large to write (sys.set_int_max_str_digits)".into())
                })?,
        ),
    })
}

fn is_str(o: Borrowed<'_, '_, PyAny>) -> bool {
    matches!(exact_kind(o), Exact::Str) || o.is_instance_of::<PyString>()
}

fn dict_view<'a, 'py>(d: Borrowed<'a, 'py, PyAny>) -> Result<View<PyJson<'a, 'py>>> {
    let py = d.py();
    // SAFETY: `d` is a dict.
    let len = unsafe { ffi::PyDict_Size(d.as_ptr()) }.max(0) as usize;
    let mut entries = Vec::with_capacity(len);
    let (mut pos, mut k, mut v): (ffi::Py_ssize_t, *mut ffi::PyObject, *mut ffi::PyObject) =
        (0, std::ptr::null_mut(), std::ptr::null_mut());
    // SAFETY: `d` is a dict; PyDict_Next yields borrowed references owned by the dict.
    while unsafe { ffi::PyDict_Next(d.as_ptr(), &mut pos, &mut k, &mut v) } != 0 {
        let (key, value) = unsafe { (Borrowed::from_ptr(py, k), Borrowed::from_ptr(py, v)) };
        if !is_str(key) {
            return Err(Error::Json(
                "object keys must be str (canonical JSON sorts string keys)".into(),
            ));
        }
        entries.push((text(key)?, PyJson(value)));
    }
    Ok(View::Object(entries))
}

fn sequence_view<'a, 'py>(o: Borrowed<'a, 'py, PyAny>, list: bool) -> View<PyJson<'a, 'py>> {
    let py = o.py();
    // SAFETY: `o` is a list (or tuple); GetItem returns borrowed references it owns, and no
    // Python code runs while we hold them.
    unsafe {
        let n = if list {
            ffi::PyList_Size(o.as_ptr())
        } else {
            ffi::PyTuple_Size(o.as_ptr())
        };
        let mut items = Vec::with_capacity(n.max(0) as usize);
        for i in 0..n {
            let item = if list {
                ffi::PyList_GetItem(o.as_ptr(), i)
            } else {
                ffi::PyTuple_GetItem(o.as_ptr(), i)
            };
            items.push(PyJson(Borrowed::from_ptr(py, item)));
        }
        View::Array(items)
    }
}

impl<'a, 'py> JsonView for PyJson<'a, 'py> {
    type Str = PyText<'a>;

    fn view(&self) -> Result<View<Self>> {
        let o = self.0;
        match exact_kind(o) {
            Exact::Str => return Ok(View::Str(text(o)?)),
            Exact::Dict => return dict_view(o),
            Exact::List => return Ok(sequence_view(o, true)),
            Exact::Int => return int_view(o),
            Exact::Float => {
                return Ok(View::Float(unsafe { ffi::PyFloat_AsDouble(o.as_ptr()) }));
            }
            Exact::Bool => return Ok(View::Bool(o.as_ptr() == unsafe { ffi::Py_True() })),
            Exact::None => return Ok(View::Null),
            Exact::Tuple => return Ok(sequence_view(o, false)),
            Exact::Other => {}
        }
        // Subclasses, as json.dumps accepts them.
        if o.is_instance_of::<PyString>() {
            return Ok(View::Str(text(o)?));
        }
        if o.is_instance_of::<PyInt>() {
            return int_view(o);
        }
        if let Ok(f) = o.downcast::<PyFloat>() {
            return Ok(View::Float(f.value()));
        }
        if o.is_instance_of::<PyDict>()
            || o.is_instance_of::<PyList>()
            || o.is_instance_of::<PyTuple>()
        {
            // Read only through its own methods: see `with_json`.
            return Err(Error::Json(NEEDS_COPY.into()));
        }
        Err(type_error(&o.to_owned()))
    }
}

/// What a walk in place answers for a container subclass; `with_json` then walks a plain copy.
const NEEDS_COPY: &str = "a dict, list or tuple subclass must be read through with_json";

/// Runs `f` over Python objects viewed as JSON: in place, or, when the objects hold a container
/// subclass, over plain copies made the way `json.dumps` reads them (see the module comment).
pub fn with_json<'py, T, const N: usize>(
    objs: [&Bound<'py, PyAny>; N],
    mut f: impl for<'a> FnMut([PyJson<'a, 'py>; N]) -> Result<T>,
) -> Result<T> {
    match f(std::array::from_fn(|i| PyJson::new(objs[i]))) {
        Err(Error::Json(m)) if m == NEEDS_COPY => with_copies(objs, f),
        done => done,
    }
}

/// The rare path of `with_json`, kept out of line so the walk in place stays as tight as it was.
#[cold]
#[inline(never)]
fn with_copies<'py, T, const N: usize>(
    objs: [&Bound<'py, PyAny>; N],
    mut f: impl for<'a> FnMut([PyJson<'a, 'py>; N]) -> Result<T>,
) -> Result<T> {
    let copies = objs
        .iter()
        .map(|o| plain_copy(o, 0))
        .collect::<Result<Vec<_>>>()?;
    f(std::array::from_fn(|i| PyJson::new(&copies[i])))
}

/// Building a plain container failed (out of memory: nothing else can fail here).
fn copy_failed(err: PyErr) -> Error {
    Error::Json(format!("cannot copy the value: {err}"))
}

fn method_error(obj: &Bound<'_, PyAny>, what: &str, err: PyErr) -> Error {
    let owner = obj
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into());
    let raised = err
        .get_type(obj.py())
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into());
    Error::Json(format!("{what} of a {owner} raised {raised}"))
}

/// The items `json.dumps(..., sort_keys=True)` writes for a dict: none when it stores none;
/// `items()` of a subclass, a snapshot of an exact dict's; as exact `str` keys in code point
/// order, a key twice refused (a reader would keep only one of the two values).
fn dict_items<'py>(d: &Bound<'py, PyDict>) -> Result<Vec<(String, Bound<'py, PyAny>)>> {
    if d.len() == 0 {
        return Ok(Vec::new());
    }
    let raw: Vec<Bound<'py, PyAny>> = if d.is_exact_instance_of::<PyDict>() {
        d.items().into_iter().collect()
    } else {
        let call = |e| method_error(d.as_any(), "items()", e);
        d.call_method0("items")
            .and_then(|items| items.try_iter()?.collect::<PyResult<Vec<_>>>())
            .map_err(call)?
    };
    let mut items = Vec::with_capacity(raw.len());
    for item in raw {
        let pair = item
            .downcast::<PyTuple>()
            .ok()
            .filter(|t| t.len() == 2)
            .ok_or_else(|| Error::Json("items() must return 2-tuples".into()))?;
        let (key, value) = (
            pair.get_item(0).map_err(copy_failed)?,
            pair.get_item(1).map_err(copy_failed)?,
        );
        if !key.is_instance_of::<PyString>() {
            return Err(Error::Json(
                "object keys must be str (canonical JSON sorts string keys)".into(),
            ));
        }
        items.push((text(key.as_borrowed())?.0.to_owned(), value));
    }
    items.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(pair) = items.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(Error::Json(format!(
            "an object has the key '{}' twice",
            pair[0].0.chars().take(40).collect::<String>()
        )));
    }
    Ok(items)
}

/// A copy of `obj` in exact dicts and lists, read in the order and the way `json.dumps` reads
/// it; leaves (str, int, float, bool, None, their subclasses) are shared, not copied.
fn plain_copy<'py>(obj: &Bound<'py, PyAny>, depth: usize) -> Result<Bound<'py, PyAny>> {
    if depth > canonical::MAX_DEPTH {
        return Err(Error::Json(format!(
            "nesting deeper than {} levels",
            canonical::MAX_DEPTH
        )));
    }
    let py = obj.py();
    if obj.is_none()
        || obj.is_instance_of::<PyString>()
        || obj.is_instance_of::<PyInt>()
        || obj.is_instance_of::<PyFloat>()
    {
        return Ok(obj.clone());
    }
    if let Ok(d) = obj.downcast::<PyDict>() {
        let out = PyDict::new(py);
        for (key, value) in dict_items(d)? {
            out.set_item(key, plain_copy(&value, depth + 1)?)
                .map_err(copy_failed)?;
        }
        return Ok(out.into_any());
    }
    let out = PyList::empty(py);
    if let Ok(list) = obj.downcast_exact::<PyList>() {
        // Index by index, the length read again each time: json.dumps' own walk.
        let mut i = 0;
        while i < list.len() {
            let item = list.get_item(i).map_err(copy_failed)?;
            out.append(plain_copy(&item, depth + 1)?)
                .map_err(copy_failed)?;
            i += 1;
        }
    } else if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        let items = obj
            .try_iter()
            .and_then(|it| it.collect::<PyResult<Vec<_>>>())
            .map_err(|e| method_error(obj, "iteration", e))?;
        for item in items {
            out.append(plain_copy(&item, depth + 1)?)
                .map_err(copy_failed)?;
        }
    } else {
        return Err(type_error(obj));
    }
    Ok(out.into_any())
}

/// A Python JSON-like object as a `serde_json::Value` (through its canonical text, so numbers keep
/// exactly the form Python would write).
pub fn to_value(obj: &Bound<'_, PyAny>) -> Result<Value> {
    let text = with_json([obj], |[v]| canonical::to_string(&v))?;
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
