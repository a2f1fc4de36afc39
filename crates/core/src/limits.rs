//! Every byte bound the protocol keeps, in one place, and the size estimates that enforce
//! them. Pure data; no IO.
//!
//! The chain that keeps every message under the wire codec's limit ([`MAX_MESSAGE`]):
//! a client's command is at most [`MAX_COMMAND`] bytes (key, values and client id are checked
//! where a request arrives, [`check_command`], and an append may never grow a value past
//! [`MAX_VALUE`]); a slot holds commands worth at most [`MAX_SLOT`] bytes; a message that
//! carries slots (Accept, Chosen, Promise) carries at most [`MESSAGE_BUDGET`] bytes of them,
//! but always at least one; a snapshot travels in chunks of [`SNAPSHOT_CHUNK`] bytes. So the
//! largest message is below `MESSAGE_BUDGET + MAX_SLOT + small`, which is below
//! `MAX_MESSAGE` whatever clients send and however large the state grows.

use crate::kv::{Command, ErrorCode, Op, OpResult};
use crate::log::{Entry, Value};

/// The largest encoded message any node sends or accepts (the wire codec's limit).
pub const MAX_MESSAGE: usize = 16 << 20;
/// The longest key, in bytes.
pub const MAX_KEY: usize = 1024;
/// The longest value, in bytes: what a put or a cas may write and what an append may grow a
/// value to.
pub const MAX_VALUE: usize = 1 << 20;
/// The longest client or session id, in bytes (`<user>/<token>/<slot>`); it becomes an MQTT
/// topic level, so it is bounded well below MQTT's 65,535-byte topic limit.
pub const MAX_CLIENT_ID: usize = 256;
/// An upper bound on one command's encoded size, given the limits above.
pub const MAX_COMMAND: usize = MAX_CLIENT_ID + MAX_KEY + 2 * MAX_VALUE + 64;
/// The most command bytes one slot holds: one command of the largest size, or many small
/// ones. Kept this small so that a new leader's re-proposal of a whole window of slots
/// (`window` × `MAX_SLOT`, 64 × ~2 MiB by default) fits one durable write ([`MAX_FLUSH`]).
pub const MAX_SLOT: usize = MAX_COMMAND;
/// The most slot bytes one message carries (it always carries at least one slot).
pub const MESSAGE_BUDGET: usize = 8 << 20;
/// The size of one piece of a snapshot in transfer.
pub const SNAPSHOT_CHUNK: usize = 4 << 20;
/// The most bytes of log records one flush (one durable write, one WAL group) may carry,
/// a snapshot aside (one record of up to about [`MAX_STORE`], which storage takes). The driver flushes once a group reaches [`FLUSH_SOFT`], and no
/// single step adds more than a window of slots, so groups stay below it.
pub const MAX_FLUSH: usize = 256 << 20;
/// The most bytes of data the store holds (keys, values and a fixed cost per key, as
/// [`crate::KvStore::data_bytes`] counts them; etcd's default quota is the same 2 GiB). A
/// write that would grow the store past it is refused with `no_space` when it executes, the
/// same on every replica because the count is part of the state; deletes always run. It is
/// what keeps a snapshot, which storage writes as one record, within what storage can take,
/// whatever clients write.
pub const MAX_STORE: u64 = 2 << 30;
/// A driver flushes as soon as its pending writes reach this many bytes.
pub const FLUSH_SOFT: usize = 64 << 20;
/// The most bytes of commands a leader holds waiting for room in its window, gets included;
/// past it new commands are refused as busy, so memory stays bounded whatever clients send.
pub const MAX_QUEUED: usize = 64 << 20;

// The chain above, checked by the compiler.
const _: () = assert!(MAX_COMMAND <= MAX_SLOT);
const _: () = assert!(MESSAGE_BUDGET + MAX_SLOT + (64 << 10) <= MAX_MESSAGE);
const _: () = assert!(SNAPSHOT_CHUNK + (64 << 10) <= MAX_MESSAGE);
// A flush past the soft bound by one step's worth: a full window of slots proposed or
// re-proposed, or a message's worth of slots accepted.
const _: () = assert!(FLUSH_SOFT + MAX_WINDOW * MAX_SLOT + MESSAGE_BUDGET + MAX_SLOT <= MAX_FLUSH);

