//! One topology of `benches/scripts/streams.py` on weir-streams against a running broker;
//! `benches/kafka-streams/src/main/java/dev/weir/bench/StreamsBench.java` is the same program
//! on Apache Kafka Streams, with the same arguments.
//!
//! ```text
//! streams-bench TOPOLOGY BOOTSTRAP APPLICATION_ID INPUT OUTPUT [--table TOPIC] [--grace-ms N]
//!     [--state-dir DIR] [--max-poll-records N] [--max-uncommitted-records N]
//!     [--store-cache N|all] [--guarantee at_least_once|exactly_once_v2]
//! ```
//!
//! Keys and values are UTF-8 strings, counts 8-byte big-endian integers (Kafka's
//! `LongSerializer`), windowed keys as Kafka's windowed serdes write them. TOPOLOGY is one of
//! - `stateless`: drops values starting with `-`, upper-cases the others;
//! - `windowed-count`: count per key in 10 s tumbling windows with the grace given, every
//!   update written;
//! - `windowed-final`: the same, each window's final count only (suppressed until the window
//!   closes);
//! - `stream-table-join`: inner join with the table read from `--table`, value
//!   `stream|table`;
//! - `session`: count per key in sessions with a 5 s inactivity gap and the grace given;
//! - `count`: count per key, no windows, every update written;
//! - `fk-join`: `INPUT` read as a table of orders (value `customer|detail`) joined by foreign
//!   key with the customers of `--table`: inner results keyed `inner:ORDER`, left ones
//!   `left:ORDER`, values `order/customer` (`?` for a missing customer);
//! - `partitioned`: `stateless`, written with a `StreamPartitioner`: key `k0` to every
//!   partition, `k1` by the default partitioner, `k2` to none, others to the value's length
//!   modulo the partition count;
//! - `table-group-by`: `INPUT` read as a table of users (value `region|detail`), counted per
//!   region (`KTable::group_by`).
//!
//! Record cache: none (weir-streams has none; the Java side sets
//! `statestore.cache.max.bytes=0`); `commit.interval.ms` 100; at least once. State in memory,
//! unless `--state-dir` is given: then the stores (the `count`, the windowed count's window
//! store and the join's table) are persistent, served from the tasks' local state with at most `--store-cache` entries
//! (default 10,000, `StreamsConfig::store_cache_max_entries`) cached per store and task beside
//! those updated since the last commit, as Kafka Streams' RocksDB stores are served from its
//! state dir (`--store-cache all`: every entry in memory, the local state only written).
//! `--max-poll-records` (weir-streams only, default 1000 as Kafka's) is the most records
//! processed at a time; `--max-uncommitted-records` (weir-streams only, default 10,000) the
//! most in one batch: weir-streams flushes its outputs and commits its input offsets after
//! every batch, or every `commit.interval.ms` (100 ms here, as on the Kafka Streams side). Runs until SIGTERM or
//! SIGINT, then commits what it processed and exits. `--guarantee` is `processing.guarantee`
//! (default at least once, as on the Kafka Streams side).

use std::time::Duration;

use weir_streams::{
    Grouped, I64Serde, KafkaStreams, Nullable, ProcessingGuarantee, Produced, SessionWindowedSerde,
    SessionWindows, StreamsBuilder, StreamsConfig, StringSerde, Suppressed, TimeWindowedSerde,
    TimeWindows, Topology,
};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const USAGE: &str = "usage: streams-bench TOPOLOGY BOOTSTRAP APPLICATION_ID INPUT OUTPUT \
                     [--table TOPIC] [--grace-ms N] [--state-dir DIR] [--max-poll-records N] \
                     [--max-uncommitted-records N] [--store-cache N|all]";

/// The topologies both applications know.
const TOPOLOGIES: [&str; 9] = [
    "stateless",
    "windowed-count",
    "windowed-final",
    "stream-table-join",
    "session",
    "count",
    "fk-join",
    "partitioned",
    "table-group-by",
];

