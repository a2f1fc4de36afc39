//! The driver: everything between the protocol core's outputs and the world that decides what
//! leaves a server and when. Written once, driven by both the tokio runtime
//! (`mqpaxos-node`) and the deterministic simulator (`mqpaxos-sim`), so the simulator proves
//! the code that production runs.
//!
//! It owns a [`Server`] and
//! - buffers the [`Ready`] of every step since the last flush (group commit: the runtime steps
//!   the core through every message that has already arrived, then flushes once);
//! - at the flush, orders what leaves: messages that may go before the disk write, then the
//!   writes (one sync for all of them), then messages that vouch for those writes, and merges
//!   what can travel as one ([`crate::coalesce`]);
//! - keeps the core's timers as deadlines on the caller's clock and draws their random jitter
//!   from a seeded generator (no OS randomness: the simulator seeds it from the run's seed);
//! - holds back elections while fewer than a majority of servers are known to be online.
//!
//! The one rule that is easy to get wrong and is therefore enforced here rather than trusted
//! to every handler in the core: **nothing leaves before a promise it depends on is durable.**
//! A new leader's Accepts and Heartbeats, and every Accept of a request handled later in the
//! same group, are sent under a ballot the leader has only just promised itself; if they left
//! before that promise was synced and the leader crashed, it could restart knowing nothing of
//! the ballot, win the same ballot again with other promises and get a different value chosen
//! in a slot another replica already holds in that ballot. So while a flush carries a
//! `Promise`, every message of that flush waits for the sync.
//!
//! Pure: no IO, no clock (time is passed in), no threads, no OS randomness.

use crate::ballot::Slot;
use crate::log::PersistOp;
use crate::message::{coalesce, Input, Outgoing, Ready, TimerKind};
use crate::note::Note;
use crate::server::Server;
use std::collections::BTreeMap;
use std::time::Duration;

/// At most this many inputs share one flush (one sync), so a flood of input cannot delay
/// the sync, and every reply it carries, without bound.
pub const GROUP_COMMIT_MAX: usize = 256;

/// What one flush asks of whoever drives the driver, in this order: publish `send_early`,
/// make `persist` durable with one sync, then publish `send_durable`. The caller carries out
/// each flush to the end before it starts the next: the core counts on the writes of one
/// flush being durable before anything of a later flush leaves (a leader replies ahead of
/// the sync for slots it proposed before the last flush, see [`Server::flush_taken`]).
#[derive(Debug, Default)]
pub struct Flush {
    /// May leave before the writes are durable: nothing in them vouches for these writes
    /// (only for those of earlier flushes).
    pub send_early: Vec<Outgoing>,
    /// Durable writes, in order; one sync covers them all.
    pub persist: Vec<PersistOp>,
    /// Promises, acknowledgements and the replies that vouch for `persist`: only once it is
    /// durable.
    pub send_durable: Vec<Outgoing>,
    /// Slots the steps of this flush executed, with value digests (`Config::trace_chosen`).
    /// A lone server executes a slot as soon as it accepts it, before the sync; nothing of
    /// that execution escapes until the sync, and a crash before it undoes it, so a checker
    /// should count these as executed only once the flush is durable.
    pub executed: Vec<(Slot, u64)>,
    /// What the steps of this flush noted for the log ([`crate::note`]); changes nothing.
    pub notes: Vec<Note>,
    /// Changes executed as leader, in revision order, for watchers: published with
    /// `send_durable` (a lone server's changes are durable only after the sync).
    pub changes: Vec<crate::watch::Change>,
}

impl Flush {
    pub fn is_empty(&self) -> bool {
        self.send_early.is_empty()
            && self.persist.is_empty()
            && self.send_durable.is_empty()
            && self.changes.is_empty()
    }

    /// Every message in the order it leaves.
    pub fn messages(&self) -> impl Iterator<Item = &Outgoing> {
        self.send_early.iter().chain(self.send_durable.iter())
    }
}