/// The most slots a leader may have in flight (`Config::window`): a new leader re-proposes up
/// to a window of slots in one step, which must fit one flush.
pub const MAX_WINDOW: usize = 64;

/// The most commands one slot may hold (`Config::max_batch`): each gets its own revision, and
/// a slot has room for [`crate::kv::REVISIONS_PER_SLOT`] of them.
pub const MAX_BATCH: usize = 999;
const _: () = assert!((MAX_BATCH as u64) < crate::kv::REVISIONS_PER_SLOT);

/// An upper bound on a durable write's encoded size (snapshots excluded: storage writes them
/// apart, by rewriting its log).
pub fn persist_size(op: &crate::log::PersistOp) -> usize {
    match op {
        crate::log::PersistOp::Accept { entry, .. } => entry_size(entry),
        crate::log::PersistOp::Snapshot(_) => 0,
        _ => 32,
    }
}

/// An upper bound on a string's encoded size (a varint length of at most 5 bytes).
fn string(s: &str) -> usize {
    s.len() + 5
}

/// An upper bound on `cmd`'s encoded size.
pub fn command_size(cmd: &Command) -> usize {
    string(&cmd.client) + 10 + 5 + op_size(&cmd.op)
}

fn op_size(op: &Op) -> usize {
    match op {
        Op::Get { key } | Op::Delete { key } | Op::Read { key } => string(key),
        Op::CasRevision { key, new, .. } => string(key) + 10 + string(new),
        Op::Put { key, value } | Op::Append { key, value } => string(key) + string(value),
        Op::Cas { key, expected, new } => {
            string(key) + expected.as_deref().map_or(1, |e| 1 + string(e)) + string(new)
        }
        Op::Open => 0,
        Op::Once(op) => 1 + op_size(op),
        Op::SnapshotPiece { .. } => 20,
        Op::Changes { key, .. } => string(key) + 11,
    }
}

/// An upper bound on a slot's encoded size.
pub fn value_size(value: &Value) -> usize {
    5 + value.iter().map(command_size).sum::<usize>()
}

/// An upper bound on an accepted entry's encoded size, with its slot.
pub fn entry_size(entry: &Entry) -> usize {
    10 + 20 + value_size(&entry.value)
}

/// Why a command cannot be taken, checked where a request arrives at a server so that
/// nothing oversized or malformed ever enters the log. `None`: it may go on.
pub fn check_command(cmd: &Command) -> Option<OpResult> {
    let reject = |code, message: String| Some(OpResult::Rejected { code, message });
    if let Some(problem) = client_id_problem(&cmd.client) {
        return reject(ErrorCode::InvalidClientId, problem);
    }
    let key = cmd.op.key();
    if key.len() > MAX_KEY {
        return reject(
            ErrorCode::KeyTooLarge,
            format!(
                "the key is {} bytes; at most {MAX_KEY} are allowed",
                key.len()
            ),
        );
    }
    if let Op::Once(inner) = &cmd.op {
        if matches!(**inner, Op::Open | Op::Once(_)) || inner.is_read() {
            return reject(
                ErrorCode::InvalidOp,
                format!("{} cannot run as a once-only command", inner.name()),
            );
        }
    }
    let op = match &cmd.op {
        Op::Once(inner) => inner,
        op => op,
    };
    let values: &[Option<&str>] = match op {
        Op::Put { value, .. } | Op::Append { value, .. } => &[Some(value)],
        Op::Cas { expected, new, .. } => &[expected.as_deref(), Some(new)],
        Op::CasRevision { new, .. } => &[Some(new)],
        Op::Get { .. }
        | Op::Delete { .. }
        | Op::Open
        | Op::Read { .. }
        | Op::Once(_)
        | Op::SnapshotPiece { .. }
        | Op::Changes { .. } => &[],
    };
    for v in values.iter().flatten() {
        if v.len() > MAX_VALUE {
            return reject(
                ErrorCode::ValueTooLarge,
                format!(
                    "the value is {} bytes; at most {MAX_VALUE} are allowed",
                    v.len()
                ),
            );
        }
    }
    None
}

