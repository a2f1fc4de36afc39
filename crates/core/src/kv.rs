//! The replicated key/value state machine and its at-most-once session table.
//!
//! Commands are applied in slot order on every replica. Each command carries
//! `(session id, sequence number)`; the session table remembers the last sequence number and
//! result per session so that a resent or duplicated command is executed at most once and its
//! original result is returned again. The table is bounded: past `max_sessions` a session is
//! forgotten, deterministically, so every replica forgets the same one: the longest idle (by
//! slot) session **of the user with the most sessions**, so that a tenant opening sessions
//! without end only ever evicts its own, never another user's (the user is a session id's
//! first topic level, which the servers check against the broker's login).
//!
//! Sessions are opened through the log, as Raft's client sessions are: a client sends
//! [`Op::Open`] under its own id `<user>/<token>` and gets back the slot the open executed in;
//! its session is then `<user>/<token>/<slot>`, and its commands carry that id. A session id
//! therefore names one open, ever: an open executed twice (a resend, a delayed copy) opens two
//! different sessions, never the same one again. So a command whose session is not in the
//! table (evicted, or never opened) is refused with [`OpResult::SessionExpired`] instead of
//! being executed as if new, and a retry from a forgotten session can never execute twice.
//! Gets need no session (executing one twice changes nothing).
//!
//! **Revisions**, as etcd keeps them: every change gets a revision from its place in the log,
//! [`revision_at`]`(slot, index)`, so revisions only grow, every change has its own, and the
//! slot of any revision is known without an index (`revision / 1000 - 1`). Each key carries
//! the revision that created it, the one that last changed it and how many changes it has had
//! since it was created ([`Record`]); [`Op::Read`] returns them, and [`Op::CasRevision`]
//! swaps only if the key's last change is the one the client saw. Pure data; no IO.

use crate::ballot::Slot;
use imbl::{OrdMap, OrdSet};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Decodes an `Arc<str>` with one copy, from the input straight into the shared allocation.
/// serde's own (feature `rc`) goes through a `String` and copies again into the `Arc`: a
/// second copy of every value each server decodes, on the hot path.
pub(crate) mod arc_str {
    use serde::de::{Deserializer, Error, Visitor};
    use std::sync::Arc;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<str>, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Arc<str>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: Error>(self, v: &str) -> Result<Arc<str>, E> {
                Ok(Arc::from(v))
            }
        }
        d.deserialize_str(V)
    }
}

/// A client's id as it appears on the wire. Clients must pick a fresh id per incarnation
/// (sequence numbers restart at 1), or their first commands would be taken for duplicates.
pub type ClientId = String;

/// One key/value operation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Op {
    Get {
        key: String,
    },
    /// `value` is shared with the log entries that carry the command and, once it
    /// executes, with the store's record: one allocation per value from decode to store
    /// (serialized as a string, so the bytes are unchanged).
    Put {
        key: String,
        #[serde(deserialize_with = "arc_str::deserialize")]
        value: Arc<str>,
    },
    /// Appends to the current value; a missing key counts as the empty string.
    Append {
        key: String,
        #[serde(deserialize_with = "arc_str::deserialize")]
        value: Arc<str>,
    },
    Delete {
        key: String,
    },
    /// Swaps in `new` if the current value equals `expected` (`None`: the key is absent).
    Cas {
        key: String,
        expected: Option<String>,
        #[serde(deserialize_with = "arc_str::deserialize")]
        new: Arc<str>,
    },
    /// Opens a session (see the module docs); sent under the client's own id, not a session's.
    Open,
    /// A get that also returns the key's revisions and the store's ([`OpResult::Entry`]).
    Read {
        key: String,
    },
    /// Swaps in `new` if the key's last change has revision `revision` (0: the key is absent),
    /// as etcd's transaction on `mod_revision` does.
    CasRevision {
        key: String,
        revision: u64,
        #[serde(deserialize_with = "arc_str::deserialize")]
        new: Arc<str>,
    },
    /// `op` without opening a session first: a client id not yet in the table starts its
    /// session, so the command runs at most once per `(client id, seq)` while the table
    /// remembers the id (after that a retry would run again). For requests that carry their
    /// own unique id instead of a session (the JSON API), and for the commands of logs from
    /// before sessions were opened through the log (WAL formats 0 and 2), which storage wraps
    /// in it when it converts them so they run as they did then.
    Once(Box<Op>),
    /// A piece of a point-in-time copy of the whole state, for backups (`mqpaxos snapshot
    /// save`). `at: None` asks for a new copy: the leader takes it at a commit point it has
    /// confirmed with a quorum (as for a read-index get), so the copy is linearizable. `at:
    /// Some(slot)` with `offset` asks for the rest of the copy taken at `slot`. Never enters
    /// the log; needs no session (it changes nothing).
    SnapshotPiece {
        at: Option<Slot>,
        offset: u64,
    },
    /// The changes of `key` (with `prefix`: of every key starting with it) from revision
    /// `from` on, from the leader's recent history ([`crate::watch`]), for watchers that
    /// missed events. A read: served by the leader at a quorum-confirmed point, never logged.
    Changes {
        key: String,
        prefix: bool,
        from: u64,
    },
}

impl Op {
    pub fn key(&self) -> &str {
        match self {
            Op::Get { key }
            | Op::Put { key, .. }
            | Op::Append { key, .. }
            | Op::Delete { key }
            | Op::Cas { key, .. }
            | Op::Read { key }
            | Op::CasRevision { key, .. }
            | Op::Changes { key, .. } => key,
            Op::Once(op) => op.key(),
            Op::Open | Op::SnapshotPiece { .. } => "",
        }
    }

    /// Whether it only reads (it needs no session and may be served by the read index; a
    /// backup piece always is).
    pub fn is_read(&self) -> bool {
        matches!(
            self,
            Op::Get { .. } | Op::Read { .. } | Op::SnapshotPiece { .. } | Op::Changes { .. }
        )
    }

