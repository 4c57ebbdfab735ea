use proptest::prelude::*;

use super::*;

const LAG: i64 = 1_000;

fn config(min_insync_replicas: usize) -> ReplicationConfig {
    ReplicationConfig {
        replica_lag_time_max_ms: LAG,
        min_insync_replicas,
    }
}

fn state(partition_epoch: i32, isr: &[BrokerId]) -> LeaderAndIsr {
    LeaderAndIsr {
        leader: 1,
        leader_epoch: 5,
        partition_epoch,
        replicas: vec![1, 2, 3],
        isr: isr.to_vec(),
    }
}

/// Broker 1 leads epoch 5 of replicas 1, 2, 3 with the given ISR; its log ends at 100, HW 50,
/// and the epoch started at 50.
fn leader(isr: &[BrokerId]) -> LeaderPartition {
    LeaderPartition::new(1, state(10, isr), config(1), 100, 50, 0)
        .with_leader_epoch_start_offset(50)
}

#[test]
fn high_watermark_is_the_minimum_over_the_isr() {
    let mut p = leader(&[1, 2, 3]);
    assert_eq!(
        p.on_follower_fetch(2, 80, 100, 1).unwrap().high_watermark,
        None
    );
    assert_eq!(
        p.on_follower_fetch(3, 70, 100, 1).unwrap().high_watermark,
        Some(70)
    );
    assert_eq!(
        p.on_follower_fetch(3, 90, 100, 2).unwrap().high_watermark,
        Some(80)
    );
    assert_eq!(p.high_watermark(), 80);
}

/// A member that has not fetched since this leader took over holds the high watermark.
#[test]
fn unknown_follower_holds_the_high_watermark() {
    let mut p = leader(&[1, 2, 3]);
    assert_eq!(
        p.on_follower_fetch(2, 100, 100, 1).unwrap().high_watermark,
        None
    );
    assert_eq!(p.high_watermark(), 50);
}

/// The leader counts its own counted (e.g. fsynced) log end offset, never more.
#[test]
fn high_watermark_never_passes_the_leader_counted_end() {
    let mut p = LeaderPartition::new(1, state(10, &[1, 2]), config(1), 60, 50, 0);
    assert_eq!(
        p.on_follower_fetch(2, 100, 100, 1).unwrap().high_watermark,
        Some(60)
    );
    assert_eq!(p.on_local_log_end_offset(90), Some(90));
    assert_eq!(p.on_local_log_end_offset(120), Some(100));
}

#[test]
fn high_watermark_given_above_the_log_end_is_clamped() {
    let p = LeaderPartition::new(1, state(10, &[1]), config(1), 40, 50, 0);
    assert_eq!(p.high_watermark(), 40);
}

/// A follower that fetches at an older offset (e.g. restarted) never moves the HW back.
#[test]
fn high_watermark_never_decreases() {
    let mut p = leader(&[1, 2]);
    assert_eq!(
        p.on_follower_fetch(2, 90, 100, 1).unwrap().high_watermark,
        Some(90)
    );
    assert_eq!(
        p.on_follower_fetch(2, 60, 100, 2).unwrap().high_watermark,
        None
    );
    assert_eq!(p.high_watermark(), 90);
    assert_eq!(p.on_local_log_end_offset(10), None);
    assert_eq!(p.local_log_end_offset(), 100);
}

#[test]
fn single_member_isr_advances_with_the_leader_alone() {
    let mut p = leader(&[1]);
    assert_eq!(p.on_local_log_end_offset(101), Some(101));
}

#[test]
fn fetch_errors() {
    let mut p = leader(&[1, 2, 3]);
    assert_eq!(
        p.on_follower_fetch(9, 0, 100, 1),
        Err(ReplicationError::NotAReplica { broker: 9 })
    );
    assert_eq!(
        p.on_follower_fetch(1, 0, 100, 1),
        Err(ReplicationError::NotAReplica { broker: 1 })
    );
    assert_eq!(
        p.on_follower_fetch(2, 101, 100, 1),
        Err(ReplicationError::OffsetOutOfRange {
            fetch_offset: 101,
            log_end_offset: 100
        })
    );
    assert!(p.on_follower_fetch(2, -1, 100, 1).is_err());
}

