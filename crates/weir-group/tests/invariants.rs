//! Random joins, syncs, heartbeats, leaves, commits, crashes, restarts and reloads against the
//! coordinator with a fake clock, checking the invariants the issue names after every step:
//!
//! - `one_generation_at_a_time`: every JoinGroup/SyncGroup success carries the group's current
//!   generation, and the generation never goes backwards within one coordinator's life.
//! - `stable_members_hold_the_leaders_assignment`: in a Stable generation each member holds
//!   exactly what that generation's leader gave it, and so does every SyncGroup answer.
//! - `silent_member_is_removed_and_rebalances`: a member whose process died is gone once its
//!   session and any rebalance it was part of have timed out, and the group moved on to a new
//!   generation (or is rebalancing).
//! - `stale_generation_commits_are_rejected`: a commit is accepted only from a current member
//!   in the current generation, or with generation -1 on an empty group.
//! - `offsets_survive_reload`: replaying what the coordinator persisted gives back every
//!   accepted commit.
//! - `stable_group_survives_reload`: a Stable group comes back from its persisted records with
//!   the same generation, leader, members and assignments.
//! - `every_request_answered_once`: no parked JoinGroup or SyncGroup is answered twice, and
//!   none is left hanging when the coordinator unloads the group.

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;
use proptest::prelude::*;
use weir_group::*;

const GROUP: &str = "g";
const SESSION: i32 = 10_000;
const REBALANCE: i32 = 15_000;
const CLIENTS: usize = 4;
/// Longest a dead member can be kept: a parked sync until the sync timeout, then a rebalance
/// it never rejoins, then its session.
const REMOVAL_BOUND: i64 = 2 * REBALANCE as i64 + SESSION as i64 + 1_000;

#[derive(Debug, Clone)]
enum Action {
    Join(usize),
    Sync(usize),
    Heartbeat(usize),
    Leave(usize),
    /// Commit for a partition; `true` uses a generation one behind the client's, as a consumer
    /// that slept through a rebalance would.
    Commit(usize, i32, bool),
    Crash(usize),
    Restart(usize),
    Advance(i64),
    /// Every live client takes its next sensible step (rejoin, sync or heartbeat), then time
    /// passes: the background of well-behaved consumers the other actions disturb.
    Round(i64),
    Reload,
}

fn action() -> impl Strategy<Value = Action> {
    let client = 0..CLIENTS;
    prop_oneof![
        4 => client.clone().prop_map(Action::Join),
        4 => client.clone().prop_map(Action::Sync),
        4 => client.clone().prop_map(Action::Heartbeat),
        1 => client.clone().prop_map(Action::Leave),
        3 => (client.clone(), 0..3i32, proptest::bool::weighted(0.2))
            .prop_map(|(c, p, stale)| Action::Commit(c, p, stale)),
        1 => client.clone().prop_map(Action::Crash),
        1 => client.prop_map(Action::Restart),
        4 => prop_oneof![0..500i64, 500..4_000i64, 4_000..20_000i64].prop_map(Action::Advance),
        8 => (0..3_000i64).prop_map(Action::Round),
        1 => Just(Action::Reload),
    ]
}

#[derive(Debug)]
struct Client {
    instance: Option<String>,
    member_id: String,
    generation: i32,
    members: Vec<JoinMember>,
    parked: Option<RequestId>,
    /// The coordinator said to rejoin (or the client never joined).
    needs_rejoin: bool,
    /// Joined a generation and has not synced it yet.
    needs_sync: bool,
    alive: bool,
    incarnation: u32,
}

impl Client {
    fn key(&self) -> String {
        self.instance
            .clone()
            .unwrap_or_else(|| self.member_id.clone())
    }
}

/// A member whose process died, and what we last saw of it.
#[derive(Debug)]
struct Dead {
    member_id: String,
    since: Millis,
    client: usize,
    incarnation: u32,
    seen_in_generation: Option<i32>,
}

