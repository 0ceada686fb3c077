//! # duraqueue: mmap'd durable ring with a mirrored mapping and a header and footer per record
//!
//! **Not implemented yet.** This crate is a placeholder in the workspace so that the
//! layout, the lints and the facade's URL table are in place; it exports no API and
//! does no I/O. Its implementation is tracked by issue #4, and its specification is
//! `specs/duraqueue.md` in the project's shared design folder.
//!
//! Until then, `mq_facade::open_producer("duraqueue://…")` answers with a clear
//! `Error::BackendUnavailable` instead of pretending to work.

#![forbid(unsafe_code)]
