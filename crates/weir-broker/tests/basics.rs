//! ApiVersions and Metadata against an in-process broker, plus the connection rules for bad
//! input.

#[expect(
    unreachable_pub,
    reason = "support items are pub for every test binary that includes the module"
)]
mod support;

use support::TestBroker;
use weir_protocol::messages::metadata_request::MetadataRequestTopic;
use weir_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use weir_protocol::messages::{
    ApiVersionsRequest, DescribeClusterRequest, FindCoordinatorRequest, MetadataRequest,
    ProduceRequest,
};
use weir_protocol::{ApiKey, ErrorCode};
use weir_records::{Record, RecordBatchBuilder};

#[tokio::test]
async fn api_versions_lists_what_the_router_serves() {
    let broker = TestBroker::start(&[]).await;
    let mut client = broker.client().await;
    for version in [0, 3, 4] {
        let response = client.send(ApiVersionsRequest::default(), version).await;
        assert_eq!(response.error_code, 0);
        let metadata = response
            .api_keys
            .iter()
            .find(|k| k.api_key == ApiKey::Metadata as i16)
            .unwrap();
        assert_eq!(metadata.max_version, 13);
    }
    broker.stop().await;
}

#[tokio::test]
async fn metadata_auto_creates_and_topics_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path(), &[("num.partitions", "3")]).await;
    let mut client = broker.client().await;
    let request = MetadataRequest {
        topics: Some(vec![MetadataRequestTopic {
            name: Some("orders".into()),
            ..Default::default()
        }]),
        allow_auto_topic_creation: true,
        ..Default::default()
    };
    let response = client.send(request.clone(), 12).await;
    assert_eq!(response.topics[0].error_code, 0);
    assert_eq!(response.topics[0].partitions.len(), 3);
    let id = response.topics[0].topic_id;
    broker.stop().await;

    let broker = TestBroker::start_in(dir.path(), &[]).await;
    let mut client = broker.client().await;
    let all = MetadataRequest {
        topics: None,
        ..Default::default()
    };
    let mut response = client.send(all, 12).await;
    // Internal topics (`__consumer_offsets`) are listed too, as Kafka does.
    response.topics.retain(|t| !t.is_internal);
    assert_eq!(response.topics.len(), 1);
    assert_eq!(response.topics[0].topic_id, id);
    assert_eq!(response.topics[0].partitions.len(), 3);

    // Invalid names are refused, unknown topics without auto-creation are unknown.
    let bad = MetadataRequest {
        topics: Some(vec![
            MetadataRequestTopic {
                name: Some("bad name".into()),
                ..Default::default()
            },
            MetadataRequestTopic {
                name: Some("missing".into()),
                ..Default::default()
            },
        ]),
        allow_auto_topic_creation: false,
        ..Default::default()
    };
    let response = client.send(bad, 12).await;
    assert_eq!(
        response.topics[0].error_code,
        ErrorCode::INVALID_TOPIC_EXCEPTION.code()
    );
    assert_eq!(
        response.topics[1].error_code,
        ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code()
    );
    broker.stop().await;
}

#[tokio::test]
async fn bad_frames_close_only_their_connection() {
    let broker = TestBroker::start(&[]).await;
    let mut good = broker.client().await;

    // A 2 GiB size prefix is refused before the body is read.
    let mut huge = broker.client().await;
    huge.write_raw(&[0x7f, 0xff, 0xff, 0xff, 0, 0])
        .await
        .unwrap();
    assert!(huge.is_closed().await);

    // An unknown API key closes the connection.
    let mut unknown = broker.client().await;
    unknown
        .write_raw(&[0, 0, 0, 8, 0x7f, 0x00, 0, 0, 0, 0, 0, 1])
        .await
        .unwrap();
    assert!(unknown.is_closed().await);

    // A negative array length inside a Metadata request.
    let mut negative = broker.client().await;
    negative
        .write_raw(&[
            0, 0, 0, 14, 0, 3, 0, 1, 0, 0, 0, 1, 0, 0, 0xff, 0xff, 0xff, 0xf0,
        ])
        .await
        .unwrap();
    assert!(negative.is_closed().await);

    // The first connection still works.
    let response = good.send(ApiVersionsRequest::default(), 3).await;
    assert_eq!(response.error_code, 0);
    broker.stop().await;
}

