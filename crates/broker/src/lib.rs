//! The MQTT broker built into mqpaxos (`mqpaxos broker`, `mqpaxos cluster up`), for running a
//! whole cluster on one machine without installing Mosquitto.
//!
//! The engine is the [`mqtt5`] crate's broker (MQTT 5 and 3.1.1, so the `rumqttc` 3.1.1
//! clients of our nodes connect as they would to Mosquitto; it sets `TCP_NODELAY` on every
//! accepted socket, without which a round trip costs ~44 ms instead of ~0.04 ms). What this
//! crate adds is Mosquitto compatibility where an operator would notice: the password file is
//! Mosquitto's (`mosquitto_passwd` output, [`hash_password`] writes the same lines) and the
//! ACL file is Mosquitto's syntax and decision order ([`Acl`]), so one pair of files serves
//! both brokers. See `docs/broker.md` for the choice of engine and the measurements.
//!
//! ```no_run
//! # async fn run() -> Result<(), mqpaxos_broker::BrokerError> {
//! use mqpaxos_broker::{Broker, BrokerConfig};
//! let broker = Broker::start(BrokerConfig {
//!     listen: "127.0.0.1:0".parse().unwrap(),
//!     ..BrokerConfig::default()
//! })
//! .await?;
//! println!("listening on {}", broker.local_addr());
//! broker.shutdown().await?;
//! # Ok(()) }
//! ```

mod acl;
mod auth;
mod password;
mod topic;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use mqtt5::broker::config::{BrokerConfig as EngineConfig, StorageConfig};
use mqtt5::broker::{BrokerShutdownHandle, MqttBroker};
use tokio::task::JoinHandle;

pub use acl::Acl;
pub use password::{hash_password, PasswordFile, PBKDF2_ITERATIONS};

/// How to run the broker. `BrokerConfig::default()` listens on 127.0.0.1:1883 with no
/// password or ACL file: anyone on this machine may connect and do anything.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// Address to listen on; port 0 picks a free port (see [`Broker::local_addr`]).
    pub listen: SocketAddr,
    /// Mosquitto-format password file. `None`: no authentication; a user name a client
    /// sends is still taken at its word for the ACL's `%u`.
    pub password_file: Option<PathBuf>,
    /// Mosquitto-format ACL file. `None`: every client may publish and subscribe to anything.
    pub acl_file: Option<PathBuf>,
    /// With a password file, whether clients that send no user name may connect (Mosquitto's
    /// `allow_anonymous`, which 2.0 also defaults to false). Ignored without a password file.
    pub allow_anonymous: bool,
    /// Largest MQTT packet accepted, in bytes. The default is MQTT's own limit (256 MiB), as
    /// in Mosquitto: the clients' own limits are the ones that matter.
    pub max_packet_size: usize,
    /// Most messages held for one client that is offline or behind (Mosquitto's
    /// `max_queued_messages`); past it the oldest are dropped, with a warning in the log.
    /// 0 means no limit, the default: Paxos traffic is QoS 1 and must not vanish in a burst.
    pub max_queued_messages: usize,
    /// Most bytes held for one client, as above (Mosquitto's `max_queued_bytes`); 0 means no
    /// limit. The default, 1 GiB, only guards the machine against a client that never comes
    /// back to a persistent session.
    pub max_queued_bytes: usize,
    /// Most clients connected at once.
    pub max_clients: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            password_file: None,
            acl_file: None,
            allow_anonymous: false,
            max_packet_size: 268_435_455,
            max_queued_messages: 0,
            max_queued_bytes: 1 << 30,
            max_clients: 10_000,
        }
    }
}

