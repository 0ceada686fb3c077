//! The exported C functions: every `unsafe` of the crate. Each function checks its pointers
//! and hands safe values to the crate's safe functions.

use std::ffi::{CStr, c_char, c_int};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::{dmq_record, set_error};

// SAFETY: a record's pointers point into the message buffer of the descriptor that owns the
// record, and Rust code never dereferences them; the record moves between threads only
// with its descriptor, inside the descriptor's mutex.
unsafe impl Send for dmq_record {}

/// Opens (creating if missing) the queue whose files are `basepath` + "0", + "1", + "map",
/// with framing `mode` (`MODE_*`; `MODE_DEFAULT` or any mode for an existing queue keeps
/// the stored one). Returns a descriptor, or -1 with `dmq_errmsg()` set.
///
/// # Safety
///
/// `basepath` must be NULL or a NUL-terminated string valid for the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dmq_init(basepath: *const c_char, mode: c_int) -> c_int {
    if basepath.is_null() {
        set_error("dmq_init: basepath is NULL");
        return -1;
    }
    // SAFETY: non-null, and the caller promises a NUL-terminated string valid for the call.
    let base = unsafe { CStr::from_ptr(basepath) };
    match crate::init(
        Path::new(std::ffi::OsStr::from_bytes(base.to_bytes())),
        mode,
    ) {
        Ok(d) => d,
        Err(e) => {
            set_error(e);
            -1
        }
    }
}

/// Frees the descriptor; records it returned become invalid.
#[unsafe(no_mangle)]
pub extern "C" fn dmq_free(sdesc: c_int) {
    crate::free(sdesc);
}

/// Sends `msglen` bytes at `msg`. Returns the bytes written (with framing), or -1 with
/// `dmq_errmsg()` set (too large, delimiter inside, I/O error, ...).
///
/// # Safety
///
/// `msg` must point at `msglen` readable bytes (or be NULL with `msglen` 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dmq_send(sdesc: c_int, msg: *const c_char, msglen: c_int) -> c_int {
    let Ok(len) = usize::try_from(msglen) else {
        set_error(format!("dmq_send: negative length {msglen}"));
        return -1;
    };
    let bytes: &[u8] = if len == 0 {
        &[]
    } else if msg.is_null() {
        set_error("dmq_send: msg is NULL");
        return -1;
    } else {
        // SAFETY: non-null, and the caller promises `len` readable bytes for the call.
        unsafe { std::slice::from_raw_parts(msg.cast::<u8>(), len) }
    };
    match crate::send(sdesc, bytes) {
        Ok(n) => n,
        Err(e) => {
            set_error(e);
            -1
        }
    }
}

/// Receives the next message. With `nowait` non-zero, returns NULL with `*errorp = 0` when
/// the queue is empty; otherwise waits. On error returns NULL with `*errorp = 1` and
/// `dmq_errmsg()` set. The record stays valid until the next `dmq_receive` or `dmq_free`
/// of this descriptor.
///
/// # Safety
///
/// `errorp` must be NULL or point at a writable `int`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dmq_receive(
    sdesc: c_int,
    nowait: c_int,
    errorp: *mut c_int,
) -> *const dmq_record {
    let (record, error) = match crate::receive(sdesc, nowait != 0) {
        Ok(Some(r)) => (r, 0),
        Ok(None) => (std::ptr::null(), 0),
        Err(e) => {
            set_error(e);
            (std::ptr::null(), 1)
        }
    };
    if !errorp.is_null() {
        // SAFETY: non-null, and the caller promises it points at a writable int.
        unsafe { errorp.write(error) };
    }
    record
}

/// Prints the map (the `dmq -p` text) on standard output.
#[unsafe(no_mangle)]
pub extern "C" fn dmq_info(sdesc: c_int) {
    match crate::info(sdesc) {
        Ok(text) => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        }
        Err(e) => set_error(e),
    }
}

/// The calling thread's last error message ("" if none), valid until its next error.
#[unsafe(no_mangle)]
pub extern "C" fn dmq_errmsg() -> *const c_char {
    crate::errmsg()
}