struct World {
    c: Coordinator,
    now: Millis,
    next_request: u64,
    requests: HashMap<RequestId, (usize, u32)>,
    outstanding: HashSet<RequestId>,
    clients: Vec<Client>,
    log: Vec<(Bytes, Option<Bytes>)>,
    committed: BTreeMap<TopicPartition, i64>,
    next_offset: i64,
    /// generation → assignment key (instance or member id) → assignment, as the leader gave it.
    given: HashMap<i32, HashMap<String, Bytes>>,
    dead: Vec<Dead>,
    last_generation: i32,
    reloads: u64,
}

fn describe(c: &Coordinator) -> Option<GroupDescription> {
    c.describe_groups(&[GROUP.into()])
        .pop()
        .and_then(Result::ok)
}

fn key_of(m: &MemberDescription) -> String {
    m.group_instance_id
        .clone()
        .unwrap_or_else(|| m.member_id.clone())
}

impl World {
    fn new() -> Self {
        Self {
            c: Coordinator::new(Config::default()),
            now: 1_700_000_000_000,
            next_request: 0,
            requests: HashMap::new(),
            outstanding: HashSet::new(),
            clients: (0..CLIENTS)
                .map(|i| Client {
                    instance: (i < 2).then(|| format!("instance-{i}")),
                    member_id: String::new(),
                    generation: -1,
                    members: Vec::new(),
                    parked: None,
                    needs_rejoin: true,
                    needs_sync: false,
                    alive: true,
                    incarnation: 0,
                })
                .collect(),
            log: Vec::new(),
            committed: BTreeMap::new(),
            next_offset: 0,
            given: HashMap::new(),
            dead: Vec::new(),
            last_generation: 0,
            reloads: 0,
        }
    }

    fn request(&mut self, client: usize) -> RequestId {
        self.next_request += 1;
        let id = RequestId(self.next_request);
        let c = &mut self.clients[client];
        c.parked = Some(id);
        self.requests.insert(id, (client, c.incarnation));
        self.outstanding.insert(id);
        id
    }

    fn reset(&mut self, i: usize) {
        let c = &mut self.clients[i];
        c.member_id.clear();
        c.generation = -1;
        c.members.clear();
        c.needs_rejoin = true;
        c.needs_sync = false;
    }