/// Why the broker could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// A password or ACL file could not be read at all.
    #[error("cannot read the {kind} file {}: {source}", path.display())]
    ReadFile {
        /// "password" or "ACL".
        kind: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line of the password file is not a valid entry.
    #[error("password file {}, line {line}: {message}", path.display())]
    PasswordFile {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// A line of the ACL file is not valid.
    #[error("ACL file {}, line {line}: {message}", path.display())]
    AclFile {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// The broker could not listen on the address (in use, no permission, bad address) or
    /// rejected its configuration.
    #[error("cannot start the MQTT broker on {listen}: {message}")]
    Start {
        /// The configured address.
        listen: SocketAddr,
        /// The engine's explanation.
        message: String,
    },
    /// The broker stopped with an error, or its task panicked.
    #[error("the MQTT broker failed: {0}")]
    Failed(String),
}

/// A running broker. Stop it with [`Broker::shutdown`]; dropping it also asks it to stop,
/// but without waiting for the port to be released.
pub struct Broker {
    local_addr: SocketAddr,
    shutdown: BrokerShutdownHandle,
    task: Option<JoinHandle<mqtt5::Result<()>>>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// Reads the password and ACL files, binds the listening socket and starts serving;
    /// returns once the broker accepts connections. Must be called inside a Tokio runtime
    /// (either flavor; the broker runs on spawned tasks).
    pub async fn start(cfg: BrokerConfig) -> Result<Broker, BrokerError> {
        let passwords = cfg
            .password_file
            .as_deref()
            .map(PasswordFile::load)
            .transpose()?;
        let acl = cfg.acl_file.as_deref().map(Acl::load).transpose()?;
        if let Some(p) = &passwords {
            tracing::info!(users = p.len(), "password file loaded");
        }
        let auth = auth::FileAuth {
            passwords,
            allow_anonymous: cfg.allow_anonymous,
            acl: acl.map(Arc::new),
        };

        let start_error = |message: String| BrokerError::Start {
            listen: cfg.listen,
            message,
        };
        let engine = MqttBroker::with_config(engine_config(&cfg))
            .await
            .map_err(|e| start_error(e.to_string()))?;
        let local_addr = engine
            .local_addr()
            .ok_or_else(|| start_error("no TCP listener was bound".to_string()))?;
        let mut engine = engine.with_auth_provider(Arc::new(auth));
        let mut ready = engine.ready_receiver();
        let shutdown = engine.shutdown_handle();
        let mut task = tokio::spawn(async move { engine.run().await });

        // `ready` flips once the accept loops run; if `run` fails first, the sender is
        // dropped with the engine and the task's result says why.
        if ready.wait_for(|r| *r).await.is_err() {
            let why = match (&mut task).await {
                Ok(Ok(())) => "the broker stopped before it was ready".to_string(),
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            };
            return Err(start_error(why));
        }
        tracing::info!(%local_addr, "MQTT broker listening");
        Ok(Broker {
            local_addr,
            shutdown,
            task: Some(task),
        })
    }

    /// The address the broker listens on (with the real port when 0 was configured).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Disconnects every client, stops accepting, and waits until the listening socket is
    /// closed, so the port can be bound again as soon as this returns. Retained messages
    /// live in memory and are gone with the broker.
    pub async fn shutdown(mut self) -> Result<(), BrokerError> {
        self.shutdown.shutdown();
        let Some(task) = self.task.take() else {
            return Ok(());
        };
        match task.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(BrokerError::Failed(e.to_string())),
            Err(e) => Err(BrokerError::Failed(e.to_string())),
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if self.task.is_some() {
            self.shutdown.shutdown();
        }
    }
}

fn unlimited_if_zero(n: usize) -> usize {
    if n == 0 {
        usize::MAX
    } else {
        n
    }
}

fn engine_config(cfg: &BrokerConfig) -> EngineConfig {
    let mut engine = EngineConfig::default()
        .with_bind_address(cfg.listen)
        .with_max_clients(cfg.max_clients)
        .with_max_packet_size(cfg.max_packet_size);
    // Retained messages and sessions live in memory: the Paxos state is in the servers'
    // own storage, and the default file storage would write into the working directory.
    engine.storage_config = StorageConfig {
        enable_persistence: false,
        max_queued_messages_per_client: unlimited_if_zero(cfg.max_queued_messages),
        max_queued_bytes_per_client: unlimited_if_zero(cfg.max_queued_bytes),
        ..StorageConfig::default()
    };
    // Publishes $SYS/ statistics every 10 s otherwise: noise nobody here reads.
    engine.sys_topics_enabled = false;
    engine
}
