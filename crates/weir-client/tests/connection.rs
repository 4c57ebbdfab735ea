//! The connection layer end to end: bootstrap, version negotiation, pipelining, metadata
//! refresh, reconnects, and how a dead, silent or hostile broker surfaces as typed errors.
#![expect(clippy::unwrap_used, reason = "tests fail on any error")]

#[allow(unreachable_pub, reason = "support is shared by several test crates")]
mod support;

use bytes::BytesMut;
use std::time::Duration;
use support::{TestBroker, create_topic};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weir_client::{Client, ClientConfig, Error};
use weir_protocol::header::{decode_request, encode_response};
use weir_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use weir_protocol::messages::metadata_response::MetadataResponseBroker;
use weir_protocol::messages::{
    ApiVersionsResponse, CreatePartitionsRequest, ListGroupsRequest, MetadataRequest,
    MetadataResponse, RequestBody, api_versions_response::ApiVersion,
};
use weir_protocol::{ApiKey, ErrorCode};

#[tokio::test]
async fn bootstrap_skips_unreachable_servers() {
    let broker = TestBroker::start(&[]).await;
    // Bind and drop a listener to get a port nothing listens on.
    let dead = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let config = ClientConfig {
        bootstrap_servers: vec![dead.to_string(), broker.addr.to_string()],
        ..broker.config()
    };
    let client = Client::connect(config).await.unwrap();
    let brokers = client.brokers();
    assert_eq!(brokers.len(), 1);
    assert_eq!(brokers[0].port, i32::from(broker.addr.port()));
}

