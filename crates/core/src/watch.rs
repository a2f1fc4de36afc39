//! Change events and the recent history they are served from (watch and "changes since").
//!
//! Every change a command makes to the store (a put, an append, a successful cas, a delete of
//! a key that existed) is one [`Change`], with the revision the store gave it
//! ([`crate::kv::revision_at`]). Each server keeps the most recent changes, up to a budget in
//! bytes ([`crate::Config::history_bytes`]), in a [`History`]: a watcher that missed events
//! (MQTT may drop one, leadership may move) asks for the changes since a revision and gets
//! them from there, or learns that they are gone ("compacted", as etcd says) and must read
//! the key anew.
//!
//! The history is a cache of the log, not replicated state: it is rebuilt on restart from the
//! slots the server replays after its snapshot, and starts again after a snapshot is
//! installed. So different servers may hold different lengths of it; every answer is still
//! correct, because a server answers only for revisions it holds all changes after
//! ([`History::floor`]) and refuses the rest. Pure data; no IO.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// What a change did to its key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChangeKind {
    /// The key now holds `value`; it was created at revision `create` and this is its
    /// `version`-th change since.
    Put {
        /// Shared with the store's record (see [`crate::kv::Record::value`]).
        #[serde(deserialize_with = "crate::kv::arc_str::deserialize")]
        value: std::sync::Arc<str>,
        create: u64,
        version: u64,
    },
    Delete,
}

/// One committed change, as watchers see it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Change {
    pub revision: u64,
    pub key: String,
    pub kind: ChangeKind,
    /// The key's revision before this change (0: it did not exist).
    pub prev_revision: u64,
    /// The store's revision before this change: the previous change to any key. A watcher
    /// that last saw a revision below it may have missed changes in between.
    pub prev_store_revision: u64,
}

impl Change {
    /// Bytes it holds (estimated from above), for the history's budget and answer sizes.
    pub fn size(&self) -> usize {
        let value = match &self.kind {
            ChangeKind::Put { value, .. } => value.len(),
            ChangeKind::Delete => 0,
        };
        self.key.len() + value + 64
    }

    /// Whether a watch of `key` (or, with `prefix`, of every key starting with it) sees it.
    pub fn matches(&self, key: &str, prefix: bool) -> bool {
        if prefix {
            self.key.starts_with(key)
        } else {
            self.key == key
        }
    }
}

/// The most changes one answer carries.
pub const MAX_CHANGES_PER_ANSWER: usize = 1000;

/// The most bytes of changes one answer carries (at least one change always): far below the
/// message limit even once a JSON encoding has escaped every byte of it.
pub const MAX_ANSWER_BYTES: usize = 2 << 20;

/// The recent changes one server holds: every change with a revision above [`History::floor`]
/// up to the store's, oldest first, within a byte budget.
#[derive(Clone, Debug, Default)]
pub struct History {
    floor: u64,
    changes: VecDeque<Change>,
    bytes: usize,
    max_bytes: usize,
}

/// The changes a watcher asked for are no longer held: only those after `floor` are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compacted {
    pub floor: u64,
}

impl History {
    /// An empty history of a store at revision `floor`, keeping up to `max_bytes`.
    pub fn new(floor: u64, max_bytes: usize) -> Self {
        History {
            floor,
            changes: VecDeque::new(),
            bytes: 0,
            max_bytes,
        }
    }

    /// The revision after which every change is held.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    pub fn len(&self) -> usize {
        self.changes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Bytes held (estimated).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The changes held, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Change> {
        self.changes.iter()
    }

    /// Forgets everything: the store jumped to revision `floor` without its changes (an
    /// installed snapshot).
    pub fn reset(&mut self, floor: u64) {
        self.changes.clear();
        self.bytes = 0;
        self.floor = floor;
    }

    /// Adds the store's newest change, dropping the oldest past the budget.
    pub fn push(&mut self, change: Change) {
        if change.revision <= self.floor {
            // Older than what is held (a replay of a slot already counted): not a new change.
            return;
        }
        self.bytes += change.size();
        self.changes.push_back(change);
        while self.bytes > self.max_bytes {
            let Some(old) = self.changes.pop_front() else {
                break;
            };
            self.bytes -= old.size();
            self.floor = old.revision;
        }
    }

