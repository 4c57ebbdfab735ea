//! Hostile input on the CONTROLLER listener: oversized, short and foreign frames close the
//! connection; malformed Raft messages and controller calls get an answer that refuses them;
//! nothing reaches the metadata, and the node keeps serving.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[expect(
    unreachable_pub,
    reason = "support items are pub for every test binary that includes the module"
)]
mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir_broker::{BrokerConfig, Server};

const RAFT: i16 = 0x7E00;
const CONTROLLER: i16 = 0x7E01;

fn frame(kind: i16, version: i16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&u32::try_from(8 + payload.len()).unwrap().to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&7i32.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Sends `bytes` and returns the answer's payload, or `None` if the node closed the connection.
async fn exchange(address: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut size = [0u8; 4];
    match tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut size)).await {
        Ok(Ok(_)) => {}
        Ok(Err(_)) => return None,
        Err(_) => panic!("the node neither answered nor closed the connection"),
    }
    let mut body = vec![0u8; usize::try_from(u32::from_be_bytes(size)).unwrap()];
    stream.read_exact(&mut body).await.unwrap();
    assert_eq!(i32::from_be_bytes(body[..4].try_into().unwrap()), 7);
    Some(body[4..].to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_on_the_controller_listener_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut props = BTreeMap::new();
    props.insert(
        "listeners".to_string(),
        "PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:0".to_string(),
    );
    props.insert("log.dirs".to_string(), dir.path().display().to_string());
    props.insert("weir.admin.listener".to_string(), "none".to_string());
    props.insert("offsets.topic.num.partitions".to_string(), "1".to_string());
    let server = Server::bind(BrokerConfig::from_properties(props).unwrap())
        .await
        .unwrap();
    let controller = server.controller_addr().expect("a controller listener");
    let client_addr = server.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    // Closed: a size above the limit (checked before anything is buffered), a frame too short
    // for a header, a Kafka request (ApiVersions) and an unknown version.
    let mut huge = (1u32 << 30).to_be_bytes().to_vec();
    huge.extend_from_slice(&[0; 16]);
    assert_eq!(exchange(controller, &huge).await, None);
    assert_eq!(exchange(controller, &[0, 0, 0, 3, 1, 2, 3]).await, None);
    assert_eq!(exchange(controller, &frame(18, 3, &[0; 8])).await, None);
    assert_eq!(exchange(controller, &frame(RAFT, 9, b"x")).await, None);

    // Answered with a refusal: garbage and truncated Raft messages, garbage and unknown
    // controller calls.
    for payload in [
        &b""[..],
        b"\x01",
        b"\x01{\"to\":",
        b"\xff\xff\xff",
        &[0x42; 300],
    ] {
        let answer = exchange(controller, &frame(RAFT, 0, payload)).await;
        assert!(answer.is_some_and(|a| !a.is_empty()), "{payload:?}");
    }
    let answer = exchange(controller, &frame(CONTROLLER, 0, b"{not json"))
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&answer).contains("Failed"));
    let delete = br#"{"DeleteTopic":{"name":"no-such-topic"}}"#;
    let answer = exchange(controller, &frame(CONTROLLER, 0, delete))
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&answer).contains("UnknownTopic"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // The metadata is untouched and the node still works.
    let mut client = support::RawClient::connect(client_addr).await;
    let all = client.send(all_topics(), 12).await;
    assert!(all.topics.is_empty(), "{:?}", all.topics);
    let create = br#"{"CreateTopic":{"topic_id":"0102030405060708090a0b0c0d0e0f10","request":{"name":"made-by-a-peer","num_partitions":2,"replication_factor":1,"assignments":null,"configs":{}},"validate_only":false}}"#;
    let answer = exchange(controller, &frame(CONTROLLER, 0, create))
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&answer).contains("Done"));
    // The caller of a controller request waits for its own image; here the node publishes the
    // change a moment later.
    let mut names = Vec::new();
    for _ in 0..100 {
        let all = client.send(all_topics(), 12).await;
        names = all.topics.iter().filter_map(|t| t.name.clone()).collect();
        if !names.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(names, ["made-by-a-peer"]);

    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

fn all_topics() -> weir_protocol::messages::MetadataRequest {
    weir_protocol::messages::MetadataRequest {
        topics: None,
        ..Default::default()
    }
}