#[test]
fn caught_up_follower_is_proposed_for_the_isr_and_holds_the_hw_meanwhile() {
    let mut p = leader(&[1, 2]);
    let outcome = p.on_follower_fetch(3, 60, 100, 1).unwrap();
    let expand = outcome.alter_isr.unwrap();
    assert_eq!(
        expand,
        AlterIsr {
            leader_epoch: 5,
            partition_epoch: 10,
            new_isr: vec![1, 2, 3]
        }
    );
    assert_eq!(p.maximal_isr(), vec![1, 2, 3]);
    assert_eq!(p.isr(), &[1, 2]);
    // Broker 2 is fully caught up, but 3 (in flight) holds the HW at 60.
    assert_eq!(
        p.on_follower_fetch(2, 100, 100, 2).unwrap().high_watermark,
        Some(60)
    );
    // One in flight at a time: no second proposal.
    assert_eq!(p.on_follower_fetch(3, 100, 100, 3).unwrap().alter_isr, None);
    assert_eq!(p.high_watermark(), 100);
    let mut committed = state(11, &[1, 2, 3]);
    committed.partition_epoch = 11;
    assert_eq!(p.alter_isr_completed(Ok(committed), 4), None);
    assert_eq!(p.isr(), &[1, 2, 3]);
    assert_eq!(p.partition_epoch(), 11);
    assert!(p.in_flight_alter_isr().is_none());
}

/// Expansion needs the fetch offset at the high watermark …
#[test]
fn follower_below_the_high_watermark_is_not_proposed() {
    let mut p = leader(&[1, 2]);
    assert_eq!(p.on_follower_fetch(3, 49, 100, 1).unwrap().alter_isr, None);
}

/// … and at the start offset of the leader epoch (KAFKA-7128), even above a stale HW.
#[test]
fn follower_below_the_epoch_start_offset_is_not_proposed() {
    let mut p = LeaderPartition::new(1, state(10, &[1, 2]), config(1), 100, 50, 0)
        .with_leader_epoch_start_offset(110);
    assert_eq!(p.leader_epoch_start_offset(), 110);
    assert_eq!(p.on_follower_fetch(3, 100, 120, 1).unwrap().alter_isr, None);
    assert!(
        p.on_follower_fetch(3, 110, 120, 2)
            .unwrap()
            .alter_isr
            .is_some()
    );
}

/// A rejected expansion leaves the maximal ISR, so the HW it was holding may advance.
#[test]
fn rejected_expansion_releases_the_high_watermark() {
    let mut p = leader(&[1, 2]);
    assert!(
        p.on_follower_fetch(3, 60, 100, 1)
            .unwrap()
            .alter_isr
            .is_some()
    );
    assert_eq!(
        p.on_follower_fetch(2, 100, 100, 1).unwrap().high_watermark,
        Some(60)
    );
    assert_eq!(
        p.alter_isr_completed(Err(AlterIsrRejected::InvalidUpdateVersion), 2),
        Some(100)
    );
    // Proposed again on the next fetch.
    assert!(
        p.on_follower_fetch(3, 100, 100, 3)
            .unwrap()
            .alter_isr
            .is_some()
    );
}

