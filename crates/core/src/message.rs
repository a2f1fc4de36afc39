//! Everything that crosses the core's boundary: messages between nodes, inputs, timers and the
//! [`Ready`] a step returns. Pure data; no IO.

use crate::ballot::{Ballot, NodeId, Slot};
use crate::kv::{ClientId, Command, OpResult};
use crate::log::{Entry, Incarnations, PersistOp, Value};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A message between nodes. Servers exchange the Paxos messages; clients send `Request` and
/// receive `Reply`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Phase 1a: "promise me `ballot`, and tell me what you accepted from slot `from` on".
    /// `incarnations` is what the candidate knows of servers that rejoined after losing
    /// state; an acceptor records it durably with its promise.
    Prepare {
        ballot: Ballot,
        from: Slot,
        incarnations: Incarnations,
    },
    /// Phase 1b: what the acceptor accepted from slot `from` on. Bounded in bytes: when
    /// `more` is set, the entries stop before that slot and the candidate asks for the rest
    /// with a Prepare from there; the promise counts once the last part (`more: None`) is in.
    /// An acceptor that has truncated past the candidate's `from` sends its snapshot
    /// ([`Message::SnapshotChunk`]) instead, and promises once the candidate has caught up.
    /// `incarnations` is what the acceptor knows, its own entry included: a promise made by an
    /// older incarnation of a server that has since rejoined does not count.
    Promise {
        ballot: Ballot,
        from: Slot,
        accepted: Vec<(Slot, Entry)>,
        more: Option<Slot>,
        incarnations: Incarnations,
    },
    /// Phase 2a for the contiguous slots `first..first + values.len()`, with the leader's commit
    /// point (every slot before `commit` is chosen).
    Accept {
        ballot: Ballot,
        first: Slot,
        values: Vec<Value>,
        commit: Slot,
    },
    /// Phase 2b for slots `first..first + count`.
    Accepted {
        ballot: Ballot,
        first: Slot,
        count: u64,
    },
    /// "I will not take part in `ballot`: I promised `promised`."
    Nack { ballot: Ballot, promised: Ballot },
    /// The leader is alive, and every slot before `commit` is chosen.
    Heartbeat { ballot: Ballot, commit: Slot },
    /// The leader asks: "do you still follow `ballot`?", for the gets waiting on round `round`.
    ReadIndex { ballot: Ballot, round: u64 },
    /// "Yes, I still follow `ballot`" (nothing higher promised), for read round `round`.
    ReadAck { ballot: Ballot, round: u64 },
    /// A replica that lags asks for chosen values from slot `from` on.
    CatchUp { from: Slot },
    /// Chosen values `first..first + values.len()` (bounded in bytes). An asker that lags
    /// behind the sender's truncation point is sent the snapshot instead.
    Chosen { first: Slot, values: Vec<Value> },
    /// A server that lost durable state asks what incarnation the others know it by.
    RejoinQuery,
    /// The answer: the highest incarnation of the asker this server knows.
    RejoinInfo { incarnation: u64 },
    /// "I am rejoining as `incarnation`": asks the leader to run phase 1 again in a new
    /// ballot whose Prepare carries that incarnation.
    Rejoin { incarnation: u64 },
    /// The leader has a majority's promises for `ballot`, made knowing of `incarnation`; the
    /// rejoining server may vote once it has learned every slot before `through`.
    Rejoined {
        incarnation: u64,
        ballot: Ballot,
        through: Slot,
    },
    /// A client's command, sent to all servers.
    Request(Command),
    /// The result of the client's command `seq`.
    Reply {
        client: ClientId,
        seq: u64,
        result: OpResult,
    },
    /// A follower's answer to a Heartbeat: "I hear you, leader of `ballot`". It changes
    /// nothing but lets an idle leader know it still reaches a majority (check-quorum).
    HeartbeatAck { ballot: Ballot },
    /// Bytes `offset..offset + data.len()` of the encoded snapshot of the state before slot
    /// `next_slot`, which is `total` bytes long. Snapshots grow with the data, so they travel
    /// in pieces of bounded size, each asked for in turn ([`Message::SnapshotFetch`]).
    SnapshotChunk {
        next_slot: Slot,
        offset: u64,
        total: u64,
        #[serde(with = "raw_bytes")]
        data: Vec<u8>,
    },
    /// "Send me the snapshot before `next_slot` from byte `offset` on."
    SnapshotFetch { next_slot: Slot, offset: u64 },
    /// Pre-vote: "would you promise `ballot` if I asked?" It changes nothing at the receiver.
    /// A server stands for election only once a majority say yes, so a server that cannot hear
    /// (whose acks never arrive) never outbids the healthy ones, and one with a live leader or
    /// a live candidate around does not start a duel (Raft's pre-vote, Ongaro's thesis 9.6).
    PreVote { ballot: Ballot },
    /// "Yes: I know no live leader nor candidate, and I have promised `promised`" (the asker
    /// bids above it, so its Prepare is not refused for a round it could have known).
    PreVoteAck { ballot: Ballot, promised: Ballot },
    /// The results of several commands whose replies go to one reply topic (one client
    /// connection), as one publish. The runtime sends it when one flush answers two or more
    /// commands of a connection, which only a client that pipelines commands causes (one
    /// with a single command in flight is still answered with [`Message::Reply`], so older
    /// clients never see it). The servers' core never makes nor reads it.
    Replies(Vec<Answer>),
}

