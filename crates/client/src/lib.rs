//! The mqpaxos client library, and what clients and servers share on the wire.
//!
//! - `client`: the async client ([`Client`]): one command at a time per client, to the leader
//!   announced to it or to every server, resent until answered, at most once;
//! - `transport`: the MQTT connection (rumqttc), TLS, reconnects and resubscription;
//! - `topics`: the topic layout under `mqpaxos/<cluster>/`;
//! - `codec`: the versioned binary wire format.
//!
//! A crate of its own so that an application embedding a client pulls in an MQTT client and
//! the protocol's message types, and nothing of the server (storage, metrics, HTTP) or of the
//! command line (`mqpaxos-node` and `mqpaxos` depend on this crate, not the other way round).
//!
//! ```no_run
//! # async fn demo() -> Result<(), mqpaxos_client::ClientError> {
//! use mqpaxos_client::{Client, ClientOptions};
//! let client = Client::connect(ClientOptions::new("mqtt://127.0.0.1:1883", "client1")).await?;
//! client.put("greeting", "hello").await?;
//! assert_eq!(client.get("greeting").await?.as_deref(), Some("hello"));
//! client.close().await;
//! # Ok(()) }
//! ```

pub mod client;
pub mod codec;
pub mod topics;
pub mod transport;

pub use client::{Changes, Client, ClientError, ClientOptions};
pub use transport::{BrokerOptions, TransportError};
