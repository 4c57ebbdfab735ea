//! One pipelined connection to one broker: framing, correlation ids, API versions.
//!
//! A caller encodes its request with a fresh correlation id, registers a waiter for that id and
//! hands the frame to the writer task; the reader task matches each response frame to its
//! waiter by correlation id, so any number of requests can be in flight at once. Responses are
//! decoded by the caller, which knows the API and version. When the socket fails, every waiter
//! gets [`Error::Disconnected`] and the connection refuses new requests.

use crate::error::{Error, Result};
use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use weir_protocol::frame::{split_frame, write_frame};
use weir_protocol::header::{request_header_version, response_header_version};
use weir_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse, RequestHeader};
use weir_protocol::{ApiKey, ErrorCode, Message, Request, VersionRange};

/// The versions of each API this client speaks. Upper bounds stop below versions whose
/// semantics the client does not implement: Produce and Fetch v13 and DeleteTopics v6 address
/// topics by id, FindCoordinator v4 and OffsetFetch v8 batch several keys in another shape,
/// ListGroups v5 filters by group type, InitProducerId v5 and DescribeCluster v2 belong to
/// features (transactions v2, controller endpoints) the client does not use. The transactional
/// APIs stop where the Java 3.x client does (AddPartitionsToTxn v3, AddOffsetsToTxn, EndTxn and
/// TxnOffsetCommit v3): later versions belong to transaction version 2, whose implicit adds the
/// client does not use.
pub(crate) const CLIENT_VERSIONS: &[(ApiKey, VersionRange)] = &[
    (ApiKey::Produce, VersionRange { min: 3, max: 12 }),
    (ApiKey::Fetch, VersionRange { min: 4, max: 12 }),
    (ApiKey::ListOffsets, VersionRange { min: 1, max: 8 }),
    (ApiKey::Metadata, VersionRange { min: 1, max: 12 }),
    (ApiKey::OffsetCommit, VersionRange { min: 2, max: 8 }),
    (ApiKey::OffsetFetch, VersionRange { min: 1, max: 7 }),
    (ApiKey::FindCoordinator, VersionRange { min: 0, max: 3 }),
    (ApiKey::JoinGroup, VersionRange { min: 0, max: 8 }),
    (ApiKey::Heartbeat, VersionRange { min: 0, max: 4 }),
    (ApiKey::LeaveGroup, VersionRange { min: 0, max: 5 }),
    (ApiKey::SyncGroup, VersionRange { min: 0, max: 5 }),
    (ApiKey::DescribeGroups, VersionRange { min: 0, max: 5 }),
    (ApiKey::ListGroups, VersionRange { min: 0, max: 4 }),
    (ApiKey::ApiVersions, VersionRange { min: 0, max: 3 }),
    (ApiKey::CreateTopics, VersionRange { min: 2, max: 7 }),
    (ApiKey::DeleteTopics, VersionRange { min: 1, max: 5 }),
    (ApiKey::DeleteRecords, VersionRange { min: 0, max: 2 }),
    (ApiKey::InitProducerId, VersionRange { min: 0, max: 4 }),
    (
        ApiKey::OffsetForLeaderEpoch,
        VersionRange { min: 2, max: 4 },
    ),
    (ApiKey::DescribeConfigs, VersionRange { min: 1, max: 4 }),
    (ApiKey::AlterConfigs, VersionRange { min: 0, max: 2 }),
    (ApiKey::CreatePartitions, VersionRange { min: 0, max: 3 }),
    (ApiKey::DeleteGroups, VersionRange { min: 0, max: 2 }),
    (
        ApiKey::IncrementalAlterConfigs,
        VersionRange { min: 0, max: 1 },
    ),
    (ApiKey::OffsetDelete, VersionRange { min: 0, max: 0 }),
    (ApiKey::DescribeCluster, VersionRange { min: 0, max: 1 }),
    (ApiKey::AddPartitionsToTxn, VersionRange { min: 0, max: 3 }),
    (ApiKey::AddOffsetsToTxn, VersionRange { min: 0, max: 3 }),
    (ApiKey::EndTxn, VersionRange { min: 0, max: 3 }),
    (ApiKey::TxnOffsetCommit, VersionRange { min: 0, max: 3 }),
];

/// The range this client speaks for `api_key`, if it speaks it at all.
pub(crate) fn client_versions(api_key: ApiKey) -> Option<VersionRange> {
    CLIENT_VERSIONS
        .iter()
        .find(|(key, _)| *key == api_key)
        .map(|(_, range)| *range)
}