#[tokio::test]
async fn no_reachable_bootstrap_server_is_an_error() {
    let dead = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let err = Client::connect(ClientConfig::new(&dead.to_string()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoBrokerReachable(_)), "{err}");
    let err = Client::connect(ClientConfig::new("nonsense"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err}");
}

#[tokio::test]
async fn typed_requests_use_the_highest_common_version() {
    let broker = TestBroker::start(&[]).await;
    let client = broker.client().await;
    create_topic(&client, "versions", 2).await;
    let leader = client.leader_for("versions", 1).await.unwrap();
    let (metadata, version) = client
        .send_to(
            leader,
            MetadataRequest {
                topics: None,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // Weir serves Metadata 0..=13 and this client speaks 1..=12.
    assert_eq!(version, 12);
    assert!(
        metadata
            .topics
            .iter()
            .any(|t| t.name.as_deref() == Some("versions"))
    );
    let (_, version) = client.send_any(ListGroupsRequest::default()).await.unwrap();
    assert_eq!(version, 4);
    assert_eq!(
        client
            .version_for::<ListGroupsRequest>(leader)
            .await
            .unwrap(),
        4
    );
}

#[tokio::test]
async fn many_requests_in_flight_on_one_connection() {
    let broker = TestBroker::start(&[]).await;
    let client = broker.client().await;
    let id = client.brokers()[0].node_id;
    let requests = (0..200).map(move |i| {
        let client = client.clone();
        async move {
            // Alternate two APIs so a mismatched correlation id would fail to decode.
            if i % 2 == 0 {
                client
                    .send_to(id, MetadataRequest::default())
                    .await
                    .map(|_| ())
            } else {
                client
                    .send_to(id, ListGroupsRequest::default())
                    .await
                    .map(|_| ())
            }
        }
    });
    let results = futures_join_all(requests).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}

async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

#[tokio::test]
async fn metadata_refreshes_after_a_topic_gains_partitions() {
    let broker = TestBroker::start(&[]).await;
    let client = broker.client().await;
    create_topic(&client, "growing", 1).await;
    assert_eq!(client.topic("growing").await.unwrap().partitions.len(), 1);
    let (response, _) = client
        .send_any(CreatePartitionsRequest {
            topics: vec![CreatePartitionsTopic {
                name: "growing".into(),
                count: 3,
                ..Default::default()
            }],
            timeout_ms: 5000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(response.results[0].error_code, 0);
    // Cached until something says it is wrong.
    assert_eq!(client.topic("growing").await.unwrap().partitions.len(), 1);
    assert!(!client.invalidate_metadata_on(ErrorCode::OFFSET_OUT_OF_RANGE));
    assert_eq!(client.topic("growing").await.unwrap().partitions.len(), 1);
    assert!(client.invalidate_metadata_on(ErrorCode::NOT_LEADER_OR_FOLLOWER));
    assert_eq!(client.topic("growing").await.unwrap().partitions.len(), 3);
    assert!(client.leader_for("growing", 2).await.is_ok());
    let err = client.leader_for("growing", 3).await.unwrap_err();
    assert!(matches!(
        err,
        Error::Kafka {
            code: ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
            ..
        }
    ));
}

#[tokio::test]
async fn metadata_older_than_max_age_is_refreshed() {
    let broker = TestBroker::start(&[]).await;
    let config = ClientConfig {
        metadata_max_age: Duration::ZERO,
        ..broker.config()
    };
    let client = Client::connect(config).await.unwrap();
    create_topic(&client, "aging", 1).await;
    client.topic("aging").await.unwrap();
    client
        .send_any(CreatePartitionsRequest {
            topics: vec![CreatePartitionsTopic {
                name: "aging".into(),
                count: 2,
                ..Default::default()
            }],
            timeout_ms: 5000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(client.topic("aging").await.unwrap().partitions.len(), 2);
}

#[tokio::test]
async fn unknown_topics_are_auto_created_or_reported() {
    let broker = TestBroker::start(&[]).await;
    let client = broker.client().await;
    let topic = client.topic("auto-created").await.unwrap();
    assert!(!topic.partitions.is_empty());

    let config = ClientConfig {
        allow_auto_create_topics: false,
        request_timeout: Duration::from_millis(500),
        ..broker.config()
    };
    let client = Client::connect(config).await.unwrap();
    let err = client.topic("never-created").await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Kafka {
                code: ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn find_coordinator_names_a_known_broker() {
    let broker = TestBroker::start(&[]).await;
    let client = broker.client().await;
    let coordinator = client.find_coordinator("some-group").await.unwrap();
    assert!(client.brokers().iter().any(|b| b.node_id == coordinator));
    client
        .send_to(coordinator, ListGroupsRequest::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn reconnects_after_the_broker_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_at(tmp.path(), "127.0.0.1:0", &[]).await;
    let addr = broker.addr;
    let client = broker.client().await;
    let id = client.brokers()[0].node_id;
    client
        .send_to(id, ListGroupsRequest::default())
        .await
        .unwrap();
    broker.stop().await;
    let err = client
        .send_to(id, ListGroupsRequest::default())
        .await
        .unwrap_err();
    assert!(err.is_retriable(), "{err}");
    let _broker = TestBroker::start_at(tmp.path(), &addr.to_string(), &[]).await;
    let mut result = client.send_to(id, ListGroupsRequest::default()).await;
    for _ in 0..50 {
        if result.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        result = client.send_to(id, ListGroupsRequest::default()).await;
    }
    result.unwrap();
}

/// How the fake broker treats requests other than ApiVersions and Metadata.
#[derive(Clone, Copy)]
enum Misbehaviour {
    /// Never answers.
    Silent,
    /// Closes the connection after reading the request.
    Hangup,
    /// Answers with a size prefix far above the client's limit.
    HugeFrame,
}

/// A broker that answers ApiVersions and Metadata correctly, then misbehaves.
async fn fake_broker(misbehaviour: Misbehaviour) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            tokio::spawn(serve_fake(socket, addr.port(), misbehaviour));
        }
    });
    addr.to_string()
}

async fn serve_fake(mut socket: TcpStream, port: u16, misbehaviour: Misbehaviour) {
    loop {
        let mut size = [0u8; 4];
        if socket.read_exact(&mut size).await.is_err() {
            return;
        }
        let mut frame = vec![0u8; i32::from_be_bytes(size) as usize];
        socket.read_exact(&mut frame).await.unwrap();
        let request = decode_request(frame.into()).unwrap();
        let version = request.header.request_api_version;
        let id = request.header.correlation_id;
        let mut out = BytesMut::new();
        match request.body {
            RequestBody::ApiVersions(_) => {
                let keys = [ApiKey::ApiVersions, ApiKey::Metadata, ApiKey::ListGroups];
                let response = ApiVersionsResponse {
                    api_keys: keys
                        .iter()
                        .map(|k| ApiVersion {
                            api_key: *k as i16,
                            min_version: 0,
                            max_version: k.valid_versions().max,
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                };
                encode_response(&mut out, ApiKey::ApiVersions, version, id, &response).unwrap();
            }
            RequestBody::Metadata(_) => {
                let response = MetadataResponse {
                    brokers: vec![MetadataResponseBroker {
                        node_id: 7,
                        host: "127.0.0.1".into(),
                        port: i32::from(port),
                        ..Default::default()
                    }],
                    ..Default::default()
                };
                encode_response(&mut out, ApiKey::Metadata, version, id, &response).unwrap();
            }
            _ => match misbehaviour {
                Misbehaviour::Silent => continue,
                Misbehaviour::Hangup => return,
                Misbehaviour::HugeFrame => {
                    out.extend_from_slice(&(512 * 1024 * 1024i32).to_be_bytes());
                    out.extend_from_slice(&id.to_be_bytes());
                }
            },
        }
        socket.write_all(&out).await.unwrap();
    }
}

fn fake_config(addr: &str) -> ClientConfig {
    ClientConfig {
        request_timeout: Duration::from_millis(300),
        ..ClientConfig::new(addr)
    }
}

#[tokio::test]
async fn a_silent_broker_times_out() {
    let addr = fake_broker(Misbehaviour::Silent).await;
    let client = Client::connect(fake_config(&addr)).await.unwrap();
    let err = client
        .send_to(7, ListGroupsRequest::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    // The connection stays usable after a timeout.
    client.send_to(7, MetadataRequest::default()).await.unwrap();
}

#[tokio::test]
async fn a_hangup_fails_every_request_in_flight() {
    let addr = fake_broker(Misbehaviour::Hangup).await;
    let client = Client::connect(fake_config(&addr)).await.unwrap();
    let (a, b) = tokio::join!(
        client.send_to(7, ListGroupsRequest::default()),
        client.send_to(7, ListGroupsRequest::default()),
    );
    for result in [a, b] {
        let err = result.unwrap_err();
        assert!(matches!(err, Error::Disconnected(_)), "{err}");
    }
}

#[tokio::test]
async fn an_oversized_response_closes_the_connection() {
    let addr = fake_broker(Misbehaviour::HugeFrame).await;
    let client = Client::connect(fake_config(&addr)).await.unwrap();
    let err = client
        .send_to(7, ListGroupsRequest::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Disconnected(_)), "{err}");
    // A new connection is made for the next request.
    client.send_to(7, MetadataRequest::default()).await.unwrap();
}

#[tokio::test]
async fn an_api_the_broker_lacks_is_unsupported() {
    let addr = fake_broker(Misbehaviour::Silent).await;
    let client = Client::connect(fake_config(&addr)).await.unwrap();
    let err = client
        .send_to(7, CreatePartitionsRequest::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnsupportedVersion {
                api: "CreatePartitions",
                ..
            }
        ),
        "{err}"
    );
}