    /// Short lowercase name, as used in histories and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Get { .. } => "get",
            Op::Put { .. } => "put",
            Op::Append { .. } => "append",
            Op::Delete { .. } => "delete",
            Op::Cas { .. } => "cas",
            Op::Open => "open",
            Op::Read { .. } => "read",
            Op::CasRevision { .. } => "cas_revision",
            Op::Once(_) => "once",
            Op::SnapshotPiece { .. } => "snapshot",
            Op::Changes { .. } => "changes",
        }
    }
}

/// What executing an [`Op`] returned.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OpResult {
    /// A get's value (`None`: no such key).
    Value(Option<String>),
    /// A put or append took effect.
    Done,
    /// A delete: whether the key existed.
    Deleted(bool),
    /// A cas: whether it swapped.
    Swapped(bool),
    /// An open: the slot it executed in, which names the session (`<client>/<slot>`).
    Opened(u64),
    /// A piece of the encoded snapshot (`mqpaxos_core::encode_snapshot`) taken before
    /// `next_slot`: bytes `offset..offset + data.len()` of `total`. A piece of another copy
    /// than the one asked for starts at offset 0: the earlier copy is gone, start over.
    SnapshotPiece {
        next_slot: Slot,
        offset: u64,
        total: u64,
        data: Vec<u8>,
    },
    /// The command's session is not (or no longer) in the table: it was not executed, and
    /// whether an earlier copy of it was is unknown. The client must open a new session.
    SessionExpired,
    /// The command was refused and changed nothing: `code` says why (stable, for programs),
    /// `message` says it for people.
    Rejected { code: ErrorCode, message: String },
    /// A read: the key's value and revisions (`None`: no such key), and the store's revision
    /// (its last change's) when it was read.
    Entry {
        revision: u64,
        entry: Option<Record>,
    },
    /// Changes since a revision ([`Op::Changes`]): every matching change up to the store's
    /// `revision` when read, oldest first, unless `more` says the answer was cut (ask again
    /// from the last one's revision + 1).
    Changes {
        revision: u64,
        changes: Vec<crate::watch::Change>,
        more: bool,
    },
    /// The changes asked for are no longer held: only those after revision `floor` are.
    Compacted { floor: u64 },
}

/// How many revisions each slot has room for: more than the commands a slot can hold
/// ([`crate::limits::MAX_BATCH`]).
pub const REVISIONS_PER_SLOT: u64 = 1000;

/// The revision of the `index`-th command of `slot`. Never below [`REVISIONS_PER_SLOT`]:
/// smaller numbers are free for "absent" (0) and "kept before revisions were" (1).
pub fn revision_at(slot: Slot, index: usize) -> u64 {
    let index = (index as u64).min(REVISIONS_PER_SLOT - 1);
    slot.saturating_add(1)
        .saturating_mul(REVISIONS_PER_SLOT)
        .saturating_add(index)
}

/// The slot a revision was made in (the first slot for the small reserved ones).
pub fn slot_of_revision(revision: u64) -> Slot {
    (revision / REVISIONS_PER_SLOT).saturating_sub(1)
}

/// The revision given to keys carried over from a store that kept no revisions.
pub const REVISION_BEFORE_RECORDS: u64 = 1;

/// A key's value and its history in revisions.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Record {
    /// Shared, not owned: the map's nodes are copied on write while a snapshot shares them
    /// (a snapshot being written, a watch), and a copied node then copies pointers rather
    /// than up to 64 values (with 1 KB values, a whole second store over one snapshot).
    /// Serialized as a string, so the bytes are unchanged.
    #[serde(deserialize_with = "arc_str::deserialize")]
    pub value: Arc<str>,
    /// The revision of the change that created the key (since it last did not exist).
    pub create: u64,
    /// The revision of the key's last change.
    pub modified: u64,
    /// Changes since creation, counting the creation (1 for a new key).
    pub version: u64,
}

/// Why a command was refused. The names ([`ErrorCode::name`]) are stable: clients and scripts
/// may match on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The key is longer than [`crate::limits::MAX_KEY`].
    KeyTooLarge,
    /// A value (or what an append would make of one) is longer than
    /// [`crate::limits::MAX_VALUE`].
    ValueTooLarge,
    /// The client id is not a valid, bounded topic level path.
    InvalidClientId,
    /// The leader holds as many waiting commands as it may; retry later.
    Busy,
    /// An operation clients may not send.
    InvalidOp,
    /// The store is full ([`crate::limits::MAX_STORE`]): delete something first.
    NoSpace,
}

impl ErrorCode {
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::KeyTooLarge => "key_too_large",
            ErrorCode::ValueTooLarge => "value_too_large",
            ErrorCode::InvalidClientId => "invalid_client_id",
            ErrorCode::Busy => "busy",
            ErrorCode::InvalidOp => "invalid_op",
            ErrorCode::NoSpace => "no_space",
        }
    }
}

/// A client command: what the log orders.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Command {
    pub client: ClientId,
    pub seq: u64,
    pub op: Op,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Session {
    seq: u64,
    result: OpResult,
    last_slot: Slot,
}

/// The state machine: data plus the session table. Cloned whole into snapshots.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvStore {
    data: OrdMap<String, Record>,
    sessions: OrdMap<ClientId, Session>,
    /// `(last_slot, client)` for eviction of the longest-idle session.
    by_age: OrdSet<(Slot, ClientId)>,
    max_sessions: usize,
    /// The revision of the last change (0: none yet).
    revision: u64,
    /// Who owns how many sessions, rebuilt from `sessions` when first needed (not stored:
    /// snapshots and the log keep their format).
    #[serde(skip)]
    users: Lazy,
    #[serde(skip)]
    totals: Totals,
    /// The most bytes of data it may hold ([`crate::limits::MAX_STORE`] unless a test or the
    /// simulator sets a smaller one through `Config::max_store_bytes`). Not stored: every
    /// server sets it from its configuration.
    #[serde(skip, default = "max_store")]
    quota: u64,
}

fn max_store() -> u64 {
    crate::limits::MAX_STORE
}

