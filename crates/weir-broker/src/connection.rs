//! One client connection.
//!
//! Requests on a connection are handled one at a time, in order, as Kafka does: an idempotent
//! producer pipelines several Produce requests and relies on them being appended in the order
//! sent. Responses are written by a separate task so that writing one response overlaps with
//! handling the next request. An acks=all Produce is handled in two parts: its appends, before
//! the next request is read, and its wait for the high watermark, which the writer awaits in
//! order, so the waits of pipelined requests overlap (one fsync or replication round trip can
//! acknowledge many) while every response still goes out in request order. The appends run
//! on the connection's append lane (`append_lane`): in order, on the blocking pool, without
//! holding up the reading of the next request; any other request first waits for the lane. A frame larger than
//! `socket.request.max.bytes` or a request that does not decode closes the connection with a
//! log line; other connections are not affected.
//!
//! Memory a client can make the broker hold is bounded: a request's bytes are read only once
//! `queued.max.request.bytes` has room for it (`request_memory`), into a buffer that grows as
//! they arrive; a request must arrive whole within `weir.request.read.timeout.ms`; and once
//! `weir.queued.max.response.bytes` of responses wait to be written, no further request is
//! read until the client has taken some.

use crate::append_lane::AppendLane;
use crate::handler::{api_versions, produce};
use crate::request_memory::Reservation;
use crate::router::{self, Outcome};
use crate::state::Broker;
use bytes::{Bytes, BytesMut};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};
use weir_protocol::header::{self, HeaderPrefix};
use weir_protocol::messages::{ProduceRequest, RequestBody};
use weir_protocol::{ApiKey, DecodeErrorKind, ErrorCode, frame};

/// Responses waiting to be written (or still being completed) before the connection stops
/// reading more requests.
const MAX_QUEUED_RESPONSES: usize = 64;

/// A response in the writer's queue.
enum Queued {
    /// Encoded and ready to write.
    Ready(Bytes),
    /// Still waiting (an acks=all Produce); `None` if it could not be appended or encoded.
    Pending(Pin<Box<dyn Future<Output = Option<Bytes>> + Send>>),
}

/// What handling a frame produced.
enum Handled {
    /// A response to queue.
    Response(Queued),
    /// Nothing to send (acks=0).
    Nothing,
}

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
    #[error("request not received whole within weir.request.read.timeout.ms ({0:?})")]
    SlowRequest(Duration),
    #[error("frame incomplete after its bytes arrived")]
    FrameIncomplete,
}

/// Responses queued on this connection, in bytes: the reader adds each response it queues,
/// the writer subtracts it once written, and the reader waits while it is at or above
/// `weir.queued.max.response.bytes`.
type QueuedBytes = watch::Sender<usize>;

