//! A server's protocol settings, with defaults, and their validation. Pure data; no IO.

use crate::ballot::NodeId;
use std::time::Duration;

/// Settings for one server's protocol core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This server's id, in `1..=servers`.
    pub id: NodeId,
    /// How many servers the cluster has (ids `1..=servers`). A majority of this many is needed
    /// for every decision.
    pub servers: u32,
    /// How often a leader says it is alive.
    pub heartbeat: Duration,
    /// A follower that has heard no leader for `election_timeout` plus a random extra of up to
    /// `election_timeout` starts an election. It also refuses to help a candidate while it has
    /// heard a leader within `election_timeout`, so one server with a flaky link cannot unseat
    /// a healthy leader.
    pub election_timeout: Duration,
    /// How long a candidate waits for a promise before sending Prepare again.
    pub prepare_resend: Duration,
    /// How long a leader waits for a majority of Accepted before sending Accept again.
    pub accept_resend: Duration,
    /// How long a lagging replica waits for chosen values before asking again.
    pub catchup_resend: Duration,
    /// How many slots a leader may have proposed but not yet chosen (pipelining).
    pub window: usize,
    /// ... and how many bytes of commands those slots may hold (one slot is always allowed,
    /// whatever its size). What is in flight waits in the followers' queues ahead of the
    /// leader's heartbeats: with values of a megabyte, 64 slots were 64 MB, which a follower
    /// took longer than an election timeout to work through, so followers lost the leader
    /// and the leader lost its quorum under load (measured at 16 clients: elections every
    /// second, a few commands a second).
    pub window_bytes: usize,
    /// How many commands a leader packs into one slot at most. Commands only share a slot when
    /// the window is full, so an idle leader never waits to fill a batch.
    pub max_batch: usize,
    /// How many executed slots the log keeps before they are folded into a snapshot.
    pub snapshot_interval: u64,
    /// ... and how large the commands executed since the last snapshot must be, in percent
    /// of the store's data, before the next. A snapshot costs O(data) (storage writes it
    /// whole), so tying it to the bytes since the last one keeps that cost a constant per
    /// byte written, whatever the data size; the log then holds at most about this share
    /// of the data. 0: every `snapshot_interval` slots, whatever the size.
    pub snapshot_log_percent: u64,
    /// ... but commands of this many bytes since the last snapshot stand in for
    /// `snapshot_interval` slots: with values of a megabyte, a thousand slots were a
    /// gigabyte of log in memory and on disk for any store size (measured: 1.7 GB resident
    /// per server for 100 MB of data), where a snapshot of a small store is cheap.
    pub snapshot_log_bytes: u64,
    /// The store's quota ([`crate::limits::MAX_STORE`]). Every server of a cluster must use
    /// the same (a write refused on one replica and run on another would split them), so it
    /// is no server flag: only tests and the simulator lower it.
    pub max_store_bytes: u64,
    /// How many clients' last results the at-most-once table remembers.
    pub max_sessions: usize,
    /// How many chosen values one catch-up message carries at most.
    pub max_catchup: usize,
    /// The most bytes of slots one Accept, Chosen or Promise carries (at least one slot
    /// always): at most [`crate::limits::MESSAGE_BUDGET`]. Smaller only to exercise the
    /// splitting in tests and the simulator.
    pub message_budget: usize,
    /// The size of one piece of a snapshot in transfer: at most
    /// [`crate::limits::SNAPSHOT_CHUNK`]; smaller only in tests and the simulator.
    pub snapshot_chunk: usize,
    /// Serve gets without writing them to the log: the leader confirms with a majority that it
    /// still leads (one round trip, shared by every get waiting), then answers from its state
    /// once it has executed everything chosen before the get arrived. Off: gets go through the
    /// log like writes.
    pub read_index: bool,
    /// How many bytes of recent changes each server keeps for watchers that missed events
    /// ([`crate::watch::History`]); older ones are answered "compacted".
    pub history_bytes: usize,
    /// Report a digest of every executed slot in [`crate::Ready::executed`] (for the simulator).
    pub trace_chosen: bool,
    /// A deliberately broken protocol, for showing that the simulator catches bugs.
    #[cfg(feature = "mutations")]
    pub mutation: Option<Mutation>,
}

