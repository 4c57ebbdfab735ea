//! Rule-by-rule tests of the coordinator with a fake clock.

use bytes::Bytes;

use crate::*;

const GROUP: &str = "g";
const SESSION: i32 = 10_000;
const REBALANCE: i32 = 30_000;

struct Harness {
    c: Coordinator,
    now: Millis,
    next_request: u64,
    persisted: Vec<(Bytes, Option<Bytes>)>,
}

fn protocols(names: &[&str], metadata: &str) -> Vec<Protocol> {
    names
        .iter()
        .map(|n| Protocol {
            name: (*n).into(),
            metadata: Bytes::from(metadata.to_owned()),
        })
        .collect()
}

fn join_req(member_id: &str, instance: Option<&str>) -> JoinRequest {
    JoinRequest {
        group_id: GROUP.into(),
        member_id: member_id.into(),
        group_instance_id: instance.map(Into::into),
        protocol_type: "consumer".into(),
        protocols: protocols(&["range"], "sub"),
        session_timeout_ms: SESSION,
        rebalance_timeout_ms: REBALANCE,
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        require_known_member_id: true,
        supports_skip_assignment: false,
        reason: None,
    }
}

impl Harness {
    fn new() -> Self {
        Self::with(Config::default())
    }

    fn with(config: Config) -> Self {
        Self {
            c: Coordinator::new(config),
            now: 1_000_000,
            next_request: 0,
            persisted: Vec::new(),
        }
    }

    fn outputs(&mut self) -> Vec<Output> {
        let outputs = self.c.take_outputs();
        for o in &outputs {
            if let Output::Persist { records, .. } = o {
                self.persisted
                    .extend(records.iter().map(|r| (r.key.clone(), r.value.clone())));
            }
        }
        outputs
    }

    fn request(&mut self) -> RequestId {
        self.next_request += 1;
        RequestId(self.next_request)
    }

    fn join(&mut self, req: JoinRequest) -> RequestId {
        let id = self.request();
        self.c.join_group(self.now, id, req);
        id
    }

    fn sync(
        &mut self,
        member_id: &str,
        generation: i32,
        assignments: &[(&str, &str)],
    ) -> RequestId {
        let id = self.request();
        self.c.sync_group(
            self.now,
            id,
            SyncRequest {
                group_id: GROUP.into(),
                generation_id: generation,
                member_id: member_id.into(),
                assignments: assignments
                    .iter()
                    .map(|(m, a)| ((*m).to_owned(), Bytes::from((*a).to_owned())))
                    .collect(),
                ..SyncRequest::default()
            },
        );
        id
    }

    fn heartbeat(&mut self, member_id: &str, generation: i32) -> Result<()> {
        self.c.heartbeat(
            self.now,
            &HeartbeatRequest {
                group_id: GROUP.into(),
                generation_id: generation,
                member_id: member_id.into(),
                group_instance_id: None,
            },
        )
    }

    /// Advances the clock, firing every timer on the way as the broker would.
    fn advance(&mut self, ms: i64) {
        let target = self.now + ms;
        while let Some(d) = self.c.next_deadline().filter(|d| *d <= target) {
            self.now = self.now.max(d);
            self.c.tick(self.now);
            if self.c.next_deadline() == Some(d) {
                break;
            }
        }
        self.now = target;
        self.c.tick(self.now);
    }

    fn join_response(outputs: &[Output], request: RequestId) -> Option<Result<JoinResponse>> {
        outputs.iter().find_map(|o| match o {
            Output::Join {
                request: r,
                response,
            } if *r == request => Some(response.clone()),
            _ => None,
        })
    }

    fn sync_response(outputs: &[Output], request: RequestId) -> Option<Result<SyncResponse>> {
        outputs.iter().find_map(|o| match o {
            Output::Sync {
                request: r,
                response,
            } if *r == request => Some(response.clone()),
            _ => None,
        })
    }

    /// First join: MEMBER_ID_REQUIRED, then the rejoin is parked. Returns the member id and
    /// the parked request.
    fn new_member(&mut self) -> (String, RequestId) {
        let first = self.join(join_req("", None));
        let out = self.outputs();
        let Some(Err(Error::MemberIdRequired { member_id })) = Self::join_response(&out, first)
        else {
            panic!("expected MEMBER_ID_REQUIRED, got {out:?}");
        };
        let rejoin = self.join(join_req(&member_id, None));
        (member_id, rejoin)
    }

    /// Brings a lone member to Stable with assignment "a". Returns (member id, generation).
    fn stable_single(&mut self) -> (String, i32) {
        let (m, r) = self.new_member();
        self.advance(i64::from(Config::default().initial_rebalance_delay_ms));
        let out = self.outputs();
        let joined = Self::join_response(&out, r).unwrap().unwrap();
        let s = self.sync(&m, joined.generation_id, &[(&m, "a")]);
        let out = self.outputs();
        assert_eq!(
            Self::sync_response(&out, s).unwrap().unwrap().assignment,
            "a"
        );
        (m, joined.generation_id)
    }

    fn describe(&self) -> GroupDescription {
        self.c
            .describe_groups(&[GROUP.into()])
            .pop()
            .unwrap()
            .unwrap()
    }

    fn commit(&mut self, member_id: &str, generation: i32, offset: i64) -> Result<()> {
        self.c
            .commit_offsets(
                self.now,
                &OffsetCommitRequest {
                    group_id: GROUP.into(),
                    generation_id: generation,
                    member_id: member_id.into(),
                    group_instance_id: None,
                    retention_time_ms: None,
                    offsets: vec![OffsetCommit {
                        partition: TopicPartition::new("t", 0),
                        offset,
                        leader_epoch: 3,
                        metadata: Some("meta".into()),
                    }],
                },
            )
            .pop()
            .unwrap()
    }

    fn fetch(&self, group: &str) -> Vec<FetchedOffset> {
        self.c
            .fetch_offsets(&[OffsetFetchRequest {
                group_id: group.into(),
                partitions: None,
            }])
            .pop()
            .unwrap()
    }
}

