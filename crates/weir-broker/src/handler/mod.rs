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

pub(crate) mod api_versions;
pub(crate) mod metadata;

/// Every request except Produce with acks=0 gets a response.
macro_rules! always_responds {
    ($request:ty) => {
        pub(crate) fn wants_response(_request: &$request) -> bool {
            true
        }
    };
}
pub(crate) use always_responds;
