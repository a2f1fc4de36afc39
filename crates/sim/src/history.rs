//! Recording what clients saw, in the project's JSON Lines history format.

use mqpaxos_check::{Event, OpKind};
use mqpaxos_core::{Op, OpResult};
use std::time::Duration;

fn kind(op: &Op) -> OpKind {
    match op {
        Op::Get { .. } => OpKind::Get,
        Op::Put { .. } => OpKind::Put,
        Op::Append { .. } => OpKind::Append,
        Op::Delete { .. } => OpKind::Delete,
        Op::Cas { .. } => OpKind::Cas,
        // Never recorded: opens are the client library's business, not the history's.
        Op::Open | Op::SnapshotPiece { .. } => OpKind::Get,
    }
}

/// The invoke event for `op` by `client` at `t`.
pub fn invoke(t: Duration, client: &str, op: &Op) -> Event {
    let e = Event::invoke(t.as_nanos() as u64, client, kind(op), op.key());
    match op {
        Op::Get { .. } | Op::Delete { .. } | Op::Open | Op::SnapshotPiece { .. } => e,
        Op::Put { value, .. } | Op::Append { value, .. } => e.with_value(Some(value)),
        Op::Cas { expected, new, .. } => e.with_value(Some(new)).with_expected(expected.as_deref()),
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
