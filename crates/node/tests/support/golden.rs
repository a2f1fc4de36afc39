//! The values behind the golden files of `tests/data/golden/`, and the bytes today's code makes
//! of them. Shared by the test (`tests/golden.rs`) and the generator
//! (`examples/write-golden.rs`), so both speak of exactly the same values.
//!
//! Every value is small, fixed and chosen by hand: no randomness, no clock. Changing one of
//! them changes the bytes of its golden file, and golden files are never rewritten (see the
//! directory's README): add a new case with a new file instead.
//!
//! The file a wire message or WAL record goes to is named by an exhaustive `match` over its
//! variants ([`wire_file`], [`wal_file`]), with no wildcard arm: a new variant of `Message`,
//! `Op`, `OpResult`, `ErrorCode` or `PersistOp` does not compile until it is given a file
//! name here, and `tests/golden.rs` then fails until a case of it is added below and its file
//! generated.

// Each user (the test, the generator) uses a part of this module.
#![allow(dead_code)]

use mqpaxos_core::kv::Record;
use mqpaxos_core::{
    Ballot, Change, ChangeKind, Command, Durable, Entry, ErrorCode, KvStore, Message, Op, OpResult,
    PersistOp, Snapshot,
};
use mqpaxos_node::storage::{FileStorage, Storage, SyncPolicy};
use mqpaxos_node::{backup, codec};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where the golden files live.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden")
}

/// The data directory the golden logs belong to.
pub const CLUSTER: &str = "golden";
pub const SERVER: u32 = 2;
/// Also the table size of the store in the golden snapshot.
pub const MAX_SESSIONS: usize = 8;
/// The time written into the golden backup's header (2023-11-14, a fixed second).
pub const SAVED_AT_UNIX: u64 = 1_700_000_000;

fn b(round: u64, server: u32) -> Ballot {
    Ballot::new(round, server)
}

/// The session most commands below run in: `alice/t1` opened it in slot 0.
const SESSION: &str = "alice/t1/0";

fn cmd(client: &str, seq: u64, op: Op) -> Command {
    Command {
        client: client.into(),
        seq,
        op,
    }
}

fn open() -> Command {
    cmd("alice/t1", 1, Op::Open)
}

fn put(seq: u64, key: &str, value: &str) -> Command {
    cmd(
        SESSION,
        seq,
        Op::Put {
            key: key.into(),
            value: value.into(),
        },
    )
}

fn append(seq: u64, key: &str, value: &str) -> Command {
    cmd(
        SESSION,
        seq,
        Op::Append {
            key: key.into(),
            value: value.into(),
        },
    )
}

fn delete(seq: u64, key: &str) -> Command {
    cmd(SESSION, seq, Op::Delete { key: key.into() })
}

/// A command of the JSON API: no session, its own request id.
fn once() -> Command {
    cmd(
        "json/req-1",
        1,
        Op::Once(Box::new(Op::Put {
            key: "clé/ü".into(),
            value: "ünïcödé".into(),
        })),
    )
}

/// What each slot of the golden logs and snapshot holds (slot = index).
pub fn slots() -> Vec<Vec<Command>> {
    vec![
        vec![open()],
        vec![put(1, "greeting", "hello")],
        vec![put(2, "gone", "x"), append(3, "greeting", ", world")],
        vec![delete(4, "gone"), once()],
        vec![put(5, "config/mode", "fast")],
    ]
}

/// The state before slot 4: slots 0..4 of [`slots`] executed on an empty store.
pub fn snapshot() -> Snapshot {
    let mut kv = KvStore::new(MAX_SESSIONS);
    let slots = slots();
    for (slot, cmds) in slots.iter().enumerate().take(4) {
        for (i, c) in cmds.iter().enumerate() {
            kv.apply_nth(slot as u64, i, c);
        }
    }
    Snapshot { next_slot: 4, kv }
}

/// A command for each `Op` variant, as a client sends it.
fn requests() -> Vec<Command> {
    vec![
        cmd(
            SESSION,
            6,
            Op::Get {
                key: "greeting".into(),
            },
        ),
        put(7, "greeting", "hello"),
        append(8, "greeting", ", world"),
        delete(9, "gone"),
        cmd(
            SESSION,
            10,
            Op::Cas {
                key: "config/mode".into(),
                expected: Some("slow".into()),
                new: "fast".into(),
            },
        ),
        open(),
        cmd(
            SESSION,
            11,
            Op::Read {
                key: "greeting".into(),
            },
        ),
        cmd(
            SESSION,
            12,
            Op::CasRevision {
                key: "config/mode".into(),
                revision: 41_001,
                new: "safe".into(),
            },
        ),
        once(),
        cmd(
            "alice/backup",
            1,
            Op::SnapshotPiece {
                at: None,
                offset: 0,
            },
        ),
        cmd(
            SESSION,
            13,
            Op::Changes {
                key: "config/".into(),
                prefix: true,
                from: 41_000,
            },
        ),
    ]
}

