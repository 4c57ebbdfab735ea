//! The consumer: groups (classic protocol) or assigned partitions, records as a stream.

#[expect(dead_code, reason = "the group consumer lands next")]
mod assignor;
#[expect(dead_code, reason = "the group consumer lands next")]
mod positions;
#[expect(dead_code, reason = "the group consumer lands next")]
mod protocol;

pub use assignor::AssignmentStrategy;
pub use positions::OffsetReset;
pub use protocol::TopicPartition;
