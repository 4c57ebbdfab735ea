//! The controller and image together: unit tests, then a proptest that runs random operations
//! and checks named invariants after every step.

use crate::controller::{Heartbeat, RegisterBroker, imbalanced_partitions};
use crate::{
    AlterPartition, ConfigResource, Controller, ControllerConfig, ControllerError, CreateTopic,
    ElectionError, ElectionType, MetadataImage, MetadataRecord, Millis, NO_LEADER, Reassignment,
    ReassignmentError, TopicId,
};
use proptest::prelude::*;
use std::collections::BTreeMap;

/// A controller, its image and the log of every batch applied, for tests.
struct Cluster {
    controller: Controller,
    image: MetadataImage,
    log: Vec<(u64, Vec<MetadataRecord>)>,
    epochs: BTreeMap<i32, i64>,
    now: Millis,
    next_topic: u8,
}

impl Cluster {
    fn new() -> Self {
        Self::with_config(ControllerConfig {
            broker_session_timeout_ms: 1_000,
            auto_leader_rebalance_enable: false,
            ..ControllerConfig::default()
        })
    }

    /// A cluster whose controller is active from time 0.
    fn with_config(config: ControllerConfig) -> Self {
        let mut cluster = Self {
            controller: Controller::new(config),
            image: MetadataImage::empty(),
            log: Vec::new(),
            epochs: BTreeMap::new(),
            now: 0,
            next_topic: 0,
        };
        let records = cluster.controller.bootstrap(&cluster.image, "test-cluster");
        cluster.commit(records);
        cluster.controller.activate(&cluster.image, 0);
        cluster
    }

    /// Appends and applies one batch; every batch the controller makes must apply cleanly.
    fn commit(&mut self, records: Vec<MetadataRecord>) {
        if records.is_empty() {
            return;
        }
        let offset = self.image.offset() + 1;
        let (image, result) = self.image.apply(offset, &records);
        assert_eq!(
            result,
            Ok(()),
            "controller batch did not apply: {records:?}"
        );
        self.image = image;
        self.log.push((offset, records));
    }

    fn register(&mut self, id: i32, rack: Option<&str>) -> Result<(), ControllerError> {
        let (records, epoch) = self.controller.register_broker(
            &self.image,
            self.now,
            RegisterBroker {
                broker_id: id,
                cluster_id: None,
                incarnation_id: [u8::try_from(id).unwrap_or(0); 16],
                endpoints: Vec::new(),
                rack: rack.map(str::to_string),
            },
        )?;
        self.commit(records);
        self.epochs.insert(id, epoch);
        Ok(())
    }

    fn heartbeat(
        &mut self,
        id: i32,
        want_shutdown: bool,
    ) -> Option<crate::controller::HeartbeatReply> {
        let epoch = *self.epochs.get(&id)?;
        let (records, reply) = self
            .controller
            .heartbeat(
                &self.image,
                self.now,
                Heartbeat {
                    broker_id: id,
                    broker_epoch: epoch,
                    current_metadata_offset: self.image.offset(),
                    want_fence: false,
                    want_shutdown,
                },
            )
            .ok()?;
        self.commit(records);
        Some(reply)
    }

    fn create(&mut self, name: &str, partitions: i32, factor: i16) -> Result<(), ControllerError> {
        self.next_topic += 1;
        let request = CreateTopic {
            name: name.to_string(),
            num_partitions: Some(partitions),
            replication_factor: Some(factor),
            assignments: None,
            configs: BTreeMap::new(),
        };
        let records =
            self.controller
                .create_topic(&self.image, TopicId([self.next_topic; 16]), &request)?;
        self.commit(records);
        Ok(())
    }

    fn advance(&mut self, ms: Millis) {
        self.now += ms;
        let records = self.controller.tick(&self.image, self.now);
        self.commit(records);
    }

    /// The leader of `topic`-`partition` adds every active replica to the ISR (as it would
    /// once they caught up); `false` if it cannot.
    fn rejoin_isr(&mut self, topic: &str, partition: i32) -> bool {
        let Some(t) = self.image.topic(topic) else {
            return false;
        };
        let Some(p) = t.partition(partition) else {
            return false;
        };
        let Some(epoch) = self.epochs.get(&p.leader).copied() else {
            return false;
        };
        let mut isr = p.isr.clone();
        for id in &p.replicas {
            if !isr.contains(id) && self.image.broker(*id).is_some_and(|b| b.is_active()) {
                isr.push(*id);
            }
        }
        let request = AlterPartition {
            broker_id: p.leader,
            broker_epoch: epoch,
            topic_id: t.id,
            partition,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            new_isr: isr,
        };
        match self.controller.alter_partition(&self.image, &request) {
            Ok((records, _)) => {
                self.commit(records);
                true
            }
            Err(_) => false,
        }
    }

    /// The topic at index `t` and its partition `p`, both modulo what exists (`p` = 255: one
    /// past the last partition).
    fn pick_partition(&self, t: u8, p: u8) -> Option<(String, i32)> {
        let topics: Vec<_> = self.image.topics().values().collect();
        let topic = topics.get(usize::from(t) % topics.len().max(1))?;
        let count = topic.partition_count().max(1);
        let partition = if p == u8::MAX {
            count
        } else {
            i32::from(p) % count
        };
        Some((topic.name.clone(), partition))
    }

    /// Runs an AlterPartitionReassignments and commits its records.
    fn reassign(
        &mut self,
        topic: &str,
        partition: i32,
        target: Option<&[i32]>,
    ) -> Result<(), ReassignmentError> {
        let request = Reassignment {
            topic: topic.to_string(),
            partition,
            target: target.map(<[i32]>::to_vec),
        };
        let (records, mut results) = self
            .controller
            .alter_partition_reassignments(&self.image, &[request]);
        self.commit(records);
        assert_eq!(results.len(), 1);
        results.remove(0).result
    }

    /// Runs an ElectLeaders and commits its records.
    fn elect(
        &mut self,
        election_type: ElectionType,
        partitions: Option<&[(String, i32)]>,
    ) -> Vec<crate::PartitionElection> {
        let (records, results) =
            self.controller
                .elect_leaders(&self.image, election_type, partitions);
        self.commit(records);
        results
    }

