//! The Kafka wire protocol: every request and response, their headers and framing.
//!
//! # Layout
//! - [`frame`]: the 4-byte size prefix, checked against a limit before a body is read.
//! - [`header`]: request and response headers, and which header version each API uses.
//! - [`messages`]: one generated module per Kafka message, from Kafka's JSON schemas by
//!   `cargo xtask codegen`; [`messages::RequestBody`] and [`messages::ResponseBody`] decode
//!   any request or response by API key and version.
//! - [`api_key`]: the generated table of API keys, names and version ranges.
//! - [`error_code`]: Kafka's error codes as data.
//! - [`codec`]: the wire primitives (nom parsers, `BufMut` writers) the messages are built on.
//!
//! Bytes flow: frame → header → message body. Decoding never panics on input; every length
//! and count is checked against the bytes left before anything is allocated, and byte and
//! record fields are zero-copy slices of the frame. This crate does no I/O.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

pub mod api_key;
pub mod codec;
mod error;
pub mod error_code;
pub mod frame;
pub mod header;
mod message;
pub mod messages;
#[cfg(test)]
mod testing;

pub use api_key::ApiKey;
pub use codec::Uuid;
pub use error::{DecodeError, DecodeErrorKind, EncodeError};
pub use error_code::ErrorCode;
pub use message::{Message, Request, Response, VersionRange, Wire};
