//! Interaction tests: a hand-driven cluster where the test decides which message is delivered,
//! delayed or lost, so each test reads as a transcript of what happened.

use mqpaxos_core::{
    Ballot, Command, Config, Dest, Durable, Input, Message, NodeId, Op, OpResult, Outgoing, Ready,
    RoleKind, Server, TimerKind,
};
use std::collections::VecDeque;
use std::time::Duration;

mod common;
use common::{answer_prevote, fresh};

/// A message in flight.
#[derive(Clone, Debug)]
struct Flight {
    from: NodeId,
    to: To,
    msg: Message,
}

#[derive(Clone, Debug, PartialEq)]
enum To {
    Server(NodeId),
    Client(String),
}

struct Cluster {
    servers: Vec<Option<Server>>,
    durable: Vec<Durable>,
    flights: VecDeque<Flight>,
    replies: Vec<(String, u64, OpResult)>,
    now: Duration,
    /// Servers whose traffic (both ways) is dropped.
    cut: Vec<NodeId>,
}

impl Cluster {
    fn new(n: u32, tweak: impl Fn(&mut Config)) -> Self {
        let mut servers = Vec::new();
        let mut durable = Vec::new();
        for id in 1..=n {
            let mut cfg = Config::new(id, n);
            tweak(&mut cfg);
            durable.push(fresh(cfg.max_sessions));
            servers.push(Some(Server::recover(cfg, fresh(100_000)).unwrap()));
        }
        Cluster {
            servers,
            durable,
            flights: VecDeque::new(),
            replies: Vec::new(),
            now: Duration::ZERO,
            cut: Vec::new(),
        }
    }

    fn server(&self, id: NodeId) -> &Server {
        self.servers[id as usize - 1].as_ref().unwrap()
    }

    fn n(&self) -> u32 {
        self.servers.len() as u32
    }

    fn absorb(&mut self, id: NodeId, ready: Ready) {
        for op in ready.persist {
            self.durable[id as usize - 1].apply(op);
        }
        for Outgoing { to, msg } in ready.send_now.into_iter().chain(ready.send_after) {
            match to {
                Dest::Server(t) => self.flights.push_back(Flight {
                    from: id,
                    to: To::Server(t),
                    msg,
                }),
                Dest::AllServers => {
                    for t in 1..=self.n() {
                        if t != id {
                            self.flights.push_back(Flight {
                                from: id,
                                to: To::Server(t),
                                msg: msg.clone(),
                            });
                        }
                    }
                }
                Dest::Client(c) => self.flights.push_back(Flight {
                    from: id,
                    to: To::Client(c),
                    msg,
                }),
            }
        }
    }

    fn step(&mut self, id: NodeId, input: Input) {
        self.now += Duration::from_millis(1);
        let now = self.now;
        let Some(s) = self.servers[id as usize - 1].as_mut() else {
            return;
        };
        let ready = s.step(now, input);
        self.absorb(id, ready);
    }

    fn fire(&mut self, id: NodeId, kind: TimerKind) {
        self.step(id, Input::Timer(kind));
    }

    /// Makes `id` stand for election, as if it had heard no leader for long enough.
    fn elect(&mut self, id: NodeId) {
        self.now += Duration::from_secs(10);
        self.stand(id);
    }

    /// Fires `id`'s election timer and answers its pre-vote with a majority's yes at once
    /// (the transcripts are about what a bid leads to; the pre-vote's own tests deliver it).
    fn stand(&mut self, id: NodeId) {
        self.fire(id, TimerKind::Election);
        let n = self.n();
        let answers = answer_prevote(&mut self.flights, id, n, |f| (f.from, &f.msg));
        for input in answers.unwrap_or_default() {
            self.step(id, input);
        }
    }

    fn deliver(&mut self, f: Flight) {
        if self.cut.contains(&f.from) {
            return;
        }
        match f.to {
            To::Server(t) => {
                if self.cut.contains(&t) {
                    return;
                }
                self.step(
                    t,
                    Input::Message {
                        from: f.from,
                        msg: f.msg,
                    },
                );
            }
            To::Client(c) => {
                if let Message::Reply { seq, result, .. } = f.msg {
                    self.replies.push((c, seq, result));
                }
            }
        }
    }

    /// Delivers everything in flight, and what that causes, in order.
    fn settle(&mut self) {
        let mut budget = 100_000;
        while let Some(f) = self.flights.pop_front() {
            self.deliver(f);
            budget -= 1;
            assert!(budget > 0, "messages never stop");
        }
    }

    /// Takes the first message in flight that matches.
    fn take(&mut self, pred: impl Fn(&Flight) -> bool) -> Flight {
        let i = self
            .flights
            .iter()
            .position(pred)
            .expect("no such message in flight");
        self.flights.remove(i).unwrap()
    }

    fn drop_all(&mut self) {
        self.flights.clear();
    }

    fn request(&mut self, cmd: Command) {
        for id in 1..=self.n() {
            if !self.cut.contains(&id) {
                self.step(id, Input::Request(cmd.clone()));
            }
        }
    }

    fn crash(&mut self, id: NodeId) {
        self.servers[id as usize - 1] = None;
    }

    fn restart(&mut self, id: NodeId, tweak: impl Fn(&mut Config)) {
        let mut cfg = Config::new(id, self.n());
        tweak(&mut cfg);
        let d = self.durable[id as usize - 1].clone();
        self.servers[id as usize - 1] = Some(Server::recover(cfg, d).unwrap());
    }

    /// Restarts `id` with its disk wiped, told to rejoin (as `--rejoin` or a damaged log tail
    /// would), and lets it start.
    fn restart_amnesiac(&mut self, id: NodeId) {
        let cfg = Config::new(id, self.n());
        let mut d = fresh(cfg.max_sessions);
        d.rejoining = true;
        self.durable[id as usize - 1] = d.clone();
        let mut s = Server::recover(cfg, d).unwrap();
        self.now += Duration::from_millis(1);
        let ready = s.start(self.now);
        self.servers[id as usize - 1] = Some(s);
        self.absorb(id, ready);
    }