#[test]
fn first_join_gets_member_id_required_then_rejoins() {
    let mut h = Harness::new();
    let (m, r) = h.new_member();
    assert!(m.starts_with("client-"));
    assert!(
        h.outputs().is_empty(),
        "the rejoin waits for the initial delay"
    );
    assert_eq!(h.describe().state, GroupState::PreparingRebalance);
    h.advance(100);
    let joined = Harness::join_response(&h.outputs(), r).unwrap().unwrap();
    assert_eq!(joined.generation_id, 1);
    assert_eq!(joined.leader, m);
    assert_eq!(joined.members.len(), 1);
    assert_eq!(joined.protocol_name.as_deref(), Some("range"));
}

#[test]
fn join_without_known_member_id_requirement_is_admitted_at_once() {
    let mut h = Harness::new();
    let r = h.join(JoinRequest {
        require_known_member_id: false,
        ..join_req("", None)
    });
    assert!(h.outputs().is_empty());
    h.advance(100);
    let joined = Harness::join_response(&h.outputs(), r).unwrap().unwrap();
    assert_eq!(joined.leader, joined.member_id);
}

#[test]
fn lone_consumer_is_stable_within_the_initial_delay() {
    let mut h = Harness::new();
    let start = h.now;
    h.stable_single();
    assert_eq!(h.describe().state, GroupState::Stable);
    assert!(h.now - start <= 100);
}

#[test]
fn join_validations() {
    let mut h = Harness::new();
    let r = h.join(JoinRequest {
        session_timeout_ms: 10,
        ..join_req("", None)
    });
    assert_eq!(
        Harness::join_response(&h.outputs(), r),
        Some(Err(Error::InvalidSessionTimeout))
    );
    let r = h.join(JoinRequest {
        group_id: String::new(),
        ..join_req("", None)
    });
    assert_eq!(
        Harness::join_response(&h.outputs(), r),
        Some(Err(Error::InvalidGroupId))
    );
    let r = h.join(join_req("made-up", None));
    assert_eq!(
        Harness::join_response(&h.outputs(), r),
        Some(Err(Error::UnknownMemberId))
    );
    let r = h.join(JoinRequest {
        protocols: Vec::new(),
        ..join_req("", None)
    });
    assert_eq!(
        Harness::join_response(&h.outputs(), r),
        Some(Err(Error::InconsistentGroupProtocol))
    );
    assert!(
        h.c.describe_groups(&[GROUP.into()])[0].is_err(),
        "no group left behind"
    );
}

#[test]
fn incompatible_protocols_are_rejected() {
    let mut h = Harness::new();
    h.stable_single();
    let r = h.join(JoinRequest {
        protocols: protocols(&["roundrobin"], ""),
        ..join_req("", None)
    });
    assert_eq!(
        Harness::join_response(&h.outputs(), r),
        Some(Err(Error::InconsistentGroupProtocol))
    );
    let r = h.join(JoinRequest {
        protocol_type: "connect".into(),
        ..join_req("", None)
    });
    assert_eq!(
        Harness::join_response(&h.outputs(), r),
        Some(Err(Error::InconsistentGroupProtocol))
    );
}

#[test]
fn two_members_one_rebalance_leader_gets_all_metadata_and_sync_distributes() {
    let mut h = Harness::new();
    let (a, ra) = h.new_member();
    let (b, rb) = h.new_member();
    h.advance(100);
    // b joined during the delay, which extends once more.
    h.advance(100);
    let out = h.outputs();
    let ja = Harness::join_response(&out, ra).unwrap().unwrap();
    let jb = Harness::join_response(&out, rb).unwrap().unwrap();
    assert_eq!(ja.generation_id, 1);
    assert_eq!(jb.generation_id, 1);
    assert_eq!(ja.leader, jb.leader);
    let (leader, follower) = if ja.leader == a {
        (&ja, &jb)
    } else {
        (&jb, &ja)
    };
    assert_eq!(leader.members.len(), 2);
    assert!(leader.members.iter().all(|m| m.metadata == "sub"));
    assert!(follower.members.is_empty());

    // The follower's sync waits for the leader's.
    let sf = h.sync(&follower.member_id, 1, &[]);
    assert!(h.outputs().is_empty());
    assert_eq!(h.heartbeat(&follower.member_id, 1), Ok(()));
    let sl = h.sync(&leader.member_id, 1, &[(&a, "for-a"), (&b, "for-b")]);
    let out = h.outputs();
    assert!(
        matches!(out[0], Output::Persist { .. }),
        "persist before answering"
    );
    let expect = |id: &str| if id == a { "for-a" } else { "for-b" };
    assert_eq!(
        Harness::sync_response(&out, sf)
            .unwrap()
            .unwrap()
            .assignment,
        expect(&follower.member_id)
    );
    assert_eq!(
        Harness::sync_response(&out, sl)
            .unwrap()
            .unwrap()
            .assignment,
        expect(&leader.member_id)
    );
    let d = h.describe();
    assert_eq!(d.state, GroupState::Stable);
    assert_eq!(d.protocol_name, "range");
}

#[test]
fn protocol_chosen_by_vote_among_common_protocols() {
    let mut h = Harness::new();
    let mut joins = Vec::new();
    for prefs in [
        &["roundrobin", "range"][..],
        &["range", "roundrobin"][..],
        &["range", "roundrobin", "sticky"][..],
    ] {
        let r = h.join(JoinRequest {
            protocols: protocols(prefs, ""),
            require_known_member_id: false,
            ..join_req("", None)
        });
        joins.push(r);
    }
    h.advance(1_000);
    let out = h.outputs();
    for r in joins {
        let j = Harness::join_response(&out, r).unwrap().unwrap();
        assert_eq!(j.protocol_name.as_deref(), Some("range"));
    }
}

#[test]
fn heartbeat_during_rebalance_gets_rebalance_in_progress() {
    let mut h = Harness::new();
    let (a, generation) = h.stable_single();
    assert_eq!(h.heartbeat(&a, generation), Ok(()));
    let (_b, _) = h.new_member();
    assert_eq!(h.describe().state, GroupState::PreparingRebalance);
    assert_eq!(h.heartbeat(&a, generation), Err(Error::RebalanceInProgress));
    assert_eq!(
        h.heartbeat(&a, generation + 5),
        Err(Error::IllegalGeneration)
    );
    assert_eq!(
        h.heartbeat("nobody", generation),
        Err(Error::UnknownMemberId)
    );
}

