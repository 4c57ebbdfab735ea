//! From API key to handler. The ApiVersions response is derived from [`SUPPORTED`], the same
//! table that dispatches requests, so the broker never advertises what it cannot serve.

use crate::connection::RequestContext;
use crate::handler;
use crate::state::Broker;
use bytes::BytesMut;
use std::sync::Arc;
use weir_protocol::header::encode_response;
use weir_protocol::messages::RequestBody;
use weir_protocol::{ApiKey, EncodeError, VersionRange};

/// What became of a request.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The response was encoded into the buffer.
    Responded,
    /// The request wants no response (Produce with acks=0).
    NoResponse,
    /// A request that wants no response failed: close the connection, which is how Kafka tells
    /// an acks=0 producer that something went wrong (it then refreshes metadata and retries).
    Close,
    /// This broker does not serve the API.
    Unsupported,
}

macro_rules! routes {
    ($($api:ident => $module:ident, $min:literal ..= $max:literal;)*) => {
        /// The APIs this broker serves and their versions.
        pub(crate) const SUPPORTED: &[(ApiKey, VersionRange)] = &[
            $((ApiKey::$api, VersionRange { min: $min, max: $max }),)*
        ];

        /// Runs the handler for `body` and encodes its response into `buf`.
        pub(crate) async fn dispatch(
            broker: &Arc<Broker>,
            ctx: &RequestContext,
            body: RequestBody,
            buf: &mut BytesMut,
        ) -> Result<Outcome, EncodeError> {
            match body {
                $(
                    RequestBody::$api(request) => {
                        let wants_response = handler::$module::wants_response(&request);
                        let response = handler::$module::handle(broker, ctx, *request).await;
                        if !wants_response {
                            return Ok(silent_outcome(&response));
                        }
                        encode_response(buf, ApiKey::$api, ctx.api_version, ctx.correlation_id, &response)?;
                        Ok(Outcome::Responded)
                    }
                )*
                _ => Ok(Outcome::Unsupported),
            }
        }
    };
}

routes! {
    // Discovery.
    ApiVersions => api_versions, 0..=4;
    Metadata => metadata, 0..=13;
    DescribeCluster => describe_cluster, 0..=2;
    DescribeQuorum => describe_quorum, 0..=2;
    DescribeTopicPartitions => describe_topic_partitions, 0..=0;
    // The data path.
    Produce => produce, 3..=13;
    Fetch => fetch, 4..=18;
    ListOffsets => list_offsets, 1..=11;
    OffsetForLeaderEpoch => offset_for_leader_epoch, 2..=4;
    DeleteRecords => delete_records, 0..=2;
    InitProducerId => init_producer_id, 0..=5;
    // Transactions: the coordinator, and the partition side it calls.
    AddPartitionsToTxn => add_partitions_to_txn, 0..=5;
    AddOffsetsToTxn => add_offsets_to_txn, 0..=4;
    EndTxn => end_txn, 0..=5;
    DescribeTransactions => describe_transactions, 0..=0;
    DescribeProducers => describe_producers, 0..=0;
    ListTransactions => list_transactions, 0..=1;
    WriteTxnMarkers => write_txn_markers, 1..=2;
    // Consumer groups.
    FindCoordinator => find_coordinator, 0..=6;
    JoinGroup => join_group, 0..=9;
    SyncGroup => sync_group, 0..=5;
    Heartbeat => heartbeat, 0..=4;
    LeaveGroup => leave_group, 0..=5;
    OffsetCommit => offset_commit, 2..=10;
    OffsetFetch => offset_fetch, 1..=10;
    OffsetDelete => offset_delete, 0..=0;
    TxnOffsetCommit => txn_offset_commit, 0..=5;
    DescribeGroups => describe_groups, 0..=6;
    ListGroups => list_groups, 0..=5;
    DeleteGroups => delete_groups, 0..=2;
    // Topic administration.
    CreateTopics => create_topics, 2..=7;
    DeleteTopics => delete_topics, 1..=6;
    CreatePartitions => create_partitions, 0..=3;
    DescribeConfigs => describe_configs, 1..=4;
    ListConfigResources => list_config_resources, 0..=1;
    AlterConfigs => alter_configs, 0..=2;
    IncrementalAlterConfigs => incremental_alter_configs, 0..=1;
    DescribeLogDirs => describe_log_dirs, 1..=4;
    AlterReplicaLogDirs => alter_replica_log_dirs, 1..=2;
    // Partition leadership.
    ElectLeaders => elect_leaders, 0..=2;
    AlterPartitionReassignments => alter_partition_reassignments, 0..=0;
    ListPartitionReassignments => list_partition_reassignments, 0..=0;
}

/// What to do after a request that wants no response: close the connection if it failed.
fn silent_outcome(response: &dyn std::any::Any) -> Outcome {
    let failed = response
        .downcast_ref::<weir_protocol::messages::ProduceResponse>()
        .is_some_and(|produce| {
            produce
                .responses
                .iter()
                .flat_map(|t| &t.partition_responses)
                .any(|p| p.error_code != 0)
        });
    if failed {
        Outcome::Close
    } else {
        Outcome::NoResponse
    }
}

/// The versions of `api_key` this broker serves, if any.
pub(crate) fn supported(api_key: ApiKey) -> Option<VersionRange> {
    SUPPORTED
        .iter()
        .find(|(key, _)| *key == api_key)
        .map(|(_, range)| *range)
}

/// The version range advertised in ApiVersions. Produce is advertised from v0 although only
/// v3+ decodes: librdkafka checks for Produce v0 support, and Kafka 4 advertises it the same way
/// while rejecting v0-2 requests.
pub(crate) fn advertised(api_key: ApiKey, range: VersionRange) -> VersionRange {
    if api_key == ApiKey::Produce {
        VersionRange { min: 0, ..range }
    } else {
        range
    }
}
