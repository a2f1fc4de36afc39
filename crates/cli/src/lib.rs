//! mqpaxos: a replicated key/value store whose servers agree with Multi-Paxos and talk only
//! through an MQTT broker.
//!
//! This crate is the `mqpaxos` command-line tool. It re-exports the client library, for
//! programs that already use the tool's crate; an application that only needs a client
//! depends on `mqpaxos-client` alone (no CLI, plotting or server crates):
//!
//! ```no_run
//! # async fn demo() -> Result<(), mqpaxos::ClientError> {
//! let client = mqpaxos::Client::connect(mqpaxos::ClientOptions::new(
//!     "mqtt://127.0.0.1:1883",
//!     "client1",
//! ))
//! .await?;
//! client.put("k", "v").await?;
//! assert_eq!(client.get("k").await?.as_deref(), Some("v"));
//! client.close().await;
//! # Ok(()) }
//! ```
//!
//! See `examples/client.rs` for a runnable example.

pub use mqpaxos_client::{BrokerOptions, Client, ClientError, ClientOptions};
pub use mqpaxos_core::{Op, OpResult};
pub use mqpaxos_node::Status;
