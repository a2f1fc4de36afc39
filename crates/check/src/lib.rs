//! History format and linearizability checker for mqpaxos key/value histories.
//!
//! A history is a JSON Lines file of client events ([`history`]): each client invokes one
//! operation at a time on one key (`put`, `get`, `append`, `delete`, `cas`) and later learns
//! that it took effect (`ok`), certainly did not (`fail`), or nothing (`info`). The
//! [`checker`] decides whether the history is linearizable against a map from keys to
//! optional strings, initially empty.
//!
//! This crate deliberately knows nothing about the Paxos protocol: it judges only what
//! clients observed, so a bug in the protocol cannot hide behind a shared assumption, and
//! histories from any other store (the reference data comes from Porcupine and Jepsen) can
//! be checked the same way.
//!
//! ```
//! use mqpaxos_check::{check_events, parse_jsonl, CheckLimits};
//!
//! let history = r#"
//! {"t": 1, "client": "a", "type": "invoke", "f": "put", "key": "x", "value": "1"}
//! {"t": 2, "client": "a", "type": "ok", "f": "put", "key": "x"}
//! {"t": 3, "client": "b", "type": "invoke", "f": "get", "key": "x"}
//! {"t": 4, "client": "b", "type": "ok", "f": "get", "key": "x", "value": null}
//! "#;
//! let events = parse_jsonl(history).unwrap();
//! let outcome = check_events(&events, CheckLimits::default()).unwrap();
//! assert!(!outcome.is_linearizable()); // the read missed an acknowledged put
//! ```

pub mod checker;
pub mod history;

pub use checker::{check_events, check_operations, CheckLimits, CheckOutcome};
pub use history::{
    pair_operations, parse_jsonl, read_file, write_jsonl, Event, EventType, HistoryError, OpKind,
    Operation, Outcome,
};
