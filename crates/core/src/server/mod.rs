//! The Multi-Paxos server: proposer, acceptor and learner in one state machine.
//!
//! Driven by [`Server::step`] with the current time (a number: the core has no clock), it
//! returns a [`Ready`] of messages, durable writes and timers. It never does IO, never
//! sleeps, never draws a random number, and iterates only ordered collections, so the same
//! inputs always give the same outputs: that is what lets the simulator replay any run.
//!
//! Roles:
//! - *Follower*: accepts what the leader of the highest ballot it promised proposes, learns
//!   the commit point from Accept and Heartbeat, executes chosen slots in order, and asks for
//!   what it missed (`CatchUp`).
//! - *Candidate*: phase 1. Sends `Prepare(ballot, from = its commit point)` and counts
//!   `Promise`s for exactly that ballot; a promise for any other ballot is ignored, so a delayed
//!   vote from an earlier round is never counted in a later one. Its own vote is cast only once
//!   a majority of the others have promised, so a server whose election fails does not refuse
//!   the healthy leader it could not hear.
//! - *Leader*: phase 2. Re-proposes, in its own ballot, the highest-ballot value any promise
//!   reported for every slot from its commit point on (a no-op where nobody reported one),
//!   then proposes new commands into further slots, up to `window` at once. A slot is chosen
//!   when a majority has accepted it in the leader's ballot; slots execute strictly in order.
//! - *Rejoining*: a server whose durable state may have lost records it had acknowledged (a
//!   damaged log tail, a lost disk) must not vote until it is safe again, because a promise or
//!   an accept it forgot may be the one that made a quorum. It learns from a majority of the
//!   others which incarnation they know it by and takes the next one; asks the leader to run
//!   phase 1 again in a new ballot whose Prepare carries that incarnation (so a promise its
//!   former self gave is not counted again: every Promise carries the acceptor's incarnation
//!   table, and a candidate ignores a promise from an older incarnation than it has heard of);
//!   then re-learns every slot up to the end of that phase 1 before it votes. docs/protocol.md
//!   argues why this is enough. Every server started on an empty data directory rejoins this
//!   way, since it cannot tell a lost disk from a new cluster: in a new cluster there is no
//!   leader, and a majority of the others, still *pristine* (nothing ever promised or
//!   accepted), record its incarnation instead.

use crate::ballot::{Ballot, NodeId, Slot};
use crate::config::{Config, ConfigError};
use crate::kv::{Applied, ClientId, Command, ErrorCode, KvStore, OpResult};
use crate::log::{Durable, Entry, Incarnations, Log, PersistOp, Snapshot, Value};
use crate::message::{Dest, Input, Message, Outgoing, Ready, SetTimer, TimerKind};
use crate::note::{LostWhy, Note};
use crate::watch::{Change, ChangeKind, History};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

mod catchup;
mod election;
mod execution;
mod reads;
mod rejoin;
mod replication;
mod requests;

use catchup::SnapshotIn;
use election::{Candidate, PreVoteRound};
use reads::{Read, Reads};
use rejoin::Rejoin;
use replication::Inflight;
use requests::Recent;

/// What a server is doing now. Serialized as its [`RoleKind::name`] (status reports).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoleKind {
    Follower,
    Candidate,
    Leader,
}

impl RoleKind {
    pub fn name(self) -> &'static str {
        match self {
            RoleKind::Follower => "follower",
            RoleKind::Candidate => "candidate",
            RoleKind::Leader => "leader",
        }
    }
}

