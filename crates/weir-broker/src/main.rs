//! `weir`: run a Weir broker. With no arguments, a single node on localhost:9092 with its data
//! in `./weir-data`.

use std::process::ExitCode;
use tracing::{error, info};
use weir_broker::{BrokerConfig, ControllerNode, Server, VERSION};

const USAGE: &str = "usage: weir [--config FILE] [--KEY=VALUE ...] [--override KEY=VALUE ...]

Runs a Weir broker. Settings use Kafka's property names (listeners, log.dirs, num.partitions,
auto.create.topics.enable, log.segment.bytes, log.retention.ms, message.max.bytes, ...), from
a TOML or server.properties file, WEIR_* environment variables (WEIR_LOG_DIRS) and flags.
Log level: RUST_LOG (default info, with the Raft engine's own lines at error only: it retries
unreachable voters often).

A cluster: list the controllers with controller.quorum.voters=1@host:port,2@host:port,3@host:port
and give each of them a CONTROLLER://host:port entry in listeners. process.roles says what a
node runs: broker,controller (the default), controller (a voter only, no client listener) or
broker (follows the controllers; needs controller.quorum.voters or
controller.quorum.bootstrap.servers). See docs/cluster.md.";

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if args.iter().any(|a| a == "--version" || a == "-V") {
        println!("weir {VERSION}");
        return ExitCode::SUCCESS;
    }
    let config = match BrokerConfig::from_args_and_env(args, std::env::vars()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("weir: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("weir: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Setup(e)) => {
            error!("{e}");
            eprintln!("weir: {e}");
            ExitCode::from(2)
        }
        Err(Failure::Other(e)) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Why the broker stopped with an error: a setup that cannot work (exit status 2, like a bad
/// configuration) or anything else.
enum Failure {
    Setup(String),
    Other(String),
}

impl<E: std::error::Error> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Other(e.to_string())
    }
}

async fn run(config: BrokerConfig) -> Result<(), Failure> {
    let data_dirs: Vec<String> = config
        .log_dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    if !config.quorum.roles.broker {
        return run_controller(config).await;
    }
    let server = Server::bind(config.clone()).await.map_err(start_failure)?;
    info!(
        version = VERSION,
        listener = %server.local_addr()?,
        admin = %server.admin_addr().map_or_else(|| "off".to_string(), |a| format!("http://{a}")),
        controller = %server.controller_addr().map_or_else(|| "none".to_string(), |a| a.to_string()),
        quorum_voters = config.quorum.voters.len(),
        data_dirs = %data_dirs.join(","),
        node_id = config.node_id,
        "weir broker ready"
    );
    server.run(shutdown_signal()).await?;
    info!("weir broker stopped");
    Ok(())
}

/// A controller-only node: the CONTROLLER listener and the quorum, no client listener.
async fn run_controller(config: BrokerConfig) -> Result<(), Failure> {
    let node = ControllerNode::start(config.clone())
        .await
        .map_err(start_failure)?;
    info!(
        version = VERSION,
        controller = %node.controller_addr(),
        quorum_voters = config.quorum.voters.len(),
        cluster_id = node.cluster_id(),
        metadata_dir = %config.log_dirs.first().map_or_else(String::new, |d| d.display().to_string()),
        node_id = config.node_id,
        "weir controller ready"
    );
    node.run(shutdown_signal()).await?;
    info!("weir controller stopped");
    Ok(())
}

/// A start-up error with its causes on one line; a setup that cannot work exits with 2.
fn start_failure(e: weir_broker::ServerError) -> Failure {
    let setup = matches!(&e, weir_broker::ServerError::Broker(b) if b.is_setup());
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    if setup {
        Failure::Setup(text)
    } else {
        Failure::Other(text)
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    info!("shutdown requested");
}