#[test]
fn session_expiry_removes_the_member_and_rebalances() {
    let mut h = Harness::new();
    let (a, ra) = h.new_member();
    let (b, rb) = h.new_member();
    h.advance(200);
    let out = h.outputs();
    let leader = Harness::join_response(&out, ra).unwrap().unwrap().leader;
    let _ = Harness::join_response(&out, rb).unwrap().unwrap();
    h.sync(&leader, 1, &[(&a, "x"), (&b, "y")]);
    let other = if leader == a { &b } else { &a };
    h.sync(other, 1, &[]);
    h.outputs();
    // Only the leader heartbeats.
    for _ in 0..4 {
        h.advance(3_000);
        let _ = h.heartbeat(&leader, 1);
    }
    let d = h.describe();
    assert_eq!(d.members.len(), 1, "{d:?}");
    assert_eq!(d.members[0].member_id, leader);
    assert_eq!(d.state, GroupState::PreparingRebalance);
    assert_eq!(h.heartbeat(&leader, 1), Err(Error::RebalanceInProgress));
    let r = h.join(join_req(&leader, None));
    let j = Harness::join_response(&h.outputs(), r).unwrap().unwrap();
    assert_eq!(j.generation_id, 2);
    assert_eq!(j.members.len(), 1);
}

#[test]
fn rebalance_timeout_drops_members_that_do_not_rejoin() {
    let mut h = Harness::new();
    let (a, ra) = h.new_member();
    let (b, rb) = h.new_member();
    h.advance(200);
    let out = h.outputs();
    let leader = Harness::join_response(&out, ra).unwrap().unwrap().leader;
    let _ = Harness::join_response(&out, rb);
    h.sync(&leader, 1, &[(&a, "x"), (&b, "y")]);
    let other = if leader == a { b.clone() } else { a.clone() };
    h.sync(&other, 1, &[]);
    h.outputs();
    // The leader rejoins (forcing a rebalance); the other keeps heartbeating but never rejoins.
    let r = h.join(join_req(&leader, None));
    for _ in 0..11 {
        h.advance(3_000);
        let _ = h.heartbeat(&other, 1);
    }
    let j = Harness::join_response(&h.outputs(), r).unwrap().unwrap();
    assert_eq!(j.generation_id, 2);
    assert_eq!(j.members.len(), 1);
    assert_eq!(h.heartbeat(&other, 1), Err(Error::UnknownMemberId));
}

#[test]
fn unsynced_member_is_removed_after_the_rebalance_timeout() {
    let mut h = Harness::new();
    let (a, ra) = h.new_member();
    let (b, rb) = h.new_member();
    h.advance(200);
    let out = h.outputs();
    let leader = Harness::join_response(&out, ra).unwrap().unwrap().leader;
    let _ = Harness::join_response(&out, rb);
    let other = if leader == a { b.clone() } else { a.clone() };
    h.sync(&leader, 1, &[(&a, "x"), (&b, "y")]);
    h.outputs();
    // The other heartbeats but never syncs.
    for _ in 0..11 {
        h.advance(3_000);
        let _ = h.heartbeat(&other, 1);
        let _ = h.heartbeat(&leader, 1);
    }
    assert_eq!(h.heartbeat(&other, 1), Err(Error::UnknownMemberId));
}

#[test]
fn leave_group_in_batches() {
    let mut h = Harness::new();
    let (a, ra) = h.new_member();
    let (b, rb) = h.new_member();
    h.advance(200);
    let out = h.outputs();
    let _ = (
        Harness::join_response(&out, ra),
        Harness::join_response(&out, rb),
    );
    let results = h.c.leave_group(
        h.now,
        GROUP,
        &[
            LeavingMember {
                member_id: a.clone(),
                ..LeavingMember::default()
            },
            LeavingMember {
                member_id: "ghost".into(),
                ..LeavingMember::default()
            },
        ],
    );
    assert_eq!(results, vec![Ok(()), Err(Error::UnknownMemberId)]);
    assert_eq!(h.describe().state, GroupState::PreparingRebalance);
    let r = h.join(join_req(&b, None));
    let j = Harness::join_response(&h.outputs(), r).unwrap().unwrap();
    assert_eq!(j.leader, b);
    assert_eq!(j.generation_id, 2);
    let results = h.c.leave_group(
        h.now,
        GROUP,
        &[LeavingMember {
            member_id: b.clone(),
            ..LeavingMember::default()
        }],
    );
    assert_eq!(results, vec![Ok(())]);
    let d = h.describe();
    assert_eq!(d.state, GroupState::Empty);
    assert_eq!(d.generation_id, 3);
}

#[test]
fn leave_answers_parked_sync_and_join() {
    let mut h = Harness::new();
    let (a, ra) = h.new_member();
    let (b, rb) = h.new_member();
    h.advance(200);
    let out = h.outputs();
    let leader = Harness::join_response(&out, ra).unwrap().unwrap().leader;
    let _ = Harness::join_response(&out, rb);
    let other = if leader == a { b.clone() } else { a.clone() };
    let s = h.sync(&other, 1, &[]);
    h.c.leave_group(
        h.now,
        GROUP,
        &[LeavingMember {
            member_id: leader.clone(),
            ..LeavingMember::default()
        }],
    );
    let out = h.outputs();
    assert_eq!(
        Harness::sync_response(&out, s),
        Some(Err(Error::RebalanceInProgress))
    );
}

fn static_join(h: &mut Harness, member_id: &str, instance: &str) -> RequestId {
    h.join(join_req(member_id, Some(instance)))
}