/// Regression (found by the simulation): an expansion that got no answer may still be
/// committed, so its member keeps holding the HW until a newer image settles it. Forgetting it
/// let the HW pass a replica the controller then put in the ISR and elected.
#[test]
fn unanswered_expansion_holds_the_high_watermark_until_a_newer_image() {
    let mut p = leader(&[1, 2]);
    assert!(
        p.on_follower_fetch(3, 60, 100, 1)
            .unwrap()
            .alter_isr
            .is_some()
    );
    p.on_follower_fetch(2, 100, 100, 1).unwrap();
    assert_eq!(
        p.alter_isr_completed(Err(AlterIsrRejected::NoAnswer), 2),
        None
    );
    assert_eq!(p.high_watermark(), 60);
    assert_eq!(p.maximal_isr(), vec![1, 2, 3]);
    // An image at the same partition epoch settles nothing.
    assert_eq!(p.update(state(10, &[1, 2]), 3), None);
    // A newer one does: here the expansion was not committed, and the HW moves on.
    assert_eq!(p.update(state(11, &[1, 2]), 4), Some(100));
    assert_eq!(p.maximal_isr(), vec![1, 2]);
}

#[test]
fn lagging_follower_is_proposed_for_removal_after_the_lag_time() {
    let mut p = leader(&[1, 2, 3]);
    p.on_follower_fetch(2, 100, 100, 900).unwrap();
    assert_eq!(p.tick(LAG), None);
    let shrink = p.tick(LAG + 1).unwrap();
    assert_eq!(shrink.new_isr, vec![1, 2]);
    assert_eq!(p.tick(LAG + 2), None, "one AlterIsr in flight at a time");
    // Until the controller commits it, broker 3 still holds the HW.
    assert_eq!(p.on_local_log_end_offset(100), None);
    assert_eq!(p.high_watermark(), 50);
    assert_eq!(
        p.alter_isr_completed(Ok(state(11, &[1, 2])), LAG + 3),
        Some(100)
    );
}

/// Kafka's rule: a fetch that reaches the leader end offset of the previous fetch means the
/// follower was caught up at the previous fetch's time.
#[test]
fn caught_up_at_the_previous_fetch_time() {
    let mut p = leader(&[1, 2]);
    p.on_follower_fetch(2, 90, 100, 500).unwrap(); // behind
    p.on_follower_fetch(2, 100, 120, 800).unwrap(); // reached where the leader was at 500
    assert_eq!(p.followers()[0].last_caught_up_ms, 500);
    assert_eq!(p.tick(500 + LAG), None);
    assert!(p.tick(501 + LAG).is_some());
}

#[test]
fn a_follower_that_keeps_fetching_at_the_end_stays_in_sync() {
    let mut p = leader(&[1, 2]);
    for t in 1..10 {
        p.on_follower_fetch(2, 100, 100, t * LAG / 2).unwrap();
        assert_eq!(p.tick(t * LAG / 2 + LAG), None);
    }
}

#[test]
fn update_ignores_older_partition_epochs_and_other_leaderships() {
    let mut p = leader(&[1, 2, 3]);
    p.update(state(9, &[1]), 1);
    assert_eq!(p.isr(), &[1, 2, 3]);
    let mut other = state(12, &[1]);
    other.leader_epoch = 6;
    p.update(other, 1);
    assert_eq!(p.isr(), &[1, 2, 3]);
    // A controller-side shrink (e.g. fencing) releases the HW.
    p.on_follower_fetch(2, 100, 100, 1).unwrap();
    assert_eq!(p.update(state(11, &[1, 2]), 2), Some(100));
    assert_eq!(p.partition_epoch(), 11);
}

#[test]
fn stale_alter_isr_answer_is_not_applied_but_clears_the_request() {
    let mut p = leader(&[1, 2, 3]);
    assert!(p.tick(LAG + 1).is_some());
    p.update(state(12, &[1, 2, 3]), LAG + 2);
    p.alter_isr_completed(Ok(state(11, &[1])), LAG + 3);
    assert_eq!(p.isr(), &[1, 2, 3]);
    assert!(p.in_flight_alter_isr().is_none());
}

#[test]
fn min_insync_replicas() {
    let p = LeaderPartition::new(1, state(10, &[1, 2]), config(3), 100, 50, 0);
    assert_eq!(
        p.check_min_isr(),
        Err(ReplicationError::NotEnoughReplicas {
            isr: 2,
            required: 3
        })
    );
    let p = LeaderPartition::new(1, state(10, &[1, 2]), config(2), 100, 50, 0);
    assert_eq!(p.check_min_isr(), Ok(()));
}