    /// Drops every message in flight from `from`.
    fn drop_from(&mut self, from: NodeId) {
        self.flights.retain(|f| f.from != from);
    }
}

fn put(client: &str, seq: u64, k: &str, v: &str) -> Command {
    Command {
        client: client.into(),
        seq,
        op: Op::Put {
            key: k.into(),
            value: v.into(),
        },
    }
}

fn append(client: &str, seq: u64, k: &str, v: &str) -> Command {
    Command {
        client: client.into(),
        seq,
        op: Op::Append {
            key: k.into(),
            value: v.into(),
        },
    }
}

fn value(c: &Cluster, id: NodeId, k: &str) -> Option<String> {
    c.server(id).kv().get(k).map(str::to_string)
}

fn is_promise(from: NodeId, round: u64) -> impl Fn(&Flight) -> bool {
    move |f| {
        f.from == from && matches!(f.msg, Message::Promise { ballot, .. } if ballot.round == round)
    }
}

/// The original design's example. Round 1: a vote is delayed. Round 2: the delayed vote arrives and must
/// not count for round 2.
#[test]
fn a_delayed_vote_from_round_1_does_not_count_in_round_2() {
    let mut c = Cluster::new(5, |_| {});
    c.elect(1);
    // Round 1: server 2 promises, but its vote is delayed; the others' Prepares are lost.
    let p2 = c.take(|f| f.to == To::Server(2) && matches!(f.msg, Message::Prepare { .. }));
    c.drop_all();
    c.deliver(p2);
    let late_vote = c.take(is_promise(2, 1));
    assert_eq!(c.server(1).role(), RoleKind::Candidate);

    // Round 1 times out; round 2 begins with a higher ballot. Server 3 promises.
    c.stand(1);
    let Message::Prepare { ballot: round2, .. } = c.flights.back().unwrap().msg.clone() else {
        panic!("expected a Prepare for round 2");
    };
    assert!(round2 > Ballot::new(1, 1));
    let p3 = c.take(|f| f.to == To::Server(3) && matches!(f.msg, Message::Prepare { .. }));
    c.drop_all();
    c.deliver(p3);
    let vote3 = c.take(is_promise(3, round2.round));
    c.deliver(vote3);
    assert_eq!(c.server(1).role(), RoleKind::Candidate);

    // The delayed round-1 vote arrives now. Counted, it would make 3 of 5 (1, 2, 3).
    c.deliver(late_vote);
    assert_eq!(
        c.server(1).role(),
        RoleKind::Candidate,
        "a vote for round 1 was counted in round 2"
    );

    // A real round-2 vote from server 4 does make the majority.
    c.fire(1, TimerKind::PrepareResend);
    let p4 = c.take(|f| f.to == To::Server(4) && matches!(f.msg, Message::Prepare { .. }));
    c.drop_all();
    c.deliver(p4);
    let vote4 = c.take(is_promise(4, round2.round));
    c.deliver(vote4);
    assert_eq!(c.server(1).role(), RoleKind::Leader);
    assert_eq!(c.server(1).ballot(), round2);
}

/// The same rule in phase 2: an Accepted for an older ballot never counts for a newer one.
#[test]
fn a_delayed_accepted_from_an_old_ballot_does_not_count() {
    let mut c = Cluster::new(3, |_| {});
    c.elect(1);
    c.settle();
    assert_eq!(c.server(1).role(), RoleKind::Leader);
    // Ballot 1: a command is proposed; server 2's Accepted is delayed, server 3's is lost.
    c.step(1, Input::Request(put("c/1", 1, "x", "old")));
    let acc2 = c.take(|f| f.to == To::Server(2) && matches!(f.msg, Message::Accept { .. }));
    c.drop_all();
    c.deliver(acc2);
    let late = c.take(|f| f.from == 2 && matches!(f.msg, Message::Accepted { .. }));
    // Server 1 restarts (keeping its durable log) and wins a higher ballot with server 3's
    // promise alone and re-proposes slot 0 in
    // it. The delayed Accepted from server 2 was for ballot 1: counted, it would make a
    // majority for slot 0 in the new ballot.
    c.crash(1);
    c.restart(1, |_| {});
    c.elect(1);
    let p3 = c.take(|f| f.to == To::Server(3) && matches!(f.msg, Message::Prepare { .. }));
    c.drop_all();
    c.deliver(p3);
    let v3 = c.take(|f| f.from == 3 && matches!(f.msg, Message::Promise { .. }));
    c.deliver(v3);
    assert_eq!(c.server(1).role(), RoleKind::Leader);
    let commit_before = c.server(1).commit();
    c.drop_all();
    c.deliver(late);
    assert_eq!(
        c.server(1).commit(),
        commit_before,
        "an Accepted from an older ballot decided a slot"
    );
}

#[test]
fn a_command_commits_everywhere_and_the_leader_replies_once() {
    let mut c = Cluster::new(3, |_| {});
    c.elect(2);
    c.settle();
    assert_eq!(c.server(2).role(), RoleKind::Leader);
    assert_eq!(c.server(1).leader(), Some(2));
    c.request(put("c/1", 1, "k", "v"));
    c.settle();
    assert_eq!(c.replies, vec![("c/1".into(), 1, OpResult::Done)]);
    // Followers learn the commit point from the next heartbeat.
    c.fire(2, TimerKind::Heartbeat);
    c.settle();
    for id in 1..=3 {
        assert_eq!(value(&c, id, "k").as_deref(), Some("v"), "server {id}");
    }
}

#[test]
fn a_resent_command_executes_once_and_gets_its_first_result_again() {
    let mut c = Cluster::new(3, |_| {});
    c.elect(1);
    c.settle();
    c.request(append("c/1", 1, "k", "x"));
    c.settle();
    c.request(append("c/1", 1, "k", "x"));
    c.settle();
    c.fire(1, TimerKind::Heartbeat);
    c.settle();
    assert_eq!(value(&c, 1, "k").as_deref(), Some("x"));
    assert_eq!(value(&c, 3, "k").as_deref(), Some("x"));
    assert_eq!(c.replies.len(), 2);
    assert!(c
        .replies
        .iter()
        .all(|r| r == &("c/1".into(), 1, OpResult::Done)));
}

