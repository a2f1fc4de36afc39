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

/// What a server is doing now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

#[derive(Debug)]
struct Candidate {
    ballot: Ballot,
    /// The incarnations this ballot's Prepare carries (fixed for the ballot, so every promise
    /// for it was made knowing them).
    incarnations: Incarnations,
    /// What each server that promised reported as accepted, with the incarnation it promised
    /// in.
    promises: BTreeMap<NodeId, (u64, Vec<(Slot, Entry)>)>,
    /// Promises still arriving in parts: what each server reported so far, and which ranges
    /// of slots the parts in so far cover (`from` → end; `None`: to the end of its log).
    partial: BTreeMap<NodeId, Partial>,
    /// When the last part of a promise arrived: an election whose promises are still coming
    /// in is not abandoned at its timeout, or with large promises on a lossy network every
    /// ballot would start over before its parts were in.
    progress: Option<Duration>,
}

/// A pre-vote under way ([`Message::PreVote`]).
#[derive(Debug)]
struct PreVoteRound {
    ballot: Ballot,
    yes: BTreeSet<NodeId>,
}

/// One part of a promise as sent: the slot it starts at, the entries, where the next starts.
type PromisePart = (Slot, Vec<(Slot, Entry)>, Option<Slot>);

/// A promise in parts, as far as it has arrived.
#[derive(Debug, Default)]
struct Partial {
    entries: BTreeMap<Slot, Entry>,
    ranges: BTreeMap<Slot, Option<Slot>>,
}

impl Partial {
    /// How far the parts cover without a gap from `base` on: `None` if to the end (the
    /// promise is whole), else the first slot not covered.
    fn reach(&self, base: Slot) -> Option<Slot> {
        let mut reach = base;
        for (from, end) in &self.ranges {
            if *from > reach {
                break;
            }
            match end {
                None => return None,
                Some(e) => reach = reach.max(*e),
            }
        }
        Some(reach)
    }
}

/// A snapshot being received in pieces.
#[derive(Debug)]
struct SnapshotIn {
    next_slot: Slot,
    total: u64,
    from: NodeId,
    data: Vec<u8>,
    /// Resends of the current fetch without an answer; past a few the transfer is dropped, so
    /// a sender that died mid-way does not hold the receiver forever.
    stalls: u32,
}

#[derive(Debug)]
struct Inflight {
    value: Value,
    acks: BTreeSet<NodeId>,
    sent_at: Duration,
}

impl Inflight {
    /// Just proposed by leader `me`, whose own acceptance counts at once.
    fn proposed(value: Value, me: NodeId, now: Duration) -> Self {
        Inflight {
            value,
            acks: BTreeSet::from([me]),
            sent_at: now,
        }
    }
}

#[derive(Debug)]
struct Leader {
    ballot: Ballot,
    next_slot: Slot,
    /// Every slot in `commit..next_slot`, with who has accepted it.
    inflight: BTreeMap<Slot, Inflight>,
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
}

/// A leader's gets in waiting. Each needs (1) a majority to confirm, in a round that started
/// after the get arrived, that this leader still leads, and (2) execution up to the commit
/// point it saw on arrival; then it is answered from the state machine.
#[derive(Debug, Default)]
struct Reads {
    waiting: Vec<Read>,
    /// The latest round started, and who has confirmed it (the leader itself included).
    round: u64,
    acks: BTreeSet<NodeId>,
    /// The latest round a majority confirmed.
    confirmed: u64,
}

#[derive(Debug)]
struct Read {
    cmd: Command,
    /// Everything chosen before the get arrived lies before this slot.
    index: Slot,
    /// The first round that started after it arrived.
    round: u64,
}

/// Where a rejoining server is in getting back to voting.
#[derive(Debug)]
enum Rejoin {
    /// Asking the others which incarnation they know it by.
    Query { answers: BTreeMap<NodeId, u64> },
    /// Waiting for a leader whose phase 1 was run knowing its new incarnation, or for a
    /// majority of the others to have recorded that incarnation while still *pristine*
    /// (never promised, accepted or executed anything: a new cluster, where there is no
    /// leader to ask). Those acknowledgements are collected here.
    Announce { pristine: BTreeSet<NodeId> },
    /// Re-learning the chosen slots before `through`.
    CatchUp { through: Slot },
}

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

/// The requests a server that does not lead received lately, bounded in count and bytes and
/// forgotten after an election timeout: a new leader proposes them at once.
#[derive(Debug, Default)]
struct Recent {
    commands: VecDeque<(Duration, Command)>,
    bytes: usize,
}

impl Recent {
    const MAX_COMMANDS: usize = 1024;
    const MAX_BYTES: usize = 4 << 20;

    fn keep(&mut self, now: Duration, cmd: Command, ttl: Duration) {
        if crate::limits::check_command(&cmd).is_some() {
            return;
        }
        self.expire(now, ttl);
        self.bytes += crate::limits::command_size(&cmd);
        self.commands.push_back((now, cmd));
        while self.commands.len() > Self::MAX_COMMANDS || self.bytes > Self::MAX_BYTES {
            self.pop();
        }
    }

    fn take(&mut self, now: Duration, ttl: Duration) -> Vec<Command> {
        self.expire(now, ttl);
        self.bytes = 0;
        self.commands.drain(..).map(|(_, c)| c).collect()
    }

    fn expire(&mut self, now: Duration, ttl: Duration) {
        while self
            .commands
            .front()
            .is_some_and(|(at, _)| now.saturating_sub(*at) > ttl)
        {
            self.pop();
        }
    }