/// A result of each `OpResult` variant (and `Rejected` with each `ErrorCode`).
fn results() -> Vec<OpResult> {
    let mut out = vec![
        OpResult::Value(Some("hello, world".into())),
        OpResult::Done,
        OpResult::Deleted(true),
        OpResult::Swapped(false),
        OpResult::Opened(40),
        OpResult::SnapshotPiece {
            next_slot: 40,
            offset: 0,
            total: 6,
            data: b"golden".to_vec(),
        },
        OpResult::SessionExpired,
    ];
    for (code, message) in [
        (ErrorCode::KeyTooLarge, "key too large"),
        (ErrorCode::ValueTooLarge, "value too large"),
        (ErrorCode::InvalidClientId, "invalid client id"),
        (ErrorCode::Busy, "busy"),
        (ErrorCode::InvalidOp, "invalid op"),
        (ErrorCode::NoSpace, "no space"),
    ] {
        out.push(OpResult::Rejected {
            code,
            message: message.into(),
        });
    }
    out.extend([
        OpResult::Entry {
            revision: 45_000,
            entry: Some(Record {
                value: "fast".into(),
                create: 41_000,
                modified: 44_000,
                version: 3,
            }),
        },
        OpResult::Changes {
            revision: 45_000,
            changes: vec![
                Change {
                    revision: 44_000,
                    key: "config/mode".into(),
                    kind: ChangeKind::Put {
                        value: "fast".into(),
                        create: 41_000,
                        version: 3,
                    },
                    prev_revision: 43_000,
                    prev_store_revision: 43_002,
                },
                Change {
                    revision: 44_001,
                    key: "config/old".into(),
                    kind: ChangeKind::Delete,
                    prev_revision: 12_000,
                    prev_store_revision: 44_000,
                },
            ],
            more: true,
        },
        OpResult::Compacted { floor: 30_000 },
    ]);
    out
}

/// One message of each `Message` variant; `Request` once per `Op` variant and `Reply` once per
/// `OpResult` variant (and `ErrorCode`).
pub fn wire_cases() -> Vec<Message> {
    let ballot = b(7, 2);
    let mut out = vec![
        Message::Prepare {
            ballot,
            from: 40,
            incarnations: [(3, 1)].into(),
        },
        Message::Promise {
            ballot,
            from: 40,
            accepted: vec![
                (
                    40,
                    Entry {
                        ballot: b(6, 1),
                        value: vec![put(1, "greeting", "hello")],
                    },
                ),
                (
                    41,
                    Entry {
                        ballot: Ballot::CHOSEN,
                        value: vec![],
                    },
                ),
            ],
            more: Some(42),
            incarnations: [(2, 1), (3, 2)].into(),
        },
        Message::Accept {
            ballot,
            first: 42,
            values: vec![
                vec![put(2, "gone", "x"), append(3, "greeting", ", world")],
                vec![],
            ],
            commit: 41,
        },
        Message::Accepted {
            ballot,
            first: 42,
            count: 2,
        },
        Message::Nack {
            ballot,
            promised: b(300, 3),
        },
        Message::Heartbeat {
            ballot,
            commit: 1_000,
        },
        Message::ReadIndex { ballot, round: 9 },
        Message::ReadAck { ballot, round: 9 },
        Message::CatchUp { from: 12 },
        Message::Chosen {
            first: 12,
            values: vec![vec![delete(4, "gone"), once()], vec![]],
        },
        Message::RejoinQuery,
        Message::RejoinInfo { incarnation: 2 },
        Message::Rejoin { incarnation: 3 },
        Message::Rejoined {
            incarnation: 3,
            ballot: b(8, 1),
            through: 50,
        },
    ];
    out.extend(requests().into_iter().map(Message::Request));
    out.extend(results().into_iter().map(|result| Message::Reply {
        client: SESSION.into(),
        seq: 5,
        result,
    }));
    out.extend([
        Message::HeartbeatAck { ballot },
        Message::SnapshotChunk {
            next_slot: 40,
            offset: 4,
            total: 10,
            data: b"golden".to_vec(),
        },
        Message::SnapshotFetch {
            next_slot: 40,
            offset: 10,
        },
        Message::PreVote { ballot: b(8, 2) },
        Message::PreVoteAck {
            ballot: b(8, 2),
            promised: ballot,
        },
        Message::Replies(vec![
            mqpaxos_core::Answer {
                client: SESSION.into(),
                seq: 5,
                result: OpResult::Done,
            },
            mqpaxos_core::Answer {
                client: format!("{SESSION}/p1/77"),
                seq: 2,
                result: OpResult::Value(Some("hello".into())),
            },
        ]),
    ]);
    out
}