/// Settings a connection needs from the client configuration.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionOptions {
    pub(crate) client_id: String,
    pub(crate) request_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) max_response_size: usize,
}

/// Waiters for responses, and whether the connection is gone (checked under the same lock so
/// no waiter is registered after the reader has failed the others).
#[derive(Debug, Default)]
struct InFlight {
    waiters: HashMap<i32, oneshot::Sender<Bytes>>,
    closed: bool,
}

/// A live connection to one broker.
#[derive(Debug)]
pub(crate) struct Connection {
    addr: String,
    options: ConnectionOptions,
    next_correlation_id: AtomicI32,
    in_flight: Arc<Mutex<InFlight>>,
    writer: mpsc::UnboundedSender<Bytes>,
    /// Negotiated version per API key (indexed by key); -1 where there is no common version.
    versions: Vec<i16>,
}

impl Connection {
    /// Connects to `addr` and negotiates API versions.
    pub(crate) async fn connect(addr: &str, options: ConnectionOptions) -> Result<Arc<Self>> {
        let stream = tokio::time::timeout(options.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| Error::Timeout(options.connect_timeout))?
            .map_err(|source| Error::Io {
                addr: addr.to_string(),
                source,
            })?;
        // Requests are small and latency-bound; batching happens above the socket.
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let in_flight = Arc::new(Mutex::new(InFlight::default()));
        let (writer, outgoing) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(write, outgoing, in_flight.clone()));
        tokio::spawn(read_loop(
            read,
            in_flight.clone(),
            options.max_response_size,
            addr.to_string(),
        ));
        let mut connection = Self {
            addr: addr.to_string(),
            options,
            next_correlation_id: AtomicI32::new(0),
            in_flight,
            writer,
            versions: Vec::new(),
        };
        connection.versions = connection.negotiate().await?;
        Ok(Arc::new(connection))
    }

    /// Whether the socket has failed or closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.in_flight.lock().closed || self.writer.is_closed()
    }

    /// The negotiated version of `api_key`.
    pub(crate) fn version(&self, api_key: ApiKey) -> Result<i16> {
        match self.versions.get(api_key as usize) {
            Some(&v) if v >= 0 => Ok(v),
            _ => {
                let range = client_versions(api_key).unwrap_or(VersionRange { min: 0, max: -1 });
                Err(Error::UnsupportedVersion {
                    api: api_key.name(),
                    min: range.min,
                    max: range.max,
                })
            }
        }
    }

    /// Sends `request` at the negotiated version and returns the response with that version.
    pub(crate) async fn send<R: Request>(&self, request: &R) -> Result<(R::Response, i16)> {
        let version = self.version(R::API_KEY)?;
        let frame = self.request_at(request, version).await?;
        Ok((self.decode::<R>(frame, version)?, version))
    }

    fn encode<R: Request>(&self, request: &R, version: i16) -> Result<(i32, Bytes)> {
        let correlation_id = self
            .next_correlation_id
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(1);
        let header = RequestHeader {
            request_api_key: R::API_KEY as i16,
            request_api_version: version,
            correlation_id,
            client_id: Some(self.options.client_id.clone()),
            ..RequestHeader::default()
        };
        let mut buf = BytesMut::new();
        write_frame(&mut buf, |buf| {
            header.encode(buf, request_header_version(R::API_KEY, version))?;
            request.encode(buf, version)
        })?;
        Ok((correlation_id, buf.freeze()))
    }

    /// Sends `request` in `version` and waits for the response frame (header included).
    async fn request_at<R: Request>(&self, request: &R, version: i16) -> Result<Bytes> {
        let (correlation_id, rx) = self.start(request, version)?;
        self.wait(correlation_id, rx).await
    }

    /// Queues `request` for writing and registers a waiter for its response. The frame is
    /// queued before this returns, so requests started one after another are written (and, by
    /// Kafka's rules, handled) in that order.
    fn start<R: Request>(
        &self,
        request: &R,
        version: i16,
    ) -> Result<(i32, oneshot::Receiver<Bytes>)> {
        let (correlation_id, frame) = self.encode(request, version)?;
        let (tx, rx) = oneshot::channel();
        {
            let mut in_flight = self.in_flight.lock();
            if in_flight.closed {
                return Err(Error::Disconnected(self.addr.clone()));
            }
            in_flight.waiters.insert(correlation_id, tx);
        }
        if self.writer.send(frame).is_err() {
            self.in_flight.lock().waiters.remove(&correlation_id);
            return Err(Error::Disconnected(self.addr.clone()));
        }
        Ok((correlation_id, rx))
    }

    /// Waits for the response to the request `correlation_id`, up to the request timeout.
    async fn wait(&self, correlation_id: i32, rx: oneshot::Receiver<Bytes>) -> Result<Bytes> {
        match tokio::time::timeout(self.options.request_timeout, rx).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(_)) => Err(Error::Disconnected(self.addr.clone())),
            Err(_) => {
                // A late response finds no waiter and is dropped by the reader.
                self.in_flight.lock().waiters.remove(&correlation_id);
                Err(Error::Timeout(self.options.request_timeout))
            }
        }
    }

    /// Queues `request` at the negotiated version now and returns that version and a future
    /// for the response: callers that need requests written in order (an idempotent producer
    /// pipelining Produce requests) start them one after another and await them later.
    pub(crate) fn dispatch<R: Request>(
        self: &Arc<Self>,
        request: &R,
    ) -> Result<(
        i16,
        impl std::future::Future<Output = Result<R::Response>> + Send + 'static,
    )> {
        let version = self.version(R::API_KEY)?;
        let (correlation_id, rx) = self.start(request, version)?;
        let connection = self.clone();
        Ok((version, async move {
            let frame = connection.wait(correlation_id, rx).await?;
            connection.decode::<R>(frame, version)
        }))
    }

    /// Queues a request the broker does not answer (Produce with acks=0).
    pub(crate) fn dispatch_no_response<R: Request>(&self, request: &R) -> Result<i16> {
        let version = self.version(R::API_KEY)?;
        let (_, frame) = self.encode(request, version)?;
        if self.in_flight.lock().closed {
            return Err(Error::Disconnected(self.addr.clone()));
        }
        self.writer
            .send(frame)
            .map_err(|_| Error::Disconnected(self.addr.clone()))?;
        Ok(version)
    }

    fn decode<R: Request>(&self, mut frame: Bytes, version: i16) -> Result<R::Response> {
        let decode_error = |source| Error::Decode {
            addr: self.addr.clone(),
            source,
        };
        weir_protocol::messages::ResponseHeader::decode(
            &mut frame,
            response_header_version(R::API_KEY, version),
        )
        .map_err(decode_error)?;
        <R::Response as Message>::decode_exact(frame, version).map_err(decode_error)
    }

    /// Asks the broker for its versions and picks the highest common one per API. A broker
    /// that does not know our ApiVersions version answers in v0 with UNSUPPORTED_VERSION and
    /// its own range, and we ask again in the highest version it speaks.
    async fn negotiate(&self) -> Result<Vec<i16>> {
        let ours = client_versions(ApiKey::ApiVersions).unwrap_or(VersionRange { min: 0, max: 0 });
        let request = ApiVersionsRequest {
            client_software_name: "weir-client".into(),
            client_software_version: env!("CARGO_PKG_VERSION").into(),
            ..ApiVersionsRequest::default()
        };
        let mut version = ours.max;
        for _ in 0..2 {
            let frame = self.request_at(&request, version).await?;
            let response = match self.decode::<ApiVersionsRequest>(frame.clone(), version) {
                Ok(response) => response,
                Err(err) => match self.decode::<ApiVersionsRequest>(frame, 0) {
                    Ok(response) => response,
                    Err(_) => return Err(err),
                },
            };
            let code = ErrorCode(response.error_code);
            if code == ErrorCode::UNSUPPORTED_VERSION {
                let theirs = broker_range(&response, ApiKey::ApiVersions)
                    .filter(|r| r.max < version && r.max >= ours.min)
                    .ok_or(Error::UnsupportedVersion {
                        api: "ApiVersions",
                        min: ours.min,
                        max: ours.max,
                    })?;
                version = theirs.max;
                continue;
            }
            if code.is_error() {
                return Err(Error::kafka(code));
            }
            return Ok(negotiated_versions(&response));
        }
        Err(Error::UnsupportedVersion {
            api: "ApiVersions",
            min: ours.min,
            max: ours.max,
        })
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Dropping the writer channel ends the writer task, which shuts the socket down and so
        // ends the reader.
        self.in_flight.lock().closed = true;
    }
}