#[test]
fn a_new_leader_reproposes_a_value_that_may_have_been_chosen() {
    let mut c = Cluster::new(3, |_| {});
    c.elect(1);
    c.settle();
    // Server 1 proposes; only server 2 accepts, and its Accepted is lost. Then 1 crashes.
    c.step(1, Input::Request(put("c/1", 1, "k", "v")));
    let acc2 = c.take(|f| f.to == To::Server(2) && matches!(f.msg, Message::Accept { .. }));
    c.drop_all();
    c.deliver(acc2);
    c.drop_all();
    c.crash(1);
    // Server 3 stands; server 2's promise reports the accepted value.
    c.elect(3);
    c.settle();
    assert_eq!(c.server(3).role(), RoleKind::Leader);
    c.fire(3, TimerKind::Heartbeat);
    c.settle();
    assert_eq!(value(&c, 3, "k").as_deref(), Some("v"));
    assert_eq!(value(&c, 2, "k").as_deref(), Some("v"));
}

#[test]
fn a_minority_cannot_commit() {
    let mut c = Cluster::new(5, |_| {});
    c.elect(1);
    c.settle();
    c.cut = vec![3, 4, 5];
    c.request(put("c/1", 1, "k", "v"));
    c.settle();
    c.fire(1, TimerKind::AcceptResend);
    c.settle();
    assert_eq!(c.server(1).commit(), 0);
    assert!(c.replies.is_empty());
    c.cut.clear();
    c.now += Duration::from_secs(1);
    c.fire(1, TimerKind::AcceptResend);
    c.settle();
    assert_eq!(c.server(1).commit(), 1);
    assert_eq!(c.replies.len(), 1);
}

#[test]
fn a_replica_far_behind_is_caught_up_by_snapshot() {
    let small = |cfg: &mut Config| cfg.snapshot_interval = 5;
    let mut c = Cluster::new(3, small);
    c.elect(1);
    c.settle();
    c.cut = vec![3];
    for i in 1..=30 {
        c.request(put("c/1", i, &format!("k{}", i % 4), &format!("v{i}")));
        c.settle();
    }
    assert_eq!(c.server(1).commit(), 30);
    assert!(
        c.server(1).log().start() > 20,
        "the leader truncated its log"
    );
    assert!(c.server(1).log().len() < 10);
    c.cut.clear();
    c.fire(1, TimerKind::Heartbeat);
    c.settle();
    c.now += Duration::from_secs(1);
    c.fire(3, TimerKind::CatchUpResend);
    c.settle();
    assert_eq!(c.server(3).commit(), 30);
    assert_eq!(c.server(3).kv(), c.server(1).kv());
}

#[test]
fn a_restarted_server_keeps_its_promise() {
    let mut c = Cluster::new(3, |_| {});
    c.elect(1);
    c.settle();
    let promised = c.server(2).ballot();
    assert_eq!(promised, c.server(1).ballot());
    c.crash(2);
    c.restart(2, |_| {});
    assert_eq!(c.server(2).ballot(), promised);
    // An older ballot is refused after the restart, just as before it.
    c.step(
        2,
        Input::Message {
            from: 3,
            msg: Message::Prepare {
                ballot: Ballot::new(0, 3),
                from: 0,
                incarnations: Default::default(),
            },
        },
    );
    let f = c.take(|f| f.from == 2);
    assert!(matches!(f.msg, Message::Nack { .. }), "{f:?}");
}

#[test]
fn a_follower_that_hears_a_leader_does_not_help_a_challenger() {
    let mut c = Cluster::new(3, |_| {});
    c.elect(1);
    c.settle();
    let ballot = c.server(1).ballot();
    // Much later: server 2 hears the leader's heartbeat, server 3's copy is lost. (The leader
    // has just heard from server 2, so it knows it still has a majority.)
    c.now += Duration::from_secs(10);
    c.step(
        1,
        Input::Message {
            from: 2,
            msg: Message::Accepted {
                ballot,
                first: 0,
                count: 0,
            },
        },
    );
    c.fire(1, TimerKind::Heartbeat);
    let hb2 = c.take(|f| f.to == To::Server(2));
    c.drop_all();
    c.deliver(hb2);
    // Server 3 has heard nothing for long and asks whether it may stand: neither the
    // leader nor server 2, which just heard it, says yes.
    c.fire(3, TimerKind::Election);
    c.settle();
    assert_eq!(
        c.server(3).role(),
        RoleKind::Follower,
        "a bid without a yes"
    );
    assert_eq!(c.server(1).ballot(), ballot);
    // Had it stood anyway (as before pre-vote), its Prepare would not have been helped.
    c.fire(1, TimerKind::Heartbeat);
    let hb2 = c.take(|f| f.to == To::Server(2));
    c.drop_all();
    c.deliver(hb2);
    c.stand(3);
    assert_eq!(c.server(3).role(), RoleKind::Candidate);
    c.settle();
    // Neither the leader nor server 2, which just heard it, helps the challenger.
    assert_eq!(c.server(1).role(), RoleKind::Leader);
    assert_eq!(
        c.server(1).ballot(),
        ballot,
        "the healthy leader was unseated"
    );
    assert_eq!(c.server(2).ballot(), ballot);
    // The challenger made no promise of its own, so the leader's next heartbeat brings it
    // back without a fight.
    c.fire(1, TimerKind::Heartbeat);
    c.settle();
    assert_eq!(c.server(3).role(), RoleKind::Follower);
    assert_eq!(c.server(3).leader(), Some(1));
}

