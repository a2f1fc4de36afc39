//! The acceptor's log, snapshots, and the durable state a server must keep across crashes.
//!
//! Slots below `start` have been executed and folded into the snapshot, which is how memory
//! stays bounded by live data instead of history. [`Durable`] is exactly what must survive a
//! crash for Paxos to stay safe: the promised ballot, the accepted entries and the snapshot.
//! The core never writes it anywhere itself: it emits [`PersistOp`]s and the runtime (or the
//! simulator) applies them to real or simulated storage. Pure data; no IO.

use crate::ballot::{Ballot, NodeId, Slot};
use crate::kv::{Command, KvStore};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// The incarnation of each server, as far as this one knows: how many times that server has
/// rejoined after losing durable state. A server that never lost state is at 0 and is left
/// out, so the map is empty in a healthy cluster.
pub type Incarnations = BTreeMap<NodeId, u64>;

/// What one slot holds: a batch of commands. An empty batch is a no-op, which is how a new
/// leader fills holes in the log.
pub type Value = Vec<Command>;

/// An accepted value and the ballot it was accepted in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub ballot: Ballot,
    pub value: Value,
}

/// The state machine as of just before slot `next_slot`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub next_slot: Slot,
    pub kv: KvStore,
}

/// A window of slots `[start, start + entries.len())`; a `None` is a slot with nothing
/// accepted yet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Log {
    start: Slot,
    entries: VecDeque<Option<Entry>>,
}

impl Log {
    pub fn new(start: Slot) -> Self {
        Log {
            start,
            entries: VecDeque::new(),
        }
    }

    /// The first slot still held; everything before it is in the snapshot.
    pub fn start(&self) -> Slot {
        self.start
    }

    /// One past the highest slot held.
    pub fn end(&self) -> Slot {
        self.start + self.entries.len() as Slot
    }

    pub fn get(&self, slot: Slot) -> Option<&Entry> {
        let i = slot.checked_sub(self.start)?;
        self.entries.get(usize::try_from(i).ok()?)?.as_ref()
    }

    /// Stores `entry` at `slot`. Slots before `start` are ignored: they are already chosen and
    /// executed.
    pub fn insert(&mut self, slot: Slot, entry: Entry) {
        let Some(i) = slot.checked_sub(self.start) else {
            return;
        };
        let i = i as usize;
        if i >= self.entries.len() {
            self.entries.resize(i + 1, None);
        }
        self.entries[i] = Some(entry);
    }

    /// Drops every slot before `slot`.
    pub fn truncate_before(&mut self, slot: Slot) {
        if slot <= self.start {
            return;
        }
        let n = ((slot - self.start) as usize).min(self.entries.len());
        self.entries.drain(..n);
        self.start = slot;
    }

    /// Entries at `from` and after, with their slots.
    pub fn iter_from(&self, from: Slot) -> impl Iterator<Item = (Slot, &Entry)> {
        let skip = from.saturating_sub(self.start) as usize;
        let start = self.start;
        self.entries
            .iter()
            .enumerate()
            .skip(skip)
            .filter_map(move |(i, e)| e.as_ref().map(|e| (start + i as Slot, e)))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A change to durable state. Whoever drives the core must make each one durable before it
/// sends any message listed after it in the same [`crate::Ready`] (`send_after`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PersistOp {
    Promise(Ballot),
    Accept {
        slot: Slot,
        entry: Entry,
    },
    /// Replaces the snapshot and drops log slots before its `next_slot`.
    Snapshot(Snapshot),
    /// Server `server` is known to be at least at incarnation `incarnation`.
    Incarnation {
        server: NodeId,
        incarnation: u64,
    },
    /// This server's durable state may have lost records it had acknowledged: it must not
    /// vote until it has re-learned the cluster's state (`true`), or it has (`false`).
    Rejoining(bool),
}

/// Records as servers wrote them before keys carried revisions (WAL formats up to 3): the
/// same shapes but for the store inside snapshots. Storage reads old data directories with
/// these and converts them ([`legacy::PersistOp::upgrade`]).
pub mod legacy {
    use super::{Ballot, Entry, NodeId, Slot};
    use crate::kv::LegacyKvStore;
    use serde::{Deserialize, Serialize};

    #[derive(Clone, Debug, Serialize, Deserialize)]
    pub enum PersistOp {
        Promise(Ballot),
        Accept { slot: Slot, entry: Entry },
        Snapshot(Snapshot),
        Incarnation { server: NodeId, incarnation: u64 },
        Rejoining(bool),
    }

