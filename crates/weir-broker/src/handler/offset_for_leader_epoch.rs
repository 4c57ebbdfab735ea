//! OffsetForLeaderEpoch: the end offset of a leader epoch in a partition's log (KIP-101,
//! KIP-279, KIP-320).
//!
//! Followers ask it of their leader before they fetch, to find where their log diverged;
//! consumers ask it after a leader change, to detect a log truncated under them. The answer
//! comes from the leader's leader-epoch cache: for the latest epoch (or a later one) it is the
//! log end offset, for an earlier one the start offset of the next epoch, and an epoch older
//! than the log knows gets UNDEFINED (-1, -1). Only the leader answers, after the usual
//! current-leader-epoch check (FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH). Versions 2-4 (the
//! ones Kafka 4 still serves, all with a current leader epoch).

use crate::connection::RequestContext;
use crate::state::Broker;
use std::sync::Arc;
use weir_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use weir_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

super::always_responds!(OffsetForLeaderEpochRequest);

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    _ctx: &RequestContext,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| OffsetForLeaderTopicResult {
            partitions: topic
                .partitions
                .iter()
                .map(|p| {
                    match broker.leader_log(&topic.topic, p.partition, p.current_leader_epoch) {
                        Ok((log, _)) => {
                            let found = log.end_offset_for_epoch(p.leader_epoch);
                            EpochEndOffset {
                                partition: p.partition,
                                error_code: 0,
                                leader_epoch: found.leader_epoch,
                                end_offset: found.end_offset,
                                ..EpochEndOffset::default()
                            }
                        }
                        Err(code) => EpochEndOffset {
                            partition: p.partition,
                            error_code: code.code(),
                            leader_epoch: -1,
                            end_offset: -1,
                            ..EpochEndOffset::default()
                        },
                    }
                })
                .collect(),
            topic: topic.topic,
            ..OffsetForLeaderTopicResult::default()
        })
        .collect();
    OffsetForLeaderEpochResponse {
        topics,
        ..OffsetForLeaderEpochResponse::default()
    }
}