#[test]
fn static_member_restart_keeps_assignment_without_rebalance() {
    let mut h = Harness::new();
    let ra = static_join(&mut h, "", "i-a");
    let rb = static_join(&mut h, "", "i-b");
    h.advance(200);
    let out = h.outputs();
    let ja = Harness::join_response(&out, ra).unwrap().unwrap();
    let jb = Harness::join_response(&out, rb).unwrap().unwrap();
    let (a, b) = (ja.member_id.clone(), jb.member_id.clone());
    h.sync(&ja.leader, 1, &[(&a, "pa"), (&b, "pb")]);
    let follower = if ja.leader == a { &b } else { &a };
    h.sync(follower, 1, &[]);
    h.outputs();

    // b's process restarts (no LeaveGroup for static members) and rejoins within its session.
    h.advance(2_000);
    let r = static_join(&mut h, "", "i-b");
    let out = h.outputs();
    assert!(
        matches!(out[0], Output::Persist { .. }),
        "new member id persisted first"
    );
    let j = Harness::join_response(&out, r).unwrap().unwrap();
    assert_ne!(j.member_id, b);
    assert_eq!(j.generation_id, 1, "no rebalance");
    assert_eq!(h.describe().state, GroupState::Stable);
    let s = h.sync(&j.member_id, 1, &[]);
    let out = h.outputs();
    assert_eq!(
        Harness::sync_response(&out, s).unwrap().unwrap().assignment,
        "pb"
    );
    // The old incarnation is fenced.
    let fenced = h.c.heartbeat(
        h.now,
        &HeartbeatRequest {
            group_id: GROUP.into(),
            generation_id: 1,
            member_id: b.clone(),
            group_instance_id: Some("i-b".into()),
        },
    );
    assert_eq!(fenced, Err(Error::FencedInstanceId));
}

#[test]
fn duplicate_static_instance_is_fenced() {
    let mut h = Harness::new();
    let r1 = static_join(&mut h, "", "i-a");
    h.advance(100);
    let first = Harness::join_response(&h.outputs(), r1).unwrap().unwrap();
    h.sync(&first.member_id, 1, &[(&first.member_id, "p")]);
    h.outputs();
    // A second process with the same instance id takes over…
    let r2 = static_join(&mut h, "", "i-a");
    let second = Harness::join_response(&h.outputs(), r2).unwrap().unwrap();
    // …and the first one is fenced on everything it sends.
    let r = static_join(&mut h, &first.member_id, "i-a");
    assert_eq!(
        Harness::join_response(&h.outputs(), r),
        Some(Err(Error::FencedInstanceId))
    );
    let s = h.c.commit_offsets(
        h.now,
        &OffsetCommitRequest {
            group_id: GROUP.into(),
            generation_id: 1,
            member_id: first.member_id.clone(),
            group_instance_id: Some("i-a".into()),
            retention_time_ms: None,
            offsets: vec![OffsetCommit {
                partition: TopicPartition::new("t", 0),
                offset: 1,
                leader_epoch: -1,
                metadata: None,
            }],
        },
    );
    assert_eq!(s, vec![Err(Error::FencedInstanceId)]);
    let leave = h.c.leave_group(
        h.now,
        GROUP,
        &[LeavingMember {
            member_id: first.member_id.clone(),
            group_instance_id: Some("i-a".into()),
            reason: None,
        }],
    );
    assert_eq!(leave, vec![Err(Error::FencedInstanceId)]);
    assert_eq!(h.describe().members[0].member_id, second.member_id);
}

#[test]
fn static_member_with_changed_protocol_triggers_rebalance() {
    let mut h = Harness::new();
    let r1 = static_join(&mut h, "", "i-a");
    h.advance(100);
    let first = Harness::join_response(&h.outputs(), r1).unwrap().unwrap();
    h.sync(&first.member_id, 1, &[(&first.member_id, "p")]);
    h.outputs();
    let r = h.join(JoinRequest {
        protocols: protocols(&["cooperative-sticky"], ""),
        ..join_req("", Some("i-a"))
    });
    let out = h.outputs();
    let j = Harness::join_response(&out, r).unwrap().unwrap();
    assert_eq!(j.generation_id, 2);
    assert_eq!(j.protocol_name.as_deref(), Some("cooperative-sticky"));
}

#[test]
fn cooperative_rebalance_takes_several_rounds() {
    // Round 1: a owns both partitions; b joins. The leader revokes nothing from b's view
    // but tells a to give up p1; a rejoins with fewer owned partitions; round 2 hands p1 to b.
    let coop = |owned: &str| protocols(&["cooperative-sticky"], owned);
    let mut h = Harness::new();
    let ra = h.join(JoinRequest {
        protocols: coop("p0,p1"),
        require_known_member_id: false,
        ..join_req("", None)
    });
    h.advance(100);
    let a = Harness::join_response(&h.outputs(), ra)
        .unwrap()
        .unwrap()
        .member_id;
    h.sync(&a, 1, &[(&a, "p0,p1")]);
    h.outputs();

    let rb = h.join(JoinRequest {
        protocols: coop(""),
        require_known_member_id: false,
        ..join_req("", None)
    });
    // a keeps consuming, learns of the rebalance from its heartbeat and commits meanwhile.
    assert_eq!(h.heartbeat(&a, 1), Err(Error::RebalanceInProgress));
    assert_eq!(h.commit(&a, 1, 10), Ok(()));
    let ra = h.join(JoinRequest {
        protocols: coop("p0,p1"),
        ..join_req(&a, None)
    });
    let out = h.outputs();
    let ja = Harness::join_response(&out, ra).unwrap().unwrap();
    let jb = Harness::join_response(&out, rb).unwrap().unwrap();
    assert_eq!(ja.generation_id, 2);
    let b = jb.member_id.clone();
    h.sync(&b, 2, &[]);
    h.sync(&a, 2, &[(&a, "p0"), (&b, "")]);
    h.outputs();
    assert_eq!(h.describe().state, GroupState::Stable);

    // Round 2: a revoked p1 and rejoins with its new ownership; b rejoins too.
    let ra = h.join(JoinRequest {
        protocols: coop("p0"),
        ..join_req(&a, None)
    });
    assert_eq!(h.heartbeat(&b, 2), Err(Error::RebalanceInProgress));
    let rb = h.join(JoinRequest {
        protocols: coop(""),
        ..join_req(&b, None)
    });
    let out = h.outputs();
    let ja = Harness::join_response(&out, ra).unwrap().unwrap();
    let jb = Harness::join_response(&out, rb).unwrap().unwrap();
    assert_eq!((ja.generation_id, jb.generation_id), (3, 3));
    assert!(ja.members.iter().any(|m| m.metadata == "p0"));
    let sb = h.sync(&b, 3, &[]);
    h.sync(&a, 3, &[(&a, "p0"), (&b, "p1")]);
    let out = h.outputs();
    assert_eq!(
        Harness::sync_response(&out, sb)
            .unwrap()
            .unwrap()
            .assignment,
        "p1"
    );
}

