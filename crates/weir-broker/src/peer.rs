//! The CONTROLLER listener: how Weir nodes talk to each other about metadata.
//!
//! Four kinds of request travel on it, all Weir's own: Raft messages of the metadata quorum
//! ([`RAFT`]), requests to the active controller from brokers on other nodes ([`CONTROLLER`]:
//! registration, heartbeats, topic and config changes, producer ids), the leader's view of
//! the quorum for DescribeQuorum ([`DESCRIBE_QUORUM`]), and broker-only nodes fetching the
//! committed metadata log ([`FETCH_METADATA`]).
//!
//! Framing follows Kafka's so that the same checks apply as on the client listener: a 4-byte
//! size (checked against the limit before anything is buffered), then an 8-byte header of API
//! key, version and correlation id, then the payload. The response is the size, the
//! correlation id and the payload. The API keys are outside Kafka's range; any other request
//! (a Kafka tool pointed at this port, garbage) closes the connection with a log line.
//! Requests on one connection are answered in order.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, info, warn};
use weir_protocol::frame;

/// A Raft message of the metadata quorum.
pub(crate) const RAFT: i16 = 0x7E00;
/// A request to the active controller.
pub(crate) const CONTROLLER: i16 = 0x7E01;
/// This node's view of the metadata quorum, asked of its leader for DescribeQuorum.
pub(crate) const DESCRIBE_QUORUM: i16 = 0x7E02;
/// A broker-only node's fetch of the committed metadata log (`Quorum::serve_fetch`).
pub(crate) const FETCH_METADATA: i16 = 0x7E03;
/// The only version of each.
const VERSION: i16 = 0;
const HEADER_LEN: usize = 8;
/// Snapshots of a large cluster's metadata travel in one message.
const MAX_FRAME: usize = 256 << 20;
/// A peer that does not answer within this is treated as unreachable.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A boxed future.
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Serves the requests that arrive on the CONTROLLER listener.
pub(crate) trait PeerService: Send + Sync + 'static {
    /// Answers one request of kind [`RAFT`], [`CONTROLLER`], [`DESCRIBE_QUORUM`] or
    /// [`FETCH_METADATA`].
    fn serve(&self, kind: i16, payload: Bytes) -> BoxFuture<Bytes>;
}

/// Why a call to a peer failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PeerError {
    /// The peer could not be reached or the connection failed.
    #[error("peer {address}: {source}")]
    Io {
        /// The peer.
        address: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The peer did not answer in time.
    #[error("peer {0} did not answer in time")]
    Timeout(String),
    /// The peer's answer was malformed.
    #[error("peer {0} answered with a malformed frame")]
    Malformed(String),
}

/// Serves the CONTROLLER listener until `stopped`.
pub(crate) async fn serve(
    listener: TcpListener,
    service: Arc<dyn PeerService>,
    mut stopped: watch::Receiver<bool>,
) {
    if let Ok(address) = listener.local_addr() {
        info!(%address, "controller listener ready");
    }
    let mut backoff = crate::descriptors::AcceptBackoff::default();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        backoff.failed("controller", &e).await;
                        continue;
                    }
                };
                backoff.accepted("controller");
                let service = service.clone();
                let stopped = stopped.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve_connection(stream, service, stopped).await {
                        debug!(%peer, error = %e, "controller connection closed");
                    }
                });
            }
            _ = stopped.changed() => return,
        }
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    service: Arc<dyn PeerService>,
    mut stopped: watch::Receiver<bool>,
) -> Result<(), std::io::Error> {
    let _ = stream.set_nodelay(true);
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        let request = match frame::split_frame(&mut buf, MAX_FRAME) {
            Ok(Some(request)) => request,
            Ok(None) => {
                tokio::select! {
                    read = stream.read_buf(&mut buf) => {
                        if read? == 0 {
                            return Ok(());
                        }
                    }
                    _ = stopped.changed() => return Ok(()),
                }
                continue;
            }
            Err(e) => {
                warn!(error = %e, "controller listener: refusing a frame");
                return Ok(());
            }
        };
        let Some((kind, version, correlation_id, payload)) = split_header(request) else {
            warn!("controller listener: a request without a header; closing the connection");
            return Ok(());
        };
        if !matches!(kind, RAFT | CONTROLLER | DESCRIBE_QUORUM | FETCH_METADATA)
            || version != VERSION
        {
            warn!(
                api_key = kind,
                api_version = version,
                "controller listener: not a Weir controller request; closing the connection"
            );
            return Ok(());
        }
        let answer = service.serve(kind, payload).await;
        let mut out = BytesMut::with_capacity(8 + answer.len());
        out.put_u32(u32::try_from(4 + answer.len()).unwrap_or(u32::MAX));
        out.put_i32(correlation_id);
        out.put_slice(&answer);
        stream.write_all(&out).await?;
    }
}

