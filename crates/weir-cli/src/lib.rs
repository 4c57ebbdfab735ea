//! The `weir` command line: run a broker, or operate any Kafka-compatible cluster.
//!
//! The `weir` binary (crates/weir-broker) hands its arguments to [`run`]. `weir` with no
//! subcommand, or with only flags, is `weir broker`: [`run`] parses the broker's own flags and
//! returns [`Outcome::Broker`] for the binary to start it, since a broker is not this crate's
//! to run. Every other subcommand runs here, on [`weir_client`], against `--brokers` (or
//! `WEIR_BROKERS`, default `localhost:9092`):
//!
//! ```text
//! weir topic create|list|describe|delete|alter-config|add-partitions
//! weir produce TOPIC          lines from stdin or --file
//! weir consume TOPIC          --from, --group, -n, --follow, --format TEMPLATE|json
//! weir group list|describe|delete|seek
//! weir cluster info|health
//! weir completions bash|zsh|fish
//! ```
//!
//! # Layout
//! - `args`: the grammar (clap derive) and help texts.
//! - `topic`, `produce`, `consume`, `group`, `cluster`: one module per subcommand; each
//!   connects, calls [`weir_client`] and prints.
//! - `output`: tables and JSON; `template`: `consume --format`.
//! - [`Error`]: why a command failed, printed as one `weir: ...` line on stderr.
//!
//! Output goes to stdout (a table, or one JSON document with `--format json`); progress and
//! summaries go to stderr. Exit status: 0, 1 for a failure, 2 for bad arguments.

mod args;
mod cluster;
mod consume;
mod error;
mod group;
mod output;
mod produce;
mod template;
mod topic;

use clap::{CommandFactory, Parser};
use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;
use weir_client::{Client, ClientConfig};

pub use args::LogFormat;
pub use error::Error;

use args::{Cli, Command, Connect};

/// What [`run`] did.
#[derive(Debug)]
#[non_exhaustive]
pub enum Outcome {
    /// A command ran (or help, a version or an argument error was printed): exit with this.
    Exit(ExitCode),
    /// `weir`, `weir broker` or `weir start`: the caller runs the broker.
    Broker(BrokerOptions),
}

/// How to run the broker, from `weir broker`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BrokerOptions {
    /// The broker's configuration flags, as it reads them (`--config FILE`, `--KEY=VALUE`,
    /// `--override KEY=VALUE`).
    pub args: Vec<String>,
    /// How to write log lines.
    pub log_format: LogFormat,
}

/// Parses `args` (the program name first) and runs the subcommand, or returns the broker's
/// options for `weir` / `weir broker` / `weir start`.
pub fn run<I, T>(args: I) -> Outcome
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let mut args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    // `weir` and `weir --log.dirs=/data ...` run the broker as they always have.
    let first = args.get(1).map(|a| a.to_string_lossy().into_owned());
    let is_broker = match first.as_deref() {
        None => true,
        Some("-h" | "--help" | "-V" | "--version") => false,
        Some(flag) if flag.starts_with('-') => true,
        Some(_) => false,
    };
    if is_broker {
        args.insert(1.min(args.len()), OsString::from("broker"));
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            // Help and the version go to stdout with status 0, errors to stderr with 2.
            let _ = e.print();
            return Outcome::Exit(ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2)));
        }
    };
    match cli.command {
        // After the first property clap takes every argument as one; `--help` among them still
        // asks for help, as it did before the broker's flags went through clap.
        Command::Broker(broker) if broker.properties.iter().any(|a| a == "--help" || a == "-h") => {
            // Parsed again on its own, so the help names `weir broker` as clap renders it.
            if let Err(help) = Cli::try_parse_from(["weir", "broker", "--help"]) {
                let _ = help.print();
            }
            Outcome::Exit(ExitCode::SUCCESS)
        }
        Command::Broker(broker) => match broker_options(broker) {
            Ok(options) => Outcome::Broker(options),
            Err(e) => {
                eprintln!("weir: {e}");
                Outcome::Exit(ExitCode::from(2))
            }
        },
        Command::Completions { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "weir", &mut std::io::stdout());
            Outcome::Exit(ExitCode::SUCCESS)
        }
        command => Outcome::Exit(run_tool(command)),
    }
}