    fn pop(&mut self) {
        if let Some((_, c)) = self.commands.pop_front() {
            self.bytes = self.bytes.saturating_sub(crate::limits::command_size(&c));
        }
    }
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
            Message::Request(_) | Message::Reply { .. } => {}
        }
    }

    fn on_timer(&mut self, now: Duration, kind: TimerKind) {
        match kind {
            TimerKind::Election => self.on_election_timer(now),
            TimerKind::Heartbeat => {
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

    /// A client's command. Only the leader acts on it; every server receives it, so whichever
    /// leads answers. Others keep the latest for a while: if they are elected soon, they
    /// propose them, so a client whose leader died is answered without waiting to resend.
    fn on_request(&mut self, now: Duration, cmd: Command) {
        let Role::Leader(l) = &mut self.role else {
            self.recent.keep(now, cmd, self.cfg.election_timeout);
            return;
        };
        if let Some(refusal) = crate::limits::check_command(&cmd) {
            if crate::limits::client_id_problem(&cmd.client).is_none() {
                let msg = Message::Reply {
                    client: cmd.client.clone(),
                    seq: cmd.seq,
                    result: refusal,
                };
                self.send_reply(Dest::Client(cmd.client), msg);
            }
            // A client id that is no valid topic cannot be answered at all: dropped.
            return;
        }
        // Reads change nothing, so they need no at-most-once bookkeeping: a read under an id
        // whose last command was a write must not be answered with that write's result.
        let last_seq = if cmd.op.is_read() {
            None
        } else {
            self.kv.last_seq(&cmd.client)
        };
        match last_seq {
            Some(last) if cmd.seq < last => return,
            Some(last) if cmd.seq == last => {
                // Executed already: the reply was lost, so send the remembered result again.
                if let Some(result) = self.kv.cached(&cmd.client, cmd.seq) {
                    let msg = Message::Reply {
                        client: cmd.client.clone(),
                        seq: cmd.seq,
                        result: result.clone(),
                    };
                    // After the sync: the result may come from a slot this very group
                    // committed, which (with a quorum of one) is not yet durable anywhere.
                    self.send_reply(Dest::Client(cmd.client), msg);
                }
                return;
            }
            _ => {}
        }
        if l.proposed.contains(&(cmd.client.clone(), cmd.seq)) {
            return;
        }
        let size = crate::limits::command_size(&cmd);
        if l.queued_bytes + size > crate::limits::MAX_QUEUED {
            // Back-pressure in bytes: the queue, not the clients, decides how much memory a
            // leader holds.
            let msg = Message::Reply {
                client: cmd.client.clone(),
                seq: cmd.seq,
                result: OpResult::Rejected {
                    code: ErrorCode::Busy,
                    message: format!(
                        "the leader holds {} bytes of waiting commands; retry later",
                        l.queued_bytes
                    ),
                },
            };
            self.send_reply(Dest::Client(cmd.client), msg);
            return;
        }
        l.proposed.insert((cmd.client.clone(), cmd.seq));
        l.queued_bytes += size;
        // A backup copy is always taken at a quorum-confirmed commit point, whatever
        // `read_index` says: it must not go through the log (it would be a slot holding the
        // whole state's worth of reply on every replica).
        let read = matches!(
            cmd.op,
            crate::kv::Op::SnapshotPiece { .. } | crate::kv::Op::Changes { .. }
        ) || (self.cfg.read_index && cmd.op.is_read());
        if read {
            // A later round, not one already under way: that one may have been confirmed by
            // followers before the get arrived, and so prove nothing about now.
            let read = Read {
                cmd,
                index: self.commit.max(l.through),
                round: l.reads.round + {
                    #[cfg(feature = "mutations")]
                    let next = u64::from(
                        !self
                            .cfg
                            .mutated(crate::config::Mutation::ReadJoinsRunningRound),
                    );
                    #[cfg(not(feature = "mutations"))]
                    let next = 1;
                    next
                },
            };
            l.reads.waiting.push(read);
            if l.reads.confirmed == l.reads.round {
                self.start_read_round();
            }
            self.serve_reads();
            return;
        }
        l.queue.push_back(cmd);
        self.propose_queued(now);
    }

    // ----- reads without the log -----

    fn start_read_round(&mut self) {
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        l.reads.round += 1;
        l.reads.acks = BTreeSet::from([self.cfg.id]);
        let msg = Message::ReadIndex {
            ballot: l.ballot,
            round: l.reads.round,
        };
        self.send_now(Dest::AllServers, msg);
        self.confirm_reads(self.cfg.id);
    }

    fn on_read_index(&mut self, now: Duration, from: NodeId, ballot: Ballot, round: u64) {
        // A rejoining server may have forgotten a higher promise, so its word is worthless.
        if self.rejoin.is_some() || !self.follow(now, from, ballot) {
            return;
        }
        // After any promise `follow` made durable.
        self.send_after(Dest::Server(from), Message::ReadAck { ballot, round });
    }

    /// Counts `from`'s confirmation of the current read round.
    fn confirm_reads(&mut self, from: NodeId) {
        let quorum = self.cfg.quorum();
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        l.reads.acks.insert(from);
        if l.reads.acks.len() < quorum || l.reads.confirmed == l.reads.round {
            return;
        }
        l.reads.confirmed = l.reads.round;
        let more = l.reads.waiting.iter().any(|r| r.round > l.reads.confirmed);
        self.serve_reads();
        if more {
            self.start_read_round();
        }
    }

    fn on_read_ack(&mut self, from: NodeId, ballot: Ballot, round: u64) {
        match &self.role {
            Role::Leader(l) if l.ballot == ballot && l.reads.round == round => {}
            // For another ballot or an earlier round: it proves nothing about this one.
            _ => return,
        }
        self.confirm_reads(from);
    }

    /// Answers every get whose round is confirmed and whose index is executed.
    fn serve_reads(&mut self) {
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        if l.reads.waiting.is_empty() {
            // Called on every commit: nothing to sort through without gets waiting.
            return;
        }
        #[cfg(feature = "mutations")]
        let unconfirmed = self.cfg.mutation == Some(crate::config::Mutation::ReadWithoutQuorum);
        #[cfg(not(feature = "mutations"))]
        let unconfirmed = false;
        let (confirmed, commit) = (l.reads.confirmed, self.commit);
        let (ready, waiting): (Vec<Read>, Vec<Read>) = std::mem::take(&mut l.reads.waiting)
            .into_iter()
            .partition(|r| unconfirmed || (r.round <= confirmed && r.index <= commit));
        l.reads.waiting = waiting;
        for r in &ready {
            l.proposed.remove(&(r.cmd.client.clone(), r.cmd.seq));
            l.queued_bytes = l
                .queued_bytes
                .saturating_sub(crate::limits::command_size(&r.cmd));
        }
        for r in ready {
            let result = match &r.cmd.op {
                crate::kv::Op::SnapshotPiece { at, offset } => self.backup_piece(*at, *offset),
                crate::kv::Op::Changes { key, prefix, from } => {
                    self.changes_since(key, *prefix, *from)
                }
                op => match self.kv.read(op) {
                    Some(result) => result,
                    None => continue,
                },
            };
            let msg = Message::Reply {
                client: r.cmd.client.clone(),
                seq: r.cmd.seq,
                result,
            };
            // After the sync: the state read may include writes this group committed, which
            // with a quorum of one are durable nowhere until then.
            self.send_reply(Dest::Client(r.cmd.client), msg);
        }
    }

    /// The piece at `offset` of the backup copy taken before slot `at`, or, if that copy is
    /// not the one held (`at: None`, another leader took it, another backup replaced it), the
    /// first piece of a new copy taken now. Called only once a read round confirmed this
    /// server still leads and the commit point is at least where it was when the request
    /// came, so a new copy holds every write acknowledged before the request.
    fn backup_piece(&mut self, at: Option<Slot>, offset: u64) -> OpResult {
        let held = matches!(&self.backup_out, Some((slot, _)) if Some(*slot) == at);
        let offset = if held {
            offset
        } else {
            let snapshot = self.snapshot_now();
            match crate::encode_snapshot(&snapshot) {
                Some(bytes) => self.backup_out = Some((snapshot.next_slot, bytes)),
                None => {
                    return OpResult::Rejected {
                        code: ErrorCode::Busy,
                        message: "the state could not be encoded; retry later".into(),
                    }
                }
            }
            0
        };
        let Some((next_slot, bytes)) = &self.backup_out else {
            return OpResult::Done;
        };
        // An offset past the end is the client's mistake: the copy from its start again.
        let start = usize::try_from(offset)
            .ok()
            .filter(|o| *o <= bytes.len())
            .unwrap_or(0);
        let end = bytes.len().min(start + self.cfg.snapshot_chunk);
        OpResult::SnapshotPiece {
            next_slot: *next_slot,
            offset: start as u64,
            total: bytes.len() as u64,
            data: bytes[start..end].to_vec(),
        }
    }

    // ----- phase 1 -----

    fn on_election_timer(&mut self, now: Duration) {
        if self.rejoin.is_some() {
            // It may not vote, so it may not lead either; look again later.
            self.arm_election_timer(self.cfg.election_timeout);
            return;
        }
        match &self.role {
            Role::Leader(_) => {}
            Role::Candidate(Candidate {
                progress: Some(t), ..
            }) if now < *t + self.cfg.election_timeout => {
                // Parts of promises are still arriving: give them time.
                let left = *t + self.cfg.election_timeout - now;
                self.arm_election_timer(left);
            }
            Role::Candidate(_) => self.start_prevote(now),
            Role::Follower => match self.last_leader_contact {
                Some(t) if now < t + self.cfg.election_timeout => {
                    let left = t + self.cfg.election_timeout - now;
                    self.arm_election_timer(left);
                }
                _ => self.start_prevote(now),
            },
        }
    }

    /// Asks the others whether they would promise before bidding: only a server that a
    /// majority can hear, and that knows of no live leader or candidate, raises ballots.
    /// Without it a server that can send but not hear (a deaf ex-leader, a one-way link)
    /// bids ever higher rounds that the others promise though it can never win, and every
    /// healthy candidate is refused (the `one-way` finding of docs/simulator.md); and a
    /// follower whose patience ran out started a duel with the candidate it had just
    /// promised (the `paper` finding). An election is always safe: this is liveness only.
    fn start_prevote(&mut self, now: Duration) {
        if self.cfg.quorum() <= 1 {
            // Nobody to ask: the only vote is its own.
            self.prevote = None;
            self.start_election_now(now);
            return;
        }
        #[cfg(feature = "mutations")]
        if self.cfg.mutation == Some(crate::config::Mutation::NoPreVote) {
            self.start_election_now(now);
            return;
        }
        if matches!(self.role, Role::Candidate(_)) {
            // This bid failed; the next one needs a majority's yes like any other.
            self.role = Role::Follower;
        }
        self.leader = None;
        let ballot = self.next_ballot();
        self.prevote = Some(PreVoteRound {
            ballot,
            yes: BTreeSet::new(),
        });
        self.send_now(Dest::AllServers, Message::PreVote { ballot });
        self.set_timer(
            TimerKind::PrepareResend,
            self.cfg.prepare_resend,
            Duration::ZERO,
        );
        // Not enough yeses by then (the others are busy with a leader or candidate of their
        // own, or cannot hear this server): ask again.
        self.arm_election_timer(self.cfg.election_timeout);
    }

    /// The ballot this server would bid next: above every round it has seen.
    fn next_ballot(&self) -> Ballot {
        // Rounds above `MAX_ROUND` are refused on arrival, so this cannot overflow.
        let round = self.max_round.max(self.promised.round).saturating_add(1);
        Ballot::new(round, self.cfg.id)
    }

    fn on_prevote(&mut self, now: Duration, from: NodeId, ballot: Ballot) {
        if ballot.server != from || self.rejoin.is_some() {
            // A rejoining server may not promise, so it may not say it would.
            return;
        }
        let window = self.cfg.election_timeout;
        let busy = match &self.role {
            // A leader is alive by definition; a candidate's own election is under way (a
            // failed one turns into a pre-vote at its timer).
            Role::Leader(_) | Role::Candidate(_) => true,
            Role::Follower => {
                self.leader_is_alive(now)
                    || self
                        .candidate_seen
                        .is_some_and(|(c, t)| c != from && now < t + window)
            }
        };
        if busy {
            // Silence rather than a refusal: the asker asks again until its timer, and a
            // yes later (the leader died meanwhile) still counts.
            return;
        }
        self.send_now(
            Dest::Server(from),
            Message::PreVoteAck {
                ballot,
                promised: self.promised,
            },
        );
    }

    fn on_prevote_ack(&mut self, now: Duration, from: NodeId, ballot: Ballot, promised: Ballot) {
        self.max_round = self.max_round.max(promised.round);
        if !matches!(self.role, Role::Follower) || self.leader_is_alive(now) {
            self.prevote = None;
            return;
        }
        let Some(p) = &mut self.prevote else {
            return;
        };
        if p.ballot != ballot {
            // An answer to an earlier pre-vote.
            return;
        }
        p.yes.insert(from);
        if p.yes.len() + 1 >= self.cfg.quorum() {
            self.prevote = None;
            self.start_election_now(now);
        }
    }

    fn start_election_now(&mut self, now: Duration) {
        let ballot = self.next_ballot();
        self.max_round = ballot.round;
        self.prevote = None;
        self.candidate_seen = None;
        let incarnations = self.incarnations.clone();
        self.role = Role::Candidate(Candidate {
            ballot,
            incarnations: incarnations.clone(),
            promises: BTreeMap::new(),
            partial: BTreeMap::new(),
            progress: None,
        });
        self.leader = None;
        if self.cfg.quorum() <= 1 {
            self.become_leader(now);
            return;
        }
        self.send_now(
            Dest::AllServers,
            Message::Prepare {
                ballot,
                from: self.commit,
                incarnations,
            },
        );
        self.set_timer(
            TimerKind::PrepareResend,
            self.cfg.prepare_resend,
            Duration::ZERO,
        );
        self.arm_election_timer(self.cfg.election_timeout);
    }

    fn on_prepare(
        &mut self,
        now: Duration,
        from: NodeId,
        ballot: Ballot,
        slot: Slot,
        incarnations: Incarnations,
    ) {
        if ballot.server != from {
            // A candidate bids only with its own ballots; anything else is forged or confused.
            return;
        }
        self.max_round = self.max_round.max(ballot.round);
        // Recorded durably before any promise below leaves, which is what makes a promise
        // from an older incarnation of a rejoined server detectable.
        self.learn_incarnations(&incarnations);
        if self.rejoin.is_some() {
            // It may have forgotten what it accepted or promised: a promise now could lie.
            return;
        }
        let own = match &self.role {
            Role::Candidate(c) => c.ballot.max(self.promised),
            _ => self.promised,
        };
        if ballot < own {
            self.send_now(
                Dest::Server(from),
                Message::Nack {
                    ballot,
                    promised: own,
                },
            );
            return;
        }
        if ballot > self.promised {
            if self.leader_is_alive(now) && self.leader != Some(from) {
                // A healthy leader is in charge; helping this candidate would only unseat it.
                return;
            }
            self.promised = ballot;
            self.persist(PersistOp::Promise(ballot));
            self.role = Role::Follower;
            self.leader = None;
            self.prevote = None;
            // Give the candidate an election timeout to finish before trying ourselves.
            self.last_leader_contact = Some(now);
            self.candidate_seen = Some((from, now));
            self.arm_election_timer(self.cfg.election_timeout);
        } else if matches!(self.role, Role::Follower) && self.leader.is_none() {
            // The candidate promised asks again: its election is alive, so wait for it (it
            // stops asking at its own timeout, so this patience is bounded).
            self.last_leader_contact = Some(now);
            self.candidate_seen = Some((from, now));
        }
        // ballot == promised: a first promise, a resent Prepare or one asking for the next
        // part; the answer is the same for the same `from`.
        if slot < self.log.start() {
            // Slots the candidate lacks were truncated here: it gets the state first, and
            // the promise when it asks again from its new commit point.
            self.send_snapshot(from, true);
            return;
        }
        // Every part at once (one round trip, not one per part); each names the range it
        // covers, so the candidate can tell when it has them all.
        for (first, accepted, more) in self.promise_parts(slot) {
            self.send_after(
                Dest::Server(from),
                Message::Promise {
                    ballot,
                    from: first,
                    accepted,
                    more,
                    incarnations: self.incarnations.clone(),
                },
            );
        }
    }

    /// What to report to a candidate that knows every slot before `from`: the accepted
    /// entries from there, in parts of at most `message_budget` bytes (at least one entry
    /// each), with the slot each part starts at and the slot the next one starts at.
    fn promise_parts(&self, from: Slot) -> Vec<PromisePart> {
        let mut parts = Vec::new();
        let mut first = from;
        let mut accepted = Vec::new();
        let mut bytes = 0;
        for (slot, e) in self.log.iter_from(from) {
            let n = crate::limits::entry_size(e);
            if !accepted.is_empty() && bytes + n > self.cfg.message_budget {
                parts.push((first, std::mem::take(&mut accepted), Some(slot)));
                first = slot;
                bytes = 0;
            }
            bytes += n;
            accepted.push((slot, e.clone()));
        }
        parts.push((first, accepted, None));
        parts
    }

    #[allow(clippy::too_many_arguments)]
    fn on_promise(
        &mut self,
        now: Duration,
        from: NodeId,
        ballot: Ballot,
        first: Slot,
        accepted: Vec<(Slot, Entry)>,
        more: Option<Slot>,
        incarnations: Incarnations,
    ) {
        let Role::Candidate(c) = &self.role else {
            return;
        };
        if c.ballot != ballot || c.promises.contains_key(&from) {
            // A promise for another round, perhaps delayed from an earlier one: it was made
            // under different conditions and must never count for this round. (Or a copy of
            // one already counted.)
            return;
        }
        let promised_as = incarnations.get(&from).copied().unwrap_or(0);
        self.learn_incarnations(&incarnations);
        let commit = self.commit;
        let Role::Candidate(c) = &mut self.role else {
            return;
        };
        if more.is_some_and(|n| n <= first) {
            // A part that claims to end before it starts: not one we can count.
            return;
        }
        // The parts (sent all at once, arriving in any order, some perhaps lost and asked for
        // again on the resend timer) count once they join up without a gap from our commit
        // point to the end, or an accepted value could go unreported.
        let part = c.partial.entry(from).or_default();
        part.entries.extend(accepted);
        part.ranges.insert(first, more);
        c.progress = Some(now);
        if part.reach(commit).is_some() {
            return;
        }
        let Some(part) = c.partial.remove(&from) else {
            return;
        };
        c.promises
            .insert(from, (promised_as, part.entries.into_iter().collect()));
        let Role::Candidate(c) = &self.role else {
            return;
        };
        // The candidate's own vote makes the majority. A promise from an incarnation older
        // than one heard of since was given by a server that has forgotten it: it counts no
        // more than a promise that was never made.
        let current = c
            .promises
            .iter()
            .filter(|(p, (inc, _))| self.promise_counts(**p, *inc))
            .count();
        if current + 1 >= self.cfg.quorum() {
            self.become_leader(now);
        }
    }

    /// Whether a promise that `server` made as incarnation `incarnation` still counts: not
    /// if that server has rejoined since (it has forgotten making it).
    fn promise_counts(&self, server: NodeId, incarnation: u64) -> bool {
        #[cfg(feature = "mutations")]
        if self
            .cfg
            .mutated(crate::config::Mutation::NoIncarnationFilter)
        {
            return true;
        }
        incarnation >= self.incarnation_of(server)
    }

    fn become_leader(&mut self, now: Duration) {
        let Role::Candidate(c) = std::mem::replace(&mut self.role, Role::Follower) else {
            return;
        };
        let ballot = c.ballot;
        if self.promised > ballot {
            // We promised a higher ballot meanwhile, so we may not vote for our own.
            return;
        }
        if self.promised < ballot {
            self.promised = ballot;
            self.persist(PersistOp::Promise(ballot));
        }
        // For every slot not known chosen, the value with the highest ballot among the
        // majority's reports (ours included) is the only one that may have been chosen.
        let mut best: BTreeMap<Slot, Entry> = self
            .log
            .iter_from(self.commit)
            .map(|(s, e)| (s, e.clone()))
            .collect();
        let reproposes = {
            #[cfg(feature = "mutations")]
            {
                self.cfg.mutation != Some(crate::config::Mutation::SkipReproposal)
            }
            #[cfg(not(feature = "mutations"))]
            {
                true
            }
        };
        let reports = c
            .promises
            .into_iter()
            .filter(|(p, (inc, _))| self.promise_counts(*p, *inc))
            .flat_map(|(_, (_, accepted))| accepted);
        if reproposes {
            for (slot, entry) in reports {
                if slot < self.commit {
                    continue;
                }
                match best.get(&slot) {
                    Some(b) if b.ballot >= entry.ballot => {}
                    _ => {
                        best.insert(slot, entry);
                    }
                }
            }
        }
        let end = best
            .last_key_value()
            .map_or(self.commit, |(s, _)| *s + 1)
            .max(self.commit);
        let mut leader = Leader {
            ballot,
            next_slot: end,
            inflight: BTreeMap::new(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            proposed: BTreeSet::new(),
            prepared_with: c.incarnations,
            through: end,
            reads: Reads::default(),
            since: now,
            heard: BTreeMap::new(),
        };
        let mut values = Vec::new();
        for slot in self.commit..end {
            let value = best.remove(&slot).map(|e| e.value).unwrap_or_default();
            for cmd in &value {
                leader.proposed.insert((cmd.client.clone(), cmd.seq));
            }
            let entry = Entry {
                ballot,
                value: value.clone(),
            };
            self.store(slot, entry);
            leader
                .inflight
                .insert(slot, Inflight::proposed(value.clone(), self.cfg.id, now));
            values.push(value);
        }
        self.role = Role::Leader(leader);
        self.leader = Some(self.cfg.id);
        self.leader_ballot = ballot;
        self.send_accepts(ballot, self.commit, values);
        self.send_now(
            Dest::AllServers,
            Message::Heartbeat {
                ballot,
                commit: self.commit,
            },
        );
        self.set_timer(TimerKind::Heartbeat, self.cfg.heartbeat, Duration::ZERO);
        self.set_timer(
            TimerKind::AcceptResend,
            self.cfg.accept_resend,
            Duration::ZERO,
        );
        self.try_commit(now);
        // Requests that reached us while another led (or nobody did): a client of a dead
        // leader is still waiting for them. At most once holds as for any retry: the session
        // table answers one already executed with its result.
        for cmd in self.recent.take(now, self.cfg.election_timeout) {
            self.on_request(now, cmd);
        }
    }

    /// Leader: whether fewer than a majority (itself included) have been heard from within
    /// the last election timeout, after leading for at least that long.
    fn lost_quorum(&self, now: Duration) -> bool {
        #[cfg(feature = "mutations")]
        if self.cfg.mutation == Some(crate::config::Mutation::NoCheckQuorum) {
            return false;
        }
        let Role::Leader(l) = &self.role else {
            return false;
        };
        let window = self.cfg.election_timeout;
        if now.saturating_sub(l.since) < window {
            return false;
        }
        let heard = l
            .heard
            .values()
            .filter(|t| now.saturating_sub(**t) < window)
            .count();
        heard + 1 < self.cfg.quorum()
    }

    /// Stops leading; the election timer picks the next leader (perhaps this one again, once
    /// it hears a majority).
    fn step_down(&mut self, now: Duration) {
        self.role = Role::Follower;
        self.leader = None;
        self.last_leader_contact = Some(now);
        self.arm_election_timer(self.cfg.election_timeout);
    }

    fn on_nack(&mut self, now: Duration, ballot: Ballot, promised: Ballot) {
        self.max_round = self.max_round.max(promised.round);
        let mine = match &self.role {
            Role::Leader(l) => l.ballot,
            _ => return,
        };
        if ballot == mine && promised > mine {
            // Someone has moved on to a higher ballot: this leadership cannot decide anything
            // more. Stand down and let the election timer pick the next leader.
            self.step_down(now);
        }
    }

    // ----- phase 2 -----

    /// Accepts the authority of the leader of `ballot`, if that ballot is not below what was
    /// promised. Returns whether the message should be acted on.
    fn follow(&mut self, now: Duration, from: NodeId, ballot: Ballot) -> bool {
        self.max_round = self.max_round.max(ballot.round);
        if ballot < self.promised || ballot.server != from {
            self.send_now(
                Dest::Server(from),
                Message::Nack {
                    ballot,
                    promised: self.promised,
                },
            );
            return false;
        }
        if ballot > self.promised {
            self.promised = ballot;
            self.persist(PersistOp::Promise(ballot));
        }
        if !matches!(self.role, Role::Follower) {
            // A leader of an equal or higher ballot exists; our own bid or reign is over.
            self.role = Role::Follower;
            self.arm_election_timer(self.cfg.election_timeout);
        }
        if self.leader_ballot != ballot {
            self.leader_ballot = ballot;
            self.leader_commit = 0;
        }
        self.leader = Some(from);
        self.last_leader_contact = Some(now);
        // A leader speaks: no election of its own, and no candidate to wait for.
        self.prevote = None;
        self.candidate_seen = None;
        true
    }

    #[allow(clippy::too_many_arguments)]
    fn on_accept(
        &mut self,
        now: Duration,
        from: NodeId,
        ballot: Ballot,
        first: Slot,
        values: Vec<Value>,
        commit: Slot,
    ) {
        if !self.follow(now, from, ballot) {
            return;
        }
        if self.rejoin.is_some() {
            // Not voting: only the commit point is of use, to re-learn chosen slots.
            self.learn_commit(commit);
            return;
        }
        let count = values.len() as u64;
        let limit = self.commit + self.cfg.max_log_span();
        if first.saturating_add(count) > limit {
            // Too far ahead of us: catch up first; the leader resends.
            self.learn_commit(commit);
            return;
        }
        for (i, value) in values.into_iter().enumerate() {
            let slot = first + i as Slot;
            if slot < self.commit {
                // Chosen and executed here already; the leader's value is the chosen one, so
                // acknowledging it is still true.
                continue;
            }
            self.store(slot, Entry { ballot, value });
        }
        if count > 0 {
            self.send_after(
                Dest::Server(from),
                Message::Accepted {
                    ballot,
                    first,
                    count,
                },
            );
        }
        self.learn_commit(commit);
    }

    fn on_accepted(
        &mut self,
        now: Duration,
        from: NodeId,
        ballot: Ballot,
        first: Slot,
        count: u64,
    ) {
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        if l.ballot != ballot {
            // An acknowledgement for another ballot never counts for this one.
            return;
        }
        let end = first.saturating_add(count);
        for (_, inf) in l.inflight.range_mut(first..end) {
            inf.acks.insert(from);
        }
        self.try_commit(now);
    }

    fn propose_queued(&mut self, now: Duration) {
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        let ballot = l.ballot;
        let first = l.next_slot;
        let mut values = Vec::new();
        while l.inflight.len() < self.cfg.window && !l.queue.is_empty() {
            // At most `max_batch` commands and `MAX_SLOT` bytes, at least one command (which
            // always fits: requests are checked against `MAX_COMMAND` on arrival).
            let mut value: Value = Vec::new();
            let mut bytes = 0;
            while value.len() < self.cfg.max_batch {
                let Some(next) = l.queue.front() else {
                    break;
                };
                let n = crate::limits::command_size(next);
                if !value.is_empty() && bytes + n > crate::limits::MAX_SLOT {
                    break;
                }
                bytes += n;
                if let Some(cmd) = l.queue.pop_front() {
                    value.push(cmd);
                }
            }
            l.queued_bytes = l.queued_bytes.saturating_sub(bytes);
            let slot = l.next_slot;
            l.next_slot += 1;
            l.inflight
                .insert(slot, Inflight::proposed(value.clone(), self.cfg.id, now));
            values.push(value);
        }
        if values.is_empty() {
            return;
        }
        for (i, value) in values.iter().enumerate() {
            let slot = first + i as Slot;
            let entry = Entry {
                ballot,
                value: value.clone(),
            };
            self.store(slot, entry);
        }
        self.send_accepts(ballot, first, values);
        self.try_commit(now);
    }

    /// Sends Accepts for consecutive slots from `first`, at most `max_batch` slots and
    /// `message_budget` bytes a message.
    fn send_accepts(&mut self, ballot: Ballot, first: Slot, values: Vec<Value>) {
        let mut slot = first;
        let runs = crate::limits::chunk_by_size(
            values,
            self.cfg.message_budget,
            crate::limits::value_size,
        );
        for run in runs {
            let mut run = run.into_iter().peekable();
            while run.peek().is_some() {
                let chunk: Vec<Value> = run.by_ref().take(self.cfg.max_batch).collect();
                let n = chunk.len() as Slot;
                self.send_now(
                    Dest::AllServers,
                    Message::Accept {
                        ballot,
                        first: slot,
                        values: chunk,
                        commit: self.commit,
                    },
                );
                slot += n;
            }
        }
    }

    fn resend_accepts(&mut self, now: Duration) {
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        let ballot = l.ballot;
        let due = self.cfg.accept_resend;
        let mut first = None;
        let mut values = Vec::new();
        // The in-flight slots are consecutive; resend the run from the first one that is due.
        for (slot, inf) in l.inflight.iter_mut() {
            if first.is_none() && now.saturating_sub(inf.sent_at) < due {
                continue;
            }
            first.get_or_insert(*slot);
            inf.sent_at = now;
            values.push(inf.value.clone());
        }
        let unconfirmed_round = (l.reads.confirmed < l.reads.round).then_some(l.reads.round);
        if let Some(first) = first {
            self.send_accepts(ballot, first, values);
        }
        if let Some(round) = unconfirmed_round {
            self.send_now(Dest::AllServers, Message::ReadIndex { ballot, round });
        }
        self.set_timer(
            TimerKind::AcceptResend,
            self.cfg.accept_resend,
            Duration::ZERO,
        );
    }

    /// Leader: executes every slot at the commit point that a majority has accepted.
    fn try_commit(&mut self, now: Duration) {
        let quorum = self.cfg.quorum();
        let mut advanced = false;
        loop {
            let Role::Leader(l) = &mut self.role else {
                return;
            };
            let Some(entry) = l.inflight.first_entry() else {
                break;
            };
            if *entry.key() != self.commit || entry.get().acks.len() < quorum {
                break;
            }
            let inf = entry.remove();
            let slot = self.commit;
            self.execute(slot, &inf.value);
            self.commit += 1;
            advanced = true;
        }
        if advanced {
            self.maybe_snapshot();
            self.serve_reads();
            self.propose_queued(now);
        }
    }

    /// Follower: the leader says every slot before `commit` is chosen. Those we hold in the
    /// leader's ballot carry the leader's (hence the chosen) value; for the others we must ask.
    fn learn_commit(&mut self, commit: Slot) {
        self.leader_commit = self.leader_commit.max(commit);
        let mut advanced = false;
        while self.commit < self.leader_commit {
            let Some(e) = self.log.get(self.commit) else {
                break;
            };
            #[cfg(feature = "mutations")]
            let any = self.cfg.mutated(crate::config::Mutation::LearnAnyBallot);
            #[cfg(not(feature = "mutations"))]
            let any = false;
            if !any && e.ballot != self.leader_ballot && e.ballot != Ballot::CHOSEN {
                break;
            }
            let value = e.value.clone();
            self.execute(self.commit, &value);
            self.commit += 1;
            advanced = true;
        }
        if advanced {
            self.maybe_snapshot();
        }
        if self.commit < self.leader_commit {
            // Wait a moment before asking: the missing Accept may merely be late.
            self.arm_catchup();
        }
    }

    fn on_catchup(&mut self, from: NodeId, slot: Slot) {
        if slot >= self.commit {
            return;
        }
        let msg = if slot < self.log.start() {
            self.send_snapshot(from, false);
            return;
        } else {
            #[cfg(feature = "mutations")]
            let limit = if self.cfg.mutated(crate::config::Mutation::CatchUpUnchosen) {
                self.log.end()
            } else {
                self.commit
            };
            #[cfg(not(feature = "mutations"))]
            let limit = self.commit;
            let end = limit.min(slot + self.cfg.max_catchup as Slot);
            // Bounded in bytes as well as slots (at least one slot, always).
            let mut bytes = 0;
            let values: Vec<Value> = (slot..end)
                .map_while(|s| self.log.get(s))
                .take_while(|e| {
                    let first = bytes == 0;
                    bytes += crate::limits::value_size(&e.value);
                    first || bytes <= self.cfg.message_budget
                })
                .map(|e| e.value.clone())
                .collect();
            Message::Chosen {
                first: slot,
                values,
            }
        };
        self.send_now(Dest::Server(from), msg);
    }

    fn on_chosen(&mut self, first: Slot, values: Vec<Value>) {
        if matches!(self.role, Role::Leader(_)) {
            // A leader knows every chosen value from its phase 1.
            return;
        }
        let mut advanced = false;
        for (i, value) in values.into_iter().enumerate() {
            let slot = first + i as Slot;
            if slot < self.commit {
                continue;
            }
            if slot > self.commit {
                break;
            }
            self.execute(slot, &value);
            self.store(
                slot,
                Entry {
                    ballot: Ballot::CHOSEN,
                    value,
                },
            );
            self.commit += 1;
            advanced = true;
        }
        if advanced {
            self.maybe_snapshot();
        }
        self.learn_commit(self.leader_commit);
    }

    // ----- rejoining after lost state -----

    fn incarnation_of(&self, server: NodeId) -> u64 {
        self.incarnations.get(&server).copied().unwrap_or(0)
    }

    /// Merges what another server knows of incarnations into ours, durably.
    fn learn_incarnations(&mut self, known: &Incarnations) {
        for (&server, &incarnation) in known {
            if server == 0
                || server > self.cfg.servers
                || incarnation <= self.incarnation_of(server)
            {
                continue;
            }
            if server == self.cfg.id && self.rejoin.is_none() {
                // Nobody can know of a later incarnation of us than we are; a peer claiming so
                // is confused, and believing it would make our own promises look stale.
                continue;
            }
            self.incarnations.insert(server, incarnation);
            self.persist(PersistOp::Incarnation {
                server,
                incarnation,
            });
        }
    }

    fn on_rejoin_info(&mut self, from: NodeId, incarnation: u64) {
        let Some(Rejoin::Query { answers }) = &mut self.rejoin else {
            return;
        };
        answers.insert(from, incarnation);
        // A majority of the cluster not counting ourselves: it shares a member with every
        // majority that ever recorded an earlier incarnation of ours, so the next one is new.
        if answers.len() < self.cfg.quorum() {
            return;
        }
        let known = answers.values().copied().max().unwrap_or(0);
        let incarnation = known.max(self.incarnation()) + 1;
        self.incarnations.insert(self.cfg.id, incarnation);
        self.persist(PersistOp::Incarnation {
            server: self.cfg.id,
            incarnation,
        });
        self.rejoin = Some(Rejoin::Announce {
            pristine: BTreeSet::new(),
        });
        self.send_after(Dest::AllServers, Message::Rejoin { incarnation });
    }

    fn on_rejoin(&mut self, now: Duration, from: NodeId, incarnation: u64) {
        self.learn_incarnations(&Incarnations::from([(from, incarnation)]));
        if self.pristine() && self.incarnation_of(from) == incarnation {
            // Nothing was ever decided here, and every promise this server makes from now on
            // carries the new incarnation (recorded durably before this answer leaves), so
            // the rejoining server's forgotten votes can never be counted with ours.
            let msg = Message::Rejoined {
                incarnation,
                ballot: Ballot::ZERO,
                through: 0,
            };
            self.send_after(Dest::Server(from), msg);
            return;
        }
        let Role::Leader(l) = &self.role else {
            return;
        };
        if l.prepared_with.get(&from).copied().unwrap_or(0) >= incarnation {
            let msg = Message::Rejoined {
                incarnation,
                ballot: l.ballot,
                through: l.through,
            };
            // The incarnation we just learned must be durable before we vouch for it.
            self.send_after(Dest::Server(from), msg);
        } else {
            // Our phase 1 counted promises made before this incarnation was known: run it
            // again in a new ballot whose Prepare carries it.
            self.start_election_now(now);
        }
    }

    fn on_rejoined(
        &mut self,
        now: Duration,
        from: NodeId,
        incarnation: u64,
        ballot: Ballot,
        through: Slot,
    ) {
        if !matches!(self.rejoin, Some(Rejoin::Announce { .. }))
            || incarnation != self.incarnation()
        {
            // Late, or meant for an earlier attempt of ours.
            return;
        }
        if ballot == Ballot::ZERO {
            // A pristine server recorded our incarnation. Once a majority of the others has,
            // every quorum a candidate can gather includes one of them, whose promise tells
            // the candidate to ignore our former self's; and none of them has accepted
            // anything, so no value was chosen that we could have forgotten.
            let quorum = self.cfg.quorum();
            let Some(Rejoin::Announce { pristine }) = &mut self.rejoin else {
                return;
            };
            pristine.insert(from);
            if pristine.len() >= quorum {
                self.finish_rejoin();
            }
            return;
        }
        // The floor: every ballot below this one has lost a majority, so nothing we forgot
        // promising in one of them can be used against us.
        if !self.follow(now, from, ballot) {
            return;
        }
        self.rejoin = Some(Rejoin::CatchUp { through });
        self.learn_commit(self.leader_commit);
    }

    fn finish_rejoin(&mut self) {
        self.rejoin = None;
        self.persist(PersistOp::Rejoining(false));
    }

    /// Whether this server has never promised, accepted or executed anything.
    fn pristine(&self) -> bool {
        self.promised == Ballot::ZERO
            && self.commit == 0
            && self.log.start() == 0
            && self.log.is_empty()
    }

    // ----- execution and snapshots -----

    fn execute(&mut self, slot: Slot, value: &Value) {
        if self.cfg.trace_chosen {
            self.ready.executed.push((slot, crate::value_digest(value)));
        }
        self.since_snapshot += crate::limits::value_size(value) as u64;
        for (index, cmd) in value.iter().enumerate() {
            let (store_before, key_before) = (
                self.kv.revision(),
                self.kv.entry(cmd.op.key()).map_or(0, |r| r.modified),
            );
            let applied = self.kv.apply_nth(slot, index, cmd);
            if matches!(applied, Applied::Executed(_)) {
                self.ready.executed_commands += 1;
            }
            if self.kv.revision() != store_before {
                // Every change raises the store's revision to its own (revisions only grow),
                // so a changed revision is exactly a changed key: this command's.
                self.record_change(cmd.op.key(), key_before, store_before);
            }
            let Role::Leader(l) = &mut self.role else {
                continue;
            };
            l.proposed.remove(&(cmd.client.clone(), cmd.seq));
            let result = match applied {
                Applied::Executed(r) | Applied::Duplicate(r) | Applied::Refused(r) => r,
                Applied::Stale => continue,
            };
            let msg = Message::Reply {
                client: cmd.client.clone(),
                seq: cmd.seq,
                result,
            };
            self.send_after(Dest::Client(cmd.client.clone()), msg);
        }
    }

    /// Keeps the change just made to `key` in the history and, as leader, hands it out for
    /// watchers.
    fn record_change(&mut self, key: &str, prev_revision: u64, prev_store_revision: u64) {
        let kind = match self.kv.entry(key) {
            Some(r) => ChangeKind::Put {
                value: r.value.clone(),
                create: r.create,
                version: r.version,
            },
            None => ChangeKind::Delete,
        };
        let change = Change {
            revision: self.kv.revision(),
            key: key.to_string(),
            kind,
            prev_revision,
            prev_store_revision,
        };
        if matches!(self.role, Role::Leader(_)) {
            self.ready.changes.push(change.clone());
        }
        self.history.push(change);
    }

    /// The recent changes this server holds for watchers.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The answer to [`crate::kv::Op::Changes`], from the history.
    fn changes_since(&self, key: &str, prefix: bool, from: u64) -> OpResult {
        match self.history.since(key, prefix, from) {
            Ok((changes, more)) => OpResult::Changes {
                revision: self.kv.revision(),
                changes,
                more,
            },
            Err(c) => OpResult::Compacted { floor: c.floor },
        }
    }

    fn snapshot_now(&self) -> Snapshot {
        #[cfg(feature = "mutations")]
        if self
            .cfg
            .mutated(crate::config::Mutation::SnapshotWithoutSessions)
        {
            return Snapshot {
                next_slot: self.commit,
                kv: self.kv.without_sessions(),
            };
        }
        Snapshot {
            next_slot: self.commit,
            kv: self.kv.clone(),
        }
    }

    fn maybe_snapshot(&mut self) {
        if self.commit - self.log.start() < self.cfg.snapshot_interval {
            return;
        }
        let share = self
            .kv
            .data_bytes()
            .saturating_mul(self.cfg.snapshot_log_percent)
            / 100;
        if self.since_snapshot < share {
            // Storage writes a snapshot whole: waiting until the log holds a share of the
            // data makes that a constant cost per byte of commands at any data size.
            return;
        }
        self.since_snapshot = 0;
        let snapshot = self.snapshot_now();
        self.log.truncate_before(self.commit);
        self.persist(PersistOp::Snapshot(snapshot));
        if self
            .snapshot_out
            .as_ref()
            .is_some_and(|(slot, _)| *slot < self.log.start())
        {
            // Receivers of it could no longer catch up from our log; free the memory.
            self.snapshot_out = None;
        }
    }

    // ----- snapshots in transfer -----

    /// Sends `to` the first piece of this server's snapshot (after the sync if `after_sync`:
    /// it answers a Prepare whose promise must be durable first).
    fn send_snapshot(&mut self, to: NodeId, after_sync: bool) {
        let usable = self
            .snapshot_out
            .as_ref()
            .is_some_and(|(slot, _)| *slot >= self.log.start() && *slot <= self.commit);
        if !usable {
            let snapshot = self.snapshot_now();
            match crate::encode_snapshot(&snapshot) {
                Some(bytes) => self.snapshot_out = Some((snapshot.next_slot, bytes)),
                None => return,
            }
        }
        if let Some(msg) = self.snapshot_chunk(0) {
            if after_sync {
                self.send_after(Dest::Server(to), msg);
            } else {
                self.send_now(Dest::Server(to), msg);
            }
        }
    }

    /// The piece of the snapshot being handed out that starts at `offset`.
    fn snapshot_chunk(&self, offset: u64) -> Option<Message> {
        let (next_slot, bytes) = self.snapshot_out.as_ref()?;
        let start = usize::try_from(offset).ok().filter(|o| *o <= bytes.len())?;
        let end = bytes.len().min(start + self.cfg.snapshot_chunk);
        Some(Message::SnapshotChunk {
            next_slot: *next_slot,
            offset,
            total: bytes.len() as u64,
            data: bytes[start..end].to_vec(),
        })
    }

    fn on_snapshot_fetch(&mut self, from: NodeId, next_slot: Slot, offset: u64) {
        match &self.snapshot_out {
            Some((slot, _)) if *slot == next_slot => {
                if let Some(msg) = self.snapshot_chunk(offset) {
                    self.send_now(Dest::Server(from), msg);
                }
            }
            // That snapshot is gone (the log moved past it): start over with a current one.
            _ if next_slot < self.commit => self.send_snapshot(from, false),
            _ => {}
        }
    }

    fn on_snapshot_chunk(
        &mut self,
        from: NodeId,
        next_slot: Slot,
        offset: u64,
        total: u64,
        data: Vec<u8>,
    ) {
        if next_slot <= self.commit || matches!(self.role, Role::Leader(_)) {
            return;
        }
        let fits = |have: u64| offset == have && offset.saturating_add(data.len() as u64) <= total;
        match &mut self.snapshot_in {
            Some(t) if t.next_slot == next_slot && t.total == total => {
                if !fits(t.data.len() as u64) {
                    // A copy or a piece out of order: the fetch timer asks again.
                    return;
                }
                t.data.extend_from_slice(&data);
                t.stalls = 0;
            }
            // A transfer under way is kept unless this one is newer: two senders must not
            // keep restarting each other's transfers.
            Some(t) if t.next_slot >= next_slot => return,
            _ => {
                if !fits(0) {
                    return;
                }
                self.snapshot_in = Some(SnapshotIn {
                    next_slot,
                    total,
                    from,
                    data,
                    stalls: 0,
                });
            }
        }
        let Some(t) = &self.snapshot_in else {
            return;
        };
        if (t.data.len() as u64) < total {
            let msg = Message::SnapshotFetch {
                next_slot,
                offset: t.data.len() as u64,
            };
            let to = t.from;
            self.send_now(Dest::Server(to), msg);
            self.arm_catchup();
            return;
        }
        let Some(t) = self.snapshot_in.take() else {
            return;
        };
        match crate::decode_snapshot(&t.data) {
            Some(s) if s.next_slot == next_slot => {
                let next_slot = s.next_slot;
                self.install_snapshot(s);
                self.ready.notes.push(Note::SnapshotInstalled {
                    from: t.from,
                    next_slot,
                });
                self.learn_commit(self.leader_commit);
            }
            // Garbage from a peer: nothing installed; asking again starts over.
            _ => {}
        }
    }

    /// On the catch-up timer: asks again for the piece of a snapshot that has not come.
    /// Returns whether a transfer is under way (then it, not the log, is what to catch up).
    fn resend_snapshot_fetch(&mut self) -> bool {
        let Some(t) = &mut self.snapshot_in else {
            return false;
        };
        if t.next_slot <= self.commit || t.stalls >= 8 {
            // Done by other means, or the sender stopped answering: drop it, so that a
            // snapshot from anyone can start a new transfer.
            self.snapshot_in = None;
            return false;
        }
        t.stalls += 1;
        let msg = Message::SnapshotFetch {
            next_slot: t.next_slot,
            offset: t.data.len() as u64,
        };
        let to = t.from;
        self.send_now(Dest::Server(to), msg);
        self.arm_catchup();
        true
    }

    fn install_snapshot(&mut self, s: Snapshot) {
        debug_assert!(s.next_slot > self.commit);
        self.kv = s.kv.clone();
        self.kv.set_quota(self.cfg.max_store_bytes);
        self.since_snapshot = 0;
        self.history.reset(self.kv.revision());
        self.commit = s.next_slot;
        self.log.truncate_before(s.next_slot);
        self.persist(PersistOp::Snapshot(s));
    }

    // ----- helpers -----

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
