//! The Weir cluster's metadata, as Kafka's KRaft keeps it: a replicated log of small records
//! applied to an immutable image.
//!
//! # Layout
//! - [`record`]: [`MetadataRecord`], one change (a broker registered, a topic created, a
//!   partition's leader moved, a config set, producer ids handed out, ...).
//! - [`image`]: [`MetadataImage`], the cluster at one offset of the log; [`MetadataImage::apply`]
//!   turns a batch of records into the next image, all or nothing. Pure: no I/O, no clock.
//! - [`controller`]: [`Controller`], the active controller's decisions (broker registration,
//!   heartbeats and fencing, replica placement, leader election, preferred-leader elections
//!   and the periodic leader rebalance, partition reassignments, topic and config changes,
//!   producer-id blocks) over the image and an injected clock: requests in, records out.
//! - [`active`] (feature `quorum`): the active controller, the async task that drives
//!   [`Controller`] on the quorum's leader: one request at a time, each answered once its
//!   records are committed and applied.
//! - `types`: identifiers and registrations shared by the above.
//! - [`quorum`] (feature `quorum`, on by default): [`quorum::Quorum`], the Raft quorum on
//!   openraft that replicates the records and applies them to each node's image, with the
//!   log, vote and snapshots on disk.
//!
//! Data flows one way: a request reaches the active controller's driver → [`Controller`]
//! validates it against the latest image and returns records → the driver appends them to the
//! replicated log → once committed, every node applies them to its image → handlers read the
//! new image.
//!
//! ```
//! use weir_metadata::{Controller, ControllerConfig, CreateTopic, MetadataImage, TopicId};
//! use weir_metadata::controller::RegisterBroker;
//!
//! let mut controller = Controller::new(ControllerConfig::default());
//! let image = MetadataImage::empty();
//! let records = controller.bootstrap(&image, "cluster-1");
//! let (image, applied) = image.apply(1, &records);
//! applied.unwrap();
//!
//! // A broker registers (fenced), then heartbeats once it has caught up: unfenced.
//! let register = RegisterBroker {
//!     broker_id: 1,
//!     cluster_id: None,
//!     incarnation_id: [1; 16],
//!     endpoints: Vec::new(),
//!     rack: None,
//! };
//! let (records, epoch) = controller.register_broker(&image, 0, register).unwrap();
//! let (image, _) = image.apply(2, &records);
//! let heartbeat = weir_metadata::controller::Heartbeat {
//!     broker_id: 1,
//!     broker_epoch: epoch,
//!     current_metadata_offset: 2,
//!     want_fence: false,
//!     want_shutdown: false,
//! };
//! let (records, _) = controller.heartbeat(&image, 10, heartbeat).unwrap();
//! let (image, _) = image.apply(3, &records);
//!
//! let create = CreateTopic {
//!     name: "clicks".into(),
//!     num_partitions: Some(3),
//!     replication_factor: Some(1),
//!     assignments: None,
//!     configs: Default::default(),
//! };
//! let records = controller.create_topic(&image, TopicId([9; 16]), &create).unwrap();
//! let (image, _) = image.apply(4, &records);
//! let topic = image.topic("clicks").unwrap();
//! assert_eq!(topic.partition_count(), 3);
//! assert!(topic.partitions.iter().all(|p| p.leader == 1));
//! ```
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

#[cfg(feature = "quorum")]
pub mod active;
pub mod controller;
pub mod image;
#[cfg(feature = "quorum")]
pub mod quorum;
pub mod record;
mod types;

pub use controller::{
    AlterPartition, Controller, ControllerConfig, ControllerError, CreateTopic, ElectionError,
    ElectionType, OngoingReassignment, PartitionElection, Reassignment, ReassignmentError,
    ReassignmentResult,
};
pub use image::{ApplyError, MetadataImage, TopicImage};
pub use record::MetadataRecord;
pub use types::*;

#[cfg(test)]
mod tests;