/// The sessions of each user, by age, and the users by how many sessions they hold.
#[derive(Clone, Debug, Default)]
struct UserIndex {
    by_user: BTreeMap<String, BTreeSet<(Slot, ClientId)>>,
    by_count: BTreeSet<(usize, String)>,
}

impl UserIndex {
    fn user(id: &str) -> &str {
        id.split('/').next().unwrap_or(id)
    }

    fn add(&mut self, slot: Slot, id: &ClientId) {
        let user = Self::user(id).to_string();
        let set = self.by_user.entry(user.clone()).or_default();
        self.by_count.remove(&(set.len(), user.clone()));
        set.insert((slot, id.clone()));
        self.by_count.insert((set.len(), user));
    }

    /// Session `key.1` moved from slot `key.0` to `to`: its user's count is unchanged, so
    /// only the user's age set changes (no allocation but the set's own).
    fn moved(&mut self, to: Slot, mut key: (Slot, ClientId)) {
        match self.by_user.get_mut(Self::user(&key.1)) {
            Some(set) => {
                set.remove(&key);
                key.0 = to;
                set.insert(key);
            }
            // Every session is indexed, so this does not happen; a fresh add is right if it did.
            None => self.add(to, &key.1),
        }
    }

    fn remove(&mut self, slot: Slot, id: &ClientId) {
        let user = Self::user(id).to_string();
        let Some(set) = self.by_user.get_mut(&user) else {
            return;
        };
        self.by_count.remove(&(set.len(), user.clone()));
        set.remove(&(slot, id.clone()));
        if set.is_empty() {
            self.by_user.remove(&user);
        } else {
            self.by_count.insert((set.len(), user));
        }
    }

    /// The longest idle session of the user holding the most (ties: the greatest name).
    fn victim(&self) -> Option<(Slot, ClientId)> {
        let (_, user) = self.by_count.last()?;
        self.by_user.get(user)?.first().cloned()
    }
}

/// The store as servers kept it before revisions (WAL formats up to 3): read from old data
/// directories and converted ([`KvStore::from`]), every key getting revision
/// [`REVISION_BEFORE_RECORDS`] and version 1.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LegacyKvStore {
    data: BTreeMap<String, String>,
    sessions: BTreeMap<ClientId, Session>,
    by_age: BTreeSet<(Slot, ClientId)>,
    max_sessions: usize,
}

impl From<LegacyKvStore> for KvStore {
    fn from(old: LegacyKvStore) -> KvStore {
        let data = old
            .data
            .into_iter()
            .map(|(k, value)| {
                let r = Record {
                    value: value.into(),
                    create: REVISION_BEFORE_RECORDS,
                    modified: REVISION_BEFORE_RECORDS,
                    version: 1,
                };
                (k, r)
            })
            .collect::<OrdMap<_, _>>();
        KvStore {
            revision: if data.is_empty() {
                0
            } else {
                REVISION_BEFORE_RECORDS
            },
            data,
            sessions: old.sessions.into_iter().collect(),
            by_age: old.by_age.into_iter().collect(),
            max_sessions: old.max_sessions.max(1),
            users: Lazy::default(),
            totals: Totals::default(),
            quota: max_store(),
        }
    }
}

/// A derived index that equality ignores (two stores with the same sessions are the same
/// whether or not one has built it).
#[derive(Debug, Default)]
struct Lazy(Option<UserIndex>);

impl Clone for Lazy {
    /// A copy starts without the index: it is O(sessions) to copy and a snapshot (the
    /// usual copy) rarely needs it, while the live store keeps its own.
    fn clone(&self) -> Self {
        Lazy(None)
    }
}

/// Running totals over the store that equality ignores, like [`Lazy`]: what a snapshot
/// costs to write, and the digest's parts. Not stored (snapshots and the log keep their
/// format): counted in one pass on first use after decoding, then kept up to date by every
/// change, so that a status report's digest costs O(1) however large the store.
#[derive(Clone, Copy, Debug, Default)]
struct Totals(Option<Sums>);

#[derive(Clone, Copy, Debug, Default)]
struct Sums {
    bytes: u64,
    /// Wrapping sums of per-record and per-session hashes: order-free, so a change adjusts
    /// them by what it removes and adds.
    data: u64,
    sessions: u64,
}

impl Sums {
    /// Counts `key`'s record in.
    fn add(&mut self, key: &str, r: &Record) {
        self.bytes += record_bytes(key, &r.value);
        self.data = self.data.wrapping_add(record_hash(key, r));
    }

    /// Counts `key`'s record out.
    fn remove(&mut self, key: &str, r: &Record) {
        self.bytes = self.bytes.saturating_sub(record_bytes(key, &r.value));
        self.data = self.data.wrapping_sub(record_hash(key, r));
    }
}

impl PartialEq for Totals {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Totals {}

/// What a key costs beyond its bytes (its record's revisions and the map's node share), so
/// that many empty values still count.
const RECORD_COST: u64 = 48;

fn record_bytes(key: &str, value: &str) -> u64 {
    (key.len() + value.len()) as u64 + RECORD_COST
}

fn record_hash(key: &str, r: &Record) -> u64 {
    let mut h = crate::Fnv::default();
    h.write(key.as_bytes());
    h.write(&[0xff]);
    h.write(r.value.as_bytes());
    h.write(&[0xfe]);
    for n in [r.create, r.modified, r.version] {
        h.write(&n.to_le_bytes());
    }
    h.finish()
}

fn session_hash(id: &str, seq: u64) -> u64 {
    let mut h = crate::Fnv::default();
    h.write(id.as_bytes());
    h.write(&[0xff]);
    h.write(&seq.to_le_bytes());
    h.finish()
}

impl PartialEq for Lazy {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Lazy {}

/// The outcome of applying one command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Executed now.
    Executed(OpResult),
    /// Already executed earlier: the remembered result.
    Duplicate(OpResult),
    /// Older than the client's last command: the client has moved on, nobody waits for it.
    Stale,
    /// Not executed (its session is unknown); the result says why.
    Refused(OpResult),
}

/// The session id an open by `client` executed in `slot` creates.
pub fn session_id(client: &str, slot: Slot) -> ClientId {
    format!("{client}/{slot}")
}

impl KvStore {
    pub fn new(max_sessions: usize) -> Self {
        KvStore {
            data: OrdMap::new(),
            sessions: OrdMap::new(),
            by_age: OrdSet::new(),
            max_sessions: max_sessions.max(1),
            revision: 0,
            users: Lazy::default(),
            totals: Totals(Some(Sums::default())),
            quota: max_store(),
        }
    }