#[test]
fn a_server_that_lost_its_state_votes_only_after_rejoining() {
    let mut c = Cluster::new(3, |_| {});
    c.elect(1);
    c.settle();
    c.request(put("c/1", 1, "k", "v1"));
    c.settle();
    c.crash(2);
    c.restart_amnesiac(2);
    assert!(c.server(2).rejoining());
    // It may have forgotten a promise or an accept that a quorum counted: it answers no
    // Prepare until it has re-learned the cluster's state.
    c.step(
        2,
        Input::Message {
            from: 3,
            msg: Message::Prepare {
                ballot: Ballot::new(50, 3),
                from: 0,
                incarnations: Default::default(),
            },
        },
    );
    assert!(
        !c.flights
            .iter()
            .any(|f| f.from == 2 && matches!(f.msg, Message::Promise { .. })),
        "a rejoining server promised"
    );
    // The others tell it its incarnation; the leader runs phase 1 again knowing of it.
    c.settle();
    assert_eq!(c.server(2).incarnation(), 1);
    assert_eq!(c.server(1).role(), RoleKind::Leader);
    assert!(
        c.server(1).ballot() > Ballot::new(1, 1),
        "the leader re-ran phase 1"
    );
    c.fire(2, TimerKind::RejoinResend);
    c.settle();
    c.fire(2, TimerKind::CatchUpResend);
    c.settle();
    assert!(!c.server(2).rejoining(), "it caught up, so it votes again");
    assert_eq!(value(&c, 2, "k").as_deref(), Some("v1"));
    assert!(!c.durable[1].rejoining, "and that is durable");
    // Its vote counts again: with server 3 gone, 1 and 2 decide.
    c.cut = vec![3];
    c.request(put("c/1", 2, "k", "v2"));
    c.settle();
    assert_eq!(value(&c, 1, "k").as_deref(), Some("v2"));
    c.fire(1, TimerKind::Heartbeat);
    c.settle();
    assert_eq!(value(&c, 2, "k").as_deref(), Some("v2"));
}

/// The danger of a forgotten promise: server 2 promised server 5's high ballot, lost its disk,
/// and rejoined under a leader with a lower ballot. The old promise, still in flight, must not
/// help 5 to a majority, or 5 could propose over a value that 2 has since helped choose.
#[test]
fn a_promise_from_before_a_rejoin_is_not_counted() {
    let mut c = Cluster::new(5, |_| {});
    c.elect(1);
    c.settle();
    c.request(put("c/1", 1, "k", "v0"));
    c.settle();
    // Server 5 is cut off and campaigns again and again; only its last Prepare reaches 2.
    c.now += Duration::from_secs(10);
    for _ in 0..5 {
        c.stand(5);
    }
    let prepare = c.take(|f| {
        f.from == 5
            && f.to == To::Server(2)
            && matches!(f.msg, Message::Prepare { ballot, .. } if ballot.round == 6)
    });
    c.drop_from(5);
    c.deliver(prepare);
    let old_promise = c.take(is_promise(2, 6));
    // Server 2 loses its disk and rejoins while 5 is unreachable.
    c.crash(2);
    c.cut = vec![5];
    c.restart_amnesiac(2);
    c.settle();
    c.fire(2, TimerKind::RejoinResend);
    c.settle();
    c.fire(2, TimerKind::CatchUpResend);
    c.settle();
    assert!(!c.server(2).rejoining());
    assert!(
        c.server(2).ballot() < Ballot::new(6, 5),
        "its floor is below 5's ballot"
    );
    // Server 4 has not heard the leader for a while and promises 5's ballot, telling it what
    // it knows of 2's incarnation.
    c.cut.clear();
    c.now += Duration::from_secs(10);
    c.fire(5, TimerKind::PrepareResend);
    let to4 = c.take(|f| f.from == 5 && f.to == To::Server(4));
    c.drop_from(5);
    c.deliver(to4);
    let promise4 = c.take(is_promise(4, 6));
    c.deliver(promise4);
    c.deliver(old_promise);
    assert_ne!(
        c.server(5).role(),
        RoleKind::Leader,
        "5 counted a promise that 2 no longer remembers"
    );
}

fn get(client: &str, seq: u64, k: &str) -> Command {
    Command {
        client: client.into(),
        seq,
        op: Op::Get { key: k.into() },
    }
}

#[test]
fn a_get_is_answered_without_a_log_slot_once_a_majority_confirms() {
    let mut c = Cluster::new(3, |_| {});
    c.elect(1);
    c.settle();
    c.request(put("c/1", 1, "k", "v1"));
    c.settle();
    let commit = c.server(1).commit();
    c.request(get("c/1", 2, "k"));
    assert!(
        c.replies.iter().all(|r| r.1 != 2),
        "not before a majority confirms"
    );
    c.settle();
    assert!(c
        .replies
        .contains(&("c/1".to_string(), 2, OpResult::Value(Some("v1".into())))));
    assert_eq!(c.server(1).commit(), commit, "the get took no slot");
}

/// A leader cut off from the others does not know it has been replaced; it must not answer a
/// get from its (now stale) state.
#[test]
fn a_deposed_leader_does_not_answer_a_get() {
    let mut c = Cluster::new(3, |_| {});
    c.elect(1);
    c.settle();
    c.request(put("c/1", 1, "k", "old"));
    c.settle();
    c.cut = vec![1];
    c.elect(2);
    c.settle();
    c.request(put("c/2", 1, "k", "new"));
    c.settle();
    assert_eq!(value(&c, 2, "k").as_deref(), Some("new"));
    assert_eq!(c.server(1).role(), RoleKind::Leader, "1 has not noticed");
    c.cut.clear();
    c.step(1, Input::Request(get("c/3", 1, "k")));
    c.settle();
    c.fire(1, TimerKind::AcceptResend);
    c.settle();
    assert!(
        !c.replies
            .iter()
            .any(|r| r.0 == "c/3" && r.2 == OpResult::Value(Some("old".into()))),
        "a stale read: {:?}",
        c.replies
    );
    assert_ne!(
        c.server(1).role(),
        RoleKind::Leader,
        "the refusal deposed it"
    );
}