/// One command's result inside [`Message::Replies`]: the fields of [`Message::Reply`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub client: ClientId,
    pub seq: u64,
    pub result: OpResult,
}

impl Message {
    /// The message's type name, for counting and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Prepare { .. } => "prepare",
            Message::Promise { .. } => "promise",
            Message::Accept { .. } => "accept",
            Message::Accepted { .. } => "accepted",
            Message::Nack { .. } => "nack",
            Message::Heartbeat { .. } => "heartbeat",
            Message::ReadIndex { .. } => "read_index",
            Message::ReadAck { .. } => "read_ack",
            Message::CatchUp { .. } => "catchup",
            Message::Chosen { .. } => "chosen",
            Message::RejoinQuery => "rejoin_query",
            Message::RejoinInfo { .. } => "rejoin_info",
            Message::Rejoin { .. } => "rejoin",
            Message::Rejoined { .. } => "rejoined",
            Message::Request(_) => "request",
            Message::Reply { .. } => "reply",
            Message::HeartbeatAck { .. } => "heartbeat_ack",
            Message::SnapshotChunk { .. } => "snapshot_chunk",
            Message::SnapshotFetch { .. } => "snapshot_fetch",
            Message::PreVote { .. } => "pre_vote",
            Message::PreVoteAck { .. } => "pre_vote_ack",
            Message::Replies(_) => "replies",
        }
    }

    /// All message type names, in a fixed order.
    pub const KINDS: [&'static str; 22] = [
        "prepare",
        "promise",
        "accept",
        "accepted",
        "nack",
        "heartbeat",
        "read_index",
        "read_ack",
        "catchup",
        "chosen",
        "rejoin_query",
        "rejoin_info",
        "rejoin",
        "rejoined",
        "request",
        "reply",
        "heartbeat_ack",
        "snapshot_chunk",
        "snapshot_fetch",
        "pre_vote",
        "pre_vote_ack",
        "replies",
    ];
}

/// Where a message goes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Dest {
    /// One server.
    Server(NodeId),
    /// Every server but the sender: one publish on MQTT.
    AllServers,
    /// One client.
    Client(ClientId),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    pub to: Dest,
    pub msg: Message,
}

/// A server's timers. Setting a kind again replaces the earlier one; a timer that fires when it
/// no longer applies is ignored by the core, so the runtime never needs to cancel one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimerKind {
    /// Leader: send a heartbeat.
    Heartbeat,
    /// Follower or candidate: no leader heard from for too long, or this election round failed.
    Election,
    /// Candidate: resend Prepare to those that have not promised.
    PrepareResend,
    /// Leader: resend Accepts that a majority has not yet acknowledged.
    AcceptResend,
    /// Follower: ask again for the chosen values it lacks.
    CatchUpResend,
    /// Rejoining server: ask again for its incarnation, or for a new phase 1.
    RejoinResend,
}

/// Ask the runtime to fire `kind` after `after` plus a uniformly random extra in
/// `0..=jitter`. The randomness lives outside the core so the core stays deterministic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetTimer {
    pub kind: TimerKind,
    pub after: Duration,
    pub jitter: Duration,
}

/// An input to a server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A message from server `from`.
    Message { from: NodeId, msg: Message },
    /// A client's command.
    Request(Command),
    /// A timer that the core set has fired.
    Timer(TimerKind),
    /// The broker says server `0`'s connection is gone: its last will (or a clean
    /// shutdown's `offline`). A follower whose leader that is stands for election within a
    /// short jitter instead of waiting out the election timeout. It may be stale (the
    /// server has reconnected since) or never come (a partition the broker has not noticed
    /// yet): an election is always safe, and the timeout stays the fallback.
    PeerOffline(NodeId),
}