/// The golden file of a wire message. No wildcard arms: a new variant must be named here.
pub fn wire_file(msg: &Message) -> String {
    let name = match msg {
        Message::Prepare { .. } => "prepare",
        Message::Promise { .. } => "promise",
        Message::Accept { .. } => "accept",
        Message::Accepted { .. } => "accepted",
        Message::Nack { .. } => "nack",
        Message::Heartbeat { .. } => "heartbeat",
        Message::ReadIndex { .. } => "read-index",
        Message::ReadAck { .. } => "read-ack",
        Message::CatchUp { .. } => "catch-up",
        Message::Chosen { .. } => "chosen",
        Message::RejoinQuery => "rejoin-query",
        Message::RejoinInfo { .. } => "rejoin-info",
        Message::Rejoin { .. } => "rejoin",
        Message::Rejoined { .. } => "rejoined",
        Message::Request(c) => return format!("wire-request-{}.bin", op_file(&c.op)),
        Message::Reply { result, .. } => {
            return format!("wire-reply-{}.bin", result_file(result));
        }
        Message::HeartbeatAck { .. } => "heartbeat-ack",
        Message::SnapshotChunk { .. } => "snapshot-chunk",
        Message::SnapshotFetch { .. } => "snapshot-fetch",
        Message::PreVote { .. } => "pre-vote",
        Message::PreVoteAck { .. } => "pre-vote-ack",
        Message::Replies(_) => "replies",
    };
    format!("wire-{name}.bin")
}

fn op_file(op: &Op) -> &'static str {
    match op {
        Op::Get { .. } => "get",
        Op::Put { .. } => "put",
        Op::Append { .. } => "append",
        Op::Delete { .. } => "delete",
        Op::Cas { .. } => "cas",
        Op::Open => "open",
        Op::Read { .. } => "read",
        Op::CasRevision { .. } => "cas-revision",
        Op::Once(_) => "once",
        Op::SnapshotPiece { .. } => "snapshot-piece",
        Op::Changes { .. } => "changes",
    }
}

fn result_file(result: &OpResult) -> String {
    let name = match result {
        OpResult::Value(_) => "value",
        OpResult::Done => "done",
        OpResult::Deleted(_) => "deleted",
        OpResult::Swapped(_) => "swapped",
        OpResult::Opened(_) => "opened",
        OpResult::SnapshotPiece { .. } => "snapshot-piece",
        OpResult::SessionExpired => "session-expired",
        OpResult::Rejected { code, .. } => {
            let code = match code {
                ErrorCode::KeyTooLarge => "key-too-large",
                ErrorCode::ValueTooLarge => "value-too-large",
                ErrorCode::InvalidClientId => "invalid-client-id",
                ErrorCode::Busy => "busy",
                ErrorCode::InvalidOp => "invalid-op",
                ErrorCode::NoSpace => "no-space",
            };
            return format!("rejected-{code}");
        }
        OpResult::Entry { .. } => "entry",
        OpResult::Changes { .. } => "changes",
        OpResult::Compacted { .. } => "compacted",
    };
    name.to_string()
}

/// One record of each `PersistOp` variant.
pub fn wal_cases() -> Vec<PersistOp> {
    vec![
        PersistOp::Promise(b(7, 2)),
        PersistOp::Accept {
            slot: 42,
            entry: Entry {
                ballot: b(7, 2),
                value: vec![put(2, "gone", "x"), append(3, "greeting", ", world")],
            },
        },
        PersistOp::Snapshot(snapshot()),
        PersistOp::Incarnation {
            server: 3,
            incarnation: 2,
        },
        PersistOp::Rejoining(true),
    ]
}

/// The golden file of a WAL record (a log of one group, numbered 0, holding just it). No
/// wildcard arm: a new variant must be named here.
pub fn wal_file(op: &PersistOp) -> &'static str {
    match op {
        PersistOp::Promise(_) => "wal-promise.bin",
        PersistOp::Accept { .. } => "wal-accept.bin",
        PersistOp::Snapshot(_) => "wal-snapshot.bin",
        PersistOp::Incarnation { .. } => "wal-incarnation.bin",
        PersistOp::Rejoining(_) => "wal-rejoining.bin",
    }
}

