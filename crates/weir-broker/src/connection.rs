//! One client connection.
//!
//! Requests on a connection are handled one at a time, in order, as Kafka does: an idempotent
//! producer pipelines several Produce requests and relies on them being appended in the order
//! sent. Responses are written by a separate task so that writing one response overlaps with
//! handling the next request. A frame larger than `socket.request.max.bytes` or a request that
//! does not decode closes the connection with a log line; other connections are not affected.

use crate::handler::api_versions;
use crate::router::{self, Outcome};
use crate::state::Broker;
use bytes::{Bytes, BytesMut};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};
use weir_protocol::header::{self, HeaderPrefix};
use weir_protocol::{ApiKey, DecodeErrorKind, ErrorCode, frame};

/// Responses waiting to be written before the connection stops reading more requests.
const MAX_QUEUED_RESPONSES: usize = 64;

/// What a handler knows about the request it serves.
#[derive(Debug, Clone)]
pub(crate) struct RequestContext {
    /// The API version the client used; the response is encoded in it.
    pub(crate) api_version: i16,
    /// Echoed in the response header.
    pub(crate) correlation_id: i32,
    /// The client id from the request header.
    pub(crate) client_id: Option<String>,
    /// The client's address.
    pub(crate) peer: SocketAddr,
}

/// Why a connection ended early.
#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error("socket error")]
    Io(#[from] std::io::Error),
    #[error("bad request frame")]
    Decode(#[from] weir_protocol::DecodeError),
    #[error("cannot encode response")]
    Encode(#[from] weir_protocol::EncodeError),
    #[error("unsupported API key {api_key} version {api_version}")]
    Unsupported { api_key: i16, api_version: i16 },
    #[error("idle for longer than connections.max.idle.ms")]
    Idle,
    #[error("response writer stopped")]
    WriterGone,
    #[error("a request without response (acks=0) failed")]
    SilentFailure,
}

/// Serves one connection until the client closes it, an error ends it, or `shutdown` fires.
pub(crate) async fn serve(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let (responses, mut queue) = mpsc::channel::<Bytes>(MAX_QUEUED_RESPONSES);
    let write_task = tokio::spawn(async move {
        while let Some(bytes) = queue.recv().await {
            writer.write_all(&bytes).await?;
        }
        writer.shutdown().await
    });

    broker.metrics.connection_opened();
    let result = read_loop(&broker, &mut reader, peer, &responses, &mut shutdown).await;
    broker.metrics.connection_closed();
    match &result {
        Ok(()) => debug!(%peer, "connection closed"),
        Err(ConnectionError::Idle) => debug!(%peer, "closing idle connection"),
        Err(ConnectionError::Io(e)) => debug!(%peer, error = %e, "connection closed"),
        Err(e) => {
            warn!(%peer, error = %e, cause = ?std::error::Error::source(e), "closing connection")
        }
    }
    // Let queued responses go out (in-flight requests finish) before closing.
    drop(responses);
    let _ = write_task.await;
}

async fn read_loop(
    broker: &Arc<Broker>,
    reader: &mut tokio::net::tcp::OwnedReadHalf,
    peer: SocketAddr,
    responses: &mpsc::Sender<Bytes>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), ConnectionError> {
    let limit = broker.config().socket_request_max_bytes;
    let idle = Duration::from_millis(broker.config().connections_max_idle_ms.max(1));
    let mut buf = BytesMut::with_capacity(16 * 1024);
    loop {
        while let Some(frame) = frame::split_frame(&mut buf, limit)? {
            let mut out = BytesMut::new();
            if handle_frame(broker, frame, peer, &mut out).await? {
                responses
                    .send(out.freeze())
                    .await
                    .map_err(|_| ConnectionError::WriterGone)?;
            }
        }
        if *shutdown.borrow() {
            return Ok(());
        }
        tokio::select! {
            read = tokio::time::timeout(idle, reader.read_buf(&mut buf)) => {
                match read {
                    Err(_) => return Err(ConnectionError::Idle),
                    Ok(Ok(0)) => {
                        if !buf.is_empty() {
                            debug!(%peer, bytes = buf.len(), "connection closed mid-frame");
                        }
                        return Ok(());
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(e.into()),
                }
            }
            _ = shutdown.changed() => return Ok(()),
        }
    }
}

/// Handles one request frame; returns whether `out` holds a response to send.
async fn handle_frame(
    broker: &Arc<Broker>,
    frame: Bytes,
    peer: SocketAddr,
    out: &mut BytesMut,
) -> Result<bool, ConnectionError> {
    let frame_len = frame.len();
    let prefix = header::peek_request(&frame)?;
    let request = match header::decode_request(frame) {
        Ok(request) => request,
        Err(e) => {
            if let DecodeErrorKind::UnsupportedVersion { .. } = e.kind {
                if prefix.api_key == ApiKey::ApiVersions as i16 {
                    unsupported_api_versions(prefix, out)?;
                    return Ok(true);
                }
            }
            return Err(e.into());
        }
    };
    let api_key = request.api_key;
    let version = prefix.api_version;
    if request.trailing_bytes > 0 {
        debug!(%peer, api = api_key.name(), version, bytes = request.trailing_bytes, "ignoring bytes after the request body");
    }
    let served = router::supported(api_key).is_some_and(|r| r.contains(version));
    if !served {
        if api_key == ApiKey::ApiVersions {
            unsupported_api_versions(prefix, out)?;
            return Ok(true);
        }
        return Err(ConnectionError::Unsupported {
            api_key: prefix.api_key,
            api_version: version,
        });
    }
    let ctx = RequestContext {
        api_version: version,
        correlation_id: prefix.correlation_id,
        client_id: request.header.client_id.clone(),
        peer,
    };
    tracing::trace!(
        api = api_key.name(),
        version,
        correlation_id = ctx.correlation_id,
        client_id = ctx.client_id.as_deref().unwrap_or(""),
        peer = %ctx.peer,
        "request"
    );
    let started = std::time::Instant::now();
    let outcome = router::dispatch(broker, &ctx, request.body, out).await?;
    broker
        .metrics
        .request(api_key, frame_len, out.len(), started.elapsed());
    match outcome {
        Outcome::Responded => Ok(true),
        Outcome::NoResponse => Ok(false),
        Outcome::Close => Err(ConnectionError::SilentFailure),
        Outcome::Unsupported => Err(ConnectionError::Unsupported {
            api_key: prefix.api_key,
            api_version: version,
        }),
    }
}

/// A client asked for an ApiVersions version this broker does not know: answer in v0 with
/// UNSUPPORTED_VERSION and the supported versions, so it can retry with one of them.
fn unsupported_api_versions(
    prefix: HeaderPrefix,
    out: &mut BytesMut,
) -> Result<(), ConnectionError> {
    info!(
        version = prefix.api_version,
        "ApiVersions version not supported; answering with v0"
    );
    let response = api_versions::response(ErrorCode::UNSUPPORTED_VERSION);
    header::encode_response(
        out,
        ApiKey::ApiVersions,
        0,
        prefix.correlation_id,
        &response,
    )?;
    Ok(())
}
