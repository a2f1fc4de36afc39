//! The mqpaxos node: everything that touches the outside world around the sans-IO core.
//!
//! - `transport`: the MQTT connection (rumqttc), TLS, presence, reconnects;
//! - `topics`: the topic layout;
//! - `codec`: the versioned binary wire format;
//! - `storage`: durable Paxos state (write-ahead log with checksums);
//! - `backup`: backup files and restoring a data directory from one;
//! - `runtime`: the server task that drives the core;
//! - `client`: the async client library;
//! - `metrics`: Prometheus metrics and the `/health` probe;
//! - `json`: the JSON request API and the watch event format;
//! - `watch`: following the changes of keys, gap-free ([`watch::Watcher`]).

pub mod acl;
pub mod backup;
pub mod chaos;
pub mod client;
pub mod codec;
pub mod json;
pub mod metrics;
pub mod runtime;
pub mod storage;
pub mod topics;
pub mod transport;
pub mod transport5;
pub mod watch;

pub use client::{Changes, Client, ClientError, ClientOptions};
/// The MQTT client crate, for callers that publish directly (e.g. fault settings).
pub use rumqttc;
pub use runtime::{run_server, NodeError, ServerOptions, Status, StatusQuery};
pub use storage::SyncPolicy;
pub use transport::{BrokerOptions, TransportError};
