//! The foreign-key table join (Kafka's KIP-213): each row of the left table joins the row of
//! the right table whose key the left row's value names, with the two tables partitioned
//! each its own way.
//!
//! The design is Kafka's: the two sides talk through two internal topics.
//! 1. A left row's update sends *subscriptions*, keyed by foreign key, to the registration
//!    topic `KTABLE-FK-JOIN-SUBSCRIPTION-REGISTRATION-<n>-topic`, co-partitioned with the
//!    right table, so that a subscription reaches the task that holds its foreign key.
//! 2. That task keeps the subscriptions in the subscription store
//!    (`KTABLE-FK-JOIN-SUBSCRIPTION-STATE-STORE-<n>`, logged, keys in Kafka's `CombinedKey`
//!    format) and answers with the right row's value on the response topic
//!    `KTABLE-FK-JOIN-SUBSCRIPTION-RESPONSE-<n>-topic`, on the partition of the left row's
//!    task, which the subscription names.
//! 3. A right row's update answers every subscription to its key the same way.
//! 4. The left row's task joins a response with the row's current value, unless the row
//!    moved to another foreign key since the subscription (a hash in the response tells):
//!    that response is stale, and the new foreign key's answer is on its way.
//!
//! Records are in Kafka's formats (`SubscriptionWrapper` version 1,
//! `SubscriptionResponseWrapper` version 0), with two differences, both recorded in
//! docs/decisions/state-stores.md:
//! - the hash is Kafka's murmur3 of the serialized *foreign key*, not of the whole left
//!   value, so that a left table without a value serde (a `map_values`, another join's
//!   result) can be joined; an update that keeps its foreign key may then be joined twice
//!   while answers are in flight, with the same final result;
//! - a right value that serializes to no bytes is flagged (bit `0x40` of the response's
//!   version byte), where Kafka's format would read it as no value.
//!
//! The left task keeps, per row, the foreign key it subscribed to and the last answer it
//! accepted (the subscriber store, `KTABLE-FK-JOIN-SUBSCRIBER-STATE-STORE-<n>`, logged; Kafka
//! has none). The foreign key tells which subscription a row's update replaces, where Kafka
//! reads the row's old value, which the tables computed by joins here do not forward; the
//! answer lets the result table be looked up by key, as joins downstream do.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::Error;
use crate::kstream::deserialize_failed;
use crate::ktable::{Change, Getter, KTable};
use crate::partitioner::{
    PartitionerRef, StreamPartitioner, choose_single_partition, partition_for_key,
};
use crate::store::{
    log_change, register_changelog, serialize_failed, serialize_key, split_timestamped_value,
    timestamped_value,
};
use crate::topology::{
    BuilderState, Context, Data, InternalTopic, InternalTopicKind, Node, RawRecord, Record,
    Restorer, SerdeRef,
};

/// Kafka's `SubscriptionWrapper.Instruction`: what the right side does with a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Instruction {
    /// Drop the subscription, answer nothing: the left row moved to another foreign key,
    /// whose subscription answers.
    DeleteKeyNoPropagate = 0,
    /// Drop the subscription and answer with no value: the left row was deleted.
    DeleteKeyAndPropagate = 1,
    /// Keep the subscription and answer, with no value when the right row is missing: the
    /// left row's earlier result, if any, must be replaced.
    PropagateNullIfNoFkValAvailable = 2,
    /// Keep the subscription and answer only when the right row exists: the left row had no
    /// result that a missing right row would have to delete.
    PropagateOnlyIfFkValAvailable = 3,
}

impl Instruction {
    fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            0 => Self::DeleteKeyNoPropagate,
            1 => Self::DeleteKeyAndPropagate,
            2 => Self::PropagateNullIfNoFkValAvailable,
            3 => Self::PropagateOnlyIfFkValAvailable,
            _ => return None,
        })
    }

    fn deletes(self) -> bool {
        matches!(
            self,
            Self::DeleteKeyNoPropagate | Self::DeleteKeyAndPropagate
        )
    }
}

/// Kafka's murmur3 x64 128-bit hash (`Murmur3.hash128`, seed 104729), as two words.
type Hash = [u64; 2];

const SUBSCRIPTION_VERSION: u8 = 1;
const RESPONSE_VERSION: u8 = 0;
/// Bit 7 of a version byte: the record carries no hash (its left row is deleted).
const NO_HASH: u8 = 0x80;
/// Bit 6 of a response's version byte, this crate's own: the right value is present though
/// it serialized to no bytes.
const EMPTY_VALUE: u8 = 0x40;

/// A subscription, as it travels on the registration topic (its key is the foreign key) and
/// sits in the subscription store.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Subscription {
    hash: Option<Hash>,
    instruction: Instruction,
    primary_key: Vec<u8>,
    primary_partition: i32,
}

impl Subscription {
    /// Kafka's `SubscriptionWrapper` version 1: the version (bit 7 set without a hash), the
    /// instruction, the hash's two words (big-endian), the primary key, the primary
    /// partition (4 bytes, big-endian).
    fn encode(&self) -> Vec<u8> {
        let mut data = Vec::with_capacity(2 + 16 + self.primary_key.len() + 4);
        data.push(version_byte(SUBSCRIPTION_VERSION, self.hash));
        data.push(self.instruction as u8);
        push_hash(&mut data, self.hash);
        data.extend_from_slice(&self.primary_key);
        data.extend_from_slice(&self.primary_partition.to_be_bytes());
        data
    }

    fn decode(data: &[u8]) -> Result<Self, Error> {
        let invalid = |why: &str| Error::ForeignKeyJoinRecord(format!("subscription: {why}"));
        let [version, instruction, rest @ ..] = data else {
            return Err(invalid("shorter than 2 bytes"));
        };
        if version & !NO_HASH != SUBSCRIPTION_VERSION {
            return Err(invalid(&format!("version {}", version & !NO_HASH)));
        }
        let instruction = Instruction::from_byte(*instruction)
            .ok_or_else(|| invalid(&format!("instruction {instruction}")))?;
        let (hash, rest) = read_hash(*version, rest).ok_or_else(|| invalid("truncated hash"))?;
        let (primary_key, partition) = rest
            .split_last_chunk::<4>()
            .ok_or_else(|| invalid("no primary partition"))?;
        Ok(Self {
            hash,
            instruction,
            primary_key: primary_key.to_vec(),
            primary_partition: i32::from_be_bytes(*partition),
        })
    }
}