    fn step(&mut self, action: &Action) -> Result<(), TestCaseError> {
        match *action {
            Action::Join(i) => {
                let c = &self.clients[i];
                if !c.alive || c.parked.is_some() {
                    return Ok(());
                }
                let req = JoinRequest {
                    group_id: GROUP.into(),
                    member_id: c.member_id.clone(),
                    group_instance_id: c.instance.clone(),
                    protocol_type: "consumer".into(),
                    protocols: vec![Protocol {
                        name: "range".into(),
                        metadata: Bytes::from(format!("client-{i}")),
                    }],
                    session_timeout_ms: SESSION,
                    rebalance_timeout_ms: REBALANCE,
                    client_id: format!("client-{i}"),
                    client_host: "/10.0.0.1".into(),
                    require_known_member_id: true,
                    supports_skip_assignment: i % 2 == 0,
                    reason: None,
                };
                let id = self.request(i);
                self.c.join_group(self.now, id, req);
            }
            Action::Sync(i) => {
                let c = &self.clients[i];
                if !c.alive || c.parked.is_some() || c.member_id.is_empty() {
                    return Ok(());
                }
                let generation = c.generation;
                let assignments: Vec<(String, Bytes)> = c
                    .members
                    .iter()
                    .map(|m| {
                        let key = m
                            .group_instance_id
                            .clone()
                            .unwrap_or_else(|| m.member_id.clone());
                        (
                            m.member_id.clone(),
                            Bytes::from(format!("{generation}:{key}")),
                        )
                    })
                    .collect();
                let req = SyncRequest {
                    group_id: GROUP.into(),
                    generation_id: generation,
                    member_id: c.member_id.clone(),
                    group_instance_id: c.instance.clone(),
                    assignments: assignments.clone(),
                    ..SyncRequest::default()
                };
                // Whether this sync is the leader's for the generation being completed.
                if let Some(d) = describe(&self.c)
                    && d.state == GroupState::CompletingRebalance
                    && d.generation_id == generation
                    && d.leader.as_deref() == Some(c.member_id.as_str())
                {
                    let by_key = assignments
                        .iter()
                        .filter_map(|(member_id, a)| {
                            let m = d.members.iter().find(|m| &m.member_id == member_id)?;
                            Some((key_of(m), a.clone()))
                        })
                        .collect();
                    self.given.insert(generation, by_key);
                }
                let id = self.request(i);
                self.c.sync_group(self.now, id, req);
            }
            Action::Heartbeat(i) => {
                let c = &self.clients[i];
                if !c.alive || c.parked.is_some() || c.generation < 0 {
                    return Ok(());
                }
                let result = self.c.heartbeat(
                    self.now,
                    &HeartbeatRequest {
                        group_id: GROUP.into(),
                        generation_id: c.generation,
                        member_id: c.member_id.clone(),
                        group_instance_id: c.instance.clone(),
                    },
                );
                match result {
                    Err(Error::RebalanceInProgress | Error::IllegalGeneration) => {
                        self.clients[i].needs_rejoin = true;
                    }
                    Err(Error::UnknownMemberId) => self.reset(i),
                    Err(Error::FencedInstanceId) => self.crash(i),
                    _ => {}
                }
            }
            Action::Leave(i) => {
                let c = &self.clients[i];
                if !c.alive || c.parked.is_some() || c.member_id.is_empty() {
                    return Ok(());
                }
                let leaving = LeavingMember {
                    member_id: c.member_id.clone(),
                    group_instance_id: c.instance.clone(),
                    reason: None,
                };
                self.c.leave_group(self.now, GROUP, &[leaving]);
                self.reset(i);
            }
            Action::Commit(i, partition, stale) => self.commit(i, partition, stale)?,
            Action::Crash(i) => {
                if self.clients[i].alive {
                    self.crash(i);
                }
            }
            Action::Restart(i) => {
                if !self.clients[i].alive {
                    self.clients[i].alive = true;
                    self.clients[i].incarnation += 1;
                    self.reset(i);
                }
            }
            Action::Advance(ms) => {
                let target = self.now + ms;
                while let Some(d) = self.c.next_deadline().filter(|d| *d <= target) {
                    self.now = self.now.max(d);
                    self.c.tick(self.now);
                    self.deliver()?;
                    if self.c.next_deadline() == Some(d) {
                        break;
                    }
                }
                self.now = target;
                self.c.tick(self.now);
            }
            Action::Round(ms) => {
                for i in 0..CLIENTS {
                    let c = &self.clients[i];
                    let next = if c.needs_rejoin {
                        Action::Join(i)
                    } else if c.needs_sync {
                        Action::Sync(i)
                    } else {
                        Action::Heartbeat(i)
                    };
                    self.step(&next)?;
                }
                self.step(&Action::Advance(ms))?;
            }
            Action::Reload => {
                self.deliver()?;
                // every_request_answered_once: losing the partition answers what was parked.
                let before = describe(&self.c).filter(|d| d.state == GroupState::Stable);
                self.c.unload(partition_for(GROUP, 50), 50);
                self.deliver()?;
                prop_assert!(
                    self.outstanding.is_empty(),
                    "left hanging: {:?}",
                    self.outstanding
                );
                self.reloads += 1;
                let mut config = Config::default();
                config.member_id_seed = self.reloads;
                let mut c = Coordinator::new(config);
                c.load(self.now, self.log.clone())
                    .map_err(|e| TestCaseError::fail(format!("reload failed: {e}")))?;
                self.c = c;
                // Parked requests die with the old coordinator.
                for c in &mut self.clients {
                    c.parked = None;
                }
                self.last_generation = describe(&self.c).map_or(0, |d| d.generation_id);
                for d in &mut self.dead {
                    d.since = d.since.max(self.now);
                    d.seen_in_generation = None;
                }
                self.offsets_survive_reload()?;
                // stable_group_survives_reload
                if let Some(before) = before {
                    prop_assert_eq!(
                        Some(before),
                        describe(&self.c),
                        "Stable group lost on reload"
                    );
                }
            }
        }
        self.deliver()?;
        self.check()
    }

    fn crash(&mut self, i: usize) {
        let c = &mut self.clients[i];
        c.alive = false;
        c.parked = None;
        if !c.member_id.is_empty() {
            self.dead.push(Dead {
                member_id: c.member_id.clone(),
                since: self.now,
                client: i,
                incarnation: c.incarnation,
                seen_in_generation: None,
            });
        }
    }

