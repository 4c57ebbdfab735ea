//! The topic registry: names, ids, partition counts and per-topic config overrides, persisted
//! in `<first log dir>/weir-topics.json` so topics survive restarts.
//!
//! Writes go to a temporary file that is fsynced and renamed over the old one, and the
//! directory is fsynced, so a crash leaves either the old or the new registry.

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use weir_protocol::{ErrorCode, Uuid};

const FILE_NAME: &str = "weir-topics.json";

/// Kafka's limit on topic name length.
const MAX_TOPIC_NAME_LEN: usize = 249;

/// A topic's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Topic {
    /// The topic name.
    pub(crate) name: String,
    /// The topic id (hex of the 16 bytes).
    #[serde(with = "uuid_hex")]
    pub(crate) id: Uuid,
    /// Number of partitions.
    pub(crate) partitions: i32,
    /// Config overrides by Kafka property name (`retention.ms`, `cleanup.policy`, ...).
    #[serde(default)]
    pub(crate) configs: BTreeMap<String, String>,
    /// Whether the topic is internal (`__consumer_offsets`).
    #[serde(default)]
    pub(crate) internal: bool,
}

mod uuid_hex {
    use serde::{Deserialize, Deserializer, Serializer};
    use weir_protocol::Uuid;

    pub(super) fn serialize<S: Serializer>(id: &Uuid, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{id:?}"))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Uuid, D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; 16];
        if text.len() != 32 {
            return Err(serde::de::Error::custom("topic id must be 32 hex digits"));
        }
        for (i, byte) in out.iter_mut().enumerate() {
            let pair = text
                .get(2 * i..2 * i + 2)
                .ok_or_else(|| serde::de::Error::custom("bad topic id"))?;
            *byte = u8::from_str_radix(pair, 16).map_err(serde::de::Error::custom)?;
        }
        Ok(Uuid(out))
    }
}

/// Why a topic operation failed; each maps to one Kafka error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// The name breaks Kafka's topic naming rules.
    #[error("topic name {0:?} is invalid: {1}")]
    InvalidName(String, &'static str),
    /// A topic with the name exists.
    #[error("topic {0} already exists")]
    AlreadyExists(String),
    /// No topic with the name exists.
    #[error("topic {0} does not exist")]
    Unknown(String),
    /// The partition count is not positive or would shrink the topic.
    #[error("invalid partition count {0}")]
    InvalidPartitions(i32),
    /// The registry file could not be read or written.
    #[error("cannot persist the topic registry: {0}")]
    Storage(String),
}

impl TopicError {
    /// The Kafka error code for this error.
    pub(crate) fn code(&self) -> ErrorCode {
        match self {
            TopicError::InvalidName(..) => ErrorCode::INVALID_TOPIC_EXCEPTION,
            TopicError::AlreadyExists(_) => ErrorCode::TOPIC_ALREADY_EXISTS,
            TopicError::Unknown(_) => ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
            TopicError::InvalidPartitions(_) => ErrorCode::INVALID_PARTITIONS,
            TopicError::Storage(_) => ErrorCode::KAFKA_STORAGE_ERROR,
        }
    }
}