/// Kafka's `SubscriptionResponseWrapper` version 0: the version (bit 7 set without a hash),
/// the hash's two words, the right value's bytes (none: no value).
fn encode_response(hash: Option<Hash>, foreign: Option<&[u8]>) -> Vec<u8> {
    let foreign_len = foreign.map_or(0, <[u8]>::len);
    let mut data = Vec::with_capacity(1 + 16 + foreign_len);
    let mut version = version_byte(RESPONSE_VERSION, hash);
    if foreign.is_some_and(<[u8]>::is_empty) {
        version |= EMPTY_VALUE;
    }
    data.push(version);
    push_hash(&mut data, hash);
    data.extend_from_slice(foreign.unwrap_or_default());
    data
}

/// The hash and right value of an [`encode_response`] record.
fn decode_response(data: &[u8]) -> Result<(Option<Hash>, Option<&[u8]>), Error> {
    let invalid = |why: &str| Error::ForeignKeyJoinRecord(format!("response: {why}"));
    let [version, rest @ ..] = data else {
        return Err(invalid("empty"));
    };
    if version & !(NO_HASH | EMPTY_VALUE) != RESPONSE_VERSION {
        return Err(invalid(&format!("version {}", version & 0x3f)));
    }
    let (hash, foreign) = read_hash(*version, rest).ok_or_else(|| invalid("truncated hash"))?;
    let present = !foreign.is_empty() || version & EMPTY_VALUE != 0;
    Ok((hash, present.then_some(foreign)))
}

/// A version byte: bit 7 set when there is no hash.
fn version_byte(version: u8, hash: Option<Hash>) -> u8 {
    if hash.is_some() {
        version
    } else {
        version | NO_HASH
    }
}

/// The hash's two words, big-endian (Kafka's `putLong`), if there is one.
fn push_hash(data: &mut Vec<u8>, hash: Option<Hash>) {
    if let Some([high, low]) = hash {
        data.extend_from_slice(&high.to_be_bytes());
        data.extend_from_slice(&low.to_be_bytes());
    }
}

/// The hash after a version byte (none when its bit 7 is set), and the bytes after it.
fn read_hash(version: u8, data: &[u8]) -> Option<(Option<Hash>, &[u8])> {
    if version & NO_HASH != 0 {
        return Some((None, data));
    }
    let (high, rest) = data.split_first_chunk::<8>()?;
    let (low, rest) = rest.split_first_chunk::<8>()?;
    Some((
        Some([u64::from_be_bytes(*high), u64::from_be_bytes(*low)]),
        rest,
    ))
}

/// Kafka's `Murmur3.hash128`: MurmurHash3 x64 128-bit with seed 104729, the two words as
/// Kafka's `long[2]`.
fn murmur3_128(data: &[u8]) -> Hash {
    const C1: u64 = 0x87c3_7b91_1142_53d5;
    const C2: u64 = 0x4cf5_ad43_2745_937f;
    const SEED: u64 = 104_729;
    fn fmix(mut k: u64) -> u64 {
        k ^= k >> 33;
        k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
        k ^= k >> 33;
        k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        k ^ (k >> 33)
    }
    let mix_k1 = |k1: u64| k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
    let mix_k2 = |k2: u64| k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
    let (mut h1, mut h2) = (SEED, SEED);
    let mut blocks = data.chunks_exact(16);
    for block in &mut blocks {
        let (k1, k2) = block.split_at(8);
        let k1 = u64::from_le_bytes(k1.try_into().unwrap_or_default());
        let k2 = u64::from_le_bytes(k2.try_into().unwrap_or_default());
        h1 ^= mix_k1(k1);
        h1 = h1
            .rotate_left(27)
            .wrapping_add(h2)
            .wrapping_mul(5)
            .wrapping_add(0x52dc_e729);
        h2 ^= mix_k2(k2);
        h2 = h2
            .rotate_left(31)
            .wrapping_add(h1)
            .wrapping_mul(5)
            .wrapping_add(0x3849_5ab5);
    }
    let tail = blocks.remainder();
    let word = |bytes: &[u8]| {
        bytes
            .iter()
            .rev()
            .fold(0_u64, |word, byte| (word << 8) | u64::from(*byte))
    };
    if tail.len() > 8 {
        h2 ^= mix_k2(word(&tail[8..]));
    }
    if !tail.is_empty() {
        h1 ^= mix_k1(word(&tail[..tail.len().min(8)]));
    }
    let len = data.len() as u64;
    h1 ^= len;
    h2 ^= len;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = fmix(h1);
    h2 = fmix(h2);
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    [h1, h2]
}

/// Kafka's `CombinedKey` bytes: the foreign key's length (4 bytes, big-endian), its bytes,
/// then the primary key's.
fn combined_key(foreign: &[u8], primary: &[u8]) -> Result<Vec<u8>, Error> {
    let length = u32::try_from(foreign.len()).map_err(|_| Error::DataSize {
        expected: u32::MAX as usize,
        actual: foreign.len(),
    })?;
    let mut key = Vec::with_capacity(4 + foreign.len() + primary.len());
    key.extend_from_slice(&length.to_be_bytes());
    key.extend_from_slice(foreign);
    key.extend_from_slice(primary);
    Ok(key)
}

/// [`combined_key`]'s parts: the foreign key's bytes and the primary key's.
fn split_combined_key(key: &[u8]) -> Result<(&[u8], &[u8]), Error> {
    let (length, rest) = key.split_first_chunk::<4>().ok_or(Error::DataSize {
        expected: 4,
        actual: key.len(),
    })?;
    let length = u32::from_be_bytes(*length) as usize;
    if rest.len() < length {
        return Err(Error::DataSize {
            expected: 4 + length,
            actual: key.len(),
        });
    }
    Ok(rest.split_at(length))
}

/// A subscription as the right side keeps it: where to answer, with which hash.
#[derive(Debug, Clone)]
struct Subscribed {
    hash: Option<Hash>,
    primary_partition: i32,
}

/// The subscription store: by foreign key, then primary key, both serialized (the right
/// side never needs the primary key's type).
type Subscriptions = Arc<Mutex<BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Subscribed>>>>;

/// What the left side keeps per row: the foreign key it subscribed to (Kafka reads it from
/// the row's old value instead, which tables computed by joins do not forward here), and the
/// last answer it accepted for that key.
#[derive(Debug, Clone)]
struct Subscriber<VO> {
    /// The foreign key, serialized, and its hash. `None`: a left join's row whose foreign
    /// key is null; it subscribes to nothing, accepts no answer, and joins with no right
    /// row.
    subscribed: Option<(Vec<u8>, Hash)>,
    accepted: Option<Accepted<VO>>,
}

/// An accepted answer: the right value (`None`: no right row), the answer's timestamp.
#[derive(Debug, Clone)]
struct Accepted<VO> {
    foreign: Option<VO>,
    timestamp: i64,
}

/// The subscriber store: by left key.
type Subscribers<K, VO> = Arc<Mutex<BTreeMap<K, Subscriber<VO>>>>;

