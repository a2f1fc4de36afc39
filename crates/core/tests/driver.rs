//! Transcripts through the driver: a hand-driven cluster in which each server is a
//! [`Driver`] (as in the runtime and the simulator), and the test decides when each flush
//! happens, which messages arrive, and when a process dies between a flush's early messages
//! and its sync.

use mqpaxos_core::{
    Command, Config, Dest, Driver, Durable, Flush, Input, Message, NodeId, Op, OpResult, Outgoing,
    PersistOp, RoleKind, Server, TimerKind,
};
use std::time::Duration;

mod common;
use common::{answer_prevote, fresh};

#[derive(Clone, Debug)]
struct Flight {
    from: NodeId,
    to: NodeId,
    msg: Message,
}

struct Cluster {
    drivers: Vec<Option<Driver>>,
    durable: Vec<Durable>,
    flights: Vec<Flight>,
    replies: Vec<(String, u64, OpResult)>,
    now: Duration,
    tweak: fn(&mut Config),
}

impl Cluster {
    fn new(n: u32, tweak: fn(&mut Config)) -> Self {
        let mut c = Cluster {
            drivers: Vec::new(),
            durable: Vec::new(),
            flights: Vec::new(),
            replies: Vec::new(),
            now: Duration::from_secs(1),
            tweak,
        };
        for id in 1..=n {
            let cfg = c.config(id, n);
            c.durable.push(fresh(cfg.max_sessions));
            c.drivers.push(None);
        }
        for id in 1..=n {
            c.boot(id);
        }
        c
    }

    fn n(&self) -> u32 {
        self.drivers.len() as u32
    }

    fn config(&self, id: NodeId, n: u32) -> Config {
        let mut cfg = Config::new(id, n);
        (self.tweak)(&mut cfg);
        cfg
    }

    fn boot(&mut self, id: NodeId) {
        let cfg = self.config(id, self.n());
        let server = Server::recover(cfg, self.durable[id as usize - 1].clone()).unwrap();
        let mut d = Driver::new(server, u64::from(id));
        d.start(self.now);
        self.drivers[id as usize - 1] = Some(d);
        self.flush(id);
    }

    fn driver(&mut self, id: NodeId) -> &mut Driver {
        self.drivers[id as usize - 1].as_mut().expect("running")
    }

    fn server(&self, id: NodeId) -> &Server {
        self.drivers[id as usize - 1].as_ref().unwrap().server()
    }

    fn step(&mut self, id: NodeId, input: Input) {
        self.now += Duration::from_millis(1);
        let now = self.now;
        self.driver(id).step(now, input);
    }

    fn post(&mut self, from: NodeId, o: Outgoing) {
        match o.to {
            Dest::Server(t) => self.flights.push(Flight {
                from,
                to: t,
                msg: o.msg,
            }),
            Dest::AllServers => {
                for t in (1..=self.n()).filter(|t| *t != from) {
                    self.flights.push(Flight {
                        from,
                        to: t,
                        msg: o.msg.clone(),
                    });
                }
            }
            Dest::Client(c) => {
                if let Message::Reply { seq, result, .. } = o.msg {
                    self.replies.push((c, seq, result));
                }
            }
        }
    }

    /// A whole flush: early messages, the writes made durable, the rest.
    fn flush(&mut self, id: NodeId) {
        let Flush {
            send_early,
            persist,
            send_durable,
            ..
        } = self.driver(id).flush();
        for o in send_early {
            self.post(id, o);
        }
        for op in persist {
            self.durable[id as usize - 1].apply(op);
        }
        for o in send_durable {
            self.post(id, o);
        }
    }

    /// The process dies during the flush: its early messages are out, its writes never
    /// reached the disk, and nothing else leaves.
    fn crash_before_sync(&mut self, id: NodeId) -> Vec<PersistOp> {
        let f = self.driver(id).flush();
        for o in f.send_early {
            self.post(id, o);
        }
        self.drivers[id as usize - 1] = None;
        f.persist
    }

    /// Delivers (then flushes the receiver) every message in flight that matches.
    fn deliver(&mut self, pred: impl Fn(&Flight) -> bool) {
        let (now, later): (Vec<Flight>, Vec<Flight>) = std::mem::take(&mut self.flights)
            .into_iter()
            .partition(pred);
        self.flights = later;
        for f in now {
            if self.drivers[f.to as usize - 1].is_some() {
                self.step(
                    f.to,
                    Input::Message {
                        from: f.from,
                        msg: f.msg,
                    },
                );
                self.flush(f.to);
            }
        }
    }