    /// The store's revision: its last change's (0 if it never changed).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// A key's value with its revisions.
    pub fn entry(&self, key: &str) -> Option<&Record> {
        self.data.get(key)
    }

    /// The last sequence number executed for `client`, if it is remembered.
    pub fn last_seq(&self, client: &str) -> Option<u64> {
        self.sessions.get(client).map(|s| s.seq)
    }

    /// The remembered result of `client`'s command `seq`, if that was its last one.
    pub fn cached(&self, client: &str, seq: u64) -> Option<&OpResult> {
        self.sessions
            .get(client)
            .filter(|s| s.seq == seq)
            .map(|s| &s.result)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.data.get(key).map(|r| &*r.value)
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// About how many bytes the data takes (keys, values and a fixed cost per key): what
    /// a snapshot of it costs to write.
    pub fn data_bytes(&mut self) -> u64 {
        self.totals().bytes
    }

    /// The bytes of keys and values alone, as status reports show them: O(1) once the
    /// store has been counted (see [`KvStore::data_bytes`]).
    pub fn key_value_bytes(&self) -> u64 {
        let t = self.totals.0.unwrap_or_else(|| self.count());
        t.bytes - RECORD_COST * self.data.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &str)> {
        self.data.iter().map(|(k, r)| (k, &*r.value))
    }

    /// The keys starting with `prefix`, in order, with their records.
    pub fn scan_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a Record)> {
        self.data
            .range::<_, str>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(move |(k, _)| k.starts_with(prefix))
    }

    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// The ids of the sessions held (`<client>/<slot>`, or a sessionless client's id).
    pub fn session_ids(&self) -> impl Iterator<Item = &str> {
        self.sessions.keys().map(String::as_str)
    }

    /// Applies `cmd`, the first command chosen at `slot` (see [`KvStore::apply_nth`]).
    pub fn apply(&mut self, slot: Slot, cmd: &Command) -> Applied {
        self.apply_nth(slot, 0, cmd)
    }

    /// Applies `cmd`, the `index`-th command chosen at `slot`, at most once per
    /// `(session, seq)`; a change it makes gets revision [`revision_at`]`(slot, index)`.
    pub fn apply_nth(&mut self, slot: Slot, index: usize, cmd: &Command) -> Applied {
        let revision = revision_at(slot, index);
        if let Op::Once(op) = &cmd.op {
            // No open needed: an unknown id starts a session.
            match self.sessions.get(&cmd.client) {
                Some(s) if cmd.seq == s.seq => return Applied::Duplicate(s.result.clone()),
                Some(s) if cmd.seq < s.seq => return Applied::Stale,
                _ => {}
            }
            let result = self.execute(op, revision);
            self.record(cmd.client.clone(), cmd.seq, result.clone(), slot);
            return Applied::Executed(result);
        }
        if matches!(cmd.op, Op::Open) {
            let id = session_id(&cmd.client, slot);
            if self.sessions.contains_key(&id) {
                // The same open twice in one slot: one session.
                return Applied::Duplicate(OpResult::Opened(slot));
            }
            self.record(id, 0, OpResult::Opened(slot), slot);
            return Applied::Executed(OpResult::Opened(slot));
        }
        if cmd.op.is_read() {
            // A get changes nothing, so it needs no session to be safe to repeat, and is never
            // answered with a remembered result (the id's last command may have been a write).
            return Applied::Executed(self.execute(&cmd.op, revision));
        }
        match self.sessions.get(&cmd.client) {
            Some(s) if cmd.seq == s.seq => return Applied::Duplicate(s.result.clone()),
            Some(s) if cmd.seq < s.seq => return Applied::Stale,
            Some(_) => {}
            None => return Applied::Refused(OpResult::SessionExpired),
        }
        let result = self.execute(&cmd.op, revision);
        self.record(cmd.client.clone(), cmd.seq, result.clone(), slot);
        Applied::Executed(result)
    }

    /// Remembers `result` as session `id`'s last, and forgets the longest-idle session past
    /// the table's bound.
    fn record(&mut self, id: ClientId, seq: u64, result: OpResult, slot: Slot) {
        self.totals();
        let sessions = &self.sessions;
        let users = self.users.0.get_or_insert_with(|| {
            let mut index = UserIndex::default();
            for (id, s) in sessions {
                index.add(s.last_slot, id);
            }
            index
        });
        // A session's next command, the common case: update it where it is, one lookup, and
        // move it in the age indexes with one copy of its id (this ran as a remove and an
        // insert in each index, seven allocations, 7% of a leader's CPU at 64 clients).
        if let Some(s) = self.sessions.get_mut(&id) {
            let (old_slot, old_seq) = (s.last_slot, s.seq);
            *s = Session {
                seq,
                result,
                last_slot: slot,
            };
            if let Some(t) = &mut self.totals.0 {
                t.sessions = t
                    .sessions
                    .wrapping_sub(session_hash(&id, old_seq))
                    .wrapping_add(session_hash(&id, seq));
            }
            if old_slot != slot {
                let key = (old_slot, id);
                self.by_age.remove(&key);
                users.moved(slot, key.clone());
                self.by_age.insert((slot, key.1));
            }
            return;
        }
        self.sessions.insert(
            id.clone(),
            Session {
                seq,
                result,
                last_slot: slot,
            },
        );
        if let Some(t) = &mut self.totals.0 {
            t.sessions = t.sessions.wrapping_add(session_hash(&id, seq));
        }
        users.add(slot, &id);
        self.by_age.insert((slot, id));
        while self.sessions.len() > self.max_sessions {
            let Some((slot, victim)) = users.victim() else {
                break;
            };
            users.remove(slot, &victim);
            self.by_age.remove(&(slot, victim.clone()));
            if let Some(gone) = self.sessions.remove(&victim) {
                if let Some(t) = &mut self.totals.0 {
                    t.sessions = t.sessions.wrapping_sub(session_hash(&victim, gone.seq));
                }
            }
        }
    }

