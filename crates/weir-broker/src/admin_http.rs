//! The admin HTTP port (`weir.admin.listener`): `GET /health` and `GET /metrics`.
//!
//! HTTP/1.1 through hyper's server connection, one request per connection (keep-alive off):
//! scrapers and health checks need nothing more. The accept loop is ours rather than a
//! framework's so that it shares the client listener's back-off when descriptors run out
//! ([`AcceptBackoff`](crate::descriptors::AcceptBackoff)) and refuses connections beyond
//! [`MAX_CONNECTIONS`]. hyper answers what it cannot parse with a 4xx and closes the connection.

use crate::metrics;
use crate::state::Broker;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::debug;

/// Largest request head (request line and headers) accepted; hyper answers a larger one with
/// 431. 8 KiB is also the smallest read buffer hyper allows.
const MAX_HEAD_BYTES: usize = 8 * 1024;

/// How long a client may take to send its request head (hyper then closes the connection).
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one connection may last in all: head, handling and reading the response.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// How long connections in flight get to finish their response when the broker stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Admin connections served at once; more are refused (scrapers need one or two).
const MAX_CONNECTIONS: usize = 64;

/// Serves the admin port until `stopped` turns true, then lets the connections in flight
/// finish their response (for at most [`SHUTDOWN_GRACE`]) and ends the rest, so that no task
/// holds the broker when the server shuts down.
pub(crate) async fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.keep_alive(false)
        .title_case_headers(true)
        .auto_date_header(false)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_header_size(MAX_HEAD_BYTES)
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT);
    let mut connections = JoinSet::new();
    let mut backoff = crate::descriptors::AcceptBackoff::default();
    loop {
        if *stopped.borrow() {
            break;
        }
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        backoff.failed("admin", &e).await;
                        continue;
                    }
                };
                backoff.accepted("admin");
                if connections.len() >= MAX_CONNECTIONS {
                    debug!(%peer, "too many admin connections; refusing");
                    continue;
                }
                let broker = broker.clone();
                let http = http.clone();
                let stopped = stopped.clone();
                connections.spawn(async move {
                    if let Err(e) = handle(&http, stream, broker, stopped).await {
                        debug!(%peer, error = %e, "admin connection ended");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = stopped.changed() => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    connections.shutdown().await;
}

/// Serves one connection; on `stopped`, hyper finishes the response in progress (if any) and
/// closes it.
async fn handle(
    http: &hyper::server::conn::http1::Builder,
    stream: TcpStream,
    broker: Arc<Broker>,
    mut stopped: watch::Receiver<bool>,
) -> Result<(), Error> {
    let service = hyper::service::service_fn(move |request| {
        let response = route(&request, &broker);
        async move { Ok::<_, Infallible>(response) }
    });
    let connection = http.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let serve = async {
        tokio::select! {
            result = connection.as_mut() => return result,
            _ = stopped.wait_for(|stopped| *stopped) => {}
        }
        connection.as_mut().graceful_shutdown();
        connection.await
    };
    tokio::time::timeout(CONNECTION_TIMEOUT, serve)
        .await
        .map_err(|_| Error::TimedOut)?
        .map_err(Error::Http)
}

/// Why an admin connection ended early (only logged).
#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("connection outlived {CONNECTION_TIMEOUT:?}")]
    TimedOut,
    #[error("HTTP error")]
    Http(#[source] hyper::Error),
}

/// Answers a request (its body, if any, is ignored).
fn route(request: &Request<Incoming>, broker: &Broker) -> Response<Full<Bytes>> {
    if request.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET is served\n");
    }
    match request.uri().path() {
        "/health" => text(StatusCode::OK, "ok\n"),
        "/metrics" => {
            let mut response = Response::new(Full::new(Bytes::from(metrics::render(broker))));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(metrics::CONTENT_TYPE),
            );
            response
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// A plain-text response.
fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
