//! Watching keys: every committed change of a key (or of the keys under a prefix), in
//! revision order, with nothing missing, across lost messages, reconnects and leader
//! changes.
//!
//! The leader publishes each change on the key's watch topic ([`crate::topics`]), at QoS 0:
//! a message can be lost (a broker queue, a reconnect, a leader that dies between executing
//! and publishing). So the watcher never trusts the stream alone. Every event says which
//! revision came before it in the whole store (`prev_store_revision`) and for its key
//! (`prev_revision`); an event is passed on only once everything before it is known to be
//! covered, and otherwise the watcher asks the servers for the changes since the last revision
//! it covers ([`Client::changes`]), which the leader answers linearizably from its history.
//! The same question is asked after every reconnect and after a quiet second, so a lost last
//! event is found too. [`WatchState`] is that bookkeeping, without IO; [`Watcher`] drives it.

use crate::client::{Changes, Client, ClientError, ClientOptions};
use crate::transport::{Connection, Incoming, Session};
use mqpaxos_core::Change;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// What a watcher knows: everything matching up to `covered` has been passed on; later events
/// wait in `held` until what comes before them is known.
#[derive(Clone, Debug)]
pub struct WatchState {
    key: String,
    prefix: bool,
    covered: u64,
    held: BTreeMap<u64, Change>,
}

/// The most events held back waiting for a gap to be filled: past it, the newest are dropped
/// (the history answer brings them again).
const MAX_HELD: usize = 10_000;

impl WatchState {
    /// Watching `key` (or the keys under it, with `prefix`), having seen everything up to
    /// revision `covered`.
    pub fn new(key: &str, prefix: bool, covered: u64) -> Self {
        WatchState {
            key: key.to_string(),
            prefix,
            covered,
            held: BTreeMap::new(),
        }
    }

    /// The revision up to which every matching change has been passed on.
    pub fn covered(&self) -> u64 {
        self.covered
    }

    /// A live event; returns what can be passed on now, in order.
    pub fn on_event(&mut self, c: Change) -> Vec<Change> {
        if c.revision > self.covered
            && c.matches(&self.key, self.prefix)
            && (self.held.len() < MAX_HELD || self.held.contains_key(&c.revision))
        {
            self.held.insert(c.revision, c);
        }
        self.release()
    }

    /// Whether something held waits for changes nobody has shown yet: ask the history for
    /// those from `covered() + 1`.
    pub fn gap(&self) -> bool {
        !self.held.is_empty()
    }

    /// An answer from the history for the changes from `covered() + 1`; returns what can be
    /// passed on now, in order.
    pub fn on_changes(&mut self, from: u64, answer: Changes) -> Vec<Change> {
        let upto = match (answer.more, answer.changes.last()) {
            (true, Some(last)) => last.revision,
            (true, None) => from.saturating_sub(1),
            (false, _) => answer.revision,
        };
        for c in answer.changes {
            if c.revision > self.covered && c.matches(&self.key, self.prefix) {
                self.held.insert(c.revision, c);
            }
        }
        let mut out = Vec::new();
        if from <= self.covered + 1 && upto > self.covered {
            // Everything up to `upto` is now known: what is held up to there is complete.
            while let Some(entry) = self.held.first_entry() {
                if *entry.key() > upto {
                    break;
                }
                out.push(entry.remove());
            }
            self.covered = upto;
        }
        out.extend(self.release());
        out
    }

    /// Passes on held events whose predecessors are all covered.
    fn release(&mut self) -> Vec<Change> {
        let mut out = Vec::new();
        while let Some(entry) = self.held.first_entry() {
            let c = entry.get();
            let chained = c.prev_store_revision <= self.covered
                // One key's changes chain by themselves, except across a delete (after one,
                // a new key's previous revision is 0 whatever happened in between).
                || (!self.prefix && c.prev_revision != 0 && c.prev_revision <= self.covered);
            if !chained {
                break;
            }
            self.covered = c.revision;
            out.push(entry.remove());
        }
        out
    }
}

/// A running watch: [`Watcher::next`] returns the changes one by one.
pub struct Watcher {
    client: Client,
    conn: Connection,
    state: WatchState,
    /// Where this watcher's registration is retained, cleared as it closes.
    registration: String,
    ready: VecDeque<Change>,
    idle: Duration,
    sync_due: bool,
}

impl Watcher {
    /// Starts watching `key` (with `prefix`: every key starting with it) from revision
    /// `from` (inclusive), or from now (`None`).
    pub async fn start(
        opts: ClientOptions,
        key: &str,
        prefix: bool,
        from: Option<u64>,
    ) -> Result<Watcher, ClientError> {
        let client = Client::connect(opts.clone()).await?;
        let filter = client.topics().watch_filter(key, prefix);
        let name = format!("{:016x}", rand::random::<u64>());
        // The leader publishes only the changes of keys a watcher registered for
        // (`crate::interest`): retained, so servers that start later see it too, and
        // withdrawn by the broker through the last will if this process dies. Registered
        // on every connect, since a broker that lost its retained store lost it too. An
        // exact key registers as a prefix: the few other keys it lets through are
        // filtered out here.
        let registration = client.topics().watching(&opts.broker.user, &name);
        let body = serde_json::to_vec(&serde_json::json!({ "prefix": key }))
            .map_err(|e| ClientError::Invalid(e.to_string()))?;
        let session = Session {
            client_id: format!("mqpaxos-{}-watch-{name}", opts.broker.user),
            subscriptions: vec![filter],
            on_connect: vec![(registration.clone(), body)],
            will: Some((registration.clone(), Vec::new())),
        };
        // Subscribed before the start is read, so no change after it goes unseen for long:
        // one that slips between is found by the first quiet-second question.
        let conn = Connection::open(&opts.broker, session, Some(opts.timeout)).await?;
        let covered = match from {
            Some(from) => from.saturating_sub(1),
            None => client.revision().await?,
        };
        Ok(Watcher {
            client,
            conn,
            registration,
            state: WatchState::new(key, prefix, covered),
            ready: VecDeque::new(),
            idle: Duration::from_secs(1),
            sync_due: from.is_some(),
        })
    }

