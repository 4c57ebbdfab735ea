//! The identifiers and small value types that records and the image share.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A broker's `node.id`.
pub type BrokerId = i32;

/// The leader of a partition that has none (every replica that could lead is fenced or gone).
pub const NO_LEADER: BrokerId = -1;

/// Milliseconds on the controller's clock. The controller never reads a clock itself: its
/// driver passes `now`, so tests and the simulator control time.
pub type Millis = u64;

/// A topic's 16-byte id (Kafka's `Uuid`). All zero means "no id".
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TopicId(pub [u8; 16]);

/// Topic ids travel as 32 hex digits, readable in snapshots and logs.
impl Serialize for TopicId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{self:?}"))
    }
}

impl<'de> Deserialize<'de> for TopicId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        TopicId::from_hex(&text)
            .ok_or_else(|| serde::de::Error::custom("a topic id is 32 hex digits"))
    }
}

impl TopicId {
    /// The all-zero id, which Kafka uses for "none".
    pub const ZERO: TopicId = TopicId([0; 16]);

    /// Parses 32 hex digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        if text.len() != 32 {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(TopicId(out))
    }

    /// Whether this is the all-zero id.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 16]
    }
}

impl fmt::Debug for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Display for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// One listener a broker advertises: Kafka's `advertised.listeners` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The listener name (`PLAINTEXT`, `CONTROLLER`, ...).
    pub name: String,
    /// The host exactly as configured (never resolved).
    pub host: String,
    /// The port.
    pub port: u16,
    /// The security protocol (`PLAINTEXT`).
    pub security_protocol: String,
}

/// What a config entry belongs to, as in Kafka's ConfigRecord.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ConfigResource {
    /// The cluster-wide broker default (Kafka's broker resource with an empty name).
    ClusterDefault,
    /// One broker's dynamic config.
    Broker(BrokerId),
    /// A topic's overrides, by topic name.
    Topic(String),
}

/// A broker as the cluster knows it: what it registered and whether it may serve.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    /// The broker's id.
    pub broker_id: BrokerId,
    /// A random id the broker process picks at start: a different one means a new process.
    pub incarnation_id: [u8; 16],
    /// The epoch the controller gave this registration; heartbeats and requests carry it so a
    /// stale process is recognised.
    pub broker_epoch: i64,
    /// Where clients and other brokers reach it.
    pub endpoints: Vec<Endpoint>,
    /// `broker.rack`, if set.
    pub rack: Option<String>,
    /// A fenced broker leads nothing and is not shown to clients.
    pub fenced: bool,
    /// The broker asked to shut down and is handing its leaderships away.
    pub in_controlled_shutdown: bool,
    /// The metadata offset of the registration: the broker is unfenced once it has caught up to
    /// here (it then knows every partition it was given).
    pub registered_at_offset: u64,
}

impl BrokerRegistration {
    /// Whether the broker may lead partitions: registered, unfenced and not shutting down.
    pub fn is_active(&self) -> bool {
        !self.fenced && !self.in_controlled_shutdown
    }

    /// The endpoint of the listener named `name`.
    pub fn endpoint(&self, name: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.name == name)
    }
}

/// One partition's replica set and leadership.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRegistration {
    /// Every broker that holds a replica, the preferred leader first.
    pub replicas: Vec<BrokerId>,
    /// The in-sync replicas: a subset of `replicas`, containing the leader when there is one.
    pub isr: Vec<BrokerId>,
    /// The leader, or [`NO_LEADER`].
    pub leader: BrokerId,
    /// Grows by one with every change of leader (clients and followers fence stale leaders by
    /// it).
    pub leader_epoch: i32,
    /// Grows by one with every change of the registration (AlterPartition checks it).
    pub partition_epoch: i32,
    /// Replicas a reassignment is adding (KIP-455): in `replicas` until the reassignment
    /// completes or is cancelled. Empty when no reassignment is in progress.
    #[serde(default)]
    pub adding_replicas: Vec<BrokerId>,
    /// Replicas a reassignment will drop once every target replica is in the ISR: in
    /// `replicas`. The target is `replicas` without these.
    #[serde(default)]
    pub removing_replicas: Vec<BrokerId>,
    /// The replicas before the reassignment in progress, in their order (what cancelling it
    /// returns to, preferred leader included): `replicas` without `adding_replicas`. Not
    /// Kafka's (whose cancellation keeps the order of `replicas`, which starts with the
    /// target's); empty when no reassignment is in progress.
    #[serde(default)]
    pub original_replicas: Vec<BrokerId>,
}

impl PartitionRegistration {
    /// Whether a reassignment is in progress.
    pub fn is_reassigning(&self) -> bool {
        !self.adding_replicas.is_empty() || !self.removing_replicas.is_empty()
    }

    /// The replicas a reassignment moves to: `replicas` without `removing_replicas` (all of
    /// `replicas` when none is in progress).
    pub fn target_replicas(&self) -> Vec<BrokerId> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.removing_replicas.contains(r))
            .collect()
    }

    /// The replicas before the reassignment in progress (all of `replicas` when none is).
    pub fn replicas_before_reassignment(&self) -> Vec<BrokerId> {
        if self.is_reassigning() {
            self.original_replicas.clone()
        } else {
            self.replicas.clone()
        }
    }

    /// Replicas on brokers that cannot serve: not registered or fenced.
    pub fn offline_replicas(&self, image: &crate::MetadataImage) -> Vec<BrokerId> {
        self.replicas
            .iter()
            .copied()
            .filter(|id| image.broker(*id).is_none_or(|b| b.fenced))
            .collect()
    }
}

/// A block of producer ids handed to one broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerIdBlock {
    /// The first id of the block.
    pub first: i64,
    /// How many ids it holds.
    pub len: i64,
}
