//! # The `dmq` Python module, over the Rust crate
//!
//! The interface the original document promises, with the fixes of the crate:
//!
//! ```python
//! import dmq
//! q1 = dmq.DMQ("q", dmq.MODE_NEWLINES)      # files q0, q1, qmap
//! q1.send(b"foo")                           # bytes or str; raises dmq.Error on failure
//! q2 = dmq.DMQ("q")                         # the framing stored in the map
//! message = q2.receive(nowait=True)         # bytes, or None when empty
//! for message in q2.receive_iter(nowait=True):
//!     print(message)
//! ```
//!
//! Built with maturin (`maturin develop -m dmq/python/Cargo.toml`). Blocking receives
//! release the GIL and still answer Ctrl-C.

use std::sync::Mutex;
use std::time::Duration;

use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use ::dmq as core;

pyo3::create_exception!(dmq, Error, PyException, "A dmq queue error.");

fn error(e: core::Error) -> PyErr {
    Error::new_err(e.to_string())
}

/// A queue: `DMQ(basepath, mode=MODE_DEFAULT)`. One writer and, on the first receive, the
/// queue's one reader.
#[pyclass(module = "dmq", name = "DMQ")]
struct Dmq {
    inner: Mutex<Inner>,
}

struct Inner {
    queue: Option<core::Queue>,
    writer: Option<core::Writer>,
    reader: Option<core::Reader>,
}

impl Inner {
    fn queue(&self) -> PyResult<&core::Queue> {
        self.queue
            .as_ref()
            .ok_or_else(|| Error::new_err("the queue was freed or cleaned"))
    }
}

impl Dmq {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One receive attempt that waits at most `wait` (None: not at all).
    fn receive_once(&self, wait: Option<Duration>) -> PyResult<Option<Vec<u8>>> {
        let mut inner = self.lock();
        if inner.reader.is_none() {
            let reader = inner.queue()?.reader().map_err(error)?;
            inner.reader = Some(reader);
        }
        let reader = inner
            .reader
            .as_mut()
            .ok_or_else(|| Error::new_err("no reader"))?;
        let got = match wait {
            None => reader.try_recv(),
            Some(d) => reader.recv_timeout(d),
        };
        Ok(got.map_err(error)?.map(core::Message::into_vec))
    }

    fn receive_bytes(&self, py: Python<'_>, nowait: bool) -> PyResult<Option<Vec<u8>>> {
        if nowait {
            return py.detach(|| self.receive_once(None));
        }
        loop {
            // Wait in slices with the GIL released; between them, let Ctrl-C through.
            if let Some(m) = py.detach(|| self.receive_once(Some(Duration::from_millis(100))))? {
                return Ok(Some(m));
            }
            py.check_signals()?;
        }
    }
}

#[pymethods]
impl Dmq {
    #[new]
    #[pyo3(signature = (basepath, mode = -1))]
    fn new(basepath: std::path::PathBuf, mode: i32) -> PyResult<Self> {
        let framing = match mode {
            -1 => None,
            m => Some(
                core::Framing::from_mode(m)
                    .ok_or_else(|| Error::new_err(format!("unknown mode {m}")))?,
            ),
        };
        let queue = core::Queue::open(&basepath, framing).map_err(error)?;
        Ok(Dmq {
            inner: Mutex::new(Inner {
                queue: Some(queue),
                writer: None,
                reader: None,
            }),
        })
    }

    /// Sends one message (bytes, or str as UTF-8); returns the bytes written with framing.
    fn send(&self, py: Python<'_>, message: &Bound<'_, PyAny>) -> PyResult<usize> {
        let data: Vec<u8> = if let Ok(s) = message.extract::<String>() {
            s.into_bytes()
        } else {
            message.extract::<Vec<u8>>()?
        };
        py.detach(|| {
            let mut inner = self.lock();
            if inner.writer.is_none() {
                let writer = inner.queue()?.writer().map_err(error)?;
                inner.writer = Some(writer);
            }
            let writer = inner
                .writer
                .as_mut()
                .ok_or_else(|| Error::new_err("no writer"))?;
            writer.send(&data).map_err(error)
        })
    }

    /// The next message as bytes; with `nowait`, None when the queue is empty.
    #[pyo3(signature = (nowait = false))]
    fn receive<'py>(&self, py: Python<'py>, nowait: bool) -> PyResult<Option<Bound<'py, PyBytes>>> {
        Ok(self
            .receive_bytes(py, nowait)?
            .map(|m| PyBytes::new(py, &m)))
    }

    /// An iterator of messages: forever, or with `nowait` until the queue is empty.
    #[pyo3(signature = (nowait = false))]
    fn receive_iter(slf: Py<Self>, nowait: bool) -> ReceiveIter {
        ReceiveIter { queue: slf, nowait }
    }

    /// The map, as the `dmq -p` text.
    fn info(&self) -> PyResult<String> {
        Ok(self.lock().queue()?.info().map_err(error)?.to_string())
    }

    /// Syncs what this handle sent to stable storage.
    fn flush(&self) -> PyResult<()> {
        match self.lock().writer.as_mut() {
            Some(w) => w.flush().map_err(error),
            None => Ok(()),
        }
    }

    /// Deletes the queue's three files; the handle is unusable afterwards.
    fn clean(&self) -> PyResult<()> {
        let mut inner = self.lock();
        inner.reader = None;
        inner.writer = None;
        match inner.queue.take() {
            Some(q) => q.remove().map_err(error),
            None => Ok(()),
        }
    }

    /// Releases the files (the reader lets the queue go); the handle is unusable afterwards.
    fn free(&self) {
        let mut inner = self.lock();
        inner.reader = None;
        inner.writer = None;
        inner.queue = None;
    }
}

/// Iterator returned by `DMQ.receive_iter()`.
#[pyclass(module = "dmq")]
struct ReceiveIter {
    queue: Py<Dmq>,
    nowait: bool,
}

#[pymethods]
impl ReceiveIter {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let queue = self.queue.bind(py).borrow();
        Ok(queue
            .receive_bytes(py, self.nowait)?
            .map(|m| PyBytes::new(py, &m)))
    }
}

/// The module: `DMQ`, `Error` and the framing constants.
#[pymodule]
fn dmq(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Dmq>()?;
    m.add_class::<ReceiveIter>()?;
    m.add("Error", m.py().get_type::<Error>())?;
    m.add("MODE_NULLS", 0)?;
    m.add("MODE_NEWLINES", 1)?;
    m.add("MODE_FRAMES", 2)?;
    m.add("MODE_RAW", 3)?;
    // Ours: a length and a CRC-32C per record (the C original does not know it).
    m.add("MODE_CHECKED", 4)?;
    m.add("MODE_DEFAULT", -1)?;
    Ok(())
}