    /// Three unfenced brokers and topic `t` with 3 partitions of 3 replicas; the preferred
    /// leader of partition 0 then falls silent until it is fenced, comes back and rejoins the
    /// ISR, so partition 0 is led by another broker. Returns the preferred leader.
    fn with_moved_leader(config: ControllerConfig) -> (Self, i32) {
        let mut c = Self::with_config(ControllerConfig {
            broker_session_timeout_ms: 1_000,
            ..config
        });
        for id in 1..=3 {
            c.register(id, None).unwrap();
            c.heartbeat(id, false).unwrap();
        }
        c.create("t", 3, 3).unwrap();
        let preferred = c.image.topic("t").unwrap().partitions[0].replicas[0];
        for _ in 0..3 {
            c.advance(400);
            for id in (1..=3).filter(|id| *id != preferred) {
                c.heartbeat(id, false);
            }
        }
        assert!(c.image.broker(preferred).unwrap().fenced);
        c.heartbeat(preferred, false).unwrap();
        assert!(!c.image.broker(preferred).unwrap().fenced);
        let p0 = &c.image.topic("t").unwrap().partitions[0];
        assert_ne!(
            p0.leader, preferred,
            "leadership does not come back by itself"
        );
        assert!(!p0.isr.contains(&preferred));
        (c, preferred)
    }
}

#[test]
fn three_brokers_take_two_leaders_each_of_six_partitions() {
    let mut c = Cluster::new();
    for id in 1..=3 {
        c.register(id, None).unwrap();
        c.heartbeat(id, false).unwrap();
    }
    c.create("t", 6, 1).unwrap();
    let topic = c.image.topic("t").unwrap();
    let mut per_broker = BTreeMap::new();
    for p in &topic.partitions {
        *per_broker.entry(p.leader).or_insert(0) += 1;
    }
    assert_eq!(per_broker, BTreeMap::from([(1, 2), (2, 2), (3, 2)]));
}

#[test]
fn a_broker_is_fenced_until_it_catches_up() {
    let mut c = Cluster::new();
    c.register(1, None).unwrap();
    assert!(c.image.broker(1).unwrap().fenced);
    let epoch = c.epochs[&1];
    let (records, reply) = c
        .controller
        .heartbeat(
            &c.image,
            0,
            Heartbeat {
                broker_id: 1,
                broker_epoch: epoch,
                current_metadata_offset: 0,
                want_fence: false,
                want_shutdown: false,
            },
        )
        .unwrap();
    assert!(records.is_empty());
    assert!(!reply.is_caught_up && reply.is_fenced);
    let reply = c.heartbeat(1, false).unwrap();
    assert!(reply.is_caught_up && !reply.is_fenced);
    assert!(!c.image.broker(1).unwrap().fenced);
}

#[test]
fn a_silent_broker_is_fenced_and_its_partitions_go_offline_until_it_returns() {
    let mut c = Cluster::new();
    for id in 1..=3 {
        c.register(id, None).unwrap();
        c.heartbeat(id, false).unwrap();
    }
    c.create("t", 6, 1).unwrap();
    let led_by_2: Vec<usize> = c
        .image
        .topic("t")
        .unwrap()
        .partitions
        .iter()
        .enumerate()
        .filter(|(_, p)| p.leader == 2)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(led_by_2.len(), 2);
    // Brokers 1 and 3 keep heartbeating; 2 falls silent.
    for _ in 0..3 {
        c.advance(400);
        c.heartbeat(1, false);
        c.heartbeat(3, false);
    }
    assert!(c.image.broker(2).unwrap().fenced);
    let topic = c.image.topic("t").unwrap().clone();
    for i in &led_by_2 {
        let p = &topic.partitions[*i];
        assert_eq!(
            p.leader, NO_LEADER,
            "replication factor 1: nothing is moved"
        );
        assert_eq!(p.isr, vec![2], "the last ISR member is kept");
        assert_eq!(p.leader_epoch, 1);
        assert_eq!(p.offline_replicas(&c.image), vec![2]);
    }
    // It comes back (same process): unfenced, and leads its partitions again.
    c.heartbeat(2, false).unwrap();
    let topic = c.image.topic("t").unwrap();
    for i in &led_by_2 {
        assert_eq!(topic.partitions[*i].leader, 2);
        assert_eq!(topic.partitions[*i].leader_epoch, 2);
    }
}

#[test]
fn replicated_partitions_fail_over_within_the_isr() {
    let mut c = Cluster::new();
    for id in 1..=3 {
        c.register(id, None).unwrap();
        c.heartbeat(id, false).unwrap();
    }
    c.create("r", 3, 3).unwrap();
    c.advance(600);
    c.heartbeat(1, false);
    c.heartbeat(2, false);
    c.advance(600);
    assert!(c.image.broker(3).unwrap().fenced);
    for p in &c.image.topic("r").unwrap().partitions {
        assert_ne!(p.leader, 3);
        assert_ne!(p.leader, NO_LEADER);
        assert!(!p.isr.contains(&3));
    }
}

