//! `weir cluster info|health`.

use crate::args::{ClusterArgs, ClusterCommand, OutputFormat};
use crate::error::{Context, Error};
use crate::output::{Table, print, print_json};
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weir_client::admin::Admin;

pub(crate) async fn run(args: ClusterArgs) -> Result<(), Error> {
    match args.command {
        ClusterCommand::Info => info(&args.connect, args.format).await,
        ClusterCommand::Health { admin } => health(&args.connect, &admin, args.format).await,
    }
}

async fn info(connect: &crate::args::Connect, format: OutputFormat) -> Result<(), Error> {
    let admin = Admin::from_client(crate::connect(connect, false).await?);
    let cluster = admin
        .describe_cluster()
        .await
        .context(|| "cannot describe the cluster".to_string())?;
    let topics = admin
        .list_topics()
        .await
        .context(|| "cannot list topics".to_string())?;
    let internal = topics.iter().filter(|t| t.is_internal).count();
    let partitions: usize = topics.iter().map(|t| t.partitions.len()).sum();
    match format {
        OutputFormat::Json => print_json(&json!({
            "cluster_id": cluster.cluster_id,
            "controller": cluster.controller_id,
            "brokers": cluster.brokers.iter().map(|b| json!({
                "id": b.node_id, "host": b.host, "port": b.port, "rack": b.rack,
            })).collect::<Vec<_>>(),
            "topics": topics.len() - internal,
            "internal_topics": internal,
            "partitions": partitions,
        })),
        OutputFormat::Table => {
            let mut text = format!(
                "Cluster: {}  Controller: {}  Brokers: {}  Topics: {} (+{} internal)  Partitions: {}\n\n",
                cluster.cluster_id,
                if cluster.controller_id < 0 {
                    "none".to_string()
                } else {
                    cluster.controller_id.to_string()
                },
                cluster.brokers.len(),
                topics.len() - internal,
                internal,
                partitions,
            );
            let mut table = Table::new(&["BROKER", "HOST", "PORT", "RACK", "CONTROLLER"]);
            for b in &cluster.brokers {
                table.row(vec![
                    b.node_id.to_string(),
                    b.host.clone(),
                    b.port.to_string(),
                    b.rack.clone().unwrap_or_else(|| "-".to_string()),
                    if b.node_id == cluster.controller_id {
                        "yes".to_string()
                    } else {
                        String::new()
                    },
                ]);
            }
            text.push_str(&table.render());
            print(&text);
        }
    }
    Ok(())
}

/// Both checks run and are shown; the command fails if either does.
async fn health(
    connect: &crate::args::Connect,
    admin_addr: &str,
    format: OutputFormat,
) -> Result<(), Error> {
    let kafka = match crate::connect(connect, false).await {
        Ok(client) => Admin::from_client(client)
            .describe_cluster()
            .await
            .map(|c| {
                format!(
                    "{} broker(s), controller {}",
                    c.brokers.len(),
                    c.controller_id
                )
            })
            .map_err(|e| format!("{}: cannot describe the cluster: {e}", connect.brokers)),
        Err(e) => Err(e.one_line()),
    };
    let timeout = Duration::from_millis(connect.timeout_ms.max(1));
    let http = get_health(admin_addr, timeout).await;
    match format {
        OutputFormat::Json => print_json(&json!({
            "kafka": { "brokers": connect.brokers, "ok": kafka.is_ok(), "detail": either(&kafka) },
            "admin": { "url": format!("http://{admin_addr}/health"), "ok": http.is_ok(), "detail": either(&http) },
        })),
        OutputFormat::Table => {
            let mut table = Table::new(&["CHECK", "ADDRESS", "STATUS", "DETAIL"]);
            table.row(vec![
                "kafka".to_string(),
                connect.brokers.clone(),
                status(&kafka),
                either(&kafka),
            ]);
            table.row(vec![
                "admin-http".to_string(),
                format!("http://{admin_addr}/health"),
                status(&http),
                either(&http),
            ]);
            print(&table.render());
        }
    }
    match (kafka, http) {
        (Ok(_), Ok(_)) => Ok(()),
        (Err(e), _) => Err(Error::Failed(format!("unhealthy: {e}"))),
        (_, Err(e)) => Err(Error::Failed(format!(
            "unhealthy: http://{admin_addr}/health: {e}"
        ))),
    }
}

fn status(result: &Result<String, String>) -> String {
    if result.is_ok() { "ok" } else { "FAILED" }.to_string()
}

fn either(result: &Result<String, String>) -> String {
    match result {
        Ok(s) | Err(s) => s.clone(),
    }
}

/// `GET /health` on the broker's admin port. The port answers one request per connection and
/// closes it (docs/operations.md), so the status line and body are all there is to read; an
/// HTTP client crate would outweigh the rest of this crate's dependencies for that.
async fn get_health(addr: &str, timeout: Duration) -> Result<String, String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        stream
            .write_all(
                format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .map_err(|e| format!("cannot send the request: {e}"))?;
        let mut response = Vec::new();
        // The health answer is a few bytes; a bound keeps a wrong address from filling memory.
        stream
            .take(64 * 1024)
            .read_to_end(&mut response)
            .await
            .map_err(|e| format!("cannot read the response: {e}"))?;
        Ok::<_, String>(response)
    };
    let response = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))??;
    let text = String::from_utf8_lossy(&response);
    let status_line = text.lines().next().unwrap_or_default();
    let code = status_line.split_whitespace().nth(1).unwrap_or_default();
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .trim();
    if code == "200" {
        Ok(format!("200 {body}"))
    } else if status_line.starts_with("HTTP/") {
        Err(format!("answered {}", status_line.trim()))
    } else {
        Err("not an HTTP answer".to_string())
    }
}