    /// stale_generation_commits_are_rejected
    fn commit(&mut self, i: usize, partition: i32, stale: bool) -> Result<(), TestCaseError> {
        let c = &self.clients[i];
        if !c.alive || c.parked.is_some() {
            return Ok(());
        }
        let before = describe(&self.c);
        self.next_offset += 1;
        let generation_id = match (c.member_id.is_empty(), stale) {
            (true, _) => -1,
            (false, false) => c.generation,
            (false, true) => c.generation.saturating_sub(1).max(0),
        };
        let req = OffsetCommitRequest {
            group_id: GROUP.into(),
            generation_id,
            member_id: c.member_id.clone(),
            group_instance_id: c.instance.clone(),
            retention_time_ms: None,
            offsets: vec![OffsetCommit {
                partition: TopicPartition::new("t", partition),
                offset: self.next_offset,
                leader_epoch: 0,
                metadata: None,
            }],
        };
        let result = self.c.commit_offsets(self.now, &req).pop();
        if result == Some(Ok(())) {
            let legit = match &before {
                None => req.generation_id < 0,
                Some(d) if req.generation_id < 0 => d.state == GroupState::Empty,
                Some(d) => {
                    d.generation_id == req.generation_id
                        && d.state != GroupState::CompletingRebalance
                        && d.members.iter().any(|m| m.member_id == req.member_id)
                }
            };
            prop_assert!(
                legit,
                "stale commit accepted: {req:?} with group {before:?}"
            );
            self.committed
                .insert(TopicPartition::new("t", partition), self.next_offset);
        }
        Ok(())
    }

    /// offsets_survive_reload
    fn offsets_survive_reload(&self) -> Result<(), TestCaseError> {
        let fetched = self
            .c
            .fetch_offsets(&[OffsetFetchRequest {
                group_id: GROUP.into(),
                partitions: None,
            }])
            .pop()
            .unwrap_or_default();
        let fetched: BTreeMap<TopicPartition, i64> = fetched
            .into_iter()
            .map(|f| (f.partition, f.offset))
            .collect();
        prop_assert_eq!(&fetched, &self.committed, "offsets lost across reload");
        Ok(())
    }

    fn deliver(&mut self) -> Result<(), TestCaseError> {
        let outputs = self.c.take_outputs();
        let current = describe(&self.c).map(|d| d.generation_id);
        for o in outputs {
            match o {
                Output::Persist { records, group_id } => {
                    prop_assert_eq!(group_id, GROUP);
                    self.log
                        .extend(records.into_iter().map(|r| (r.key, r.value)));
                }
                Output::Join { request, response } => {
                    // every_request_answered_once
                    prop_assert!(
                        self.outstanding.remove(&request),
                        "{request:?} answered twice"
                    );
                    let Some(i) = self.owner(request) else {
                        continue;
                    };
                    self.clients[i].parked = None;
                    match response {
                        Ok(r) => {
                            // one_generation_at_a_time
                            prop_assert_eq!(Some(r.generation_id), current);
                            let c = &mut self.clients[i];
                            c.member_id = r.member_id;
                            c.generation = r.generation_id;
                            c.members = if r.skip_assignment {
                                Vec::new()
                            } else {
                                r.members
                            };
                            c.needs_rejoin = false;
                            c.needs_sync = true;
                        }
                        Err(Error::MemberIdRequired { member_id }) => {
                            self.clients[i].member_id = member_id;
                        }
                        Err(Error::UnknownMemberId) => self.reset(i),
                        Err(Error::FencedInstanceId) => self.crash(i),
                        Err(_) => {}
                    }
                }
                Output::Sync { request, response } => {
                    // every_request_answered_once
                    prop_assert!(
                        self.outstanding.remove(&request),
                        "{request:?} answered twice"
                    );
                    let Some(i) = self.owner(request) else {
                        continue;
                    };
                    self.clients[i].parked = None;
                    match response {
                        Ok(r) => {
                            let c = &self.clients[i];
                            // one_generation_at_a_time
                            prop_assert_eq!(Some(c.generation), current);
                            // stable_members_hold_the_leaders_assignment
                            let expected = self
                                .given
                                .get(&c.generation)
                                .and_then(|g| g.get(&c.key()))
                                .cloned()
                                .unwrap_or_default();
                            prop_assert_eq!(
                                r.assignment,
                                expected,
                                "client {} got a foreign assignment",
                                i
                            );
                            self.clients[i].needs_sync = false;
                        }
                        Err(Error::RebalanceInProgress | Error::IllegalGeneration) => {
                            self.clients[i].needs_rejoin = true;
                        }
                        Err(Error::UnknownMemberId) => self.reset(i),
                        Err(Error::FencedInstanceId) => self.crash(i),
                        Err(_) => {}
                    }
                }
            }
        }
        Ok(())
    }