/// AlterPartition: the leader shrinks and re-grows the ISR; a stale partition epoch, a deposed
/// leader, a fenced joiner, a non-replica and an ISR without its leader are refused and change
/// nothing.
#[test]
fn alter_partition_checks_leader_epochs_and_eligibility() {
    use crate::AlterPartition;
    let mut c = Cluster::new();
    for id in 1..=3 {
        c.register(id, None).unwrap();
        c.heartbeat(id, false).unwrap();
    }
    c.create("a", 1, 3).unwrap();
    let topic_id = c.image.topic("a").unwrap().id;
    let p = c.image.topic("a").unwrap().partitions[0].clone();
    let leader = p.leader;
    let others: Vec<i32> = p.isr.iter().copied().filter(|id| *id != leader).collect();
    let epochs = c.epochs.clone();
    let request =
        |isr: Vec<i32>, leader_epoch: i32, partition_epoch: i32, from: i32| AlterPartition {
            broker_id: from,
            broker_epoch: epochs[&from],
            topic_id,
            partition: 0,
            leader_epoch,
            partition_epoch,
            new_isr: isr,
        };
    let shrink = request(
        vec![leader, others[0]],
        p.leader_epoch,
        p.partition_epoch,
        leader,
    );
    let stale_from_follower = request(
        vec![others[0]],
        p.leader_epoch,
        p.partition_epoch,
        others[0],
    );
    let (records, after) = c.controller.alter_partition(&c.image, &shrink).unwrap();
    assert_eq!(after.isr, vec![leader, others[0]]);
    assert_eq!(after.partition_epoch, p.partition_epoch + 1);
    assert_eq!(after.leader_epoch, p.leader_epoch);
    c.commit(records);
    assert_eq!(c.image.topic("a").unwrap().partitions[0], after);
    // The same request again is based on an old partition epoch.
    assert!(matches!(
        c.controller.alter_partition(&c.image, &shrink),
        Err(ControllerError::InvalidUpdateVersion { .. })
    ));
    assert!(matches!(
        c.controller.alter_partition(&c.image, &stale_from_follower),
        Err(ControllerError::FencedLeaderEpoch { .. })
    ));
    let no_leader = request(
        vec![others[0]],
        p.leader_epoch,
        after.partition_epoch,
        leader,
    );
    assert!(matches!(
        c.controller.alter_partition(&c.image, &no_leader),
        Err(ControllerError::InvalidRequest(_))
    ));
    let stranger = request(
        vec![leader, 9],
        p.leader_epoch,
        after.partition_epoch,
        leader,
    );
    assert!(matches!(
        c.controller.alter_partition(&c.image, &stranger),
        Err(ControllerError::IneligibleReplica(9))
    ));
    // A fenced broker cannot rejoin; once it is back it can.
    c.advance(600);
    for id in [leader, others[0]] {
        c.heartbeat(id, false);
    }
    c.advance(600);
    assert!(c.image.broker(others[1]).unwrap().fenced);
    let p = c.image.topic("a").unwrap().partitions[0].clone();
    let grow = request(
        vec![leader, others[0], others[1]],
        p.leader_epoch,
        p.partition_epoch,
        leader,
    );
    assert_eq!(
        c.controller.alter_partition(&c.image, &grow).unwrap_err(),
        ControllerError::IneligibleReplica(others[1])
    );
    c.heartbeat(others[1], false).unwrap();
    assert!(!c.image.broker(others[1]).unwrap().fenced);
    let (records, after) = c.controller.alter_partition(&c.image, &grow).unwrap();
    c.commit(records);
    assert_eq!(after.isr.len(), 3);
}

#[test]
fn controlled_shutdown_moves_leadership_then_allows_the_stop() {
    let mut c = Cluster::new();
    for id in 1..=2 {
        c.register(id, None).unwrap();
        c.heartbeat(id, false).unwrap();
    }
    c.create("r", 2, 2).unwrap();
    let reply = c.heartbeat(1, true).unwrap();
    assert!(reply.should_shut_down);
    assert!(c.image.broker(1).unwrap().fenced);
    for p in &c.image.topic("r").unwrap().partitions {
        assert_eq!(p.leader, 2);
    }
}

#[test]
fn a_restarted_broker_cannot_take_a_live_id() {
    let mut c = Cluster::new();
    c.register(1, None).unwrap();
    c.heartbeat(1, false).unwrap();
    let other = RegisterBroker {
        broker_id: 1,
        cluster_id: None,
        incarnation_id: [99; 16],
        endpoints: Vec::new(),
        rack: None,
    };
    assert_eq!(
        c.controller.register_broker(&c.image, c.now, other.clone()),
        Err(ControllerError::DuplicateBrokerRegistration(1))
    );
    c.advance(2_000);
    assert!(c.controller.register_broker(&c.image, c.now, other).is_ok());
}

/// Guards against a combined single node waiting out its own old session after a kill -9: its
/// controller is the same process, so the old incarnation is certainly gone.
#[test]
fn the_controllers_own_node_re_registers_at_once() {
    let mut c = Cluster::new();
    c.controller = Controller::new(ControllerConfig {
        local_node_id: Some(1),
        ..ControllerConfig::default()
    });
    c.register(1, None).unwrap();
    c.heartbeat(1, false).unwrap();
    let restarted = RegisterBroker {
        broker_id: 1,
        cluster_id: None,
        incarnation_id: [42; 16],
        endpoints: Vec::new(),
        rack: None,
    };
    assert!(
        c.controller
            .register_broker(&c.image, c.now, restarted)
            .is_ok()
    );
}

#[test]
fn wrong_cluster_id_is_refused() {
    let mut c = Cluster::new();
    let request = RegisterBroker {
        broker_id: 1,
        cluster_id: Some("another".into()),
        incarnation_id: [1; 16],
        endpoints: Vec::new(),
        rack: None,
    };
    assert!(matches!(
        c.controller.register_broker(&c.image, 0, request),
        Err(ControllerError::InconsistentClusterId { .. })
    ));
}

#[test]
fn topic_validation() {
    let mut c = Cluster::new();
    c.register(1, None).unwrap();
    c.heartbeat(1, false).unwrap();
    assert!(matches!(
        c.create("bad name", 1, 1),
        Err(ControllerError::InvalidTopicName { .. })
    ));
    assert!(matches!(
        c.create("t", 0, 1),
        Err(ControllerError::InvalidPartitions(_))
    ));
    assert!(matches!(
        c.create("t", 1, 2),
        Err(ControllerError::InvalidReplicationFactor(_))
    ));
    c.create("t", 1, 1).unwrap();
    assert!(matches!(
        c.create("t", 1, 1),
        Err(ControllerError::TopicAlreadyExists(_))
    ));
    assert!(matches!(
        c.controller.create_partitions(&c.image, "t", 1, None),
        Err(ControllerError::InvalidPartitions(_))
    ));
    let records = c
        .controller
        .create_partitions(&c.image, "t", 4, None)
        .unwrap();
    c.commit(records);
    assert_eq!(c.image.topic("t").unwrap().partition_count(), 4);
    let manual = CreateTopic {
        name: "m".into(),
        num_partitions: None,
        replication_factor: None,
        assignments: Some(vec![vec![1], vec![7]]),
        configs: BTreeMap::new(),
    };
    assert!(matches!(
        c.controller
            .create_topic(&c.image, TopicId([200; 16]), &manual),
        Err(ControllerError::InvalidReplicaAssignment(_))
    ));
}

