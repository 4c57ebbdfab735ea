//! Clients that try to make the broker hold unbounded memory, against a real `weir` process
//! whose peak resident memory (`VmHWM` in `/proc/PID/status`) is read afterwards:
//!
//! - 200 connections each announcing a 100 MiB request and trickling it, while another
//!   connection's small requests are still answered promptly (`queued.max.request.bytes` with
//!   its reserved quarter, `weir.request.read.timeout.ms`, a read buffer that grows as bytes
//!   arrive);
//! - a client asking Fetch for 2 GiB again and again and never reading its socket
//!   (`weir.queued.max.response.bytes`, `fetch.max.bytes`).
//!
//! Each test prints the figures (`cargo test -p weir-broker --test abuse -- --nocapture`).
#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions fail the test on any error"
)]

#[expect(
    unreachable_pub,
    reason = "support items are pub for every test binary that includes the module"
)]
mod support;

use bytes::Bytes;
use std::time::{Duration, Instant};
use support::RawClient;
use support::cluster::{Cluster, Roles};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use weir_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use weir_protocol::messages::{
    ApiVersionsRequest, FetchRequest, MetadataRequest, ProduceRequest, RequestBody, RequestHeader,
};
use weir_records::{Record, RecordBatchBuilder};

const MIB: u64 = 1 << 20;

/// A field of `/proc/PID/status` in bytes (`VmHWM`: peak resident set; `VmRSS`: now;
/// `VmPeak`: peak address space).
fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap();
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    kib * 1024
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

