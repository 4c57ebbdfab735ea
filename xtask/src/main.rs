//! Project automation for Weir.
//!
//! `cargo xtask codegen [--check] [SCHEMA_DIR]` generates `crates/weir-protocol/src/messages`
//! and `crates/weir-protocol/src/api_key.rs` from Kafka's JSON message schemas, and the API
//! table in `docs/protocol.md`. With `--check` it regenerates in memory and fails when the
//! checked-in files differ.

mod codegen;
mod schema;

use anyhow::{Context, Result, bail};
use std::path::PathBuf;

const DEFAULT_SCHEMA_DIR: &str = "../shared/kafka-protocol/message";

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("codegen") => {
            let mut check = false;
            let mut schema_dir = None;
            for arg in args {
                match arg.as_str() {
                    "--check" => check = true,
                    other if other.starts_with('-') => bail!("unknown flag {other}"),
                    other => schema_dir = Some(PathBuf::from(other)),
                }
            }
            let root = workspace_root()?;
            let schema_dir = schema_dir.unwrap_or_else(|| root.join(DEFAULT_SCHEMA_DIR));
            codegen::run(&schema_dir, &root, check)
        }
        _ => {
            eprintln!("usage: cargo xtask codegen [--check] [SCHEMA_DIR]");
            std::process::exit(2);
        }
    }
}

fn workspace_root() -> Result<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(PathBuf::from)
        .context("xtask has no parent directory")
}