#[test]
fn rack_aware_placement_spreads_replicas_over_racks() {
    let mut c = Cluster::new();
    for (id, rack) in [(1, "a"), (2, "a"), (3, "b"), (4, "b")] {
        c.register(id, Some(rack)).unwrap();
        c.heartbeat(id, false).unwrap();
    }
    c.create("t", 8, 2).unwrap();
    let rack = |id: i32| c.image.broker(id).unwrap().rack.clone();
    for p in &c.image.topic("t").unwrap().partitions {
        assert_ne!(rack(p.replicas[0]), rack(p.replicas[1]), "{p:?}");
    }
}

#[test]
fn configs_and_deletion() {
    let mut c = Cluster::new();
    c.register(1, None).unwrap();
    c.heartbeat(1, false).unwrap();
    c.create("t", 1, 1).unwrap();
    let resource = ConfigResource::Topic("t".into());
    let records = c
        .controller
        .alter_configs(
            &c.image,
            &resource,
            &[("retention.ms".into(), Some("5".into()))],
        )
        .unwrap();
    c.commit(records);
    assert_eq!(c.image.configs(&resource).unwrap()["retention.ms"], "5");
    // Setting the same value again writes nothing.
    assert!(
        c.controller
            .alter_configs(
                &c.image,
                &resource,
                &[("retention.ms".into(), Some("5".into()))]
            )
            .unwrap()
            .is_empty()
    );
    let records = c.controller.delete_topic(&c.image, "t").unwrap();
    c.commit(records);
    assert!(c.image.topic("t").is_none());
    assert!(c.image.configs(&resource).is_none());
    assert!(matches!(
        c.controller.alter_configs(&c.image, &resource, &[]),
        Err(ControllerError::UnknownTopic(_))
    ));
}

#[test]
fn producer_id_blocks_never_overlap() {
    let mut c = Cluster::new();
    c.register(1, None).unwrap();
    let epoch = c.epochs[&1];
    let mut blocks = Vec::new();
    for _ in 0..3 {
        let (records, block) = c
            .controller
            .allocate_producer_ids(&c.image, 1, epoch)
            .unwrap();
        c.commit(records);
        blocks.push(block);
    }
    assert_eq!(blocks[0].first, 0);
    assert_eq!(blocks[1].first, 1_000);
    assert_eq!(blocks[2].first, 2_000);
    assert!(
        c.controller
            .allocate_producer_ids(&c.image, 1, epoch + 1)
            .is_err()
    );
}

#[test]
fn a_bad_batch_changes_nothing_but_the_offset() {
    let image = MetadataImage::empty();
    let records = vec![
        MetadataRecord::Topic {
            name: "t".into(),
            topic_id: TopicId([1; 16]),
        },
        MetadataRecord::PartitionChange {
            topic_id: TopicId([2; 16]),
            partition: 0,
            leader: Some(1),
            isr: None,
            replicas: None,
            adding_replicas: None,
            removing_replicas: None,
            original_replicas: None,
        },
    ];
    let (after, result) = image.apply(5, &records);
    assert!(result.is_err());
    assert!(after.topic("t").is_none());
    assert_eq!(after.offset(), 5);
}

fn no_rebalance() -> ControllerConfig {
    ControllerConfig {
        auto_leader_rebalance_enable: false,
        ..ControllerConfig::default()
    }
}

fn one(topic: &str, partition: i32) -> Vec<(String, i32)> {
    vec![(topic.to_string(), partition)]
}

/// A preferred election is refused while the preferred replica is outside the ISR, moves
/// leadership back (new leader epoch) once it is in, and is then not needed.
#[test]
fn preferred_election_restores_the_preferred_leader() {
    let (mut c, preferred) = Cluster::with_moved_leader(no_rebalance());
    let before = c.image.topic("t").unwrap().partitions[0].clone();
    let results = c.elect(ElectionType::Preferred, Some(&one("t", 0)));
    assert!(matches!(
        results[0].result,
        Err(ElectionError::PreferredLeaderNotAvailable { preferred: p, .. }) if p == preferred
    ));
    assert_eq!(c.image.topic("t").unwrap().partitions[0], before);
    assert!(c.rejoin_isr("t", 0));
    let before = c.image.topic("t").unwrap().partitions[0].clone();
    let results = c.elect(ElectionType::Preferred, Some(&one("t", 0)));
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].result, Ok(()));
    let after = c.image.topic("t").unwrap().partitions[0].clone();
    assert_eq!(after.leader, preferred);
    assert_eq!(after.leader_epoch, before.leader_epoch + 1);
    assert_eq!(after.isr, before.isr, "the ISR is untouched");
    let results = c.elect(ElectionType::Preferred, Some(&one("t", 0)));
    assert!(matches!(
        results[0].result,
        Err(ElectionError::NotNeeded { .. })
    ));
}

/// Unknown topics and partitions are answered per partition; a partition named twice is
/// answered once; `None` elects every partition that needs it and reports only those.
#[test]
fn elect_leaders_answers_per_partition() {
    let (mut c, preferred) = Cluster::with_moved_leader(no_rebalance());
    let (records, results) = c.controller.elect_leaders(
        &c.image,
        ElectionType::Preferred,
        Some(&[
            ("t".to_string(), 3),
            ("nope".to_string(), 0),
            ("t".to_string(), -1),
            ("t".to_string(), 1),
            ("t".to_string(), 1),
        ]),
    );
    assert!(records.is_empty());
    assert_eq!(results.len(), 4);
    for r in &results[..3] {
        assert!(matches!(
            r.result,
            Err(ElectionError::UnknownTopicOrPartition { .. })
        ));
    }
    assert!(matches!(
        results[3].result,
        Err(ElectionError::NotNeeded { .. })
    ));
    // Every partition: the one still outside the ISR is reported, led ones are not.
    let results = c.elect(ElectionType::Preferred, None);
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!((results[0].topic.as_str(), results[0].partition), ("t", 0));
    assert!(matches!(
        results[0].result,
        Err(ElectionError::PreferredLeaderNotAvailable { .. })
    ));
    c.rejoin_isr("t", 0);
    let results = c.elect(ElectionType::Preferred, None);
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].result, Ok(()));
    assert_eq!(c.image.topic("t").unwrap().partitions[0].leader, preferred);
    assert!(c.elect(ElectionType::Preferred, None).is_empty());
}

