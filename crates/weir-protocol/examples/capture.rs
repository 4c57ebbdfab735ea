//! A fake single-node broker that records every request frame real Kafka clients send.
//!
//! ```text
//! cargo run -p weir-protocol --example capture -- --listen 127.0.0.1:19092 --out DIR
//! ```
//!
//! Each request frame body (without its 4-byte size prefix) is written to
//! `DIR/<seq>-<ApiName>-v<version>.bin`, and a line `file, api, version, codec` is appended to
//! `DIR/index.tsv` (codec is the compression of a Produce request's first batch, suffixed
//! `-transactional` for a transactional one, `-` for other APIs) so the capture script can keep one frame per API version and codec. The broker answers
//! just enough for producers and group consumers to get through: one broker (node 0), one
//! partition per topic, records kept in memory. Anything it cannot decode is reported loudly on
//! stderr: it doubles as a protocol smoke test. Only std threads and blocking sockets, no async
//! runtime.

use bytes::{Bytes, BytesMut};
use std::collections::{BTreeMap, HashMap};
use std::error::Error;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use weir_protocol::frame::{DEFAULT_MAX_FRAME_SIZE, split_frame};
use weir_protocol::header::{self, DecodedRequest};
use weir_protocol::messages::*;
use weir_protocol::{ApiKey, ErrorCode, Uuid};
use weir_records::RecordBatches;

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

/// The highest version any current client uses, per API (CLIENTS.md); the advertised range is
/// the schema's valid range capped at this. Telemetry (71/72) stays unadvertised: librdkafka
/// would start pushing metrics.
const ADVERTISED: &[(ApiKey, i16)] = &[
    (ApiKey::Produce, 13),
    (ApiKey::Fetch, 18),
    (ApiKey::ListOffsets, 11),
    (ApiKey::Metadata, 13),
    (ApiKey::OffsetCommit, 10),
    (ApiKey::OffsetFetch, 10),
    (ApiKey::FindCoordinator, 6),
    (ApiKey::JoinGroup, 9),
    (ApiKey::Heartbeat, 4),
    (ApiKey::LeaveGroup, 5),
    (ApiKey::SyncGroup, 5),
    (ApiKey::DescribeGroups, 6),
    (ApiKey::ListGroups, 5),
    (ApiKey::ApiVersions, 4),
    (ApiKey::CreateTopics, 7),
    (ApiKey::DeleteTopics, 6),
    (ApiKey::InitProducerId, 6),
    (ApiKey::OffsetForLeaderEpoch, 4),
    (ApiKey::DescribeConfigs, 4),
    (ApiKey::AddPartitionsToTxn, 5),
    (ApiKey::AddOffsetsToTxn, 4),
    (ApiKey::EndTxn, 5),
    (ApiKey::TxnOffsetCommit, 5),
];

#[derive(Debug)]
struct Config {
    listen: SocketAddr,
    out: PathBuf,
}

fn parse_args() -> Result<Config> {
    let mut listen: SocketAddr = "127.0.0.1:19092".parse()?;
    let mut out = PathBuf::from("capture-out");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().ok_or("--listen needs an address")?.parse()?,
            "--out" => out = args.next().ok_or("--out needs a directory")?.into(),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(Config { listen, out })
}

/// One partition's log: batches with their assigned base offsets.
#[derive(Debug, Default)]
struct PartitionLog {
    batches: Vec<(i64, Bytes)>,
    next_offset: i64,
}

#[derive(Debug, Default)]
struct Group {
    generation: i32,
    assignments: HashMap<String, Bytes>,
    offsets: BTreeMap<(String, i32), (i64, Option<String>)>,
}

#[derive(Debug, Default)]
struct State {
    seq: u64,
    /// Topic name → topic id.
    topics: BTreeMap<String, Uuid>,
    logs: HashMap<(String, i32), PartitionLog>,
    groups: HashMap<String, Group>,
    next_member: u64,
    next_producer_id: i64,
}