/// A data directory that fails at start (here one of its partition directories is replaced by
/// a regular file, so opening that log fails) is taken offline with its partitions; the broker
/// starts on the healthy one and keeps serving and creating topics there.
#[tokio::test]
async fn broker_starts_when_one_data_directory_failed() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let dirs = format!("{},{}", a.display(), b.display());
    let props = [("log.dirs", dirs.as_str()), ("num.partitions", "4")];
    let metadata = |name: &str| MetadataRequest {
        topics: Some(vec![MetadataRequestTopic {
            name: Some(name.into()),
            ..Default::default()
        }]),
        allow_auto_topic_creation: true,
        ..Default::default()
    };
    let broker = TestBroker::start_in(&a, &props).await;
    let response = broker.client().await.send(metadata("orders"), 12).await;
    assert_eq!(response.topics[0].error_code, 0);
    broker.stop().await;
    let in_b: Vec<std::path::PathBuf> = std::fs::read_dir(&b)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("orders-")
        })
        .collect();
    assert!(
        !in_b.is_empty(),
        "partitions are spread over both directories"
    );

    std::fs::remove_dir_all(&in_b[0]).unwrap();
    std::fs::write(&in_b[0], b"a failed disk").unwrap();
    let broker = TestBroker::start_in(&a, &props).await;
    let mut client = broker.client().await;
    let response = client.send(metadata("orders"), 12).await;
    assert_eq!(response.topics[0].error_code, 0);
    // The whole failed directory is offline, with every partition it held: those have no
    // leader and their only replica is offline; a produce to one gets KAFKA_STORAGE_ERROR, one
    // to a healthy partition succeeds.
    let offline: Vec<i32> = in_b
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.trim_start_matches("orders-").parse().unwrap()
        })
        .collect();
    for p in &response.topics[0].partitions {
        if offline.contains(&p.partition_index) {
            assert_eq!(p.error_code, ErrorCode::LEADER_NOT_AVAILABLE.code());
            assert_eq!((p.leader_id, p.offline_replicas.as_slice()), (-1, &[0][..]));
        } else {
            assert_eq!((p.error_code, p.leader_id), (0, 0));
        }
    }
    let healthy = (0..4).find(|p| !offline.contains(p)).unwrap();
    for (partition, expected) in [
        (offline[0], ErrorCode::KAFKA_STORAGE_ERROR),
        (healthy, ErrorCode::NONE),
    ] {
        let mut builder = RecordBatchBuilder::new();
        builder.push(Record::new(0, None, Some(b"v".as_slice())));
        let request = ProduceRequest {
            acks: -1,
            timeout_ms: 30_000,
            topic_data: vec![TopicProduceData {
                name: "orders".into(),
                partition_data: vec![PartitionProduceData {
                    index: partition,
                    records: Some(builder.build().unwrap()),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let response = client.send(request, 9).await;
        let code = response.responses[0].partition_responses[0].error_code;
        assert_eq!(code, expected.code(), "produce to partition {partition}");
    }
    let response = client.send(metadata("payments"), 12).await;
    assert_eq!(response.topics[0].error_code, 0);
    assert_eq!(response.topics[0].partitions.len(), 4);
    broker.stop().await;
    assert!(
        a.join("payments-3").is_dir(),
        "new partitions go to the healthy directory"
    );
    // The offline directory's partitions were not recreated in the healthy one.
    for p in &in_b {
        assert!(!a.join(p.file_name().unwrap()).exists(), "{}", p.display());
    }
}

/// The (host, port) a broker hands out in Metadata, FindCoordinator (every version) and
/// DescribeCluster; asserts they all agree.
async fn advertised(broker: &TestBroker) -> (String, i32) {
    let mut client = broker.client().await;
    let mut seen = Vec::new();
    for version in [0, 9, 12] {
        let metadata = client.send(MetadataRequest::default(), version).await;
        assert_eq!(metadata.brokers.len(), 1);
        seen.push((metadata.brokers[0].host.clone(), metadata.brokers[0].port));
    }
    for version in 0..=3 {
        let request = FindCoordinatorRequest {
            key: "g".into(),
            ..Default::default()
        };
        let response = client.send(request, version).await;
        assert_eq!(response.error_code, 0);
        seen.push((response.host, response.port));
    }
    let request = FindCoordinatorRequest {
        coordinator_keys: vec!["g".into()],
        ..Default::default()
    };
    let response = client.send(request, 4).await;
    seen.push((
        response.coordinators[0].host.clone(),
        response.coordinators[0].port,
    ));
    let response = client.send(DescribeClusterRequest::default(), 1).await;
    seen.push((response.brokers[0].host.clone(), response.brokers[0].port));
    let first = seen[0].clone();
    assert!(seen.iter().all(|s| *s == first), "{seen:?}");
    first
}

/// Issue 15: a listener on `localhost` was advertised as `127.0.0.1`, the address it was bound
/// to; Kafka advertises the host exactly as configured (clients verifying TLS host names or
/// comparing broker hosts depend on it).
#[tokio::test]
async fn listeners_are_advertised_exactly_as_configured() {
    let broker = TestBroker::start(&[("listeners", "PLAINTEXT://localhost:0")]).await;
    let port = i32::from(broker.addr.port());
    assert_eq!(advertised(&broker).await, ("localhost".to_string(), port));
    broker.stop().await;

    let broker = TestBroker::start(&[
        ("listeners", "PLAINTEXT://127.0.0.1:0"),
        (
            "advertised.listeners",
            "PLAINTEXT://broker-7.example.com:29092",
        ),
    ])
    .await;
    assert_eq!(
        advertised(&broker).await,
        ("broker-7.example.com".to_string(), 29092)
    );
    broker.stop().await;

    let broker = TestBroker::start(&[]).await;
    let port = i32::from(broker.addr.port());
    assert_eq!(advertised(&broker).await, ("127.0.0.1".to_string(), port));
    broker.stop().await;
}

/// Runs the `weir` binary with `args` and returns its exit code and stderr.
#[expect(
    clippy::unwrap_used,
    reason = "a test helper: failing to run the binary fails the test"
)]
fn run_weir(args: &[&str]) -> (Option<i32>, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A bad value of any property the broker reads stops it at start with exit status 2, also
/// for properties read outside the main config (the transaction coordinator's, the topic
/// defaults), which used to fall back to their defaults silently.
#[test]
fn bad_property_values_exit_with_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let log_dirs = format!("--log.dirs={}", dir.path().display());
    for bad in [
        "--transaction.state.log.num.partitions=lots",
        "--log.cleanup.policy=shred",
        "--fetch.max.bytes=0",
    ] {
        let (status, stderr) = run_weir(&[
            "--listeners=PLAINTEXT://127.0.0.1:0",
            "--weir.admin.listener=none",
            log_dirs.as_str(),
            bad,
        ]);
        let key = bad.trim_start_matches("--").split('=').next().unwrap();
        assert_eq!(status, Some(2), "{bad}: {stderr}");
        assert!(stderr.contains(key), "{bad}: {stderr}");
    }
}

/// Setups that cannot work stop the node at start with exit status 2 and a message naming the
/// problem: a node that is not one of the voters, a voter listed twice, several voters without
/// a CONTROLLER listener, unknown or repeated `process.roles`, a broker-only node that cannot
/// find the controllers or is itself a voter, a controller-only node without a CONTROLLER
/// listener, a controller asked to join a quorum through bootstrap servers (KIP-853), a data
/// directory of another cluster.
#[test]
fn bad_cluster_setups_exit_with_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let log_dirs = format!("--log.dirs={}", dir.path().display());
    let common = [
        "--listeners=PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:0",
        "--weir.admin.listener=none",
        log_dirs.as_str(),
    ];
    let cases: [(&[&str], &str); 9] = [
        (
            &[
                "--node.id=4",
                "--controller.quorum.voters=1@127.0.0.1:1,2@127.0.0.1:2",
            ],
            "not one of the voters",
        ),
        (
            &[
                "--node.id=1",
                "--controller.quorum.voters=1@127.0.0.1:1,1@127.0.0.1:2",
            ],
            "appears twice",
        ),
        (
            &[
                "--node.id=1",
                "--controller.quorum.voters=1@127.0.0.1:1,2@127.0.0.1:2",
                "--listeners=PLAINTEXT://127.0.0.1:0",
            ],
            "CONTROLLER listener",
        ),
        (&["--process.roles=broker,zookeeper"], "unknown role"),
        (&["--process.roles=broker,broker"], "listed twice"),
        (
            &["--process.roles=broker", "--node.id=5"],
            "controller.quorum.bootstrap.servers",
        ),
        (
            &[
                "--process.roles=broker",
                "--node.id=1",
                "--controller.quorum.voters=1@127.0.0.1:1,2@127.0.0.1:2",
            ],
            "must have the controller role",
        ),
        (
            &[
                "--process.roles=controller",
                "--node.id=1",
                "--listeners=PLAINTEXT://127.0.0.1:0",
            ],
            "controller-only node needs a CONTROLLER listener",
        ),
        (
            &[
                "--process.roles=broker,controller",
                "--node.id=2",
                "--controller.quorum.bootstrap.servers=127.0.0.1:1",
            ],
            "KIP-853",
        ),
    ];
    for (args, message) in cases {
        let mut all: Vec<&str> = common.to_vec();
        all.extend_from_slice(args);
        let (code, stderr) = run_weir(&all);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "a refused configuration writes nothing"
    );
}

#[tokio::test]
async fn a_data_directory_of_another_cluster_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path(), &[]).await;
    broker.stop().await;
    let meta = dir.path().join("meta.properties");
    let text = std::fs::read_to_string(&meta).unwrap();
    assert!(text.contains("cluster.id="), "{text}");
    std::fs::write(
        &meta,
        "version=1\ncluster.id=someone-elses-cluster\nnode.id=0\n",
    )
    .unwrap();
    let log_dirs = format!("--log.dirs={}", dir.path().display());
    let (code, stderr) = run_weir(&[
        "--listeners=PLAINTEXT://127.0.0.1:0",
        "--weir.admin.listener=none",
        &log_dirs,
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("someone-elses-cluster"), "{stderr}");
}