/// UNCLEAN: Weir never elects outside the ISR. A partition with a leader needs no election;
/// one whose only in-sync replica is fenced has no eligible leader.
#[test]
fn unclean_election_never_leaves_the_isr() {
    let mut c = Cluster::new();
    for id in 1..=2 {
        c.register(id, None).unwrap();
        c.heartbeat(id, false).unwrap();
    }
    c.create("single", 2, 1).unwrap();
    let partitions = c.image.topic("single").unwrap().partitions.clone();
    let on_2 = i32::try_from(partitions.iter().position(|p| p.leader == 2).unwrap()).unwrap();
    let on_1 = 1 - on_2;
    for _ in 0..3 {
        c.advance(400);
        c.heartbeat(1, false);
    }
    assert!(c.image.broker(2).unwrap().fenced);
    let results = c.elect(
        ElectionType::Unclean,
        Some(&[("single".to_string(), on_1), ("single".to_string(), on_2)]),
    );
    assert!(matches!(
        results[0].result,
        Err(ElectionError::NotNeeded { .. })
    ));
    assert!(matches!(
        results[1].result,
        Err(ElectionError::EligibleLeadersNotAvailable { .. })
    ));
    let p = &c.image.topic("single").unwrap().partitions[usize::try_from(on_2).unwrap()];
    assert_eq!(p.leader, NO_LEADER);
    assert_eq!(p.isr, vec![2]);
}

/// `auto.leader.rebalance.enable`: the check runs on the controller's timer (it is a
/// deadline), and moves leadership back only once it is due.
#[test]
fn auto_rebalance_moves_leadership_back_when_the_check_is_due() {
    let config = ControllerConfig {
        leader_imbalance_check_interval_ms: 5_000,
        ..ControllerConfig::default()
    };
    let (mut c, preferred) = Cluster::with_moved_leader(config);
    c.rejoin_isr("t", 0);
    // The first check is due 5 s after activation; 1.2 s have passed.
    assert_eq!(c.controller.next_deadline().map(|d| d <= 5_000), Some(true));
    let keep_alive = |c: &mut Cluster| {
        for id in 1..=3 {
            c.heartbeat(id, false);
        }
    };
    while c.now + 500 < 5_000 {
        c.advance(500);
        keep_alive(&mut c);
        assert_ne!(c.image.topic("t").unwrap().partitions[0].leader, preferred);
    }
    let epoch = c.image.topic("t").unwrap().partitions[0].leader_epoch;
    c.advance(500);
    let p0 = &c.image.topic("t").unwrap().partitions[0];
    assert_eq!(p0.leader, preferred);
    assert_eq!(p0.leader_epoch, epoch + 1);
}

/// `leader.imbalance.per.broker.percentage`: only a share above it triggers the move, and
/// with the setting off there is no check at all.
#[test]
fn auto_rebalance_respects_the_per_broker_percentage() {
    let (mut c, preferred) = Cluster::with_moved_leader(no_rebalance());
    c.rejoin_isr("t", 0);
    // The preferred broker prefers 1 of the 3 partitions; it does not lead it: 100 %.
    assert_eq!(imbalanced_partitions(&c.image, 10), one("t", 0));
    assert_eq!(imbalanced_partitions(&c.image, 99), one("t", 0));
    assert!(imbalanced_partitions(&c.image, 100).is_empty());
    // Off: no deadline beyond the sessions, nothing moves however long it waits.
    for _ in 0..20 {
        c.advance(500);
        for id in 1..=3 {
            c.heartbeat(id, false);
        }
    }
    assert_ne!(c.image.topic("t").unwrap().partitions[0].leader, preferred);
    // A broker preferring more partitions: 1 of 4 not led is 25 %.
    let records = c
        .controller
        .create_partitions(&c.image, "t", 12, None)
        .unwrap();
    c.commit(records);
    let prefers: Vec<_> = c
        .image
        .topic("t")
        .unwrap()
        .partitions
        .iter()
        .filter(|p| p.replicas[0] == preferred)
        .collect();
    assert_eq!(prefers.len(), 4);
    assert_eq!(imbalanced_partitions(&c.image, 24), one("t", 0));
    assert!(imbalanced_partitions(&c.image, 25).is_empty());
}