/// What the join's processors share: serdes, topics, stores, extractor and joiner.
struct Join<K, V, KO, VO, VR> {
    key_serde: SerdeRef<K>,
    foreign_key_serde: SerdeRef<KO>,
    foreign_value_serde: SerdeRef<VO>,
    registration_topic: String,
    response_topic: String,
    subscription_changelog: String,
    subscriber_changelog: String,
    subscribers: Subscribers<K, VO>,
    extractor: Mutex<Extractor<K, V, KO>>,
    joiner: Mutex<Joiner<V, VO, VR>>,
    /// [`TableJoined`]'s partitioners: the left table's, which places answers, and the
    /// right table's, which places subscriptions.
    partitioner: Option<PartitionerRef<K, ()>>,
    other_partitioner: Option<PartitionerRef<KO, ()>>,
}

/// Takes a left row's foreign key from its key and value (`None`: null).
type Extractor<K, V, KO> = Box<dyn FnMut(&K, &V) -> Option<KO> + Send>;

/// Joins a left value with its right row's (`None`: missing); `None`: no result.
type Joiner<V, VO, VR> = Box<dyn FnMut(&V, Option<&VO>) -> Option<VR> + Send>;

impl<K: Data + Ord, V: Data, KO: Data, VO: Data, VR: Data> Join<K, V, KO, VO, VR> {
    /// The serialized foreign key of a left row; `None` when it is null.
    fn foreign_key(&self, key: &K, value: &V) -> Result<Option<Vec<u8>>, Error> {
        let Some(foreign_key) = (self.extractor.lock())(key, value) else {
            return Ok(None);
        };
        self.foreign_key_serde
            .serialize(&foreign_key)
            .map(Some)
            .map_err(|e| serialize_failed(&self.registration_topic, "key", e))
    }

    /// Step 1: the subscriptions of one left row's update, with Kafka's instructions. A null
    /// foreign key (Kafka 4's rules): an inner join treats the row as deleted (Kafka logs
    /// and skips it, unsubscribing it from its previous foreign key, whose result is
    /// deleted); a left join unsubscribes it and forwards `joiner(value, None)` to `result`
    /// at once, since no right row can answer it (Kafka sends it through the topics to be
    /// answered with nothing).
    fn subscribe(
        &self,
        ctx: &mut Context,
        record: &Record<K, Change<V>>,
        left: bool,
        result: &Node<K, Change<VR>>,
    ) -> Result<(), Error> {
        // `None`: the row was deleted; `Some(None)`: its foreign key is null.
        let new = record
            .value
            .new
            .as_ref()
            .map(|v| self.foreign_key(&record.key, v))
            .transpose()?;
        let new = if left { new } else { new.flatten().map(Some) };
        let primary_key = serialize_key(&self.registration_topic, &*self.key_serde, &record.key)?;
        let mut subscribers = self.subscribers.lock();
        let old = subscribers.get(&record.key).map(|s| {
            s.subscribed
                .as_ref()
                .map(|(foreign_key, _)| foreign_key.clone())
        });
        let old_key = old.as_ref().and_then(Option::as_ref);
        let hash = new.as_ref().and_then(Option::as_deref).map(murmur3_128);
        let mut sends: Vec<(&[u8], Instruction)> = Vec::with_capacity(2);
        match (old_key, &new) {
            (old_key, Some(Some(new_key))) => {
                let moved = old_key.filter(|old| *old != new_key);
                if let Some(old) = moved {
                    sends.push((old, Instruction::DeleteKeyNoPropagate));
                }
                // A left join answers every row; a moved row must replace its result even
                // when the new foreign key has no row. A new row, or one that kept its
                // foreign key, had no result a missing right row would unset.
                sends.push((
                    new_key,
                    if left || moved.is_some() {
                        Instruction::PropagateNullIfNoFkValAvailable
                    } else {
                        Instruction::PropagateOnlyIfFkValAvailable
                    },
                ));
            }
            // A deleted row: the answer deletes its result, if it had one. (Kafka's left
            // join sends a subscription without a foreign key for it instead; the result is
            // the same tombstone.)
            (Some(old), None) => sends.push((old, Instruction::DeleteKeyAndPropagate)),
            // A left join's row whose foreign key became null: its result is forwarded below.
            (Some(old), Some(None)) => sends.push((old, Instruction::DeleteKeyNoPropagate)),
            (None, None | Some(None)) => {}
        }
        if old.is_none() && new.is_none() {
            return Ok(());
        }
        let primary_partition = if sends.is_empty() {
            ctx.partition
        } else {
            self.answer_partition(ctx, &record.key, &primary_key)?
        };
        for (foreign_key, instruction) in sends {
            let subscription = Subscription {
                hash,
                instruction,
                primary_key: primary_key.clone(),
                primary_partition,
            };
            let partition = self.subscription_partition(ctx, foreign_key)?;
            ctx.outputs.push(RawRecord {
                topic: self.registration_topic.clone(),
                partition,
                offset: -1,
                key: Some(Bytes::copy_from_slice(foreign_key)),
                value: Some(Bytes::from(subscription.encode())),
                timestamp: record.timestamp,
            });
        }
        // A row that kept its foreign key keeps its answer: it is the right row's value.
        if old != new {
            let logged = match &new {
                // Subscribed to its foreign key, or (a left join's null key) to nothing.
                Some(foreign_key) => {
                    let subscribed = foreign_key.clone().zip(hash);
                    let key = subscribed.as_ref().map(|(key, _)| &key[..]);
                    let logged = subscriber_value(key, None, record.timestamp)?;
                    let subscriber = Subscriber {
                        subscribed,
                        accepted: None,
                    };
                    subscribers.insert(record.key.clone(), subscriber);
                    Some(logged)
                }
                None => {
                    subscribers.remove(&record.key);
                    None
                }
            };
            let changelog = &self.subscriber_changelog;
            log_change(ctx, changelog, primary_key, logged, record.timestamp);
        }
        // Released first: what `result` forwards to may look this join's result up.
        drop(subscribers);
        let joined = match (&new, &old) {
            (Some(None), _) => match &record.value.new {
                Some(value) => (self.joiner.lock())(value, None),
                None => None,
            },
            // A null-keyed row deleted: its result goes.
            (None, Some(None)) => None,
            _ => return Ok(()),
        };
        result.forward(
            ctx,
            Record {
                key: record.key.clone(),
                value: Change {
                    new: joined,
                    old: None,
                },
                timestamp: record.timestamp,
            },
        )
    }

    /// Steps 2 and 3: an answer to the left row `primary_key` in partition
    /// `primary_partition`.
    fn respond(
        &self,
        ctx: &mut Context,
        (primary_key, primary_partition): (&[u8], i32),
        hash: Option<Hash>,
        foreign: Option<&[u8]>,
        timestamp: i64,
    ) {
        ctx.outputs.push(RawRecord {
            topic: self.response_topic.clone(),
            partition: primary_partition,
            offset: -1,
            key: Some(Bytes::copy_from_slice(primary_key)),
            value: Some(Bytes::from(encode_response(hash, foreign))),
            timestamp,
        });
    }