#[test]
fn followers_report_progress() {
    let mut p = leader(&[1, 2]);
    p.on_follower_fetch(3, 40, 100, 7).unwrap();
    assert_eq!(
        p.followers(),
        vec![
            FollowerProgress {
                broker_id: 2,
                log_end_offset: UNDEFINED_OFFSET,
                last_caught_up_ms: 0
            },
            FollowerProgress {
                broker_id: 3,
                log_end_offset: 40,
                last_caught_up_ms: -1
            },
        ]
    );
}

/// A state that somehow lacks the leader in its ISR still gets the leader into proposals.
#[test]
fn proposals_always_include_the_leader() {
    let mut p = LeaderPartition::new(1, state(10, &[2, 3]), config(1), 100, 50, 0);
    assert!(p.tick(LAG + 1).unwrap().new_isr.contains(&1));
}

// --- Property tests over random sequences -------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    /// The leader appends (real end offset) and fsyncs part of it (counted end offset).
    Append {
        records: i64,
        synced: i64,
    },
    /// Follower `index` fetches, `advance` past its previous fetch offset (capped at the end).
    Fetch {
        index: usize,
        advance: i64,
    },
    Tick {
        elapsed: i64,
    },
    /// The controller answers the in-flight AlterIsr: 0 commits it, 1 rejects it, 2 commits it
    /// but the answer is lost (NoAnswer), 3 neither commits it nor answers.
    Complete {
        kind: u8,
    },
    /// The latest image reaches the leader.
    Metadata,
    /// The controller fences a follower (an ISR shrink the leader did not ask for).
    Fence {
        index: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0..5i64, 0..5i64).prop_map(|(records, synced)| Op::Append { records, synced }),
        3 => (0..4usize, 0..6i64).prop_map(|(index, advance)| Op::Fetch { index, advance }),
        1 => (0..700i64).prop_map(|elapsed| Op::Tick { elapsed }),
        1 => (0..4u8).prop_map(|kind| Op::Complete { kind }),
        1 => Just(Op::Metadata),
        1 => (0..4usize).prop_map(|index| Op::Fence { index }),
    ]
}

/// A model of the cluster around one leader: true log end offsets and the controller.
struct Model {
    now: i64,
    log_end: i64,
    followers: Vec<BrokerId>,
    /// Each follower's true log end offset (its last fetch offset; at least the initial HW).
    follower_end: BTreeMap<BrokerId, i64>,
    controller: LeaderAndIsr,
    in_flight: Option<AlterIsr>,
    last_high_watermark: i64,
}

impl Model {
    fn end_of(&self, p: &LeaderPartition, r: BrokerId) -> i64 {
        if r == 1 {
            p.local_log_end_offset()
        } else {
            self.follower_end[&r]
        }
    }

    fn record_proposal(&mut self, proposal: Option<AlterIsr>) -> Result<(), TestCaseError> {
        if let Some(request) = proposal {
            // Invariant `at_most_one_alter_isr_in_flight`.
            prop_assert!(
                self.in_flight.is_none(),
                "second AlterIsr while {:?} is in flight",
                self.in_flight
            );
            // Invariant `leader_always_in_proposed_isr`.
            prop_assert!(
                request.new_isr.contains(&1),
                "proposal without the leader: {request:?}"
            );
            self.in_flight = Some(request);
        }
        Ok(())
    }