    /// The changes of `key` (or, with `prefix`, of the keys starting with it) from revision
    /// `from` on, oldest first, at most [`MAX_CHANGES_PER_ANSWER`] and about
    /// [`MAX_ANSWER_BYTES`]; `true` with them if more were left out. Refused if changes
    /// after `from - 1` are no longer all held.
    pub fn since(
        &self,
        key: &str,
        prefix: bool,
        from: u64,
    ) -> Result<(Vec<Change>, bool), Compacted> {
        if from.saturating_sub(1) < self.floor {
            return Err(Compacted { floor: self.floor });
        }
        let start = self.changes.partition_point(|c| c.revision < from);
        let mut out = Vec::new();
        let mut bytes = 0;
        for c in self.changes.range(start..) {
            if !c.matches(key, prefix) {
                continue;
            }
            if out.len() == MAX_CHANGES_PER_ANSWER
                || (!out.is_empty() && bytes + c.size() > MAX_ANSWER_BYTES)
            {
                return Ok((out, true));
            }
            bytes += c.size();
            out.push(c.clone());
        }
        Ok((out, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(revision: u64, key: &str, value: &str, prev_store: u64) -> Change {
        Change {
            revision,
            key: key.into(),
            kind: ChangeKind::Put {
                value: value.into(),
                create: revision,
                version: 1,
            },
            prev_revision: 0,
            prev_store_revision: prev_store,
        }
    }

    #[test]
    fn answers_only_what_it_holds_all_of() {
        let mut h = History::new(0, 1 << 20);
        h.push(put(1000, "a/1", "x", 0));
        h.push(put(2000, "b", "y", 1000));
        h.push(put(2001, "a/2", "z", 2000));
        let (got, more) = h.since("a/", true, 1).unwrap();
        assert!(!more);
        assert_eq!(
            got.iter().map(|c| c.revision).collect::<Vec<_>>(),
            [1000, 2001]
        );
        let (got, _) = h.since("b", false, 2000).unwrap();
        assert_eq!(got.len(), 1);
        assert!(h.since("b", false, 2001).unwrap().0.is_empty());
        // A replayed slot adds nothing.
        h.reset(2001);
        assert_eq!(h.since("a/", true, 1), Err(Compacted { floor: 2001 }));
        assert!(h.since("a/", true, 2002).unwrap().0.is_empty());
        h.push(put(2001, "a/2", "z", 2000));
        assert!(h.is_empty());
    }

    #[test]
    fn the_budget_moves_the_floor_up() {
        let mut h = History::new(0, 3 * put(0, "k", "v", 0).size());
        for i in 1..=10u64 {
            h.push(put(i * 1000, "k", "v", (i - 1) * 1000));
        }
        assert_eq!(h.len(), 3);
        assert_eq!(h.floor(), 7000);
        assert!(h.since("k", false, 7000).is_err());
        assert_eq!(h.since("k", false, 7001).unwrap().0.len(), 3);
        // Nothing is kept with no budget, and the floor follows the store.
        let mut none = History::new(5, 0);
        none.push(put(6000, "k", "v", 5));
        assert_eq!((none.len(), none.floor()), (0, 6000));
    }

    #[test]
    fn long_answers_are_cut_and_say_so() {
        let mut h = History::new(0, usize::MAX);
        let big = "x".repeat(MAX_ANSWER_BYTES / 2);
        for i in 1..=3u64 {
            h.push(put(i * 1000, "k", &big, (i - 1) * 1000));
        }
        let (got, more) = h.since("k", false, 1).unwrap();
        assert_eq!((got.len(), more), (1, true));
        let (got, more) = h.since("k", false, 2000).unwrap();
        assert_eq!((got.len(), more), (1, true));
        for i in 4..=(MAX_CHANGES_PER_ANSWER as u64 + 10) {
            h.push(put(i * 1000, "s", "", (i - 1) * 1000));
        }
        let (got, more) = h.since("s", false, 1).unwrap();
        assert_eq!((got.len(), more), (MAX_CHANGES_PER_ANSWER, true));
    }
}