/// Serves one connection until the client closes it, an error ends it, or `shutdown` fires.
pub(crate) async fn serve(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let (responses, mut queue) = mpsc::channel::<Queued>(MAX_QUEUED_RESPONSES);
    let queued_bytes: Arc<QueuedBytes> = Arc::new(watch::Sender::new(0));
    let write_task = tokio::spawn({
        let queued_bytes = queued_bytes.clone();
        async move {
            let mut writes = ResponseWrites::default();
            while let Some(written) = writes.next(&mut queue).await {
                writer.write_all(&written.bytes).await?;
                drop(written.bytes);
                queued_bytes.send_modify(|q| *q = q.saturating_sub(written.counted));
                if written.last {
                    break;
                }
            }
            writer.shutdown().await
        }
    });

    broker.metrics.connection_opened();
    let result = read_loop(
        &broker,
        &mut reader,
        peer,
        &responses,
        &queued_bytes,
        &mut shutdown,
    )
    .await;
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

/// Responses gathered into one socket write stop growing at this size: small responses (an
/// acks=all Produce answer is about 60 bytes) are copied together, a large one goes alone.
const COALESCED_WRITE_BYTES: usize = 64 * 1024;

/// What the writer sends next: one or more responses in order, in one buffer.
struct Written {
    bytes: Bytes,
    /// Bytes of it counted in [`QueuedBytes`] (responses queued `Ready`).
    counted: usize,
    /// A response after these cannot be sent: the connection stops after this write.
    last: bool,
}

/// Turns the writer's queue into socket writes, in order. When a response is ready, the ones
/// queued behind it that are ready too go in the same write: the acks=all Produce answers
/// that one fsync completes (librdkafka's default keeps many in flight) then cost one
/// `write` instead of one each.
#[derive(Default)]
struct ResponseWrites {
    /// A response taken from the queue that did not go in the last write: the next write
    /// starts with it.
    carried: Option<Queued>,
    /// A response completed while gathering that did not fit in the last write, with the
    /// bytes of it counted in [`QueuedBytes`].
    completed: Option<(Bytes, usize)>,
}

impl ResponseWrites {
    async fn next(&mut self, queue: &mut mpsc::Receiver<Queued>) -> Option<Written> {
        let first = match (self.completed.take(), self.carried.take()) {
            (Some(completed), _) => Ok(completed),
            (None, Some(queued)) => Err(queued),
            (None, None) => Err(queue.recv().await?),
        };
        let (first, counted) = match first {
            Ok(completed) => completed,
            Err(Queued::Ready(bytes)) => {
                let len = bytes.len();
                (bytes, len)
            }
            // A response that cannot be sent: the client must not wait for it in vain, and
            // later responses must not take its place.
            Err(Queued::Pending(response)) => (response.await?, 0),
        };
        let mut written = Written {
            bytes: first,
            counted,
            last: false,
        };
        let mut gathered: Option<BytesMut> = None;
        loop {
            let Ok(queued) = queue.try_recv() else {
                break;
            };
            let (bytes, counted) = match queued {
                Queued::Ready(bytes) => {
                    let len = bytes.len();
                    (bytes, len)
                }
                Queued::Pending(mut response) => {
                    // Polled with this task's waker: if not ready it is carried to the next
                    // write, which awaits it anyway.
                    match std::future::poll_fn(|cx| {
                        std::task::Poll::Ready(response.as_mut().poll(cx))
                    })
                    .await
                    {
                        std::task::Poll::Ready(Some(bytes)) => (bytes, 0),
                        std::task::Poll::Ready(None) => {
                            written.last = true;
                            break;
                        }
                        std::task::Poll::Pending => {
                            self.carried = Some(Queued::Pending(response));
                            break;
                        }
                    }
                }
            };
            let size = written.bytes.len() + gathered.as_ref().map_or(0, BytesMut::len);
            if size + bytes.len() > COALESCED_WRITE_BYTES {
                self.completed = Some((bytes, counted));
                break;
            }
            let buffer = gathered.get_or_insert_with(|| {
                let mut buffer = BytesMut::with_capacity(written.bytes.len() + bytes.len());
                buffer.extend_from_slice(&written.bytes);
                buffer
            });
            buffer.extend_from_slice(&bytes);
            written.counted += counted;
        }
        if let Some(buffer) = gathered {
            written.bytes = buffer.freeze();
        }
        Some(written)
    }
}

/// The read buffer's size between requests; a larger one left by a large request is given back.
const IDLE_BUFFER: usize = 16 * 1024;
/// The read buffer grows at least by this much at a time while a frame arrives.
const MIN_GROWTH: usize = 64 * 1024;

async fn read_loop(
    broker: &Arc<Broker>,
    reader: &mut tokio::net::tcp::OwnedReadHalf,
    peer: SocketAddr,
    responses: &mpsc::Sender<Queued>,
    queued_bytes: &QueuedBytes,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), ConnectionError> {
    let response_cap = broker.config().queued_max_response_bytes;
    let mut queued = queued_bytes.subscribe();
    let mut buf = BytesMut::with_capacity(IDLE_BUFFER);
    let mut lane = AppendLane::new();
    loop {
        // A client that does not read its responses gets no more handled until it does: the
        // broker would otherwise buffer every response it keeps asking for.
        tokio::select! {
            drained = queued.wait_for(|q| *q < response_cap) => {
                drained.map_err(|_| ConnectionError::WriterGone)?;
            }
            _ = shutdown.changed() => return Ok(()),
        }
        if *shutdown.borrow() {
            return Ok(());
        }
        let Some((frame, reservation)) = read_request(broker, reader, &mut buf, shutdown).await?
        else {
            if !buf.is_empty() {
                debug!(%peer, bytes = buf.len(), "connection closed mid-frame");
            }
            return Ok(());
        };
        let handled = handle_frame(broker, frame, peer, &mut lane).await?;
        // Handled: its bytes (the frame, slices of it in the decoded request) are released.
        drop(reservation);
        if let Handled::Response(queued) = handled {
            if let Queued::Ready(bytes) = &queued {
                let len = bytes.len();
                queued_bytes.send_modify(|q| *q += len);
            }
            responses
                .send(queued)
                .await
                .map_err(|_| ConnectionError::WriterGone)?;
        }
        // A large request's buffer is not kept for the connection's lifetime.
        if buf.capacity() > 4 * IDLE_BUFFER && buf.len() <= IDLE_BUFFER {
            let mut smaller = BytesMut::with_capacity(IDLE_BUFFER);
            smaller.extend_from_slice(&buf);
            buf = smaller;
        }
    }
}

/// Reads the next request frame: its size prefix (within `connections.max.idle.ms` when
/// nothing of it has arrived yet), room for it in `queued.max.request.bytes`, and its body
/// (the whole frame within `weir.request.read.timeout.ms` of its first byte, not counting the
/// wait for room). `None` when the client closed the connection or the broker is stopping.
async fn read_request(
    broker: &Arc<Broker>,
    reader: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut BytesMut,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Option<(Bytes, Reservation)>, ConnectionError> {
    let config = broker.config();
    let limit = config.socket_request_max_bytes;
    let idle = Duration::from_millis(config.connections_max_idle_ms.max(1));
    let read_timeout = Duration::from_millis(config.request_read_timeout_ms);
    let mut deadline = (!buf.is_empty()).then(|| Instant::now() + read_timeout);
    while buf.len() < frame::SIZE_PREFIX_LEN {
        let read = async {
            match deadline {
                None => tokio::time::timeout(idle, reader.read_buf(buf))
                    .await
                    .map_err(|_| ConnectionError::Idle),
                Some(at) => tokio::time::timeout_at(at, reader.read_buf(buf))
                    .await
                    .map_err(|_| ConnectionError::SlowRequest(read_timeout)),
            }
        };
        tokio::select! {
            read = read => {
                if read?? == 0 {
                    return Ok(None);
                }
            }
            _ = shutdown.changed() => return Ok(None),
        }
        deadline.get_or_insert_with(|| Instant::now() + read_timeout);
    }
    let mut prefix = [0u8; frame::SIZE_PREFIX_LEN];
    prefix.copy_from_slice(&buf[..frame::SIZE_PREFIX_LEN]);
    let size = frame::check_size(prefix, limit)?;
    let total = frame::SIZE_PREFIX_LEN + size;
    let waiting = Instant::now();
    let reservation = tokio::select! {
        reservation = broker.request_memory.reserve(total) => reservation,
        _ = shutdown.changed() => return Ok(None),
    };
    // Waiting for memory is the broker's doing, not the client's.
    let deadline = deadline.unwrap_or(waiting + read_timeout) + waiting.elapsed();
    while buf.len() < total {
        // Grow as bytes arrive (doubling, never past the frame), not by the size the client
        // announced: a client that announces 100 MiB and sends 10 bytes costs 64 KiB.
        let missing = total - buf.len();
        if buf.capacity() == buf.len() {
            buf.reserve(missing.min(buf.len().max(MIN_GROWTH)));
        }
        tokio::select! {
            read = tokio::time::timeout_at(deadline, reader.read_buf(buf)) => {
                let read = read.map_err(|_| ConnectionError::SlowRequest(read_timeout))?;
                if read? == 0 {
                    return Ok(None);
                }
            }
            _ = shutdown.changed() => return Ok(None),
        }
    }
    let frame = frame::split_frame(buf, limit)?.ok_or(ConnectionError::FrameIncomplete)?;
    Ok(Some((frame, reservation)))
}

/// Handles one request frame.
async fn handle_frame(
    broker: &Arc<Broker>,
    frame: Bytes,
    peer: SocketAddr,
    lane: &mut AppendLane,
) -> Result<Handled, ConnectionError> {
    let mut out = BytesMut::new();
    let out = &mut out;
    let frame_len = frame.len();
    let prefix = header::peek_request(&frame)?;
    let request = match header::decode_request(frame) {
        Ok(request) => request,
        Err(e) => {
            if let DecodeErrorKind::UnsupportedVersion { .. } = e.kind {
                if prefix.api_key == ApiKey::ApiVersions as i16 {
                    unsupported_api_versions(prefix, out)?;
                    return Ok(ready(out));
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
            return Ok(ready(out));
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
    let body = match request.body {
        RequestBody::Produce(produce) if produce.acks == -1 => {
            return produce_acks_all(broker, ctx, *produce, (frame_len, started), lane).await;
        }
        body => body,
    };
    // Handled as if alone on the connection: after every append submitted before it.
    lane.idle().await;
    let outcome = router::dispatch(broker, &ctx, body, out).await?;
    broker
        .metrics
        .request(api_key, frame_len, out.len(), started.elapsed());
    match outcome {
        Outcome::Responded => Ok(ready(out)),
        Outcome::NoResponse => Ok(Handled::Nothing),
        Outcome::Close => Err(ConnectionError::SilentFailure),
        Outcome::Unsupported => Err(ConnectionError::Unsupported {
            api_key: prefix.api_key,
            api_version: version,
        }),
    }
}

fn ready(out: &mut BytesMut) -> Handled {
    Handled::Response(Queued::Ready(std::mem::take(out).freeze()))
}

/// An acks=all Produce: its appends go on the connection's lane (so the next request's
/// appends come after these), and its response completes once the high watermark passes them.
async fn produce_acks_all(
    broker: &Arc<Broker>,
    ctx: RequestContext,
    request: ProduceRequest,
    (frame_len, started): (usize, std::time::Instant),
    lane: &mut AppendLane,
) -> Result<Handled, ConnectionError> {
    if produce::transactional_id(&request).is_some() {
        // KIP-890 verification reads the producer's state on each partition, which earlier
        // batches of this connection may still be about to change.
        lane.idle().await;
    }
    let prepared = produce::prepare(broker, &ctx, request).await;
    let (appended_tx, appended_rx) = tokio::sync::oneshot::channel();
    let task_broker = broker.clone();
    lane.submit(move || {
        let _ = appended_tx.send(prepared.append(&task_broker));
    });
    let broker = broker.clone();
    let peer = ctx.peer;
    let response = async move {
        let appended = match appended_rx.await {
            Ok(appended) => appended,
            Err(_) => {
                warn!(%peer, "a Produce was not appended (the broker is stopping?); closing the connection");
                return None;
            }
        };
        let response = appended.complete(&broker).await;
        let mut out = BytesMut::new();
        if let Err(e) = header::encode_response(
            &mut out,
            ApiKey::Produce,
            ctx.api_version,
            ctx.correlation_id,
            &response,
        ) {
            warn!(%peer, error = %e, "cannot encode a Produce response; closing the connection");
            return None;
        }
        broker
            .metrics
            .request(ApiKey::Produce, frame_len, out.len(), started.elapsed());
        Some(out.freeze())
    };
    Ok(Handled::Response(Queued::Pending(Box::pin(response))))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(bytes: &'static [u8]) -> Queued {
        Queued::Ready(Bytes::from_static(bytes))
    }

    fn pending(answer: tokio::sync::oneshot::Receiver<Option<Bytes>>) -> Queued {
        Queued::Pending(Box::pin(async move { answer.await.ok().flatten() }))
    }

    #[tokio::test]
    async fn ready_responses_behind_a_completed_one_share_its_write_in_order() {
        let (queue, mut received) = mpsc::channel(8);
        let (answer_b, b) = tokio::sync::oneshot::channel();
        let (answer_c, c) = tokio::sync::oneshot::channel();
        answer_b.send(Some(Bytes::from_static(b"b"))).unwrap();
        for queued in [ready(b"a"), pending(b), pending(c), ready(b"d")] {
            assert!(queue.send(queued).await.is_ok());
        }
        let mut writes = ResponseWrites::default();
        let first = writes.next(&mut received).await.unwrap();
        assert_eq!(
            &first.bytes[..],
            b"ab",
            "c is not ready: the write stops before it"
        );
        assert_eq!(
            first.counted, 1,
            "only `Ready` responses were counted when queued"
        );
        assert!(!first.last);

        let second = tokio::spawn(async move { (writes.next(&mut received).await, received) });
        tokio::task::yield_now().await;
        answer_c.send(Some(Bytes::from_static(b"c"))).unwrap();
        let (second, _received) = second.await.unwrap();
        let second = second.unwrap();
        assert_eq!(&second.bytes[..], b"cd");
        assert_eq!(second.counted, 1);
    }

    #[tokio::test]
    async fn a_response_that_cannot_be_sent_ends_the_writes_after_those_before_it() {
        let (queue, mut received) = mpsc::channel(8);
        let (answer, failed) = tokio::sync::oneshot::channel();
        answer.send(None).unwrap();
        for queued in [ready(b"a"), pending(failed), ready(b"never")] {
            assert!(queue.send(queued).await.is_ok());
        }
        let mut writes = ResponseWrites::default();
        let written = writes.next(&mut received).await.unwrap();
        assert_eq!(&written.bytes[..], b"a");
        assert!(written.last, "the writer stops after this write");
    }

    #[tokio::test]
    async fn a_large_response_is_written_alone_and_not_copied() {
        let (queue, mut received) = mpsc::channel(8);
        let large = Bytes::from(vec![7u8; COALESCED_WRITE_BYTES]);
        for queued in [ready(b"a"), Queued::Ready(large.clone()), ready(b"b")] {
            assert!(queue.send(queued).await.is_ok());
        }
        let mut writes = ResponseWrites::default();
        let first = writes.next(&mut received).await.unwrap();
        assert_eq!(&first.bytes[..], b"a");
        let second = writes.next(&mut received).await.unwrap();
        assert_eq!(
            second.bytes.as_ptr(),
            large.as_ptr(),
            "sent as queued, not copied"
        );
        assert_eq!(second.counted, large.len());
        let third = writes.next(&mut received).await.unwrap();
        assert_eq!(&third.bytes[..], b"b");
        drop(queue);
        assert!(writes.next(&mut received).await.is_none());
    }
}