fn broker_range(response: &ApiVersionsResponse, api_key: ApiKey) -> Option<VersionRange> {
    response
        .api_keys
        .iter()
        .find(|k| k.api_key == api_key as i16)
        .map(|k| VersionRange {
            min: k.min_version,
            max: k.max_version,
        })
}

/// The highest common version per API key, indexed by key; -1 where there is none.
fn negotiated_versions(response: &ApiVersionsResponse) -> Vec<i16> {
    let len = CLIENT_VERSIONS
        .iter()
        .map(|(key, _)| *key as usize + 1)
        .max()
        .unwrap_or(0);
    let mut versions = vec![-1; len];
    for (key, ours) in CLIENT_VERSIONS {
        if let (Some(theirs), Some(slot)) = (
            broker_range(response, *key),
            versions.get_mut(*key as usize),
        ) {
            let max = ours.max.min(theirs.max);
            if max >= ours.min.max(theirs.min) {
                *slot = max;
            }
        }
    }
    versions
}

/// Writes queued frames, coalescing whatever is queued into one write.
async fn write_loop(
    mut socket: OwnedWriteHalf,
    mut outgoing: mpsc::UnboundedReceiver<Bytes>,
    in_flight: Arc<Mutex<InFlight>>,
) {
    const COALESCE_LIMIT: usize = 256 * 1024;
    let mut buf = BytesMut::new();
    while let Some(frame) = outgoing.recv().await {
        let result = if frame.len() >= COALESCE_LIMIT {
            socket.write_all(&frame).await
        } else {
            buf.extend_from_slice(&frame);
            while buf.len() < COALESCE_LIMIT {
                match outgoing.try_recv() {
                    Ok(frame) => buf.extend_from_slice(&frame),
                    Err(_) => break,
                }
            }
            let result = socket.write_all(&buf).await;
            buf.clear();
            result
        };
        if result.is_err() {
            break;
        }
    }
    fail_all(&in_flight);
    let _ = socket.shutdown().await;
}