fn produce_request(topic: &str, records: Bytes, acks: i16) -> ProduceRequest {
    ProduceRequest {
        acks,
        timeout_ms: 30_000,
        topic_data: vec![TopicProduceData {
            name: topic.into(),
            partition_data: vec![PartitionProduceData {
                index: 0,
                records: Some(records),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// One batch with one record of `size` bytes that do not compress to nothing.
fn batch_of(size: usize, seed: u8) -> Bytes {
    let value: Vec<u8> = (0..size)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    let mut builder = RecordBatchBuilder::new();
    builder.push(Record::new(0, None, Some(&value)));
    builder.build().unwrap()
}

fn fetch_everything(topic: &str) -> FetchRequest {
    FetchRequest {
        max_wait_ms: 0,
        min_bytes: 1,
        max_bytes: i32::MAX,
        session_epoch: -1,
        topics: vec![FetchTopic {
            topic: topic.into(),
            partitions: vec![FetchPartition {
                partition: 0,
                fetch_offset: 0,
                partition_max_bytes: i32::MAX,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// 200 connections each announce a 100 MiB request (the largest `socket.request.max.bytes`
/// allows by default) and trickle its body, 4 KiB every 100 ms. The broker reads one of them at
/// a time (two do not fit in the shared three quarters of `queued.max.request.bytes`, 256 MiB),
/// closes it when `weir.request.read.timeout.ms` runs out, and meanwhile answers another
/// connection's ApiVersions, Metadata and Produce requests from the reserved quarter.
///
/// Memory bound: the broker buffers at most the one request it reads (what arrived of it by the
/// deadline, ~80 KiB) and 16 KiB per other connection, about 4 MiB in all; the test allows 48 MiB
/// over the broker's resident size before the abuse. Before this change every connection
/// reserved the announced 100 MiB as soon as the size prefix arrived (20 GiB of address space,
/// `VmPeak`) and buffered everything it was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_large_requests_do_not_starve_small_ones() {
    let cluster = Cluster::start_roles(
        &[Roles::Combined],
        &[("weir.request.read.timeout.ms", "2000")],
    );
    let addr = cluster.addr(1);
    let pid = cluster.pid(1).unwrap();
    let mut client = RawClient::connect(addr).await;
    support::auto_create_topic(&mut client, "small").await;
    let before = proc_status(pid, "VmRSS");

    let started = Instant::now();
    let trickle_for = Duration::from_secs(12);
    let mut tricklers = Vec::new();
    for _ in 0..200 {
        tricklers.push(tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await.unwrap();
            let (mut reader, mut writer) = stream.into_split();
            let size: i32 = 100 << 20;
            writer.write_all(&size.to_be_bytes()).await.unwrap();
            let chunk = [0u8; 4096];
            let trickle = async {
                loop {
                    if writer.write_all(&chunk).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            };
            let closed = async {
                let mut byte = [0u8; 1];
                let _ = reader.read(&mut byte).await;
            };
            // Whether the broker closed the connection before the test stopped trickling.
            tokio::select! {
                () = closed => true,
                () = trickle => true,
                () = tokio::time::sleep(trickle_for) => false,
            }
        }));
    }

    // Small requests on another connection, while the tricklers hold the pool.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut latencies = Vec::new();
    let mut round = 0u8;
    while started.elapsed() < trickle_for - Duration::from_secs(1) {
        let t = Instant::now();
        let versions = client.send(ApiVersionsRequest::default(), 3).await;
        assert_eq!(versions.error_code, 0);
        latencies.push(t.elapsed());
        let t = Instant::now();
        let metadata = client.send(MetadataRequest::default(), 12).await;
        assert!(!metadata.brokers.is_empty());
        latencies.push(t.elapsed());
        let t = Instant::now();
        let produced = client
            .send(produce_request("small", batch_of(1000, round), 1), 9)
            .await;
        assert_eq!(produced.responses[0].partition_responses[0].error_code, 0);
        latencies.push(t.elapsed());
        round = round.wrapping_add(1);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut closed = 0;
    for trickler in tricklers {
        if trickler.await.unwrap() {
            closed += 1;
        }
    }
    let peak = proc_status(pid, "VmHWM");
    let vm_peak = proc_status(pid, "VmPeak");
    latencies.sort();
    let max = *latencies.last().unwrap();
    let median = latencies[latencies.len() / 2];
    println!(
        "trickle: {} small requests, median {median:?}, max {max:?}; {closed} of 200 trickling \
         connections closed by the broker; RSS before {:.1} MiB, peak (VmHWM) {:.1} MiB, \
         VmPeak {:.1} MiB",
        latencies.len(),
        mib(before),
        mib(peak),
        mib(vm_peak),
    );
    assert!(
        max < Duration::from_secs(2),
        "a small request waited {max:?}"
    );
    assert!(
        closed >= 2,
        "the read deadline closed {closed} trickling connections"
    );
    assert!(
        peak < before + 48 * MIB,
        "peak RSS {:.1} MiB, {:.1} MiB before",
        mib(peak),
        mib(before)
    );
    // 200 reservations of 100 MiB would be 20 GiB of address space.
    assert!(vm_peak < 8 << 30, "VmPeak {:.1} MiB", mib(vm_peak));
}

/// A client asks Fetch for 2 GiB (total and per partition) of a topic holding ~4 MiB, 2000
/// times pipelined, and never reads its socket. The broker handles requests until
/// `weir.queued.max.response.bytes` (16 MiB) of responses wait, then reads nothing more from
/// that connection, while other connections are served.
///
/// Memory bound: the response queue (16 MiB) plus the one response built past it (4 MiB) and
/// its log read (4 MiB): about 24 MiB; the test allows 64 MiB over the broker's resident size
/// before the abuse. Before this change the queue held 64 responses whatever their size (here
/// ~256 MiB; with 50 MiB fetches, 3.2 GiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_fetches_is_not_buffered_without_bound() {
    let cluster = Cluster::start_roles(&[Roles::Combined], &[]);
    let addr = cluster.addr(1);
    let pid = cluster.pid(1).unwrap();
    let mut client = RawClient::connect(addr).await;
    support::auto_create_topic(&mut client, "big").await;
    for seed in 0..4 {
        let produced = client
            .send(produce_request("big", batch_of(1_000_000, seed), -1), 9)
            .await;
        assert_eq!(produced.responses[0].partition_responses[0].error_code, 0);
    }
    // One fetch read normally: the whole topic comes back.
    let fetched = client.send(fetch_everything("big"), 12).await;
    let whole = fetched.responses[0].partitions[0]
        .records
        .as_ref()
        .map_or(0, Bytes::len);
    assert!(whole > 3_900_000, "{whole}");
    let before = proc_status(pid, "VmRSS");

    let mut requests = bytes::BytesMut::new();
    for correlation_id in 0..2000 {
        let header = RequestHeader {
            request_api_key: 1,
            request_api_version: 12,
            correlation_id,
            client_id: Some("never-reads".into()),
            ..RequestHeader::default()
        };
        weir_protocol::header::encode_request(
            &mut requests,
            &header,
            &RequestBody::from(fetch_everything("big")),
        )
        .unwrap();
    }
    let hog = TcpStream::connect(addr).await.unwrap();
    let (_hog_reader, mut hog_writer) = hog.into_split();
    // The writes block once the broker stops reading; that is the point.
    let writing = tokio::spawn(async move {
        let _ = hog_writer.write_all(&requests).await;
        hog_writer
    });
    tokio::time::sleep(Duration::from_secs(8)).await;
    // Others are still served.
    let t = Instant::now();
    let mut other = RawClient::connect(addr).await;
    let fetched = other.send(fetch_everything("big"), 12).await;
    assert_eq!(fetched.responses[0].partitions[0].error_code, 0);
    let other_took = t.elapsed();
    let peak = proc_status(pid, "VmHWM");
    println!(
        "never-reading fetcher: responses of {:.1} MiB each; RSS before {:.1} MiB, peak (VmHWM) \
         {:.1} MiB; another connection's fetch took {other_took:?}",
        mib(whole as u64),
        mib(before),
        mib(peak),
    );
    writing.abort();
    assert!(
        peak < before + 64 * MIB,
        "peak RSS {:.1} MiB, {:.1} MiB before",
        mib(peak),
        mib(before)
    );
    assert!(other_took < Duration::from_secs(5), "{other_took:?}");
}

/// `fetch.max.bytes` caps a response whatever the request asks (here 2 GiB): the first batch
/// whole (KIP-74), then no more than the cap.
#[tokio::test]
async fn fetch_max_bytes_caps_every_response() {
    let broker = support::TestBroker::start(&[("fetch.max.bytes", "1048576")]).await;
    let mut client = broker.client().await;
    support::auto_create_topic(&mut client, "capped").await;
    for seed in 0..4 {
        let produced = client
            .send(produce_request("capped", batch_of(400_000, seed), -1), 9)
            .await;
        assert_eq!(produced.responses[0].partition_responses[0].error_code, 0);
    }
    let fetched = client.send(fetch_everything("capped"), 12).await;
    let len = fetched.responses[0].partitions[0]
        .records
        .as_ref()
        .map_or(0, Bytes::len);
    // Two batches of ~400 KB fit in 1 MiB, a third does not.
    assert!((800_000..1_048_576).contains(&len), "{len}");
    broker.stop().await;
}

/// CPU time (user + system) the process has used, in clock ticks (`/proc/PID/stat`).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses and may hold spaces): state is
    // the first, utime the 12th, stime the 13th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// The broker started with 64 descriptors (soft and hard, so it cannot raise them) gets more
/// connections than it has descriptors: its accept loop waits 100 ms between attempts (one
/// warning) instead of spinning a core on EMFILE, and once the connections close it serves a
/// new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_descriptors_backs_off_and_recovers() {
    // util-linux's prlimit starts the broker with the limit already in place (a limit set on
    // it afterwards would race its start, where it raises the soft limit).
    if std::process::Command::new("prlimit")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: prlimit (util-linux) is not installed");
        return;
    }
    let cluster = Cluster::start_launched(&[Roles::Combined], &[], &["prlimit", "--nofile=64:64"]);
    let addr = cluster.addr(1);
    let pid = cluster.pid(1).unwrap();
    assert!(
        cluster.log(1).contains("open file limit"),
        "{}",
        cluster.log(1)
    );
    let mut client = RawClient::connect(addr).await;
    assert_eq!(
        client
            .send(ApiVersionsRequest::default(), 3)
            .await
            .error_code,
        0
    );
    // The kernel completes connections into the listen backlog (128 here) whether or not the
    // broker can accept them; once the backlog is full, connecting times out.
    let mut connections = Vec::new();
    for _ in 0..150 {
        match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => connections.push(stream),
            _ => break,
        }
    }
    assert!(connections.len() > 100, "{} connections", connections.len());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let used = cpu_ticks(pid) - before;
    let warnings = cluster.log(1).matches("out of file descriptors").count();
    println!(
        "descriptors: {} connections on 64 descriptors; {used} CPU ticks in 3 s while out of \
         descriptors, {warnings} warning(s)",
        connections.len()
    );
    assert!(warnings >= 1, "{}", cluster.log(1));
    // Spinning on accept would use about 300 ticks (one core, 100 Hz) in 3 s.
    assert!(used < 100, "the broker used {used} ticks in 3 s");

    drop(connections);
    drop(client);
    let mut fresh = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let mut fresh = RawClient::connect(addr).await;
            // The backlog drains first; a connection the broker accepted answers.
            let answered = tokio::time::timeout(
                Duration::from_secs(2),
                fresh.send(ApiVersionsRequest::default(), 3),
            )
            .await;
            if answered.is_ok() {
                return fresh;
            }
        }
    })
    .await
    .unwrap();
    let metadata = fresh.send(MetadataRequest::default(), 12).await;
    assert_eq!(metadata.brokers.len(), 1);
    assert!(
        cluster.log(1).contains("accepting connections again"),
        "{}",
        cluster.log(1)
    );
}