/// One step of the random walk.
#[derive(Clone, Debug)]
enum Op {
    Register(i32),
    Heartbeat(i32),
    Shutdown(i32),
    Advance(Millis),
    Create {
        partitions: i32,
        factor: i16,
    },
    Grow(u8, i32),
    Delete(u8),
    ProducerIds(i32),
    Snapshot,
    /// The leader of a partition (topic index, partition index, both modulo what exists)
    /// takes every active replica back into the ISR.
    RejoinIsr(u8, u8),
    /// A broker falls silent past its session while the others heartbeat, then returns.
    Bounce(i32),
    /// A preferred election of one partition (as for `RejoinIsr`; 255 names one that does not
    /// exist), or of all.
    ElectPreferred(Option<(u8, u8)>),
    /// A reassignment of one partition (as for `RejoinIsr`) to the brokers of a bit mask
    /// (bit 0: broker 1, ...; 0: an empty target), rotated by the last value.
    Reassign(u8, u8, u8, u8),
    /// Cancels the reassignment of one partition.
    CancelReassignment(u8, u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (1..=4i32).prop_map(Op::Register),
        4 => (1..=4i32).prop_map(Op::Heartbeat),
        1 => (1..=4i32).prop_map(Op::Shutdown),
        2 => (1..1500u64).prop_map(Op::Advance),
        2 => (1..6i32, 1..4i16).prop_map(|(partitions, factor)| Op::Create { partitions, factor }),
        1 => (any::<u8>(), 1..4i32).prop_map(|(t, n)| Op::Grow(t, n)),
        1 => any::<u8>().prop_map(Op::Delete),
        1 => (1..=4i32).prop_map(Op::ProducerIds),
        1 => Just(Op::Snapshot),
        3 => (any::<u8>(), any::<u8>()).prop_map(|(t, p)| Op::RejoinIsr(t, p)),
        1 => (1..=4i32).prop_map(Op::Bounce),
        3 => proptest::option::of((any::<u8>(), any::<u8>())).prop_map(Op::ElectPreferred),
        3 => (any::<u8>(), any::<u8>(), 0..32u8, 0..4u8).prop_map(|(t, p, m, r)| Op::Reassign(t, p, m, r)),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(t, p)| Op::CancelReassignment(t, p)),
    ]
}

/// Four unfenced brokers and topic `t` with one partition on brokers 1, 2 and 3 (led by 1).
fn four_brokers_and_a_partition_on_1_2_3() -> Cluster {
    let mut c = Cluster::new();
    for id in 1..=4 {
        c.register(id, None).unwrap();
        c.heartbeat(id, false).unwrap();
    }
    let request = CreateTopic {
        name: "t".into(),
        num_partitions: None,
        replication_factor: None,
        assignments: Some(vec![vec![1, 2, 3]]),
        configs: BTreeMap::new(),
    };
    let records = c
        .controller
        .create_topic(&c.image, TopicId([1; 16]), &request)
        .unwrap();
    c.commit(records);
    let p = c.partition("t", 0);
    assert_eq!((p.leader, p.isr.clone()), (1, vec![1, 2, 3]));
    c
}

impl Cluster {
    fn partition(&self, topic: &str, partition: i32) -> crate::PartitionRegistration {
        self.image
            .topic(topic)
            .and_then(|t| t.partition(partition))
            .cloned()
            .unwrap()
    }
}

#[test]
fn reassignment_adds_then_removes_and_moves_the_leader_away() {
    let mut c = four_brokers_and_a_partition_on_1_2_3();
    let before = c.partition("t", 0);
    c.reassign("t", 0, Some(&[2, 3, 4])).unwrap();
    let p = c.partition("t", 0);
    assert_eq!(
        p.replicas,
        vec![2, 3, 4, 1],
        "the target first, then the removed"
    );
    assert_eq!(p.adding_replicas, vec![4]);
    assert_eq!(p.removing_replicas, vec![1]);
    assert_eq!((p.leader, p.leader_epoch), (1, before.leader_epoch));
    assert_eq!(p.isr, vec![1, 2, 3]);
    assert!(p.partition_epoch > before.partition_epoch);
    let listed = c.controller.list_partition_reassignments(&c.image, None);
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (
            listed[0].replicas.clone(),
            listed[0].adding_replicas.clone(),
            listed[0].removing_replicas.clone()
        ),
        (vec![2, 3, 4, 1], vec![4], vec![1])
    );
    // The leader's ISR expansion with broker 4 completes it: 1 leaves, 2 (preferred) leads.
    let request = AlterPartition {
        broker_id: 1,
        broker_epoch: c.epochs[&1],
        topic_id: TopicId([1; 16]),
        partition: 0,
        leader_epoch: p.leader_epoch,
        partition_epoch: p.partition_epoch,
        new_isr: vec![1, 2, 3, 4],
    };
    let (records, answered) = c.controller.alter_partition(&c.image, &request).unwrap();
    c.commit(records);
    let done = c.partition("t", 0);
    assert_eq!(
        answered, done,
        "the leader learns the completed registration"
    );
    assert_eq!(done.replicas, vec![2, 3, 4]);
    assert_eq!(done.isr, vec![2, 3, 4]);
    assert_eq!(done.leader, 2);
    assert!(done.leader_epoch > p.leader_epoch);
    assert!(!done.is_reassigning());
    assert!(
        c.controller
            .list_partition_reassignments(&c.image, None)
            .is_empty()
    );
}

#[test]
fn a_target_already_in_the_isr_completes_at_once() {
    let mut c = four_brokers_and_a_partition_on_1_2_3();
    c.reassign("t", 0, Some(&[3, 2])).unwrap();
    let p = c.partition("t", 0);
    assert_eq!(
        (p.replicas.clone(), p.isr.clone()),
        (vec![3, 2], vec![2, 3])
    );
    assert_eq!(p.leader, 3, "the first active target replica in the ISR");
    assert!(!p.is_reassigning());
    // The same replicas again: nothing to do, nothing written.
    let offset = c.image.offset();
    c.reassign("t", 0, Some(&[3, 2])).unwrap();
    assert_eq!(c.image.offset(), offset);
}

#[test]
fn cancelling_returns_to_the_original_replicas() {
    let mut c = four_brokers_and_a_partition_on_1_2_3();
    assert!(matches!(
        c.reassign("t", 0, None),
        Err(ReassignmentError::NoReassignmentInProgress { .. })
    ));
    c.reassign("t", 0, Some(&[4, 3, 2])).unwrap();
    assert_eq!(c.partition("t", 0).replicas, vec![4, 3, 2, 1]);
    c.reassign("t", 0, None).unwrap();
    let p = c.partition("t", 0);
    assert_eq!(p.replicas, vec![1, 2, 3]);
    assert_eq!((p.leader, p.isr.clone()), (1, vec![1, 2, 3]));
    assert!(!p.is_reassigning());
    assert!(matches!(
        c.reassign("t", 0, None),
        Err(ReassignmentError::NoReassignmentInProgress { .. })
    ));
}