#[test]
fn follower_rejoin_without_change_needs_no_rebalance() {
    let mut h = Harness::new();
    let (a, ra) = h.new_member();
    let (b, rb) = h.new_member();
    h.advance(200);
    let out = h.outputs();
    let leader = Harness::join_response(&out, ra).unwrap().unwrap().leader;
    let _ = Harness::join_response(&out, rb);
    let other = if leader == a { b.clone() } else { a.clone() };
    h.sync(&leader, 1, &[(&a, "x"), (&b, "y")]);
    h.sync(&other, 1, &[]);
    h.outputs();
    let r = h.join(join_req(&other, None));
    let j = Harness::join_response(&h.outputs(), r).unwrap().unwrap();
    assert_eq!(j.generation_id, 1);
    assert_eq!(h.describe().state, GroupState::Stable);
}

#[test]
fn stale_generation_commit_is_rejected() {
    let mut h = Harness::new();
    let (a, generation) = h.stable_single();
    assert_eq!(h.commit(&a, generation, 5), Ok(()));
    assert_eq!(
        h.commit(&a, generation - 1, 6),
        Err(Error::IllegalGeneration)
    );
    assert_eq!(
        h.commit("ghost", generation, 6),
        Err(Error::UnknownMemberId)
    );
    // Standalone commits are refused while the group has members.
    assert_eq!(h.commit("", -1, 6), Err(Error::UnknownMemberId));
    assert_eq!(h.fetch(GROUP)[0].offset, 5);
}

#[test]
fn commit_during_completing_rebalance_is_refused() {
    let mut h = Harness::new();
    let (m, r) = h.new_member();
    h.advance(100);
    let j = Harness::join_response(&h.outputs(), r).unwrap().unwrap();
    assert_eq!(
        h.commit(&m, j.generation_id, 1),
        Err(Error::RebalanceInProgress)
    );
}

#[test]
fn commit_to_unknown_group_with_a_generation_is_illegal() {
    let mut h = Harness::new();
    assert_eq!(h.commit("m", 3, 1), Err(Error::IllegalGeneration));
}

#[test]
fn standalone_commit_and_fetch() {
    let mut h = Harness::new();
    assert_eq!(h.commit("", -1, 42), Ok(()));
    let out = h.outputs();
    assert!(
        matches!(&out[0], Output::Persist { group_id, records } if group_id == GROUP && records.len() == 1)
    );
    let fetched = h.fetch(GROUP);
    assert_eq!(
        fetched,
        vec![FetchedOffset {
            partition: TopicPartition::new("t", 0),
            offset: 42,
            leader_epoch: 3,
            metadata: "meta".into(),
        }]
    );
    assert_eq!(h.c.list_groups(&[], &[])[0].protocol_type, "");
}

#[test]
fn offset_fetch_for_several_groups() {
    let mut h = Harness::new();
    h.commit("", -1, 7).unwrap();
    let all = h.c.fetch_offsets(&[
        OffsetFetchRequest {
            group_id: GROUP.into(),
            partitions: Some(vec![
                TopicPartition::new("t", 0),
                TopicPartition::new("t", 1),
            ]),
        },
        OffsetFetchRequest {
            group_id: "other".into(),
            partitions: Some(vec![TopicPartition::new("t", 0)]),
        },
        OffsetFetchRequest {
            group_id: "other".into(),
            partitions: None,
        },
    ]);
    assert_eq!(all[0][0].offset, 7);
    assert_eq!(all[0][1].offset, -1);
    assert_eq!(all[1][0].offset, -1);
    assert!(all[2].is_empty());
}

#[test]
fn offset_metadata_too_large() {
    let mut h = Harness::with(Config {
        offset_metadata_max_bytes: 2,
        ..Config::default()
    });
    assert_eq!(h.commit("", -1, 1), Err(Error::OffsetMetadataTooLarge));
}

fn subscription(topics: &[&str]) -> Bytes {
    let mut v = vec![0u8, 1];
    v.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for t in topics {
        v.extend_from_slice(&(t.len() as i16).to_be_bytes());
        v.extend_from_slice(t.as_bytes());
    }
    v.extend_from_slice(&(-1i32).to_be_bytes());
    Bytes::from(v)
}

#[test]
fn offset_delete() {
    let mut h = Harness::new();
    assert_eq!(
        h.c.delete_offsets(h.now, "nope", &[]),
        Err(Error::GroupIdNotFound)
    );
    let r = h.join(JoinRequest {
        protocols: vec![Protocol {
            name: "range".into(),
            metadata: subscription(&["t"]),
        }],
        require_known_member_id: false,
        ..join_req("", None)
    });
    h.advance(100);
    let j = Harness::join_response(&h.outputs(), r).unwrap().unwrap();
    h.sync(&j.member_id, 1, &[]);
    let commit = |topic: &str| OffsetCommit {
        partition: TopicPartition::new(topic, 0),
        offset: 1,
        leader_epoch: -1,
        metadata: None,
    };
    let res = h.c.commit_offsets(
        h.now,
        &OffsetCommitRequest {
            group_id: GROUP.into(),
            generation_id: 1,
            member_id: j.member_id.clone(),
            group_instance_id: None,
            retention_time_ms: None,
            offsets: vec![commit("t"), commit("old")],
        },
    );
    assert_eq!(res, vec![Ok(()), Ok(())]);
    h.outputs();
    let res =
        h.c.delete_offsets(
            h.now,
            GROUP,
            &[TopicPartition::new("t", 0), TopicPartition::new("old", 0)],
        )
        .unwrap();
    assert_eq!(res, vec![Err(Error::GroupSubscribedToTopic), Ok(())]);
    let out = h.outputs();
    assert!(
        matches!(&out[0], Output::Persist { records, .. } if records.len() == 1 && records[0].value.is_none())
    );
    assert_eq!(h.fetch(GROUP).len(), 1);
}

