//! Where a follower truncates its log when it starts following a leader (KIP-101, KIP-279).

use crate::{UNDEFINED_EPOCH, UNDEFINED_OFFSET};

/// A leader epoch and the offset where it ended (the start offset of the next epoch, or the
/// log end offset for the latest one): an OffsetForLeaderEpoch answer, or its local
/// counterpart computed from the follower's leader-epoch cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochEndOffset {
    /// The epoch, or [`UNDEFINED_EPOCH`].
    pub leader_epoch: i32,
    /// Its end offset (exclusive), or [`UNDEFINED_OFFSET`].
    pub end_offset: i64,
}

/// What a follower does after comparing the leader's OffsetForLeaderEpoch answer with its own
/// leader-epoch cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Truncation {
    /// Truncate the local log to this offset (may equal the log end offset: nothing to do),
    /// then fetch from there.
    To(i64),
    /// The leader's answer names an epoch the follower lacks: ask again with this epoch, the
    /// follower's largest epoch below the leader's answer (KIP-279 iteration). Each round asks
    /// with a smaller epoch, so the exchange ends. The follower may truncate to that epoch's
    /// local end offset meanwhile (Kafka does), but need not.
    AskAgain(i32),
}

/// Where the follower truncates, given the leader's OffsetForLeaderEpoch answer.
///
/// `leader`: the leader's answer for the epoch the follower asked about (the largest epoch
/// the leader has at or below it, and where that epoch ends on the leader). `local`: the
/// follower's own counterpart for `leader.leader_epoch`, computed by the caller from its
/// leader-epoch cache exactly as Kafka's `LeaderEpochFileCache.endOffsetFor` does:
/// - its largest local epoch at or below `leader.leader_epoch`, and where that epoch ends
///   locally (the start offset of the next local epoch, or the log end offset);
/// - if every local epoch is later than `leader.leader_epoch`: `leader.leader_epoch` itself,
///   ending at the start offset of the first local epoch. Passing [`UNDEFINED_EPOCH`] there
///   instead would keep records from epochs the leader never had (the simulation caught
///   exactly that);
/// - [`UNDEFINED_EPOCH`] and [`UNDEFINED_OFFSET`] only when the cache is empty.
///
/// `local_log_end_offset` and `high_watermark` are the follower's.
///
/// The rules are Kafka's (`AbstractFetcherThread`):
/// - the leader has no end offset for the epoch (an answer from a leader without epoch
///   information): truncate to the high watermark, the only point known to be committed;
/// - the leader has no epoch at or below the requested one, or the follower has none at or
///   below the leader's: the logs share nothing the epochs can vouch for beyond the leader's
///   end offset, truncate to it;
/// - the follower lacks the leader's epoch: [`Truncation::AskAgain`] with its own;
/// - otherwise both have the epoch: truncate where the first of the two copies ends.
///
/// The result is never above `local_log_end_offset`. It *can* be below `high_watermark`, and
/// that is deliberate, as in Kafka: the leader's log is the truth after an election, and a
/// follower that kept records the leader lacks would diverge from it for ever. With clean
/// elections and correctly counted log end offsets it never happens (every committed record
/// is on the new leader), so a caller seeing it should warn and lower its high watermark.
pub fn truncation_offset(
    leader: EpochEndOffset,
    local: EpochEndOffset,
    local_log_end_offset: i64,
    high_watermark: i64,
) -> Truncation {
    let local_log_end_offset = local_log_end_offset.max(0);
    if leader.end_offset == UNDEFINED_OFFSET {
        return Truncation::To(high_watermark.clamp(0, local_log_end_offset));
    }
    let leader_end = leader.end_offset.clamp(0, local_log_end_offset);
    if leader.leader_epoch == UNDEFINED_EPOCH
        || local.leader_epoch == UNDEFINED_EPOCH
        || local.end_offset == UNDEFINED_OFFSET
    {
        return Truncation::To(leader_end);
    }
    if local.leader_epoch < leader.leader_epoch {
        return Truncation::AskAgain(local.leader_epoch);
    }
    if local.leader_epoch > leader.leader_epoch {
        // Outside the contract (`local` must be at or below the leader's epoch): the leader's
        // end offset is the only safe point, and asking again could loop.
        return Truncation::To(leader_end);
    }
    Truncation::To(leader_end.min(local.end_offset.max(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(leader_epoch: i32, end_offset: i64) -> EpochEndOffset {
        EpochEndOffset {
            leader_epoch,
            end_offset,
        }
    }

    /// Regression (found by the simulation): every local epoch is later than the leader's
    /// answer. The caller passes the leader's epoch ending where the first local epoch starts,
    /// and everything from there goes: the leader never had those epochs.
    #[test]
    fn all_local_epochs_later_than_the_leader_answer_truncate_to_the_first_one() {
        assert_eq!(
            truncation_offset(epoch(2, 2), epoch(2, 0), 1, 0),
            Truncation::To(0)
        );
    }

    /// Same epoch on both sides, the leader's copy shorter: cut the follower's extra tail.
    #[test]
    fn same_epoch_truncates_to_the_shorter_copy() {
        assert_eq!(
            truncation_offset(epoch(3, 50), epoch(3, 60), 70, 40),
            Truncation::To(50)
        );
        assert_eq!(
            truncation_offset(epoch(3, 60), epoch(3, 50), 70, 40),
            Truncation::To(50)
        );
    }

    /// A follower that is simply behind keeps everything: the offset is its log end offset.
    #[test]
    fn a_follower_behind_keeps_its_log() {
        assert_eq!(
            truncation_offset(epoch(5, 100), epoch(5, 80), 80, 80),
            Truncation::To(80)
        );
    }

    /// Never above the local log end offset, whatever the epochs say.
    #[test]
    fn never_above_the_log_end_offset() {
        assert_eq!(
            truncation_offset(epoch(5, 100), epoch(5, 120), 90, 10),
            Truncation::To(90)
        );
    }

    /// KIP-279: the leader answers with an epoch the follower lacks; ask again with the
    /// follower's largest epoch below it.
    #[test]
    fn missing_epoch_asks_again_with_the_local_one() {
        assert_eq!(
            truncation_offset(epoch(4, 30), epoch(2, 25), 40, 10),
            Truncation::AskAgain(2)
        );
    }

    /// The leader has no epoch at or below the requested one: truncate to its end offset
    /// (the start of its first epoch).
    #[test]
    fn leader_without_the_epoch_gives_its_end_offset() {
        let answer = epoch(UNDEFINED_EPOCH, 20);
        assert_eq!(
            truncation_offset(answer, epoch(1, 30), 30, 5),
            Truncation::To(20)
        );
    }

    /// The follower has no epoch at or below the leader's: truncate to the leader's end offset.
    #[test]
    fn follower_without_the_epoch_takes_the_leader_end_offset() {
        let local = epoch(UNDEFINED_EPOCH, UNDEFINED_OFFSET);
        assert_eq!(
            truncation_offset(epoch(2, 15), local, 30, 5),
            Truncation::To(15)
        );
        assert_eq!(
            truncation_offset(epoch(2, 45), local, 30, 5),
            Truncation::To(30)
        );
    }

    /// No end offset from the leader at all: fall back to the high watermark.
    #[test]
    fn undefined_leader_offset_truncates_to_the_high_watermark() {
        let answer = epoch(UNDEFINED_EPOCH, UNDEFINED_OFFSET);
        assert_eq!(
            truncation_offset(answer, epoch(3, 30), 30, 12),
            Truncation::To(12)
        );
        assert_eq!(
            truncation_offset(answer, epoch(3, 30), 30, 50),
            Truncation::To(30)
        );
    }

    /// Kafka truncates below the high watermark when the leader's epochs say so (its log is
    /// the truth after an election); this crate does the same and documents it.
    #[test]
    fn may_truncate_below_the_high_watermark_as_kafka_does() {
        assert_eq!(
            truncation_offset(epoch(3, 20), epoch(3, 40), 40, 30),
            Truncation::To(20)
        );
    }

    /// A `local` above the leader's epoch breaks the contract; the answer must not loop.
    #[test]
    fn local_epoch_above_the_leader_epoch_does_not_loop() {
        assert_eq!(
            truncation_offset(epoch(3, 20), epoch(5, 40), 40, 0),
            Truncation::To(20)
        );
    }
}
