//! # shmq: System V shared-memory ring of fixed-size messages, cyclic or blocking
//!
//! **Not implemented yet.** This crate is a placeholder in the workspace so that the
//! layout, the lints and the facade's URL table are in place; it exports no API and
//! does no I/O. Its implementation is tracked by issue #8, and its specification is
//! `specs/shmq.md` in the project's shared design folder.
//!
//! Until then, `mq_facade::open_producer("shmq://…")` answers with a clear
//! `Error::BackendUnavailable` instead of pretending to work.

#![forbid(unsafe_code)]