/// Issue 12.4: a leader whose inbound path fails (its outbound still works) must step down,
/// or its heartbeats keep every follower loyal while nothing commits.
#[test]
fn a_leader_that_hears_nobody_steps_down_and_another_is_elected() {
    let mut c = Cluster::new(3, |_| {});
    c.elect(1);
    c.settle();
    assert_eq!(c.server(1).role(), RoleKind::Leader);
    // From now on nothing reaches server 1; what it sends still arrives.
    let deaf = |c: &mut Cluster| {
        while let Some(f) = c.flights.pop_front() {
            if f.to != To::Server(1) {
                c.deliver(f);
            }
        }
    };
    for _ in 0..5 {
        c.now += Duration::from_millis(100);
        c.fire(1, TimerKind::Heartbeat);
        deaf(&mut c);
    }
    assert_eq!(
        c.server(1).role(),
        RoleKind::Follower,
        "a leader that heard no majority for an election timeout stands down"
    );
    // Its heartbeats have stopped, so the followers' timers run out and one takes over.
    c.now += Duration::from_secs(1);
    c.fire(2, TimerKind::Election);
    deaf(&mut c);
    assert_eq!(c.server(2).role(), RoleKind::Leader);
    c.request(put("c/1", 1, "k", "v"));
    deaf(&mut c);
    assert!(
        c.replies.iter().any(|(_, seq, _)| *seq == 1),
        "the new leader commits"
    );
}

/// An idle cluster keeps its leader: followers answer heartbeats, so check-quorum never
/// fires while a majority can talk (before this, an idle leader stepped down every election
/// timeout).
#[test]
fn an_idle_leader_keeps_leading() {
    let mut c = Cluster::new(3, |_| {});
    c.elect(1);
    c.settle();
    let ballot = c.server(1).ballot();
    for _ in 0..50 {
        c.now += Duration::from_millis(100);
        c.fire(1, TimerKind::Heartbeat);
        c.settle();
    }
    assert_eq!(c.server(1).role(), RoleKind::Leader);
    assert_eq!(c.server(1).ballot(), ballot);
}

// ----- issue 12.3 and 13.2: bounded in bytes -----

/// The encoded size of a message, as the wire codec measures it (postcard), plus its
/// version byte.
fn wire_size(msg: &Message) -> usize {
    postcard::to_allocvec(msg).expect("encodes").len() + 1
}

/// Every message in flight fits the wire's limit.
fn all_fit(c: &Cluster) {
    for f in &c.flights {
        let n = wire_size(&f.msg);
        assert!(
            n < mqpaxos_core::limits::MAX_MESSAGE,
            "a {} of {n} bytes",
            f.msg.kind()
        );
    }
}

#[test]
fn an_oversized_request_is_refused_with_a_code_and_never_enters_the_log() {
    use mqpaxos_core::ErrorCode;
    let mut c = Cluster::new(3, |_| {});
    c.elect(1);
    c.settle();
    let big = "x".repeat(mqpaxos_core::limits::MAX_VALUE + 1);
    c.request(put("c/1", 1, "k", &big));
    c.request(put("c/2", 1, &"k".repeat(2000), "v"));
    let mut bad_id = put("c/3", 1, "k", "v");
    bad_id.client = "c/3\0".into();
    c.request(bad_id);
    c.settle();
    let codes: Vec<_> = c
        .replies
        .iter()
        .map(|(who, _, r)| match r {
            OpResult::Rejected { code, .. } => (who.clone(), *code),
            other => panic!("{who}: {other:?}"),
        })
        .collect();
    // The NUL id cannot be answered (it names no valid topic): dropped, nothing else.
    assert_eq!(
        codes,
        vec![
            ("c/1".into(), ErrorCode::ValueTooLarge),
            ("c/2".into(), ErrorCode::KeyTooLarge)
        ]
    );
    assert_eq!(c.server(1).commit(), 0, "nothing was proposed");
    assert!(c.server(1).log().is_empty());
}

#[test]
fn appends_cannot_grow_a_value_past_the_limit_and_the_key_stays_readable() {
    let mut c = Cluster::new(3, |_| {});
    c.elect(1);
    c.settle();
    let mib = "a".repeat(mqpaxos_core::limits::MAX_VALUE);
    c.request(append("c/1", 1, "k", &mib));
    c.settle();
    c.request(append("c/1", 2, "k", "b"));
    c.settle();
    all_fit(&c);
    assert_eq!(c.replies[0].2, OpResult::Done);
    assert!(
        matches!(&c.replies[1].2, OpResult::Rejected { code, .. } if *code == mqpaxos_core::ErrorCode::ValueTooLarge),
        "{:?}",
        c.replies[1].2
    );
    c.fire(1, TimerKind::Heartbeat);
    c.settle();
    for id in 1..=3 {
        assert_eq!(value(&c, id, "k").map(|v| v.len()), Some(mib.len()));
    }
    // A retry of the refused append gets the same refusal, not a second try.
    c.request(append("c/1", 2, "k", "b"));
    c.settle();
    assert_eq!(c.replies[2], c.replies[1]);
}

#[test]
fn a_full_leader_queue_answers_busy_and_holds_no_more() {
    use mqpaxos_core::limits::{MAX_QUEUED, MAX_VALUE};
    let mut c = Cluster::new(3, |_| {});
    c.elect(1);
    c.settle();
    // Followers cut off: nothing commits, so the window fills, then the queue.
    c.cut = vec![2, 3];
    let v = "v".repeat(MAX_VALUE);
    let (mut busy, mut sent) = (0, 0);
    for i in 1..=9 {
        for seq in 1..=40u64 {
            c.step(1, Input::Request(put(&format!("c/{i}"), seq, "k", &v)));
            sent += 1;
            // The Accepts go nowhere; the replies are all busy refusals.
            for f in c.flights.drain(..) {
                if let Message::Reply {
                    result: OpResult::Rejected { code, .. },
                    ..
                } = &f.msg
                {
                    assert_eq!(*code, mqpaxos_core::ErrorCode::Busy);
                    busy += 1;
                }
            }
        }
    }
    assert!(busy > 0 && busy < sent, "{busy} of {sent} refused as busy");
    assert!(
        c.server(1).queued() * MAX_VALUE <= MAX_QUEUED,
        "{} commands of 1 MiB wait",
        c.server(1).queued()
    );
}