/// Deliberate bugs, compiled in only with the `mutations` feature.
#[cfg(feature = "mutations")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// Decide with `servers / 2` votes instead of a majority: two sides of a partition can
    /// both decide.
    HalfQuorum,
    /// A new leader ignores what promises report as accepted and fills those slots with
    /// no-ops: values that earlier ballots chose get lost.
    SkipReproposal,
    /// A server that lost durable state votes at once instead of rejoining first: a promise
    /// or accept it forgot may have been the one a quorum counted.
    TrustLostState,
    /// The leader answers gets from its own state at once, without confirming that it still
    /// leads: a deposed leader that does not know it yet serves stale reads.
    ReadWithoutQuorum,
    /// A leader never checks that it still hears a majority: one whose inbound path broke
    /// keeps the followers loyal with its heartbeats while nothing commits.
    NoCheckQuorum,
    /// A server on an empty data directory votes at once, as if the cluster were new, instead
    /// of rejoining: a lost disk forgets its promises and accepts.
    TrustEmptyDisk,
    /// Replies (read-index gets, duplicates answered from the session table) leave before
    /// the sync: with a quorum of one they can show a write that a crash then erases.
    ReplyBeforeSync,
    /// A leader's reply to an executed command leaves before the sync even when the command's
    /// slot was proposed in the same flush: a lone server's reply can show a write that a
    /// crash then erases.
    ReplyBeforeItsFlush,
    /// A follower executes what it holds below the leader's commit point whatever ballot it
    /// was accepted in, not only the leader's: a value from an older ballot that lost.
    LearnAnyBallot,
    /// A get joins the read round already under way instead of the next one: that round may
    /// have been confirmed before the get arrived, and prove nothing about now.
    ReadJoinsRunningRound,
    /// Promises from an older incarnation of a rejoined server count: its former self's vote.
    NoIncarnationFilter,
    /// Snapshots leave out the session table: a replica that installs one executes retries
    /// again, or refuses them while the others answer from the table.
    SnapshotWithoutSessions,
    /// Catch-up serves every value in the log, not only chosen ones.
    CatchUpUnchosen,
    /// The driver lets a flush's early messages leave before a promise in the same flush is
    /// durable: a leader that crashes before the sync can reuse its ballot.
    EarlyBeforePromise,
    /// A server whose election timer fires bids at once, without asking a majority first
    /// (no pre-vote): one that cannot hear outbids the healthy candidates forever.
    NoPreVote,
}

