//! The command line's grammar (clap derive): every subcommand, option and help text.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

const EXAMPLES: &str = "\
Examples:
  weir                                   run a broker on localhost:9092, data in ./weir-data
  weir broker --config server.properties run a broker from a Kafka properties file
  weir topic create orders -p 3          create a topic with 3 partitions
  weir topic describe orders             partitions, leaders, ISR, offsets, configs
  echo 'k1:hello' | weir produce orders --key-separator :
  weir consume orders -n 10 --format '{partition}@{offset} {key}={value}'
  weir group describe my-consumer-group  members, committed offsets and lag
  weir group seek my-group --topic orders --to earliest --execute
  weir cluster health --format json

Subcommands other than `broker` talk to any Kafka-compatible cluster: --brokers or
WEIR_BROKERS (default localhost:9092). Output is a table, or one JSON document with
--format json. On failure the exit status is 1 (2 for bad arguments) with one line on stderr.";

/// The broker's settings, shown by `weir broker --help`.
pub(crate) const BROKER_HELP: &str = "\
Settings use Kafka's property names (listeners, log.dirs, num.partitions,
auto.create.topics.enable, log.segment.bytes, log.retention.ms, message.max.bytes, ...), from
a TOML or server.properties file, WEIR_* environment variables (WEIR_LOG_DIRS) and flags; later
sources win. Every property is a flag: --KEY=VALUE or --KEY VALUE (--log.retention.ms=3600000),
the same as --override KEY=VALUE. A bad value stops the broker with exit status 2. Log level:
RUST_LOG (default info, with the Raft engine's own lines at error only: it retries unreachable
voters often).

A cluster: list the controllers with controller.quorum.voters=1@host:port,2@host:port,3@host:port
and give each of them a CONTROLLER://host:port entry in listeners. process.roles says what a
node runs: broker,controller (the default), controller (a voter only, no client listener) or
broker (follows the controllers; needs controller.quorum.voters or
controller.quorum.bootstrap.servers). See docs/cluster.md and docs/operations.md.

Examples:
  weir                                      the same as `weir broker`
  weir broker --log.dirs=/var/lib/weir --num.partitions=3
  weir start --config server.properties --override log.retention.ms=3600000
  weir broker --node.id 1 --listeners PLAINTEXT://:9092,CONTROLLER://:9093 \\
      --controller.quorum.voters 1@h1:9093,2@h2:9093,3@h3:9093
  weir broker --log-format json 2> broker.log";

/// The broker properties set most often on the command line (the README, docs/cluster.md,
/// tests/cluster/cluster.sh, the bench scripts), listed by `weir broker --help` as flags of
/// their own: name, value name, help. Any other property is `--KEY=VALUE` too, so this list
/// only decides what the help shows. The defaults in the help texts are checked against the
/// broker's by a test in weir-broker's config.
pub const BROKER_PROPERTY_FLAGS: &[(&str, &str, &str)] = &[
    (
        "node.id",
        "ID",
        "This node's id, as broker and as metadata-quorum voter [default: 0]",
    ),
    (
        "process.roles",
        "ROLES",
        "What the node runs: broker, controller or both [default: broker,controller]",
    ),
    (
        "listeners",
        "LISTENERS",
        "Where clients connect, and a CONTROLLER://host:port entry for the other voters \
         [default: PLAINTEXT://127.0.0.1:9092]",
    ),
    (
        "advertised.listeners",
        "LISTENERS",
        "The host and port given to clients [default: as listeners]",
    ),
    (
        "log.dirs",
        "DIRS",
        "Data directories, comma-separated [default: ./weir-data]",
    ),
    (
        "controller.quorum.voters",
        "ID@HOST:PORT,...",
        "The metadata quorum's voters and their CONTROLLER listeners [default: this node alone]",
    ),
    (
        "controller.quorum.bootstrap.servers",
        "HOST:PORT,...",
        "Controllers a broker-only node asks for the voters",
    ),
    (
        "num.partitions",
        "N",
        "Partitions of an auto-created topic [default: 1]",
    ),
    (
        "default.replication.factor",
        "N",
        "Replicas of an auto-created topic [default: 1]",
    ),
    (
        "auto.create.topics.enable",
        "BOOL",
        "Whether Metadata creates unknown topics [default: true]",
    ),
    (
        "log.retention.ms",
        "MS",
        "How long topics keep data, -1 for ever [default: 604800000]",
    ),
    (
        "weir.admin.listener",
        "IP:PORT|none",
        "The HTTP port for /metrics and /health [default: 127.0.0.1:9644]",
    ),
];