/// A 200-byte message budget; server 1 led and proposed nine 60-byte values that only
/// server 2 accepted, then died; server 3 stands for election. Server 2's promise has to
/// report all nine, and they do not fit one message.
fn only_server_2_holds_nine_values() -> Cluster {
    let tiny = |cfg: &mut Config| cfg.message_budget = 200;
    let mut c = Cluster::new(3, tiny);
    c.elect(1);
    c.settle();
    for i in 1..=9u64 {
        c.step(
            1,
            Input::Request(put(&format!("c/{i}"), 1, &format!("k{i}"), &"v".repeat(60))),
        );
    }
    let to2: Vec<Flight> = c
        .flights
        .iter()
        .filter(|f| f.to == To::Server(2) && matches!(f.msg, Message::Accept { .. }))
        .cloned()
        .collect();
    c.drop_all();
    for f in to2 {
        c.deliver(f);
    }
    c.drop_all();
    c.crash(1);
    c.elect(3);
    c
}

/// A promise larger than one message comes in parts; the election completes, and the new
/// leader re-proposes every value the parts reported.
#[test]
fn a_promise_too_large_for_one_message_comes_in_parts() {
    let mut c = only_server_2_holds_nine_values();
    // Server 2's promise does not fit 200 bytes: it comes in parts, all sent at once.
    let mut parts = 0;
    let mut budget = 10_000;
    while let Some(f) = c.flights.pop_front() {
        if f.from == 2 && matches!(f.msg, Message::Promise { more: Some(_), .. }) {
            parts += 1;
        }
        c.deliver(f);
        budget -= 1;
        assert!(budget > 0);
    }
    assert!(parts >= 2, "the promise came in {parts} partial parts");
    c.settle();
    assert_eq!(c.server(3).role(), RoleKind::Leader);
    c.fire(3, TimerKind::Heartbeat);
    c.settle();
    for i in 1..=9u64 {
        assert_eq!(
            value(&c, 3, &format!("k{i}")).map(|v| v.len()),
            Some(60),
            "k{i} was re-proposed from the promise's parts"
        );
    }
}

/// A promise whose last part never comes does not count: a candidate with only part of a
/// server's report could miss a value that was chosen.
#[test]
fn a_promise_missing_its_last_part_does_not_count() {
    let mut c = only_server_2_holds_nine_values();
    // Only the first part of server 2's promise arrives; every later message is lost.
    let prepare = c.take(|f| f.to == To::Server(2) && matches!(f.msg, Message::Prepare { .. }));
    c.drop_all();
    c.deliver(prepare);
    let first = c.take(|f| f.from == 2 && matches!(f.msg, Message::Promise { more: Some(_), .. }));
    c.drop_all();
    c.deliver(first);
    c.drop_all();
    assert_eq!(c.server(3).role(), RoleKind::Candidate);
}

/// Snapshots every 5 slots, pieces of 1000 bytes: server 3 was cut off for 30 puts of 200
/// bytes, so the leader has truncated past it, and it has just asked to catch up.
fn server_3_asks_for_a_snapshot_of_many_pieces() -> Cluster {
    let cfg = |cfg: &mut Config| {
        cfg.snapshot_interval = 5;
        cfg.snapshot_chunk = 1000;
    };
    let mut c = Cluster::new(3, cfg);
    c.elect(1);
    c.settle();
    c.cut = vec![3];
    for i in 1..=30 {
        c.request(put("c/1", i, &format!("k{i}"), &"v".repeat(200)));
        c.settle();
    }
    c.cut.clear();
    c.fire(1, TimerKind::Heartbeat);
    c.settle();
    c.now += Duration::from_secs(1);
    c.fire(3, TimerKind::CatchUpResend);
    c
}

/// Issue 12.3: a snapshot larger than one message reaches a lagging replica in pieces.
#[test]
fn a_snapshot_larger_than_a_message_travels_in_pieces() {
    let mut c = server_3_asks_for_a_snapshot_of_many_pieces();
    // Count the pieces as they go.
    let mut pieces = 0;
    let mut budget = 10_000;
    while let Some(f) = c.flights.pop_front() {
        if let Message::SnapshotChunk { data, total, .. } = &f.msg {
            assert!(data.len() <= 1000);
            assert!(*total > 5000, "the snapshot is larger than a piece");
            pieces += 1;
        }
        c.deliver(f);
        budget -= 1;
        assert!(budget > 0);
    }
    assert!(pieces >= 6, "{pieces} pieces");
    assert_eq!(c.server(3).commit(), 30);
    assert_eq!(c.server(3).kv(), c.server(1).kv());
}

/// A lost piece is asked for again when the catch-up timer fires; the transfer resumes where
/// it stopped.
#[test]
fn a_lost_snapshot_piece_is_asked_for_again() {
    let mut c = server_3_asks_for_a_snapshot_of_many_pieces();
    // Deliver until the third piece, then lose it.
    let mut seen = 0;
    while let Some(f) = c.flights.pop_front() {
        if matches!(f.msg, Message::SnapshotChunk { .. }) {
            seen += 1;
            if seen == 3 {
                break;
            }
        }
        c.deliver(f);
    }
    c.drop_all();
    assert!(c.server(3).commit() < 30);
    c.now += Duration::from_secs(1);
    c.fire(3, TimerKind::CatchUpResend);
    let fetch = c.take(|f| {
        f.from == 3 && matches!(f.msg, Message::SnapshotFetch { offset, .. } if offset == 2000)
    });
    c.deliver(fetch);
    c.settle();
    assert_eq!(c.server(3).commit(), 30);
    assert_eq!(c.server(3).kv(), c.server(1).kv());
}

