//! Library half of the `baton` package: the parts of the binary that tests and fuzzers call
//! directly. Today that is configuration loading (`baton.toml` with every error reported).

pub mod config;
