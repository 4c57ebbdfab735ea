//! Producer id allocation for InitProducerId.
//!
//! Ids come in blocks from the controller (Kafka's AllocateProducerIds): the metadata log
//! records the first id not yet handed out, so no id is ever given twice in the cluster, across
//! restarts and brokers. A broker hands out its block one id at a time and asks for the next
//! when it runs out; a restart skips at most the rest of one block.
//!
//! Earlier single-node versions reserved blocks in `<first log dir>/weir-producer-ids`; a new
//! cluster imports that reservation ([`read_legacy_reservation`]), so ids handed out before
//! (whose sequence state the logs still hold) are not handed out again.

use crate::error::{AdminError, BrokerError};
use crate::state::Broker;
use parking_lot::Mutex;
use std::path::Path;
use weir_metadata::active::{ControllerOutcome, ControllerRequest};

const LEGACY_FILE_NAME: &str = "weir-producer-ids";

#[derive(Debug, Default)]
struct Block {
    next: i64,
    /// First id past the block.
    end: i64,
}

/// Hands out producer ids from blocks the controller gives this broker.
#[derive(Debug, Default)]
pub(crate) struct ProducerIds {
    block: Mutex<Block>,
}

impl ProducerIds {
    /// A producer id never handed out before in the cluster. Blocks while a new block is
    /// fetched: call it on the blocking pool.
    pub(crate) fn allocate(&self, broker: &Broker) -> Result<i64, AdminError> {
        let mut block = self.block.lock();
        if block.next >= block.end {
            let response =
                broker
                    .cluster
                    .call_blocking(ControllerRequest::AllocateProducerIds {
                        broker_id: broker.config().node_id,
                        broker_epoch: broker.cluster.broker_epoch(),
                    })?;
            let ControllerOutcome::ProducerIds(given) = response.outcome else {
                return Err(AdminError::Broker(BrokerError::Cluster(
                    "the controller answered AllocateProducerIds without ids".into(),
                )));
            };
            *block = Block {
                next: given.first,
                end: given.first.saturating_add(given.len),
            };
        }
        let id = block.next;
        block.next += 1;
        Ok(id)
    }
}

/// The first unreserved producer id an earlier single-node Weir recorded in `dir`, if any.
pub(crate) fn read_legacy_reservation(dir: &Path) -> Result<Option<i64>, BrokerError> {
    let path = dir.join(LEGACY_FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|e| BrokerError::Cluster(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(BrokerError::Cluster(format!("{}: {e}", path.display()))),
    }
}