/// What one step asks of the runtime, in this order: send `send_now` (these may leave before
/// the disk write), make `persist` durable, then send `send_after` (promises, acknowledgements
/// and replies, which must never leave before what they vouch for is durable), and set
/// `timers`.
#[derive(Debug, Default)]
pub struct Ready {
    pub send_now: Vec<Outgoing>,
    pub persist: Vec<PersistOp>,
    pub send_after: Vec<Outgoing>,
    pub timers: Vec<SetTimer>,
    /// Slots executed in this step with a digest of their value. Filled only when
    /// `Config::trace_chosen` is set; the simulator uses it to check that every replica
    /// executes the same value in each slot.
    pub executed: Vec<(Slot, u64)>,
    /// Client commands executed in this step (duplicates and no-ops not counted).
    pub executed_commands: u64,
    /// What happened that an operator wants in the log (see [`crate::note`]).
    pub notes: Vec<crate::note::Note>,
    /// Changes this server executed as leader, in revision order, for watchers: to be
    /// published once the step's writes are durable.
    pub changes: Vec<crate::watch::Change>,
}

impl Ready {
    pub fn is_empty(&self) -> bool {
        self.send_now.is_empty()
            && self.persist.is_empty()
            && self.send_after.is_empty()
            && self.timers.is_empty()
    }

    /// All messages in the order they may leave.
    pub fn messages(&self) -> impl Iterator<Item = &Outgoing> {
        self.send_now.iter().chain(self.send_after.iter())
    }
}

/// Most slots one coalesced Accept carries, and a bound on its size in bytes (estimated), so
/// a merged message always stays far below the transport's payload limit.
pub const COALESCE_MAX_SLOTS: usize = 256;
pub const COALESCE_MAX_BYTES: usize = 1 << 20;