/// Run a Weir broker, or operate any Kafka-compatible cluster.
#[derive(Debug, Parser)]
#[command(name = "weir", version, after_help = EXAMPLES, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the broker (what `weir` with no subcommand does)
    #[command(visible_alias = "start", after_help = BROKER_HELP)]
    Broker(BrokerArgs),
    /// Create, list, describe, delete and change topics
    Topic(TopicArgs),
    /// Send lines from stdin or a file as records
    #[command(after_help = "\
Examples:
  echo hello | weir produce greetings
  weir produce orders --file orders.txt --key-separator '\\t' --header source=import
  seq 1000 | weir produce numbers --partition 0 --compression zstd --acks 1")]
    Produce(ProduceArgs),
    /// Print records of a topic
    #[command(after_help = "\
Without --follow, stops once it has read what the partitions held when it started.

--format takes `json` (one object per line) or a template with {topic} {partition} {offset}
{key} {value} {headers} {timestamp}; `\\t` and `\\n` are tab and newline, `{{` and `}}` braces.

Examples:
  weir consume orders                          every record, values only
  weir consume orders --from end --follow      new records as they arrive
  weir consume orders --from offset:42 -n 1 --partition 0
  weir consume orders --group audit -n 100     as a member of a group, committing
  weir consume orders --format json | jq .value")]
    Consume(ConsumeArgs),
    /// List, describe, delete consumer groups and move their offsets
    Group(GroupArgs),
    /// The cluster's brokers and controller, and its health
    Cluster(ClusterArgs),
    /// Print a shell completion script
    #[command(after_help = "\
Examples:
  weir completions bash > /etc/bash_completion.d/weir
  weir completions zsh > \"${fpath[1]}/_weir\"
  weir completions fish > ~/.config/fish/completions/weir.fish")]
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// The broker's own flags. The property flags (`--override`, [`BROKER_PROPERTY_FLAGS`], and
/// `--KEY=VALUE` for any other property, rewritten to `--override` before clap sees it) are
/// added by [`broker_property_args`], which keeps their order.
#[derive(Debug, Args)]
pub(crate) struct BrokerArgs {
    /// A TOML or server.properties file
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Log lines as coloured text (on a terminal) or JSON objects, on stderr
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
}

/// Id of `--override`'s values in the broker subcommand's matches.
pub(crate) const OVERRIDE: &str = "override";

/// Adds the property flags to the broker subcommand: `--override KEY=VALUE` and
/// [`BROKER_PROPERTY_FLAGS`]. They are built here rather than derived because their values
/// are read in command-line order (a later setting of a property wins), from the matches.
pub(crate) fn broker_property_args(command: clap::Command) -> clap::Command {
    let command = command.args_override_self(true).arg(
        clap::Arg::new(OVERRIDE)
            .long("override")
            .value_name("KEY=VALUE")
            .help("Sets any property, as --KEY=VALUE does (repeatable)")
            .action(clap::ArgAction::Append)
            .allow_hyphen_values(true)
            .value_parser(key_value),
    );
    BROKER_PROPERTY_FLAGS
        .iter()
        .fold(command, |command, (name, value_name, help)| {
            command.arg(
                clap::Arg::new(*name)
                    .long(*name)
                    .value_name(*value_name)
                    .help(*help)
                    .help_heading("Broker properties (any other: --KEY=VALUE)")
                    .allow_hyphen_values(true)
                    .action(clap::ArgAction::Set),
            )
        })
}

/// How the broker writes its log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines, coloured only when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// How to reach the cluster; shared by every subcommand but `broker` and `completions`.
#[derive(Debug, Clone, Args)]
pub(crate) struct Connect {
    /// Bootstrap brokers, host:port[,host:port...]
    #[arg(
        long,
        short = 'b',
        env = "WEIR_BROKERS",
        default_value = "localhost:9092",
        global = true
    )]
    pub(crate) brokers: String,
    /// How long to wait for each answer, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = 30_000, global = true)]
    pub(crate) timeout_ms: u64,
}

/// Tables for people or JSON for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub(crate) enum OutputFormat {
    /// Aligned columns.
    #[default]
    Table,
    /// One JSON document.
    Json,
}

