//! The mqpaxos node: everything that touches the outside world around the sans-IO core.
//!
//! - `transport`, `topics`, `codec` and `client`: from `mqpaxos-client`, the crate clients
//!   use alone (re-exported here under the same paths);
//! - `storage`: durable Paxos state (write-ahead log with checksums);
//! - `backup`: backup files and restoring a data directory from one;
//! - `runtime`: the server task that drives the core;
//! - `metrics`: Prometheus metrics and the `/health` probe;
//! - `json`: the JSON request API and the watch event format;
//! - `interest`: which keys watchers registered for, so the leader publishes only those;
//! - `watch`: following the changes of keys, gap-free ([`watch::Watcher`]).

pub use mqpaxos_client::{client, codec, topics, transport};

pub mod acl;
pub mod backup;
pub mod chaos;
pub mod interest;
pub mod json;
pub mod metrics;
pub mod runtime;
pub mod storage;
pub mod transport5;
pub mod watch;

pub use client::{Changes, Client, ClientError, ClientOptions};
pub use runtime::{run_server, NodeError, ServerOptions, Status, StatusQuery, WatchFeed};
pub use storage::SyncPolicy;
pub use transport::{BrokerOptions, TransportError};