const WINDOW: Duration = Duration::from_secs(10);
const SESSION_GAP: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [
        topology,
        bootstrap,
        application_id,
        input,
        output,
        options @ ..,
    ] = args.as_slice()
    else {
        return Err(USAGE.into());
    };
    let mut table = None;
    let mut grace = Duration::ZERO;
    let mut max_poll_records = None;
    let mut max_uncommitted_records = None;
    let mut state_dir = None;
    let mut store_cache = None;
    let mut guarantee = ProcessingGuarantee::AtLeastOnce;
    let mut options = options.iter();
    while let Some(option) = options.next() {
        let value = options
            .next()
            .ok_or_else(|| format!("{option} needs a value; {USAGE}"))?;
        match option.as_str() {
            "--table" => table = Some(value.clone()),
            "--grace-ms" => {
                let ms: u64 = value
                    .parse()
                    .map_err(|e| format!("--grace-ms {value}: {e}"))?;
                grace = Duration::from_millis(ms);
            }
            "--state-dir" => state_dir = Some(std::path::PathBuf::from(value)),
            "--store-cache" if value == "all" => store_cache = Some(None),
            "--store-cache" => {
                let n: usize = value
                    .parse()
                    .map_err(|e| format!("--store-cache {value}: {e}"))?;
                store_cache = Some(Some(n));
            }
            "--max-poll-records" => {
                let n: usize = value
                    .parse()
                    .map_err(|e| format!("--max-poll-records {value}: {e}"))?;
                max_poll_records = Some(n);
            }
            "--guarantee" => {
                guarantee = match value.as_str() {
                    "at_least_once" => ProcessingGuarantee::AtLeastOnce,
                    "exactly_once_v2" => ProcessingGuarantee::ExactlyOnceV2,
                    _ => {
                        let expected = "at_least_once or exactly_once_v2";
                        return Err(format!("--guarantee {value}: {expected}").into());
                    }
                };
            }
            "--max-uncommitted-records" => {
                let n: usize = value
                    .parse()
                    .map_err(|e| format!("--max-uncommitted-records {value}: {e}"))?;
                max_uncommitted_records = Some(n);
            }
            _ => return Err(format!("unknown option {option}; {USAGE}").into()),
        }
    }

    if !TOPOLOGIES.contains(&topology.as_str()) {
        return Err(format!("unknown topology {topology}; {USAGE}").into());
    }
    if (topology == "stream-table-join" || topology == "fk-join") && table.is_none() {
        return Err(format!("{topology} needs --table TOPIC").into());
    }
    let (input, output) = (input.clone(), output.clone());
    let kind = topology.clone();
    // Built once per task by the runtime.
    let factory = move || build_topology(&kind, &input, &output, table.as_deref(), grace);

    let mut config = StreamsConfig::new(application_id, bootstrap);
    config.commit_interval = Duration::from_millis(100);
    if let Some(n) = max_poll_records {
        config.max_poll_records = n;
    }
    if let Some(n) = max_uncommitted_records {
        config.max_uncommitted_records = n;
    }
    config.state_dir = state_dir;
    config.processing_guarantee = guarantee;
    if let Some(cache) = store_cache {
        config.store_cache_max_entries = cache;
    }
    let mut streams = KafkaStreams::new(factory, config).await?;
    eprintln!("started {topology}");
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    streams
        .run_until(async {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        })
        .await?;
    let metrics = streams.metrics();
    streams.close().await?;
    eprintln!("stopped; metrics: {metrics:?}");
    Ok(())
}