/// Merges messages that consecutive protocol steps produced for the same destination and
/// that can travel as one: Accepts of adjacent slots in the same ballot, Accepteds of
/// adjacent ranges in the same ballot, and Heartbeats of the same ballot (the highest commit
/// point wins). A runtime that steps the core through every message that has arrived before
/// it syncs (group commit) sends the result, so a burst of commands costs one Accept and one
/// Accepted per follower instead of one per command. Each message is merged into the latest
/// earlier one of its kind and destination; messages may be reordered by that, which the
/// protocol allows (the network reorders too). Pure; no IO.
pub fn coalesce(msgs: Vec<Outgoing>) -> Vec<Outgoing> {
    if msgs.len() < 2 {
        // The common case when idle: nothing to merge, and no table to build per flush.
        return msgs;
    }
    let mut out: Vec<Outgoing> = Vec::with_capacity(msgs.len());
    // For each (destination, kind), where its latest message sits in `out`.
    let mut latest: std::collections::BTreeMap<(Dest, &'static str), usize> = Default::default();
    for o in msgs {
        let key = (o.to.clone(), o.msg.kind());
        if let Some(&i) = latest.get(&key) {
            if merge(&mut out[i].msg, &o.msg) {
                continue;
            }
        }
        latest.insert(key, out.len());
        out.push(o);
    }
    out
}

/// Folds `next` into `prev` if they can travel as one message; returns whether it did.
fn merge(prev: &mut Message, next: &Message) -> bool {
    match (prev, next) {
        (
            Message::Accept {
                ballot: b1,
                first: f1,
                values: v1,
                commit: c1,
            },
            Message::Accept {
                ballot: b2,
                first: f2,
                values: v2,
                commit: c2,
            },
        ) if b1 == b2
            && f1.checked_add(v1.len() as Slot) == Some(*f2)
            && v1.len() + v2.len() <= COALESCE_MAX_SLOTS
            && values_bytes(v1) + values_bytes(v2) <= COALESCE_MAX_BYTES =>
        {
            v1.extend(v2.iter().cloned());
            *c1 = (*c1).max(*c2);
            true
        }
        (
            Message::Accepted {
                ballot: b1,
                first: f1,
                count: n1,
            },
            Message::Accepted {
                ballot: b2,
                first: f2,
                count: n2,
            },
        ) if b1 == b2 && f1.checked_add(*n1) == Some(*f2) => {
            *n1 += n2;
            true
        }
        (Message::HeartbeatAck { ballot: b1 }, Message::HeartbeatAck { ballot: b2 })
            if b1 == b2 =>
        {
            true
        }
        (
            Message::Heartbeat {
                ballot: b1,
                commit: c1,
            },
            Message::Heartbeat {
                ballot: b2,
                commit: c2,
            },
        ) if b1 == b2 => {
            *c1 = (*c1).max(*c2);
            true
        }
        _ => false,
    }
}

/// A generous estimate of the encoded size of some slots' values.
fn values_bytes(values: &[Value]) -> usize {
    values
        .iter()
        .flatten()
        .map(|c| crate::limits::command_size(c) + 16)
        .sum::<usize>()
        + values.len() * 8
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::{Command, Op};

    /// A snapshot piece's bytes are encoded as one run, as before they were a sequence of
    /// `u8`s: old and new servers read each other's pieces.
    #[test]
    fn snapshot_pieces_keep_their_wire_form() {
        #[derive(Serialize)]
        enum Old {
            #[serde(rename = "SnapshotChunk")]
            Chunk {
                next_slot: Slot,
                offset: u64,
                total: u64,
                data: Vec<u8>,
            },
        }
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let new = Message::SnapshotChunk {
            next_slot: 7,
            offset: 3,
            total: 2000,
            data: data.clone(),
        };
        let old = Old::Chunk {
            next_slot: 7,
            offset: 3,
            total: 2000,
            data,
        };
        let new_bytes = postcard::to_allocvec(&new).unwrap();
        let old_bytes = postcard::to_allocvec(&old).unwrap();
        // The enum tags differ (the old mirror has one variant); the payloads must not.
        let kind = Message::KINDS
            .iter()
            .position(|k| *k == "snapshot_chunk")
            .unwrap() as u8;
        assert_eq!(new_bytes[0], kind);
        assert_eq!(old_bytes[0], 0);
        assert_eq!(new_bytes[1..], old_bytes[1..]);
        assert_eq!(postcard::from_bytes::<Message>(&new_bytes).unwrap(), new);
    }

    fn put(seq: u64) -> Value {
        vec![Command {
            client: "c/1".into(),
            seq,
            op: Op::Put {
                key: "k".into(),
                value: "v".into(),
            },
        }]
    }

    fn accept(first: Slot, n: u64, commit: Slot) -> Outgoing {
        Outgoing {
            to: Dest::AllServers,
            msg: Message::Accept {
                ballot: Ballot::new(1, 1),
                first,
                values: (first..first + n).map(put).collect(),
                commit,
            },
        }
    }

    #[test]
    fn adjacent_accepts_and_accepteds_merge_others_stay() {
        let acked = |first, count| Outgoing {
            to: Dest::Server(1),
            msg: Message::Accepted {
                ballot: Ballot::new(1, 1),
                first,
                count,
            },
        };
        let reply = Outgoing {
            to: Dest::Client("c/1".into()),
            msg: Message::Reply {
                client: "c/1".into(),
                seq: 1,
                result: crate::kv::OpResult::Done,
            },
        };
        let out = coalesce(vec![
            accept(10, 1, 9),
            reply.clone(),
            accept(11, 2, 10),
            acked(10, 1),
            acked(11, 2),
            // Not adjacent: a gap, so it travels on its own.
            accept(20, 1, 10),
            reply.clone(),
        ]);
        assert_eq!(out.len(), 5, "{out:?}");
        assert_eq!(out[0], accept(10, 3, 10));
        assert_eq!(out[1], reply);
        assert_eq!(out[2], acked(10, 3));
        assert_eq!(out[3], accept(20, 1, 10));
        assert_eq!(out[4], reply, "replies to clients are never merged");
    }

    #[test]
    fn a_merged_accept_stays_bounded() {
        let many: Vec<Outgoing> = (0..1000).map(|s| accept(s, 1, 0)).collect();
        let out = coalesce(many);
        assert!(out.iter().all(|o| matches!(&o.msg, Message::Accept { values, .. } if values.len() <= COALESCE_MAX_SLOTS)));
        let slots: usize = out
            .iter()
            .map(|o| match &o.msg {
                Message::Accept { values, .. } => values.len(),
                _ => 0,
            })
            .sum();
        assert_eq!(slots, 1000, "nothing lost");
    }
}

/// A byte buffer as one length-prefixed run of bytes rather than a sequence of `u8`s. On the
/// wire this is the same (postcard writes both as a varint length and the raw bytes), but
/// serde's default walks a `Vec<u8>` one element at a time, which made encoding and decoding
/// a 4 MiB snapshot piece byte by byte.
mod raw_bytes {
    use serde::de::{Deserializer, Error, SeqAccess, Visitor};
    use serde::Serializer;

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Bytes;
        impl<'de> Visitor<'de> for Bytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            // Self-describing formats (JSON) may hand over a sequence instead.
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
                while let Some(b) = seq.next_element()? {
                    v.push(b);
                }
                Ok(v)
            }
        }
        d.deserialize_byte_buf(Bytes)
    }
}