impl State {
    fn topic(&mut self, name: &str) -> Uuid {
        *self
            .topics
            .entry(name.to_owned())
            .or_insert_with(|| topic_id(name))
    }

    fn topic_name(&self, id: Uuid) -> Option<String> {
        self.topics
            .iter()
            .find(|(_, v)| **v == id)
            .map(|(k, _)| k.clone())
    }

    fn high_watermark(&self, topic: &str, partition: i32) -> i64 {
        self.logs
            .get(&(topic.to_owned(), partition))
            .map_or(0, |l| l.next_offset)
    }
}

/// A stable, non-zero topic id derived from the name (FNV-1a, twice).
fn topic_id(name: &str) -> Uuid {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut bytes = [0u8; 16];
    for (round, chunk) in bytes.chunks_mut(8).enumerate() {
        for b in name.bytes().chain([round as u8 + 1]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        chunk.copy_from_slice(&h.to_be_bytes());
    }
    Uuid(bytes)
}

struct Broker {
    config: Config,
    state: Mutex<State>,
    index: Mutex<File>,
}

impl Broker {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn main() -> Result<()> {
    let config = parse_args()?;
    std::fs::create_dir_all(&config.out)?;
    let index = OpenOptions::new()
        .create(true)
        .append(true)
        .open(config.out.join("index.tsv"))?;
    let listener = TcpListener::bind(config.listen)?;
    eprintln!(
        "capture: listening on {}, writing frames to {}",
        config.listen,
        config.out.display()
    );
    let broker = Arc::new(Broker {
        config,
        state: Mutex::new(State {
            next_producer_id: 1000,
            ..State::default()
        }),
        index: Mutex::new(index),
    });
    for stream in listener.incoming() {
        let stream = stream?;
        let broker = Arc::clone(&broker);
        std::thread::spawn(move || {
            let peer = stream.peer_addr().ok();
            if let Err(e) = serve(&broker, stream) {
                eprintln!("capture: connection {peer:?} ended: {e}");
            }
        });
    }
    Ok(())
}

fn serve(broker: &Broker, mut stream: TcpStream) -> Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        while let Some(frame) = split_frame(&mut buf, DEFAULT_MAX_FRAME_SIZE)? {
            let mut out = BytesMut::new();
            handle_frame(broker, frame, &mut out)?;
            stream.write_all(&out)?;
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}

/// Records one frame and appends its response (if any) to `out`.
fn handle_frame(broker: &Broker, frame: Bytes, out: &mut BytesMut) -> Result<()> {
    let prefix = header::peek_request(&frame)?;
    let name = ApiKey::from_i16(prefix.api_key).map_or("Unknown", ApiKey::name);
    let codec = produce_codec(&frame, prefix.api_key);
    let seq = {
        let mut state = broker.state();
        state.seq += 1;
        state.seq
    };
    let file = format!("{seq:05}-{name}-v{}.bin", prefix.api_version);
    save(&broker.config.out.join(&file), &frame)?;
    {
        let mut index = broker.index.lock().unwrap_or_else(PoisonError::into_inner);
        writeln!(index, "{file}\t{name}\t{}\t{codec}", prefix.api_version)?;
    }

    // Kafka answers an ApiVersions version it does not know with a v0 response carrying
    // UNSUPPORTED_VERSION and its own ApiVersions range, so the client can retry lower.
    if prefix.api_key == ApiKey::ApiVersions as i16
        && !ApiKey::ApiVersions
            .valid_versions()
            .contains(prefix.api_version)
    {
        eprintln!(
            "capture: ApiVersions v{} unsupported, answering v0 with UNSUPPORTED_VERSION",
            prefix.api_version
        );
        let range = ApiKey::ApiVersions.valid_versions();
        let body = ApiVersionsResponse {
            error_code: ErrorCode::UNSUPPORTED_VERSION.0,
            api_keys: vec![api_versions_response::ApiVersion {
                api_key: ApiKey::ApiVersions as i16,
                min_version: range.min,
                max_version: range.max,
                ..Default::default()
            }],
            ..Default::default()
        };
        header::encode_response(out, ApiKey::ApiVersions, 0, prefix.correlation_id, &body)?;
        return Ok(());
    }

    let request = match header::decode_request(frame) {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "capture: !!!!!! DECODE ERROR in {file} ({name} v{}): {e}",
                prefix.api_version
            );
            return Err(e.into());
        }
    };
    let (api_key, version) = (request.api_key, request.header.request_api_version);
    respond(broker, request, out)?;
    check_response(out, api_key, version, &file);
    Ok(())
}

