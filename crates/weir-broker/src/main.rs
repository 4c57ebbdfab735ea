//! `weir`: run a Weir broker, or operate a Kafka-compatible cluster. With no arguments, a single
//! node on localhost:9092 with its data in `./weir-data`.
//!
//! The command line is weir-cli's: it runs the `topic`, `produce`, `consume`, `group`,
//! `cluster` and `completions` subcommands itself and hands `weir` / `weir broker` /
//! `weir start` back here with the broker's flags, since only this crate can run a broker.

use std::io::IsTerminal;
use std::process::ExitCode;
use tracing::{error, info};
use weir_broker::{BrokerConfig, ControllerNode, Server, VERSION};
use weir_cli::{BrokerOptions, LogFormat, Outcome};

fn main() -> ExitCode {
    match weir_cli::run(std::env::args_os()) {
        Outcome::Exit(code) => code,
        Outcome::Broker(options) => run_broker(options),
        // Outcome is non-exhaustive: a variant this binary does not know is a build mismatch.
        _ => {
            eprintln!("weir: unexpected command line outcome");
            ExitCode::FAILURE
        }
    }
}

fn run_broker(options: BrokerOptions) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=error"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour escapes only for a person at a terminal, never in files or pipes.
        .with_ansi(std::io::stderr().is_terminal());
    match options.log_format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs.init(),
    }
    // WEIR_BROKERS and WEIR_ADMIN are the command line's (`weir topic ...`), not broker
    // properties.
    let env = std::env::vars().filter(|(k, _)| k != "WEIR_BROKERS" && k != "WEIR_ADMIN");
    let config = match BrokerConfig::load(options.config.as_deref(), options.properties, env) {
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
