//! Consumer groups against an in-process broker, through the raw client: the classic protocol
//! (JoinGroup, SyncGroup, Heartbeat, LeaveGroup), committed offsets, the admin APIs and
//! persistence in `__consumer_offsets` across restarts.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers outside #[test] functions fail the test loudly"
)]

#[allow(
    unreachable_pub,
    reason = "support is shared by several test crates; `expect` would fail if it is fixed there"
)]
mod support;

use bytes::{BufMut, Bytes, BytesMut};
use std::time::Duration;
use support::{RawClient, TestBroker};
use weir_protocol::ErrorCode;
use weir_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use weir_protocol::messages::leave_group_request::MemberIdentity;
use weir_protocol::messages::metadata_request::MetadataRequestTopic;
use weir_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use weir_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use weir_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use weir_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use weir_protocol::messages::{
    DeleteGroupsRequest, DescribeGroupsRequest, FindCoordinatorRequest, HeartbeatRequest,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, ListGroupsRequest, MetadataRequest,
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetFetchRequest,
    OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse,
};

/// Every wait in these tests is bounded by this.
const WAIT: Duration = Duration::from_secs(10);

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(WAIT, f)
        .await
        .expect("timed out waiting for the broker")
}

/// A ConsumerProtocolSubscription v0: version, topics, null user data.
fn subscription(topics: &[&str]) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    buf.put_i32(topics.len() as i32);
    for t in topics {
        buf.put_i16(t.len() as i16);
        buf.put_slice(t.as_bytes());
    }
    buf.put_i32(-1);
    buf.freeze()
}

async fn create_topic(client: &mut RawClient, name: &str) {
    let request = MetadataRequest {
        topics: Some(vec![MetadataRequestTopic {
            name: Some(name.into()),
            ..Default::default()
        }]),
        allow_auto_topic_creation: true,
        ..Default::default()
    };
    let response = client.send(request, 9).await;
    assert_eq!(response.topics[0].error_code, 0);
}