/// Decodes the response just encoded, as a client would: a smoke test of the response side.
fn check_response(out: &BytesMut, api_key: ApiKey, version: i16, file: &str) {
    let mut copy = out.clone();
    match split_frame(&mut copy, DEFAULT_MAX_FRAME_SIZE) {
        Ok(Some(frame)) => {
            if let Err(e) = header::decode_response(frame, api_key, version) {
                eprintln!("capture: !!!!!! response to {file} does not decode: {e}");
            }
        }
        Ok(None) => {} // acks=0 Produce: no response
        Err(e) => eprintln!("capture: !!!!!! response to {file} has a bad frame: {e}"),
    }
}

fn save(path: &Path, frame: &[u8]) -> Result<()> {
    let mut f = File::create(path)?;
    f.write_all(frame)?;
    Ok(())
}

/// The compression of the first batch of a Produce frame, found by decoding it, with
/// `-transactional` appended for a transactional batch.
fn produce_codec(frame: &Bytes, api_key: i16) -> String {
    if api_key != ApiKey::Produce as i16 {
        return "-".into();
    }
    let Ok(DecodedRequest {
        body: RequestBody::Produce(produce),
        ..
    }) = header::decode_request(frame.clone())
    else {
        return "?".into();
    };
    let first = produce
        .topic_data
        .iter()
        .flat_map(|t| &t.partition_data)
        .filter_map(|p| p.records.clone())
        .flat_map(RecordBatches::new)
        .next();
    match first {
        Some(Ok(batch)) => {
            let attributes = batch.attributes();
            let codec = match attributes.compression() {
                Ok(c) => format!("{c:?}").to_lowercase(),
                Err(_) => "unknown".into(),
            };
            if attributes.is_transactional() {
                codec + "-transactional"
            } else {
                codec
            }
        }
        _ => "none".into(),
    }
}

