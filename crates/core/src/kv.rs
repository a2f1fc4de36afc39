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
//! Gets need no session (executing one twice changes nothing). Pure data; no IO.

use crate::ballot::Slot;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A client's id as it appears on the wire. Clients must pick a fresh id per incarnation
/// (sequence numbers restart at 1), or their first commands would be taken for duplicates.
pub type ClientId = String;

/// One key/value operation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Op {
    Get {
        key: String,
    },
    Put {
        key: String,
        value: String,
    },
    /// Appends to the current value; a missing key counts as the empty string.
    Append {
        key: String,
        value: String,
    },
    Delete {
        key: String,
    },
    /// Swaps in `new` if the current value equals `expected` (`None`: the key is absent).
    Cas {
        key: String,
        expected: Option<String>,
        new: String,
    },
    /// Opens a session (see the module docs); sent under the client's own id, not a session's.
    Open,
    /// A piece of a point-in-time copy of the whole state, for backups (`mqpaxos snapshot
    /// save`). `at: None` asks for a new copy: the leader takes it at a commit point it has
    /// confirmed with a quorum (as for a read-index get), so the copy is linearizable. `at:
    /// Some(slot)` with `offset` asks for the rest of the copy taken at `slot`. Never enters
    /// the log; needs no session (it changes nothing).
    SnapshotPiece {
        at: Option<Slot>,
        offset: u64,
    },
}

impl Op {
    pub fn key(&self) -> &str {
        match self {
            Op::Get { key }
            | Op::Put { key, .. }
            | Op::Append { key, .. }
            | Op::Delete { key }
            | Op::Cas { key, .. } => key,
            Op::Open | Op::SnapshotPiece { .. } => "",
        }
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
            Op::SnapshotPiece { .. } => "snapshot",
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
}

impl ErrorCode {
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::KeyTooLarge => "key_too_large",
            ErrorCode::ValueTooLarge => "value_too_large",
            ErrorCode::InvalidClientId => "invalid_client_id",
            ErrorCode::Busy => "busy",
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
    data: BTreeMap<String, String>,
    sessions: BTreeMap<ClientId, Session>,
    /// `(last_slot, client)` for eviction of the longest-idle session.
    by_age: BTreeSet<(Slot, ClientId)>,
    max_sessions: usize,
    /// Who owns how many sessions, rebuilt from `sessions` when first needed (not stored:
    /// snapshots and the log keep their format).
    #[serde(skip)]
    users: Lazy,
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

/// A derived index that equality ignores (two stores with the same sessions are the same
/// whether or not one has built it).
#[derive(Clone, Debug, Default)]
struct Lazy(Option<UserIndex>);

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
            data: BTreeMap::new(),
            sessions: BTreeMap::new(),
            by_age: BTreeSet::new(),
            max_sessions: max_sessions.max(1),
            users: Lazy::default(),
        }
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

    pub fn get(&self, key: &str) -> Option<&String> {
        self.data.get(key)
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.data.iter()
    }

    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Applies `cmd`, chosen at `slot`, at most once per `(session, seq)`.
    pub fn apply(&mut self, slot: Slot, cmd: &Command) -> Applied {
        if matches!(cmd.op, Op::Open) {
            let id = session_id(&cmd.client, slot);
            if self.sessions.contains_key(&id) {
                // The same open twice in one slot: one session.
                return Applied::Duplicate(OpResult::Opened(slot));
            }
            self.record(id, 0, OpResult::Opened(slot), slot);
            return Applied::Executed(OpResult::Opened(slot));
        }
        match self.sessions.get(&cmd.client) {
            Some(s) if cmd.seq == s.seq => return Applied::Duplicate(s.result.clone()),
            Some(s) if cmd.seq < s.seq => return Applied::Stale,
            Some(_) => {}
            // A get changes nothing, so it needs no session to be safe to repeat.
            None if matches!(cmd.op, Op::Get { .. } | Op::SnapshotPiece { .. }) => {
                return Applied::Executed(self.execute(&cmd.op));
            }
            None => return Applied::Refused(OpResult::SessionExpired),
        }
        let result = self.execute(&cmd.op);
        self.record(cmd.client.clone(), cmd.seq, result.clone(), slot);
        Applied::Executed(result)
    }

    /// Remembers `result` as session `id`'s last, and forgets the longest-idle session past
    /// the table's bound.
    fn record(&mut self, id: ClientId, seq: u64, result: OpResult, slot: Slot) {
        let sessions = &self.sessions;
        let users = self.users.0.get_or_insert_with(|| {
            let mut index = UserIndex::default();
            for (id, s) in sessions {
                index.add(s.last_slot, id);
            }
            index
        });
        if let Some(old) = self.sessions.insert(
            id.clone(),
            Session {
                seq,
                result,
                last_slot: slot,
            },
        ) {
            self.by_age.remove(&(old.last_slot, id.clone()));
            users.remove(old.last_slot, &id);
        }
        users.add(slot, &id);
        self.by_age.insert((slot, id));
        while self.sessions.len() > self.max_sessions {
            let Some((slot, victim)) = users.victim() else {
                break;
            };
            users.remove(slot, &victim);
            self.by_age.remove(&(slot, victim.clone()));
            self.sessions.remove(&victim);
        }
    }