    /// What a read returns now.
    pub fn read(&self, op: &Op) -> Option<OpResult> {
        match op {
            Op::Get { key } => Some(OpResult::Value(self.get(key).map(str::to_string))),
            Op::Read { key } => Some(OpResult::Entry {
                revision: self.revision,
                entry: self.data.get(key).cloned(),
            }),
            _ => None,
        }
    }

    /// A compare-and-swap's second half: writes `new` if the comparison `matches` and the
    /// store has room for it.
    fn swap_if(&mut self, matches: bool, key: &str, new: &Arc<str>, revision: u64) -> OpResult {
        if !matches {
            return OpResult::Swapped(false);
        }
        if let Some(full) = self.no_room(key, new.len()) {
            return full;
        }
        self.write(key, new.clone(), revision);
        OpResult::Swapped(true)
    }

    /// Sets `key` to `value` as the change of revision `revision`.
    fn write(&mut self, key: &str, value: Arc<str>, revision: u64) {
        self.totals();
        // An existing key (the common case) is changed where it is: one lookup, and no copy
        // of the key, where a remove and an insert walked the tree twice.
        if let Some(r) = self.data.get_mut(key) {
            if let Some(t) = &mut self.totals.0 {
                t.remove(key, r);
            }
            r.value = value;
            r.modified = revision;
            r.version += 1;
            if let Some(t) = &mut self.totals.0 {
                t.add(key, r);
            }
        } else {
            let record = Record {
                value,
                create: revision,
                modified: revision,
                version: 1,
            };
            if let Some(t) = &mut self.totals.0 {
                t.add(key, &record);
            }
            self.data.insert(key.to_string(), record);
        }
        self.revision = self.revision.max(revision);
    }

    /// The refusal of a write that would make `key`'s value `len` bytes long and so grow the
    /// store past its quota; `None` if it fits (or shrinks the store).
    fn no_room(&mut self, key: &str, len: usize) -> Option<OpResult> {
        let total = self.totals().bytes;
        let now = self
            .data
            .get(key)
            .map_or(0, |r| record_bytes(key, &r.value));
        let after = (key.len() + len) as u64 + RECORD_COST;
        if after <= now || total - now + after <= self.quota {
            return None;
        }
        Some(OpResult::Rejected {
            code: ErrorCode::NoSpace,
            message: format!(
                "the store holds {total} of its {} bytes; this write needs {} more: delete \
                 something first",
                self.quota,
                after - now
            ),
        })
    }

    /// Sets the quota (see [`crate::limits::MAX_STORE`]); every replica must use the same.
    pub fn set_quota(&mut self, bytes: u64) {
        self.quota = bytes;
    }

    /// Takes a record that is leaving out of the totals.
    fn forget(&mut self, key: &str, old: Record) {
        if let Some(t) = &mut self.totals.0 {
            t.remove(key, &old);
        }
    }

    /// The totals, counted now if this store was decoded and has not changed since.
    fn totals(&mut self) -> Sums {
        if let Some(t) = self.totals.0 {
            return t;
        }
        let t = self.count();
        self.totals.0 = Some(t);
        t
    }

    fn count(&self) -> Sums {
        let mut t = Sums::default();
        for (k, r) in &self.data {
            t.add(k, r);
        }
        for (id, s) in &self.sessions {
            t.sessions = t.sessions.wrapping_add(session_hash(id, s.seq));
        }
        t
    }

    fn execute(&mut self, op: &Op, revision: u64) -> OpResult {
        match op {
            Op::Get { .. } | Op::Read { .. } => self.read(op).unwrap_or(OpResult::Value(None)),
            Op::Put { key, value } => {
                if let Some(full) = self.no_room(key, value.len()) {
                    return full;
                }
                self.write(key, value.clone(), revision);
                OpResult::Done
            }
            Op::Append { key, value } => {
                let now = self.get(key).map_or(0, str::len);
                if now + value.len() > crate::limits::MAX_VALUE {
                    // Refused the same way on every replica: values stay readable (a get's
                    // reply must fit a message) and bounded.
                    return OpResult::Rejected {
                        code: ErrorCode::ValueTooLarge,
                        message: format!(
                            "appending {} bytes to the {now} of {key:?} would exceed the {} \
                             allowed",
                            value.len(),
                            crate::limits::MAX_VALUE
                        ),
                    };
                }
                if let Some(full) = self.no_room(key, now + value.len()) {
                    return full;
                }
                let mut now = self.get(key).unwrap_or_default().to_string();
                now.push_str(value);
                self.write(key, now.into(), revision);
                OpResult::Done
            }
            Op::Delete { key } => {
                self.totals();
                let removed = self.data.remove(key);
                let existed = removed.is_some();
                if let Some(r) = removed {
                    self.forget(key, r);
                }
                if existed {
                    self.revision = self.revision.max(revision);
                }
                OpResult::Deleted(existed)
            }
            Op::Cas { key, expected, new } => {
                let matches = self.get(key) == expected.as_deref();
                self.swap_if(matches, key, new, revision)
            }
            Op::CasRevision {
                key,
                revision: want,
                new,
            } => {
                let matches = self.data.get(key).map_or(0, |r| r.modified) == *want;
                self.swap_if(matches, key, new, revision)
            }
            // Handled in `apply_nth`; never reach the data.
            Op::Open | Op::Once(_) => OpResult::Done,
            // Served by the leader outside the log; were one ever chosen, every replica
            // answers the same nothing.
            Op::SnapshotPiece { .. } => OpResult::Done,
            // Only the leader's history can answer; a logged one (never sent by the
            // servers' own clients) gets the same refusal on every replica.
            Op::Changes { .. } => OpResult::Rejected {
                code: ErrorCode::InvalidOp,
                message: "changes are served outside the log".into(),
            },
        }
    }