    /// The revision up to which every change has been returned (or is ready to be).
    pub fn covered(&self) -> u64 {
        self.state.covered()
    }

    /// The next change, in revision order. Waits as long as nothing changes; fails only if
    /// the history it needs is compacted or the broker refuses the connection.
    pub async fn next(&mut self) -> Result<Change, ClientError> {
        loop {
            if let Some(c) = self.ready.pop_front() {
                return Ok(c);
            }
            if self.sync_due || self.state.gap() {
                self.sync().await?;
                continue;
            }
            let m = tokio::time::timeout(self.idle, self.conn.recv()).await;
            match m {
                Err(_) => self.sync_due = true,
                Ok(None) => return Err(crate::TransportError::Closed.into()),
                Ok(Some(Incoming::Publish { payload, .. })) => {
                    if let Some(c) = crate::json::parse_event(&payload) {
                        self.ready.extend(self.state.on_event(c));
                    }
                }
                // Events may have gone by while away.
                Ok(Some(Incoming::Connected)) => self.sync_due = true,
                Ok(Some(Incoming::Disconnected(_))) => {}
                Ok(Some(Incoming::Refused(why))) => {
                    return Err(crate::TransportError::Refused {
                        url: String::new(),
                        why,
                    }
                    .into())
                }
            }
        }
    }

    /// Asks the history for everything after what is covered.
    async fn sync(&mut self) -> Result<(), ClientError> {
        let from = self.state.covered() + 1;
        let answer = match self
            .client
            .changes(&self.state.key, self.state.prefix, from)
            .await
        {
            Ok(a) => a,
            // No leader within the timeout (a partition, an election): the stream stays
            // held, ask again.
            Err(ClientError::Timeout(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let more = answer.more;
        self.ready.extend(self.state.on_changes(from, answer));
        self.sync_due = more;
        Ok(())
    }

    pub async fn close(self) {
        // A clean disconnect sends no last will: withdraw the registration first, so the
        // leader stops publishing for it.
        let _ = self
            .conn
            .publish_retained(self.registration, Vec::new())
            .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.conn.close().await;
        self.client.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqpaxos_core::ChangeKind;

    fn put(revision: u64, key: &str, prev_revision: u64, prev_store: u64) -> Change {
        Change {
            revision,
            key: key.into(),
            kind: ChangeKind::Put {
                value: format!("v{revision}").into(),
                create: revision,
                version: 1,
            },
            prev_revision,
            prev_store_revision: prev_store,
        }
    }

    fn revs(v: &[Change]) -> Vec<u64> {
        v.iter().map(|c| c.revision).collect()
    }

    #[test]
    fn a_chained_stream_passes_straight_through() {
        let mut w = WatchState::new("a/", true, 1000);
        assert_eq!(revs(&w.on_event(put(2000, "a/x", 0, 1000))), [2000]);
        assert_eq!(revs(&w.on_event(put(3000, "a/y", 0, 2000))), [3000]);
        // A duplicate and a key outside the prefix change nothing.
        assert!(w.on_event(put(3000, "a/y", 0, 2000)).is_empty());
        assert!(w.on_event(put(4000, "b", 0, 3000)).is_empty());
        assert!(!w.gap());
    }

    #[test]
    fn a_gap_holds_events_until_the_history_fills_it() {
        let mut w = WatchState::new("a/", true, 1000);
        // 2000 (a/x) was lost; 3000 says the store changed at 2000.
        assert!(w.on_event(put(3000, "a/y", 0, 2000)).is_empty());
        assert!(w.gap());
        let answer = Changes {
            revision: 3000,
            changes: vec![put(2000, "a/x", 0, 1000), put(3000, "a/y", 0, 2000)],
            more: false,
        };
        assert_eq!(revs(&w.on_changes(1001, answer)), [2000, 3000]);
        assert_eq!(w.covered(), 3000);
        assert!(!w.gap());
        // A change outside the prefix in between: the history shows nothing was missed.
        assert!(w.on_event(put(5000, "a/z", 0, 4000)).is_empty());
        let answer = Changes {
            revision: 5000,
            changes: vec![put(5000, "a/z", 0, 4000)],
            more: false,
        };
        assert_eq!(revs(&w.on_changes(3001, answer)), [5000]);
    }

    #[test]
    fn one_keys_changes_chain_by_their_own_revision() {
        let mut w = WatchState::new("k", false, 1000);
        assert_eq!(revs(&w.on_event(put(2000, "k", 1000, 1500))), [2000]);
        // Not chained across a delete: prev_revision 0 says nothing about what came before.
        assert!(w.on_event(put(4000, "k", 0, 3000)).is_empty());
        assert!(w.gap());
    }

    #[test]
    fn a_cut_answer_covers_only_up_to_its_last_change() {
        let mut w = WatchState::new("k", false, 0);
        let answer = Changes {
            revision: 9000,
            changes: vec![put(1000, "k", 0, 0), put(2000, "k", 1000, 1000)],
            more: true,
        };
        assert_eq!(revs(&w.on_changes(1, answer)), [1000, 2000]);
        assert_eq!(w.covered(), 2000);
        let answer = Changes {
            revision: 9000,
            changes: vec![],
            more: false,
        };
        assert!(w.on_changes(2001, answer).is_empty());
        assert_eq!(w.covered(), 9000);
    }
}