/// DescribeQuorum on the single node: it leads its one-voter quorum, the high watermark and its
/// log end offset are past the records written at start; other partitions are unknown.
#[tokio::test]
async fn describe_quorum_answers_for_the_metadata_log() {
    use weir_protocol::messages::DescribeQuorumRequest;
    use weir_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
    let broker = TestBroker::start(&[]).await;
    let mut client = broker.client().await;
    let request = DescribeQuorumRequest {
        topics: vec![
            TopicData {
                topic_name: "__cluster_metadata".into(),
                partitions: vec![PartitionData {
                    partition_index: 0,
                    ..Default::default()
                }],
                ..Default::default()
            },
            TopicData {
                topic_name: "other".into(),
                partitions: vec![PartitionData {
                    partition_index: 0,
                    ..Default::default()
                }],
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let response = client.send(request, 2).await;
    let quorum = &response.topics[0].partitions[0];
    assert_eq!((quorum.error_code, quorum.leader_id), (0, 0));
    assert!(quorum.leader_epoch >= 1, "{quorum:?}");
    assert!(quorum.high_watermark > 1, "{quorum:?}");
    assert_eq!(quorum.current_voters.len(), 1);
    assert_eq!(quorum.current_voters[0].replica_id, 0);
    assert!(quorum.current_voters[0].log_end_offset >= quorum.high_watermark);
    assert_eq!(
        response.topics[1].partitions[0].error_code,
        ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code()
    );
    broker.stop().await;
}

/// The combined `server.properties` Kafka 4 ships (its keys and values; only the ports and the
/// data directory changed): a controller whose only `controller.quorum.bootstrap.servers`
/// entry is its own CONTROLLER listener is a standalone one-voter quorum (what
/// `kafka-storage format --standalone` makes), and the node serves clients on its PLAINTEXT
/// listener while the CONTROLLER entries of `advertised.listeners` are not given to clients.
#[tokio::test]
async fn kafka_4_sample_server_properties_start_a_standalone_node() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let (client, controller) = {
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        (
            a.local_addr().unwrap().port(),
            b.local_addr().unwrap().port(),
        )
    };
    let file = dir.path().join("server.properties");
    std::fs::write(
        &file,
        format!(
            "process.roles=broker,controller\n\
             node.id=1\n\
             controller.quorum.bootstrap.servers=localhost:{controller}\n\
             listeners=PLAINTEXT://localhost:{client},CONTROLLER://localhost:{controller}\n\
             inter.broker.listener.name=PLAINTEXT\n\
             advertised.listeners=PLAINTEXT://localhost:{client},CONTROLLER://localhost:{controller}\n\
             controller.listener.names=CONTROLLER\n\
             listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL\n\
             num.network.threads=3\n\
             num.io.threads=8\n\
             socket.send.buffer.bytes=102400\n\
             socket.receive.buffer.bytes=102400\n\
             socket.request.max.bytes=104857600\n\
             log.dirs={}\n\
             num.partitions=1\n\
             num.recovery.threads.per.data.dir=1\n\
             offsets.topic.replication.factor=1\n\
             share.coordinator.state.topic.replication.factor=1\n\
             share.coordinator.state.topic.min.isr=1\n\
             transaction.state.log.replication.factor=1\n\
             transaction.state.log.min.isr=1\n\
             log.retention.hours=168\n\
             log.segment.bytes=1073741824\n\
             log.retention.check.interval.ms=300000\n\
             weir.admin.listener=none\n\
             # A typo: warned about, with the property it most likely means.\n\
             num.partitons=2\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("--config")
        .arg(&file)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            seen.lock().unwrap().push(line.clone());
            if line.contains("weir broker ready") {
                let _ = ready_tx.send(line.clone());
            }
        }
    });
    let ready = ready_rx.recv_timeout(std::time::Duration::from_secs(30));
    if ready.is_err() {
        let _ = child.kill();
        panic!("the node did not start with Kafka's sample server.properties");
    }
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], client));
    let mut raw = support::RawClient::connect(addr).await;
    let response = raw.send(MetadataRequest::default(), 12).await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(response.brokers.len(), 1, "{response:?}");
    assert_eq!(response.brokers[0].host, "localhost");
    assert_eq!(response.brokers[0].port, i32::from(client));
    // Kafka's own keys draw no warning; the typo does, naming what it most likely means.
    let lines = lines.lock().unwrap();
    let warnings: Vec<&String> = lines.iter().filter(|l| l.contains("WARN")).collect();
    let unknown: Vec<&&String> = warnings
        .iter()
        .filter(|l| l.contains("unknown property"))
        .collect();
    assert_eq!(unknown.len(), 1, "{warnings:#?}");
    assert!(
        unknown[0].contains("num.partitons")
            && unknown[0].contains("did you mean \"num.partitions\""),
        "{}",
        unknown[0]
    );
}
