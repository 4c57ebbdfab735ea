//! The `weir` command line end to end: the real binary (`CARGO_BIN_EXE_weir`) against an
//! in-process broker, checking what it prints and its exit status.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions fail the test loudly"
)]

#[allow(
    unreachable_pub,
    reason = "support is shared by several test crates; `expect` would fail if it is fixed there"
)]
mod support;

use std::process::Stdio;
use std::time::Duration;
use support::TestBroker;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

/// What one run of `weir` printed and how it exited.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Asserts success and returns stdout.
    fn ok(self) -> String {
        assert_eq!(self.code, 0, "{self:?}");
        self.stdout
    }

    /// Asserts a failure with `code` and exactly one `weir: ...` line on stderr; returns it.
    fn failed(self, code: i32) -> String {
        assert_eq!(self.code, code, "{self:?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line on stderr: {self:?}");
        assert!(lines[0].starts_with("weir: "), "{self:?}");
        lines[0].to_string()
    }
}

/// Runs `weir ARGS` against `broker`, with `stdin` as its input.
async fn weir_in(broker: &TestBroker, args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .env("WEIR_BROKERS", broker.addr.to_string())
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("weir starts");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("weir {args:?} did not finish"))
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

async fn weir(broker: &TestBroker, args: &[&str]) -> Run {
    weir_in(broker, args, "").await
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_created_described_altered_and_deleted() {
    let broker = TestBroker::start(&[]).await;
    let out = weir(
        &broker,
        &[
            "topic",
            "create",
            "orders",
            "-p",
            "3",
            "-c",
            "retention.ms=3600000",
        ],
    )
    .await
    .ok();
    assert_eq!(out, "created topic orders\n");
    let line = weir(&broker, &["topic", "create", "orders", "-p", "3"])
        .await
        .failed(1);
    assert!(line.contains("cannot create topic orders"), "{line}");
    assert!(line.contains("TOPIC_ALREADY_EXISTS"), "{line}");

    let list = weir(&broker, &["topic", "list"]).await.ok();
    assert!(
        list.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["orders", "3", "1"]),
        "{list}"
    );

    let described = weir(&broker, &["topic", "describe", "orders"]).await.ok();
    assert!(described.starts_with("Topic: orders  Id: "), "{described}");
    assert!(described.contains("PARTITION  LEADER  REPLICAS  ISR  EARLIEST  LATEST"));
    assert!(
        described
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["retention.ms", "3600000", "DYNAMIC_TOPIC_CONFIG"]),
        "{described}"
    );
    let described = json(
        &weir(
            &broker,
            &["topic", "describe", "orders", "--format", "json"],
        )
        .await
        .ok(),
    );
    let partitions = described[0]["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 3);
    assert_eq!(partitions[2]["latest_offset"], 0);
    assert_eq!(partitions[2]["isr"], serde_json::json!([0]));

    weir(
        &broker,
        &[
            "topic",
            "alter-config",
            "orders",
            "--set",
            "retention.ms=1000",
            "--delete",
            "x.y",
        ],
    )
    .await
    .failed(1);
    weir(
        &broker,
        &[
            "topic",
            "alter-config",
            "orders",
            "--set",
            "retention.ms=1000",
        ],
    )
    .await
    .ok();
    let configs = json(
        &weir(
            &broker,
            &["topic", "describe", "orders", "--format", "json"],
        )
        .await
        .ok(),
    );
    let retention = configs[0]["configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "retention.ms")
        .cloned()
        .unwrap();
    assert_eq!(retention["value"], "1000");

    let out = weir(&broker, &["topic", "add-partitions", "orders", "-p", "5"])
        .await
        .ok();
    assert_eq!(out, "orders now has 5 partitions\n");

    let out = weir(&broker, &["topic", "delete", "orders"]).await.ok();
    assert_eq!(out, "deleted topic orders\n");
    let line = weir(&broker, &["topic", "describe", "orders"])
        .await
        .failed(1);
    assert_eq!(line, "weir: topic orders does not exist");
    let list = json(
        &weir(&broker, &["topic", "list", "--format", "json"])
            .await
            .ok(),
    );
    assert_eq!(list, serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_produced_from_stdin_are_consumed_with_a_format() {
    let broker = TestBroker::start(&[]).await;
    weir(&broker, &["topic", "create", "events", "-p", "1"])
        .await
        .ok();
    let run = weir_in(
        &broker,
        &[
            "produce",
            "events",
            "--key-separator",
            ":",
            "--header",
            "source=test",
            "--compression",
            "zstd",
        ],
        "user1:click\nuser2:view\nuser1:buy\n",
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains("produced 3 records to events"),
        "{run:?}"
    );

    let out = weir(
        &broker,
        &[
            "consume",
            "events",
            "-n",
            "2",
            "--format",
            "{topic}/{partition}@{offset} {key}={value} [{headers}]",
        ],
    )
    .await
    .ok();
    assert_eq!(
        out,
        "events/0@0 user1=click [source=test]\nevents/0@1 user2=view [source=test]\n"
    );
    // Without -n or --follow: everything there, then exit.
    let out = weir(&broker, &["consume", "events"]).await.ok();
    assert_eq!(out, "click\nview\nbuy\n");
    let out = weir(
        &broker,
        &[
            "consume", "events", "--from", "offset:2", "--format", "json",
        ],
    )
    .await
    .ok();
    let record = json(out.trim());
    assert_eq!(record["offset"], 2);
    assert_eq!(record["key"], "user1");
    assert_eq!(record["value"], "buy");
    assert_eq!(record["headers"][0]["key"], "source");
    let out = weir(&broker, &["consume", "events", "--from", "end"])
        .await
        .ok();
    assert_eq!(out, "");

    // From a file: tab-separated keys (`\t` typed as two characters), partitions by key.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lines.txt");
    let lines: String = (0..100).map(|i| format!("key-{i}\tvalue-{i}\n")).collect();
    std::fs::write(&file, lines).unwrap();
    weir(&broker, &["topic", "create", "keyed", "-p", "4"])
        .await
        .ok();
    let path = file.to_str().unwrap();
    let run = weir(
        &broker,
        &["produce", "keyed", "--file", path, "--key-separator", r"\t"],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains("produced 100 records to keyed"),
        "{run:?}"
    );
    let out = weir(&broker, &["consume", "keyed", "--format", "{key} {value}"])
        .await
        .ok();
    assert_eq!(out.lines().count(), 100, "{out}");
    for line in out.lines() {
        let (key, value) = line.split_once(' ').unwrap();
        assert_eq!(key.replace("key", "value"), value, "{out}");
    }

    // A line without the separator is refused with its number.
    let line = weir_in(
        &broker,
        &["produce", "events", "--key-separator", ":"],
        "a:1\nno separator\n",
    )
    .await
    .failed(2);
    assert!(line.contains("line 2"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_lag_and_seek() {
    let broker = TestBroker::start(&[]).await;
    weir(&broker, &["topic", "create", "clicks", "-p", "2"])
        .await
        .ok();
    let lines: String = (0..10).map(|i| format!("value-{i}\n")).collect();
    weir_in(&broker, &["produce", "clicks", "--partition", "0"], &lines)
        .await
        .ok();
    weir_in(
        &broker,
        &["produce", "clicks", "--partition", "1"],
        "x\ny\n",
    )
    .await
    .ok();

    // A member reads four records of partition 0 and commits them on its way out.
    let out = weir(
        &broker,
        &[
            "consume",
            "clicks",
            "--group",
            "readers",
            "-n",
            "4",
            "--format",
            "{partition}:{offset}",
        ],
    )
    .await
    .ok();
    assert_eq!(out.lines().count(), 4, "{out}");

    let list = weir(&broker, &["group", "list"]).await.ok();
    assert!(
        list.lines()
            .any(|l| l.starts_with("readers ") && l.contains("Empty")),
        "{list}"
    );
    let described = json(
        &weir(
            &broker,
            &["group", "describe", "readers", "--format", "json"],
        )
        .await
        .ok(),
    );
    let offsets = described[0]["offsets"].as_array().unwrap();
    let total_lag: i64 = offsets.iter().map(|o| o["lag"].as_i64().unwrap()).sum();
    let total_committed: i64 = offsets
        .iter()
        .map(|o| o["committed"].as_i64().unwrap())
        .sum();
    assert_eq!(total_committed, 4, "{described}");
    assert_eq!(total_lag, 8, "{described}");
    let table = weir(&broker, &["group", "describe", "readers"]).await.ok();
    assert!(table.contains("Group: readers  State: Empty"), "{table}");
    assert!(
        table.contains("TOPIC   PARTITION  COMMITTED  END  LAG  MEMBER"),
        "{table}"
    );

    // A dry run shows the plan and changes nothing.
    let run = weir(
        &broker,
        &[
            "group", "seek", "readers", "--topic", "clicks", "--to", "earliest",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("dry run"), "{run:?}");
    assert!(
        run.stdout.contains("TOPIC   PARTITION  CURRENT  NEW"),
        "{run:?}"
    );
    let again = json(
        &weir(
            &broker,
            &["group", "describe", "readers", "--format", "json"],
        )
        .await
        .ok(),
    );
    assert_eq!(again[0]["offsets"], described[0]["offsets"]);

    // --execute commits the plan.
    let plan = json(
        &weir(
            &broker,
            &[
                "group",
                "seek",
                "readers",
                "--topic",
                "clicks",
                "--to",
                "offset:1",
                "--execute",
                "--format",
                "json",
            ],
        )
        .await
        .ok(),
    );
    assert_eq!(plan["executed"], true);
    let after = json(
        &weir(
            &broker,
            &["group", "describe", "readers", "--format", "json"],
        )
        .await
        .ok(),
    );
    for offset in after[0]["offsets"].as_array().unwrap() {
        assert_eq!(offset["committed"], 1, "{after}");
    }
    let latest = json(
        &weir(
            &broker,
            &[
                "group",
                "seek",
                "readers",
                "--all-topics",
                "--to",
                "latest",
                "--execute",
                "--format",
                "json",
            ],
        )
        .await
        .ok(),
    );
    let news: Vec<i64> = latest["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["new"].as_i64().unwrap())
        .collect();
    assert_eq!(news, [10, 2]);
    // By time: before every record is the start, after every record the end.
    for (to, expected) in [
        ("timestamp:0", [0, 0]),
        ("timestamp:99999999999999", [10, 2]),
    ] {
        let plan = json(
            &weir(
                &broker,
                &[
                    "group", "seek", "readers", "--topic", "clicks", "--to", to, "--format", "json",
                ],
            )
            .await
            .ok(),
        );
        let news: Vec<i64> = plan["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["new"].as_i64().unwrap())
            .collect();
        assert_eq!(news, expected, "{to}: {plan}");
    }

    let out = weir(&broker, &["group", "delete", "readers"]).await.ok();
    assert_eq!(out, "deleted group readers\n");
    let line = weir(&broker, &["group", "describe", "readers"])
        .await
        .failed(1);
    assert_eq!(line, "weir: group readers does not exist");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_info_and_health() {
    let broker = TestBroker::start(&[("weir.admin.listener", "127.0.0.1:0")]).await;
    let info = json(
        &weir(&broker, &["cluster", "info", "--format", "json"])
            .await
            .ok(),
    );
    assert_eq!(info["brokers"].as_array().unwrap().len(), 1);
    assert_eq!(info["brokers"][0]["port"], broker.addr.port());
    assert_eq!(info["controller"], 0);
    let table = weir(&broker, &["cluster", "info"]).await.ok();
    assert!(table.starts_with("Cluster: "), "{table}");

    let admin = broker.admin_addr.unwrap().to_string();
    let health = weir(&broker, &["cluster", "health", "--admin", &admin])
        .await
        .ok();
    assert!(
        health
            .lines()
            .any(|l| l.starts_with("admin-http") && l.contains(" ok ")),
        "{health}"
    );
    // Port 1 on the loopback: nothing listens there.
    let line = weir(&broker, &["cluster", "health", "--admin", "127.0.0.1:1"])
        .await
        .failed(1);
    assert!(
        line.starts_with("weir: unhealthy: http://127.0.0.1:1/health"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_one_line_and_bad_arguments_exit_2() {
    let broker = TestBroker::start(&[]).await;
    // Nothing listens on port 1: a clear line, exit status 1.
    let line = weir(&broker, &["topic", "list", "--brokers", "127.0.0.1:1"])
        .await
        .failed(1);
    assert!(
        line.starts_with("weir: cannot connect to 127.0.0.1:1"),
        "{line}"
    );

    for args in [
        &["topic", "create"][..],
        &["consume", "t", "--from", "middle"],
        &["group", "seek", "g", "--to", "earliest"],
        &["topic", "frobnicate"],
        &["produce"],
    ] {
        let run = weir(&broker, args).await;
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(run.stderr.starts_with("error: "), "{args:?}: {run:?}");
    }
    let line = weir(&broker, &["consume", "t", "--format", "{nope}"])
        .await
        .failed(2);
    assert!(line.contains("{nope}"), "{line}");

    let help = weir(&broker, &["--help"]).await.ok();
    assert!(help.contains("weir topic create orders -p 3"), "{help}");
    let help = weir(&broker, &["broker", "--help"]).await.ok();
    assert!(help.contains("controller.quorum.voters"), "{help}");
    let script = weir(&broker, &["completions", "bash"]).await.ok();
    assert!(script.contains("_weir()"), "{script}");
}

/// `weir` with only flags still runs the broker, and `--log-format json` makes every log
/// line a JSON object with no colour escapes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_logs_as_json_without_colour() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg(format!("--log.dirs={}", dir.path().display()))
        .arg("--listeners=PLAINTEXT://127.0.0.1:0")
        .arg("--weir.admin.listener=none")
        .args(["--log-format", "json"])
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        let mut seen = Vec::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            assert!(!line.contains('\u{1b}'), "colour escape in {line}");
            let value = json(&line);
            let ready = value["fields"]["message"] == "weir broker ready";
            seen.push(value);
            if ready {
                return seen;
            }
        }
        panic!("the broker exited before it was ready: {seen:?}");
    })
    .await
    .expect("the broker is ready within 30 s");
    assert!(ready.len() > 1);
    child.kill().await.unwrap();
}

/// The seed scenario with the binary alone: a group member follows a topic that does not exist
/// yet, records produced meanwhile arrive, and Ctrl-C leaves the group with its offsets
/// committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_member_follows_until_ctrl_c() {
    let broker = TestBroker::start(&[]).await;
    let mut follower = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "consume",
            "user-activity",
            "--group",
            "my-consumer-group",
            "--follow",
            "--format",
            "{offset} {value}",
        ])
        .env("WEIR_BROKERS", broker.addr.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follower.stdout.take().unwrap()).lines();
    let events: String = (0..3)
        .map(|i| format!("{{\"user_id\": \"user_{i}\", \"action\": \"click\"}}\n"))
        .collect();
    // Produced at once, maybe before the member has joined: a group with no committed offset
    // starts at the beginning (the default --from), so nothing is missed.
    weir_in(&broker, &["produce", "user-activity"], &events)
        .await
        .ok();
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while seen.len() < 3 {
            seen.push(lines.next_line().await.unwrap().expect("a record line"));
        }
    })
    .await
    .expect("three records within 30 s");
    assert_eq!(
        seen[0],
        "0 {\"user_id\": \"user_0\", \"action\": \"click\"}"
    );
    assert_eq!(
        seen[2],
        "2 {\"user_id\": \"user_2\", \"action\": \"click\"}"
    );

    // While it follows: one member, owning the partition; its offsets cannot be moved.
    let described = json(
        &weir(
            &broker,
            &["group", "describe", "my-consumer-group", "--format", "json"],
        )
        .await
        .ok(),
    );
    assert_eq!(described[0]["state"], "Stable", "{described}");
    let members = described[0]["members"].as_array().unwrap();
    assert_eq!(members.len(), 1, "{described}");
    assert_eq!(
        members[0]["assignment"],
        serde_json::json!([{"topic": "user-activity", "partition": 0}])
    );
    let line = weir(
        &broker,
        &[
            "group",
            "seek",
            "my-consumer-group",
            "--topic",
            "user-activity",
            "--to",
            "earliest",
            "--execute",
        ],
    )
    .await
    .failed(1);
    assert!(line.contains("1 active member(s)"), "{line}");

    let pid = follower.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let status = tokio::time::timeout(Duration::from_secs(30), follower.wait())
        .await
        .expect("the follower stops on Ctrl-C")
        .unwrap();
    assert!(status.success(), "{status:?}");
    let described = json(
        &weir(
            &broker,
            &["group", "describe", "my-consumer-group", "--format", "json"],
        )
        .await
        .ok(),
    );
    assert_eq!(described[0]["members"], serde_json::json!([]));
    assert_eq!(described[0]["offsets"][0]["committed"], 3, "{described}");
    assert_eq!(described[0]["offsets"][0]["lag"], 0, "{described}");
}

/// Runs `weir ARGS` with no broker around, for what fails or prints before one starts.
fn weir_alone(args: &[&str]) -> Run {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The broker's flags go through clap: `weir broker --help` lists its own flags and the
/// common properties; an unknown flag is clap's argument error (exit status 2); and a bad
/// value of a property, in any of its spellings, stops the broker at start with one line
/// naming the key and the value (exit status 2).
#[test]
fn broker_flags_help_unknown_flags_and_bad_values() {
    let help = weir_alone(&["broker", "--help"]).ok();
    for flag in [
        "--config <FILE>",
        "--override <KEY=VALUE>",
        "--log-format <LOG_FORMAT>",
        "--listeners <LISTENERS>",
        "--node.id <ID>",
        "--log.dirs <DIRS>",
        "--process.roles <ROLES>",
        "--controller.quorum.voters <ID@HOST:PORT,...>",
        "--KEY=VALUE",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
    // After a property, as before clap read the broker's flags.
    let again = weir_alone(&["--log.dirs=/nowhere", "--help"]).ok();
    assert!(again.contains("--override <KEY=VALUE>"), "{again}");
    let top = weir_alone(&["--help"]).ok();
    assert!(top.contains("broker"), "{top}");

    for args in [
        &["broker", "--no-such-flag"][..],
        &["--log.dirs=/nowhere", "--bogus=1"],
        &["start", "--log.dirs"],
    ] {
        let run = weir_alone(args);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(run.stderr.starts_with("error: "), "{args:?}: {run:?}");
    }

    let dir = tempfile::tempdir().unwrap();
    let log_dirs = format!("--log.dirs={}", dir.path().display());
    for (args, key, value) in [
        (&["--group.max.size=abc"][..], "group.max.size", "abc"),
        (
            &["broker", "--log.cleanup.policy", "bogus"],
            "log.cleanup.policy",
            "bogus",
        ),
        (
            &["start", "--override", "compression.type=brotli"],
            "compression.type",
            "brotli",
        ),
        (&["--node.id", "minus-one"], "node.id", "minus-one"),
    ] {
        let mut all = args.to_vec();
        all.extend([
            log_dirs.as_str(),
            "--listeners=PLAINTEXT://127.0.0.1:0",
            "--weir.admin.listener=none",
        ]);
        let line = weir_alone(&all).failed(2);
        assert!(
            line.contains(&format!("`{key}`")) && line.contains(&format!("\"{value}\"")),
            "{args:?}: {line}"
        );
    }
    // Nothing was started: the data directory is still empty.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