/// What is wrong with a client id, if anything. It names the client's reply topic, so it
/// must be a valid, bounded MQTT topic path: no wildcards, no NUL or other control
/// characters, no empty levels.
pub fn client_id_problem(id: &str) -> Option<String> {
    if id.len() > MAX_CLIENT_ID {
        return Some(format!(
            "the client id is {} bytes; at most {MAX_CLIENT_ID} are allowed",
            id.len()
        ));
    }
    if id.is_empty() || id.split('/').any(str::is_empty) {
        return Some("the client id has an empty topic level".into());
    }
    if let Some(c) = id
        .chars()
        .find(|c| c.is_control() || matches!(c, '+' | '#'))
    {
        return Some(format!(
            "the client id contains {c:?}, which a topic may not"
        ));
    }
    None
}

/// Splits `items` into runs whose sizes add up to at most `budget`, each run holding at least
/// one item, in order.
pub fn chunk_by_size<T>(items: Vec<T>, budget: usize, size: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = Vec::new();
    let mut used = 0;
    for item in items {
        let n = size(&item);
        match out.last_mut() {
            Some(run) if !run.is_empty() && used + n <= budget => {
                run.push(item);
                used += n;
            }
            _ => {
                out.push(vec![item]);
                used = n;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(client: &str, op: Op) -> Command {
        Command {
            client: client.into(),
            seq: 1,
            op,
        }
    }

    #[test]
    fn oversized_and_malformed_commands_are_named() {
        let big = "x".repeat(MAX_VALUE + 1);
        let code = |c: &Command| match check_command(c) {
            Some(OpResult::Rejected { code, .. }) => Some(code),
            _ => None,
        };
        let put = |k: &str, v: &str| Op::Put {
            key: k.into(),
            value: v.into(),
        };
        assert_eq!(code(&cmd("u/a/1", put("k", "v"))), None);
        assert_eq!(
            code(&cmd("u/a/1", put("k", &big))),
            Some(ErrorCode::ValueTooLarge)
        );
        assert_eq!(
            code(&cmd("u/a/1", put(&"k".repeat(MAX_KEY + 1), "v"))),
            Some(ErrorCode::KeyTooLarge)
        );
        let cas = Op::Cas {
            key: "k".into(),
            expected: Some(big.clone()),
            new: "n".into(),
        };
        assert_eq!(code(&cmd("u/a/1", cas)), Some(ErrorCode::ValueTooLarge));
        for bad in [
            "u/a\0/1",
            "u/+/1",
            "u/#",
            "u//1",
            "",
            &"u".repeat(MAX_CLIENT_ID + 1),
        ] {
            assert_eq!(
                code(&cmd(bad, Op::Get { key: "k".into() })),
                Some(ErrorCode::InvalidClientId),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_largest_command_fits_its_bound() {
        let v = "v".repeat(MAX_VALUE);
        let c = cmd(
            &"c".repeat(MAX_CLIENT_ID),
            Op::Cas {
                key: "k".repeat(MAX_KEY),
                expected: Some(v.clone()),
                new: v.into(),
            },
        );
        assert!(check_command(&c).is_none());
        assert!(command_size(&c) <= MAX_COMMAND);
    }

    #[test]
    fn chunks_respect_the_budget_and_keep_order() {
        let runs = chunk_by_size(vec![5, 5, 5, 20, 1, 1], 10, |n| *n);
        assert_eq!(runs, vec![vec![5, 5], vec![5], vec![20], vec![1, 1]]);
        assert!(chunk_by_size(Vec::<usize>::new(), 10, |n| *n).is_empty());
    }
}
