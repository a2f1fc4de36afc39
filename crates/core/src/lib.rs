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
pub mod log;
pub mod message;
pub mod server;

pub use ballot::{Ballot, NodeId, Slot};
pub use client::{Client, ClientConfig, ClientError, ClientReady};
#[cfg(feature = "mutations")]
pub use config::Mutation;
pub use config::{Config, ConfigError};
pub use driver::{Driver, Flush, GROUP_COMMIT_MAX};
pub use kv::{Applied, ClientId, Command, KvStore, Op, OpResult};
pub use log::{Durable, Entry, Incarnations, Log, PersistOp, Snapshot, Value};
pub use message::{coalesce, Dest, Input, Message, Outgoing, Ready, SetTimer, TimerKind};
pub use server::{RoleKind, Server};

/// FNV-1a: a tiny, stable hash, so digests agree across runs, builds and machines (std's
/// hasher is randomly keyed).
#[derive(Clone, Copy, Debug)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    pub fn finish(&self) -> u64 {
        self.0
    }
}

/// A stable digest of a slot's value.
pub fn value_digest(value: &Value) -> u64 {
    let mut h = Fnv::default();
    for cmd in value {
        h.write(cmd.client.as_bytes());
        h.write(&cmd.seq.to_le_bytes());
        h.write(format!("{:?}", cmd.op).as_bytes());
    }
    h.write(&(value.len() as u64).to_le_bytes());
    h.finish()
}