/// Checks a topic name against Kafka's rules.
pub(crate) fn validate_name(name: &str) -> Result<(), TopicError> {
    let invalid = |why| Err(TopicError::InvalidName(name.to_string(), why));
    if name.is_empty() {
        return invalid("empty");
    }
    if name == "." || name == ".." {
        return invalid("'.' and '..' are not allowed");
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return invalid("longer than 249 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return invalid("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// A new random topic id (never the all-zero "no id").
pub(crate) fn new_topic_id() -> Uuid {
    let state = std::collections::hash_map::RandomState::new();
    let mut bytes = [0u8; 16];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        let mut h = state.build_hasher();
        h.write_usize(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        chunk.copy_from_slice(&h.finish().to_be_bytes());
    }
    if bytes == [0; 16] {
        bytes[15] = 1;
    }
    Uuid(bytes)
}

/// All topics, persisted on every change.
#[derive(Debug)]
pub(crate) struct TopicRegistry {
    path: PathBuf,
    topics: RwLock<BTreeMap<String, Topic>>,
}

impl TopicRegistry {
    /// Loads the registry from `dir` (empty if there is none yet).
    pub(crate) fn open(dir: &Path) -> Result<Self, TopicError> {
        std::fs::create_dir_all(dir).map_err(|e| TopicError::Storage(e.to_string()))?;
        let path = dir.join(FILE_NAME);
        let topics = match std::fs::read(&path) {
            Ok(bytes) => {
                let list: Vec<Topic> = serde_json::from_slice(&bytes)
                    .map_err(|e| TopicError::Storage(format!("{}: {e}", path.display())))?;
                list.into_iter().map(|t| (t.name.clone(), t)).collect()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(TopicError::Storage(format!("{}: {e}", path.display()))),
        };
        Ok(Self {
            path,
            topics: RwLock::new(topics),
        })
    }

    /// The topic named `name`.
    pub(crate) fn get(&self, name: &str) -> Option<Topic> {
        self.topics.read().get(name).cloned()
    }

    /// The topic with id `id`.
    pub(crate) fn by_id(&self, id: Uuid) -> Option<Topic> {
        self.topics.read().values().find(|t| t.id == id).cloned()
    }

    /// Every topic, by name.
    pub(crate) fn all(&self) -> Vec<Topic> {
        self.topics.read().values().cloned().collect()
    }

    /// Adds a topic.
    pub(crate) fn create(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
        internal: bool,
    ) -> Result<Topic, TopicError> {
        validate_name(name)?;
        if partitions <= 0 {
            return Err(TopicError::InvalidPartitions(partitions));
        }
        let mut topics = self.topics.write();
        if topics.contains_key(name) {
            return Err(TopicError::AlreadyExists(name.to_string()));
        }
        let topic = Topic {
            name: name.to_string(),
            id: new_topic_id(),
            partitions,
            configs,
            internal,
        };
        topics.insert(name.to_string(), topic.clone());
        if let Err(e) = self.persist(&topics) {
            topics.remove(name);
            return Err(e);
        }
        Ok(topic)
    }

    /// Removes a topic.
    pub(crate) fn delete(&self, name: &str) -> Result<Topic, TopicError> {
        let mut topics = self.topics.write();
        let topic = topics
            .remove(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        if let Err(e) = self.persist(&topics) {
            topics.insert(name.to_string(), topic);
            return Err(e);
        }
        Ok(topic)
    }

    /// Changes a topic in place and persists the result.
    pub(crate) fn update(
        &self,
        name: &str,
        change: impl FnOnce(&mut Topic) -> Result<(), TopicError>,
    ) -> Result<Topic, TopicError> {
        let mut topics = self.topics.write();
        let old = topics
            .get(name)
            .cloned()
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        let mut new = old.clone();
        change(&mut new)?;
        topics.insert(name.to_string(), new.clone());
        if let Err(e) = self.persist(&topics) {
            topics.insert(name.to_string(), old);
            return Err(e);
        }
        Ok(new)
    }

    fn persist(&self, topics: &BTreeMap<String, Topic>) -> Result<(), TopicError> {
        let storage =
            |e: std::io::Error| TopicError::Storage(format!("{}: {e}", self.path.display()));
        let list: Vec<&Topic> = topics.values().collect();
        let bytes =
            serde_json::to_vec_pretty(&list).map_err(|e| TopicError::Storage(e.to_string()))?;
        let tmp = self.path.with_extension("json.tmp");
        {
            use std::io::Write;
            let mut file = std::fs::File::create(&tmp).map_err(storage)?;
            file.write_all(&bytes).map_err(storage)?;
            file.sync_all().map_err(storage)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(storage)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(storage)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kafka_rules() {
        assert!(validate_name("user-activity").is_ok());
        assert!(validate_name("a.b_c-1").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("..").is_err());
        assert!(validate_name("has space").is_err());
        assert!(validate_name(&"x".repeat(250)).is_err());
    }

    #[test]
    fn topics_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let registry = TopicRegistry::open(dir.path()).unwrap();
        let mut configs = BTreeMap::new();
        configs.insert("retention.ms".to_string(), "1000".to_string());
        let created = registry.create("t", 3, configs, false).unwrap();
        assert!(matches!(
            registry.create("t", 1, BTreeMap::new(), false),
            Err(TopicError::AlreadyExists(_))
        ));
        registry
            .update("t", |t| {
                t.partitions = 5;
                Ok(())
            })
            .unwrap();
        drop(registry);
        let reopened = TopicRegistry::open(dir.path()).unwrap();
        let t = reopened.get("t").unwrap();
        assert_eq!(t.id, created.id);
        assert_eq!(t.partitions, 5);
        assert_eq!(
            t.configs.get("retention.ms").map(String::as_str),
            Some("1000")
        );
        assert_eq!(reopened.by_id(created.id).unwrap().name, "t");
        reopened.delete("t").unwrap();
        assert!(TopicRegistry::open(dir.path()).unwrap().get("t").is_none());
    }

    #[test]
    fn topic_ids_are_distinct_and_non_zero() {
        let a = new_topic_id();
        let b = new_topic_id();
        assert_ne!(a, b);
        assert_ne!(a, Uuid::ZERO);
    }
}