    fn owner(&self, request: RequestId) -> Option<usize> {
        let (i, incarnation) = *self.requests.get(&request)?;
        let c = &self.clients[i];
        (c.alive && c.incarnation == incarnation && c.parked == Some(request)).then_some(i)
    }

    fn check(&mut self) -> Result<(), TestCaseError> {
        let Some(d) = describe(&self.c) else {
            return Ok(());
        };
        // one_generation_at_a_time
        prop_assert!(
            d.generation_id >= self.last_generation,
            "generation went back"
        );
        self.last_generation = d.generation_id;
        // stable_members_hold_the_leaders_assignment
        if d.state == GroupState::Stable {
            let given = self.given.get(&d.generation_id);
            for m in &d.members {
                let expected = given
                    .and_then(|g| g.get(&key_of(m)))
                    .cloned()
                    .unwrap_or_default();
                prop_assert_eq!(
                    &m.assignment,
                    &expected,
                    "member {} in {:?}",
                    m.member_id,
                    d
                );
            }
        }
        // silent_member_is_removed_and_rebalances
        let now = self.now;
        for dead in &mut self.dead {
            let present = d.members.iter().any(|m| m.member_id == dead.member_id);
            let restarted = self.clients[dead.client].incarnation != dead.incarnation;
            if present {
                dead.seen_in_generation = Some(d.generation_id);
                prop_assert!(
                    now - dead.since <= REMOVAL_BOUND,
                    "dead member {} still in the group {} ms after it died: {:?}",
                    dead.member_id,
                    now - dead.since,
                    d
                );
            } else if let Some(g) = dead.seen_in_generation.take()
                && !restarted
            {
                prop_assert!(
                    d.generation_id > g || d.state == GroupState::PreparingRebalance,
                    "member {} removed without a rebalance: {:?}",
                    dead.member_id,
                    d
                );
            }
        }
        self.dead.retain(|dead| {
            d.members.iter().any(|m| m.member_id == dead.member_id)
                || dead.seen_in_generation.is_some()
                || now - dead.since <= REMOVAL_BOUND
        });
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn group_invariants_hold(actions in proptest::collection::vec(action(), 1..200)) {
        let mut world = World::new();
        for a in &actions {
            world.step(a)?;
        }
        if std::env::var_os("WEIR_GROUP_STATS").is_some() {
            let d = describe(&world.c);
            eprintln!(
                "STATS state={:?} members={:?} generation={:?} dead={}",
                d.as_ref().map(|d| d.state),
                d.as_ref().map(|d| d.members.len()),
                d.as_ref().map(|d| d.generation_id),
                world.dead.len(),
            );
        }
        // Whatever happened, a final reload keeps every accepted commit.
        world.step(&Action::Reload)?;
    }
}

/// Clients that behave (rejoin when told, sync after joining, heartbeat) reach a Stable group
/// holding every client, so the random run above is not passing by never getting anywhere.
#[test]
fn well_behaved_clients_converge() {
    let mut w = World::new();
    for _ in 0..10 {
        w.step(&Action::Round(150)).unwrap();
    }
    let d = describe(&w.c).unwrap();
    assert_eq!(d.state, GroupState::Stable, "{d:?}");
    assert_eq!(d.members.len(), CLIENTS);
    assert!(d.members.iter().all(|m| !m.assignment.is_empty()));
}
