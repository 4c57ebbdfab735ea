//! Topics as handlers see them: a view of the published metadata image (weir-metadata), where
//! topics, partitions and configs live since Weir runs on a metadata quorum.
//!
//! Earlier single-node versions kept topics in `<first log dir>/weir-topics.json`; a node that
//! starts a new cluster on such a directory imports that file into the metadata log once.

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use weir_metadata::{ConfigResource, MetadataImage, TopicImage};
use weir_protocol::{ErrorCode, Uuid};

/// The registry file of earlier single-node versions.
const LEGACY_FILE_NAME: &str = "weir-topics.json";

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
    InvalidName(String, String),
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
    weir_metadata::controller::validate_topic_name(name).map_err(|e| match e {
        weir_metadata::ControllerError::InvalidTopicName { name, why } => {
            TopicError::InvalidName(name, why)
        }
        other => TopicError::InvalidName(name.to_string(), other.to_string()),
    })
}

/// A new random topic id: a version 4 UUID, so never the all-zero "no id" (nor Kafka's reserved
/// metadata topic id, `0...01`).
pub(crate) fn new_topic_id() -> Uuid {
    Uuid(uuid::Uuid::new_v4().into_bytes())
}

/// The topics of the published metadata image: what every handler reads.
///
/// The image is swapped whole when the broker publishes a new one (after its logs match it),
/// so a reader sees one consistent state and never waits on a writer.
#[derive(Debug)]
pub(crate) struct Topics {
    image: RwLock<Arc<MetadataImage>>,
}

impl Topics {
    /// A view of `image`.
    pub(crate) fn new(image: Arc<MetadataImage>) -> Self {
        Self {
            image: RwLock::new(image),
        }
    }

    /// The published image.
    pub(crate) fn image(&self) -> Arc<MetadataImage> {
        self.image.read().clone()
    }

    /// Replaces the published image.
    pub(crate) fn publish(&self, image: Arc<MetadataImage>) {
        *self.image.write() = image;
    }

    /// The topic named `name`.
    pub(crate) fn get(&self, name: &str) -> Option<Topic> {
        let image = self.image();
        image.topic(name).map(|t| Topic::of(&image, t))
    }

    /// The topic with id `id`.
    pub(crate) fn by_id(&self, id: Uuid) -> Option<Topic> {
        let image = self.image();
        image
            .topic_by_id(weir_metadata::TopicId(id.0))
            .map(|t| Topic::of(&image, t))
    }

    /// Every topic, by name.
    pub(crate) fn all(&self) -> Vec<Topic> {
        let image = self.image();
        image
            .topics()
            .values()
            .map(|t| Topic::of(&image, t))
            .collect()
    }
}

impl Topic {
    /// The broker's view of a topic of the image.
    pub(crate) fn of(image: &MetadataImage, topic: &TopicImage) -> Topic {
        Topic {
            name: topic.name.clone(),
            id: Uuid(topic.id.0),
            partitions: topic.partition_count(),
            configs: image
                .configs(&ConfigResource::Topic(topic.name.clone()))
                .cloned()
                .unwrap_or_default(),
            internal: topic.is_internal(),
        }
    }
}

/// Reads the topic registry of an earlier, single-node Weir (`weir-topics.json` in `dir`), so
/// its topics can be imported into a new cluster's metadata log with their ids. `None` when
/// there is none.
pub(crate) fn read_legacy_registry(dir: &Path) -> Result<Option<Vec<Topic>>, TopicError> {
    let path = dir.join(LEGACY_FILE_NAME);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| TopicError::Storage(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(TopicError::Storage(format!("{}: {e}", path.display()))),
    }
}

/// Renames the imported legacy registry so it is never imported twice.
pub(crate) fn retire_legacy_registry(dir: &Path) -> Result<(), TopicError> {
    let path = dir.join(LEGACY_FILE_NAME);
    std::fs::rename(&path, path.with_extension("json.imported"))
        .map_err(|e| TopicError::Storage(format!("{}: {e}", path.display())))
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
    fn topic_ids_are_distinct_and_non_zero() {
        let a = new_topic_id();
        let b = new_topic_id();
        assert_ne!(a, b);
        assert_ne!(a, Uuid::ZERO);
        // Version 4, RFC 4122 variant.
        assert_eq!(a.0[6] >> 4, 4);
        assert_eq!(a.0[8] >> 6, 0b10);
    }
}