#[derive(Debug, Args)]
pub(crate) struct TopicArgs {
    #[command(flatten)]
    pub(crate) connect: Connect,
    /// Output format
    #[arg(long, value_enum, default_value_t, global = true)]
    pub(crate) format: OutputFormat,
    #[command(subcommand)]
    pub(crate) command: TopicCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TopicCommand {
    /// Create a topic
    #[command(
        after_help = "Example:\n  weir topic create orders -p 6 -r 3 -c retention.ms=86400000"
    )]
    Create {
        /// Topic name
        topic: String,
        /// Partitions (default: the broker's num.partitions)
        #[arg(long, short = 'p')]
        partitions: Option<i32>,
        /// Replicas of each partition (default: the broker's default.replication.factor)
        #[arg(long, short = 'r')]
        replication_factor: Option<i16>,
        /// A topic config, KEY=VALUE (repeatable)
        #[arg(long, short = 'c', value_name = "KEY=VALUE", value_parser = key_value)]
        config: Vec<(String, String)>,
    },
    /// List topics
    List {
        /// Include internal topics (__consumer_offsets, __transaction_state)
        #[arg(long, short = 'i')]
        internal: bool,
    },
    /// Partitions (leader, replicas, ISR, earliest and latest offsets) and configs of topics
    Describe {
        /// Topic names
        #[arg(required = true)]
        topics: Vec<String>,
    },
    /// Delete topics and their records
    Delete {
        /// Topic names
        #[arg(required = true)]
        topics: Vec<String>,
    },
    /// Set or remove a topic's configs
    #[command(
        after_help = "Example:\n  weir topic alter-config orders --set retention.ms=3600000 --delete cleanup.policy"
    )]
    AlterConfig {
        /// Topic name
        topic: String,
        /// Sets a config, KEY=VALUE (repeatable)
        #[arg(long, value_name = "KEY=VALUE", value_parser = key_value)]
        set: Vec<(String, String)>,
        /// Reverts a config to its default (repeatable)
        #[arg(long, value_name = "KEY")]
        delete: Vec<String>,
    },
    /// Raise a topic's partition count
    AddPartitions {
        /// Topic name
        topic: String,
        /// The new total number of partitions
        #[arg(long, short = 'p')]
        partitions: i32,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ProduceArgs {
    #[command(flatten)]
    pub(crate) connect: Connect,
    /// Topic to send to
    pub(crate) topic: String,
    /// Read lines from this file instead of stdin (with a progress bar)
    #[arg(long, short = 'f')]
    pub(crate) file: Option<PathBuf>,
    /// Split each line at the first SEP into key and value (`\t` for a tab)
    #[arg(long, short = 'k', value_name = "SEP")]
    pub(crate) key_separator: Option<String>,
    /// A header on every record, KEY=VALUE (repeatable)
    #[arg(long = "header", short = 'H', value_name = "KEY=VALUE", value_parser = key_value)]
    pub(crate) headers: Vec<(String, String)>,
    /// Send every record to this partition (default: by key, or sticky without one)
    #[arg(long, short = 'p')]
    pub(crate) partition: Option<i32>,
    /// Compression codec
    #[arg(long, short = 'z', value_enum, default_value_t = CompressionArg::None)]
    pub(crate) compression: CompressionArg,
    /// Acknowledgement: 0, 1 or all
    #[arg(long, default_value = "all", value_parser = ["0", "1", "all", "-1"])]
    pub(crate) acks: String,
}

/// `compression.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum CompressionArg {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

#[derive(Debug, Args)]
pub(crate) struct ConsumeArgs {
    #[command(flatten)]
    pub(crate) connect: Connect,
    /// Topic to read
    pub(crate) topic: String,
    /// Where to start: beginning, end, offset:N or timestamp:MS (with --group: where a
    /// partition with no committed offset starts, beginning or end)
    #[arg(long, default_value = "beginning", value_parser = parse_start)]
    pub(crate) from: Start,
    /// Read as a member of this consumer group, committing what was read
    #[arg(long, short = 'g')]
    pub(crate) group: Option<String>,
    /// Only these partitions (repeatable; not with --group)
    #[arg(long, short = 'p', conflicts_with = "group")]
    pub(crate) partition: Vec<i32>,
    /// Stop after this many records
    #[arg(short = 'n', long = "count")]
    pub(crate) count: Option<u64>,
    /// Keep waiting for new records (until -n or Ctrl-C)
    #[arg(long, short = 'F')]
    pub(crate) follow: bool,
    /// `json`, or a template such as '{partition}:{offset} {key}={value}'
    #[arg(long, default_value = "{value}")]
    pub(crate) format: String,
}

/// Where a consumer starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    Beginning,
    End,
    Offset(i64),
    Timestamp(i64),
}

