//! A cluster of real `weir` processes on loopback, for tests that need several nodes: each node
//! is a child process (`process.roles=broker,controller`) with its own client and CONTROLLER
//! ports and its own data directory under one temporary directory.
//!
//! Nodes are started, killed (`kill -9`), stopped (SIGTERM), paused (SIGSTOP/SIGCONT) and
//! restarted on the same ports and data directory. Each node's stderr (its tracing log) goes
//! to a file that survives restarts, so a failure can print what every node said. Every
//! process is killed when the [`Cluster`] is dropped, also when a test panics.
//!
//! The binary is the package's `weir` (`CARGO_BIN_EXE_weir`), or `WEIR_BIN` when set (to run
//! the same tests against a release build). Node logs use the broker's default filter (`info`,
//! openraft at `error`) whatever `RUST_LOG` the test runs with, unless `WEIR_CLUSTER_LOG`
//! says otherwise.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a node may take to log that it is ready. Generous (a debug build starts in well
/// under a second): two busy cores, every node of the quorum starting at once.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a node may take to exit after SIGTERM (its controlled shutdown is bounded by 5 s).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// The line a node logs once it has joined the cluster and serves clients.
const READY_LINE: &str = "weir broker ready";
/// The line a controller-only node logs once the quorum has a cluster id.
const CONTROLLER_READY_LINE: &str = "weir controller ready";

/// What a node runs (`process.roles`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Roles {
    /// `broker,controller`.
    Combined,
    /// `controller`: a voter, no client listener.
    Controller,
    /// `broker`: follows the controllers; `bootstrap` says whether it finds them through
    /// `controller.quorum.bootstrap.servers` instead of `controller.quorum.voters`.
    Broker {
        /// Use `controller.quorum.bootstrap.servers`.
        bootstrap: bool,
    },
}

impl Roles {
    fn is_controller(self) -> bool {
        matches!(self, Roles::Combined | Roles::Controller)
    }

    fn is_broker(self) -> bool {
        !matches!(self, Roles::Controller)
    }
}

/// One node: its ports, its data directory and, while it runs, its process.
#[derive(Debug)]
pub struct Node {
    /// `node.id`, from 1.
    pub id: i32,
    /// The client (PLAINTEXT) listener.
    pub addr: SocketAddr,
    /// The CONTROLLER listener.
    pub controller_addr: SocketAddr,
    /// `log.dirs`.
    pub dir: PathBuf,
    /// `process.roles`.
    pub roles: Roles,
    /// Where its stderr goes (appended to across restarts).
    pub log: PathBuf,
    child: Option<Child>,
    /// How many ready lines the log held when the current process was started.
    ready_lines_before: usize,
}

/// A running cluster of `weir` processes.
#[derive(Debug)]
pub struct Cluster {
    nodes: Vec<Node>,
    /// Properties every node gets after the harness's own (so a test can override them).
    props: BTreeMap<String, String>,
    bin: PathBuf,
    /// A command the binary is started under (`prlimit --nofile=64:64`), or empty.
    launcher: Vec<String>,
    // Declared last: removed after the processes are gone.
    tmp: tempfile::TempDir,
}

/// Settings every node gets unless the test overrides them: fast fencing (so tests wait
/// seconds, not Kafka's 9 s default), few offsets and transaction state partitions, no admin
/// HTTP port.
const DEFAULT_PROPS: [(&str, &str); 5] = [
    ("offsets.topic.num.partitions", "3"),
    ("transaction.state.log.num.partitions", "3"),
    ("broker.session.timeout.ms", "3000"),
    ("broker.heartbeat.interval.ms", "500"),
    ("weir.admin.listener", "none"),
];

impl Cluster {
    /// Starts `n` nodes with the default settings and waits until each is ready.
    pub fn start(n: usize) -> Self {
        Self::start_with(n, &[])
    }

    /// Starts `n` nodes with extra properties (`key`, `value`) and waits until each is ready.
    pub fn start_with(n: usize, props: &[(&str, &str)]) -> Self {
        Self::start_roles(&vec![Roles::Combined; n], props)
    }

