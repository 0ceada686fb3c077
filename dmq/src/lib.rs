//! # dmq: durable queue over two alternating data files and a control file, with a reader-controlled switch
//!
//! **Not implemented yet.** This crate is a placeholder in the workspace so that the
//! layout, the lints and the facade's URL table are in place; it exports no API and
//! does no I/O. Its implementation is tracked by issue #5, and its specification is
//! `specs/dmq.md` in the project's shared design folder.
//!
//! Until then, `mq_facade::open_producer("dmq://…")` answers with a clear
//! `Error::BackendUnavailable` instead of pretending to work.

#![forbid(unsafe_code)]