/// Reads response frames and hands each to the waiter registered for its correlation id.
async fn read_loop(
    mut socket: OwnedReadHalf,
    in_flight: Arc<Mutex<InFlight>>,
    max_response_size: usize,
    addr: String,
) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    'read: loop {
        loop {
            match split_frame(&mut buf, max_response_size) {
                Ok(Some(frame)) => {
                    let Some(id) = frame.first_chunk::<4>().map(|b| i32::from_be_bytes(*b)) else {
                        tracing::warn!(%addr, "response frame without a header; closing");
                        break 'read;
                    };
                    let waiter = in_flight.lock().waiters.remove(&id);
                    match waiter {
                        Some(waiter) => {
                            let _ = waiter.send(frame);
                        }
                        None => tracing::debug!(%addr, id, "response nobody waits for"),
                    }
                }
                Ok(None) => break,
                Err(err) => {
                    tracing::warn!(%addr, %err, "bad response frame; closing");
                    break 'read;
                }
            }
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
        match socket.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    fail_all(&in_flight);
}

/// Marks the connection closed; dropping the waiters tells each caller it was disconnected.
fn fail_all(in_flight: &Mutex<InFlight>) {
    let waiters = {
        let mut in_flight = in_flight.lock();
        in_flight.closed = true;
        std::mem::take(&mut in_flight.waiters)
    };
    drop(waiters);
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_protocol::messages::api_versions_response::ApiVersion;

    #[test]
    fn negotiation_picks_the_highest_common_version() {
        let response = ApiVersionsResponse {
            api_keys: vec![
                ApiVersion {
                    api_key: ApiKey::Produce as i16,
                    min_version: 0,
                    max_version: 13,
                    ..ApiVersion::default()
                },
                ApiVersion {
                    api_key: ApiKey::Fetch as i16,
                    min_version: 0,
                    max_version: 7,
                    ..ApiVersion::default()
                },
                // No overlap with our 1..=12.
                ApiVersion {
                    api_key: ApiKey::Metadata as i16,
                    min_version: 13,
                    max_version: 20,
                    ..ApiVersion::default()
                },
            ],
            ..ApiVersionsResponse::default()
        };
        let versions = negotiated_versions(&response);
        assert_eq!(versions[ApiKey::Produce as usize], 12);
        assert_eq!(versions[ApiKey::Fetch as usize], 7);
        assert_eq!(versions[ApiKey::Metadata as usize], -1);
        assert_eq!(versions[ApiKey::JoinGroup as usize], -1);
    }

    #[test]
    fn client_ranges_are_within_the_schemas() {
        for (key, range) in CLIENT_VERSIONS {
            let schema = key.valid_versions();
            assert!(
                schema.contains(range.min) && schema.contains(range.max),
                "{key:?}"
            );
        }
    }
}
