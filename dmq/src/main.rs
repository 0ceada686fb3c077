//! `dmq`: print the map, run a reader or a writer.
#![forbid(unsafe_code)]
fn main() {}