fn split_header(mut request: Bytes) -> Option<(i16, i16, i32, Bytes)> {
    if request.len() < HEADER_LEN {
        return None;
    }
    let kind = request.get_i16();
    let version = request.get_i16();
    let correlation_id = request.get_i32();
    Some((kind, version, correlation_id, request))
}

/// Connections to other nodes' CONTROLLER listeners, one per address, each carrying one call
/// at a time (calls to the same peer wait for each other).
#[derive(Debug, Default)]
pub(crate) struct PeerClient {
    connections: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<TcpStream>>>>>,
}

impl PeerClient {
    /// Sends one request to the node at `address` and returns its answer.
    pub(crate) async fn call(
        &self,
        address: &str,
        kind: i16,
        payload: Bytes,
    ) -> Result<Bytes, PeerError> {
        let slot = self
            .connections
            .lock()
            .entry(address.to_string())
            .or_default()
            .clone();
        let mut connection = slot.lock().await;
        let result = tokio::time::timeout(
            CALL_TIMEOUT,
            exchange(&mut connection, address, kind, payload),
        )
        .await;
        match result {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => {
                *connection = None;
                Err(e)
            }
            Err(_) => {
                *connection = None;
                Err(PeerError::Timeout(address.to_string()))
            }
        }
    }
}

async fn exchange(
    connection: &mut Option<TcpStream>,
    address: &str,
    kind: i16,
    payload: Bytes,
) -> Result<Bytes, PeerError> {
    let io = |source| PeerError::Io {
        address: address.to_string(),
        source,
    };
    if connection.is_none() {
        let stream = TcpStream::connect(address).await.map_err(io)?;
        let _ = stream.set_nodelay(true);
        *connection = Some(stream);
    }
    let Some(stream) = connection.as_mut() else {
        return Err(PeerError::Malformed(address.to_string()));
    };
    // One call at a time per connection: the correlation id only guards against a stale answer.
    let correlation_id = 1;
    let mut out = BytesMut::with_capacity(4 + HEADER_LEN + payload.len());
    out.put_u32(u32::try_from(HEADER_LEN + payload.len()).unwrap_or(u32::MAX));
    out.put_i16(kind);
    out.put_i16(VERSION);
    out.put_i32(correlation_id);
    out.put_slice(&payload);
    stream.write_all(&out).await.map_err(io)?;
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        match frame::split_frame(&mut buf, MAX_FRAME) {
            Ok(Some(mut response)) => {
                if response.len() < 4 || response.get_i32() != correlation_id {
                    return Err(PeerError::Malformed(address.to_string()));
                }
                return Ok(response);
            }
            Ok(None) => {
                if stream.read_buf(&mut buf).await.map_err(io)? == 0 {
                    return Err(io(std::io::ErrorKind::UnexpectedEof.into()));
                }
            }
            Err(_) => return Err(PeerError::Malformed(address.to_string())),
        }
    }
}