/// The broker's flags in the order its configuration reads them; `--log-format` given among
/// the properties (clap stops parsing flags at the first property) is taken out here.
fn broker_options(broker: args::BrokerArgs) -> Result<BrokerOptions, String> {
    let mut out = Vec::new();
    if let Some(file) = broker.config {
        out.push("--config".to_string());
        out.push(file.display().to_string());
    }
    for kv in broker.overrides {
        out.push("--override".to_string());
        out.push(kv);
    }
    let mut log_format = broker.log_format;
    let mut properties = broker.properties.into_iter();
    while let Some(arg) = properties.next() {
        let value = match arg.as_str() {
            "--log-format" => properties.next(),
            other => match other.strip_prefix("--log-format=") {
                Some(v) => Some(v.to_string()),
                None => {
                    out.push(arg);
                    continue;
                }
            },
        };
        log_format = match value.as_deref() {
            Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            other => {
                return Err(format!(
                    "--log-format takes text or json, not {}",
                    other.unwrap_or("nothing")
                ));
            }
        };
    }
    Ok(BrokerOptions {
        args: out,
        log_format,
    })
}

/// Runs a subcommand that talks to a cluster, on a runtime of its own.
fn run_tool(command: Command) -> ExitCode {
    // Log lines would break the one-line error rule; RUST_LOG turns them on when needed.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("weir: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match command {
            Command::Topic(args) => topic::run(args).await,
            Command::Produce(args) => produce::run(args).await,
            Command::Consume(args) => consume::run(args).await,
            Command::Group(args) => group::run(args).await,
            Command::Cluster(args) => cluster::run(args).await,
            Command::Broker(_) | Command::Completions { .. } => Ok(()),
        }
    });
    // Background tasks (heartbeats, senders) end with the runtime, not after.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weir: {}", e.one_line());
            ExitCode::from(e.exit_code())
        }
    }
}

/// The client settings for `--brokers` and `--timeout-ms`. Topics are never created by a
/// lookup, except by `produce` (as every producer does where the broker allows it).
fn client_config(connect: &Connect, auto_create_topics: bool) -> ClientConfig {
    let mut config = ClientConfig::new(&connect.brokers);
    config.client_id = "weir-cli".to_string();
    let timeout = Duration::from_millis(connect.timeout_ms.max(1));
    config.request_timeout = timeout;
    config.connection_setup_timeout = timeout.min(config.connection_setup_timeout);
    config.allow_auto_create_topics = auto_create_topics;
    config
}

/// Connects to the cluster.
async fn connect(connect: &Connect, auto_create_topics: bool) -> Result<Client, Error> {
    Client::connect(client_config(connect, auto_create_topics))
        .await
        .map_err(|source| Error::Connect {
            brokers: connect.brokers.clone(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(args: &[&str]) -> BrokerOptions {
        match run(std::iter::once("weir").chain(args.iter().copied())) {
            Outcome::Broker(options) => options,
            Outcome::Exit(code) => panic!("exited with {code:?}"),
        }
    }

    #[test]
    fn no_subcommand_runs_the_broker_with_its_flags() {
        assert_eq!(broker(&[]).args, Vec::<String>::new());
        let options = broker(&["--log.dirs=/data", "--override", "num.partitions=3"]);
        assert_eq!(
            options.args,
            ["--log.dirs=/data", "--override", "num.partitions=3"]
        );
        assert_eq!(options.log_format, LogFormat::Text);
        let options = broker(&["start", "--config", "s.properties", "--log-format=json"]);
        assert_eq!(options.args, ["--config", "s.properties"]);
        assert_eq!(options.log_format, LogFormat::Json);
        let options = broker(&["--node.id=1", "--log-format", "json", "--x.y", "z"]);
        assert_eq!(options.args, ["--node.id=1", "--x.y", "z"]);
        assert_eq!(options.log_format, LogFormat::Json);
        assert!(matches!(
            run(["weir", "--node.id=1", "--log-format", "xml"]),
            Outcome::Exit(_)
        ));
    }
}
