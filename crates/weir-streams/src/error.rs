//! The crate's one error type.

/// What can go wrong while building or running a topology, or in a [`Serde`](crate::Serde).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The topology was refused when built; the message names the topic or node.
    #[error("invalid topology: {0}")]
    InvalidTopology(String),
    /// A window definition Kafka Streams would refuse (an advance above the size...).
    #[error("invalid windows: {0}")]
    InvalidWindows(String),
    /// A serde was given no data (a null key or value) and cannot represent it; wrap it in
    /// [`Nullable`](crate::Nullable) to read nulls as `None`.
    #[error("null data for a serde that cannot represent null")]
    NullData,
    /// Fixed-size data (integers) of the wrong length.
    #[error("expected {expected} bytes, got {actual}")]
    DataSize {
        /// The size the serde needs.
        expected: usize,
        /// The size it got.
        actual: usize,
    },
    /// A string that is not UTF-8.
    #[error("invalid UTF-8")]
    Utf8(#[source] std::string::FromUtf8Error),
    /// JSON that does not parse into the type, or a value that does not serialize.
    #[error("invalid JSON")]
    Json(#[source] serde_json::Error),
    /// A user serde's own failure.
    #[error("serde failed: {0}")]
    Serde(String),
    /// A record read from `topic`-`partition` at `offset` whose key or value did not
    /// deserialize; processing stops (Kafka Streams' default `LogAndFailExceptionHandler`).
    #[error("cannot deserialize the {part} of the record at {topic}-{partition} offset {offset}")]
    Deserialize {
        /// The input topic.
        topic: String,
        /// The input partition.
        partition: i32,
        /// The record's offset.
        offset: i64,
        /// `"key"` or `"value"`.
        part: &'static str,
        /// Why the serde refused it.
        #[source]
        source: Box<Error>,
    },
    /// A key or value that did not serialize for the output topic `topic`.
    #[error("cannot serialize the {part} of a record for topic {topic}")]
    Serialize {
        /// The output topic.
        topic: String,
        /// `"key"` or `"value"`.
        part: &'static str,
        /// Why the serde refused it.
        #[source]
        source: Box<Error>,
    },
    /// A [`StreamPartitioner`](crate::StreamPartitioner) chose a partition the topic does
    /// not have (or, in a foreign-key join, more than one), or a topic's partition count is
    /// unknown.
    #[error("stream partitioner: {0}")]
    Partitioner(String),
    /// A record piped to a topic that no source of the topology reads.
    #[error("no source in the topology reads topic {0}")]
    UnknownTopic(String),
    /// A record of a foreign-key join's internal topics or stores that is not in the
    /// format they are written in (Kafka's `SubscriptionWrapper` and
    /// `SubscriptionResponseWrapper`).
    #[error("invalid foreign-key join record: {0}")]
    ForeignKeyJoinRecord(String),
    /// No state store has this name.
    #[error("no state store named {0}")]
    UnknownStore(String),
    /// The state store exists but holds other key or value types than asked for.
    #[error("state store {0} holds other key or value types")]
    StoreType(String),
    /// The state store exists but is not of the kind asked for (a key-value store queried
    /// as a window store, a window store as a session store...).
    #[error("state store {store} is not {expected}")]
    StoreKind {
        /// The store's name.
        store: String,
        /// The kind asked for.
        expected: &'static str,
    },
    /// A processor asked for a state store it is not connected to (not named in
    /// `KStream::process` or `process_values`).
    #[error("processor {processor} is not connected to state store {store}")]
    StoreNotConnected {
        /// The processor's name.
        processor: String,
        /// The store's name.
        store: String,
    },
    /// A punctuation interval below one millisecond (or beyond `i64` milliseconds).
    #[error("the minimum supported punctuation interval is 1 millisecond, got {0:?}")]
    PunctuationInterval(std::time::Duration),
    /// A global table's topic could not be read to its end before the tasks start.
    #[error("cannot bootstrap the global table of topic {topic}: {reason}")]
    GlobalBootstrap {
        /// The topic (or topics) still being read.
        topic: String,
        /// What went wrong.
        reason: String,
    },
    /// A task's state store could not be restored from its changelog.
    #[error("cannot restore state store {store} of task {partition}: {reason}")]
    Restore {
        /// The store (or stores) being restored.
        store: String,
        /// The task's partition.
        partition: i32,
        /// What went wrong.
        reason: String,
    },
    /// The local state of a task (its redb database or its directory, under
    /// `StreamsConfig::state_dir`) could not be read or written.
    #[error("local state at {}", path.display())]
    State {
        /// The file or directory.
        path: std::path::PathBuf,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A persistent state store was read after its task closed (it moved to another
    /// instance, or the application closed): Kafka's `InvalidStateStoreException`.
    #[error("state store {0} is closed: its task is no longer on this instance")]
    StoreClosed(String),
    /// Another instance holds the lock of this state directory: each instance needs a
    /// `state_dir` of its own (as Kafka Streams' `state.dir`).
    #[error(
        "state directory {} is locked by another instance of the application; give each \
         instance its own state_dir",
        path.display()
    )]
    StateLocked {
        /// The locked directory.
        path: std::path::PathBuf,
    },
    /// A [`StreamsConfig`](crate::StreamsConfig) setting Kafka Streams would refuse; `key`
    /// is its Kafka name.
    #[error("invalid value for {key}: {reason}")]
    Config {
        /// The setting's Kafka key (`max.warmup.replicas`...).
        key: &'static str,
        /// Why the value is refused.
        reason: String,
    },
    /// An operation the instance refuses in its current state (Kafka's
    /// `IllegalStateException`), such as cleaning up the local state while tasks run.
    #[error("illegal state: {0}")]
    IllegalState(String),
    /// The Kafka client failed (runtime only).
    #[error("Kafka client error")]
    Client(#[source] weir_client::Error),
}

impl From<weir_client::Error> for Error {
    fn from(error: weir_client::Error) -> Self {
        Self::Client(error)
    }
}