    /// The data with an empty session table (a restored backup; the `SnapshotWithoutSessions`
    /// mutation).
    pub fn without_sessions(&self) -> KvStore {
        KvStore {
            data: self.data.clone(),
            revision: self.revision,
            // Counted afresh: the totals of an empty store would not match the data.
            totals: Totals::default(),
            quota: self.quota,
            ..KvStore::new(self.max_sessions)
        }
    }

    /// A deterministic digest of the data and sessions, for comparing replicas cheaply.
    pub fn digest(&self) -> u64 {
        // Kept as running sums, so that reporting it (every status, every 20 ms under load)
        // does not walk the store; `count` is the same walk for a store not yet counted.
        let t = self.totals.0.unwrap_or_else(|| self.count());
        let mut h = crate::Fnv::default();
        for n in [t.data, self.revision, t.sessions, self.data.len() as u64] {
            h.write(&n.to_le_bytes());
        }
        h.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(client: &str, seq: u64, op: Op) -> Command {
        Command {
            client: client.into(),
            seq,
            op,
        }
    }

    /// Opens a session for `client` at `slot`; returns its id.
    fn open(kv: &mut KvStore, client: &str, slot: Slot) -> String {
        assert_eq!(
            kv.apply(slot, &cmd(client, 1, Op::Open)),
            Applied::Executed(OpResult::Opened(slot))
        );
        session_id(client, slot)
    }

    fn put(k: &str, v: &str) -> Op {
        Op::Put {
            key: k.into(),
            value: v.into(),
        }
    }

    /// Applies `op` from session `client` at `slot`, the slot as its sequence number: it
    /// executes, with `result`.
    #[track_caller]
    fn executes(kv: &mut KvStore, client: &str, slot: Slot, op: Op, result: OpResult) {
        assert_eq!(
            kv.apply(slot, &cmd(client, slot, op)),
            Applied::Executed(result)
        );
    }

    fn append(k: &str, v: &str) -> Op {
        Op::Append {
            key: k.into(),
            value: v.into(),
        }
    }

    /// A full store refuses what would grow it (put, append, cas), with `no_space` and no
    /// change, and still takes deletes and writes that shrink a value; room made by a
    /// delete is usable again.
    #[test]
    fn a_full_store_refuses_growth_and_takes_deletes() {
        let mut kv = KvStore::new(10);
        let id = open(&mut kv, "u", 1);
        let quota = 3 * (1 + 100 + RECORD_COST);
        kv.set_quota(quota);
        let big = "x".repeat(100);
        for (slot, k) in [(2, "a"), (3, "b"), (4, "c")] {
            assert_eq!(
                kv.apply(slot, &cmd(&id, slot, put(k, &big))),
                Applied::Executed(OpResult::Done)
            );
        }
        assert_eq!(kv.data_bytes(), quota);
        let full = |r: Applied| {
            matches!(
                r,
                Applied::Executed(OpResult::Rejected {
                    code: ErrorCode::NoSpace,
                    ..
                })
            )
        };
        let data: Vec<(String, String)> =
            kv.iter().map(|(k, v)| (k.clone(), v.to_string())).collect();
        assert!(full(kv.apply(5, &cmd(&id, 5, put("d", "")))));
        assert!(full(kv.apply(6, &cmd(&id, 6, put("a", &"y".repeat(101))))));
        assert!(full(kv.apply(7, &cmd(&id, 7, append("b", "z")))));
        let cas = Op::Cas {
            key: "c".into(),
            expected: Some(big.clone()),
            new: "w".repeat(150).into(),
        };
        assert!(full(kv.apply(8, &cmd(&id, 8, cas))));
        let after: Vec<(String, String)> =
            kv.iter().map(|(k, v)| (k.clone(), v.to_string())).collect();
        assert_eq!(after, data, "a refused write changes no data");
        assert_eq!(kv.data_bytes(), quota);
        // Same size or smaller still fits; a delete makes room.
        assert_eq!(
            kv.apply(9, &cmd(&id, 9, put("a", &"s".repeat(100)))),
            Applied::Executed(OpResult::Done)
        );
        assert_eq!(
            kv.apply(10, &cmd(&id, 10, Op::Delete { key: "b".into() })),
            Applied::Executed(OpResult::Deleted(true))
        );
        assert_eq!(
            kv.apply(11, &cmd(&id, 11, put("d", "fits now"))),
            Applied::Executed(OpResult::Done)
        );
    }

    /// The running totals (bytes and digest parts) agree with a fresh count after any mix
    /// of changes, evictions included, and a decoded copy (no totals yet) has the same
    /// digest; a change the digest must see changes it.
    #[test]
    fn running_totals_match_a_recount() {
        let mut kv = KvStore::new(4);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut ids = Vec::new();
        for slot in 1..600u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = format!("k{}", x % 7);
            let value = "v".repeat((x % 40) as usize);
            if x.is_multiple_of(5) || ids.is_empty() {
                ids.push(open(&mut kv, &format!("u{}", x % 3), slot));
                continue;
            }
            let id = ids[(x as usize / 7) % ids.len()].clone();
            let op = match x % 4 {
                0 => Op::Delete { key },
                1 => Op::Append {
                    key,
                    value: value.into(),
                },
                2 => Op::Cas {
                    key,
                    expected: None,
                    new: value.into(),
                },
                _ => put(&key, &value),
            };
            kv.apply(slot, &cmd(&id, slot, op));
            let counted = kv.count();
            let kept = kv.totals();
            assert_eq!(
                (kept.bytes, kept.data, kept.sessions),
                (counted.bytes, counted.data, counted.sessions),
                "after slot {slot}"
            );
            // The age indexes, updated in place, match what a rebuild makes.
            let ages: OrdSet<(Slot, ClientId)> = kv
                .sessions
                .iter()
                .map(|(id, s)| (s.last_slot, id.clone()))
                .collect();
            assert_eq!(kv.by_age, ages, "after slot {slot}");
            let mut fresh = UserIndex::default();
            for (id, s) in &kv.sessions {
                fresh.add(s.last_slot, id);
            }
            let kept = kv.users.0.as_ref().expect("built by the first record");
            assert_eq!(
                (&kept.by_user, &kept.by_count),
                (&fresh.by_user, &fresh.by_count),
                "after slot {slot}"
            );
        }
        assert!(!kv.is_empty() && kv.sessions() == 4);
        let bytes = postcard::to_allocvec(&kv).expect("encodes");
        let mut copy: KvStore = postcard::from_bytes(&bytes).expect("decodes");
        assert!(copy.totals.0.is_none());
        assert_eq!(copy.digest(), kv.digest());
        assert_eq!(copy.data_bytes(), kv.data_bytes());
        let plain: u64 = kv.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
        assert_eq!(kv.key_value_bytes(), plain);
        let before = copy.digest();
        copy.apply(9999, &cmd(&ids[ids.len() - 1], 9999, put("k1", "other")));
        assert_ne!(copy.digest(), before);
    }