/// `fk-join`: the orders of `input` (a table; value "customer|detail", no customer: a null
/// foreign key) joined by foreign key with the customers of `table`, inner (keys
/// "inner:ORDER") and left (keys "left:ORDER", "?" for a missing customer), values
/// "order/customer".
fn foreign_key_joins(builder: &StreamsBuilder, input: &str, output: &str, table: &str) {
    let orders = builder.table(input, StringSerde, Nullable(StringSerde));
    let customers = builder.table(table, StringSerde, Nullable(StringSerde));
    // No customer before the bar: a null foreign key.
    let customer_of = |order: &String| {
        let customer = order.split('|').next().unwrap_or_default();
        (!customer.is_empty()).then(|| customer.to_string())
    };
    orders
        .join_foreign_key(&customers, customer_of, |order, customer| {
            format!("{order}/{customer}")
        })
        .to_stream()
        .select_key(|key, _| format!("inner:{key}"))
        .to(output, StringSerde, Nullable(StringSerde));
    orders
        .left_join_foreign_key(&customers, customer_of, |order, customer| {
            format!("{order}/{}", customer.map_or("?", String::as_str))
        })
        .to_stream()
        .select_key(|key, _| format!("left:{key}"))
        .to(output, StringSerde, Nullable(StringSerde));
}

/// One task's topology of kind `topology` (one of [`TOPOLOGIES`]).
fn build_topology(
    topology: &str,
    input: &str,
    output: &str,
    table: Option<&str>,
    grace: Duration,
) -> std::result::Result<Topology, weir_streams::Error> {
    let builder = StreamsBuilder::new();
    if topology == "fk-join" {
        foreign_key_joins(&builder, input, output, table.unwrap_or_default());
        return builder.build();
    }
    if topology == "table-group-by" {
        let region = |_: &String, user: &String| {
            let region = user.split('|').next().unwrap_or_default();
            (region.to_string(), user.clone())
        };
        builder
            .table(input, StringSerde, Nullable(StringSerde))
            .group_by_with(region, Grouped::with(StringSerde, StringSerde))
            .count()
            .to_stream()
            .to(output, StringSerde, Nullable(I64Serde));
        return builder.build();
    }
    let stream = builder.stream(input, StringSerde, StringSerde);
    match topology {
        "stateless" => stream
            .filter(|_, value| !value.starts_with('-'))
            .map_values(|value| value.to_uppercase())
            .to(output, StringSerde, StringSerde),
        "partitioned" => stream
            .filter(|_, value| !value.starts_with('-'))
            .map_values(|value| value.to_uppercase())
            .to_with(
                output,
                Produced::with(StringSerde, StringSerde).with_stream_partitioner(
                    |_: &str, key: &String, value: &String, partitions: i32| match key.as_str() {
                        "k0" => Some((0..partitions).collect()),
                        "k1" => None,
                        "k2" => Some(Vec::new()),
                        _ => Some(vec![i32::try_from(value.len()).unwrap_or(0) % partitions]),
                    },
                ),
            ),
        "windowed-count" => stream
            .group_by_key()
            .windowed_by(TimeWindows::of_size_and_grace(WINDOW, grace))
            .count()
            .to_stream()
            .to(
                output,
                TimeWindowedSerde::new(StringSerde, WINDOW),
                Nullable(I64Serde),
            ),
        "windowed-final" => stream
            .group_by_key()
            .windowed_by(TimeWindows::of_size_and_grace(WINDOW, grace))
            .count()
            .suppress(Suppressed::until_window_closes())
            .to_stream()
            .to(
                output,
                TimeWindowedSerde::new(StringSerde, WINDOW),
                Nullable(I64Serde),
            ),
        "stream-table-join" => {
            let table = builder.table(
                table.unwrap_or_default(),
                StringSerde,
                Nullable(StringSerde),
            );
            stream
                .join_table(&table, |value: &String, table_value: &String| {
                    format!("{value}|{table_value}")
                })
                .to(output, StringSerde, StringSerde);
        }
        "count" => {
            stream
                .group_by_key()
                .count()
                .to_stream()
                .to(output, StringSerde, Nullable(I64Serde))
        }
        _ => stream
            .group_by_key()
            .windowed_by_session(SessionWindows::of_inactivity_gap_and_grace(
                SESSION_GAP,
                grace,
            ))
            .count()
            .to_stream()
            .to(
                output,
                SessionWindowedSerde::new(StringSerde),
                Nullable(I64Serde),
            ),
    }
    builder.build()
}