#[test]
fn a_new_target_replaces_the_reassignment_in_progress() {
    let mut c = four_brokers_and_a_partition_on_1_2_3();
    c.reassign("t", 0, Some(&[2, 3, 4])).unwrap();
    // From the original replicas {1, 2, 3}: 4 is no longer added, and {1, 2} is in the ISR.
    c.reassign("t", 0, Some(&[2, 1])).unwrap();
    let p = c.partition("t", 0);
    assert_eq!(p.replicas, vec![2, 1]);
    assert_eq!((p.leader, p.isr.clone()), (1, vec![1, 2]));
    assert!(!p.is_reassigning());
}

#[test]
fn invalid_reassignments_are_refused_and_change_nothing() {
    let mut c = four_brokers_and_a_partition_on_1_2_3();
    let offset = c.image.offset();
    let invalid = |r: Result<(), ReassignmentError>| {
        matches!(r, Err(ReassignmentError::InvalidReplicaAssignment { .. }))
    };
    assert!(invalid(c.reassign("t", 0, Some(&[]))));
    assert!(invalid(c.reassign("t", 0, Some(&[2, 2, 4]))));
    assert!(invalid(c.reassign("t", 0, Some(&[2, 3, 9]))));
    let unknown = |r: Result<(), ReassignmentError>| {
        matches!(r, Err(ReassignmentError::UnknownTopicOrPartition { .. }))
    };
    assert!(unknown(c.reassign("t", 1, Some(&[1]))));
    assert!(unknown(c.reassign("nope", 0, Some(&[1]))));
    assert_eq!(c.image.offset(), offset);
    // A fenced target broker is accepted (it is registered): the reassignment waits for it.
    for _ in 0..3 {
        c.advance(400);
        for id in 1..=3 {
            c.heartbeat(id, false);
        }
    }
    assert!(c.image.broker(4).unwrap().fenced);
    c.reassign("t", 0, Some(&[2, 3, 4])).unwrap();
    assert!(c.partition("t", 0).is_reassigning());
    assert!(!c.rejoin_isr("t", 0) || c.partition("t", 0).is_reassigning());
}