    /// The partition a left row's answers go to: its task's, or with the left table's
    /// partitioner, the one it chooses for the row's key (the producer's default partitioner
    /// when it chooses none). Kafka applies that partitioner to the answer as it is sent;
    /// the subscription carries the result here, which is the same partition.
    fn answer_partition(&self, ctx: &Context, key: &K, serialized: &[u8]) -> Result<i32, Error> {
        let Some(partitioner) = &self.partitioner else {
            return Ok(ctx.partition);
        };
        let counts = &ctx.partition_counts;
        let topic = &self.response_topic;
        Ok(
            match choose_single_partition(&**partitioner, counts, topic, key, &())? {
                Some(partition) => partition,
                None => partition_for_key(serialized, counts.count(topic)?),
            },
        )
    }

    /// The partition of a subscription to `foreign_key` (serialized): the producer's
    /// default partitioner's, as the right table's records were partitioned, unless the
    /// right table has a partitioner, which gets the foreign key read back.
    fn subscription_partition(&self, ctx: &Context, foreign_key: &[u8]) -> Result<i32, Error> {
        let Some(partitioner) = &self.other_partitioner else {
            return Ok(-1);
        };
        let topic = &self.registration_topic;
        let typed = self
            .foreign_key_serde
            .deserialize(foreign_key)
            .map_err(|e| {
                Error::Partitioner(format!(
                    "the foreign key sent to {topic} does not read back: {e}"
                ))
            })?;
        let chosen =
            choose_single_partition(&**partitioner, &ctx.partition_counts, topic, &typed, &())?;
        Ok(chosen.unwrap_or(-1))
    }

    fn serialize_foreign_value(&self, value: &VO) -> Result<Vec<u8>, Error> {
        self.foreign_value_serde
            .serialize(value)
            .map_err(|e| serialize_failed(&self.response_topic, "value", e))
    }

    /// Step 2: a subscription arrives at the task of its right row.
    fn receive_subscription(
        &self,
        ctx: &mut Context,
        raw: &RawRecord,
        subscriptions: &Subscriptions,
        other: &Getter<KO, VO>,
    ) -> Result<(), Error> {
        let Some((foreign_key, value)) = key_and_value(raw, "subscription") else {
            return Ok(());
        };
        let subscription =
            Subscription::decode(value).map_err(|e| deserialize_failed(raw, "value", e))?;
        // Not counted in process_total: the left row was counted where it entered.
        ctx.observe(&raw.topic, raw.timestamp);
        let primary_key = &subscription.primary_key;
        {
            let mut subscriptions = subscriptions.lock();
            if subscription.instruction.deletes() {
                if let Some(keys) = subscriptions.get_mut(&foreign_key[..]) {
                    keys.remove(primary_key);
                    if keys.is_empty() {
                        subscriptions.remove(&foreign_key[..]);
                    }
                }
            } else {
                let subscribed = Subscribed {
                    hash: subscription.hash,
                    primary_partition: subscription.primary_partition,
                };
                subscriptions
                    .entry(foreign_key.to_vec())
                    .or_default()
                    .insert(primary_key.clone(), subscribed);
            }
        }
        let changelog = &self.subscription_changelog;
        let key = combined_key(foreign_key, primary_key)
            .map_err(|e| serialize_failed(changelog, "key", e))?;
        let logged =
            (!subscription.instruction.deletes()).then(|| timestamped_value(raw.timestamp, value));
        log_change(ctx, changelog, key, logged, raw.timestamp);

        let typed = self
            .foreign_key_serde
            .deserialize(foreign_key)
            .map_err(|e| deserialize_failed(raw, "key", e))?;
        let foreign = other(&typed);
        let timestamp = foreign
            .as_ref()
            .map_or(raw.timestamp, |(_, t)| raw.timestamp.max(*t));
        let foreign = foreign
            .map(|(value, _)| self.serialize_foreign_value(&value))
            .transpose()?;
        let to = (&primary_key[..], subscription.primary_partition);
        let hash = subscription.hash;
        match subscription.instruction {
            Instruction::DeleteKeyNoPropagate => {}
            Instruction::DeleteKeyAndPropagate => self.respond(ctx, to, hash, None, timestamp),
            Instruction::PropagateNullIfNoFkValAvailable => {
                self.respond(ctx, to, hash, foreign.as_deref(), timestamp);
            }
            Instruction::PropagateOnlyIfFkValAvailable => {
                if let Some(foreign) = &foreign {
                    self.respond(ctx, to, hash, Some(foreign), timestamp);
                }
            }
        }
        Ok(())
    }

    /// Step 3: a right row's update answers every subscription to its key.
    fn answer_subscribers(
        &self,
        ctx: &mut Context,
        record: &Record<KO, Change<VO>>,
        subscriptions: &Subscriptions,
    ) -> Result<(), Error> {
        let topic = &self.registration_topic;
        let foreign_key = serialize_key(topic, &*self.foreign_key_serde, &record.key)?;
        let subscriptions = subscriptions.lock();
        let Some(subscribers) = subscriptions.get(&foreign_key) else {
            return Ok(());
        };
        let foreign = record
            .value
            .new
            .as_ref()
            .map(|value| self.serialize_foreign_value(value))
            .transpose()?;
        for (primary_key, subscribed) in subscribers {
            let to = (&primary_key[..], subscribed.primary_partition);
            let hash = subscribed.hash;
            self.respond(ctx, to, hash, foreign.as_deref(), record.timestamp);
        }
        Ok(())
    }