#[derive(Debug, Args)]
pub(crate) struct GroupArgs {
    #[command(flatten)]
    pub(crate) connect: Connect,
    /// Output format
    #[arg(long, value_enum, default_value_t, global = true)]
    pub(crate) format: OutputFormat,
    #[command(subcommand)]
    pub(crate) command: GroupCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum GroupCommand {
    /// List consumer groups
    List,
    /// Members, assignments, committed offsets and lag of groups
    Describe {
        /// Group ids
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Delete groups with no members, with their committed offsets
    Delete {
        /// Group ids
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Move a group's committed offsets (the group must have no members to --execute)
    #[command(after_help = "\
Without --execute, prints the plan and changes nothing (a dry run).

Examples:
  weir group seek audit --topic orders --to earliest
  weir group seek audit --topic orders --to timestamp:1767225600000 --execute
  weir group seek audit --all-topics --to latest --execute")]
    Seek {
        /// Group id
        group: String,
        /// Topics whose partitions move (repeatable)
        #[arg(long, short = 't', required_unless_present = "all_topics")]
        topic: Vec<String>,
        /// Every topic the group has committed offsets for
        #[arg(long, conflicts_with = "topic")]
        all_topics: bool,
        /// Target: earliest, latest, timestamp:MS or offset:N
        #[arg(long, value_parser = parse_target)]
        to: Target,
        /// Print the plan only (the default)
        #[arg(long, conflicts_with = "execute")]
        dry_run: bool,
        /// Commit the new offsets
        #[arg(long)]
        execute: bool,
    },
}

/// Where `group seek` moves a group's offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Earliest,
    Latest,
    Timestamp(i64),
    Offset(i64),
}

#[derive(Debug, Args)]
pub(crate) struct ClusterArgs {
    #[command(flatten)]
    pub(crate) connect: Connect,
    /// Output format
    #[arg(long, value_enum, default_value_t, global = true)]
    pub(crate) format: OutputFormat,
    #[command(subcommand)]
    pub(crate) command: ClusterCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ClusterCommand {
    /// Cluster id, controller, brokers and topic count
    Info,
    /// Whether the brokers answer, and the admin HTTP port's /health
    Health {
        /// The broker's admin HTTP address (its weir.admin.listener)
        #[arg(long, env = "WEIR_ADMIN", default_value = "127.0.0.1:9644")]
        admin: String,
    },
}

/// `KEY=VALUE`.
fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

fn parse_start(s: &str) -> Result<Start, String> {
    match s {
        "beginning" | "earliest" => Ok(Start::Beginning),
        "end" | "latest" => Ok(Start::End),
        _ => match tagged_number(s)? {
            ("offset", n) => Ok(Start::Offset(n)),
            ("timestamp", n) => Ok(Start::Timestamp(n)),
            _ => Err(format!(
                "{s:?}: expected beginning, end, offset:N or timestamp:MS"
            )),
        },
    }
}

fn parse_target(s: &str) -> Result<Target, String> {
    match s {
        "earliest" | "beginning" => Ok(Target::Earliest),
        "latest" | "end" => Ok(Target::Latest),
        _ => match tagged_number(s)? {
            ("offset", n) => Ok(Target::Offset(n)),
            ("timestamp", n) => Ok(Target::Timestamp(n)),
            _ => Err(format!(
                "{s:?}: expected earliest, latest, timestamp:MS or offset:N"
            )),
        },
    }
}

/// `offset:42` → ("offset", 42); a non-negative number after the colon.
fn tagged_number(s: &str) -> Result<(&str, i64), String> {
    let Some((tag, number)) = s.split_once(':') else {
        return Ok(("", 0));
    };
    let n: i64 = number
        .parse()
        .map_err(|_| format!("{s:?}: {number:?} is not a number"))?;
    if n < 0 {
        return Err(format!("{s:?}: must not be negative"));
    }
    Ok((tag, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammar_is_consistent() {
        crate::command().debug_assert();
    }

    #[test]
    fn starts_and_targets_parse() {
        assert_eq!(parse_start("offset:42"), Ok(Start::Offset(42)));
        assert_eq!(parse_start("timestamp:7"), Ok(Start::Timestamp(7)));
        assert_eq!(parse_start("end"), Ok(Start::End));
        assert!(parse_start("offset:-1").is_err());
        assert!(parse_start("middle").is_err());
        assert_eq!(parse_target("latest"), Ok(Target::Latest));
        assert_eq!(parse_target("offset:3"), Ok(Target::Offset(3)));
        assert!(parse_target("offset:x").is_err());
        assert_eq!(key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(key_value("=x").is_err());
    }

    #[test]
    fn global_options_reach_nested_subcommands() {
        let cli = Cli::try_parse_from([
            "weir",
            "topic",
            "list",
            "--brokers",
            "h:1",
            "--format",
            "json",
        ])
        .unwrap();
        match cli.command {
            Command::Topic(t) => {
                assert_eq!(t.connect.brokers, "h:1");
                assert_eq!(t.format, OutputFormat::Json);
            }
            other => panic!("{other:?}"),
        }
    }
}