#[test]
fn a_snapshot_keeps_reassignments_and_old_snapshots_still_load() {
    let mut c = four_brokers_and_a_partition_on_1_2_3();
    c.reassign("t", 0, Some(&[2, 3, 4])).unwrap();
    let text = serde_json::to_string(&c.image).unwrap();
    let back: MetadataImage = serde_json::from_str(&text).unwrap();
    assert_eq!(back, c.image);
    // Without the reassignment fields, as a snapshot written before they existed.
    let old = text
        .replace(r#","adding_replicas":[4]"#, "")
        .replace(r#","removing_replicas":[1]"#, "")
        .replace(r#","original_replicas":[1,2,3]"#, "");
    assert_ne!(old, text);
    let back: MetadataImage = serde_json::from_str(&old).unwrap();
    assert!(!back.topic("t").unwrap().partitions[0].is_reassigning());
    // A snapshot whose adding replica is not a replica is refused.
    let bad = text.replace(r#""adding_replicas":[4]"#, r#""adding_replicas":[7]"#);
    assert!(serde_json::from_str::<MetadataImage>(&bad).is_err());
}

/// Named invariants over one image and the one before it.
fn check_invariants(before: &MetadataImage, after: &MetadataImage) -> Result<(), TestCaseError> {
    for topic in after.topics().values() {
        for (i, p) in topic.partitions.iter().enumerate() {
            // one_leader_from_replicas_or_none
            prop_assert!(
                p.leader == NO_LEADER
                    || (p.replicas.contains(&p.leader) && p.isr.contains(&p.leader)),
                "{}-{i}: leader {} not an in-sync replica {p:?}",
                topic.name,
                p.leader
            );
            // fenced_broker_leads_nothing
            if p.leader != NO_LEADER {
                let leader = after.broker(p.leader);
                prop_assert!(
                    leader.is_some_and(|b| !b.fenced),
                    "{}-{i}: led by fenced or unknown broker {}",
                    topic.name,
                    p.leader
                );
            }
            // isr_never_empty
            prop_assert!(!p.isr.is_empty(), "{}-{i}: empty ISR", topic.name);
            // isr_within_replicas
            prop_assert!(
                p.isr.iter().all(|r| p.replicas.contains(r)),
                "{}-{i}: {p:?}",
                topic.name
            );
            // replicas_contain_adding_and_removing
            prop_assert!(
                p.adding_replicas
                    .iter()
                    .chain(&p.removing_replicas)
                    .all(|r| p.replicas.contains(r)),
                "{}-{i}: {p:?}",
                topic.name
            );
            // a_reassignment_never_lingers_once_its_target_is_in_sync
            prop_assert!(
                !p.is_reassigning() || !p.target_replicas().iter().all(|r| p.isr.contains(r)),
                "{}-{i}: target in the ISR but not completed {p:?}",
                topic.name
            );
            // epochs_only_grow
            if let Some(old) = before
                .topic_by_id(topic.id)
                .and_then(|t| t.partitions.get(i))
            {
                prop_assert!(p.leader_epoch >= old.leader_epoch);
                prop_assert!(p.partition_epoch >= old.partition_epoch);
                if p != old {
                    prop_assert!(p.partition_epoch > old.partition_epoch);
                }
                if p.leader != old.leader {
                    prop_assert!(p.leader_epoch > old.leader_epoch);
                }
            }
        }
    }
    // producer_ids_only_grow
    prop_assert!(after.next_producer_id() >= before.next_producer_id());
    Ok(())
}

/// Named invariants of one preferred election from `before` to `after`.
fn check_preferred_election(
    before: &MetadataImage,
    after: &MetadataImage,
    results: &[crate::PartitionElection],
) -> Result<(), TestCaseError> {
    for result in results {
        let old = before
            .topic(&result.topic)
            .and_then(|t| t.partition(result.partition));
        let new = after
            .topic(&result.topic)
            .and_then(|t| t.partition(result.partition));
        match (&result.result, old, new) {
            (Ok(()), Some(old), Some(new)) => {
                let preferred = old.replicas[0];
                // preferred_election_elects_the_preferred_replica
                prop_assert_eq!(new.leader, preferred);
                // preferred_election_never_leaves_the_isr
                prop_assert!(old.isr.contains(&preferred), "{:?} -> {:?}", old, new);
                prop_assert!(after.broker(preferred).is_some_and(|b| b.is_active()));
                // preferred_election_bumps_the_leader_epoch
                prop_assert!(new.leader_epoch > old.leader_epoch);
                prop_assert_eq!(&new.isr, &old.isr);
            }
            (Ok(()), _, _) => prop_assert!(false, "elected an unknown partition {:?}", result),
            // refused_election_changes_nothing
            (Err(_), old, new) => prop_assert_eq!(old, new),
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Random registrations, heartbeats, silences, shutdowns and topic changes: every batch
    /// the controller writes applies cleanly, the invariants hold after every step, and
    /// replaying the log equals restoring a snapshot and replaying the rest.
    #[test]
    fn controller_walk_keeps_invariants(ops in proptest::collection::vec(op(), 1..80)) {
        // Auto rebalance on, with a check every few steps of the walk.
        let mut c = Cluster::with_config(ControllerConfig {
            broker_session_timeout_ms: 1_000,
            leader_imbalance_check_interval_ms: 3_000,
            ..ControllerConfig::default()
        });
        // Three brokers up, as a cluster starts; broker 4 is new to it.
        for id in 1..=3 {
            c.register(id, None).unwrap();
            c.heartbeat(id, false).unwrap();
        }
        let mut snapshot: Option<(MetadataImage, usize)> = None;
        for op in ops {
            let before = c.image.clone();
            match op {
                Op::Register(id) => { let _ = c.register(id, None); }
                Op::Heartbeat(id) => { c.heartbeat(id, false); }
                Op::Shutdown(id) => { c.heartbeat(id, true); }
                Op::Advance(ms) => c.advance(ms),
                Op::Create { partitions, factor } => {
                    let name = format!("t{}", c.next_topic);
                    let _ = c.create(&name, partitions, factor);
                }
                Op::Grow(t, n) => {
                    let names: Vec<String> = c.image.topics().keys().cloned().collect();
                    if let Some(name) = names.get(usize::from(t) % names.len().max(1)) {
                        let count = c.image.topic(name).map_or(0, |t| t.partition_count()) + n;
                        if let Ok(records) = c.controller.create_partitions(&c.image, name, count, None) {
                            c.commit(records);
                        }
                    }
                }
                Op::Delete(t) => {
                    let names: Vec<String> = c.image.topics().keys().cloned().collect();
                    if let Some(name) = names.get(usize::from(t) % names.len().max(1)) {
                        let records = c.controller.delete_topic(&c.image, name).unwrap();
                        c.commit(records);
                    }
                }
                Op::ProducerIds(id) => {
                    if let Some(epoch) = c.epochs.get(&id).copied() {
                        if let Ok((records, block)) = c.controller.allocate_producer_ids(&c.image, id, epoch) {
                            prop_assert!(block.first >= before.next_producer_id());
                            c.commit(records);
                        }
                    }
                }
                Op::Bounce(id) => {
                    let others: Vec<i32> = c.epochs.keys().copied().filter(|o| *o != id).collect();
                    for _ in 0..3 {
                        c.advance(400);
                        for other in &others {
                            c.heartbeat(*other, false);
                        }
                    }
                    c.heartbeat(id, false);
                }
                Op::RejoinIsr(t, p) => {
                    if let Some((name, p)) = c.pick_partition(t, p) {
                        c.rejoin_isr(&name, p);
                    }
                }
                Op::ElectPreferred(which) => {
                    let partitions = which.map(|(t, p)| {
                        vec![c.pick_partition(t, p).unwrap_or_else(|| ("missing".to_string(), 0))]
                    });
                    let results = c.elect(ElectionType::Preferred, partitions.as_deref());
                    check_preferred_election(&before, &c.image, &results)?;
                }
                Op::Reassign(t, p, mask, rotate) => {
                    if let Some((name, p)) = c.pick_partition(t, p) {
                        // Brokers 1..=5 (5 never registers: refused).
                        let mut target: Vec<i32> = (1..=5).filter(|b| mask & (1 << (b - 1)) != 0).collect();
                        let len = target.len().max(1);
                        target.rotate_left(usize::from(rotate) % len);
                        let result = c.reassign(&name, p, Some(&target));
                        // refused_reassignment_changes_nothing
                        if result.is_err() {
                            prop_assert_eq!(&before, &c.image);
                        } else if let Some(after) = c.image.topic(&name).and_then(|t| t.partition(p)) {
                            // reassignment_targets_what_was_asked
                            prop_assert_eq!(after.target_replicas(), target);
                        }
                    }
                }
                Op::CancelReassignment(t, p) => {
                    if let Some((name, p)) = c.pick_partition(t, p) {
                        let original = c.image.topic(&name).and_then(|t| t.partition(p)).map(|p| p.replicas_before_reassignment());
                        if c.reassign(&name, p, None).is_ok() {
                            // cancel_restores_the_original_replicas
                            let after = c.image.topic(&name).and_then(|t| t.partition(p));
                            prop_assert_eq!(after.map(|p| p.replicas.clone()), original);
                        }
                    }
                }
                Op::Snapshot => {
                    let bytes = serde_json::to_vec(&c.image).unwrap();
                    let restored: MetadataImage = serde_json::from_slice(&bytes).unwrap();
                    prop_assert_eq!(&restored, &c.image);
                    snapshot = Some((restored, c.log.len()));
                }
            }
            check_invariants(&before, &c.image)?;
        }
        // replay_equals_snapshot_plus_rest
        let mut replayed = MetadataImage::empty();
        for (offset, records) in &c.log {
            let (next, result) = replayed.apply(*offset, records);
            prop_assert_eq!(result, Ok(()));
            replayed = next;
        }
        prop_assert_eq!(&replayed, &c.image);
        if let Some((mut image, applied)) = snapshot {
            for (offset, records) in c.log.iter().skip(applied) {
                image = image.apply(*offset, records).0;
            }
            prop_assert_eq!(&image, &c.image);
        }
    }
}