    /// Starts one node per entry of `roles` (node ids from 1, in that order) with extra
    /// properties, and waits until each is ready.
    pub fn start_roles(roles: &[Roles], props: &[(&str, &str)]) -> Self {
        Self::start_launched(roles, props, &[])
    }

    /// Like [`Cluster::start_roles`], each node's binary started under `launcher` (a command
    /// that runs the rest of its arguments in place, such as `prlimit --nofile=64:64`), so
    /// the node's pid is still the broker's.
    pub fn start_launched(roles: &[Roles], props: &[(&str, &str)], launcher: &[&str]) -> Self {
        let n = roles.len();
        let tmp = tempfile::Builder::new()
            .prefix("weir-cluster-")
            .tempdir()
            .expect("temporary directory");
        let ports = free_ports(2 * n);
        let nodes = (0..n)
            .map(|i| {
                let id = i32::try_from(i + 1).expect("node id");
                Node {
                    id,
                    addr: SocketAddr::from(([127, 0, 0, 1], ports[2 * i])),
                    controller_addr: SocketAddr::from(([127, 0, 0, 1], ports[2 * i + 1])),
                    dir: tmp.path().join(format!("node-{id}")),
                    roles: roles[i],
                    log: tmp.path().join(format!("node-{id}.log")),
                    child: None,
                    ready_lines_before: 0,
                }
            })
            .collect();
        let mut all_props: BTreeMap<String, String> = DEFAULT_PROPS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for (k, v) in props {
            all_props.insert(k.to_string(), v.to_string());
        }
        let bin = std::env::var_os("WEIR_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_weir")));
        let mut cluster = Self {
            nodes,
            props: all_props,
            bin,
            launcher: launcher.iter().map(|a| a.to_string()).collect(),
            tmp,
        };
        cluster.start_all();
        cluster
    }

    /// Starts every node that is not running (all at once: a node is ready only once a
    /// majority of the quorum is up) and waits until each is ready.
    pub fn start_all(&mut self) -> Duration {
        let started = Instant::now();
        let ids: Vec<i32> = self
            .nodes
            .iter()
            .filter(|n| n.child.is_none())
            .map(|n| n.id)
            .collect();
        for &id in &ids {
            self.spawn(id);
        }
        for &id in &ids {
            self.wait_ready(id);
        }
        started.elapsed()
    }

    /// The nodes' ids.
    pub fn ids(&self) -> Vec<i32> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// Node `id`.
    pub fn node(&self, id: i32) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    fn node_mut(&mut self, id: i32) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    /// The process id of node `id`, while it runs.
    pub fn pid(&self, id: i32) -> Option<u32> {
        self.node(id).child.as_ref().map(Child::id)
    }

    /// The client address of node `id`.
    pub fn addr(&self, id: i32) -> SocketAddr {
        self.node(id).addr
    }

    /// `bootstrap.servers` naming every broker.
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .filter(|n| n.roles.is_broker())
            .map(|n| n.addr.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `controller.quorum.voters` for this cluster.
    pub fn voters(&self) -> String {
        self.nodes
            .iter()
            .filter(|n| n.roles.is_controller())
            .map(|n| format!("{}@{}", n.id, n.controller_addr))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The ids of the nodes whose process is running.
    pub fn running(&mut self) -> Vec<i32> {
        let mut ids = Vec::new();
        for node in &mut self.nodes {
            if let Some(child) = node.child.as_mut() {
                if matches!(child.try_wait(), Ok(None)) {
                    ids.push(node.id);
                }
            }
        }
        ids
    }

    /// Starts node `id`'s process (not waiting for it to be ready).
    pub fn spawn(&mut self, id: i32) {
        let voters = self.voters();
        let controllers: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.roles.is_controller())
            .map(|n| n.controller_addr.to_string())
            .collect();
        let bin = self.bin.clone();
        let launcher = self.launcher.clone();
        let props = self.props.clone();
        let node = self.node_mut(id);
        assert!(node.child.is_none(), "node {id} is already running");
        node.ready_lines_before = count_ready_lines(&node.log, node.roles);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("node log file");
        let mut command = match launcher.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(&bin);
                command
            }
            None => Command::new(&bin),
        };
        command.arg(format!("--node.id={}", node.id));
        match node.roles {
            Roles::Combined => command
                .arg(format!(
                    "--listeners=PLAINTEXT://{},CONTROLLER://{}",
                    node.addr, node.controller_addr
                ))
                .arg(format!("--controller.quorum.voters={voters}")),
            Roles::Controller => command
                .arg("--process.roles=controller")
                .arg(format!("--listeners=CONTROLLER://{}", node.controller_addr))
                .arg(format!("--controller.quorum.voters={voters}")),
            Roles::Broker { bootstrap } => command
                .arg("--process.roles=broker")
                .arg(format!("--listeners=PLAINTEXT://{}", node.addr))
                .arg(if bootstrap {
                    format!(
                        "--controller.quorum.bootstrap.servers={}",
                        controllers.join(",")
                    )
                } else {
                    format!("--controller.quorum.voters={voters}")
                }),
        };
        command
            .arg(format!("--log.dirs={}", node.dir.display()))
            .args(props.iter().map(|(k, v)| format!("--{k}={v}")))
            .env(
                "RUST_LOG",
                std::env::var("WEIR_CLUSTER_LOG").unwrap_or_else(|_| "info,openraft=error".into()),
            )
            // No colours in the log files.
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("node log file"))
            .stderr(log);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        node.child = Some(child);
    }

    /// Waits until node `id` logs that it is ready; on timeout or exit, fails the test with
    /// every node's log.
    pub fn wait_ready(&mut self, id: i32) -> Duration {
        match self.try_wait_ready(id) {
            Ok(took) => took,
            Err(why) => self.fail(&why),
        }
    }

    /// Waits until node `id` logs that it is ready; says why not when it exits first or takes
    /// longer than [`READY_TIMEOUT`] (the process is left as it is).
    pub fn try_wait_ready(&mut self, id: i32) -> Result<Duration, String> {
        let started = Instant::now();
        let deadline = started + READY_TIMEOUT;
        loop {
            let node = self.node_mut(id);
            if count_ready_lines(&node.log, node.roles) > node.ready_lines_before {
                return Ok(started.elapsed());
            }
            let exited = match node.child.as_mut() {
                None => Some("not running".to_string()),
                Some(child) => match child.try_wait() {
                    Ok(Some(status)) => Some(status.to_string()),
                    _ => None,
                },
            };
            if let Some(status) = exited {
                node.child = None;
                return Err(format!("node {id} exited before it was ready ({status})"));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "node {id} was not ready within {READY_TIMEOUT:?} (no ready line)"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills node `id` with SIGKILL and reaps it.
    pub fn kill9(&mut self, id: i32) {
        let node = self.node_mut(id);
        let mut child = node
            .child
            .take()
            .unwrap_or_else(|| panic!("node {id} is not running"));
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Sends SIGTERM to node `id` and waits until it has exited (failing the test after
    /// [`STOP_TIMEOUT`]); returns how long that took and whether it exited with status 0.
    pub fn sigterm(&mut self, id: i32) -> (Duration, bool) {
        let started = Instant::now();
        self.signal(id, "TERM");
        let deadline = started + STOP_TIMEOUT;
        loop {
            let node = self.node_mut(id);
            let child = node
                .child
                .as_mut()
                .unwrap_or_else(|| panic!("node {id} is not running"));
            if let Ok(Some(status)) = child.try_wait() {
                node.child = None;
                return (started.elapsed(), status.success());
            }
            if Instant::now() >= deadline {
                self.fail(&format!(
                    "node {id} did not exit within {STOP_TIMEOUT:?} of SIGTERM"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Pauses node `id` (SIGSTOP): its sockets stay open but nothing answers.
    ///
    /// Returns once every thread of the process is stopped. `kill` only queues the signal: a
    /// thread inside a system call (an `fdatasync` say) finishes it first, so a caller that
    /// looks at the node's files right after `kill` returns could see them still change.
    pub fn sigstop(&mut self, id: i32) {
        self.signal(id, "STOP");
        let pid = self.running_pid(id);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while !all_threads_stopped(pid) {
            if Instant::now() >= deadline {
                self.fail(&format!(
                    "node {id} did not stop within {STOP_TIMEOUT:?} of SIGSTOP"
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Resumes node `id` after [`Cluster::sigstop`].
    pub fn sigcont(&mut self, id: i32) {
        self.signal(id, "CONT");
    }

    fn running_pid(&self, id: i32) -> u32 {
        self.pid(id)
            .unwrap_or_else(|| panic!("node {id} is not running"))
    }

    fn signal(&self, id: i32, signal: &str) {
        let pid = self.running_pid(id);
        // `kill(1)` rather than a libc binding: the test crate needs no unsafe code for it.
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("kill(1)");
        assert!(status.success(), "kill -{signal} {pid} failed");
    }

    /// Starts node `id` again on the same ports and data directory and waits until it is
    /// ready; returns how long that took.
    pub fn restart(&mut self, id: i32) -> Duration {
        self.spawn(id);
        self.wait_ready(id)
    }

    /// [`Cluster::restart`], returning why the node did not become ready instead of failing.
    pub fn try_restart(&mut self, id: i32) -> Result<Duration, String> {
        self.spawn(id);
        self.try_wait_ready(id)
    }

    /// Stops every running node with SIGTERM, all at once (a node's controlled shutdown
    /// needs the quorum, so stopping them one by one would leave the last ones without
    /// one). A node still running [`STOP_TIMEOUT`] after the signal is killed with SIGKILL;
    /// returns those nodes' ids, so that a test can report them and go on.
    pub fn stop_all(&mut self) -> Vec<i32> {
        let ids = self.running();
        for &id in &ids {
            self.signal(id, "TERM");
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        let mut killed = Vec::new();
        for id in ids {
            loop {
                let node = self.node_mut(id);
                let Some(child) = node.child.as_mut() else {
                    break;
                };
                if let Ok(Some(_)) = child.try_wait() {
                    node.child = None;
                    break;
                }
                if Instant::now() >= deadline {
                    self.kill9(id);
                    killed.push(id);
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        killed
    }

    /// Node `id`'s log so far (all its runs).
    pub fn log(&self, id: i32) -> String {
        std::fs::read_to_string(&self.node(id).log).unwrap_or_default()
    }

    /// Every node's log, each under a header, for a failure message.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for node in &self.nodes {
            text.push_str(&format!(
                "\n===== node {} ({}, controller {}) log: {} =====\n",
                node.id,
                node.addr,
                node.controller_addr,
                node.log.display()
            ));
            text.push_str(&readable_tail(&self.log(node.id)));
        }
        text
    }

    /// Prints every node's log and fails the test with `why`.
    pub fn fail(&self, why: &str) -> ! {
        eprintln!("{}", self.logs());
        panic!("{why}");
    }

    /// The data directory of node `id`.
    pub fn dir(&self, id: i32) -> &Path {
        &self.node(id).dir
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // SIGKILL: a test that failed must not leave processes behind, and must not wait for
        // them either. A test that wants a clean stop calls `stop_all` first.
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // WEIR_CLUSTER_KEEP=1 keeps a failed test's data directories and logs to look at.
        if std::thread::panicking() && std::env::var_os("WEIR_CLUSTER_KEEP").is_some() {
            self.tmp.disable_cleanup(true);
            eprintln!("kept the cluster's data in {}", self.tmp.path().display());
        }
    }
}

/// `n` distinct free ports on 127.0.0.1: all bound at once (so none repeats), then released.
/// Ports handed out before in this test process are skipped, so clusters of tests running in
/// parallel never share one (a released port can come back from the next bind to port 0).
/// Another process could still take one in between; the window is short.
pub fn free_ports(n: usize) -> Vec<u16> {
    static HANDED_OUT: std::sync::Mutex<BTreeSet<u16>> = std::sync::Mutex::new(BTreeSet::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let mut listeners = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < n {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let port = listener.local_addr().expect("local address").port();
        // Kept bound until the end so the next bind cannot return it again.
        listeners.push(listener);
        if handed_out.insert(port) {
            ports.push(port);
        }
    }
    ports
}

/// How many ready lines the log file holds (0 when it does not exist yet).
fn count_ready_lines(log: &Path, roles: Roles) -> usize {
    let Ok(mut file) = std::fs::File::open(log) else {
        return 0;
    };
    let mut text = String::new();
    let _ = file.seek(SeekFrom::Start(0));
    let _ = file.read_to_string(&mut text);
    let line = if roles.is_broker() {
        READY_LINE
    } else {
        CONTROLLER_READY_LINE
    };
    text.matches(line).count()
}

/// The end of a node's log for a failure message: its last 150 lines of Weir's own, and only
/// the last 10 of openraft's, whose retry warnings about an unreachable peer would otherwise
/// push everything else out.
fn readable_tail(log: &str) -> String {
    let (raft, own): (Vec<&str>, Vec<&str>) = log.lines().partition(|l| l.contains(" openraft::"));
    let mut out = String::new();
    if raft.len() > 10 {
        out.push_str(&format!("[{} openraft lines omitted]\n", raft.len() - 10));
    }
    for line in &raft[raft.len().saturating_sub(10)..] {
        out.push_str(line);
        out.push('\n');
    }
    out.push_str("[weir's own lines:]\n");
    for line in &own[own.len().saturating_sub(150)..] {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Runs a call that blocks the thread (librdkafka, the harness's waits) without stalling the
/// runtime's other tasks.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// librdkafka settings for a client of the cluster at `bootstrap`: IPv4, quick metadata
/// refreshes so leader changes are seen within a second.
pub fn rd_config(bootstrap: &str) -> rdkafka::config::ClientConfig {
    let mut config = rdkafka::config::ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("socket.timeout.ms", "10000")
        .set("topic.metadata.refresh.interval.ms", "1000");
    config
}

/// Polls `check` every 100 ms until it returns `Ok`, failing the test with the cluster's logs
/// and the last value seen after `within`.
pub async fn wait_until<T, F, Fut>(
    cluster: &Cluster,
    what: &str,
    within: Duration,
    mut check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                cluster.fail(&format!("{what}: not within {within:?}; last seen: {last}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// One partition as a node's Metadata (v12) shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionView {
    /// The leader, or -1.
    pub leader: i32,
    /// Its leader epoch.
    pub leader_epoch: i32,
    /// Replicas, the preferred leader first.
    pub replicas: Vec<i32>,
    /// In-sync replicas, sorted.
    pub isr: Vec<i32>,
}

/// Partition `partition` of `topic` as node `addr` answers Metadata; `None` when the node does
/// not answer within 5 s or does not know the partition.
pub async fn partition_view(
    addr: SocketAddr,
    topic: &str,
    partition: i32,
) -> Option<PartitionView> {
    use weir_protocol::messages::MetadataRequest;
    use weir_protocol::messages::metadata_request::MetadataRequestTopic;
    let request = MetadataRequest {
        topics: Some(vec![MetadataRequestTopic {
            name: Some(topic.to_string()),
            ..MetadataRequestTopic::default()
        }]),
        allow_auto_topic_creation: false,
        ..MetadataRequest::default()
    };
    let mut client = tokio::time::timeout(Duration::from_secs(5), super::RawClient::connect(addr))
        .await
        .ok()?;
    let response = tokio::time::timeout(Duration::from_secs(5), client.send(request, 12))
        .await
        .ok()?;
    let p = response
        .topics
        .first()?
        .partitions
        .iter()
        .find(|p| p.partition_index == partition)?;
    let mut isr = p.isr_nodes.clone();
    isr.sort_unstable();
    Some(PartitionView {
        leader: p.leader_id,
        leader_epoch: p.leader_epoch,
        replicas: p.replica_nodes.clone(),
        isr,
    })
}

/// Creates `topic` with `replication_factor` replicas per partition through librdkafka's admin
/// client, failing the test with the nodes' logs if it is refused.
pub async fn create_replicated_topic(
    cluster: &Cluster,
    topic: &str,
    partitions: i32,
    replication_factor: i32,
) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = match rd_config(&cluster.bootstrap()).create() {
        Ok(admin) => admin,
        Err(e) => cluster.fail(&format!("admin client: {e}")),
    };
    let created = admin
        .create_topics(
            &[NewTopic::new(
                topic,
                partitions,
                TopicReplication::Fixed(replication_factor),
            )],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(20))),
        )
        .await;
    match created {
        Ok(results) => {
            for r in results {
                if let Err((name, code)) = r {
                    cluster.fail(&format!("creating {name}: {code}"));
                }
            }
        }
        Err(e) => cluster.fail(&format!("CreateTopics for {topic}: {e}")),
    }
    blocking(|| drop(admin));
}

/// Partition `partition` of `topic` if every node in `nodes` answers Metadata with the same
/// view of it; otherwise what each node said.
pub async fn agreed_view_once(
    cluster: &Cluster,
    nodes: &[i32],
    topic: &str,
    partition: i32,
) -> Result<PartitionView, String> {
    let mut seen = Vec::new();
    for &id in nodes {
        seen.push(partition_view(cluster.addr(id), topic, partition).await);
    }
    match seen.first() {
        Some(Some(first)) if seen.iter().all(|s| s.as_ref() == Some(first)) => Ok(first.clone()),
        _ => Err(format!("{seen:?}")),
    }
}

/// Partition `partition` of `topic` as every node in `nodes` sees it, once they agree and it
/// satisfies `accept`; fails the test with the nodes' logs after `within`.
pub async fn agreed_view(
    cluster: &Cluster,
    nodes: &[i32],
    topic: &str,
    partition: i32,
    what: &str,
    within: Duration,
    accept: impl Fn(&PartitionView) -> bool,
) -> PartitionView {
    wait_until(cluster, what, within, || async {
        match agreed_view_once(cluster, nodes, topic, partition).await {
            Ok(view) if accept(&view) => Ok(view),
            Ok(view) => Err(format!("{view:?}")),
            Err(seen) => Err(seen),
        }
    })
    .await
}

/// Creates one topic with a raw CreateTopics (v7) through the first node, failing the test
/// with the nodes' logs if it is refused.
pub async fn create_topic_raw(
    cluster: &Cluster,
    topic: weir_protocol::messages::create_topics_request::CreatableTopic,
) {
    let name = topic.name.clone();
    let mut client = super::RawClient::connect(cluster.addr(cluster.ids()[0])).await;
    let request = weir_protocol::messages::CreateTopicsRequest {
        topics: vec![topic],
        timeout_ms: 30_000,
        ..weir_protocol::messages::CreateTopicsRequest::default()
    };
    let response = client.send(request, 7).await;
    if response.topics.first().is_none_or(|t| t.error_code != 0) {
        cluster.fail(&format!("creating {name}: {response:?}"));
    }
}

/// The coordinator node `addr` names for `key` in FindCoordinator (v3; `key_type` 0 for a
/// group, 1 for a transactional id), or -1 when it names none or does not answer within 5 s.
pub async fn coordinator_of(addr: SocketAddr, key: &str, key_type: i8) -> i32 {
    let request = weir_protocol::messages::FindCoordinatorRequest {
        key: key.to_string(),
        key_type,
        ..Default::default()
    };
    let Ok(mut client) =
        tokio::time::timeout(Duration::from_secs(5), super::RawClient::connect(addr)).await
    else {
        return -1;
    };
    match tokio::time::timeout(Duration::from_secs(5), client.send(request, 3)).await {
        Ok(response) if response.error_code == 0 => response.node_id,
        _ => -1,
    }
}

/// Whether every thread of process `pid` is stopped (state `T` or `t` in
/// `/proc/<pid>/task/<tid>/stat`). A thread that exits meanwhile counts as stopped.
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return true;
    };
    tasks.flatten().all(|task| {
        // The state follows the command name, which is in parentheses and may hold any byte.
        std::fs::read_to_string(task.path().join("stat")).map_or(true, |stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next())
                .is_none_or(|state| matches!(state, 'T' | 't' | 'Z' | 'X'))
        })
    })
}
