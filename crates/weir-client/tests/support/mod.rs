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