#[test]
fn delete_groups_refuses_active_groups() {
    let mut h = Harness::new();
    let (m, generation) = h.stable_single();
    h.commit(&m, generation, 9).unwrap();
    assert_eq!(
        h.c.delete_groups(&[GROUP.into(), "nope".into()]),
        vec![Err(Error::NonEmptyGroup), Err(Error::GroupIdNotFound)]
    );
    h.c.leave_group(
        h.now,
        GROUP,
        &[LeavingMember {
            member_id: m,
            ..LeavingMember::default()
        }],
    );
    h.outputs();
    assert_eq!(h.c.delete_groups(&[GROUP.into()]), vec![Ok(())]);
    let out = h.outputs();
    let Output::Persist { records, .. } = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| r.value.is_none()));
    assert!(h.c.list_groups(&[], &[]).is_empty());
    // Replaying the log leaves nothing behind.
    let mut reloaded = Coordinator::new(Config::default());
    reloaded.load(h.now, h.persisted.clone()).unwrap();
    assert!(reloaded.list_groups(&[], &[]).is_empty());
}

#[test]
fn list_groups_filters_by_state_and_type() {
    let mut h = Harness::new();
    h.stable_single();
    h.c.commit_offsets(
        h.now,
        &OffsetCommitRequest {
            group_id: "standalone".into(),
            generation_id: -1,
            ..OffsetCommitRequest::default()
        },
    );
    let all = h.c.list_groups(&[], &[]);
    assert_eq!(all.len(), 2);
    let stable =
        h.c.list_groups(&[GroupState::parse("stable").unwrap()], &[]);
    assert_eq!(stable.len(), 1);
    assert_eq!(stable[0].group_id, GROUP);
    let empty = h.c.list_groups(&[GroupState::Empty], &[]);
    assert_eq!(empty[0].group_id, "standalone");
    assert_eq!(h.c.list_groups(&[], &["consumer".into()]).len(), 1);
}

#[test]
fn expired_offsets_of_empty_groups_are_removed() {
    let mut h = Harness::with(Config {
        offsets_retention_ms: 60_000,
        offsets_retention_check_interval_ms: 1_000,
        ..Config::default()
    });
    let (m, generation) = h.stable_single();
    h.commit(&m, generation, 3).unwrap();
    // An active group keeps its offsets however old they are.
    for _ in 0..30 {
        h.advance(3_000);
        h.heartbeat(&m, generation).unwrap();
    }
    assert_eq!(h.fetch(GROUP).len(), 1);
    h.c.leave_group(
        h.now,
        GROUP,
        &[LeavingMember {
            member_id: m,
            ..LeavingMember::default()
        }],
    );
    h.advance(59_000);
    assert_eq!(h.fetch(GROUP).len(), 1);
    h.advance(2_000);
    assert!(h.fetch(GROUP).is_empty());
    assert!(
        h.c.list_groups(&[], &[]).is_empty(),
        "empty group with no offsets is removed"
    );
    h.outputs();
    let mut reloaded = Coordinator::new(Config::default());
    reloaded.load(h.now, h.persisted.clone()).unwrap();
    assert!(reloaded.list_groups(&[], &[]).is_empty());
}

#[test]
fn persistence_round_trip() {
    let mut h = Harness::new();
    let ra = static_join(&mut h, "", "i-a");
    let (b, rb) = h.new_member();
    h.advance(200);
    let out = h.outputs();
    let ja = Harness::join_response(&out, ra).unwrap().unwrap();
    let _ = Harness::join_response(&out, rb);
    let a = ja.member_id.clone();
    h.sync(&ja.leader, 1, &[(&a, "pa"), (&b, "pb")]);
    h.commit(&a, 1, 100).unwrap();
    h.commit("", -1, 5).ok();
    h.c.commit_offsets(
        h.now,
        &OffsetCommitRequest {
            group_id: "standalone".into(),
            generation_id: -1,
            offsets: vec![OffsetCommit {
                partition: TopicPartition::new("x", 3),
                offset: 77,
                leader_epoch: 1,
                metadata: Some("m".into()),
            }],
            ..OffsetCommitRequest::default()
        },
    );
    h.outputs();
    let before = h.describe();

    let mut reloaded = Coordinator::new(Config::default());
    reloaded.load(h.now, h.persisted.clone()).unwrap();
    let after = reloaded
        .describe_groups(&[GROUP.into()])
        .pop()
        .unwrap()
        .unwrap();
    assert_eq!(after, before);
    for group in [GROUP, "standalone"] {
        let req = [OffsetFetchRequest {
            group_id: group.into(),
            partitions: None,
        }];
        assert_eq!(reloaded.fetch_offsets(&req), h.c.fetch_offsets(&req));
    }
    // Members carry on after the reload with the same generation.
    let hb = reloaded.heartbeat(
        h.now,
        &HeartbeatRequest {
            group_id: GROUP.into(),
            generation_id: 1,
            member_id: b.clone(),
            group_instance_id: None,
        },
    );
    assert_eq!(hb, Ok(()));
}

#[test]
fn load_rejects_corrupt_records_and_skips_foreign_keys() {
    let mut c = Coordinator::new(Config::default());
    let key = record::RecordKey::GroupMetadata { group: "g".into() }.encode();
    assert!(
        c.load(0, [(key.clone(), Some(Bytes::from_static(&[0, 3, 0])))])
            .is_err()
    );
    c.load(0, [(Bytes::from_static(&[0, 9, 0, 0]), Some(Bytes::new()))])
        .unwrap();
    assert!(c.list_groups(&[], &[]).is_empty());
}

#[test]
fn unload_answers_parked_requests_with_not_coordinator() {
    let mut h = Harness::new();
    let (_, r) = h.new_member();
    h.c.unload(partition_for(GROUP, 50), 50);
    assert_eq!(
        Harness::join_response(&h.outputs(), r),
        Some(Err(Error::NotCoordinator))
    );
    assert!(h.c.list_groups(&[], &[]).is_empty());
}

#[test]
fn group_max_size() {
    let mut h = Harness::with(Config {
        max_size: 1,
        ..Config::default()
    });
    h.stable_single();
    let r = h.join(join_req("", None));
    assert_eq!(
        Harness::join_response(&h.outputs(), r),
        Some(Err(Error::GroupMaxSizeReached))
    );
}

