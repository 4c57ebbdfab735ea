//! Test support: an in-process Weir broker on 127.0.0.1 with a temporary data directory, and
//! helpers to create topics through the client under test.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use weir_broker::{BrokerConfig, Server};
use weir_client::{Client, ClientConfig};
use weir_protocol::ErrorCode;
use weir_protocol::messages::CreateTopicsRequest;
use weir_protocol::messages::create_topics_request::CreatableTopic;

/// A running in-process broker; stops when dropped or on [`TestBroker::stop`].
pub struct TestBroker {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    _tmp: Option<tempfile::TempDir>,
}

impl TestBroker {
    /// Starts a broker with a fresh data directory and extra properties.
    pub async fn start(props: &[(&str, &str)]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let mut broker = Self::start_at(tmp.path(), "127.0.0.1:0", props).await;
        broker._tmp = Some(tmp);
        broker
    }

    /// Starts a broker on `listen` (`host:port`) over the data in `dir`.
    pub async fn start_at(dir: &Path, listen: &str, props: &[(&str, &str)]) -> Self {
        let mut map = std::collections::BTreeMap::new();
        map.insert("listeners".to_string(), format!("PLAINTEXT://{listen}"));
        map.insert("log.dirs".to_string(), dir.display().to_string());
        map.insert("weir.admin.listener".to_string(), "none".to_string());
        map.insert("offsets.topic.num.partitions".to_string(), "4".to_string());
        for (k, v) in props {
            map.insert(k.to_string(), v.to_string());
        }
        let config = BrokerConfig::from_properties(map).unwrap();
        let server = Server::bind(config).await.unwrap();
        let addr = server.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            addr,
            dir: dir.to_path_buf(),
            stop: Some(stop),
            task: Some(task),
            _tmp: None,
        }
    }

    /// Stops the broker and waits until it has shut down.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }

    /// Client settings for this broker with short timeouts, so failures show quickly.
    pub fn config(&self) -> ClientConfig {
        ClientConfig {
            bootstrap_servers: vec![self.addr.to_string()],
            request_timeout: Duration::from_secs(10),
            ..ClientConfig::default()
        }
    }

    /// A client connected to this broker.
    pub async fn client(&self) -> Client {
        Client::connect(self.config()).await.unwrap()
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Creates `name` with `partitions` partitions and waits until every partition has a leader.
pub async fn create_topic(client: &Client, name: &str, partitions: i32) {
    let (response, _) = client
        .send_any(CreateTopicsRequest {
            topics: vec![CreatableTopic {
                name: name.into(),
                num_partitions: partitions,
                replication_factor: -1,
                ..Default::default()
            }],
            timeout_ms: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
    let code = ErrorCode(response.topics[0].error_code);
    assert!(!code.is_error(), "create {name}: {code}");
    for partition in 0..partitions {
        client.leader_for(name, partition).await.unwrap();
    }
}

/// Every record of a partition, read with plain Fetch requests (independent of the consumer).
pub async fn fetch_all(client: &Client, topic: &str, partition: i32) -> Vec<weir_records::Record> {
    use weir_protocol::messages::FetchRequest;
    use weir_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    let leader = client.leader_for(topic, partition).await.unwrap();
    let end = end_offset(client, topic, partition).await;
    let mut records = Vec::new();
    let mut offset = 0;
    while offset < end {
        let (response, _) = client
            .send_to(
                leader,
                FetchRequest {
                    replica_id: -1,
                    max_wait_ms: 100,
                    min_bytes: 1,
                    max_bytes: 64 << 20,
                    session_epoch: -1,
                    topics: vec![FetchTopic {
                        topic: topic.into(),
                        partitions: vec![FetchPartition {
                            partition,
                            fetch_offset: offset,
                            partition_max_bytes: 16 << 20,
                            current_leader_epoch: -1,
                            last_fetched_epoch: -1,
                            log_start_offset: -1,
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let data = &response.responses[0].partitions[0];
        assert_eq!(data.error_code, 0, "fetch {topic}-{partition}");
        let bytes = data.records.clone().unwrap_or_default();
        for batch in weir_records::RecordBatches::new(bytes) {
            let Ok(batch) = batch else { break };
            for record in batch.records().unwrap() {
                let record = record.unwrap();
                if record.offset >= offset {
                    offset = record.offset + 1;
                    records.push(record);
                }
            }
        }
    }
    records
}

/// The log end offset of a partition (ListOffsets latest).
pub async fn end_offset(client: &Client, topic: &str, partition: i32) -> i64 {
    use weir_protocol::messages::ListOffsetsRequest;
    use weir_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let leader = client.leader_for(topic, partition).await.unwrap();
    let (response, _) = client
        .send_to(
            leader,
            ListOffsetsRequest {
                replica_id: -1,
                topics: vec![ListOffsetsTopic {
                    name: topic.into(),
                    partitions: vec![ListOffsetsPartition {
                        partition_index: partition,
                        current_leader_epoch: -1,
                        timestamp: -1,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let p = &response.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.offset
}
