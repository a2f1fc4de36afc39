//! The deterministic simulator for the mqpaxos protocol core.
//!
//! It drives the real `mqpaxos-core` state machines with a virtual clock, one seeded RNG and
//! a simulated network that loses, delays, duplicates and reorders messages and splits the
//! servers into partitions; servers crash and restart with only their durable state. Every
//! client operation is recorded as a history and checked for linearizability. It never opens
//! a socket, starts a thread inside a run, or reads the wall clock during one: one seed, one
//! run, bit for bit.

pub mod accounting;
pub mod checker;
pub mod history;
pub mod network;
pub mod runner;
pub mod scenario;
pub mod simulation;

pub use runner::{default_threads, run_seed, run_seeds, BatchReport};
pub use scenario::Scenario;
pub use simulation::{Counts, RunReport, Simulation};
