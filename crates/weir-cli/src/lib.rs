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

use clap::{CommandFactory, FromArgMatches};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use weir_client::{Client, ClientConfig};

pub use args::{BROKER_PROPERTY_FLAGS, LogFormat};
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
    /// `--config FILE`: a TOML or `server.properties` file.
    pub config: Option<PathBuf>,
    /// Broker properties from the command line (`--KEY=VALUE`, `--KEY VALUE`,
    /// `--override KEY=VALUE` and the flags of [`BROKER_PROPERTY_FLAGS`]) in the order given:
    /// when a key appears twice the later one wins. Names and values are the broker's to
    /// check.
    pub properties: Vec<(String, String)>,
    /// How to write log lines.
    pub log_format: LogFormat,
}

/// The whole grammar: the derived one, with the broker's property flags added.
pub(crate) fn command() -> clap::Command {
    Cli::command().mut_subcommand("broker", args::broker_property_args)
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
    let mut command = command();
    let parsed = match args.get(1).and_then(|a| a.to_str()) {
        Some("broker" | "start") => properties_as_overrides(&command, args),
        _ => Ok(args),
    }
    .and_then(|args| command.try_get_matches_from_mut(args))
    .and_then(|matches| Ok((Cli::from_arg_matches(&matches)?, matches)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            // Help and the version go to stdout with status 0, errors to stderr with 2.
            let _ = e.print();
            return Outcome::Exit(ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2)));
        }
    };
    match cli.command {
        Command::Broker(broker) => {
            let properties = matches
                .subcommand_matches("broker")
                .map(ordered_properties)
                .unwrap_or_default();
            Outcome::Broker(BrokerOptions {
                config: broker.config,
                properties,
                log_format: broker.log_format,
            })
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut command, "weir", &mut std::io::stdout());
            Outcome::Exit(ExitCode::SUCCESS)
        }
        command => Outcome::Exit(run_tool(command)),
    }
}

/// Rewrites every broker property given as a flag of its own (`--log.dirs=/data`,
/// `--log.dirs /data`) that the grammar does not name into `--override log.dirs=/data`, so
/// clap parses the whole command line and refuses what is neither a flag nor a property (a
/// name without a dot) with its usual error. Kafka's property names all have a dot, but
/// `listeners`, which is a flag of its own.
fn properties_as_overrides(
    command: &clap::Command,
    args: Vec<OsString>,
) -> Result<Vec<OsString>, clap::Error> {
    let Some(broker) = command.find_subcommand("broker") else {
        return Ok(args);
    };
    let takes_value = |name: &str| {
        broker
            .get_arguments()
            .find(|a| a.get_long() == Some(name))
            .map(|a| a.get_action().takes_values())
    };
    let mut out = Vec::with_capacity(args.len());
    let mut rest = args.into_iter();
    out.extend(rest.by_ref().take(2));
    while let Some(arg) = rest.next() {
        let Some(flag) = arg.to_str().and_then(|a| a.strip_prefix("--")) else {
            out.push(arg);
            continue;
        };
        if flag.is_empty() {
            out.push(arg);
            out.extend(rest);
            break;
        }
        let (name, inline) = match flag.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (flag, None),
        };
        match takes_value(name) {
            Some(takes) => {
                let value = (takes && inline.is_none()).then(|| rest.next()).flatten();
                out.push(arg.clone());
                out.extend(value);
            }
            None if name.contains('.') => {
                let value = match inline {
                    Some(value) => value.to_string(),
                    None => match rest.next() {
                        Some(value) => value.to_string_lossy().into_owned(),
                        None => {
                            return Err(command.clone().error(
                                clap::error::ErrorKind::InvalidValue,
                                format!("a value is required for '--{name} <VALUE>' but none was supplied"),
                            ));
                        }
                    },
                };
                out.push(OsString::from("--override"));
                out.push(OsString::from(format!("{name}={value}")));
            }
            None => out.push(arg),
        }
    }
    Ok(out)
}