fn accept(slot: usize) -> PersistOp {
    PersistOp::Accept {
        slot: slot as u64,
        entry: Entry {
            ballot: b(7, 2),
            value: slots()[slot].clone(),
        },
    }
}

/// The flushes (one `persist` call, one group each) that write `wal-log.bin`.
pub fn log_flushes() -> Vec<Vec<PersistOp>> {
    vec![
        vec![
            PersistOp::Incarnation {
                server: 3,
                incarnation: 2,
            },
            PersistOp::Promise(b(7, 2)),
        ],
        vec![accept(0), accept(1)],
        vec![PersistOp::Rejoining(true)],
        vec![accept(2), PersistOp::Rejoining(false)],
    ]
}

/// The flushes that write `wal-log-after-snapshot.bin`: those of `wal-log.bin`, two more
/// accepts, a snapshot before slot 4 (which rewrites the file as one group) and a promise.
pub fn log_after_snapshot_flushes() -> Vec<Vec<PersistOp>> {
    let mut out = log_flushes();
    out.extend([
        vec![accept(3), accept(4)],
        vec![PersistOp::Snapshot(snapshot())],
        vec![PersistOp::Promise(b(8, 1))],
    ]);
    out
}

/// What the rewrite at the snapshot leaves in `wal-log-after-snapshot.bin`: its groups, as
/// (sequence number, records).
pub fn log_after_snapshot_groups() -> Vec<(u64, Vec<PersistOp>)> {
    vec![
        (
            5,
            vec![
                PersistOp::Snapshot(snapshot()),
                PersistOp::Promise(b(7, 2)),
                PersistOp::Incarnation {
                    server: 3,
                    incarnation: 2,
                },
                accept(4),
            ],
        ),
        (6, vec![PersistOp::Promise(b(8, 1))]),
    ]
}

/// The state a server recovers from a log of `flushes`.
pub fn durable_after(flushes: &[Vec<PersistOp>]) -> Durable {
    let mut d = Durable::new(MAX_SESSIONS);
    for op in flushes.iter().flatten() {
        d.apply(op.clone());
    }
    d
}

/// A new data directory under `parent` (server [`SERVER`] of cluster [`CLUSTER`]), written by
/// `FileStorage` one `persist` per flush: its `meta.json` and its log's records (the file
/// itself goes on with zeros up to a whole chunk; those are checked, not kept).
pub fn write_data_dir(parent: &Path, flushes: &[Vec<PersistOp>]) -> (Vec<u8>, Vec<u8>) {
    let dir = parent.join("server");
    let mut s = FileStorage::open(&dir, CLUSTER, SERVER, MAX_SESSIONS, SyncPolicy::Never)
        .expect("open a new data directory");
    for ops in flushes {
        s.persist(ops.clone()).expect("persist");
    }
    s.settle().expect("the snapshot put in place");
    let end = s.log_bytes() as usize;
    drop(s);
    let wal = std::fs::read(dir.join("wal")).expect("read the log");
    assert!(
        wal[end..].iter().all(|b| *b == 0),
        "the log goes on with zeros"
    );
    let meta = std::fs::read(dir.join("meta.json")).expect("read meta.json");
    (meta, wal[..end].to_vec())
}

/// Every golden file's name and the bytes today's code makes for it.
pub fn all_files() -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut add = |name: String, bytes: Vec<u8>| {
        let again = out.insert(name.clone(), bytes);
        assert!(again.is_none(), "two cases write {name}");
    };
    for msg in wire_cases() {
        let bytes = codec::encode(&msg, codec::DEFAULT_MAX_PAYLOAD).expect("encode");
        add(wire_file(&msg), bytes);
    }
    for op in wal_cases() {
        let bytes = mqpaxos_node::storage::encode_group(0, std::slice::from_ref(&op))
            .expect("frame a record");
        add(wal_file(&op).to_string(), bytes);
    }
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let (meta, log) = write_data_dir(&tmp.path().join("a"), &log_flushes());
    add("datadir-meta.json".into(), meta);
    add("wal-log.bin".into(), log);
    let (_, log) = write_data_dir(&tmp.path().join("b"), &log_after_snapshot_flushes());
    add("wal-log-after-snapshot.bin".into(), log);
    let snap = snapshot();
    let encoded = mqpaxos_core::encode_snapshot(&snap).expect("encode the snapshot");
    add(
        "backup.bin".into(),
        backup::encode(CLUSTER, &snap, &encoded, SAVED_AT_UNIX),
    );
    add("snapshot.bin".into(), encoded);
    out
}
