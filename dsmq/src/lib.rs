//! # dsmq: websocket pub/sub server on in-memory SQLite with topics, put/get and 600 s retention
//!
//! **Not implemented yet.** This crate is a placeholder in the workspace so that the
//! layout, the lints and the facade's URL table are in place; it exports no API and
//! does no I/O. Its implementation is tracked by issue #7, and its specification is
//! `specs/dsmq.md` in the project's shared design folder.
//!
//! Until then, `mq_facade::open_producer("dsmq://…")` answers with a clear
//! `Error::BackendUnavailable` instead of pretending to work.

#![forbid(unsafe_code)]