    fn settle(&mut self) {
        for _ in 0..1000 {
            if self.flights.is_empty() {
                return;
            }
            self.deliver(|_| true);
        }
        panic!("messages never stop");
    }

    /// Makes `id` stand for election, its pre-vote answered by a majority's yes at once.
    fn elect(&mut self, id: NodeId) {
        self.now += Duration::from_secs(10);
        self.step(id, Input::Timer(TimerKind::Election));
        self.flush(id);
        let n = self.n();
        let Some(answers) = answer_prevote(&mut self.flights, id, n, |f| (f.from, &f.msg)) else {
            return;
        };
        for input in answers {
            self.step(id, input);
        }
        self.flush(id);
    }
}

fn put(seq: u64, v: &str) -> Command {
    put_as("c/1", "k", seq, v)
}

fn put_as(client: &str, key: &str, seq: u64, v: &str) -> Command {
    Command {
        client: client.into(),
        seq,
        op: Op::Put {
            key: key.into(),
            value: v.into(),
        },
    }
}

fn value(c: &Cluster, id: NodeId) -> Option<String> {
    c.server(id).kv().get("k").map(str::to_string)
}

/// Issue 12.1. Server 1 wins ballot 1.1 with server 2's promise and, in the same group, takes
/// put(A). It dies before the group's sync. Had its Accept for A left early, server 3 would
/// hold A in 1.1; server 1, restarting with no record of 1.1, wins 1.1 again with server 2,
/// gets B chosen in slot 0, and server 3 would execute A from the next heartbeat in 1.1: the
/// replicas would diverge. Nothing may leave before the new leader's promise is durable.
fn new_leader_crashes_before_its_promise_is_synced(tweak: fn(&mut Config)) -> Cluster {
    let mut c = Cluster::new(3, tweak);
    c.elect(1);
    // Only server 2 hears the Prepare.
    c.deliver(|f| f.from == 1 && f.to == 2);
    c.flights.retain(|f| f.to != 3);
    // Server 2's promise arrives, and so does a client's put, in one group.
    c.elect_reply_from(2);
    c.step(1, Input::Request(put(1, "A")));
    assert_eq!(c.server(1).role(), RoleKind::Leader);
    let lost = c.crash_before_sync(1);
    assert!(
        lost.iter().any(|op| matches!(op, PersistOp::Promise(_))),
        "{lost:?}"
    );
    // Whatever did leave reaches server 3 only.
    c.deliver(|f| f.to == 3);
    c.flights.clear();
    // Server 1 restarts from its disk and stands again: server 2 promises again.
    c.boot(1);
    c.elect(1);
    c.deliver(|f| f.from == 1 && f.to == 2);
    c.deliver(|f| f.from == 2 && f.to == 1);
    assert_eq!(c.server(1).role(), RoleKind::Leader);
    c.step(1, Input::Request(put(1, "B")));
    c.flush(1);
    // B is chosen with server 2; server 3 misses the Accept.
    c.flights.retain(|f| f.to != 3);
    for _ in 0..5 {
        c.deliver(|f| f.to != 3);
    }
    assert_eq!(value(&c, 1).as_deref(), Some("B"));
    c.flights.retain(|f| f.to != 3);
    // The next heartbeat tells server 3 that slot 0 is chosen; it asks for what it lacks.
    c.now += Duration::from_millis(200);
    c.step(1, Input::Timer(TimerKind::Heartbeat));
    c.flush(1);
    c.deliver(|f| f.to == 3);
    c.now += Duration::from_millis(100);
    c.step(3, Input::Timer(TimerKind::CatchUpResend));
    c.flush(3);
    c.settle();
    c
}

impl Cluster {
    /// Delivers server `from`'s answers to server 1 without flushing server 1 (so they join
    /// its next group).
    fn elect_reply_from(&mut self, from: NodeId) {
        let (now, later): (Vec<Flight>, Vec<Flight>) = std::mem::take(&mut self.flights)
            .into_iter()
            .partition(|f| f.from == from && f.to == 1);
        self.flights = later;
        for f in now {
            self.step(
                1,
                Input::Message {
                    from: f.from,
                    msg: f.msg,
                },
            );
        }
    }
}

#[test]
fn a_new_leaders_accepts_wait_for_its_promise_to_be_durable() {
    let c = new_leader_crashes_before_its_promise_is_synced(|_| {});
    assert_eq!(value(&c, 1).as_deref(), Some("B"));
    assert_eq!(
        value(&c, 3).as_deref(),
        Some("B"),
        "server 3 executed a value never chosen"
    );
}