fn respond(broker: &Broker, request: DecodedRequest, out: &mut BytesMut) -> Result<()> {
    let version = request.header.request_api_version;
    let correlation_id = request.header.correlation_id;
    let api_key = request.api_key;
    macro_rules! reply {
        ($body:expr) => {
            header::encode_response(out, api_key, version, correlation_id, &$body)?
        };
    }
    match request.body {
        RequestBody::ApiVersions(_) => reply!(api_versions()),
        RequestBody::Metadata(req) => reply!(metadata(broker, &req, version)),
        RequestBody::InitProducerId(_) => {
            let mut state = broker.state();
            state.next_producer_id += 1;
            reply!(InitProducerIdResponse {
                producer_id: state.next_producer_id,
                producer_epoch: 0,
                ..Default::default()
            })
        }
        RequestBody::Produce(req) => {
            let response = produce(broker, &req);
            // acks=0: the client expects no response at all.
            if req.acks != 0 {
                reply!(response)
            }
        }
        RequestBody::ListOffsets(req) => reply!(list_offsets(broker, &req)),
        RequestBody::Fetch(req) => reply!(fetch(broker, &req)),
        RequestBody::FindCoordinator(req) => reply!(find_coordinator(broker, &req, version)),
        RequestBody::JoinGroup(req) => reply!(join_group(broker, &req, version)),
        RequestBody::SyncGroup(req) => reply!(sync_group(broker, &req)),
        RequestBody::Heartbeat(_) => reply!(HeartbeatResponse::default()),
        RequestBody::LeaveGroup(req) => reply!(LeaveGroupResponse {
            members: req
                .members
                .iter()
                .map(|m| leave_group_response::MemberResponse {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        RequestBody::OffsetCommit(req) => reply!(offset_commit(broker, &req)),
        RequestBody::OffsetFetch(req) => reply!(offset_fetch(broker, &req, version)),
        RequestBody::OffsetForLeaderEpoch(req) => reply!(offset_for_leader_epoch(broker, &req)),
        RequestBody::AddPartitionsToTxn(req) => reply!(add_partitions_to_txn(&req)),
        RequestBody::AddOffsetsToTxn(_) => reply!(AddOffsetsToTxnResponse::default()),
        RequestBody::EndTxn(_) => reply!(EndTxnResponse::default()),
        RequestBody::TxnOffsetCommit(req) => reply!(txn_offset_commit(broker, &req)),
        RequestBody::DescribeGroups(req) => reply!(describe_groups(&req)),
        RequestBody::ListGroups(_) => reply!(list_groups(broker)),
        RequestBody::CreateTopics(req) => reply!(create_topics(broker, &req)),
        RequestBody::DeleteTopics(req) => reply!(delete_topics(broker, &req)),
        RequestBody::DescribeConfigs(req) => reply!(describe_configs(&req)),
        other => {
            eprintln!(
                "capture: no handler for {} v{version}; closing the connection",
                other.api_key().name()
            );
            return Err(format!("unhandled {}", other.api_key().name()).into());
        }
    }
    Ok(())
}

fn api_versions() -> ApiVersionsResponse {
    let api_keys = ADVERTISED
        .iter()
        .map(|&(key, cap)| {
            let valid = key.valid_versions();
            // Kafka 4 still advertises Produce from v0 (librdkafka checks for it) while
            // rejecting v0-2 requests.
            let min = if key == ApiKey::Produce { 0 } else { valid.min };
            api_versions_response::ApiVersion {
                api_key: key as i16,
                min_version: min,
                max_version: valid.max.min(cap),
                ..Default::default()
            }
        })
        .collect();
    ApiVersionsResponse {
        api_keys,
        ..Default::default()
    }
}

fn metadata(broker: &Broker, req: &MetadataRequest, version: i16) -> MetadataResponse {
    use metadata_response::*;
    let mut state = broker.state();
    let names: Vec<String> = match &req.topics {
        Some(topics) => topics
            .iter()
            .filter_map(|t| t.name.clone().or_else(|| state.topic_name(t.topic_id)))
            .collect(),
        None => state.topics.keys().cloned().collect(),
    };
    // Before v1 there is no null: an empty list asks for every topic.
    let names = if version == 0 && names.is_empty() {
        state.topics.keys().cloned().collect()
    } else {
        names
    };
    let topics = names
        .into_iter()
        .map(|name| {
            let id = state.topic(&name);
            MetadataResponseTopic {
                name: Some(name),
                topic_id: if version >= 10 { id } else { Uuid::ZERO },
                partitions: vec![MetadataResponsePartition {
                    partition_index: 0,
                    leader_id: 0,
                    leader_epoch: 0,
                    replica_nodes: vec![0],
                    isr_nodes: vec![0],
                    ..Default::default()
                }],
                ..Default::default()
            }
        })
        .collect();
    MetadataResponse {
        brokers: vec![MetadataResponseBroker {
            node_id: 0,
            host: broker.config.listen.ip().to_string(),
            port: i32::from(broker.config.listen.port()),
            rack: None,
            ..Default::default()
        }],
        cluster_id: Some("weir-capture".into()),
        controller_id: 0,
        topics,
        ..Default::default()
    }
}

fn produce(broker: &Broker, req: &ProduceRequest) -> ProduceResponse {
    use produce_response::*;
    let mut state = broker.state();
    let responses = req
        .topic_data
        .iter()
        .map(|topic| {
            let name = if topic.name.is_empty() {
                state.topic_name(topic.topic_id).unwrap_or_default()
            } else {
                topic.name.clone()
            };
            state.topic(&name);
            let partition_responses = topic
                .partition_data
                .iter()
                .map(|p| {
                    let log = state.logs.entry((name.clone(), p.index)).or_default();
                    let base_offset = log.next_offset;
                    let records = p.records.clone().unwrap_or_default();
                    for batch in RecordBatches::new(records) {
                        match batch {
                            Ok(batch) => {
                                let offset = log.next_offset;
                                let mut bytes = batch.as_bytes().to_vec();
                                if let Err(e) =
                                    weir_records::batch::set_base_offset(&mut bytes, offset)
                                {
                                    eprintln!("capture: cannot rebase batch: {e}");
                                }
                                if let Err(e) = batch.verify_crc() {
                                    eprintln!("capture: !!!!!! produced batch CRC: {e}");
                                }
                                log.next_offset += i64::from(batch.header().last_offset_delta) + 1;
                                log.batches.push((offset, Bytes::from(bytes)));
                            }
                            Err(e) => eprintln!("capture: !!!!!! bad produced batch: {e}"),
                        }
                    }
                    PartitionProduceResponse {
                        index: p.index,
                        base_offset,
                        log_start_offset: 0,
                        ..Default::default()
                    }
                })
                .collect();
            TopicProduceResponse {
                name: topic.name.clone(),
                topic_id: topic.topic_id,
                partition_responses,
                ..Default::default()
            }
        })
        .collect();
    ProduceResponse {
        responses,
        ..Default::default()
    }
}

fn list_offsets(broker: &Broker, req: &ListOffsetsRequest) -> ListOffsetsResponse {
    use list_offsets_response::*;
    let state = broker.state();
    ListOffsetsResponse {
        topics: req
            .topics
            .iter()
            .map(|t| ListOffsetsTopicResponse {
                name: t.name.clone(),
                partitions: t
                    .partitions
                    .iter()
                    .map(|p| {
                        // -1 latest, -2 earliest, -3 max timestamp; a timestamp maps to 0.
                        let offset = match p.timestamp {
                            -1 => state.high_watermark(&t.name, p.partition_index),
                            _ => 0,
                        };
                        ListOffsetsPartitionResponse {
                            partition_index: p.partition_index,
                            timestamp: -1,
                            offset,
                            leader_epoch: 0,
                            ..Default::default()
                        }
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn fetch(broker: &Broker, req: &FetchRequest) -> FetchResponse {
    use fetch_response::*;
    let build = |state: &State| -> (FetchResponse, bool) {
        let mut any = false;
        let responses = req
            .topics
            .iter()
            .map(|t| {
                let name = if t.topic.is_empty() {
                    state.topic_name(t.topic_id).unwrap_or_default()
                } else {
                    t.topic.clone()
                };
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let log = state.logs.get(&(name.clone(), p.partition));
                        let mut records = BytesMut::new();
                        for (base, batch) in log.map(|l| l.batches.as_slice()).unwrap_or_default() {
                            let last = base + i64::from(record_count_hint(batch)) - 1;
                            if last >= p.fetch_offset {
                                records.extend_from_slice(batch);
                            }
                        }
                        any |= !records.is_empty();
                        let hw = log.map_or(0, |l| l.next_offset);
                        PartitionData {
                            partition_index: p.partition,
                            high_watermark: hw,
                            last_stable_offset: hw,
                            log_start_offset: 0,
                            records: Some(records.freeze()),
                            ..Default::default()
                        }
                    })
                    .collect();
                FetchableTopicResponse {
                    topic: t.topic.clone(),
                    topic_id: t.topic_id,
                    partitions,
                    ..Default::default()
                }
            })
            .collect();
        (
            FetchResponse {
                responses,
                ..Default::default()
            },
            any,
        )
    };
    let (response, any) = build(&broker.state());
    if any {
        return response;
    }
    // Nothing to return: wait a little, as a broker would for min_bytes, then look again.
    let wait = u64::try_from(req.max_wait_ms.clamp(0, 200)).unwrap_or(0);
    std::thread::sleep(Duration::from_millis(wait));
    build(&broker.state()).0
}

/// Records in a stored batch: last offset delta + 1, read from the header.
fn record_count_hint(batch: &Bytes) -> i32 {
    weir_records::batch::BatchHeader::parse(batch).map_or(1, |h| h.last_offset_delta + 1)
}

fn find_coordinator(
    broker: &Broker,
    req: &FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let host = broker.config.listen.ip().to_string();
    let port = i32::from(broker.config.listen.port());
    if version >= 4 {
        FindCoordinatorResponse {
            coordinators: req
                .coordinator_keys
                .iter()
                .map(|key| find_coordinator_response::Coordinator {
                    key: key.clone(),
                    node_id: 0,
                    host: host.clone(),
                    port,
                    error_code: 0,
                    error_message: None,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    } else {
        FindCoordinatorResponse {
            error_message: None,
            node_id: 0,
            host,
            port,
            ..Default::default()
        }
    }
}

fn join_group(broker: &Broker, req: &JoinGroupRequest, version: i16) -> JoinGroupResponse {
    let mut state = broker.state();
    let member_id = if req.member_id.is_empty() {
        state.next_member += 1;
        let id = format!("{}-member-{}", req.group_id, state.next_member);
        // KIP-394: from v4 a new member must first learn its id and rejoin with it.
        if version >= 4 {
            return JoinGroupResponse {
                error_code: ErrorCode::MEMBER_ID_REQUIRED.0,
                generation_id: -1,
                member_id: id,
                ..Default::default()
            };
        }
        id
    } else {
        req.member_id.clone()
    };
    let group = state.groups.entry(req.group_id.clone()).or_default();
    group.generation += 1;
    let protocol = req.protocols.first();
    JoinGroupResponse {
        generation_id: group.generation,
        protocol_type: Some(req.protocol_type.clone()),
        protocol_name: protocol.map(|p| p.name.clone()),
        leader: member_id.clone(),
        member_id: member_id.clone(),
        members: vec![join_group_response::JoinGroupResponseMember {
            member_id,
            group_instance_id: req.group_instance_id.clone(),
            metadata: protocol.map(|p| p.metadata.clone()).unwrap_or_default(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn sync_group(broker: &Broker, req: &SyncGroupRequest) -> SyncGroupResponse {
    let mut state = broker.state();
    let group = state.groups.entry(req.group_id.clone()).or_default();
    for a in &req.assignments {
        group
            .assignments
            .insert(a.member_id.clone(), a.assignment.clone());
    }
    SyncGroupResponse {
        protocol_type: req.protocol_type.clone(),
        protocol_name: req.protocol_name.clone(),
        assignment: group
            .assignments
            .get(&req.member_id)
            .cloned()
            .unwrap_or_default(),
        ..Default::default()
    }
}

fn offset_commit(broker: &Broker, req: &OffsetCommitRequest) -> OffsetCommitResponse {
    use offset_commit_response::*;
    let mut state = broker.state();
    let names: Vec<String> = req
        .topics
        .iter()
        .map(|t| {
            if t.name.is_empty() {
                state.topic_name(t.topic_id).unwrap_or_default()
            } else {
                t.name.clone()
            }
        })
        .collect();
    let group = state.groups.entry(req.group_id.clone()).or_default();
    let topics = req
        .topics
        .iter()
        .zip(names)
        .map(|(t, name)| OffsetCommitResponseTopic {
            name: t.name.clone(),
            topic_id: t.topic_id,
            partitions: t
                .partitions
                .iter()
                .map(|p| {
                    group.offsets.insert(
                        (name.clone(), p.partition_index),
                        (p.committed_offset, p.committed_metadata.clone()),
                    );
                    OffsetCommitResponsePartition {
                        partition_index: p.partition_index,
                        error_code: 0,
                        ..Default::default()
                    }
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    OffsetCommitResponse {
        topics,
        ..Default::default()
    }
}

fn offset_fetch(broker: &Broker, req: &OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    use offset_fetch_response::*;
    let state = broker.state();
    let committed = |group: &str, topic: &str, partition: i32| -> (i64, Option<String>) {
        state
            .groups
            .get(group)
            .and_then(|g| g.offsets.get(&(topic.to_owned(), partition)))
            .cloned()
            .unwrap_or((-1, Some(String::new())))
    };
    if version >= 8 {
        let groups = req
            .groups
            .iter()
            .map(|g| {
                let topics = g
                    .topics
                    .iter()
                    .flatten()
                    .map(|t| {
                        let name = if t.name.is_empty() {
                            state.topic_name(t.topic_id).unwrap_or_default()
                        } else {
                            t.name.clone()
                        };
                        OffsetFetchResponseTopics {
                            name: t.name.clone(),
                            topic_id: t.topic_id,
                            partitions: t
                                .partition_indexes
                                .iter()
                                .map(|&p| {
                                    let (offset, metadata) = committed(&g.group_id, &name, p);
                                    OffsetFetchResponsePartitions {
                                        partition_index: p,
                                        committed_offset: offset,
                                        committed_leader_epoch: -1,
                                        metadata,
                                        ..Default::default()
                                    }
                                })
                                .collect(),
                            ..Default::default()
                        }
                    })
                    .collect();
                OffsetFetchResponseGroup {
                    group_id: g.group_id.clone(),
                    topics,
                    ..Default::default()
                }
            })
            .collect();
        OffsetFetchResponse {
            groups,
            ..Default::default()
        }
    } else {
        let topics = req
            .topics
            .iter()
            .flatten()
            .map(|t| OffsetFetchResponseTopic {
                name: t.name.clone(),
                partitions: t
                    .partition_indexes
                    .iter()
                    .map(|&p| {
                        let (offset, metadata) = committed(&req.group_id, &t.name, p);
                        OffsetFetchResponsePartition {
                            partition_index: p,
                            committed_offset: offset,
                            committed_leader_epoch: -1,
                            metadata,
                            ..Default::default()
                        }
                    })
                    .collect(),
                ..Default::default()
            })
            .collect();
        OffsetFetchResponse {
            topics,
            ..Default::default()
        }
    }
}

fn offset_for_leader_epoch(
    broker: &Broker,
    req: &OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    use offset_for_leader_epoch_response::*;
    let state = broker.state();
    OffsetForLeaderEpochResponse {
        topics: req
            .topics
            .iter()
            .map(|t| OffsetForLeaderTopicResult {
                topic: t.topic.clone(),
                partitions: t
                    .partitions
                    .iter()
                    .map(|p| EpochEndOffset {
                        partition: p.partition,
                        leader_epoch: 0,
                        end_offset: state.high_watermark(&t.topic, p.partition),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn create_topics(broker: &Broker, req: &CreateTopicsRequest) -> CreateTopicsResponse {
    let mut state = broker.state();
    CreateTopicsResponse {
        topics: req
            .topics
            .iter()
            .map(|t| create_topics_response::CreatableTopicResult {
                name: t.name.clone(),
                topic_id: state.topic(&t.name),
                error_message: None,
                num_partitions: 1,
                replication_factor: 1,
                configs: Some(Vec::new()),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn delete_topics(broker: &Broker, req: &DeleteTopicsRequest) -> DeleteTopicsResponse {
    let mut state = broker.state();
    // v0-5 name topics in `topic_names`, v6 in `topics` (by name or id).
    let mut names = req.topic_names.clone();
    names.extend(
        req.topics
            .iter()
            .filter_map(|t| t.name.clone().or_else(|| state.topic_name(t.topic_id))),
    );
    let responses = names
        .into_iter()
        .map(|name| {
            let topic_id = state.topics.remove(&name).unwrap_or(Uuid::ZERO);
            state.logs.retain(|(topic, _), _| *topic != name);
            delete_topics_response::DeletableTopicResult {
                name: Some(name),
                topic_id,
                error_message: None,
                ..Default::default()
            }
        })
        .collect();
    DeleteTopicsResponse {
        responses,
        ..Default::default()
    }
}

fn describe_configs(req: &DescribeConfigsRequest) -> DescribeConfigsResponse {
    DescribeConfigsResponse {
        results: req
            .resources
            .iter()
            .map(|r| describe_configs_response::DescribeConfigsResult {
                error_message: None,
                resource_type: r.resource_type,
                resource_name: r.resource_name.clone(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn list_groups(broker: &Broker) -> ListGroupsResponse {
    let state = broker.state();
    let mut groups: Vec<_> = state.groups.keys().cloned().collect();
    groups.sort();
    ListGroupsResponse {
        groups: groups
            .into_iter()
            .map(|group_id| list_groups_response::ListedGroup {
                group_id,
                protocol_type: "consumer".into(),
                group_state: "Empty".into(),
                group_type: "classic".into(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn describe_groups(req: &DescribeGroupsRequest) -> DescribeGroupsResponse {
    DescribeGroupsResponse {
        groups: req
            .groups
            .iter()
            .map(|group_id| describe_groups_response::DescribedGroup {
                error_message: None,
                group_id: group_id.clone(),
                group_state: "Empty".into(),
                protocol_type: "consumer".into(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn add_partitions_to_txn(req: &AddPartitionsToTxnRequest) -> AddPartitionsToTxnResponse {
    use add_partitions_to_txn_response::*;
    let results = |topics: &[add_partitions_to_txn_request::AddPartitionsToTxnTopic]| {
        topics
            .iter()
            .map(|t| AddPartitionsToTxnTopicResult {
                name: t.name.clone(),
                results_by_partition: t
                    .partitions
                    .iter()
                    .map(|&partition_index| AddPartitionsToTxnPartitionResult {
                        partition_index,
                        partition_error_code: 0,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .collect::<Vec<_>>()
    };
    // v0-3 carry one transaction at the top level; v4+ a batch of them.
    AddPartitionsToTxnResponse {
        results_by_topic_v3_and_below: results(&req.v3_and_below_topics),
        results_by_transaction: req
            .transactions
            .iter()
            .map(|t| AddPartitionsToTxnResult {
                transactional_id: t.transactional_id.clone(),
                topic_results: results(&t.topics),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn txn_offset_commit(broker: &Broker, req: &TxnOffsetCommitRequest) -> TxnOffsetCommitResponse {
    use txn_offset_commit_response::*;
    let mut state = broker.state();
    let group = state.groups.entry(req.group_id.clone()).or_default();
    TxnOffsetCommitResponse {
        topics: req
            .topics
            .iter()
            .map(|t| TxnOffsetCommitResponseTopic {
                name: t.name.clone(),
                partitions: t
                    .partitions
                    .iter()
                    .map(|p| {
                        group.offsets.insert(
                            (t.name.clone(), p.partition_index),
                            (p.committed_offset, p.committed_metadata.clone()),
                        );
                        TxnOffsetCommitResponsePartition {
                            partition_index: p.partition_index,
                            error_code: 0,
                            ..Default::default()
                        }
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}