/// A setting that makes no sense.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid configuration: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Defaults for server `id` of `servers`.
    pub fn new(id: NodeId, servers: u32) -> Self {
        Config {
            id,
            servers,
            heartbeat: Duration::from_millis(100),
            election_timeout: Duration::from_millis(300),
            prepare_resend: Duration::from_millis(50),
            accept_resend: Duration::from_millis(50),
            catchup_resend: Duration::from_millis(50),
            window: 64,
            window_bytes: 4 << 20,
            max_batch: 64,
            // Each snapshot rewrites the log file (a write, a sync, a rename and a directory
            // sync, on every server): at 1000 slots a small store under load took about 12 a
            // second per server. 10,000 cut the bytes written per command by a fifth and the
            // renames and fsyncs tenfold (docs/speed.md, "The sync itself"). The log kept in
            // memory is still bounded by `snapshot_log_bytes`. etcd 3.4 snapshots every
            // 100,000 entries.
            snapshot_interval: 10_000,
            snapshot_log_percent: 50,
            snapshot_log_bytes: 64 << 20,
            max_store_bytes: crate::limits::MAX_STORE,
            max_sessions: 100_000,
            max_catchup: 256,
            message_budget: crate::limits::MESSAGE_BUDGET,
            snapshot_chunk: crate::limits::SNAPSHOT_CHUNK,
            read_index: true,
            history_bytes: 32 << 20,
            trace_chosen: false,
            #[cfg(feature = "mutations")]
            mutation: None,
        }
    }

    /// The most servers a cluster may have: plenty for consensus, and it bounds every
    /// per-server table.
    pub const MAX_SERVERS: u32 = 255;

    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |s: String| Err(ConfigError(s));
        if self.servers == 0 || self.servers > Self::MAX_SERVERS {
            return err(format!(
                "the cluster must have 1 to {} servers, not {}",
                Self::MAX_SERVERS,
                self.servers
            ));
        }
        if self.id == 0 || self.id > self.servers {
            return err(format!(
                "server id {} is outside 1..={}",
                self.id, self.servers
            ));
        }
        for (name, d) in [
            ("heartbeat", self.heartbeat),
            ("election timeout", self.election_timeout),
            ("prepare resend", self.prepare_resend),
            ("accept resend", self.accept_resend),
            ("catch-up resend", self.catchup_resend),
        ] {
            if d.is_zero() {
                return err(format!("the {name} interval must be above zero"));
            }
        }
        if self.election_timeout <= self.heartbeat {
            return err(format!(
                "the election timeout ({:?}) must be longer than the heartbeat ({:?})",
                self.election_timeout, self.heartbeat
            ));
        }
        for (name, n) in [
            ("window", self.window),
            ("max batch", self.max_batch),
            ("max sessions", self.max_sessions),
            ("max catch-up", self.max_catchup),
            ("window bytes", self.window_bytes),
        ] {
            if n == 0 {
                return err(format!("{name} must be at least 1"));
            }
        }
        for (name, n, max) in [
            (
                "message budget",
                self.message_budget,
                crate::limits::MESSAGE_BUDGET,
            ),
            (
                "snapshot chunk",
                self.snapshot_chunk,
                crate::limits::SNAPSHOT_CHUNK,
            ),
        ] {
            if n == 0 || n > max {
                return err(format!("the {name} must be 1 to {max} bytes, not {n}"));
            }
        }
        if self.max_batch > crate::limits::MAX_BATCH {
            return err(format!(
                "max batch must be at most {} commands, not {} (each command of a slot gets \
                 its own revision)",
                crate::limits::MAX_BATCH,
                self.max_batch
            ));
        }
        if self.window > crate::limits::MAX_WINDOW {
            return err(format!(
                "the window must be at most {} slots, not {} (a new leader re-proposes a \
                 window in one durable write)",
                crate::limits::MAX_WINDOW,
                self.window
            ));
        }
        if self.snapshot_interval == 0 {
            return err("the snapshot interval must be at least 1".into());
        }
        Ok(())
    }

    /// Whether a server that starts from an empty state may vote at once (only the
    /// `TrustEmptyDisk` mutation says yes; whoever loads state asks this before deciding to
    /// rejoin).
    pub fn trust_empty_disk(&self) -> bool {
        #[cfg(feature = "mutations")]
        if self.mutation == Some(Mutation::TrustEmptyDisk) {
            return true;
        }
        false
    }

    /// Whether the deliberate bug `m` is switched on.
    #[cfg(feature = "mutations")]
    pub fn mutated(&self, m: Mutation) -> bool {
        self.mutation == Some(m)
    }

    /// Votes needed for a decision.
    pub fn quorum(&self) -> usize {
        #[cfg(feature = "mutations")]
        if self.mutation == Some(Mutation::HalfQuorum) {
            return (self.servers as usize / 2).max(1);
        }
        self.servers as usize / 2 + 1
    }

    /// Whether `votes` distinct servers make a majority: every count of promises, yeses,
    /// acceptances, confirmations and answers goes through here, and each caller says whether
    /// its own vote is among them (rejoining deliberately does not count itself).
    pub fn is_quorum(&self, votes: usize) -> bool {
        votes >= self.quorum()
    }

    /// How far past its commit point a replica stores accepted slots. Past that a peer is
    /// either far ahead (and the replica catches up first) or misbehaving; either way storing
    /// it would let one message allocate without bound.
    pub fn max_log_span(&self) -> u64 {
        self.snapshot_interval + 8 * self.window as u64 + 1024
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_settings_are_named() {
        assert!(Config::new(1, 3).validate().is_ok());
        assert!(Config::new(4, 3)
            .validate()
            .unwrap_err()
            .0
            .contains("outside"));
        assert!(Config::new(1, 0).validate().is_err());
        let mut c = Config::new(1, 3);
        c.election_timeout = c.heartbeat;
        assert!(c.validate().unwrap_err().0.contains("election timeout"));
        assert_eq!(Config::new(1, 7).quorum(), 4);
        assert_eq!(Config::new(1, 4).quorum(), 3);
        assert_eq!(Config::new(1, 1).quorum(), 1);
    }
}