    /// Step 4: an answer arrives at the left row's task. It is joined with the row's current
    /// value, unless it answers a foreign key the row has left; returns the result.
    fn receive_answer(
        &self,
        ctx: &mut Context,
        raw: &RawRecord,
        this: &Getter<K, V>,
    ) -> Result<Option<Record<K, Change<VR>>>, Error> {
        let Some((key, value)) = key_and_value(raw, "foreign-key join answer") else {
            return Ok(None);
        };
        let (hash, foreign) =
            decode_response(value).map_err(|e| deserialize_failed(raw, "value", e))?;
        ctx.observe(&raw.topic, raw.timestamp);
        let primary_key = self
            .key_serde
            .deserialize(key)
            .map_err(|e| deserialize_failed(raw, "key", e))?;
        // This table's lookup reads its own store, never this join's subscribers.
        let mut subscribers = self.subscribers.lock();
        let subscriber = subscribers.get_mut(&primary_key);
        // A row without a subscriber takes the answer to its deletion (no hash); one whose
        // foreign key is null takes none.
        let expected = match &subscriber {
            None => Some(None),
            Some(subscriber) => subscriber.subscribed.as_ref().map(|(_, hash)| Some(*hash)),
        };
        if expected != Some(hash) {
            tracing::trace!(topic = %raw.topic, offset = raw.offset, "stale answer dropped");
            return Ok(None);
        }
        let foreign = foreign
            .map(|data| self.foreign_value_serde.deserialize(data))
            .transpose()
            .map_err(|e| deserialize_failed(raw, "value", e))?;
        // A row without a subscriber was deleted: its answer (no hash) deletes its result.
        let new = match (&subscriber, this(&primary_key)) {
            (Some(_), Some((value, _))) => (self.joiner.lock())(&value, foreign.as_ref()),
            _ => None,
        };
        if let Some(subscriber) = subscriber {
            let subscribed = subscriber.subscribed.as_ref().map(|(key, _)| &key[..]);
            let logged = subscriber_value(subscribed, Some(value), raw.timestamp)?;
            subscriber.accepted = Some(Accepted {
                foreign,
                timestamp: raw.timestamp,
            });
            let changelog = &self.subscriber_changelog;
            log_change(ctx, changelog, key.to_vec(), Some(logged), raw.timestamp);
        }
        Ok(Some(Record {
            key: primary_key,
            value: Change { new, old: None },
            timestamp: raw.timestamp,
        }))
    }

    /// The result of the row `key`: its current value joined with the answer it accepted.
    fn result(&self, key: &K, this: &Getter<K, V>) -> Option<(VR, i64)> {
        let (value, timestamp) = this(key)?;
        let subscribers = self.subscribers.lock();
        let subscriber = subscribers.get(key)?;
        if subscriber.subscribed.is_none() {
            // A left join's row with a null foreign key.
            return Some(((self.joiner.lock())(&value, None)?, timestamp));
        }
        let accepted = subscriber.accepted.as_ref()?;
        let joined = (self.joiner.lock())(&value, accepted.foreign.as_ref())?;
        Some((joined, timestamp.max(accepted.timestamp)))
    }
}

/// The key and value of an internal record of the join; `None`, logged, for a record that
/// lacks either (this crate never writes one).
fn key_and_value<'a>(raw: &'a RawRecord, what: &str) -> Option<(&'a Bytes, &'a Bytes)> {
    if let (Some(key), Some(value)) = (&raw.key, &raw.value) {
        return Some((key, value));
    }
    tracing::warn!(
        topic = %raw.topic,
        partition = raw.partition,
        offset = raw.offset,
        "skipping a {what} without a key or a value"
    );
    None
}

/// A subscriber's value as the task holds it: the timestamp (the answer's, or the
/// subscription's before any; its changelog holds it as the record's), then the foreign key
/// length-prefixed as in a `CombinedKey`, then the accepted answer in the response format,
/// if any. A null foreign key (a left join's row, which takes no answer) is nothing after
/// the timestamp: a `CombinedKey` has at least its 4-byte length.
fn subscriber_value(
    foreign_key: Option<&[u8]>,
    answer: Option<&[u8]>,
    timestamp: i64,
) -> Result<Vec<u8>, Error> {
    let value = match foreign_key {
        Some(foreign_key) => combined_key(foreign_key, answer.unwrap_or_default())?,
        None => Vec::new(),
    };
    Ok(timestamped_value(timestamp, &value))
}

/// How a foreign-key join is named and partitioned (Kafka's `TableJoined`, KIP-775).
///
/// - A name makes the join's internal topics and stores `<name>-subscription-registration-topic`,
///   `<name>-subscription-response-topic`, `<name>-subscription-store` (Kafka's) and
///   `<name>-subscriber-store` (this crate's), instead of generated names that shift when the
///   topology changes.
/// - The partitioners are for tables whose topics were not partitioned by the producer's
///   default partitioner: `partitioner` is the left table's, which places the answers to
///   a left row, and `other_partitioner` the right table's, which places the subscriptions
///   to a foreign key so that they reach the task that holds it. Each must choose a single
///   partition, or `None` for the default partitioner. The values they get are `()`: Kafka
///   gives them null.
pub struct TableJoined<K, KO> {
    pub(crate) name: Option<String>,
    pub(crate) partitioner: Option<PartitionerRef<K, ()>>,
    pub(crate) other_partitioner: Option<PartitionerRef<KO, ()>>,
}

impl<K, KO> Default for TableJoined<K, KO> {
    fn default() -> Self {
        Self {
            name: None,
            partitioner: None,
            other_partitioner: None,
        }
    }
}

impl<K, KO> std::fmt::Debug for TableJoined<K, KO> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableJoined")
            .field("name", &self.name)
            .field("partitioner", &self.partitioner.is_some())
            .field("other_partitioner", &self.other_partitioner.is_some())
            .finish()
    }
}

impl<K: 'static, KO: 'static> TableJoined<K, KO> {
    /// The left table's and the right table's partitioners (Kafka's `TableJoined.with`).
    pub fn with(
        partitioner: impl StreamPartitioner<K, ()>,
        other_partitioner: impl StreamPartitioner<KO, ()>,
    ) -> Self {
        Self::default()
            .with_partitioner(partitioner)
            .with_other_partitioner(other_partitioner)
    }

    /// Named `name` (Kafka's `TableJoined.as`).
    pub fn named(name: &str) -> Self {
        Self::default().with_name(name)
    }

    /// Names the join.
    pub fn with_name(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }

    /// The left table's partitioner.
    pub fn with_partitioner(mut self, partitioner: impl StreamPartitioner<K, ()>) -> Self {
        self.partitioner = Some(Arc::new(partitioner));
        self
    }

    /// The right table's partitioner.
    pub fn with_other_partitioner(
        mut self,
        other_partitioner: impl StreamPartitioner<KO, ()>,
    ) -> Self {
        self.other_partitioner = Some(Arc::new(other_partitioner));
        self
    }
}