impl std::fmt::Display for RoleKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug)]
struct Leader {
    ballot: Ballot,
    next_slot: Slot,
    /// Every slot in `commit..next_slot`, with who has accepted it.
    inflight: BTreeMap<Slot, Inflight>,
    /// What phase 1 found for the slots `next_slot..through`, in order, waiting for room in
    /// the window like new commands. A whole cluster restarted with thousands of slots since
    /// its last snapshot leaves all of them to re-propose; proposed at once they were one
    /// flush and one resend every `accept_resend` of the whole tail, which on real machines
    /// kept all three servers busy re-sending megabytes while nothing committed.
    reproposals: VecDeque<Value>,
    /// Commands waiting for room in the window.
    queue: VecDeque<Command>,
    /// The bytes of the commands in `queue` and of the gets in `reads` (bounded by
    /// [`crate::limits::MAX_QUEUED`]).
    queued_bytes: usize,
    /// Commands proposed or queued and not yet executed, so that a client's resend does not
    /// take a second slot. (A second slot would be harmless, as execution is at most once, but
    /// wasteful.)
    proposed: BTreeSet<(ClientId, u64)>,
    /// The incarnations this leader's phase 1 was run knowing.
    prepared_with: Incarnations,
    /// One past the highest slot any promise of its phase 1 reported: every value chosen in an
    /// earlier ballot lies before it.
    through: Slot,
    /// Gets waiting to be answered without the log (`Config::read_index`).
    reads: Reads,
    /// When this leadership began, and when each peer was last heard from: a leader that
    /// has not heard from a majority within an election timeout steps down (check-quorum),
    /// or a leader whose inbound path broke would keep followers loyal with its heartbeats
    /// while nothing commits.
    since: Duration,
    heard: BTreeMap<NodeId, Duration>,
    /// Check-quorum judges only after an election timeout from this: the start of the
    /// leadership, or the end of a stall of this server's own (see [`TimerKind::Heartbeat`]).
    judged_from: Duration,
    /// When the heartbeat timer last fired.
    last_tick: Duration,
    /// Slots below this were proposed before the last flush was taken: their writes here are
    /// durable before anything a later step sends leaves (see [`Server::flush_taken`]).
    flushed_below: Slot,
}

// One per server, so the size of the largest variant costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Role {
    Follower,
    Candidate(Candidate),
    Leader(Leader),
}

/// A running server's commit point, promise and store revision: each may only rise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    pub commit: Slot,
    pub promised: Ballot,
    pub revision: u64,
}

/// One Multi-Paxos server.
#[derive(Debug)]
pub struct Server {
    cfg: Config,
    /// Durable: the highest ballot promised.
    promised: Ballot,
    /// Durable: accepted entries from the snapshot point on.
    log: Log,
    /// The state machine with every slot before `commit` applied.
    kv: KvStore,
    /// Every slot before this is chosen and executed here.
    commit: Slot,
    role: Role,
    /// The server this one believes leads, if any.
    leader: Option<NodeId>,
    /// The ballot of the leader being followed: its values for slots below its commit point
    /// are the chosen ones.
    leader_ballot: Ballot,
    /// The highest commit point that leader has announced.
    leader_commit: Slot,
    /// The highest round seen anywhere, so the next election outbids it.
    max_round: u64,
    /// When the leader followed last spoke, or when this server last promised a candidate or
    /// heard that candidate ask again: the election timer waits an election timeout from it.
    last_leader_contact: Option<Duration>,
    /// The candidate this server promised and when that candidate last asked for a promise:
    /// while it asks, this server tells other would-be candidates no in their pre-votes, so a
    /// slow election (all of a 4-of-7 side must answer under loss) is not cut short by a duel.
    /// A candidate asks for at most an election timeout (plus while promises still arrive),
    /// then must pass a pre-vote itself, so a candidate that cannot hear holds nobody back
    /// for long.
    candidate_seen: Option<(NodeId, Duration)>,
    /// A pre-vote under way: the ballot it would bid and who said yes.
    prevote: Option<PreVoteRound>,
    catchup_armed: bool,
    /// Durable: what this server knows of every server's incarnation.
    incarnations: Incarnations,
    /// Set while this server may not vote because it may have forgotten what it promised or
    /// accepted.
    rejoin: Option<Rejoin>,
    /// The encoded snapshot this server hands out in pieces, and the slot it was taken before.
    /// Kept while the log still covers everything after it, so every receiver downloads the
    /// same bytes however long it takes and a new asker does not restart others' transfers.
    snapshot_out: Option<(Slot, Vec<u8>)>,
    snapshot_in: Option<SnapshotIn>,
    /// Bytes of commands executed since the last snapshot (see
    /// [`Config::snapshot_log_percent`]).
    since_snapshot: u64,
    /// Requests seen while not leading, for a quick takeover (see `on_request`).
    recent: Recent,
    /// The encoded copy handed out to a client for a backup (`Op::SnapshotPiece`), and the
    /// slot it was taken before. Apart from `snapshot_out`, so that a backup and a peer's
    /// catch-up do not restart each other's transfers; kept after its last piece, so that a
    /// late resend of that request costs a copy of a piece, not a new encoding of the state.
    backup_out: Option<(Slot, Vec<u8>)>,
    /// Recent changes, for watchers that missed events ([`crate::watch`]).
    history: History,
    ready: Ready,
}

