//! One module per Kafka API. Each has `handle(broker, ctx, request) -> response` and
//! `wants_response(&request)` (false only for Produce with acks=0).

// Consumer groups.
pub(crate) mod delete_groups;
pub(crate) mod describe_groups;
pub(crate) mod find_coordinator;
pub(crate) mod heartbeat;
pub(crate) mod join_group;
pub(crate) mod leave_group;
pub(crate) mod list_groups;
pub(crate) mod offset_commit;
pub(crate) mod offset_delete;
pub(crate) mod offset_fetch;
pub(crate) mod sync_group;

pub(crate) mod alter_configs;
pub(crate) mod alter_partition_reassignments;
pub(crate) mod alter_replica_log_dirs;
pub(crate) mod api_versions;
pub(crate) mod create_partitions;
pub(crate) mod create_topics;
pub(crate) mod delete_records;
pub(crate) mod delete_topics;
pub(crate) mod describe_cluster;
pub(crate) mod describe_configs;
pub(crate) mod describe_log_dirs;
pub(crate) mod describe_quorum;
pub(crate) mod describe_topic_partitions;
pub(crate) mod elect_leaders;
pub(crate) mod fetch;
pub(crate) mod incremental_alter_configs;
pub(crate) mod init_producer_id;
pub(crate) mod list_config_resources;
pub(crate) mod list_offsets;
pub(crate) mod list_partition_reassignments;
pub(crate) mod metadata;
pub(crate) mod offset_for_leader_epoch;
pub(crate) mod produce;
pub(crate) mod write_txn_markers;

// Transactions (the coordinator side).
pub(crate) mod add_offsets_to_txn;
pub(crate) mod add_partitions_to_txn;
pub(crate) mod describe_producers;
pub(crate) mod describe_transactions;
pub(crate) mod end_txn;
pub(crate) mod list_transactions;
pub(crate) mod txn_offset_commit;

/// Every request except Produce with acks=0 gets a response.
macro_rules! always_responds {
    ($request:ty) => {
        pub(crate) fn wants_response(_request: &$request) -> bool {
            true
        }
    };
}
pub(crate) use always_responds;

/// Sends `request` to the active controller and waits until this broker has published the
/// result, within `timeout_ms` (a non-positive timeout leaves only the controller call's own
/// bounds). `Err(None)` means the time ran out. For admin APIs that change metadata through
/// the controller and answer once the change is visible here.
pub(crate) async fn call_controller(
    broker: &crate::state::Broker,
    request: weir_metadata::active::ControllerRequest,
    timeout_ms: i32,
) -> Result<
    weir_metadata::active::ControllerOutcome,
    Option<weir_metadata::active::ControllerCallError>,
> {
    let call = async {
        let response = broker.cluster.call(request).await.map_err(Some)?;
        broker.cluster.wait_published(response.offset).await;
        Ok(response.outcome)
    };
    match u64::try_from(timeout_ms) {
        Ok(ms) if ms > 0 => tokio::time::timeout(std::time::Duration::from_millis(ms), call)
            .await
            .unwrap_or(Err(None)),
        _ => call.await,
    }
}

/// Per-partition results grouped by topic, topics in the order they first appear (responses
/// list partitions under their topic).
pub(crate) fn group_by_topic<T>(
    items: impl IntoIterator<Item = (String, T)>,
) -> Vec<(String, Vec<T>)> {
    let mut groups: Vec<(String, Vec<T>)> = Vec::new();
    for (topic, item) in items {
        match groups.iter_mut().find(|(t, _)| *t == topic) {
            Some((_, list)) => list.push(item),
            None => groups.push((topic, vec![item])),
        }
    }
    groups
}