/// The broker's will for the leader: each follower arms its election timer to fire at once
/// (within a jitter) instead of an election timeout later, and the new leader answers the
/// command that the dead leader's client is still waiting for, from what it received while
/// following: no resend needed. The command executes once.
#[test]
fn a_will_for_the_leader_starts_an_election_and_waiting_commands_are_answered() {
    let mut c = Cluster::new(3, |_| {});
    c.elect(1);
    c.settle();
    c.fire(1, TimerKind::Heartbeat);
    c.settle();
    assert_eq!(c.server(2).leader(), Some(1));
    // The leader dies; a command reaches the other two, who do not lead.
    c.crash(1);
    c.request(put("c/1", 1, "k", "v"));
    c.settle();
    assert!(c.replies.is_empty());
    for id in [2, 3] {
        c.now += Duration::from_millis(1);
        let now = c.now;
        let ready = c.servers[id as usize - 1]
            .as_mut()
            .unwrap()
            .step(now, Input::PeerOffline(1));
        let election = ready
            .timers
            .iter()
            .find(|t| t.kind == TimerKind::Election)
            .expect("the will arms the election timer");
        assert_eq!(election.after, Duration::ZERO, "server {id}");
        assert!(election.jitter < Duration::from_millis(100), "server {id}");
        assert_eq!(c.server(id).leader(), None);
        c.absorb(id, ready);
    }
    // Milliseconds later, not an election timeout: server 2's timer fires and it wins.
    c.fire(2, TimerKind::Election);
    c.settle();
    assert_eq!(c.server(2).role(), RoleKind::Leader);
    assert_eq!(c.replies, vec![("c/1".into(), 1, OpResult::Done)]);
    // The client's own resend, arriving now, is answered from the session, not run again.
    c.request(put("c/1", 1, "k", "v"));
    c.fire(2, TimerKind::Heartbeat);
    c.settle();
    assert_eq!(c.replies.len(), 2);
    assert_eq!(c.server(2).kv().entry("k").map(|r| r.version), Some(1));
    assert_eq!(value(&c, 3, "k").as_deref(), Some("v"));
}

/// A will for a server that is not our leader (or a stale one after we moved on) changes
/// nothing.
#[test]
fn a_will_for_another_server_changes_nothing() {
    let mut c = Cluster::new(3, |_| {});
    c.elect(1);
    c.settle();
    c.now += Duration::from_millis(1);
    let now = c.now;
    let ready = c.servers[1]
        .as_mut()
        .unwrap()
        .step(now, Input::PeerOffline(3));
    assert!(ready.timers.is_empty() && ready.send_now.is_empty());
    assert_eq!(c.server(2).leader(), Some(1));
}

/// The `paper` finding of docs/simulator.md (seed 1548 before pre-vote): with 7 servers a side
/// of 4 needs every one of its promises, which under loss take a while. Server 5 promised
/// candidate 7; its own timer ran out while 7 still waited for 1 and 4, and it stood with a
/// higher ballot, which 1 promised, so 7's win was void; the duel repeated until the heal.
/// Now 5 must first pass a pre-vote, and nobody that 7 is still asking says yes.
#[test]
fn a_follower_does_not_duel_the_candidate_it_promised() {
    let mut c = Cluster::new(7, |_| {});
    c.cut = vec![2, 3, 6];
    c.elect(7);
    let ballot = c.server(7).ballot().max(Ballot::new(1, 7));
    // 7's Prepares reach 1, 4 and 5; only 5's promise gets back.
    let lost_promises = |c: &mut Cluster| {
        for to in [1, 4] {
            let p = c.take(|f| f.from == 7 && f.to == To::Server(to));
            c.deliver(p);
            let _lost = c.take(|f| f.from == to && f.to == To::Server(7));
        }
    };
    let p5 = c.take(|f| f.from == 7 && f.to == To::Server(5));
    lost_promises(&mut c);
    c.deliver(p5);
    c.settle();
    assert_eq!(c.server(7).role(), RoleKind::Candidate);
    assert_eq!(c.server(5).ballot().server, 7, "5 promised 7");
    // Time passes: 7 asks 1 and 4 again (their answers are lost again); 5's timer runs out.
    for _ in 0..8 {
        c.now += Duration::from_millis(50);
        c.fire(7, TimerKind::PrepareResend);
        lost_promises(&mut c);
        c.drop_all();
    }
    c.fire(5, TimerKind::Election);
    c.settle();
    assert_eq!(
        c.server(5).role(),
        RoleKind::Follower,
        "5 stood against the candidate it promised"
    );
    for id in [1, 4, 5] {
        assert_eq!(c.server(id).ballot().server, 7, "server {id} left 7");
    }
    // 7's next resend gets through, and it wins.
    c.fire(7, TimerKind::PrepareResend);
    c.settle();
    assert_eq!(c.server(7).role(), RoleKind::Leader);
    assert!(c.server(7).ballot() >= ballot);
    c.request(put("c/1", 1, "k", "v"));
    c.settle();
    assert_eq!(c.replies, vec![("c/1".into(), 1, OpResult::Done)]);
}

/// The `one-way` finding of docs/simulator.md: a server that can send but not hear bid ever
/// higher rounds, which the others promised though it could never win, so every healthy
/// candidate was refused. Now its pre-votes are answered, but the answers never reach it,
/// so it never bids, and the others' promises do not move.
#[test]
fn a_server_that_cannot_hear_never_outbids_the_others() {
    let mut c = Cluster::new(5, |_| {});
    c.elect(1);
    c.settle();
    let ballot = c.server(1).ballot();
    c.crash(1);
    c.now += Duration::from_secs(1);
    let deaf = |c: &mut Cluster| {
        while let Some(f) = c.flights.pop_front() {
            if f.to != To::Server(5) {
                c.deliver(f);
            }
        }
    };
    for _ in 0..10 {
        c.now += Duration::from_millis(400);
        c.fire(5, TimerKind::Election);
        c.fire(5, TimerKind::PrepareResend);
        deaf(&mut c);
    }
    assert_eq!(c.server(5).role(), RoleKind::Follower);
    for id in 2..=4 {
        assert_eq!(
            c.server(id).ballot(),
            ballot,
            "server {id} promised the deaf one"
        );
    }
    // A server that hears wins at once and commits.
    c.fire(2, TimerKind::Election);
    deaf(&mut c);
    assert_eq!(c.server(2).role(), RoleKind::Leader);
    c.request(put("c/1", 1, "k", "v"));
    deaf(&mut c);
    assert_eq!(c.replies, vec![("c/1".into(), 1, OpResult::Done)]);
}