/// The same transcript with the guard switched off shows the divergence it prevents.
#[cfg(feature = "mutations")]
#[test]
fn without_the_guard_the_replicas_diverge() {
    let c = new_leader_crashes_before_its_promise_is_synced(|cfg| {
        cfg.mutation = Some(mqpaxos_core::Mutation::EarlyBeforePromise)
    });
    assert_eq!(value(&c, 1).as_deref(), Some("B"));
    assert_eq!(value(&c, 3).as_deref(), Some("A"));
}

/// Issue 12.5. In a one-server cluster a get answered in the same group as a put must not
/// leave before that put is durable: a crash before the sync would erase what it showed.
#[test]
fn a_lone_server_answers_nothing_before_the_sync() {
    let mut c = Cluster::new(1, |_| {});
    c.elect(1);
    assert_eq!(c.server(1).role(), RoleKind::Leader);
    c.step(1, Input::Request(put(1, "A")));
    c.step(
        1,
        Input::Request(Command {
            client: "c/2".into(),
            seq: 1,
            op: Op::Get { key: "k".into() },
        }),
    );
    // A resend of the put, answered from the session table.
    c.step(1, Input::Request(put(1, "A")));
    let f = c.driver(1).flush();
    assert!(
        f.send_early
            .iter()
            .all(|o| !matches!(o.msg, Message::Reply { .. })),
        "a reply left before the sync: {:?}",
        f.send_early
    );
    assert_eq!(
        f.send_durable
            .iter()
            .filter(|o| matches!(o.msg, Message::Reply { .. }))
            .count(),
        3,
        "{:?}",
        f.send_durable
    );
}

/// A leader of three replies to a command with the early messages of the flush after the one
/// that carried its slot: its own copy is durable by then and the follower acknowledged
/// after its sync, so the reply need not wait for the newer commands' writes. Replying to a
/// command proposed in the same flush would not be safe; that one waits.
#[test]
fn a_leader_replies_ahead_of_the_sync_for_slots_of_an_earlier_flush() {
    let mut c = Cluster::new(3, |_| {});
    c.elect(1);
    c.settle();
    assert_eq!(c.server(1).role(), RoleKind::Leader);
    c.step(1, Input::Request(put(1, "A")));
    c.flush(1);
    // Server 2 accepts and acknowledges; its Accepted joins server 1's next group, with a
    // new command whose write that group's sync makes durable.
    c.deliver(|f| f.to == 2);
    c.flights.retain(|f| f.to == 1);
    c.elect_reply_from(2);
    c.step(1, Input::Request(put_as("c/2", "j", 1, "B")));
    let f = c.driver(1).flush();
    assert!(
        f.persist
            .iter()
            .any(|op| matches!(op, PersistOp::Accept { .. })),
        "the new command's write is in this flush: {:?}",
        f.persist
    );
    let early: Vec<_> = f
        .send_early
        .iter()
        .filter_map(|o| match &o.msg {
            Message::Reply { client, seq, .. } => Some((client.as_str(), *seq)),
            _ => None,
        })
        .collect();
    assert_eq!(early, vec![("c/1", 1)], "{:?}", f.send_early);
    assert!(
        f.send_durable
            .iter()
            .all(|o| !matches!(o.msg, Message::Reply { .. })),
        "{:?}",
        f.send_durable
    );
}

