//! Recording what clients saw, in the project's JSON Lines history format.

use mqpaxos_check::{Event, OpKind};
use mqpaxos_core::{Op, OpResult};
use std::time::Duration;

/// The op as the history records it: the checker models values, not revisions, so a read is
/// a get, and a cas on a revision is a cas on the value the client saw with that revision
/// (`seen`: what it read at that revision). Every value the simulator writes is unique, so
/// "the key's last change is revision R" holds exactly when "the key holds the value it held
/// at R": the translation loses nothing.
pub fn recorded(op: &Op, seen: Option<&Option<String>>) -> Op {
    match op {
        Op::Read { key } => Op::Get { key: key.clone() },
        Op::CasRevision { key, new, .. } => Op::Cas {
            key: key.clone(),
            expected: seen.cloned().flatten(),
            new: new.clone(),
        },
        Op::Once(op) => recorded(op, seen),
        op => op.clone(),
    }
}

/// A result as the history records it (see [`recorded`]).
pub fn recorded_result(result: &OpResult) -> OpResult {
    match result {
        OpResult::Entry { entry, .. } => {
            OpResult::Value(entry.as_ref().map(|r| r.value.to_string()))
        }
        r => r.clone(),
    }
}

fn kind(op: &Op) -> OpKind {
    match op {
        Op::Get { .. } | Op::Read { .. } => OpKind::Get,
        Op::Put { .. } => OpKind::Put,
        Op::Append { .. } => OpKind::Append,
        Op::Delete { .. } => OpKind::Delete,
        Op::Cas { .. } | Op::CasRevision { .. } => OpKind::Cas,
        Op::Once(op) => kind(op),
        // Never recorded: opens are the client library's business, not the history's.
        Op::Open | Op::SnapshotPiece { .. } | Op::Changes { .. } => OpKind::Get,
    }
}

/// The invoke event for `op` by `client` at `t`.
pub fn invoke(t: Duration, client: &str, op: &Op) -> Event {
    let e = Event::invoke(t.as_nanos() as u64, client, kind(op), op.key());
    match op {
        Op::Put { value, .. } | Op::Append { value, .. } => e.with_value(Some(value)),
        Op::Cas { expected, new, .. } => e.with_value(Some(new)).with_expected(expected.as_deref()),
        // Recorded as a get and a cas on values (see `recorded`).
        _ => e,
    }
}

/// The ok event completing `op` with `result`.
pub fn ok(t: Duration, client: &str, op: &Op, result: &OpResult) -> Event {
    let e = Event::ok(t.as_nanos() as u64, client, kind(op), op.key());
    match (op, result) {
        (Op::Get { .. }, OpResult::Value(v)) => e.with_value(v.as_deref()),
        (Op::Put { value, .. } | Op::Append { value, .. }, _) => e.with_value(Some(value)),
        (Op::Cas { expected, new, .. }, OpResult::Swapped(s)) => e
            .with_value(Some(new))
            .with_expected(expected.as_deref())
            .with_result(*s),
        _ => e,
    }
}

/// The event for `op` whose outcome is unknown (it may or may not have taken effect).
pub fn info(t: Duration, client: &str, op: &Op) -> Event {
    let e = Event::info(t.as_nanos() as u64, client, kind(op), op.key());
    match op {
        Op::Put { value, .. } | Op::Append { value, .. } => e.with_value(Some(value)),
        Op::Cas { expected, new, .. } => e.with_value(Some(new)).with_expected(expected.as_deref()),
        _ => e,
    }
}

/// The event for `op` that the servers refused: it did not take effect.
pub fn fail(t: Duration, client: &str, op: &Op) -> Event {
    Event::fail(t.as_nanos() as u64, client, kind(op), op.key())
}
