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
mod rule_file;
mod topic;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use mqtt5::broker::config::{BrokerConfig as EngineConfig, StorageConfig};
use mqtt5::broker::{BrokerShutdownHandle, MqttBroker};
use tokio::task::JoinHandle;

pub use acl::Acl;
pub use password::{
    hash_password, hash_password_with, readable_by_others, PasswordFile, MAX_PBKDF2_ITERATIONS,
    PBKDF2_ITERATIONS,
};

/// The largest MQTT packet the broker accepts, by default: what an mqpaxos node accepts
/// (16 MiB of payload plus 1 KiB for the topic and headers; `mqpaxos-node`'s
/// `transport::MAX_PACKET_SIZE`, which a test in the `mqpaxos` crate holds equal). A larger
/// packet would be routed to nodes whose client drops the whole connection on it, and a
/// retained one would do so again on every reconnect. The broker measures the whole packet
/// and rumqttc only what follows the fixed header, so a packet the broker lets through is
/// always a few bytes under the node's limit, even with a packet id added on the way out.
pub const MAX_PACKET_SIZE: usize = 16 * 1024 * 1024 + 1024;

/// The largest retained payload accepted by default. mqpaxos retains only presence
/// (`online`), status reports (a few hundred bytes) and fault settings; a larger retained
/// publish is refused whole (not delivered, not kept), so nobody can park a big message that
/// every reconnecting node receives again.
pub const MAX_RETAINED_PAYLOAD: usize = 64 * 1024;

/// The most retained messages kept by default (each at most [`MAX_RETAINED_PAYLOAD`]):
/// with the generated ACL a user can retain on a handful of topics only, so this bounds
/// what users without one could pile up.
pub const MAX_RETAINED_MESSAGES: usize = 10_000;

/// A TLS listener: certificate chain and private key, PEM files.
#[derive(Clone, Debug)]
pub struct TlsListener {
    /// Address to listen on; port 0 picks a free port (see [`Broker::tls_local_addr`]).
    pub listen: SocketAddr,
    /// The broker's certificate chain (PEM), leaf first.
    pub cert_file: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// How to run the broker. `BrokerConfig::default()` listens on 127.0.0.1:1883 with no
/// password or ACL file: anyone on this machine may connect and do anything. Off loopback
/// a password file is required (see [`BrokerError::Unprotected`]).
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// Address of the plain-TCP listener; port 0 picks a free port (see
    /// [`Broker::local_addr`]).
    pub listen: SocketAddr,
    /// A TLS listener beside the plain one.
    pub tls: Option<TlsListener>,
    /// Mosquitto-format password file. `None`: no authentication; a user name a client
    /// sends is still taken at its word for the ACL's `%u`.
    pub password_file: Option<PathBuf>,
    /// Mosquitto-format ACL file. `None`: every client may publish and subscribe to anything.
    pub acl_file: Option<PathBuf>,
    /// With a password file, whether clients that send no user name may connect (Mosquitto's
    /// `allow_anonymous`, which 2.0 also defaults to false). Ignored without a password file.
    pub allow_anonymous: bool,
    /// Largest MQTT packet accepted, in bytes ([`MAX_PACKET_SIZE`] by default). A client
    /// that sends a larger one is disconnected and its packet goes nowhere.
    pub max_packet_size: usize,
    /// Largest retained payload accepted ([`MAX_RETAINED_PAYLOAD`]); a larger retained
    /// publish is refused whole. 0 means no limit.
    pub max_retained_payload: usize,
    /// Most retained messages kept ([`MAX_RETAINED_MESSAGES`]); a retained publish on a new
    /// topic past it is refused. 0 means no limit.
    pub max_retained_messages: usize,
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
            tls: None,
            password_file: None,
            acl_file: None,
            allow_anonymous: false,
            max_packet_size: MAX_PACKET_SIZE,
            max_retained_payload: MAX_RETAINED_PAYLOAD,
            max_retained_messages: MAX_RETAINED_MESSAGES,
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
    /// A listener off loopback without a password file: anyone who can reach the address
    /// could read every message and pose as any user, a server included.
    #[error(
        "refusing to listen on {listen} without a password file: anyone who can reach it could \
         read all traffic and pose as any server. Give --password-file (Mosquitto format; \
         `mqpaxos broker --password-file FILE --add-user USER` adds a user), or listen on 127.0.0.1"
    )]
    Unprotected {
        /// The non-loopback address.
        listen: SocketAddr,
    },
    /// An ACL file without a password file: the ACL would trust whatever user name a client
    /// claims.
    #[error(
        "an ACL file without a password file protects nothing: any client may claim any user \
         name. Give --password-file as well"
    )]
    AclWithoutPasswords,
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
    tls_local_addr: Option<SocketAddr>,
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
        if cfg.password_file.is_none() {
            if cfg.acl_file.is_some() {
                return Err(BrokerError::AclWithoutPasswords);
            }
            let listeners = std::iter::once(cfg.listen).chain(cfg.tls.iter().map(|t| t.listen));
            for listen in listeners {
                if !listen.ip().is_loopback() {
                    return Err(BrokerError::Unprotected { listen });
                }
            }
        }
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
            passwords: passwords.map(Arc::new),
            allow_anonymous: cfg.allow_anonymous,
            acl: acl.map(Arc::new),
            hashing: Arc::new(tokio::sync::Semaphore::new(auth::hashing_slots())),
            owners: auth::SessionOwners::default(),
        };
        let mut engine_cfg = engine_config(&cfg);
        engine_cfg.event_handler = Some(Arc::new(auth.owners.clone()));
        if cfg.tls.is_some() {
            // The engine builds its TLS configuration with rustls' process-wide provider;
            // choose ring (the one the whole tree uses) unless one is installed already, or
            // rustls would refuse to pick when another dependency enables a second provider.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }

        let start_error = |message: String| BrokerError::Start {
            listen: cfg.listen,
            message,
        };
        let engine = MqttBroker::with_config(engine_cfg)
            .await
            .map_err(|e| start_error(e.to_string()))?;
        let local_addr = engine
            .local_addr()
            .ok_or_else(|| start_error("no TCP listener was bound".to_string()))?;
        let tls_local_addr = match &cfg.tls {
            Some(_) => Some(
                engine
                    .tls_local_addr()
                    .ok_or_else(|| start_error("no TLS listener was bound".to_string()))?,
            ),
            None => None,
        };
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
        tracing::info!(%local_addr, ?tls_local_addr, "MQTT broker listening");
        Ok(Broker {
            local_addr,
            tls_local_addr,
            shutdown,
            task: Some(task),
        })
    }

    /// The address the broker listens on (with the real port when 0 was configured).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The TLS listener's address, if there is one (with the real port when 0 was configured).
    pub fn tls_local_addr(&self) -> Option<SocketAddr> {
        self.tls_local_addr
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
    engine.max_retained_message_size = cfg.max_retained_payload;
    engine.max_retained_messages = cfg.max_retained_messages;
    if let Some(tls) = &cfg.tls {
        engine = engine.with_tls(
            mqtt5::broker::config::TlsConfig::new(tls.cert_file.clone(), tls.key_file.clone())
                .with_bind_address(tls.listen),
        );
    }
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