#[test]
fn pending_member_id_lapses_after_session_timeout() {
    let mut h = Harness::new();
    let (a, generation) = h.stable_single();
    let first = h.join(join_req("", None));
    let out = h.outputs();
    let Some(Err(Error::MemberIdRequired { member_id })) = Harness::join_response(&out, first)
    else {
        panic!()
    };
    assert_eq!(
        h.describe().state,
        GroupState::Stable,
        "pending ids do not rebalance"
    );
    for _ in 0..4 {
        h.advance(3_000);
        h.heartbeat(&a, generation).unwrap();
    }
    let r = h.join(join_req(&member_id, None));
    assert_eq!(
        Harness::join_response(&h.outputs(), r),
        Some(Err(Error::UnknownMemberId))
    );
}

/// Regression: when one member's session expiry completes a rebalance in the same tick as
/// another member's deadline, the member that was just answered must not be removed (its
/// session restarted with the new generation). Found by the invariants proptest.
#[test]
fn rebalance_completed_by_an_expiry_restarts_the_other_sessions() {
    let mut h = Harness::new();
    let (a, generation) = h.stable_single();
    let (b, rb) = h.new_member();
    // a commits at the same instant b joined: both deadlines are now + SESSION.
    assert_eq!(h.commit(&a, generation, 1), Ok(()));
    h.advance(i64::from(SESSION));
    let j = Harness::join_response(&h.outputs(), rb).unwrap().unwrap();
    assert_eq!(j.member_id, b);
    let d = h.describe();
    assert_eq!(d.members.len(), 1, "{d:?}");
    assert_eq!(d.members[0].member_id, b);
    assert_eq!(d.state, GroupState::CompletingRebalance);
}

#[test]
fn stable_consumer_group_expires_offsets_of_topics_it_no_longer_reads() {
    let mut h = Harness::with(Config {
        offsets_retention_ms: 60_000,
        offsets_retention_check_interval_ms: 1_000,
        ..Config::default()
    });
    let r = h.join(JoinRequest {
        protocols: vec![Protocol {
            name: "range".into(),
            metadata: subscription(&["t"]),
        }],
        require_known_member_id: false,
        ..join_req("", None)
    });
    h.advance(100);
    let j = Harness::join_response(&h.outputs(), r).unwrap().unwrap();
    h.sync(&j.member_id, 1, &[]);
    let commit = |topic: &str| OffsetCommit {
        partition: TopicPartition::new(topic, 0),
        offset: 1,
        leader_epoch: -1,
        metadata: None,
    };
    h.c.commit_offsets(
        h.now,
        &OffsetCommitRequest {
            group_id: GROUP.into(),
            generation_id: 1,
            member_id: j.member_id.clone(),
            group_instance_id: None,
            retention_time_ms: None,
            offsets: vec![commit("t"), commit("old")],
        },
    );
    for _ in 0..25 {
        h.advance(3_000);
        h.heartbeat(&j.member_id, 1).unwrap();
    }
    let left: Vec<String> = h
        .fetch(GROUP)
        .into_iter()
        .map(|f| f.partition.topic)
        .collect();
    assert_eq!(left, vec!["t".to_owned()]);
}

/// Brings `n` dynamic members that start together to one Stable generation, each assigned its
/// own id. Returns the member ids and the generation.
fn stable_group_of(h: &mut Harness, n: usize) -> (Vec<String>, i32) {
    let mut parked = Vec::new();
    for _ in 0..n {
        parked.push(h.new_member());
    }
    h.advance(200);
    let out = h.outputs();
    let joined: Vec<JoinResponse> = parked
        .iter()
        .map(|(_, r)| Harness::join_response(&out, *r).unwrap().unwrap())
        .collect();
    let generation = joined[0].generation_id;
    assert!(joined.iter().all(|j| j.generation_id == generation));
    let leader = joined.iter().find(|j| !j.members.is_empty()).unwrap();
    assert_eq!(leader.members.len(), n);
    let ids: Vec<String> = parked.into_iter().map(|(m, _)| m).collect();
    let assignments: Vec<(&str, &str)> = ids.iter().map(|m| (m.as_str(), m.as_str())).collect();
    let leader_id = leader.member_id.clone();
    for m in ids.iter().filter(|m| **m != leader_id) {
        h.sync(m, generation, &[]);
    }
    h.sync(&leader_id, generation, &assignments);
    let syncs = h
        .outputs()
        .iter()
        .filter(|o| {
            matches!(
                o,
                Output::Sync {
                    response: Ok(_),
                    ..
                }
            )
        })
        .count();
    assert_eq!(syncs, n);
    (ids, generation)
}

#[test]
fn a_hundred_members_started_together_form_one_generation() {
    let mut h = Harness::new();
    let (ids, generation) = stable_group_of(&mut h, 100);
    assert_eq!(generation, 1);
    let d = h.describe();
    assert_eq!(d.state, GroupState::Stable);
    assert!(
        d.members
            .iter()
            .all(|m| m.assignment == m.member_id.as_bytes())
    );
    assert_eq!(d.members.len(), ids.len());
}

