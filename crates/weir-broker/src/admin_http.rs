//! The admin HTTP port (`weir.admin.listener`): `GET /health` and `GET /metrics`.
//!
//! A deliberately tiny HTTP/1.1 server: one request per connection (`Connection: close`), the
//! request head bounded in size and time, no request bodies. Scrapers and health checks need
//! nothing more, and it keeps an HTTP library out of the broker. Anything it does not understand
//! gets a 4xx answer and the connection closes.

use crate::metrics;
use crate::state::Broker;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::debug;

/// Largest request head (request line and headers) accepted.
const MAX_HEAD_BYTES: usize = 8 * 1024;

/// How long a client may take to send its request head, and to read the response.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Admin connections served at once; more are refused (scrapers need one or two).
const MAX_CONNECTIONS: usize = 64;

/// Serves the admin port until `stopped` turns true, then ends every admin connection so that
/// no task holds the broker when the server shuts down.
pub(crate) async fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    mut stopped: watch::Receiver<bool>,
) {
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
                connections.spawn(async move {
                    if let Err(e) = handle(stream, &broker).await {
                        debug!(%peer, error = %e, "admin connection ended");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = stopped.changed() => break,
        }
    }
    connections.shutdown().await;
}

/// A response to send: status line, content type and body.
struct Response {
    status: &'static str,
    content_type: &'static str,
    body: String,
}

impl Response {
    fn text(status: &'static str, body: &str) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.to_string(),
        }
    }
}

/// Reads one request head and answers it; the connection then closes.
async fn handle(mut stream: TcpStream, broker: &Broker) -> std::io::Result<()> {
    let response = match tokio::time::timeout(IO_TIMEOUT, read_head(&mut stream)).await {
        Err(_) => Response::text("408 Request Timeout", "request timeout\n"),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(None)) => Response::text("400 Bad Request", "bad request\n"),
        Ok(Ok(Some(head))) => route(&head, broker),
    };
    let mut out = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        response.status,
        response.content_type,
        response.body.len()
    )
    .into_bytes();
    out.extend_from_slice(response.body.as_bytes());
    tokio::time::timeout(IO_TIMEOUT, async {
        stream.write_all(&out).await?;
        stream.shutdown().await
    })
    .await
    .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

/// Reads until the end of the request head; `None` if it is too large or the client closed
/// the connection first.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if let Some(end) = find_head_end(&buf) {
            buf.truncate(end);
            return Ok(String::from_utf8(buf).ok());
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Ok(None);
        }
    }
}

/// The length of the head up to the blank line that ends it (`\r\n\r\n`, or `\n\n` from lax
/// clients).
fn find_head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = buf.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Answers a parsed request head.
fn route(head: &str, broker: &Broker) -> Response {
    let request_line = head.lines().next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Response::text("400 Bad Request", "bad request line\n");
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Response::text("400 Bad Request", "bad request line\n");
    }
    if method != "GET" {
        return Response::text("405 Method Not Allowed", "only GET is served\n");
    }
    let path = target.split('?').next().unwrap_or_default();
    match path {
        "/health" => Response::text("200 OK", "ok\n"),
        "/metrics" => Response {
            status: "200 OK",
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: metrics::render(broker),
        },
        _ => Response::text("404 Not Found", "not found\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_ends_at_the_blank_line() {
        assert_eq!(
            find_head_end(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nrest"),
            Some(23)
        );
        assert_eq!(find_head_end(b"GET / HTTP/1.1\n\n"), Some(14));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n"), None);
    }
}
