//! Test support: a broker started in-process on 127.0.0.1:0 with a temporary data directory,
//! and a minimal raw protocol client built on weir-protocol.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::BytesMut;
use std::net::SocketAddr;
use std::path::PathBuf;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use weir_broker::{BrokerConfig, Server};
use weir_protocol::header::{self, decode_response};
use weir_protocol::messages::{RequestBody, RequestHeader, ResponseBody};
use weir_protocol::{Message, Request};

pub mod cluster;

/// A running in-process broker; stops (gracefully) when dropped or on [`TestBroker::stop`].
pub struct TestBroker {
    pub addr: SocketAddr,
    /// The admin HTTP address, when started with `weir.admin.listener` set.
    pub admin_addr: Option<SocketAddr>,
    pub dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    _tmp: Option<tempfile::TempDir>,
}

impl TestBroker {
    /// Starts a broker with a fresh data directory and extra properties.
    pub async fn start(props: &[(&str, &str)]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut broker = Self::start_in(&dir, props).await;
        broker._tmp = Some(tmp);
        broker
    }

    /// Starts a broker on an existing data directory (to test restarts).
    pub async fn start_in(dir: &std::path::Path, props: &[(&str, &str)]) -> Self {
        let mut map = std::collections::BTreeMap::new();
        map.insert(
            "listeners".to_string(),
            "PLAINTEXT://127.0.0.1:0".to_string(),
        );
        map.insert("log.dirs".to_string(), dir.display().to_string());
        map.insert("weir.admin.listener".to_string(), "none".to_string());
        // Creating Kafka's default 50 `__consumer_offsets` partitions costs every test start
        // more than half a second; tests that care set their own.
        map.insert("offsets.topic.num.partitions".to_string(), "4".to_string());
        // Likewise Kafka's default 50 `__transaction_state` partitions.
        map.insert(
            "transaction.state.log.num.partitions".to_string(),
            "4".to_string(),
        );
        for (k, v) in props {
            map.insert(k.to_string(), v.to_string());
        }
        let config = BrokerConfig::from_properties(map).unwrap();
        let server = Server::bind(config).await.unwrap();
        let addr = server.local_addr().unwrap();
        let admin_addr = server.admin_addr();
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
            admin_addr,
            dir: dir.to_path_buf(),
            stop: Some(stop),
            task: Some(task),
            _tmp: None,
        }
    }

    /// Stops the broker and waits until its logs are closed.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }

    /// A new raw client connection.
    pub async fn client(&self) -> RawClient {
        RawClient::connect(self.addr).await
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A minimal Kafka client: one connection, one request at a time.
pub struct RawClient {
    stream: TcpStream,
    correlation_id: i32,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> Self {
        Self {
            stream: TcpStream::connect(addr).await.unwrap(),
            correlation_id: 0,
        }
    }

    /// Sends `request` in `version` and returns the decoded response.
    pub async fn send<R>(&mut self, request: R, version: i16) -> R::Response
    where
        R: Request,
        RequestBody: From<R>,
        ResponseBody: TryInto<R::Response>,
    {
        let body = RequestBody::from(request);
        self.send_body(body, version)
            .await
            .try_into()
            .ok()
            .expect("response of the wrong API")
    }

    /// Sends any request body and returns the response body.
    pub async fn send_body(&mut self, body: RequestBody, version: i16) -> ResponseBody {
        self.correlation_id += 1;
        let api_key = body.api_key();
        let header = RequestHeader {
            request_api_key: api_key as i16,
            request_api_version: version,
            correlation_id: self.correlation_id,
            client_id: Some("weir-test".into()),
            ..RequestHeader::default()
        };
        let mut buf = BytesMut::new();
        header::encode_request(&mut buf, &header, &body).unwrap();
        self.stream.write_all(&buf).await.unwrap();
        let frame = self.read_frame().await.expect("connection closed");
        let (response_header, response) = decode_response(frame, api_key, version).unwrap();
        assert_eq!(response_header.correlation_id, self.correlation_id);
        response
    }

    /// Writes raw bytes (for hostile-input tests).
    pub async fn write_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Reads one response frame body, or `None` when the broker closed the connection.
    pub async fn read_frame(&mut self) -> Option<bytes::Bytes> {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).await.ok()?;
        let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut body).await.ok()?;
        Some(body.into())
    }

    /// Whether the broker closed the connection (reads EOF within a second).
    pub async fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(
                std::time::Duration::from_secs(1),
                self.stream.read(&mut byte)
            )
            .await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

/// Encodes a message, for tests that need raw bytes.
pub fn encode<M: Message>(message: &M, version: i16) -> BytesMut {
    let mut buf = BytesMut::new();
    message.encode(&mut buf, version).unwrap();
    buf
}

/// Creates `topic` through Metadata's auto-creation (the broker's default partition count)
/// and returns its id.
pub async fn auto_create_topic(client: &mut RawClient, topic: &str) -> weir_protocol::Uuid {
    use weir_protocol::messages::MetadataRequest;
    use weir_protocol::messages::metadata_request::MetadataRequestTopic;
    let response = client
        .send(
            MetadataRequest {
                topics: Some(vec![MetadataRequestTopic {
                    name: Some(topic.into()),
                    ..Default::default()
                }]),
                allow_auto_topic_creation: true,
                ..Default::default()
            },
            12,
        )
        .await;
    assert_eq!(response.topics[0].error_code, 0);
    response.topics[0].topic_id
}