/// SplitMix64: a tiny, well-mixed generator, enough for timer jitter and fully determined by
/// its seed.
#[derive(Clone, Debug)]
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..=max` (the tiny modulo bias is irrelevant for jitter).
    fn upto(&mut self, max: u64) -> u64 {
        if max == u64::MAX {
            self.next()
        } else {
            self.next() % (max + 1)
        }
    }
}

/// One server with its pending effects and timers.
#[derive(Debug)]
pub struct Driver {
    server: Server,
    early: Vec<Outgoing>,
    persist: Vec<PersistOp>,
    durable: Vec<Outgoing>,
    /// Steps since the last flush.
    steps: usize,
    /// Bytes of `persist` (estimated from above), so a group never outgrows what storage
    /// takes in one write.
    persist_bytes: usize,
    /// When each armed timer fires, on the caller's clock.
    timers: BTreeMap<TimerKind, Duration>,
    rng: SplitMix,
    /// How many servers are known to be online (this one included); elections wait for a
    /// majority. `None`: not tracked, always ready.
    online: Option<usize>,
    /// Slots executed since the last flush, with value digests (`Config::trace_chosen`).
    executed: Vec<(Slot, u64)>,
    executed_commands: u64,
    /// Notes since the last flush; handed out with it, so they never pile up.
    notes: Vec<Note>,
    changes: Vec<crate::watch::Change>,
}

impl Driver {
    /// Wraps `server`; `seed` determines every timer's jitter.
    pub fn new(server: Server, seed: u64) -> Self {
        Driver {
            server,
            early: Vec::new(),
            persist: Vec::new(),
            durable: Vec::new(),
            steps: 0,
            persist_bytes: 0,
            timers: BTreeMap::new(),
            rng: SplitMix(seed),
            online: None,
            executed: Vec::new(),
            executed_commands: 0,
            notes: Vec::new(),
            changes: Vec::new(),
        }
    }

    pub fn server(&self) -> &Server {
        &self.server
    }

    /// Call once, first: arms the server's timers (and starts a rejoin if it must).
    pub fn start(&mut self, now: Duration) {
        let ready = self.server.start(now);
        self.absorb(now, ready);
    }

    /// Feeds one input. Its effects wait for the next [`Driver::flush`].
    pub fn step(&mut self, now: Duration, input: Input) {
        let ready = self.server.step(now, input);
        self.absorb(now, ready);
    }

    /// Whether the caller should flush before taking more input: enough steps, or enough
    /// bytes ([`crate::limits::FLUSH_SOFT`]), share the pending sync.
    pub fn flush_due(&self) -> bool {
        self.steps >= GROUP_COMMIT_MAX || self.persist_bytes >= crate::limits::FLUSH_SOFT
    }

    /// The estimated bytes of the writes waiting for the next flush.
    pub fn pending_bytes(&self) -> usize {
        self.persist_bytes
    }

    /// Whether anything waits for a flush.
    pub fn has_pending(&self) -> bool {
        !(self.early.is_empty()
            && self.persist.is_empty()
            && self.durable.is_empty()
            && self.changes.is_empty())
    }

    /// Takes everything pending, in the order it must be carried out.
    pub fn flush(&mut self) -> Flush {
        self.steps = 0;
        self.persist_bytes = 0;
        self.server.flush_taken();
        let persist = std::mem::take(&mut self.persist);
        let mut early = std::mem::take(&mut self.early);
        let mut durable = std::mem::take(&mut self.durable);
        #[cfg(feature = "mutations")]
        let guard =
            self.server.config().mutation != Some(crate::config::Mutation::EarlyBeforePromise);
        #[cfg(not(feature = "mutations"))]
        let guard = true;
        if guard
            && persist.iter().any(|op| matches!(op, PersistOp::Promise(_)))
            && !early.is_empty()
        {
            // See the module docs: nothing leaves before the promise it is sent under.
            early.append(&mut durable);
            durable = early;
            early = Vec::new();
        }
        Flush {
            send_early: coalesce(early),
            persist,
            send_durable: coalesce(durable),
            executed: std::mem::take(&mut self.executed),
            notes: std::mem::take(&mut self.notes),
            changes: std::mem::take(&mut self.changes),
        }
    }

    /// The earliest armed timer's deadline.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.timers.values().min().copied()
    }

    /// Fires every timer due at `now`; returns how many fired.
    pub fn fire_due(&mut self, now: Duration) -> usize {
        let due: Vec<TimerKind> = self
            .timers
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(k, _)| *k)
            .collect();
        let mut fired = 0;
        for kind in due {
            self.timers.remove(&kind);
            let quorum = self.server.config().quorum();
            if kind == TimerKind::Election && self.online.is_some_and(|n| n < quorum) {
                // Not ready: standing for election without a majority online only churns
                // ballots. Look again after another timeout.
                let after = self.server.config().election_timeout;
                self.timers.insert(kind, now + after);
                continue;
            }
            fired += 1;
            self.step(now, Input::Timer(kind));
        }
        fired
    }

    /// How many servers (this one included) are known to be online.
    pub fn set_online(&mut self, servers: usize) {
        self.online = Some(servers);
    }

    /// Client commands executed since the last call.
    pub fn take_executed_commands(&mut self) -> u64 {
        std::mem::take(&mut self.executed_commands)
    }

    fn absorb(&mut self, now: Duration, ready: Ready) {
        let Ready {
            send_now,
            persist,
            send_after,
            timers,
            executed,
            executed_commands,
            notes,
            changes,
        } = ready;
        self.steps += 1;
        self.early.extend(send_now);
        self.persist_bytes += persist
            .iter()
            .map(crate::limits::persist_size)
            .sum::<usize>();
        self.persist.extend(persist);
        self.durable.extend(send_after);
        for t in timers {
            let jitter = t.jitter.as_nanos().min(u128::from(u64::MAX)) as u64;
            let extra = if jitter == 0 {
                0
            } else {
                self.rng.upto(jitter)
            };
            let at = now
                .saturating_add(t.after)
                .saturating_add(Duration::from_nanos(extra));
            self.timers.insert(t.kind, at);
        }
        self.executed.extend(executed);
        self.executed_commands += executed_commands;
        self.notes.extend(notes);
        self.changes.extend(changes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::message::{Dest, Message};

    fn driver(id: u32, n: u32) -> Driver {
        let mut d = Driver::new(Server::new(Config::new(id, n)).unwrap(), 7);
        d.start(Duration::ZERO);
        d
    }

    #[test]
    fn jitter_is_fixed_by_the_seed() {
        let a = driver(1, 3);
        let b = driver(1, 3);
        assert_eq!(a.next_deadline(), b.next_deadline());
        let mut c = Driver::new(Server::new(Config::new(1, 3)).unwrap(), 8);
        c.start(Duration::ZERO);
        assert_ne!(a.next_deadline(), c.next_deadline());
    }

    #[test]
    fn a_one_server_leader_sends_nothing_before_its_promise_is_durable() {
        let mut d = driver(1, 1);
        let t = d.next_deadline().unwrap();
        d.fire_due(t);
        assert_eq!(d.server().role(), crate::RoleKind::Leader);
        let f = d.flush();
        assert!(f
            .persist
            .iter()
            .any(|op| matches!(op, PersistOp::Promise(_))));
        assert!(f.send_early.is_empty(), "{:?}", f.send_early);
        // The next flush has no new promise: its Accepts may go ahead of the write.
        d.step(
            t,
            Input::Request(crate::Command {
                client: "u/1".into(),
                seq: 1,
                op: crate::Op::Put {
                    key: "k".into(),
                    value: "v".into(),
                },
            }),
        );
        let f = d.flush();
        assert!(f
            .send_durable
            .iter()
            .any(|o| matches!(o.to, Dest::Client(_)) && matches!(o.msg, Message::Reply { .. })));
    }

    #[test]
    fn a_lone_server_notes_its_election_and_holds_its_quorum() {
        let mut d = driver(1, 1);
        assert_eq!(d.server().quorum_until(), None);
        let t = d.next_deadline().unwrap();
        d.fire_due(t);
        let f = d.flush();
        let ballot = d.server().ballot();
        assert_eq!(
            f.notes,
            vec![
                Note::ElectionStarted { ballot },
                Note::ElectionWon { ballot }
            ]
        );
        assert_eq!(d.server().quorum_until(), Some(Duration::MAX));
        assert!(d.flush().notes.is_empty(), "notes are handed out once");
    }

    /// Server 2 says yes to whatever pre-vote server 1 has under way, so it stands. Returns
    /// the notes of the flush it looked into.
    fn pre_vote_yes(d: &mut Driver, now: Duration) -> Vec<Note> {
        let f = d.flush();
        let asked = f
            .messages()
            .find_map(|o| match o.msg {
                Message::PreVote { ballot } => Some(ballot),
                _ => None,
            })
            .expect("a pre-vote");
        let msg = Message::PreVoteAck {
            ballot: asked,
            promised: crate::Ballot::ZERO,
        };
        d.step(now, Input::Message { from: 2, msg });
        f.notes
    }

    #[test]
    fn a_candidate_without_a_majority_notes_the_lost_election_and_has_no_quorum() {
        let mut d = driver(1, 3);
        let mut notes = Vec::new();
        for _ in 0..100 {
            let t = d.next_deadline().unwrap();
            d.fire_due(t);
            if d.server().role() == crate::RoleKind::Follower {
                notes.extend(pre_vote_yes(&mut d, t));
            }
            notes.extend(d.flush().notes);
            assert_eq!(d.server().quorum_until(), None);
            if notes.len() >= 3 {
                break;
            }
        }
        let Some(Note::ElectionStarted { ballot: first }) = notes.first().cloned() else {
            panic!("{notes:?}");
        };
        assert_eq!(
            notes.get(1),
            Some(&Note::ElectionLost {
                ballot: first,
                why: crate::LostWhy::NoMajority
            }),
            "{notes:?}"
        );
        assert!(matches!(notes.get(2), Some(Note::ElectionStarted { ballot }) if *ballot > first));
    }

    #[test]
    fn a_server_that_hears_nobody_never_bids() {
        let mut d = driver(1, 3);
        for _ in 0..100 {
            let t = d.next_deadline().unwrap();
            d.fire_due(t);
            let f = d.flush();
            assert!(
                f.messages()
                    .all(|o| matches!(o.msg, Message::PreVote { .. })),
                "only pre-votes leave a server nobody answers: {:?}",
                f.messages().collect::<Vec<_>>()
            );
            assert_eq!(d.server().role(), crate::RoleKind::Follower);
        }
        assert_eq!(d.server().ballot(), crate::Ballot::ZERO, "nothing promised");
    }

    #[test]
    fn elections_wait_for_a_majority_online() {
        let mut d = driver(1, 3);
        d.set_online(1);
        let t = d.next_deadline().unwrap();
        assert_eq!(d.fire_due(t), 0);
        assert_eq!(d.server().role(), crate::RoleKind::Follower);
        d.set_online(2);
        let t = d.next_deadline().unwrap();
        assert_eq!(d.fire_due(t), 1);
        pre_vote_yes(&mut d, t);
        assert_eq!(d.server().role(), crate::RoleKind::Candidate);
    }
}