    fn execute(&mut self, op: &Op) -> OpResult {
        match op {
            Op::Get { key } => OpResult::Value(self.data.get(key).cloned()),
            Op::Put { key, value } => {
                self.data.insert(key.clone(), value.clone());
                OpResult::Done
            }
            Op::Append { key, value } => {
                let now = self.data.get(key).map_or(0, String::len);
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
                self.data.entry(key.clone()).or_default().push_str(value);
                OpResult::Done
            }
            Op::Delete { key } => OpResult::Deleted(self.data.remove(key).is_some()),
            Op::Cas { key, expected, new } => {
                if self.data.get(key) == expected.as_ref() {
                    self.data.insert(key.clone(), new.clone());
                    OpResult::Swapped(true)
                } else {
                    OpResult::Swapped(false)
                }
            }
            // Handled in `apply`; never reaches the data.
            Op::Open => OpResult::Done,
            // Served by the leader outside the log; were one ever chosen, every replica
            // answers the same nothing.
            Op::SnapshotPiece { .. } => OpResult::Done,
        }
    }

    /// The data with an empty session table (a restored backup; the `SnapshotWithoutSessions`
    /// mutation).
    pub fn without_sessions(&self) -> KvStore {
        KvStore {
            data: self.data.clone(),
            ..KvStore::new(self.max_sessions)
        }
    }

    /// A deterministic digest of the data and sessions, for comparing replicas cheaply.
    pub fn digest(&self) -> u64 {
        let mut h = crate::Fnv::default();
        for (k, v) in &self.data {
            h.write(k.as_bytes());
            h.write(&[0xff]);
            h.write(v.as_bytes());
            h.write(&[0xfe]);
        }
        for (c, s) in &self.sessions {
            h.write(c.as_bytes());
            h.write(&s.seq.to_le_bytes());
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

    #[test]
    fn operations_do_what_they_say() {
        let mut kv = KvStore::new(10);
        let a = &open(&mut kv, "u/a", 0);
        let get = |k: &str| Op::Get { key: k.into() };
        assert_eq!(
            kv.apply(1, &cmd(a, 1, get("x"))),
            Applied::Executed(OpResult::Value(None))
        );
        let app = Op::Append {
            key: "x".into(),
            value: "ab".into(),
        };
        assert_eq!(
            kv.apply(2, &cmd(a, 2, app)),
            Applied::Executed(OpResult::Done)
        );
        assert_eq!(kv.get("x").map(String::as_str), Some("ab"));
        let cas = |e: Option<&str>, n: &str| Op::Cas {
            key: "x".into(),
            expected: e.map(Into::into),
            new: n.into(),
        };
        assert_eq!(
            kv.apply(3, &cmd(a, 3, cas(Some("zz"), "q"))),
            Applied::Executed(OpResult::Swapped(false))
        );
        assert_eq!(
            kv.apply(4, &cmd(a, 4, cas(Some("ab"), "q"))),
            Applied::Executed(OpResult::Swapped(true))
        );
        assert_eq!(
            kv.apply(5, &cmd(a, 5, Op::Delete { key: "x".into() })),
            Applied::Executed(OpResult::Deleted(true))
        );
        assert_eq!(
            kv.apply(6, &cmd(a, 6, cas(None, "n"))),
            Applied::Executed(OpResult::Swapped(true))
        );
        assert_eq!(kv.get("x").map(String::as_str), Some("n"));
    }

    #[test]
    fn a_command_executes_at_most_once() {
        let mut kv = KvStore::new(10);
        let c = &open(&mut kv, "u/c", 0);
        let a = cmd(
            c,
            1,
            Op::Append {
                key: "k".into(),
                value: "x".into(),
            },
        );
        assert_eq!(kv.apply(1, &a), Applied::Executed(OpResult::Done));
        assert_eq!(kv.apply(2, &a), Applied::Duplicate(OpResult::Done));
        assert_eq!(
            kv.apply(3, &cmd(c, 2, put("k", "y"))),
            Applied::Executed(OpResult::Done)
        );
        assert_eq!(kv.apply(4, &a), Applied::Stale);
        assert_eq!(kv.get("k").map(String::as_str), Some("y"));
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
        let app = cmd(
            a,
            1,
            Op::Append {
                key: "k".into(),
                value: "x".into(),
            },
        );
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
        assert_eq!(kv.get("k").map(String::as_str), Some("x"));
        // Gets need no session.
        assert_eq!(
            kv.apply(7, &cmd("u/z", 9, Op::Get { key: "k".into() })),
            Applied::Executed(OpResult::Value(Some("x".into())))
        );
    }
}