/// Builds the join of `this` with `other` (see the module's documentation). `left`: a left
/// join, whose joiner gets `None` for a missing right row; an inner join's returns `None`
/// for it.
pub(crate) fn foreign_key_join<K, V, KO, VO, VR>(
    this: &KTable<K, V>,
    other: &KTable<KO, VO>,
    extractor: impl FnMut(&K, &V) -> Option<KO> + Send + 'static,
    left: bool,
    joiner: impl FnMut(&V, Option<&VO>) -> Option<VR> + Send + 'static,
    table_joined: TableJoined<K, KO>,
) -> KTable<K, VR>
where
    K: Data + Ord,
    V: Data,
    KO: Data + Ord,
    VO: Data,
    VR: Data,
{
    let node: Node<K, Change<VR>> = Node::new();
    let mut state = this.state.lock();
    let TableJoined {
        name,
        partitioner,
        other_partitioner,
    } = table_joined;
    // Kafka's names: a named join's, else generated ones (four, here: this crate's
    // subscriber store has a name of its own).
    let name_of = |state: &mut BuilderState, suffix: &str, prefix: &str| match &name {
        Some(name) => format!("{name}-{suffix}"),
        None => state.generated_name(prefix),
    };
    let registration = name_of(
        &mut state,
        "subscription-registration",
        "KTABLE-FK-JOIN-SUBSCRIPTION-REGISTRATION",
    );
    let result = |getter: Getter<K, VR>| KTable {
        node: node.clone(),
        state: Arc::clone(&this.state),
        store_name: None,
        getter,
        grace_ms: None,
        key_serde: this.key_serde.clone(),
        value_serde: None,
        // The result is keyed and partitioned as this table.
        lineage: this.lineage.clone(),
        old_values: false,
    };
    let (key_serde, foreign_key_serde, foreign_value_serde) =
        match (&this.key_serde, &other.key_serde, &other.value_serde) {
            (Some(k), Some(ko), Some(vo)) => (Arc::clone(k), Arc::clone(ko), Arc::clone(vo)),
            (k, ko, _) => {
                let missing = if k.is_none() {
                    "this table's key serde"
                } else if ko.is_none() {
                    "the other table's key serde"
                } else {
                    "the other table's value serde"
                };
                state.errors.push(format!(
                    "{registration}: a foreign-key join sends its subscriptions and answers \
                     through topics, which need {missing}"
                ));
                return result(Arc::new(|_: &K| None));
            }
        };
    let subscription_store = name_of(
        &mut state,
        "subscription-store",
        "KTABLE-FK-JOIN-SUBSCRIPTION-STATE-STORE",
    );
    let response = name_of(
        &mut state,
        "subscription-response",
        "KTABLE-FK-JOIN-SUBSCRIPTION-RESPONSE",
    );
    let subscriber_store = name_of(
        &mut state,
        "subscriber-store",
        "KTABLE-FK-JOIN-SUBSCRIBER-STATE-STORE",
    );
    let (registration_topic, response_topic) =
        (format!("{registration}-topic"), format!("{response}-topic"));
    let subscriptions: Subscriptions = Arc::default();
    let subscribers: Subscribers<K, VO> = Arc::default();
    let join = Arc::new(Join {
        subscription_changelog: register_changelog(
            &mut state,
            &subscription_store,
            restore_subscriptions(&subscriptions),
        ),
        subscriber_changelog: register_changelog(
            &mut state,
            &subscriber_store,
            restore_subscribers(&subscribers, &key_serde, &foreign_value_serde),
        ),
        subscribers,
        key_serde,
        foreign_key_serde,
        foreign_value_serde,
        registration_topic: registration_topic.clone(),
        response_topic: response_topic.clone(),
        extractor: Mutex::new(Box::new(extractor)),
        joiner: Mutex::new(Box::new(joiner)),
        partitioner,
        other_partitioner,
    });
    // Both keep the timestamp in front of their values, as Kafka's timestamped stores.
    for store in [&subscription_store, &subscriber_store] {
        state.timestamped_changelogs.insert(store.clone());
    }
    for topic in [&registration_topic, &response_topic] {
        state.internal_topics.insert(InternalTopic {
            name: topic.clone(),
            kind: InternalTopicKind::Repartition,
        });
    }
    // A subscription must reach the task of its right row: the registration topic has the
    // right table's partition count.
    let mut copartitioned = other.lineage.sources.clone();
    copartitioned.insert(registration_topic.clone());
    state.copartition(&registration, &copartitioned);

    let (subscribing, forwarding) = (Arc::clone(&join), node.clone());
    this.node
        .add_sink(move |ctx, record| subscribing.subscribe(ctx, &record, left, &forwarding));

    let (receiving, other_getter, subscribed) = (
        Arc::clone(&join),
        Arc::clone(&other.getter),
        Arc::clone(&subscriptions),
    );
    state.add_source(
        &registration_topic,
        Box::new(move |ctx: &mut Context, raw: &RawRecord| {
            receiving.receive_subscription(ctx, raw, &subscribed, &other_getter)
        }),
    );

    let answering = Arc::clone(&join);
    other
        .node
        .add_sink(move |ctx, record| answering.answer_subscribers(ctx, &record, &subscriptions));

    let (resolving, this_getter, next) =
        (Arc::clone(&join), Arc::clone(&this.getter), node.clone());
    state.add_source(
        &response_topic,
        Box::new(move |ctx: &mut Context, raw: &RawRecord| {
            match resolving.receive_answer(ctx, raw, &this_getter)? {
                Some(record) => next.forward(ctx, record),
                None => Ok(()),
            }
        }),
    );
    drop(state);

    let this_getter = Arc::clone(&this.getter);
    result(Arc::new(move |key: &K| join.result(key, &this_getter)))
}

/// The restorer of the subscription store.
fn restore_subscriptions(subscriptions: &Subscriptions) -> Restorer {
    let subscriptions = Arc::clone(subscriptions);
    Box::new(move |key, value| {
        let Some(key) = key else {
            return Ok(());
        };
        let (foreign_key, primary_key) = split_combined_key(key)?;
        let mut subscriptions = subscriptions.lock();
        match value {
            Some(value) => {
                let (_, subscription) = split_timestamped_value(value)?;
                let subscription = Subscription::decode(subscription)?;
                subscriptions
                    .entry(foreign_key.to_vec())
                    .or_default()
                    .insert(
                        primary_key.to_vec(),
                        Subscribed {
                            hash: subscription.hash,
                            primary_partition: subscription.primary_partition,
                        },
                    );
            }
            None => {
                if let Some(keys) = subscriptions.get_mut(foreign_key) {
                    keys.remove(primary_key);
                    if keys.is_empty() {
                        subscriptions.remove(foreign_key);
                    }
                }
            }
        }
        Ok(())
    })
}

