//! File plumbing shared by the log, the vote and snapshots: CRC-32C frames, atomic replacement,
//! and running blocking file I/O without starving the async runtime.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// Bytes before a frame's payload: its length (u32, big endian) then the CRC-32C of the payload.
pub(crate) const FRAME_HEADER: usize = 8;

/// Frames above this are refused when read: a length this large can only be damage, and
/// checking it first keeps a corrupt length from allocating gigabytes.
pub(crate) const MAX_FRAME: usize = 256 * 1024 * 1024;

/// Appends one frame holding `payload` to `out`.
pub(crate) fn put_frame(out: &mut Vec<u8>, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|l| (*l as usize) <= MAX_FRAME)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// The frame at the start of `bytes`: `Ok(Some((payload, frame length)))`, `Ok(None)` at the
/// exact end, `Err(why)` for a torn or corrupt frame.
pub(crate) fn get_frame(bytes: &[u8]) -> Result<Option<(&[u8], usize)>, &'static str> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let (header, rest) = bytes
        .split_at_checked(FRAME_HEADER)
        .ok_or("a torn frame header")?;
    let (len, crc) = header.split_at_checked(4).ok_or("a torn frame header")?;
    let len = u32::from_be_bytes(len.try_into().map_err(|_| "a torn frame header")?) as usize;
    let crc = u32::from_be_bytes(crc.try_into().map_err(|_| "a torn frame header")?);
    if len > MAX_FRAME {
        return Err("a frame length beyond the limit");
    }
    let payload = rest.get(..len).ok_or("a torn frame")?;
    if crc32c::crc32c(payload) != crc {
        return Err("a frame whose CRC-32C does not match");
    }
    Ok(Some((payload, FRAME_HEADER + len)))
}

/// Replaces `path` with one frame holding `payload` so that a crash leaves either the old file
/// or the new one: write a temporary file, fsync it, rename it over `path`, fsync the directory.
/// Only after the directory fsync does the new content count (a vote must never be forgotten).
pub(crate) fn write_atomic(path: &Path, payload: &[u8]) -> io::Result<()> {
    let mut framed = Vec::with_capacity(payload.len() + FRAME_HEADER);
    put_frame(&mut framed, payload)?;
    replace_file(path, &framed)
}

/// Replaces `path` with exactly `bytes`, atomically as [`write_atomic`] does. The same
/// sequence as `weir_log::fs::write_atomically`, kept here because weir-metadata depends on no
/// other Weir crate (pulling weir-log and its codecs in for six lines would undo that).
pub(crate) fn replace_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    sync_dir(path)
}

/// The payload of the single-frame file at `path`, `Ok(None)` if it does not exist.
pub(crate) fn read_framed(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    match get_frame(&bytes) {
        Ok(Some((payload, _))) => Ok(Some(payload.to_vec())),
        Ok(None) => Ok(None),
        Err(why) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {why}", path.display()),
        )),
    }
}

/// Fsyncs the directory holding `path`, so a rename or a new file in it survives a crash.
pub(crate) fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    OpenOptions::new().read(true).open(dir)?.sync_all()
}

/// Runs blocking file I/O from async code. On a multi-threaded runtime the worker hands its
/// other tasks to its peers first (`block_in_place`), so an fsync stalls only the caller (the
/// raft core, which waits for its storage anyway). On a current-thread runtime (tests with
/// paused time) it runs inline: there is no other worker, and virtual time must not advance
/// while the disk is busy.
pub(crate) fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Turns a decode error into an I/O error of kind `InvalidData`.
pub(crate) fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}