// ----- large values under load (issue 17): what waits in the followers' queues -----

/// A leader keeps at most `window_bytes` of commands in flight (one slot always), so its
/// heartbeats never queue behind more than that at a follower; the rest waits at the leader
/// and goes out as slots are chosen.
#[test]
fn a_leader_holds_back_slots_past_its_byte_window() {
    let mut c = Cluster::new(3, |cfg| cfg.window_bytes = 2_500);
    c.elect(1);
    c.settle();
    let big = "x".repeat(1_000);
    for seq in 1..=5 {
        c.request(put(&format!("c/{seq}"), 1, &format!("k{seq}"), &big));
    }
    let proposed = |c: &Cluster| {
        c.flights
            .iter()
            .filter(|f| f.from == 1 && f.to == To::Server(2))
            .map(|f| match &f.msg {
                Message::Accept { values, .. } => values.len(),
                _ => 0,
            })
            .sum::<usize>()
    };
    assert_eq!(
        proposed(&c),
        3,
        "slots of 1 KB each until the window's 2.5 KB are reached, not all five"
    );
    c.settle();
    assert_eq!(c.replies.len(), 5, "the rest follows as slots are chosen");
    assert!(c.replies.iter().all(|r| r.2 == OpResult::Done));
}

/// A resend goes only to the servers that have not acknowledged (a value can be a
/// megabyte), and a large slot's resends back off while a small one's do not.
#[test]
fn accept_resends_go_to_who_lacks_them_and_large_ones_back_off() {
    let mut c = Cluster::new(5, |_| {});
    c.elect(1);
    c.settle();
    let big = "x".repeat(100 << 10);
    c.request(put("c/1", 1, "k", &big));
    // Servers 2 and 3 acknowledge; 4 and 5 never hear of it.
    c.flights
        .retain(|f| !(f.from == 1 && matches!(f.to, To::Server(4) | To::Server(5))));
    c.settle();
    assert_eq!(c.replies.len(), 1, "chosen by 1, 2 and 3");
    let resent_to = |c: &mut Cluster| {
        let to: Vec<To> = c
            .flights
            .iter()
            .filter(|f| matches!(f.msg, Message::Accept { ref values, .. } if !values.is_empty()))
            .map(|f| f.to.clone())
            .collect();
        c.drop_all();
        to
    };
    // Commit moved on, so nothing is in flight: a second command stays unacknowledged.
    c.request(put("c/1", 2, "k", &big));
    c.flights
        .retain(|f| !(f.from == 1 && matches!(f.to, To::Server(4) | To::Server(5))));
    c.settle();
    assert_eq!(c.replies.len(), 2);
    c.request(put("c/1", 3, "k", &big));
    c.flights.retain(|f| {
        !(f.from == 1 && matches!(f.to, To::Server(3) | To::Server(4) | To::Server(5)))
    });
    c.drop_all();
    let mut fired_with_resend = Vec::new();
    for step in 1..=8 {
        c.now += Duration::from_millis(50);
        c.fire(1, TimerKind::AcceptResend);
        if !resent_to(&mut c).is_empty() {
            fired_with_resend.push(step);
        }
    }
    assert_eq!(
        fired_with_resend,
        vec![1, 3, 7],
        "a large slot waits 50, 100, 200 ms between resends"
    );
    // One of four peers acknowledged a slot (not chosen yet): only the other three get it
    // again.
    let mut c = Cluster::new(5, |_| {});
    c.elect(1);
    c.settle();
    c.request(put("c/2", 1, "small", "v"));
    c.flights.retain(|f| {
        !(f.from == 1 && matches!(f.to, To::Server(3) | To::Server(4) | To::Server(5)))
    });
    c.settle();
    assert!(c.replies.is_empty(), "not chosen");
    c.now += Duration::from_secs(1);
    c.fire(1, TimerKind::AcceptResend);
    let mut to = resent_to(&mut c);
    to.sort_by_key(|t| format!("{t:?}"));
    assert_eq!(to, vec![To::Server(3), To::Server(4), To::Server(5)]);
}

/// A leader that stood still itself (a long sync, a snapshot written whole) gives the others
/// an election timeout to answer before check-quorum judges them: they could not answer
/// what it did not send. A leader that ticks on time and hears nobody still steps down.
#[test]
fn a_leader_does_not_step_down_for_its_own_stall() {
    let mut c = Cluster::new(3, |_| {});
    c.elect(1);
    c.settle();
    for _ in 0..5 {
        c.now += Duration::from_millis(100);
        c.fire(1, TimerKind::Heartbeat);
        c.settle();
    }
    // Stalled for a second: nothing sent, nothing heard.
    c.now += Duration::from_secs(1);
    c.fire(1, TimerKind::Heartbeat);
    assert_eq!(
        c.server(1).role(),
        RoleKind::Leader,
        "not for its own stall"
    );
    c.settle();
    c.now += Duration::from_millis(100);
    c.fire(1, TimerKind::Heartbeat);
    c.settle();
    assert_eq!(c.server(1).role(), RoleKind::Leader);
    // Now on time, and nobody answers: it steps down within an election timeout.
    c.drop_all();
    for _ in 0..5 {
        c.now += Duration::from_millis(100);
        c.fire(1, TimerKind::Heartbeat);
        c.drop_all();
    }
    assert_eq!(c.server(1).role(), RoleKind::Follower);
}
