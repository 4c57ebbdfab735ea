//! Producer id allocation for InitProducerId, persisted so a restart never hands out an id
//! twice.
//!
//! Ids are reserved in blocks, as Kafka's controller hands them to brokers: the file
//! `<first log dir>/weir-producer-ids` holds the first id of the next unreserved block, and is
//! rewritten (temp file, fsync, rename, fsync directory) before any id of a new block is handed
//! out. A restart therefore starts at the next block, skipping at most one block's unused ids.

use parking_lot::Mutex;
use std::io::Write;
use std::path::{Path, PathBuf};

const FILE_NAME: &str = "weir-producer-ids";

/// Ids reserved per write of the file.
const BLOCK_SIZE: i64 = 1000;

/// Why an id could not be allocated.
#[derive(Debug, thiserror::Error)]
/// Producer ids could not be reserved on disk.
#[error("cannot persist producer ids in {path}")]
pub struct ProducerIdError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

#[derive(Debug)]
struct Block {
    next: i64,
    /// First id not reserved by the file.
    end: i64,
}

/// Hands out producer ids.
#[derive(Debug)]
pub(crate) struct ProducerIds {
    path: PathBuf,
    block: Mutex<Block>,
}

impl ProducerIds {
    /// Reads the reservation in `dir`; the first id handed out is the start of the next block.
    pub(crate) fn open(dir: &Path) -> Result<Self, ProducerIdError> {
        let path = dir.join(FILE_NAME);
        let error = |source| ProducerIdError {
            path: path.clone(),
            source,
        };
        let next = match std::fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse::<i64>()
                .map_err(|e| error(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(error(e)),
        };
        Ok(Self {
            path,
            block: Mutex::new(Block { next, end: next }),
        })
    }

    /// A producer id never handed out before, on this data directory.
    pub(crate) fn allocate(&self) -> Result<i64, ProducerIdError> {
        let mut block = self.block.lock();
        if block.next >= block.end {
            let end = block.next + BLOCK_SIZE;
            self.persist(end)?;
            block.end = end;
        }
        let id = block.next;
        block.next += 1;
        Ok(id)
    }

    fn persist(&self, next_block: i64) -> Result<(), ProducerIdError> {
        let error = |source| ProducerIdError {
            path: self.path.clone(),
            source,
        };
        let tmp = self.path.with_extension("tmp");
        {
            let mut file = std::fs::File::create(&tmp).map_err(error)?;
            file.write_all(format!("{next_block}\n").as_bytes())
                .map_err(error)?;
            file.sync_all().map_err(error)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(error)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(error)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_never_reused_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let ids = ProducerIds::open(dir.path()).unwrap();
        assert_eq!(ids.allocate().unwrap(), 0);
        assert_eq!(ids.allocate().unwrap(), 1);
        drop(ids);
        let ids = ProducerIds::open(dir.path()).unwrap();
        let next = ids.allocate().unwrap();
        assert_eq!(next, BLOCK_SIZE);
        for _ in 0..BLOCK_SIZE {
            assert!(ids.allocate().unwrap() > next);
        }
        drop(ids);
        assert_eq!(
            ProducerIds::open(dir.path()).unwrap().allocate().unwrap(),
            3 * BLOCK_SIZE
        );
    }
}