#[test]
fn rebalance_completes_when_the_last_member_rejoins_without_waiting_on_a_timer() {
    let mut h = Harness::new();
    let (ids, generation) = stable_group_of(&mut h, 100);
    h.c.leave_group(
        h.now,
        GROUP,
        &[LeavingMember {
            member_id: ids[0].clone(),
            ..LeavingMember::default()
        }],
    );
    let mut last = None;
    for m in &ids[1..] {
        assert_eq!(h.heartbeat(m, generation), Err(Error::RebalanceInProgress));
        last = Some(h.join(join_req(m, None)));
    }
    let j = Harness::join_response(&h.outputs(), last.unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(j.generation_id, generation + 1);
    assert_eq!(h.describe().state, GroupState::CompletingRebalance);
}

#[test]
fn restarted_static_leader_is_told_to_skip_assignment_on_v9() {
    for v9 in [false, true] {
        let mut h = Harness::new();
        let ra = static_join(&mut h, "", "i-a");
        h.advance(100);
        let a = Harness::join_response(&h.outputs(), ra).unwrap().unwrap();
        h.sync(&a.member_id, 1, &[(&a.member_id, "p")]);
        h.outputs();
        let r = h.join(JoinRequest {
            supports_skip_assignment: v9,
            ..join_req("", Some("i-a"))
        });
        let j = Harness::join_response(&h.outputs(), r).unwrap().unwrap();
        assert_eq!(j.generation_id, 1);
        assert_eq!(j.skip_assignment, v9);
        if v9 {
            assert_eq!(j.leader, j.member_id);
            assert_eq!(j.members.len(), 1);
        } else {
            assert_eq!(
                j.leader, a.member_id,
                "old leader id: the restarted leader must not assign"
            );
            assert!(j.members.is_empty());
        }
        assert_eq!(h.describe().leader.as_deref(), Some(j.member_id.as_str()));
    }
}

#[test]
fn explicit_retention_time_sets_the_expiry() {
    let config = Config {
        offsets_retention_check_interval_ms: 1_000,
        ..Config::default()
    };
    let mut h = Harness::with(config.clone());
    let commit = |retention_time_ms| OffsetCommitRequest {
        group_id: GROUP.into(),
        generation_id: -1,
        retention_time_ms,
        offsets: vec![OffsetCommit {
            partition: TopicPartition::new("t", 0),
            offset: 1,
            leader_epoch: 0,
            metadata: None,
        }],
        ..OffsetCommitRequest::default()
    };
    h.c.commit_offsets(h.now, &commit(Some(5_000)));
    let out = h.outputs();
    let Output::Persist { records, .. } = &out[0] else {
        panic!("{out:?}")
    };
    // An explicit expiry can only be stored in value version 1.
    assert_eq!(&records[0].value.as_ref().unwrap()[..2], &[0, 1]);
    // It survives a reload, then expires on time rather than after offsets.retention.minutes.
    let mut reloaded = Coordinator::new(config);
    reloaded.load(h.now, h.persisted.clone()).unwrap();
    h.c = reloaded;
    h.advance(3_000);
    assert_eq!(h.fetch(GROUP).len(), 1);
    h.advance(3_000);
    assert!(h.fetch(GROUP).is_empty());
    // Without one, the retention setting applies.
    h.c.commit_offsets(h.now, &commit(Some(-1)));
    h.advance(10_000);
    assert_eq!(h.fetch(GROUP).len(), 1);
}

#[test]
fn load_keeps_the_last_value_of_each_key() {
    let mut h = Harness::new();
    h.commit("", -1, 1).unwrap();
    h.c.delete_offsets(h.now, GROUP, &[TopicPartition::new("t", 0)])
        .unwrap();
    h.commit("", -1, 2).unwrap();
    h.commit("", -1, 3).unwrap();
    let (m, generation) = {
        // The group gains members; its metadata is written after the offsets.
        let (m, r) = h.new_member();
        h.advance(100);
        let j = Harness::join_response(&h.outputs(), r).unwrap().unwrap();
        h.sync(&m, j.generation_id, &[(&m, "a")]);
        (m, j.generation_id)
    };
    h.outputs();
    let mut reloaded = Coordinator::new(Config::default());
    reloaded.load(h.now, h.persisted.clone()).unwrap();
    let fetched = reloaded.fetch_offsets(&[OffsetFetchRequest {
        group_id: GROUP.into(),
        partitions: None,
    }]);
    assert_eq!(fetched[0][0].offset, 3);
    let d = reloaded
        .describe_groups(&[GROUP.into()])
        .pop()
        .unwrap()
        .unwrap();
    assert_eq!(d.generation_id, generation);
    assert_eq!(d.members[0].member_id, m);
    assert_eq!(d.members[0].assignment, "a");

    // A group tombstone followed by nothing removes the group; its offsets stay.
    let mut log = h.persisted.clone();
    log.push((
        record::RecordKey::GroupMetadata {
            group: GROUP.into(),
        }
        .encode(),
        None,
    ));
    let mut reloaded = Coordinator::new(Config::default());
    reloaded.load(h.now, log).unwrap();
    let d = reloaded
        .describe_groups(&[GROUP.into()])
        .pop()
        .unwrap()
        .unwrap();
    assert_eq!(d.state, GroupState::Empty);
    assert_eq!(d.protocol_type, "");
}

#[test]
fn txn_offset_commits_are_checked_against_the_group_and_applied_whatever_the_generation() {
    let mut h = Harness::new();
    let offsets = vec![OffsetCommit {
        partition: TopicPartition::new("t", 0),
        offset: 9,
        leader_epoch: 2,
        metadata: Some("txn".into()),
    }];
    let req = |member: &str, generation: i32| OffsetCommitRequest {
        group_id: GROUP.into(),
        generation_id: generation,
        member_id: member.into(),
        group_instance_id: None,
        retention_time_ms: None,
        offsets: offsets.clone(),
    };
    // An unknown group: fine outside group management, not with a generation.
    assert_eq!(h.c.check_txn_offset_commit(&req("", -1)), Ok(()));
    assert_eq!(
        h.c.check_txn_offset_commit(&req("m", 1)),
        Err(Error::IllegalGeneration)
    );
    let (a, generation) = h.stable_single();
    assert_eq!(h.c.check_txn_offset_commit(&req(&a, generation)), Ok(()));
    assert_eq!(
        h.c.check_txn_offset_commit(&req(&a, generation + 1)),
        Err(Error::IllegalGeneration)
    );
    assert_eq!(
        h.c.check_txn_offset_commit(&req("ghost", generation)),
        Err(Error::UnknownMemberId)
    );
    // Checking commits nothing.
    assert!(h.fetch(GROUP).iter().all(|f| f.offset == -1));
    h.outputs();
    // At the COMMIT marker the offsets are applied, even though the member is gone by then.
    h.c.commit_transactional_offsets(h.now, GROUP, &offsets);
    let outputs = h.outputs();
    assert!(
        matches!(&outputs[..], [Output::Persist { group_id, records }] if group_id == GROUP && records.len() == 1),
        "{outputs:?}"
    );
    let fetched = h.fetch(GROUP);
    assert_eq!((fetched[0].offset, fetched[0].leader_epoch), (9, 2));
    assert_eq!(fetched[0].metadata, "txn");
}
