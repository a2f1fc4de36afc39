//! Everything that crosses the core's boundary: messages between nodes, inputs, timers and the
//! [`Ready`] a step returns. Pure data; no IO.

use crate::ballot::{Ballot, NodeId, Slot};
use crate::kv::{ClientId, Command, OpResult};
use crate::log::{Entry, Incarnations, PersistOp, Snapshot, Value};
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
    /// Phase 1b. `snapshot` is set when the acceptor has truncated past the candidate's `from`.
    /// `incarnations` is what the acceptor knows, its own entry included: a promise made by an
    /// older incarnation of a server that has since rejoined does not count.
    Promise {
        ballot: Ballot,
        accepted: Vec<(Slot, Entry)>,
        snapshot: Option<Snapshot>,
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
    /// Chosen values `first..first + values.len()`, preceded by a snapshot when the asker lags
    /// behind the sender's truncation point.
    Chosen {
        first: Slot,
        values: Vec<Value>,
        snapshot: Option<Snapshot>,
    },
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
        }
    }

    /// All message type names, in a fixed order.
    pub const KINDS: [&'static str; 16] = [
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