impl Server {
    /// A fresh server with nothing promised or accepted.
    pub fn new(cfg: Config) -> Result<Self, ConfigError> {
        let durable = Durable::new(cfg.max_sessions);
        Self::recover(cfg, durable)
    }

    /// A server restarted from what it had made durable before it stopped.
    pub fn recover(cfg: Config, durable: Durable) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let Durable {
            promised,
            log,
            snapshot,
            incarnations,
            rejoining,
        } = durable;
        #[cfg(feature = "mutations")]
        let rejoining = rejoining && cfg.mutation != Some(crate::config::Mutation::TrustLostState);
        let max_round = log
            .iter_from(0)
            .map(|(_, e)| e.ballot)
            .filter(|b| *b != Ballot::CHOSEN)
            .map(|b| b.round)
            .fold(promised.round, u64::max);
        let history = History::new(snapshot.kv.revision(), cfg.history_bytes);
        let mut snapshot = snapshot;
        snapshot.kv.set_quota(cfg.max_store_bytes);
        let mut s = Server {
            cfg,
            promised,
            log,
            kv: snapshot.kv,
            commit: snapshot.next_slot,
            role: Role::Follower,
            leader: None,
            leader_ballot: Ballot::ZERO,
            leader_commit: 0,
            max_round,
            last_leader_contact: None,
            candidate_seen: None,
            prevote: None,
            catchup_armed: false,
            incarnations,
            rejoin: rejoining.then(|| Rejoin::Query {
                answers: BTreeMap::new(),
            }),
            snapshot_out: None,
            snapshot_in: None,
            since_snapshot: 0,
            recent: Recent::default(),
            backup_out: None,
            history,
            ready: Ready::default(),
        };
        // Entries learned as chosen before the crash can be executed again straight away.
        while let Some(e) = s.log.get(s.commit).filter(|e| e.ballot == Ballot::CHOSEN) {
            let value = e.value.clone();
            s.execute(s.commit, &value);
            s.commit += 1;
        }
        s.ready = Ready::default();
        Ok(s)
    }

    /// Call once after construction: arms the election timer, and starts rejoining if the
    /// durable state says this server may have lost acknowledged records.
    pub fn start(&mut self, _now: Duration) -> Ready {
        self.arm_election_timer(self.cfg.election_timeout);
        if self.rejoin.is_some() {
            // Durable first, so a crash during the rejoin resumes it instead of voting.
            self.persist(PersistOp::Rejoining(true));
            self.ready.notes.push(Note::RejoinStarted {
                incarnation: self.incarnation(),
            });
            if self.cfg.servers == 1 {
                // Nobody to re-learn from: the lone server's state is the whole truth.
                self.finish_rejoin();
                self.ready.notes.push(Note::RejoinFinished {
                    incarnation: self.incarnation(),
                    commit: self.commit,
                });
            } else {
                self.send_after(Dest::AllServers, Message::RejoinQuery);
                self.set_timer(
                    TimerKind::RejoinResend,
                    self.cfg.prepare_resend,
                    Duration::ZERO,
                );
            }
        }
        std::mem::take(&mut self.ready)
    }

    /// Feeds one input at time `now` (any monotonic clock; only differences matter).
    pub fn step(&mut self, now: Duration, input: Input) -> Ready {
        let before = self.seen();
        let timer = matches!(input, Input::Timer(_));
        match input {
            Input::Message { from, msg } => self.on_message(now, from, msg),
            Input::Request(cmd) => self.on_request(now, cmd),
            Input::Timer(kind) => self.on_timer(now, kind),
            Input::PeerOffline(id) => self.on_peer_offline(id),
        }
        if matches!(self.rejoin, Some(Rejoin::CatchUp { through }) if self.commit >= through) {
            self.finish_rejoin();
        }
        self.check_invariants();
        self.note_changes(before, timer);
        std::mem::take(&mut self.ready)
    }

    /// What the notes of a step are worked out from: the role (with its ballot while
    /// standing or leading), the leader followed and whether it is rejoining.
    fn seen(&self) -> (RoleKind, Ballot, Option<NodeId>, bool) {
        let ballot = match &self.role {
            Role::Candidate(c) => c.ballot,
            Role::Leader(l) => l.ballot,
            Role::Follower => self.promised,
        };
        (self.role(), ballot, self.leader(), self.rejoin.is_some())
    }

    /// Notes what a step changed, from the state before and after it rather than inside each
    /// handler, so no transition can be missed. A leader or candidate that loses its role on
    /// a timer lost it for want of a majority; on a message, to a higher ballot.
    fn note_changes(&mut self, before: (RoleKind, Ballot, Option<NodeId>, bool), timer: bool) {
        let (role0, ballot0, leader0, rejoining0) = before;
        let (role1, ballot1, leader1, rejoining1) = self.seen();
        let why = if timer {
            LostWhy::NoMajority
        } else {
            LostWhy::HigherBallot
        };
        let mut notes = Vec::new();
        match (role0, role1) {
            (RoleKind::Candidate, RoleKind::Candidate) if ballot0 != ballot1 => {
                notes.push(Note::ElectionLost {
                    ballot: ballot0,
                    why,
                });
                notes.push(Note::ElectionStarted { ballot: ballot1 });
            }
            (RoleKind::Candidate, RoleKind::Leader) => {
                notes.push(Note::ElectionWon { ballot: ballot1 })
            }
            (RoleKind::Candidate, RoleKind::Follower) => notes.push(Note::ElectionLost {
                ballot: ballot0,
                why,
            }),
            (RoleKind::Leader, RoleKind::Leader) => {}
            (RoleKind::Leader, _) => notes.push(Note::SteppedDown {
                ballot: ballot0,
                why,
            }),
            (RoleKind::Follower, RoleKind::Leader) => {
                // A lone server's election is won within the step that starts it.
                notes.push(Note::ElectionStarted { ballot: ballot1 });
                notes.push(Note::ElectionWon { ballot: ballot1 });
            }
            (_, RoleKind::Candidate) if role0 != RoleKind::Candidate => {
                notes.push(Note::ElectionStarted { ballot: ballot1 })
            }
            _ => {}
        }
        if leader0 != leader1 && !(role1 == RoleKind::Leader && role0 != RoleKind::Leader) {
            // (Winning an election says who leads already.)
            notes.push(Note::LeaderChanged {
                leader: leader1,
                ballot: ballot1,
            });
        }
        if rejoining0 && !rejoining1 {
            notes.push(Note::RejoinFinished {
                incarnation: self.incarnation(),
                commit: self.commit,
            });
        }
        self.ready.notes.extend(notes);
    }

    /// Until when, on the caller's clock, this server knows itself part of a quorum that can
    /// commit: a leader until an election timeout after the last time it had heard from a
    /// majority (itself included; its election counts as hearing from the majority that
    /// promised), a follower until an election timeout after its leader last spoke (a leader
    /// that loses its majority steps down and stops speaking). `None` while it stands for
    /// election, knows no leader or is rejoining. Pure: the caller compares it with its clock.
    pub fn quorum_until(&self) -> Option<Duration> {
        if self.rejoin.is_some() {
            return None;
        }
        let window = self.cfg.election_timeout;
        match &self.role {
            Role::Candidate(_) => None,
            Role::Follower => {
                self.leader?;
                self.last_leader_contact.map(|t| t.saturating_add(window))
            }
            Role::Leader(l) => {
                let others = self.cfg.quorum().saturating_sub(1);
                if others == 0 {
                    return Some(Duration::MAX);
                }
                let mut heard: Vec<Duration> = l.heard.values().copied().collect();
                heard.sort_unstable_by(|a, b| b.cmp(a));
                // The others-th most recent peer heard from, at best; never before the
                // election that made it leader.
                let at = heard
                    .get(others - 1)
                    .copied()
                    .unwrap_or(l.since)
                    .max(l.since);
                Some(at.saturating_add(window))
            }
        }
    }

    // ----- accessors for status, metrics and tests -----

    pub fn id(&self) -> NodeId {
        self.cfg.id
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn role(&self) -> RoleKind {
        match self.role {
            Role::Follower => RoleKind::Follower,
            Role::Candidate(_) => RoleKind::Candidate,
            Role::Leader(_) => RoleKind::Leader,
        }
    }

    /// The highest ballot promised.
    pub fn ballot(&self) -> Ballot {
        self.promised
    }

    /// Who this server believes leads.
    pub fn leader(&self) -> Option<NodeId> {
        match self.role {
            Role::Leader(_) => Some(self.cfg.id),
            _ => self.leader,
        }
    }

    /// Every slot before this is known chosen.
    pub fn commit(&self) -> Slot {
        self.commit
    }

    /// Every slot before this is executed. Chosen slots are executed as soon as they are
    /// known, so this equals [`Server::commit`] between steps.
    pub fn executed(&self) -> Slot {
        self.commit
    }

    pub fn kv(&self) -> &KvStore {
        &self.kv
    }

    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Whether this server is rejoining after losing durable state (and so does not vote).
    pub fn rejoining(&self) -> bool {
        self.rejoin.is_some()
    }

    /// This server's incarnation: how many times it has rejoined after losing state.
    pub fn incarnation(&self) -> u64 {
        self.incarnation_of(self.cfg.id)
    }

    /// What may only move forward while a server runs ([`Server::check_progress`]).
    pub fn progress(&self) -> Progress {
        Progress {
            commit: self.commit,
            promised: self.promised,
            revision: self.kv.revision(),
        }
    }

    /// The invariants that span steps, for whoever drives the core to check after every step
    /// (the simulator does, on every step of every run; those within one step are asserted
    /// by the step itself, `check_invariants`): `Some(what)` names the first one broken.
    /// `before` is [`Server::progress`] before the step.
    ///
    /// - the commit point, the promised ballot and the store's revision never go back;
    /// - the change history ends at the store's revision and starts at or below it.
    pub fn check_progress(&self, before: Progress) -> Option<String> {
        let now = self.progress();
        if now.commit < before.commit {
            return Some(format!(
                "commit went back from {} to {}",
                before.commit, now.commit
            ));
        }
        if now.promised < before.promised {
            return Some(format!(
                "the promise went back from {:?} to {:?}",
                before.promised, now.promised
            ));
        }
        if now.revision < before.revision {
            return Some(format!(
                "the store's revision went back from {} to {}",
                before.revision, now.revision
            ));
        }
        if self.history.floor() > now.revision {
            return Some(format!(
                "the change history starts after the store's revision {}",
                now.revision
            ));
        }
        if let Some(last) = self.history.iter().next_back() {
            if last.revision != now.revision {
                return Some(format!(
                    "the change history ends at {}, the store at {}",
                    last.revision, now.revision
                ));
            }
        }
        None
    }

    /// Commands waiting for room in the leader's window.
    pub fn queued(&self) -> usize {
        match &self.role {
            Role::Leader(l) => l.queue.len(),
            _ => 0,
        }
    }

    // ----- inputs -----

    fn on_message(&mut self, now: Duration, from: NodeId, msg: Message) {
        if from == self.cfg.id || from == 0 || from > self.cfg.servers {
            // Not a configured peer: a misrouted or forged message must not vote.
            return;
        }
        if msg_ballot(&msg).is_some_and(|b| b.round > Ballot::MAX_ROUND) {
            // No honest server gets near this round; a ballot this high would leave no room
            // to outbid it (`max_round + 1` must never wrap).
            return;
        }
        if let Role::Leader(l) = &mut self.role {
            l.heard.insert(from, now);
        }
        match msg {
            Message::Prepare {
                ballot,
                from: slot,
                incarnations,
            } => self.on_prepare(now, from, ballot, slot, incarnations),
            Message::Promise {
                ballot,
                from: first,
                accepted,
                more,
                incarnations,
            } => self.on_promise(now, from, ballot, first, accepted, more, incarnations),
            Message::Accept {
                ballot,
                first,
                values,
                commit,
            } => self.on_accept(now, from, ballot, first, values, commit),
            Message::Accepted {
                ballot,
                first,
                count,
            } => self.on_accepted(now, from, ballot, first, count),
            Message::Nack { ballot, promised } => self.on_nack(now, ballot, promised),
            Message::Heartbeat { ballot, commit } => {
                if self.follow(now, from, ballot) {
                    self.learn_commit(commit);
                    // "I hear you": an idle leader hears nothing else from its followers, and
                    // without it would step down for want of a quorum (check-quorum).
                    self.send_now(Dest::Server(from), Message::HeartbeatAck { ballot });
                }
            }
            Message::ReadIndex { ballot, round } => self.on_read_index(now, from, ballot, round),
            Message::ReadAck { ballot, round } => self.on_read_ack(from, ballot, round),
            Message::CatchUp { from: slot } => self.on_catchup(from, slot),
            Message::Chosen { first, values } => self.on_chosen(first, values),
            Message::SnapshotChunk {
                next_slot,
                offset,
                total,
                data,
            } => self.on_snapshot_chunk(from, next_slot, offset, total, data),
            Message::SnapshotFetch { next_slot, offset } => {
                self.on_snapshot_fetch(from, next_slot, offset)
            }
            Message::RejoinQuery => {
                let incarnation = self.incarnation_of(from);
                self.send_now(Dest::Server(from), Message::RejoinInfo { incarnation });
            }
            Message::RejoinInfo { incarnation } => self.on_rejoin_info(from, incarnation),
            Message::Rejoin { incarnation } => self.on_rejoin(now, from, incarnation),
            Message::Rejoined {
                incarnation,
                ballot,
                through,
            } => self.on_rejoined(now, from, incarnation, ballot, through),
            // Heard (above): that is all it is for.
            Message::HeartbeatAck { .. } => {}
            Message::PreVote { ballot } => self.on_prevote(now, from, ballot),
            Message::PreVoteAck { ballot, promised } => {
                self.on_prevote_ack(now, from, ballot, promised)
            }
            // Clients' traffic never arrives as a peer message.
            Message::Request(_) | Message::Reply { .. } | Message::Replies(_) => {}
        }
    }

    fn on_timer(&mut self, now: Duration, kind: TimerKind) {
        match kind {
            TimerKind::Election => self.on_election_timer(now),
            TimerKind::Heartbeat => {
                if let Role::Leader(l) = &mut self.role {
                    if now.saturating_sub(l.last_tick) > self.cfg.election_timeout / 2 {
                        // The tick comes far later than it was asked for: this server itself
                        // stood still (a long sync, a snapshot written whole, a paused
                        // process), and the others could not answer what it did not send.
                        // Judge them an election timeout from now, not for its own silence.
                        l.judged_from = now;
                    }
                    l.last_tick = now;
                }
                if self.lost_quorum(now) {
                    self.step_down(now);
                    return;
                }
                if let Role::Leader(l) = &self.role {
                    let msg = Message::Heartbeat {
                        ballot: l.ballot,
                        commit: self.commit,
                    };
                    self.send_now(Dest::AllServers, msg);
                    self.set_timer(TimerKind::Heartbeat, self.cfg.heartbeat, Duration::ZERO);
                }
            }
            TimerKind::PrepareResend => {
                if let (Role::Follower, Some(p)) = (&self.role, &self.prevote) {
                    // Only to those that have not said yes; one that was busy may not be now.
                    let ask: Vec<NodeId> = self.peers().filter(|q| !p.yes.contains(q)).collect();
                    let ballot = p.ballot;
                    for q in ask {
                        self.send_now(Dest::Server(q), Message::PreVote { ballot });
                    }
                    self.set_timer(
                        TimerKind::PrepareResend,
                        self.cfg.prepare_resend,
                        Duration::ZERO,
                    );
                }
                if let Role::Candidate(c) = &self.role {
                    // Servers whose promise is in parts are asked from where they stopped.
                    let missing: Vec<(NodeId, Message)> = self
                        .peers()
                        .filter(|p| !c.promises.contains_key(p))
                        .map(|p| {
                            let from = c
                                .partial
                                .get(&p)
                                .and_then(|part| part.reach(self.commit))
                                .unwrap_or(self.commit);
                            let msg = Message::Prepare {
                                ballot: c.ballot,
                                from,
                                incarnations: c.incarnations.clone(),
                            };
                            (p, msg)
                        })
                        .collect();
                    for (p, msg) in missing {
                        self.send_now(Dest::Server(p), msg);
                    }
                    self.set_timer(
                        TimerKind::PrepareResend,
                        self.cfg.prepare_resend,
                        Duration::ZERO,
                    );
                }
            }
            TimerKind::AcceptResend => self.resend_accepts(now),
            TimerKind::RejoinResend => {
                let msg = match &self.rejoin {
                    None | Some(Rejoin::CatchUp { .. }) => return,
                    Some(Rejoin::Query { .. }) => Message::RejoinQuery,
                    Some(Rejoin::Announce { .. }) => Message::Rejoin {
                        incarnation: self.incarnation(),
                    },
                };
                self.send_now(Dest::AllServers, msg);
                self.set_timer(
                    TimerKind::RejoinResend,
                    self.cfg.prepare_resend,
                    Duration::ZERO,
                );
            }
            TimerKind::CatchUpResend => {
                self.catchup_armed = false;
                if self.resend_snapshot_fetch() {
                    return;
                }
                if self.commit < self.leader_commit && !matches!(self.role, Role::Leader(_)) {
                    if let Some(leader) = self.leader {
                        self.send_now(Dest::Server(leader), Message::CatchUp { from: self.commit });
                        self.arm_catchup();
                    }
                }
            }
        }
    }

    /// The broker published server `id`'s last will. If it led us, waiting out the election
    /// timeout would only add downtime: stand within a jitter (so that the followers, who
    /// all see the will at once, rarely duel). Nothing else changes: if the will is stale
    /// and the leader still leads, its heartbeats keep the others from promising (they only
    /// forget a leader on its will too), and at worst one election moves the lead.
    fn on_peer_offline(&mut self, id: NodeId) {
        if self.candidate_seen.is_some_and(|(c, _)| c == id) {
            // The candidate it waits for is gone: its pre-vote answer need not wait for it.
            self.candidate_seen = None;
        }
        if id == self.cfg.id || self.leader != Some(id) || !matches!(self.role, Role::Follower) {
            return;
        }
        self.leader = None;
        self.last_leader_contact = None;
        self.set_timer(TimerKind::Election, Duration::ZERO, self.cfg.heartbeat / 2);
    }

    fn peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        (1..=self.cfg.servers).filter(move |p| *p != self.cfg.id)
    }

    fn leader_is_alive(&self, now: Duration) -> bool {
        match self.role {
            Role::Leader(_) => true,
            Role::Candidate(_) => false,
            Role::Follower => {
                self.leader.is_some()
                    && self
                        .last_leader_contact
                        .is_some_and(|t| now < t + self.cfg.election_timeout)
            }
        }
    }

    fn arm_election_timer(&mut self, after: Duration) {
        self.set_timer(TimerKind::Election, after, self.cfg.election_timeout);
    }

    fn arm_catchup(&mut self) {
        if !self.catchup_armed {
            self.catchup_armed = true;
            self.set_timer(
                TimerKind::CatchUpResend,
                self.cfg.catchup_resend,
                Duration::ZERO,
            );
        }
    }

    fn set_timer(&mut self, kind: TimerKind, after: Duration, jitter: Duration) {
        self.ready.timers.push(SetTimer {
            kind,
            after,
            jitter,
        });
    }

    fn send_now(&mut self, to: Dest, msg: Message) {
        self.ready.send_now.push(Outgoing { to, msg });
    }

    /// The driver took a flush: the writes of every step so far are in it, and the caller
    /// makes them durable before it carries out any later flush. So what a later step sends
    /// may vouch for them without waiting for that later flush's own sync.
    pub fn flush_taken(&mut self) {
        if let Role::Leader(l) = &mut self.role {
            l.flushed_below = l.next_slot;
        }
    }

    /// A reply that does not come from executing a slot now: it still waits for the sync.
    fn send_reply(&mut self, to: Dest, msg: Message) {
        #[cfg(feature = "mutations")]
        if self.cfg.mutated(crate::config::Mutation::ReplyBeforeSync) {
            self.send_now(to, msg);
            return;
        }
        self.send_after(to, msg);
    }

    fn send_after(&mut self, to: Dest, msg: Message) {
        self.ready.send_after.push(Outgoing { to, msg });
    }

    /// Accepts `entry` at `slot` here: in the log now, durable before what depends on it.
    fn store(&mut self, slot: Slot, entry: Entry) {
        self.log.insert(slot, entry.clone());
        self.persist(PersistOp::Accept { slot, entry });
    }

    fn persist(&mut self, op: PersistOp) {
        self.ready.persist.push(op);
    }

    fn check_invariants(&self) {
        assert!(
            self.rejoin.is_none() || matches!(self.role, Role::Follower),
            "a server that may have forgotten its votes neither campaigns nor leads"
        );
        assert!(
            self.log.start() <= self.commit,
            "the snapshot never runs ahead of execution"
        );
        if let Role::Leader(l) = &self.role {
            assert_eq!(
                l.ballot, self.promised,
                "a leader leads in the ballot it promised"
            );
            assert_eq!(
                l.inflight.len() as u64,
                l.next_slot - self.commit,
                "a leader tracks every slot it has not yet seen chosen"
            );
            // What bounds one flush and one resend: no step may put more in flight.
            assert!(
                l.inflight.len() <= self.cfg.window,
                "a leader has at most a window of slots in flight"
            );
            assert_eq!(
                l.next_slot + l.reproposals.len() as u64,
                l.through.max(l.next_slot),
                "the slots still to re-propose are the ones up to what phase 1 found"
            );
        }
    }
}

/// The ballot a peer message is fought in, if it carries one.
fn msg_ballot(msg: &Message) -> Option<Ballot> {
    match msg {
        Message::Prepare { ballot, .. }
        | Message::Promise { ballot, .. }
        | Message::Accept { ballot, .. }
        | Message::Accepted { ballot, .. }
        | Message::Heartbeat { ballot, .. }
        | Message::ReadIndex { ballot, .. }
        | Message::ReadAck { ballot, .. }
        | Message::HeartbeatAck { ballot }
        | Message::PreVote { ballot }
        | Message::Rejoined { ballot, .. } => Some(*ballot),
        Message::Nack { ballot, promised } | Message::PreVoteAck { ballot, promised } => {
            Some((*ballot).max(*promised))
        }
        _ => None,
    }
}