/// A backup copy (`Op::SnapshotPiece`) is taken only once a majority has confirmed the
/// leader in a read round, comes in pieces of `snapshot_chunk` bytes that all belong to one
/// commit point even while writes go on, and holds that point's state.
#[test]
fn a_backup_copy_waits_for_a_quorum_and_its_pieces_form_one_point_in_time() {
    let mut c = Cluster::new(3, |cfg| {
        cfg.snapshot_chunk = 16;
        // Gets through the log: the backup's read round must not depend on read-index gets.
        cfg.read_index = false;
    });
    c.elect(1);
    c.settle();
    assert_eq!(c.server(1).role(), RoleKind::Leader);
    let open = Command {
        client: "c/t".into(),
        seq: 1,
        op: Op::Open,
    };
    c.step(1, Input::Request(open));
    c.flush(1);
    c.settle();
    let Some((_, _, OpResult::Opened(slot))) = c.replies.pop() else {
        panic!("the session opened: {:?}", c.replies);
    };
    let session = format!("c/t/{slot}");
    let write = |seq: u64, v: &str| put_as(&session, "k", seq, v);
    c.step(1, Input::Request(write(1, "before the backup")));
    c.flush(1);
    c.settle();
    c.replies.clear();

    let piece = |seq: u64, at: Option<u64>, offset: u64| Command {
        client: "b/1".into(),
        seq,
        op: Op::SnapshotPiece { at, offset },
    };
    // The followers do not answer: no copy, however long the leader waits.
    c.step(1, Input::Request(piece(1, None, 0)));
    c.flush(1);
    c.flights.clear();
    assert!(
        c.replies.is_empty(),
        "answered without a quorum: {:?}",
        c.replies
    );
    c.now += Duration::from_secs(1);
    c.step(1, Input::Timer(TimerKind::AcceptResend));
    c.flush(1);
    c.settle();
    let Some((
        _,
        1,
        OpResult::SnapshotPiece {
            next_slot,
            offset: 0,
            total,
            data,
        },
    )) = c.replies.pop()
    else {
        panic!("the first piece: {:?}", c.replies);
    };
    assert!(data.len() <= 16 && (total as usize) > data.len());
    let mut bytes = data;
    // A write between pieces is not in the copy.
    c.step(1, Input::Request(write(2, "after the backup")));
    c.flush(1);
    c.settle();
    c.replies.clear();
    let mut seq = 1;
    while (bytes.len() as u64) < total {
        seq += 1;
        c.step(
            1,
            Input::Request(piece(seq, Some(next_slot), bytes.len() as u64)),
        );
        c.flush(1);
        c.settle();
        let Some((
            _,
            s,
            OpResult::SnapshotPiece {
                next_slot: at,
                offset,
                data,
                ..
            },
        )) = c.replies.pop()
        else {
            panic!("piece {seq}: {:?}", c.replies);
        };
        assert_eq!((s, at, offset), (seq, next_slot, bytes.len() as u64));
        bytes.extend_from_slice(&data);
    }
    let copy = mqpaxos_core::decode_snapshot(&bytes).expect("the pieces form a snapshot");
    assert_eq!(copy.next_slot, next_slot);
    assert_eq!(copy.kv.get("k"), Some("before the backup"));
    assert_eq!(value(&c, 1).as_deref(), Some("after the backup"));
}

/// A lone leader hands out each change for watchers with the flush that makes it durable,
/// answers "changes since" from its history, and says "compacted" for what the history no
/// longer holds.
#[test]
fn changes_go_out_with_their_flush_and_are_answered_until_compacted() {
    let mut c = Cluster::new(1, |cfg| cfg.history_bytes = 400);
    c.elect(1);
    c.driver(1).flush();
    for seq in 1..=8 {
        let mut cmd = put(seq, &format!("v{seq}"));
        // No session opened: at most once per (id, seq) all the same.
        cmd.op = Op::Once(Box::new(cmd.op));
        c.step(1, Input::Request(cmd));
    }
    let f = c.driver(1).flush();
    let revisions: Vec<u64> = f.changes.iter().map(|ch| ch.revision).collect();
    assert_eq!(revisions.len(), 8, "{:?}", f.changes);
    assert!(revisions.windows(2).all(|w| w[0] < w[1]), "{revisions:?}");
    for (a, b) in f.changes.iter().zip(f.changes.iter().skip(1)) {
        assert_eq!(b.prev_revision, a.revision, "one key's changes chain");
        assert_eq!(b.prev_store_revision, a.revision);
    }
    let ask = |from: u64| Command {
        client: "w/1".into(),
        seq: from,
        op: Op::Changes {
            key: "k".into(),
            prefix: false,
            from,
        },
    };
    let answer = |c: &mut Cluster, from: u64| {
        c.step(1, Input::Request(ask(from)));
        let f = c.driver(1).flush();
        f.send_durable
            .into_iter()
            .find_map(|o| match o.msg {
                Message::Reply { result, .. } => Some(result),
                _ => None,
            })
            .expect("an answer")
    };
    // The history holds the last few changes only (400 bytes): the first are compacted.
    let floor = match answer(&mut c, 1) {
        OpResult::Compacted { floor } => floor,
        other => panic!("{other:?}"),
    };
    assert!(floor > revisions[0] && floor < revisions[7], "{floor}");
    match answer(&mut c, floor + 1) {
        OpResult::Changes {
            revision,
            changes,
            more,
        } => {
            assert_eq!(revision, revisions[7]);
            assert!(!more);
            assert_eq!(changes.last().map(|ch| ch.revision), Some(revisions[7]));
            assert!(changes.iter().all(|ch| ch.revision > floor));
        }
        other => panic!("{other:?}"),
    }
}
