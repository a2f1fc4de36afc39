//! The mqpaxos protocol core: Multi-Paxos servers, clients and the replicated key/value state
//! machine, as pure state machines.
//!
//! Nothing in this crate does IO, reads a clock, spawns a thread or draws a random number.
//! Inputs are a received message, a fired timer or a client command, plus the current time as
//! a number; outputs are a [`Ready`]: messages to send, state to make durable first, timers to
//! set, and replies. The [`Driver`] sits between the core and the world: it batches the
//! steps' effects into group commits, orders persist -> sync -> send, merges messages and keeps
//! the timers. The node runtime drives the driver over MQTT and a real disk; the simulator
//! drives the very same driver with a virtual clock, a simulated network and disk.

pub mod ballot;
pub mod client;
pub mod config;
pub mod driver;
pub mod kv;
pub mod limits;
pub mod log;
pub mod message;
pub mod note;
pub mod server;
pub mod watch;

pub use ballot::{Ballot, NodeId, Slot};
pub use client::{Client, ClientConfig, ClientError, ClientReady};
#[cfg(feature = "mutations")]
pub use config::Mutation;
pub use config::{Config, ConfigError};
pub use driver::{Driver, Flush, GROUP_COMMIT_MAX};
pub use kv::{Applied, ClientId, Command, ErrorCode, KvStore, Op, OpResult};
pub use log::{Durable, Entry, Incarnations, Log, PersistOp, Snapshot, Value};
pub use message::{coalesce, Answer, Dest, Input, Message, Outgoing, Ready, SetTimer, TimerKind};
pub use note::{LostWhy, Note};
pub use server::{Progress, RoleKind, Server};
pub use watch::{Change, ChangeKind, History};

/// After FNV-1a: a tiny, stable hash, so digests agree across runs, builds and machines (std's
/// hasher is randomly keyed).
#[derive(Clone, Copy, Debug)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    /// FNV-1a's step over eight bytes at a time (then the rest one by one): still stable
    /// across runs and machines, and eight times fewer multiplications for the large values
    /// the simulator digests on every execution.
    pub fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in words.by_ref() {
            let mut word = [0u8; 8];
            word.copy_from_slice(w);
            self.0 ^= u64::from_le_bytes(word);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3).rotate_left(29);
        }
        for b in words.remainder() {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    pub fn finish(&self) -> u64 {
        self.0
    }
}

/// A snapshot's bytes for transfer in pieces (postcard: compact, deterministic, the same
/// encoding the wire uses). `None` only if serialization itself fails, which it does not for
/// these types.
pub fn encode_snapshot(s: &Snapshot) -> Option<Vec<u8>> {
    postcard::to_allocvec(s).ok()
}

/// The snapshot in bytes received from a peer, or `None` if they are not one.
pub fn decode_snapshot(bytes: &[u8]) -> Option<Snapshot> {
    postcard::from_bytes(bytes).ok()
}

/// A stable digest of a slot's value.
pub fn value_digest(value: &Value) -> u64 {
    let mut h = Fnv::default();
    for cmd in value {
        h.write(cmd.client.as_bytes());
        h.write(&cmd.seq.to_le_bytes());
        digest_op(&mut h, &cmd.op);
    }
    h.write(&(value.len() as u64).to_le_bytes());
    h.finish()
}

fn digest_op(h: &mut Fnv, op: &Op) {
    // Every field, each ended by a byte no UTF-8 string holds, so that no two different ops
    // hash the same bytes. (Not `Debug` text: escaping a 1 MiB value costs far more.)
    h.write(op.name().as_bytes());
    let fields: [Option<&str>; 3] = match op {
        Op::Get { key } | Op::Delete { key } | Op::Read { key } => [Some(key), None, None],
        // The prefix flag and revision are hashed below, after the fields.
        Op::Changes { key, .. } => [Some(key), None, None],
        // The revision is hashed below, after the fields.
        Op::CasRevision { key, new, .. } => [Some(key), Some(new), None],
        Op::Put { key, value } | Op::Append { key, value } => [Some(key), Some(value), None],
        Op::Cas { key, expected, new } => [Some(key), Some(new), expected.as_deref()],
        Op::Open | Op::SnapshotPiece { .. } => [None, None, None],
        Op::Once(inner) => {
            digest_op(h, inner);
            return;
        }
    };
    for f in fields {
        match f {
            Some(f) => {
                h.write(f.as_bytes());
                h.write(&[0xff]);
            }
            None => h.write(&[0xfe]),
        }
    }
    if let Op::Changes { prefix, from, .. } = op {
        h.write(&[u8::from(*prefix)]);
        h.write(&from.to_le_bytes());
    }
    if let Op::CasRevision { revision, .. } = op {
        h.write(&revision.to_le_bytes());
    }
}