/// The restorer of the subscriber store.
fn restore_subscribers<K: Data + Ord, VO: Data>(
    subscribers: &Subscribers<K, VO>,
    key_serde: &SerdeRef<K>,
    foreign_value_serde: &SerdeRef<VO>,
) -> Restorer {
    let (subscribers, keys, values) = (
        Arc::clone(subscribers),
        Arc::clone(key_serde),
        Arc::clone(foreign_value_serde),
    );
    Box::new(move |key, value| {
        let Some(key) = key else {
            return Ok(());
        };
        let key = keys.deserialize(key)?;
        let Some(value) = value else {
            subscribers.lock().remove(&key);
            return Ok(());
        };
        let (timestamp, value) = split_timestamped_value(value)?;
        if value.is_empty() {
            let subscriber = Subscriber {
                subscribed: None,
                accepted: None,
            };
            subscribers.lock().insert(key, subscriber);
            return Ok(());
        }
        let (foreign_key, answer) = split_combined_key(value)?;
        let accepted = match answer {
            [] => None,
            answer => {
                let (_, foreign) = decode_response(answer)?;
                let foreign = foreign.map(|data| values.deserialize(data)).transpose()?;
                Some(Accepted { foreign, timestamp })
            }
        };
        let subscriber = Subscriber {
            subscribed: Some((foreign_key.to_vec(), murmur3_128(foreign_key))),
            accepted,
        };
        subscribers.lock().insert(key, subscriber);
        Ok(())
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::serdes::StringSerde;
    use crate::topology::{DeserializationExceptionHandler, Task, Topology};
    use crate::{Nullable, StreamsBuilder};

    /// Kafka's `Murmur3.hash128` on the same inputs (kafka-streams 4.4.0, printed with
    /// `Long.toUnsignedString(h, 16)`): every tail length class, and bytes above 0x7f.
    #[test]
    fn murmur3_matches_kafkas_hash128() {
        let high_bytes: Vec<u8> = (0..31).map(|i| 0x80_u8.wrapping_add(i * 7)).collect();
        let cases: [(&[u8], Hash); 8] = [
            (b"", [0x9d2764a018e32942, 0x8c3cf3b035938518]),
            (b"a", [0x3361634e7e0f5188, 0xe9c7dda24eae326b]),
            (b"abc", [0x8cc66bdf24a3b65e, 0xe942bed9d38bee40]),
            (b"customer-42", [0x3b815c1dc2e7cbfb, 0xaa943a9e7db13718]),
            (
                b"0123456789abcdef",
                [0x1a6e941ec6a76967, 0xd7d82808f505d6b1],
            ),
            (
                b"0123456789abcdefX",
                [0xc31e5ea436db745d, 0xd00872afcf95362c],
            ),
            (
                b"hello, murmur3 x64 128!",
                [0xd4d066b147db0be1, 0x2358ab47b5c803f0],
            ),
            (&high_bytes, [0x1a53eb2965065d9d, 0x082a47c11e0c4f7f]),
        ];
        for (data, expected) in cases {
            assert_eq!(
                murmur3_128(data),
                expected,
                "{}",
                String::from_utf8_lossy(data)
            );
        }
    }

    /// Kafka's `SubscriptionWrapper` v1 and `SubscriptionResponseWrapper` v0 layouts, read
    /// back; anything cut short or of another version is an error, not a panic.
    #[test]
    fn subscriptions_and_responses_are_in_kafkas_formats() {
        let subscription = Subscription {
            hash: Some([1, 2]),
            instruction: Instruction::PropagateNullIfNoFkValAvailable,
            primary_key: b"pk".to_vec(),
            primary_partition: 3,
        };
        let data = subscription.encode();
        let mut expected = vec![1, 2];
        expected.extend_from_slice(&1_u64.to_be_bytes());
        expected.extend_from_slice(&2_u64.to_be_bytes());
        expected.extend_from_slice(b"pk");
        expected.extend_from_slice(&3_i32.to_be_bytes());
        assert_eq!(data, expected);
        assert_eq!(Subscription::decode(&data).unwrap(), subscription);
        let deleted = Subscription {
            hash: None,
            instruction: Instruction::DeleteKeyAndPropagate,
            primary_key: Vec::new(),
            primary_partition: 0,
        };
        assert_eq!(deleted.encode(), [0x81, 1, 0, 0, 0, 0]);
        assert_eq!(Subscription::decode(&deleted.encode()).unwrap(), deleted);
        for cut in 0..data.len() - 2 {
            assert!(Subscription::decode(&data[..cut]).is_err(), "cut at {cut}");
        }
        assert!(
            Subscription::decode(&[2, 0, 0, 0, 0, 0]).is_err(),
            "version 2"
        );
        assert!(
            Subscription::decode(&[0x81, 4, 0, 0, 0, 0]).is_err(),
            "instruction 4"
        );

        let response = encode_response(Some([1, 2]), Some(b"v"));
        assert_eq!(response[0], 0);
        assert_eq!(response.len(), 1 + 16 + 1);
        assert_eq!(
            decode_response(&response).unwrap(),
            (Some([1, 2]), Some(&b"v"[..]))
        );
        assert_eq!(encode_response(None, None), [0x80]);
        assert_eq!(decode_response(&[0x80]).unwrap(), (None, None));
        // A present value of no bytes is flagged, where Kafka's format would lose it.
        let empty = encode_response(None, Some(b""));
        assert_eq!(empty, [0xc0]);
        assert_eq!(decode_response(&empty).unwrap(), (None, Some(&b""[..])));
        assert!(decode_response(&[]).is_err());
        assert!(decode_response(&response[..10]).is_err(), "truncated hash");
        assert!(decode_response(&[1]).is_err(), "version 1");
    }

    #[test]
    fn combined_keys_split_back_and_refuse_a_short_key() {
        let key = combined_key(b"fk", b"pk").unwrap();
        assert_eq!(key, [0, 0, 0, 2, b'f', b'k', b'p', b'k']);
        assert_eq!(split_combined_key(&key).unwrap(), (&b"fk"[..], &b"pk"[..]));
        assert!(split_combined_key(&[0, 0]).is_err());
        assert!(
            split_combined_key(&[0, 0, 0, 9, 1]).is_err(),
            "longer than the key"
        );
    }

    /// Orders joined with their customers, by the customer named in the order's value.
    fn orders_with_customers() -> Topology {
        let builder = StreamsBuilder::new();
        let orders = builder.table("orders", StringSerde, Nullable(StringSerde));
        let customers = builder.table("customers", StringSerde, Nullable(StringSerde));
        orders
            .join_foreign_key(
                &customers,
                |customer: &String| customer.clone(),
                |order, customer| format!("{order}/{customer}"),
            )
            .to_stream()
            .to("out", StringSerde, Nullable(StringSerde));
        builder.build().unwrap()
    }

    fn record(topic: &str, key: &str, value: &str, timestamp: i64) -> RawRecord {
        RawRecord {
            topic: topic.to_string(),
            partition: 0,
            offset: 0,
            key: Some(Bytes::from(key.to_string())),
            value: Some(Bytes::from(value.to_string())),
            timestamp,
        }
    }

    /// The joined records among `outputs`, as key and value.
    fn joined(outputs: &[RawRecord]) -> Vec<(String, String)> {
        outputs
            .iter()
            .filter(|r| r.topic == "out")
            .map(|r| {
                let text = |b: &Option<Bytes>| String::from_utf8(b.clone().unwrap().to_vec());
                (text(&r.key).unwrap(), text(&r.value).unwrap_or_default())
            })
            .collect()
    }

    /// Processes `input` and, as the test driver does, every record it leads to on the
    /// join's topics; returns every output.
    fn run(task: &mut Task, input: RawRecord) -> Vec<RawRecord> {
        let mut pending = VecDeque::from([input]);
        let mut outputs = Vec::new();
        while let Some(record) = pending.pop_front() {
            task.process(&record).unwrap();
            for output in task.take_outputs() {
                if task.topology().is_repartition_topic(&output.topic) {
                    pending.push_back(output.clone());
                }
                outputs.push(output);
            }
        }
        outputs
    }

    /// The subscription and response stores come back with a restored task: an update of
    /// the other table answers the rows that refer to it, as before the restore, and not
    /// those whose foreign key moved away; and the result is still looked up by key.
    #[test]
    fn a_restored_task_still_follows_the_other_table() {
        let handler = DeserializationExceptionHandler::default;
        let mut task = Task::new(orders_with_customers(), 0, handler());
        let mut outputs = Vec::new();
        for input in [
            record("customers", "c1", "alice", 1),
            record("customers", "c2", "carol", 2),
            record("orders", "o1", "c1", 3),
            record("orders", "o2", "c1", 4),
            // o2 moves from c1 to c2: its subscription to c1 ends.
            record("orders", "o2", "c2", 5),
        ] {
            outputs.extend(run(&mut task, input));
        }
        assert_eq!(
            joined(&outputs),
            [("o1", "c1/alice"), ("o2", "c1/alice"), ("o2", "c2/carol")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
        );

        let mut restored = Task::new(orders_with_customers(), 0, handler());
        for r in &outputs {
            if let Some(store) = r.topic.strip_suffix("-changelog") {
                restored
                    .restore(store, r.key.as_deref(), r.value.as_deref())
                    .unwrap();
            }
        }
        let mut outputs = run(&mut restored, record("customers", "c1", "bob", 6));
        outputs.extend(run(&mut restored, record("customers", "c2", "dave", 7)));
        assert_eq!(
            joined(&outputs),
            [("o1", "c1/bob"), ("o2", "c2/dave")].map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }

    /// Orders left-joined with their customers; an order without a customer (an empty
    /// value) has a null foreign key.
    fn orders_left_with_customers() -> Topology {
        let builder = StreamsBuilder::new();
        let orders = builder.table("orders", StringSerde, Nullable(StringSerde));
        let customers = builder.table("customers", StringSerde, Nullable(StringSerde));
        orders
            .left_join_foreign_key(
                &customers,
                |customer: &String| (!customer.is_empty()).then(|| customer.clone()),
                |order, customer| format!("{order}/{}", customer.map_or("?", String::as_str)),
            )
            .to_stream()
            .to("out", StringSerde, Nullable(StringSerde));
        builder.build().unwrap()
    }

    /// The results among `outputs`, tombstones as `None`.
    fn results(outputs: &[RawRecord]) -> Vec<(String, Option<String>)> {
        let text = |b: &Bytes| String::from_utf8(b.to_vec()).unwrap();
        outputs
            .iter()
            .filter(|r| r.topic == "out")
            .map(|r| (text(r.key.as_ref().unwrap()), r.value.as_ref().map(text)))
            .collect()
    }

    /// A left join's row whose foreign key turns null drops the answer to its earlier
    /// subscription, and its null key survives a restore: deleting the row afterwards
    /// deletes its result.
    #[test]
    fn a_null_foreign_key_takes_no_answer_and_is_restored() {
        let handler = DeserializationExceptionHandler::default;
        let mut task = Task::new(orders_left_with_customers(), 0, handler());
        run(&mut task, record("customers", "c1", "alice", 1));
        // o1 subscribes to c1, then its key turns null, before the subscription arrives.
        task.process(&record("orders", "o1", "c1", 2)).unwrap();
        task.process(&record("orders", "o1", "", 3)).unwrap();
        let mut outputs = task.take_outputs();
        let registrations: Vec<RawRecord> = outputs
            .iter()
            .filter(|r| task.topology().is_repartition_topic(&r.topic))
            .cloned()
            .collect();
        assert_eq!(registrations.len(), 2, "c1, then c1 dropped");
        for subscription in registrations {
            outputs.extend(run(&mut task, subscription));
        }
        assert_eq!(
            results(&outputs),
            [("o1".to_string(), Some("/?".to_string()))],
            "the null key's result at once; c1's answer came after: dropped"
        );

        let mut restored = Task::new(orders_left_with_customers(), 0, handler());
        for r in &outputs {
            if let Some(store) = r.topic.strip_suffix("-changelog") {
                restored
                    .restore(store, r.key.as_deref(), r.value.as_deref())
                    .unwrap();
            }
        }
        let mut outputs = run(&mut restored, record("customers", "c1", "bob", 4));
        let mut deleted = record("orders", "o1", "", 5);
        deleted.value = None;
        outputs.extend(run(&mut restored, deleted));
        assert_eq!(results(&outputs), [("o1".to_string(), None)]);
    }

    /// A row that moves to another foreign key before the answer for the first arrives
    /// drops that answer: the result never pairs the row with its old foreign key's row.
    #[test]
    fn an_answer_for_a_foreign_key_the_row_left_is_dropped() {
        let handler = DeserializationExceptionHandler::default;
        let mut task = Task::new(orders_with_customers(), 0, handler());
        run(&mut task, record("customers", "c1", "alice", 1));
        run(&mut task, record("customers", "c2", "carol", 2));
        // o1 subscribes to c1, then moves to c2, before any subscription is delivered.
        task.process(&record("orders", "o1", "c1", 3)).unwrap();
        task.process(&record("orders", "o1", "c2", 4)).unwrap();
        let subscriptions = task.take_outputs();
        let registrations: Vec<&RawRecord> = subscriptions
            .iter()
            .filter(|r| {
                r.topic
                    .starts_with("KTABLE-FK-JOIN-SUBSCRIPTION-REGISTRATION-")
            })
            .collect();
        assert_eq!(registrations.len(), 3, "c1, then c1 dropped and c2");
        let mut outputs = Vec::new();
        for subscription in registrations {
            outputs.extend(run(&mut task, subscription.clone()));
        }
        let answers = outputs
            .iter()
            .filter(|r| r.topic.starts_with("KTABLE-FK-JOIN-SUBSCRIPTION-RESPONSE-"))
            .count();
        assert_eq!(
            answers, 2,
            "c1 answered o1's first subscription, c2 its second"
        );
        assert_eq!(
            joined(&outputs),
            [("o1".to_string(), "c2/carol".to_string())],
            "the answer of c1 came after o1 moved: dropped"
        );
    }
}