    fn check(&mut self, p: &LeaderPartition) -> Result<(), TestCaseError> {
        let hw = p.high_watermark();
        // Invariant `high_watermark_never_decreases`.
        prop_assert!(
            hw >= self.last_high_watermark,
            "HW went from {} to {hw}",
            self.last_high_watermark
        );
        self.last_high_watermark = hw;
        // Invariant `high_watermark_within_every_maximal_isr_member`.
        for r in p.maximal_isr() {
            prop_assert!(
                hw <= self.end_of(p, r),
                "HW {hw} above broker {r}'s end {}",
                self.end_of(p, r)
            );
        }
        // Invariant `high_watermark_within_every_committed_isr_member`: whatever the leader
        // knows, the HW never passes a member of the ISR the controller has committed.
        for &r in &self.controller.isr {
            prop_assert!(
                hw <= self.end_of(p, r),
                "HW {hw} above ISR member {r}'s end {}",
                self.end_of(p, r)
            );
        }
        prop_assert_eq!(p.in_flight_alter_isr(), self.in_flight.as_ref());
        Ok(())
    }
}

fn run(ops: Vec<Op>, replicas: usize, initial_high_watermark: i64) -> Result<(), TestCaseError> {
    let followers: Vec<BrokerId> = (2..=replicas as BrokerId).collect();
    let mut all = vec![1];
    all.extend(&followers);
    let controller = LeaderAndIsr {
        leader: 1,
        leader_epoch: 1,
        partition_epoch: 1,
        replicas: all.clone(),
        isr: all,
    };
    let config = ReplicationConfig {
        replica_lag_time_max_ms: LAG,
        min_insync_replicas: 1,
    };
    let mut p = LeaderPartition::new(1, controller.clone(), config, 20, initial_high_watermark, 0);
    let mut model = Model {
        now: 0,
        log_end: 20,
        follower_end: followers.iter().map(|&f| (f, p.high_watermark())).collect(),
        followers,
        controller,
        in_flight: None,
        last_high_watermark: p.high_watermark(),
    };
    model.check(&p)?;
    for op in ops {
        model.now += 1;
        let now = model.now;
        match op {
            Op::Append { records, synced } => {
                model.log_end += records;
                let counted = (p.local_log_end_offset() + synced).min(model.log_end);
                p.on_local_log_end_offset(counted);
            }
            Op::Fetch { index, advance } => {
                let f = model.followers[index % model.followers.len()];
                let offset = (model.follower_end[&f] + advance).min(model.log_end);
                model.follower_end.insert(f, offset);
                let outcome = p.on_follower_fetch(f, offset, model.log_end, now)?;
                model.record_proposal(outcome.alter_isr)?;
            }
            Op::Tick { elapsed } => {
                model.now += elapsed;
                let proposal = p.tick(model.now);
                model.record_proposal(proposal)?;
            }
            Op::Complete { kind } => {
                let Some(request) = model.in_flight.take() else {
                    continue;
                };
                let current = request.partition_epoch == model.controller.partition_epoch;
                if current && (kind == 0 || kind == 2) {
                    model.controller.isr = request.new_isr;
                    model.controller.partition_epoch += 1;
                }
                let result = match kind {
                    0 if current => Ok(model.controller.clone()),
                    0 | 1 => Err(AlterIsrRejected::InvalidUpdateVersion),
                    _ => Err(AlterIsrRejected::NoAnswer),
                };
                p.alter_isr_completed(result, now);
            }
            Op::Metadata => {
                p.update(model.controller.clone(), now);
            }
            Op::Fence { index } => {
                let f = model.followers[index % model.followers.len()];
                if model.controller.isr.contains(&f) {
                    model.controller.isr.retain(|&r| r != f);
                    model.controller.partition_epoch += 1;
                    p.update(model.controller.clone(), now);
                }
            }
        }
        model.check(&p)?;
    }
    Ok(())
}

proptest! {
    /// Random fetches, appends, ticks, AlterIsr answers and controller-side fencing: the HW
    /// never decreases and stays within every maximal-ISR member's log end offset, at most
    /// one AlterIsr is in flight, and every proposed ISR holds the leader.
    #[test]
    fn leader_invariants_hold(
        ops in proptest::collection::vec(op(), 0..200),
        replicas in 2usize..=5,
        initial_high_watermark in 0i64..=20,
    ) {
        run(ops, replicas, initial_high_watermark)?;
    }
}