fn join_request(group: &str, member_id: &str, session_timeout_ms: i32) -> JoinGroupRequest {
    JoinGroupRequest {
        group_id: group.into(),
        session_timeout_ms,
        rebalance_timeout_ms: 5_000,
        member_id: member_id.into(),
        protocol_type: "consumer".into(),
        protocols: vec![JoinGroupRequestProtocol {
            name: "range".into(),
            metadata: subscription(&["orders"]),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Joins as a new member the way v4+ clients do: a first join without a member id is told
/// MEMBER_ID_REQUIRED and rejoins with the id it was given.
async fn join_new(
    client: &mut RawClient,
    group: &str,
    session_timeout_ms: i32,
    version: i16,
) -> JoinGroupResponse {
    let first = bounded(client.send(join_request(group, "", session_timeout_ms), version)).await;
    assert_eq!(first.error_code, ErrorCode::MEMBER_ID_REQUIRED.code());
    assert!(!first.member_id.is_empty());
    let joined = bounded(client.send(
        join_request(group, &first.member_id, session_timeout_ms),
        version,
    ))
    .await;
    assert_eq!(joined.error_code, 0, "{joined:?}");
    assert_eq!(joined.member_id, first.member_id);
    joined
}

async fn sync(
    client: &mut RawClient,
    group: &str,
    joined: &JoinGroupResponse,
    assignments: &[(&str, &[u8])],
    version: i16,
) -> SyncGroupResponse {
    let request = SyncGroupRequest {
        group_id: group.into(),
        generation_id: joined.generation_id,
        member_id: joined.member_id.clone(),
        protocol_type: (version >= 5).then(|| "consumer".into()),
        protocol_name: (version >= 5).then(|| "range".into()),
        assignments: assignments
            .iter()
            .map(|(member, assignment)| SyncGroupRequestAssignment {
                member_id: (*member).into(),
                assignment: Bytes::copy_from_slice(assignment),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    bounded(client.send(request, version)).await
}

async fn heartbeat(client: &mut RawClient, group: &str, joined: &JoinGroupResponse) -> i16 {
    let request = HeartbeatRequest {
        group_id: group.into(),
        generation_id: joined.generation_id,
        member_id: joined.member_id.clone(),
        ..Default::default()
    };
    bounded(client.send(request, 3)).await.error_code
}

async fn commit(
    client: &mut RawClient,
    group: &str,
    generation_id: i32,
    member_id: &str,
    offsets: &[(&str, i32, i64)],
    version: i16,
) -> OffsetCommitResponse {
    let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
    for (topic, partition, offset) in offsets {
        let partition = OffsetCommitRequestPartition {
            partition_index: *partition,
            committed_offset: *offset,
            committed_leader_epoch: 0,
            committed_metadata: Some(format!("meta-{offset}")),
            ..Default::default()
        };
        match topics.last_mut() {
            Some(t) if t.name == *topic => t.partitions.push(partition),
            _ => topics.push(OffsetCommitRequestTopic {
                name: (*topic).into(),
                partitions: vec![partition],
                ..Default::default()
            }),
        }
    }
    let request = OffsetCommitRequest {
        group_id: group.into(),
        generation_id_or_member_epoch: generation_id,
        member_id: member_id.into(),
        topics,
        ..Default::default()
    };
    bounded(client.send(request, version)).await
}

fn commit_errors(response: &OffsetCommitResponse) -> Vec<i16> {
    response
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect()
}

/// Committed offsets of `partitions` of `topic` through OffsetFetch v5 (one group).
async fn fetch_offsets(
    client: &mut RawClient,
    group: &str,
    topic: &str,
    partitions: &[i32],
) -> Vec<i64> {
    let request = OffsetFetchRequest {
        group_id: group.into(),
        topics: Some(vec![OffsetFetchRequestTopic {
            name: topic.into(),
            partition_indexes: partitions.to_vec(),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let response: OffsetFetchResponse = bounded(client.send(request, 5)).await;
    assert_eq!(response.error_code, 0);
    response.topics[0]
        .partitions
        .iter()
        .map(|p| p.committed_offset)
        .collect()
}

#[tokio::test]
async fn find_coordinator_answers_with_this_node() {
    let broker = TestBroker::start(&[]).await;
    let mut client = broker.client().await;
    let all = MetadataRequest {
        topics: None,
        ..Default::default()
    };
    let node = client.send(all, 12).await.brokers.remove(0);
    for version in [0, 1, 2, 3] {
        let request = FindCoordinatorRequest {
            key: "g".into(),
            ..Default::default()
        };
        let response = client.send(request, version).await;
        assert_eq!(response.error_code, 0);
        assert_eq!((response.node_id, response.port), (node.node_id, node.port));
        if version >= 1 {
            assert_eq!(response.error_message, None, "kafkajs needs a null message");
        }
    }
    let request = FindCoordinatorRequest {
        key_type: 0,
        coordinator_keys: vec!["a".into(), "b".into()],
        ..Default::default()
    };
    let response = client.send(request, 4).await;
    assert_eq!(response.coordinators.len(), 2);
    assert_eq!(response.coordinators[1].key, "b");
    assert_eq!(response.coordinators[1].error_code, 0);
    assert_eq!(response.coordinators[1].error_message, None);
    // Transactional ids are coordinated here too; unknown key types are refused.
    let request = FindCoordinatorRequest {
        key_type: 1,
        coordinator_keys: vec!["txn".into()],
        ..Default::default()
    };
    assert_eq!(client.send(request, 6).await.coordinators[0].error_code, 0);
    let request = FindCoordinatorRequest {
        key_type: 7,
        key: "x".into(),
        ..Default::default()
    };
    assert_eq!(
        client.send(request, 3).await.error_code,
        ErrorCode::INVALID_REQUEST.code()
    );
    broker.stop().await;
}

#[tokio::test]
async fn join_sync_heartbeat_commit_fetch() {
    let broker = TestBroker::start(&[("num.partitions", "2")]).await;
    let mut client = broker.client().await;
    create_topic(&mut client, "orders").await;

    let started = std::time::Instant::now();
    let joined = join_new(&mut client, "g1", 10_000, 7).await;
    assert_eq!(joined.generation_id, 1);
    assert_eq!(joined.leader, joined.member_id);
    assert_eq!(joined.protocol_name.as_deref(), Some("range"));
    assert_eq!(joined.members.len(), 1);
    assert_eq!(joined.members[0].metadata, subscription(&["orders"]));
    let me = joined.member_id.clone();
    let synced = sync(&mut client, "g1", &joined, &[(&me, b"orders-0,1")], 5).await;
    assert_eq!(synced.error_code, 0);
    assert_eq!(&synced.assignment[..], b"orders-0,1");
    assert_eq!(synced.protocol_name.as_deref(), Some("range"));
    // A lone consumer waits only for group.initial.rebalance.delay.ms (100 ms).
    assert!(started.elapsed() < Duration::from_secs(2));

    assert_eq!(heartbeat(&mut client, "g1", &joined).await, 0);
    let stale = JoinGroupResponse {
        generation_id: 0,
        ..joined.clone()
    };
    assert_eq!(
        heartbeat(&mut client, "g1", &stale).await,
        ErrorCode::ILLEGAL_GENERATION.code()
    );

    for version in [2, 5, 8, 9] {
        let offset = i64::from(version) * 10;
        let response = commit(
            &mut client,
            "g1",
            joined.generation_id,
            &me,
            &[("orders", 0, offset), ("orders", 1, offset + 1)],
            version,
        )
        .await;
        assert_eq!(commit_errors(&response), vec![0, 0], "v{version}");
        assert_eq!(
            fetch_offsets(&mut client, "g1", "orders", &[0, 1]).await,
            vec![offset, offset + 1]
        );
    }
    // Stale generations and unknown partitions are refused.
    let response = commit(&mut client, "g1", 7, &me, &[("orders", 0, 1)], 8).await;
    assert_eq!(
        commit_errors(&response),
        vec![ErrorCode::ILLEGAL_GENERATION.code()]
    );
    let response = commit(
        &mut client,
        "g1",
        joined.generation_id,
        &me,
        &[("orders", 5, 1), ("nope", 0, 1)],
        8,
    )
    .await;
    assert_eq!(
        commit_errors(&response),
        vec![ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code(); 2]
    );

    // OffsetFetch v8+: several groups, null topics for all partitions; metadata and leader
    // epoch come back.
    let request = OffsetFetchRequest {
        groups: vec![
            OffsetFetchRequestGroup {
                group_id: "g1".into(),
                topics: None,
                ..Default::default()
            },
            OffsetFetchRequestGroup {
                group_id: "other".into(),
                topics: Some(vec![OffsetFetchRequestTopics {
                    name: "orders".into(),
                    partition_indexes: vec![0],
                    ..Default::default()
                }]),
                ..Default::default()
            },
        ],
        require_stable: true,
        ..Default::default()
    };
    let response = bounded(client.send(request, 9)).await;
    assert_eq!(response.groups.len(), 2);
    let g1 = &response.groups[0].topics[0];
    assert_eq!(g1.name, "orders");
    assert_eq!(g1.partitions.len(), 2);
    assert_eq!(g1.partitions[0].committed_offset, 90);
    assert_eq!(g1.partitions[0].committed_leader_epoch, 0);
    assert_eq!(g1.partitions[0].metadata.as_deref(), Some("meta-90"));
    assert_eq!(
        response.groups[1].topics[0].partitions[0].committed_offset,
        -1
    );

    // The member leaves; the group is empty and its offsets stay.
    let leave = LeaveGroupRequest {
        group_id: "g1".into(),
        member_id: me.clone(),
        ..Default::default()
    };
    assert_eq!(bounded(client.send(leave, 1)).await.error_code, 0);
    assert_eq!(
        heartbeat(&mut client, "g1", &joined).await,
        ErrorCode::UNKNOWN_MEMBER_ID.code()
    );
    assert_eq!(
        fetch_offsets(&mut client, "g1", "orders", &[0]).await,
        vec![90]
    );
    broker.stop().await;
}

#[tokio::test]
async fn old_join_versions_need_no_member_id_round_trip() {
    let broker = TestBroker::start(&[]).await;
    let mut client = broker.client().await;
    for (group, version) in [("v0", 0), ("v3", 3)] {
        let joined = bounded(client.send(join_request(group, "", 10_000), version)).await;
        assert_eq!(joined.error_code, 0, "v{version}");
        assert!(!joined.member_id.is_empty());
        assert_eq!(joined.leader, joined.member_id);
        let me = joined.member_id.clone();
        let synced = sync(&mut client, group, &joined, &[(&me, b"a")], 0).await;
        assert_eq!(synced.error_code, 0);
        assert_eq!(&synced.assignment[..], b"a");
    }
    // An unknown member id is refused; so is a session timeout out of range.
    let response = client.send(join_request("v0", "ghost", 10_000), 7).await;
    assert_eq!(response.error_code, ErrorCode::UNKNOWN_MEMBER_ID.code());
    assert_eq!(response.protocol_name, None);
    let response = client.send(join_request("x", "", 10), 5).await;
    assert_eq!(
        response.error_code,
        ErrorCode::INVALID_SESSION_TIMEOUT.code()
    );
    broker.stop().await;
}

/// Starts a two-member group: `a` joins and syncs alone, then `b` joins and `a` rejoins after
/// its heartbeat reports the rebalance. Returns both members' generation-2 joins, each synced
/// with the assignment the leader gave.
async fn two_member_group(
    broker: &TestBroker,
    group: &'static str,
    session_timeout_ms: i32,
) -> (
    (RawClient, JoinGroupResponse),
    (RawClient, JoinGroupResponse),
) {
    let mut a = broker.client().await;
    let mut b = broker.client().await;
    let a1 = join_new(&mut a, group, session_timeout_ms, 5).await;
    let me = a1.member_id.clone();
    assert_eq!(
        sync(&mut a, group, &a1, &[(&me, b"all")], 3)
            .await
            .error_code,
        0
    );

    // b's join parks until a rejoins.
    let b_join = tokio::spawn(async move {
        let joined = join_new(&mut b, group, session_timeout_ms, 9).await;
        (b, joined)
    });
    let rebalancing = async {
        loop {
            match heartbeat(&mut a, group, &a1).await {
                0 => tokio::time::sleep(Duration::from_millis(20)).await,
                code => return code,
            }
        }
    };
    assert_eq!(
        bounded(rebalancing).await,
        ErrorCode::REBALANCE_IN_PROGRESS.code()
    );
    let a2 = bounded(a.send(join_request(group, &me, session_timeout_ms), 5)).await;
    let (mut b, b2) = bounded(b_join).await.unwrap();
    assert_eq!(a2.error_code, 0);
    assert_eq!(a2.generation_id, 2);
    assert_eq!(b2.generation_id, 2);
    // The old leader stays leader and alone sees the members.
    assert_eq!(a2.leader, me);
    assert_eq!(b2.leader, me);
    assert_eq!(a2.members.len(), 2);
    assert!(b2.members.is_empty());

    // The follower's sync parks until the leader's assignment arrives.
    let b2_clone = b2.clone();
    let b_sync = tokio::spawn(async move {
        let synced = sync(&mut b, group, &b2_clone, &[], 4).await;
        (b, synced)
    });
    let b_id = b2.member_id.clone();
    let assignments: [(&str, &[u8]); 2] = [(&me, b"orders-0"), (&b_id, b"orders-1")];
    let a_synced = sync(&mut a, group, &a2, &assignments, 3).await;
    let (b, b_synced) = bounded(b_sync).await.unwrap();
    assert_eq!(a_synced.error_code, 0);
    assert_eq!(&a_synced.assignment[..], b"orders-0");
    assert_eq!(b_synced.error_code, 0);
    assert_eq!(&b_synced.assignment[..], b"orders-1");
    ((a, a2), (b, b2))
}

#[tokio::test]
async fn two_members_rebalance_and_get_the_leaders_assignment() {
    let broker = TestBroker::start(&[]).await;
    let ((mut a, a2), (mut b, b2)) = two_member_group(&broker, "pair", 10_000).await;
    assert_eq!(heartbeat(&mut a, "pair", &a2).await, 0);
    assert_eq!(heartbeat(&mut b, "pair", &b2).await, 0);

    // DescribeGroups shows both members with their assignments.
    let described = client_describe(&broker, "pair", 5).await;
    assert_eq!(described.group_state, "Stable");
    assert_eq!(described.protocol_type, "consumer");
    assert_eq!(described.protocol_data, "range");
    assert_eq!(described.members.len(), 2);
    let b_member = described
        .members
        .iter()
        .find(|m| m.member_id == b2.member_id)
        .unwrap();
    assert_eq!(&b_member.member_assignment[..], b"orders-1");
    assert_eq!(b_member.client_id, "weir-test");
    assert_eq!(b_member.client_host, "/127.0.0.1");
    assert_eq!(b_member.member_metadata, subscription(&["orders"]));
    broker.stop().await;
}

async fn client_describe(
    broker: &TestBroker,
    group: &str,
    version: i16,
) -> weir_protocol::messages::describe_groups_response::DescribedGroup {
    let mut client = broker.client().await;
    let request = DescribeGroupsRequest {
        groups: vec![group.into()],
        ..Default::default()
    };
    let mut response = bounded(client.send(request, version)).await;
    assert_eq!(response.groups.len(), 1);
    response.groups.remove(0)
}

#[tokio::test]
async fn a_silent_member_is_removed_after_its_session_timeout() {
    let broker = TestBroker::start(&[("group.min.session.timeout.ms", "100")]).await;
    let ((mut a, a2), (b, _b2)) = two_member_group(&broker, "expiry", 500).await;
    // b goes silent (keeps its connection, sends nothing); a keeps heartbeating until the
    // coordinator notices b's session expired and asks a to rejoin.
    let started = std::time::Instant::now();
    let rebalancing = async {
        loop {
            match heartbeat(&mut a, "expiry", &a2).await {
                0 => tokio::time::sleep(Duration::from_millis(50)).await,
                code => return code,
            }
        }
    };
    assert_eq!(
        bounded(rebalancing).await,
        ErrorCode::REBALANCE_IN_PROGRESS.code()
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    let a3 = bounded(a.send(join_request("expiry", &a2.member_id, 500), 5)).await;
    assert_eq!(a3.error_code, 0);
    assert_eq!(a3.generation_id, 3);
    assert_eq!(a3.members.len(), 1);
    assert_eq!(a3.members[0].member_id, a2.member_id);
    drop(b);
    broker.stop().await;
}

#[tokio::test]
async fn committed_offsets_and_groups_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let props = [
        ("num.partitions", "3"),
        ("offsets.topic.num.partitions", "5"),
    ];
    let broker = TestBroker::start_in(dir.path(), &props).await;
    let mut client = broker.client().await;
    create_topic(&mut client, "orders").await;
    let joined = join_new(&mut client, "durable", 10_000, 5).await;
    let me = joined.member_id.clone();
    assert_eq!(
        sync(&mut client, "durable", &joined, &[(&me, b"x")], 3)
            .await
            .error_code,
        0
    );
    let response = commit(
        &mut client,
        "durable",
        joined.generation_id,
        &me,
        &[("orders", 0, 5), ("orders", 2, 7)],
        8,
    )
    .await;
    assert_eq!(commit_errors(&response), vec![0, 0]);
    // A later commit wins over an earlier one after replay.
    let response = commit(
        &mut client,
        "durable",
        joined.generation_id,
        &me,
        &[("orders", 0, 6)],
        8,
    )
    .await;
    assert_eq!(commit_errors(&response), vec![0]);
    // A standalone consumer (no membership) commits with generation -1.
    let response = commit(&mut client, "standalone", -1, "", &[("orders", 1, 42)], 3).await;
    assert_eq!(commit_errors(&response), vec![0]);
    // A deleted group stays deleted.
    let response = commit(&mut client, "doomed", -1, "", &[("orders", 1, 1)], 3).await;
    assert_eq!(commit_errors(&response), vec![0]);
    let delete = DeleteGroupsRequest {
        groups_names: vec!["doomed".into()],
        ..Default::default()
    };
    assert_eq!(
        bounded(client.send(delete, 2)).await.results[0].error_code,
        0
    );
    drop(client);
    broker.stop().await;

    let broker = TestBroker::start_in(dir.path(), &[]).await;
    let mut client = broker.client().await;
    assert_eq!(
        fetch_offsets(&mut client, "durable", "orders", &[0, 1, 2]).await,
        vec![6, -1, 7]
    );
    assert_eq!(
        fetch_offsets(&mut client, "standalone", "orders", &[1]).await,
        vec![42]
    );
    assert_eq!(
        fetch_offsets(&mut client, "doomed", "orders", &[1]).await,
        vec![-1]
    );
    let listed = bounded(client.send(ListGroupsRequest::default(), 3)).await;
    let mut ids: Vec<_> = listed.groups.iter().map(|g| g.group_id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, vec!["durable", "standalone"]);
    // The internal topic is listed as internal.
    let all = MetadataRequest {
        topics: None,
        ..Default::default()
    };
    let metadata = client.send(all, 12).await;
    let internal = metadata
        .topics
        .iter()
        .find(|t| t.name.as_deref() == Some("__consumer_offsets"))
        .unwrap();
    assert!(internal.is_internal);
    assert_eq!(internal.partitions.len(), 5);
    broker.stop().await;
}

#[tokio::test]
async fn describe_list_and_delete_groups() {
    let broker = TestBroker::start(&[]).await;
    let mut client = broker.client().await;
    let joined = join_new(&mut client, "admin", 10_000, 7).await;
    let me = joined.member_id.clone();
    assert_eq!(
        sync(&mut client, "admin", &joined, &[(&me, b"x")], 5)
            .await
            .error_code,
        0
    );

    let list = |states: &[&str], types: &[&str]| ListGroupsRequest {
        states_filter: states.iter().map(|s| s.to_string()).collect(),
        types_filter: types.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let listed = bounded(client.send(list(&["stable"], &[]), 4)).await;
    assert_eq!(listed.groups.len(), 1);
    assert_eq!(listed.groups[0].group_id, "admin");
    assert_eq!(listed.groups[0].protocol_type, "consumer");
    assert_eq!(listed.groups[0].group_state, "Stable");
    assert!(
        bounded(client.send(list(&["Empty"], &[]), 4))
            .await
            .groups
            .is_empty()
    );
    assert!(
        bounded(client.send(list(&["Bogus"], &[]), 4))
            .await
            .groups
            .is_empty()
    );
    let listed = bounded(client.send(list(&[], &["classic"]), 5)).await;
    assert_eq!(listed.groups[0].group_type, "classic");
    assert!(
        bounded(client.send(list(&[], &["consumer"]), 5))
            .await
            .groups
            .is_empty()
    );

    let delete = |names: &[&str]| DeleteGroupsRequest {
        groups_names: names.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let response = bounded(client.send(delete(&["admin", "missing"]), 1)).await;
    assert_eq!(
        response.results[0].error_code,
        ErrorCode::NON_EMPTY_GROUP.code()
    );
    assert_eq!(
        response.results[1].error_code,
        ErrorCode::GROUP_ID_NOT_FOUND.code()
    );

    // A batch leave (v3+) names members one by one; unknown ones fail alone.
    let leave = LeaveGroupRequest {
        group_id: "admin".into(),
        members: vec![
            MemberIdentity {
                member_id: me.clone(),
                ..Default::default()
            },
            MemberIdentity {
                member_id: "ghost".into(),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let left = bounded(client.send(leave, 5)).await;
    assert_eq!(left.error_code, 0);
    assert_eq!(left.members[0].error_code, 0);
    assert_eq!(
        left.members[1].error_code,
        ErrorCode::UNKNOWN_MEMBER_ID.code()
    );
    assert_eq!(
        client_describe(&broker, "admin", 5).await.group_state,
        "Empty"
    );

    let response = bounded(client.send(delete(&["admin"]), 2)).await;
    assert_eq!(response.results[0].error_code, 0);
    // Unknown groups: Dead before DescribeGroups v6, GROUP_ID_NOT_FOUND from v6.
    let old = client_describe(&broker, "admin", 5).await;
    assert_eq!((old.error_code, old.group_state.as_str()), (0, "Dead"));
    let new = client_describe(&broker, "admin", 6).await;
    assert_eq!(new.error_code, ErrorCode::GROUP_ID_NOT_FOUND.code());
    assert!(
        bounded(client.send(ListGroupsRequest::default(), 0))
            .await
            .groups
            .is_empty()
    );
    broker.stop().await;
}

#[tokio::test]
async fn offset_delete_spares_subscribed_topics() {
    let broker = TestBroker::start(&[("num.partitions", "2")]).await;
    let mut client = broker.client().await;
    create_topic(&mut client, "orders").await;
    create_topic(&mut client, "old").await;
    let offset_delete = |group: &str, topic: &str, partitions: &[i32]| OffsetDeleteRequest {
        group_id: group.into(),
        topics: vec![OffsetDeleteRequestTopic {
            name: topic.into(),
            partitions: partitions
                .iter()
                .map(|p| OffsetDeleteRequestPartition {
                    partition_index: *p,
                })
                .collect(),
        }],
    };

    // Standalone group (Empty): any partition's offset may go.
    let response = commit(
        &mut client,
        "solo",
        -1,
        "",
        &[("orders", 0, 3), ("orders", 1, 4)],
        8,
    )
    .await;
    assert_eq!(commit_errors(&response), vec![0, 0]);
    let response = bounded(client.send(offset_delete("solo", "orders", &[0, 9]), 0)).await;
    assert_eq!(response.error_code, 0);
    let codes: Vec<i16> = response.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect();
    assert_eq!(codes, vec![0, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code()]);
    assert_eq!(
        fetch_offsets(&mut client, "solo", "orders", &[0, 1]).await,
        vec![-1, 4]
    );
    let response = bounded(client.send(offset_delete("nobody", "orders", &[0]), 0)).await;
    assert_eq!(response.error_code, ErrorCode::GROUP_ID_NOT_FOUND.code());

    // An active consumer group keeps offsets of topics its members subscribe to.
    let joined = join_new(&mut client, "active", 10_000, 7).await;
    let me = joined.member_id.clone();
    assert_eq!(
        sync(&mut client, "active", &joined, &[(&me, b"x")], 5)
            .await
            .error_code,
        0
    );
    let response = commit(
        &mut client,
        "active",
        joined.generation_id,
        &me,
        &[("orders", 0, 1), ("old", 0, 2)],
        8,
    )
    .await;
    assert_eq!(commit_errors(&response), vec![0, 0]);
    let response = bounded(client.send(offset_delete("active", "orders", &[0]), 0)).await;
    assert_eq!(
        response.topics[0].partitions[0].error_code,
        ErrorCode::GROUP_SUBSCRIBED_TO_TOPIC.code()
    );
    let response = bounded(client.send(offset_delete("active", "old", &[0]), 0)).await;
    assert_eq!(response.topics[0].partitions[0].error_code, 0);
    assert_eq!(
        fetch_offsets(&mut client, "active", "old", &[0]).await,
        vec![-1]
    );
    broker.stop().await;
}

#[tokio::test]
async fn shutdown_releases_a_parked_join() {
    let broker = TestBroker::start(&[]).await;
    let mut a = broker.client().await;
    let joined = join_new(&mut a, "parked", 10_000, 5).await;
    let me = joined.member_id.clone();
    assert_eq!(
        sync(&mut a, "parked", &joined, &[(&me, b"x")], 3)
            .await
            .error_code,
        0
    );
    // A second member's join parks until `a` rejoins, which never happens.
    let mut b = broker.client().await;
    let first = bounded(b.send(join_request("parked", "", 10_000), 5)).await;
    let b_join = tokio::spawn(async move {
        b.send(join_request("parked", &first.member_id, 10_000), 5)
            .await
    });
    // Wait until the join has parked: it moved the group into a rebalance.
    bounded(async {
        while client_describe(&broker, "parked", 5).await.group_state != "PreparingRebalance" {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    bounded(broker.stop()).await;
    let response = bounded(b_join).await.unwrap();
    assert_eq!(response.error_code, ErrorCode::NOT_COORDINATOR.code());
}

/// Guards the rule that a response never promises group state the log refused: the leader's
/// assignment is too large for `__consumer_offsets`, so SyncGroup fails and the coordinator
/// falls back to what the log holds (nothing for this group).
#[tokio::test]
async fn a_failed_append_fails_the_request_and_reloads_the_log_state() {
    let broker = TestBroker::start(&[("message.max.bytes", "512")]).await;
    let mut client = broker.client().await;
    let joined = join_new(&mut client, "big", 10_000, 5).await;
    let me = joined.member_id.clone();
    let huge = vec![7u8; 2048];
    let synced = sync(&mut client, "big", &joined, &[(&me, &huge)], 3).await;
    assert_eq!(synced.error_code, ErrorCode::UNKNOWN_SERVER_ERROR.code());
    assert_eq!(
        heartbeat(&mut client, "big", &joined).await,
        ErrorCode::UNKNOWN_MEMBER_ID.code()
    );
    assert_eq!(client_describe(&broker, "big", 5).await.group_state, "Dead");
    // The member starts over with an assignment that fits.
    let joined = join_new(&mut client, "big", 10_000, 5).await;
    let me = joined.member_id.clone();
    let synced = sync(&mut client, "big", &joined, &[(&me, b"small")], 3).await;
    assert_eq!(synced.error_code, 0);
    assert_eq!(&synced.assignment[..], b"small");
    broker.stop().await;
}

#[tokio::test]
async fn a_static_member_restarts_without_a_rebalance() {
    let broker = TestBroker::start(&[]).await;
    let static_join = |member_id: &str| JoinGroupRequest {
        group_instance_id: Some("pod-1".into()),
        ..join_request("static", member_id, 10_000)
    };
    let mut first = broker.client().await;
    // Static members need no MEMBER_ID_REQUIRED round trip.
    let joined = bounded(first.send(static_join(""), 5)).await;
    assert_eq!(joined.error_code, 0);
    let old_id = joined.member_id.clone();
    let synced = sync(&mut first, "static", &joined, &[(&old_id, b"p0")], 3).await;
    assert_eq!(synced.error_code, 0);

    // The same instance comes back on a new connection with no member id.
    let mut second = broker.client().await;
    let rejoined = bounded(second.send(static_join(""), 5)).await;
    assert_eq!(rejoined.error_code, 0);
    assert_ne!(rejoined.member_id, old_id);
    assert_eq!(rejoined.generation_id, joined.generation_id, "no rebalance");
    let synced = sync(&mut second, "static", &rejoined, &[], 3).await;
    assert_eq!(synced.error_code, 0);
    assert_eq!(&synced.assignment[..], b"p0");
    // The old incarnation is fenced.
    let old = HeartbeatRequest {
        group_id: "static".into(),
        generation_id: joined.generation_id,
        member_id: old_id,
        group_instance_id: Some("pod-1".into()),
        ..Default::default()
    };
    assert_eq!(
        bounded(first.send(old, 3)).await.error_code,
        ErrorCode::FENCED_INSTANCE_ID.code()
    );
    broker.stop().await;
}

/// Members that start together form one generation (the initial rebalance delay gathers
/// them), and every one receives the leader's assignment. Prints the time from the first
/// JoinGroup to the last SyncGroup response (with the default 100 ms delay, a debug build
/// measured 203 ms for 10 members and 253 ms for 100).
#[tokio::test]
async fn many_members_join_one_generation() {
    // A longer window than the 100 ms default so that a loaded test machine cannot split the
    // arrivals into two generations (each arrival extends the window by this much).
    let broker = TestBroker::start(&[("group.initial.rebalance.delay.ms", "500")]).await;
    for n in [10usize, 100] {
        let group: &'static str = if n == 10 { "ten" } else { "hundred" };
        let started = std::time::Instant::now();
        let mut joins = Vec::new();
        for _ in 0..n {
            let mut client = broker.client().await;
            joins.push(tokio::spawn(async move {
                let joined = join_new(&mut client, group, 30_000, 7).await;
                (client, joined)
            }));
        }
        let mut members = Vec::new();
        for j in joins {
            members.push(bounded(j).await.unwrap());
        }
        let generation = members[0].1.generation_id;
        assert!(members.iter().all(|(_, j)| j.generation_id == generation));
        let leader = members[0].1.leader.clone();
        let leader_joined = members
            .iter()
            .find(|(_, j)| j.member_id == leader)
            .map(|(_, j)| j.clone())
            .unwrap();
        assert_eq!(leader_joined.members.len(), n);
        let assignments: Vec<(String, Vec<u8>)> = leader_joined
            .members
            .iter()
            .map(|m| (m.member_id.clone(), m.member_id.as_bytes().to_vec()))
            .collect();
        let mut syncs = Vec::new();
        for (mut client, joined) in members {
            let assignments = if joined.member_id == leader {
                assignments.clone()
            } else {
                Vec::new()
            };
            syncs.push(tokio::spawn(async move {
                let pairs: Vec<(&str, &[u8])> = assignments
                    .iter()
                    .map(|(m, a)| (m.as_str(), a.as_slice()))
                    .collect();
                let synced = sync(&mut client, group, &joined, &pairs, 5).await;
                (joined.member_id, synced)
            }));
        }
        for s in syncs {
            let (member_id, synced) = bounded(s).await.unwrap();
            assert_eq!(synced.error_code, 0);
            assert_eq!(&synced.assignment[..], member_id.as_bytes());
        }
        eprintln!(
            "{n} members: first JoinGroup to last SyncGroup response in {} ms (generation {generation})",
            started.elapsed().as_millis()
        );
    }
    broker.stop().await;
}

#[tokio::test]
async fn offset_commit_and_fetch_v10_name_topics_by_id() {
    let broker = TestBroker::start(&[("num.partitions", "2")]).await;
    let mut client = broker.client().await;
    let request = MetadataRequest {
        topics: Some(vec![MetadataRequestTopic {
            name: Some("orders".into()),
            ..Default::default()
        }]),
        allow_auto_topic_creation: true,
        ..Default::default()
    };
    let id = client.send(request, 12).await.topics[0].topic_id;
    let unknown = weir_protocol::Uuid([9; 16]);
    let commit = OffsetCommitRequest {
        group_id: "ids".into(),
        generation_id_or_member_epoch: -1,
        topics: [id, unknown]
            .into_iter()
            .map(|topic_id| OffsetCommitRequestTopic {
                topic_id,
                partitions: vec![OffsetCommitRequestPartition {
                    partition_index: 1,
                    committed_offset: 33,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let response = bounded(client.send(commit, 10)).await;
    assert_eq!(response.topics[0].topic_id, id);
    assert_eq!(
        commit_errors(&response),
        vec![0, ErrorCode::UNKNOWN_TOPIC_ID.code()]
    );
    // Stored by name: older versions see the commit.
    assert_eq!(
        fetch_offsets(&mut client, "ids", "orders", &[1]).await,
        vec![33]
    );

    let fetch = |topics: Option<Vec<OffsetFetchRequestTopics>>| OffsetFetchRequest {
        groups: vec![OffsetFetchRequestGroup {
            group_id: "ids".into(),
            topics,
            ..Default::default()
        }],
        ..Default::default()
    };
    let all = bounded(client.send(fetch(None), 10)).await;
    let topics = &all.groups[0].topics;
    assert_eq!(topics.len(), 1);
    assert_eq!(topics[0].topic_id, id);
    assert_eq!(topics[0].partitions[0].committed_offset, 33);
    let some = bounded(
        client.send(
            fetch(Some(
                [id, unknown]
                    .into_iter()
                    .map(|topic_id| OffsetFetchRequestTopics {
                        topic_id,
                        partition_indexes: vec![0, 1],
                        ..Default::default()
                    })
                    .collect(),
            )),
            10,
        ),
    )
    .await;
    let topics = &some.groups[0].topics;
    assert_eq!(topics[0].topic_id, id);
    let offsets: Vec<i64> = topics[0]
        .partitions
        .iter()
        .map(|p| p.committed_offset)
        .collect();
    assert_eq!(offsets, vec![-1, 33]);
    assert_eq!(topics[1].topic_id, unknown);
    assert_eq!(
        topics[1].partitions[0].error_code,
        ErrorCode::UNKNOWN_TOPIC_ID.code()
    );
    broker.stop().await;
}
