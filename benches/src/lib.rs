//! Shared helpers for Weir's criterion benchmarks (see `benches/benches/*.rs`).
//!
//! Every benchmark reports a ratio against a baseline measured in the same run, so the figures
//! stay meaningful on whatever machine runs them.