    #[derive(Clone, Debug, Serialize, Deserialize)]
    pub struct Snapshot {
        pub next_slot: Slot,
        pub kv: LegacyKvStore,
    }

    impl PersistOp {
        /// Today's record for an old one. `before_sessions`: the log predates sessions opened
        /// through the log (WAL formats 0 and 2), so its commands are wrapped in
        /// [`crate::kv::Op::Once`] to execute as they did then.
        pub fn upgrade(self, before_sessions: bool) -> super::PersistOp {
            match self {
                PersistOp::Promise(b) => super::PersistOp::Promise(b),
                PersistOp::Accept { slot, mut entry } => {
                    if before_sessions {
                        for cmd in &mut entry.value {
                            let op = std::mem::replace(&mut cmd.op, crate::kv::Op::Open);
                            cmd.op = match op {
                                already @ crate::kv::Op::Once(_) => already,
                                op => crate::kv::Op::Once(Box::new(op)),
                            };
                        }
                    }
                    super::PersistOp::Accept { slot, entry }
                }
                PersistOp::Snapshot(s) => super::PersistOp::Snapshot(super::Snapshot {
                    next_slot: s.next_slot,
                    kv: s.kv.into(),
                }),
                PersistOp::Incarnation {
                    server,
                    incarnation,
                } => super::PersistOp::Incarnation {
                    server,
                    incarnation,
                },
                PersistOp::Rejoining(on) => super::PersistOp::Rejoining(on),
            }
        }
    }
}

/// The state that must survive a crash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Durable {
    pub promised: Ballot,
    pub log: Log,
    pub snapshot: Snapshot,
    pub incarnations: Incarnations,
    pub rejoining: bool,
}

impl Durable {
    /// A fresh server's state: nothing promised, nothing accepted, an empty store.
    pub fn new(max_sessions: usize) -> Self {
        Durable {
            promised: Ballot::ZERO,
            log: Log::new(0),
            snapshot: Snapshot {
                next_slot: 0,
                kv: KvStore::new(max_sessions),
            },
            incarnations: Incarnations::new(),
            rejoining: false,
        }
    }

    /// The ops that rebuild the parts of this state that are not the log or the snapshot, for
    /// storage that rewrites itself compactly.
    pub fn meta_ops(&self) -> Vec<PersistOp> {
        let mut ops = vec![PersistOp::Promise(self.promised)];
        for (server, incarnation) in &self.incarnations {
            ops.push(PersistOp::Incarnation {
                server: *server,
                incarnation: *incarnation,
            });
        }
        if self.rejoining {
            ops.push(PersistOp::Rejoining(true));
        }
        ops
    }

    /// Takes the op by value: its entry moves into the log rather than being copied (every
    /// caller is done with the op once it is applied, and an entry is a whole batch of
    /// commands, each with its own allocations).
    pub fn apply(&mut self, op: PersistOp) {
        match op {
            PersistOp::Promise(b) => {
                debug_assert!(b >= self.promised, "a promise never goes down");
                self.promised = b.max(self.promised);
            }
            PersistOp::Accept { slot, entry } => self.log.insert(slot, entry),
            PersistOp::Snapshot(s) => {
                if s.next_slot >= self.snapshot.next_slot {
                    self.log.truncate_before(s.next_slot);
                    self.snapshot = s;
                }
            }
            PersistOp::Incarnation {
                server,
                incarnation,
            } => {
                let known = self.incarnations.entry(server).or_insert(0);
                *known = (*known).max(incarnation);
            }
            PersistOp::Rejoining(on) => self.rejoining = on,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(round: u64) -> Entry {
        Entry {
            ballot: Ballot::new(round, 1),
            value: vec![],
        }
    }

    #[test]
    fn log_keeps_holes_and_truncates() {
        let mut log = Log::new(0);
        log.insert(3, e(1));
        assert_eq!(log.end(), 4);
        assert!(log.get(1).is_none());
        assert_eq!(log.get(3), Some(&e(1)));
        log.truncate_before(2);
        assert_eq!(log.start(), 2);
        assert_eq!(
            log.iter_from(0).map(|(s, _)| s).collect::<Vec<_>>(),
            vec![3]
        );
        log.insert(1, e(2));
        assert!(log.get(1).is_none(), "slots before start stay gone");
        log.truncate_before(10);
        assert_eq!((log.start(), log.end()), (10, 10));
    }
}