    #[test]
    fn a_read_is_never_answered_with_a_remembered_write() {
        let mut kv = KvStore::new(10);
        let once = Op::Once(Box::new(put("k", "v")));
        assert_eq!(
            kv.apply(1, &cmd("u/json/5", 1, once)),
            Applied::Executed(OpResult::Done)
        );
        // The same id and seq, now a get (a JSON client reusing a request id).
        assert_eq!(
            kv.apply(2, &cmd("u/json/5", 1, Op::Get { key: "k".into() })),
            Applied::Executed(OpResult::Value(Some("v".into())))
        );
    }

    #[test]
    fn operations_do_what_they_say() {
        let mut kv = KvStore::new(10);
        let a = &open(&mut kv, "u/a", 0);
        let get = |k: &str| Op::Get { key: k.into() };
        executes(&mut kv, a, 1, get("x"), OpResult::Value(None));
        let app = append("x", "ab");
        executes(&mut kv, a, 2, app, OpResult::Done);
        assert_eq!(kv.get("x"), Some("ab"));
        let cas = |e: Option<&str>, n: &str| Op::Cas {
            key: "x".into(),
            expected: e.map(Into::into),
            new: n.into(),
        };
        executes(
            &mut kv,
            a,
            3,
            cas(Some("zz"), "q"),
            OpResult::Swapped(false),
        );
        executes(&mut kv, a, 4, cas(Some("ab"), "q"), OpResult::Swapped(true));
        executes(
            &mut kv,
            a,
            5,
            Op::Delete { key: "x".into() },
            OpResult::Deleted(true),
        );
        executes(&mut kv, a, 6, cas(None, "n"), OpResult::Swapped(true));
        assert_eq!(kv.get("x"), Some("n"));
    }

    #[test]
    fn a_command_executes_at_most_once() {
        let mut kv = KvStore::new(10);
        let c = &open(&mut kv, "u/c", 0);
        let a = cmd(c, 1, append("k", "x"));
        assert_eq!(kv.apply(1, &a), Applied::Executed(OpResult::Done));
        assert_eq!(kv.apply(2, &a), Applied::Duplicate(OpResult::Done));
        assert_eq!(
            kv.apply(3, &cmd(c, 2, put("k", "y"))),
            Applied::Executed(OpResult::Done)
        );
        assert_eq!(kv.apply(4, &a), Applied::Stale);
        assert_eq!(kv.get("k"), Some("y"));
    }

    #[test]
    fn session_table_is_bounded_and_forgets_the_longest_idle() {
        let mut kv = KvStore::new(2);
        let a = &open(&mut kv, "u/a", 1);
        let b = &open(&mut kv, "u/b", 2);
        kv.apply(3, &cmd(a, 1, put("k", "3")));
        let c = &open(&mut kv, "u/c", 4);
        assert_eq!(kv.sessions(), 2);
        assert_eq!(kv.last_seq(b), None);
        assert_eq!(kv.last_seq(a), Some(1));
        assert_eq!(kv.last_seq(c), Some(0));
    }

    /// Issue 13.6: a user opening sessions without end evicts only its own.
    #[test]
    fn one_user_flooding_sessions_evicts_only_its_own() {
        let mut kv = KvStore::new(4);
        let honest = &open(&mut kv, "alice/a", 1);
        kv.apply(2, &cmd(honest, 1, put("k", "1")));
        for slot in 3..200 {
            open(&mut kv, &format!("mallory/m{slot}"), slot);
        }
        assert_eq!(kv.sessions(), 4);
        assert_eq!(
            kv.last_seq(honest),
            Some(1),
            "alice's session survives the flood"
        );
        // Equal shares: the longest idle of the user holding most goes first.
        let bob = &open(&mut kv, "bob/b", 300);
        assert_eq!(kv.last_seq(bob), Some(0));
        assert_eq!(kv.last_seq(honest), Some(1));
        // A store rebuilt from its serialized form (a snapshot) evicts the same way.
        let copy: KvStore = postcard::from_bytes(&postcard::to_allocvec(&kv).unwrap()).unwrap();
        let mut a = kv.clone();
        let mut b = copy;
        open(&mut a, "mallory/z", 400);
        open(&mut b, "mallory/z", 400);
        assert_eq!(a, b);
        assert_eq!(a.digest(), b.digest());
        assert_eq!(a.last_seq(honest), Some(1));
    }