/// The broker's property flags from its matches, in command-line order.
fn ordered_properties(matches: &clap::ArgMatches) -> Vec<(String, String)> {
    let mut ordered = Vec::new();
    if let (Some(values), Some(indices)) = (
        matches.get_many::<(String, String)>(args::OVERRIDE),
        matches.indices_of(args::OVERRIDE),
    ) {
        ordered.extend(
            indices
                .zip(values)
                .map(|(i, (k, v))| (i, k.clone(), v.clone())),
        );
    }
    for (name, _, _) in BROKER_PROPERTY_FLAGS {
        if let (Some(values), Some(indices)) =
            (matches.get_many::<String>(name), matches.indices_of(name))
        {
            ordered.extend(
                indices
                    .zip(values)
                    .map(|(i, v)| (i, name.to_string(), v.clone())),
            );
        }
    }
    ordered.sort_by_key(|(i, _, _)| *i);
    ordered.into_iter().map(|(_, k, v)| (k, v)).collect()
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

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn exit_code(args: &[&str]) -> ExitCode {
        match run(std::iter::once("weir").chain(args.iter().copied())) {
            Outcome::Exit(code) => code,
            Outcome::Broker(options) => panic!("ran the broker with {options:?}"),
        }
    }

    #[test]
    fn no_subcommand_runs_the_broker_with_its_flags() {
        assert_eq!(broker(&[]).properties, Vec::new());
        let options = broker(&["--log.dirs=/data", "--override", "num.partitions=3"]);
        assert_eq!(
            options.properties,
            pairs(&[("log.dirs", "/data"), ("num.partitions", "3")])
        );
        assert_eq!(options.config, None);
        assert_eq!(options.log_format, LogFormat::Text);
        let options = broker(&["start", "--config", "s.properties", "--log-format=json"]);
        assert_eq!(options.config, Some(PathBuf::from("s.properties")));
        assert!(options.properties.is_empty());
        assert_eq!(options.log_format, LogFormat::Json);
        // Flags after a property are still flags; `--KEY VALUE` takes the next argument.
        let options = broker(&["--node.id=1", "--log-format", "json", "--x.y", "z"]);
        assert_eq!(options.properties, pairs(&[("node.id", "1"), ("x.y", "z")]));
        assert_eq!(options.log_format, LogFormat::Json);
        assert_eq!(
            exit_code(&["--node.id=1", "--log-format", "xml"]),
            ExitCode::from(2)
        );
    }

    /// The property flags of their own, `--override` and `--KEY=VALUE` interleave in
    /// command-line order, so the last setting of a key wins whichever form set it.
    #[test]
    fn properties_keep_their_order() {
        let options = broker(&[
            "broker",
            "--node.id",
            "1",
            "--override",
            "node.id=2",
            "--log.retention.ms",
            "-1",
            "--listeners=PLAINTEXT://:9092",
            "--a.b=c=d",
            "--config",
            "f.toml",
            "--node.id=3",
        ]);
        assert_eq!(
            options.properties,
            // A flag of its own given twice keeps its last value only.
            pairs(&[
                ("node.id", "2"),
                ("log.retention.ms", "-1"),
                ("listeners", "PLAINTEXT://:9092"),
                ("a.b", "c=d"),
                ("node.id", "3"),
            ])
        );
        assert_eq!(options.config, Some(PathBuf::from("f.toml")));
    }

    #[test]
    fn unknown_flags_and_missing_values_are_argument_errors() {
        for args in [
            &["--bogus"][..],
            &["broker", "--log.dirs=/d", "--no-such-flag"],
            &["start", "--log.dirs"],
            &["broker", "--override", "no-equals-sign"],
            &["broker", "positional"],
        ] {
            assert_eq!(exit_code(args), ExitCode::from(2), "{args:?}");
        }
        assert_eq!(exit_code(&["broker", "--help"]), ExitCode::SUCCESS);
        assert_eq!(exit_code(&["--log.dirs=/d", "--help"]), ExitCode::SUCCESS);
    }

    #[test]
    fn broker_help_lists_the_property_flags() {
        let mut command = command();
        let help = command
            .find_subcommand_mut("broker")
            .map(|b| b.render_long_help().to_string())
            .unwrap_or_default();
        for flag in [
            "--config <FILE>",
            "--override <KEY=VALUE>",
            "--log-format",
            "--listeners <LISTENERS>",
            "--log.dirs <DIRS>",
            "--node.id <ID>",
            "--controller.quorum.voters",
            "--process.roles <ROLES>",
        ] {
            assert!(help.contains(flag), "{flag} missing from:\n{help}");
        }
    }
}