    /// Issue 12.6: a retry from an evicted session is refused, never executed again; not
    /// even after its open is replayed, which opens a different session.
    #[test]
    fn a_retry_from_a_forgotten_session_is_refused_never_run_twice() {
        let mut kv = KvStore::new(1);
        let a = &open(&mut kv, "u/a", 1);
        let app = cmd(a, 1, append("k", "x"));
        assert_eq!(kv.apply(2, &app), Applied::Executed(OpResult::Done));
        open(&mut kv, "u/b", 3);
        assert_eq!(kv.last_seq(a), None, "evicted");
        assert_eq!(
            kv.apply(4, &app),
            Applied::Refused(OpResult::SessionExpired)
        );
        // A delayed copy of a's open runs again: a new session, not a's.
        assert_eq!(open(&mut kv, "u/a", 5), "u/a/5");
        assert_eq!(
            kv.apply(6, &app),
            Applied::Refused(OpResult::SessionExpired)
        );
        assert_eq!(kv.get("k"), Some("x"));
        // Gets need no session.
        assert_eq!(
            kv.apply(7, &cmd("u/z", 9, Op::Get { key: "k".into() })),
            Applied::Executed(OpResult::Value(Some("x".into())))
        );
    }

    fn read(kv: &mut KvStore, slot: Slot, key: &str) -> (u64, Option<Record>) {
        match kv.apply(slot, &cmd("u/r", 1, Op::Read { key: key.into() })) {
            Applied::Executed(OpResult::Entry { revision, entry }) => (revision, entry),
            other => panic!("{other:?}"),
        }
    }

    /// Revisions as etcd keeps them: from the log position, growing, per key create, modify
    /// and version; a delete ends a key's life and a new put starts another.
    #[test]
    fn every_change_gets_the_next_revision() {
        let mut kv = KvStore::new(10);
        let a = &open(&mut kv, "u/a", 0);
        assert_eq!(read(&mut kv, 1, "k"), (0, None));
        // Two commands in slot 2: two revisions.
        kv.apply_nth(2, 0, &cmd(a, 1, put("k", "1")));
        kv.apply_nth(2, 1, &cmd(a, 2, put("k", "2")));
        let (rev, e) = read(&mut kv, 3, "k");
        let e = e.unwrap();
        assert_eq!(rev, revision_at(2, 1));
        assert_eq!(
            (e.create, e.modified, e.version),
            (revision_at(2, 0), rev, 2)
        );
        assert_eq!(&*e.value, "2");
        assert_eq!(slot_of_revision(rev), 2);
        // A refused change (cas that fails) and a delete of nothing change no revision.
        let cas = |v: &str| Op::Cas {
            key: "k".into(),
            expected: Some(v.into()),
            new: "x".into(),
        };
        kv.apply(4, &cmd(a, 3, cas("nope")));
        kv.apply(5, &cmd(a, 4, Op::Delete { key: "zz".into() }));
        assert_eq!(kv.revision(), revision_at(2, 1));
        // Append is a change.
        kv.apply(6, &cmd(a, 5, append("k", "+")));
        assert_eq!(kv.entry("k").unwrap().version, 3);
        assert_eq!(kv.entry("k").unwrap().modified, revision_at(6, 0));
        // Delete, then put again: a new life.
        kv.apply(7, &cmd(a, 6, Op::Delete { key: "k".into() }));
        assert_eq!(kv.revision(), revision_at(7, 0));
        kv.apply(8, &cmd(a, 7, put("k", "again")));
        let e = kv.entry("k").unwrap();
        assert_eq!(
            (e.create, e.modified, e.version),
            (revision_at(8, 0), revision_at(8, 0), 1)
        );
    }

    #[test]
    fn cas_on_a_revision_swaps_only_if_the_key_last_changed_there() {
        let mut kv = KvStore::new(10);
        let a = &open(&mut kv, "u/a", 0);
        let casr = |rev: u64, new: &str| Op::CasRevision {
            key: "k".into(),
            revision: rev,
            new: new.into(),
        };
        // 0: only while the key is absent.
        executes(&mut kv, a, 1, casr(0, "first"), OpResult::Swapped(true));
        executes(&mut kv, a, 2, casr(0, "again"), OpResult::Swapped(false));
        let seen = kv.entry("k").unwrap().modified;
        assert_eq!(seen, revision_at(1, 0));
        // Another writer gets in first: the old revision no longer matches.
        kv.apply(3, &cmd(a, 3, put("k", "other")));
        executes(&mut kv, a, 4, casr(seen, "mine"), OpResult::Swapped(false));
        let now = kv.entry("k").unwrap().modified;
        executes(&mut kv, a, 5, casr(now, "mine"), OpResult::Swapped(true));
        assert_eq!(kv.get("k"), Some("mine"));
    }

    /// Commands without a session (old logs' commands, wrapped by storage; JSON requests
    /// without one) run as commands did before sessions were opened: an unknown id starts a
    /// session, a repeat is a duplicate.
    #[test]
    fn legacy_commands_run_as_they_did() {
        let mut kv = KvStore::new(10);
        let legacy = |seq, op| cmd("client/abc", seq, Op::Once(Box::new(op)));
        assert_eq!(
            kv.apply(1, &legacy(1, put("k", "v"))),
            Applied::Executed(OpResult::Done)
        );
        assert_eq!(
            kv.apply(2, &legacy(1, put("k", "w"))),
            Applied::Duplicate(OpResult::Done)
        );
        assert_eq!(kv.get("k"), Some("v"));
        // The same command without the wrapper, from a never-opened session: refused.
        assert_eq!(
            kv.apply(3, &cmd("client/abc2", 1, put("k", "x"))),
            Applied::Refused(OpResult::SessionExpired)
        );
    }

    #[test]
    fn an_old_store_converts_with_placeholder_revisions() {
        let mut old = LegacyKvStore {
            data: BTreeMap::new(),
            sessions: BTreeMap::new(),
            by_age: BTreeSet::new(),
            max_sessions: 5,
        };
        old.data.insert("k".into(), "v".into());
        let bytes = postcard::to_allocvec(&old).unwrap();
        let back: LegacyKvStore = postcard::from_bytes(&bytes).unwrap();
        let kv: KvStore = back.into();
        let e = kv.entry("k").unwrap();
        assert_eq!(&*e.value, "v");
        assert_eq!((e.create, e.modified, e.version), (1, 1, 1));
        assert_eq!(kv.revision(), REVISION_BEFORE_RECORDS);
    }
}
