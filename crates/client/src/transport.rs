//! The MQTT connection every node uses: broker URL and credentials, TLS, TCP_NODELAY,
//! presence (retained `online`, `offline` as last will), subscriptions restored on every
//! (re)connect, and reconnection with backoff.
//!
//! QoS: protocol traffic is published at QoS 0. Paxos already resends every message that
//! expects an answer until the answer arrives, so broker-level acknowledgements (QoS 1) would
//! double the packets without adding safety, and would make brokers queue stale protocol
//! messages for a node that is away (Mosquitto even drops QoS 1 messages silently past
//! `max_queued_messages`). Presence and status are retained QoS 1, so that what a node last
//! said about itself survives its connection.

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, LastWill, MqttOptions,
    NetworkOptions, Packet, QoS, TlsConfiguration, Transport,
};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

/// The largest MQTT packet a node accepts or sends: the codec's largest payload plus 1 KiB
/// for the topic and headers. rumqttc drops the whole connection on a larger incoming
/// packet, so a broker must never deliver one: the built-in broker's limit
/// (`mqpaxos_broker::MAX_PACKET_SIZE`) is held to this by a test, and the shipped Mosquitto
/// and EMQX settings say the same (`docs/operations.md`).
pub const MAX_PACKET_SIZE: usize = crate::codec::DEFAULT_MAX_PAYLOAD + 1024;

/// Whether this process may subscribe to a cluster's fault-injection (`chaos`) topic.
/// Off unless a server is started with `--allow-fault-injection`: a server that never
/// subscribes cannot be made to drop or delay messages by whoever can publish there (on a
/// broker without the generated ACL, anyone). Process-wide because it is a property of
/// how the process was started; each `mqpaxos server` is its own process.
static FAULT_INJECTION: AtomicBool = AtomicBool::new(false);

/// Lets (or stops) this process's connections subscribe to fault-injection topics.
pub fn allow_fault_injection(allowed: bool) {
    FAULT_INJECTION.store(allowed, Ordering::Relaxed);
}

/// Whether `filter` is a cluster's fault-injection topic, `mqpaxos/<cluster>/chaos`.
fn is_chaos_topic(filter: &str) -> bool {
    let levels: Vec<&str> = filter.split('/').collect();
    matches!(levels.as_slice(), ["mqpaxos", _, "chaos"])
}
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

#[derive(Debug, Error)]
pub enum TransportError {
    #[error("bad broker URL {url:?}: {why} (expected mqtt://host:port or mqtts://host:port)")]
    BadUrl { url: String, why: String },
    #[error("cannot read CA file {path}: {why}")]
    CaFile { path: PathBuf, why: String },
    #[error("cannot reach the broker at {url} within {timeout:?}: {last}")]
    Unreachable {
        url: String,
        timeout: Duration,
        last: String,
    },
    #[error("the broker at {url} refused the connection: {why}")]
    Refused { url: String, why: String },
    /// Nothing accepts connections there (ECONNREFUSED): waiting would not change that.
    #[error("cannot reach the broker at {url}: connection refused (is a broker running and listening on that host and port?)")]
    NotListening { url: String },
    #[error("the connection to the broker is closed")]
    Closed,
    /// The connection's outgoing queue is full (the broker is slower than the publisher).
    #[error("the connection's outgoing queue is full")]
    Backlog,
}

/// Where and as whom to connect.
#[derive(Clone, Debug)]
pub struct BrokerOptions {
    /// `mqtt://host:port` (plain TCP) or `mqtts://host:port` (TLS).
    pub url: String,
    /// The MQTT user name: `server<id>` for servers, the client's own name for clients.
    pub user: String,
    pub password: Option<String>,
    /// PEM file of CAs to trust for `mqtts://` (default: the system's roots).
    pub ca_file: Option<PathBuf>,
    pub keep_alive: Duration,
}

/// A parsed broker address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerAddr {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

pub fn parse_url(url: &str) -> Result<BrokerAddr, TransportError> {
    let bad = |why: &str| TransportError::BadUrl {
        url: url.to_string(),
        why: why.to_string(),
    };
    let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    let tls = match parsed.scheme() {
        "mqtt" | "tcp" => false,
        "mqtts" | "ssl" => true,
        other => return Err(bad(&format!("unknown scheme {other:?}"))),
    };
    let host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if parsed.path() != "" && parsed.path() != "/" {
        return Err(bad("unexpected path"));
    }
    let port = parsed.port().unwrap_or(if tls { 8883 } else { 1883 });
    Ok(BrokerAddr { host, port, tls })
}

/// Also the TLS settings of the servers' MQTT 5 connection (`mqpaxos_node::transport5`).
pub fn tls_config(ca_file: Option<&PathBuf>) -> Result<TlsConfiguration, TransportError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let bad = |why: String| TransportError::CaFile {
                path: path.clone(),
                why,
            };
            let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
            let mut reader = std::io::BufReader::new(pem.as_slice());
            for cert in rustls_pemfile::certs(&mut reader) {
                let cert = cert.map_err(|e| bad(e.to_string()))?;
                roots.add(cert).map_err(|e| bad(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(bad("no certificates in it".into()));
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportError::CaFile {
            path: ca_file.cloned().unwrap_or_default(),
            why: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConfiguration::Rustls(Arc::new(cfg)))
}

/// What the connection hands the node.
#[derive(Debug)]
pub enum Incoming {
    /// (Re)connected, subscriptions restored.
    Connected,
    /// Lost the broker, or could not reach it; reconnecting.
    Disconnected(String),
    /// The broker refused the login (bad user name or password, not authorized). Retrying
    /// cannot fix that, so the connection stops trying.
    Refused(String),
    Publish {
        topic: String,
        payload: Vec<u8>,
        /// Its share of the bytes a connection may hold received but not yet handled
        /// ([`INCOMING_BYTES`]); released when the message is dropped.
        held: Held,
    },
}

/// The most bytes of received messages one connection holds before the reader stops taking
/// more from the socket (TCP then pushes back on the broker, which drops or queues as its
/// limits say): a flood of large messages cannot grow a node's memory without bound. Counted
/// in KiB.
pub const INCOMING_BYTES: usize = 64 << 20;

/// A received message's claim on [`INCOMING_BYTES`].
#[derive(Debug)]
pub struct Held(#[allow(dead_code)] Option<tokio::sync::OwnedSemaphorePermit>);

/// Claims a received message of `len` bytes' share of `budget`, waiting (and so stopping the
/// connection's reading) while the messages not yet handled hold it; one message larger than
/// the whole budget takes all of it. `None` if the connection is stopped meanwhile.
/// Shared with the servers' MQTT 5 connection (`mqpaxos_node::transport5`).
pub async fn claim(
    budget: &Arc<tokio::sync::Semaphore>,
    len: usize,
    stop: &mut watch::Receiver<bool>,
) -> Option<Held> {
    let kib = (len / 1024 + 1).min(INCOMING_BYTES / 1024) as u32;
    tokio::select! {
        p = budget.clone().acquire_many_owned(kib) => Some(Held(p.ok())),
        _ = stop.changed() => None,
    }
}

/// What to set up on a connection.
#[derive(Clone, Debug, Default)]
pub struct Session {
    /// MQTT client id; unique per connection.
    pub client_id: String,
    /// Topic filters to subscribe to on every connect.
    pub subscriptions: Vec<String>,
    /// Published with retain on every connect (e.g. presence `online`).
    pub on_connect: Vec<(String, Vec<u8>)>,
    /// The last will: published retained by the broker if the connection dies.
    pub will: Option<(String, Vec<u8>)>,
}

/// How a publish is delivered: MQTT's QoS 0 or 1 (QoS 2 is never used: Paxos and the clients
/// resend what matters, and a duplicate is harmless everywhere).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qos {
    AtMostOnce,
    AtLeastOnce,
}

impl From<Qos> for QoS {
    fn from(q: Qos) -> QoS {
        match q {
            Qos::AtMostOnce => QoS::AtMostOnce,
            Qos::AtLeastOnce => QoS::AtLeastOnce,
        }
    }
}

/// A live connection: publish with [`Connection::publish`] and its kin, read with
/// [`Connection::recv`]. The MQTT client stays inside: callers cannot subscribe, change the
/// session or bypass the receive budget behind the connection's back.
pub struct Connection {
    client: AsyncClient,
    incoming: mpsc::Receiver<Incoming>,
    connected: Arc<AtomicBool>,
    closing: Arc<AtomicBool>,
    task: JoinHandle<()>,
    stop: watch::Sender<bool>,
}

impl Connection {
    /// Connects and keeps the connection alive in the background. With `wait`, returns only
    /// once the broker has accepted the connection (or fails after that long); without, it
    /// returns at once and keeps trying for ever, as a server should.
    pub async fn open(
        opts: &BrokerOptions,
        session: Session,
        wait: Option<Duration>,
    ) -> Result<Connection, TransportError> {
        let addr = parse_url(&opts.url)?;
        let mut session = session;
        if !FAULT_INJECTION.load(Ordering::Relaxed) {
            session.subscriptions.retain(|f| !is_chaos_topic(f));
        }
        let mut mo = MqttOptions::new(session.client_id.clone(), addr.host.clone(), addr.port);
        mo.set_keep_alive(opts.keep_alive.max(Duration::from_secs(1)));
        mo.set_clean_session(true);
        mo.set_max_packet_size(MAX_PACKET_SIZE, MAX_PACKET_SIZE);
        mo.set_credentials(opts.user.clone(), opts.password.clone().unwrap_or_default());
        if let Some((topic, payload)) = &session.will {
            mo.set_last_will(LastWill::new(
                topic,
                payload.clone(),
                QoS::AtLeastOnce,
                true,
            ));
        }
        if addr.tls {
            mo.set_transport(Transport::tls_with_config(tls_config(
                opts.ca_file.as_ref(),
            )?));
        }
        let (client, mut eventloop) = AsyncClient::new(mo, 10_000);
        let mut net = NetworkOptions::new();
        // Without it every hop waits for Nagle's algorithm: ~40 ms a round trip, not ~0.15.
        net.set_tcp_nodelay(true);
        net.set_connection_timeout(5);
        eventloop.set_network_options(net);

        let (tx, incoming) = mpsc::channel(10_000);
        let budget = Arc::new(tokio::sync::Semaphore::new(INCOMING_BYTES / 1024));
        let connected = Arc::new(AtomicBool::new(false));
        let (stop, stop_rx) = watch::channel(false);
        let (first_tx, mut first_rx) = mpsc::channel::<Result<(), String>>(4);
        let closing = Arc::new(AtomicBool::new(false));
        // A caller that waits reports the outcome itself; one that does not (a server) has
        // only the log to say why it is not connected, so every failed attempt goes there.
        let loud = wait.is_none().then(|| opts.url.clone());
        let task = tokio::spawn(drive(
            eventloop,
            client.clone(),
            session,
            (tx, budget),
            [connected.clone(), closing.clone()],
            (stop_rx, loud),
            first_tx,
        ));
        let conn = Connection {
            client,
            incoming,
            connected,
            closing,
            task,
            stop,
        };
        let Some(limit) = wait else {
            return Ok(conn);
        };
        let deadline = tokio::time::Instant::now() + limit;
        let mut last = String::from("no answer");
        loop {
            match tokio::time::timeout_at(deadline, first_rx.recv()).await {
                Ok(Some(Ok(()))) => return Ok(conn),
                Ok(Some(Err(e))) if e.starts_with("refused:") => {
                    conn.close().await;
                    return Err(TransportError::Refused {
                        url: opts.url.clone(),
                        why: e.trim_start_matches("refused:").trim().to_string(),
                    });
                }
                Ok(Some(Err(e))) if e.starts_with(NOT_LISTENING) => {
                    conn.close().await;
                    return Err(TransportError::NotListening {
                        url: opts.url.clone(),
                    });
                }
                Ok(Some(Err(e))) => last = e,
                Ok(None) => return Err(TransportError::Closed),
                Err(_) => {
                    conn.close().await;
                    return Err(TransportError::Unreachable {
                        url: opts.url.clone(),
                        timeout: limit,
                        last,
                    });
                }
            }
        }
    }

    /// Whether the broker has accepted the connection and it has not dropped since.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// The next message or connection event; `None` once the connection is closed (or its
    /// messages were handed off with [`Connection::take_incoming`]).
    pub async fn recv(&mut self) -> Option<Incoming> {
        self.incoming.recv().await
    }

    /// A message or event that has already arrived, without waiting.
    pub fn try_recv(&mut self) -> Option<Incoming> {
        self.incoming.try_recv().ok()
    }

    /// Hands what arrives to a reader on another task; [`Connection::recv`] returns `None`
    /// from then on, and publishing still works.
    pub fn take_incoming(&mut self) -> mpsc::Receiver<Incoming> {
        std::mem::replace(&mut self.incoming, mpsc::channel(1).1)
    }

    /// Queues a publish without waiting: a server's event loop must not stall when the
    /// connection's queue is full, so the publish fails instead (the caller counts it as a
    /// lost message; Paxos resends what matters).
    pub fn try_publish(
        &self,
        topic: String,
        qos: Qos,
        retain: bool,
        payload: Vec<u8>,
    ) -> Result<(), TransportError> {
        self.client
            .try_publish(topic, qos.into(), retain, payload)
            .map_err(|_| TransportError::Backlog)
    }

    /// Publishes at QoS 0 (see the module docs for why).
    pub async fn publish(&self, topic: String, payload: Vec<u8>) -> Result<(), TransportError> {
        self.client
            .publish(topic, QoS::AtMostOnce, false, payload)
            .await
            .map_err(|_| TransportError::Closed)
    }

    /// Publishes retained at QoS 1: presence and status.
    pub async fn publish_retained(
        &self,
        topic: String,
        payload: Vec<u8>,
    ) -> Result<(), TransportError> {
        self.client
            .publish(topic, QoS::AtLeastOnce, true, payload)
            .await
            .map_err(|_| TransportError::Closed)
    }

    /// Disconnects cleanly (no last will) and stops the background task.
    pub async fn close(self) {
        self.closing.store(true, Ordering::Relaxed);
        let _ = self.client.disconnect().await;
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(2), self.task).await;
    }
}

/// Whether a refusal is about who we are, which no retry can change.
fn refusal_is_final(code: ConnectReturnCode) -> bool {
    matches!(
        code,
        ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized
    )
}
/// How `drive` tells `open` that the TCP connection itself was refused: a caller waiting
/// for the broker is told at once, since nobody is there to answer within any timeout.
const NOT_LISTENING: &str = "not listening:";

fn refused_reason(code: ConnectReturnCode) -> &'static str {
    match code {
        ConnectReturnCode::BadUserNamePassword => "bad user name or password",
        ConnectReturnCode::NotAuthorized => "not authorized",
        ConnectReturnCode::BadClientId => "client id rejected",
        ConnectReturnCode::RefusedProtocolVersion => "protocol version not supported",
        ConnectReturnCode::ServiceUnavailable => "service unavailable",
        ConnectReturnCode::Success => "success",
    }
}

async fn drive(
    mut eventloop: EventLoop,
    client: AsyncClient,
    session: Session,
    (tx, budget): (mpsc::Sender<Incoming>, Arc<tokio::sync::Semaphore>),
    [connected, closing]: [Arc<AtomicBool>; 2],
    (mut stop, loud): (watch::Receiver<bool>, Option<String>),
    first: mpsc::Sender<Result<(), String>>,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let ev = tokio::select! {
            ev = eventloop.poll() => ev,
            _ = stop.changed() => return,
        };
        match ev {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = Duration::from_millis(50);
                // rumqttc does not restore subscriptions after a reconnect: do it on every
                // ConnAck.
                for filter in &session.subscriptions {
                    let _ = client.subscribe(filter.clone(), QoS::AtMostOnce).await;
                }
                for (topic, payload) in &session.on_connect {
                    let _ = client
                        .publish(topic.clone(), QoS::AtLeastOnce, true, payload.clone())
                        .await;
                }
                connected.store(true, Ordering::Relaxed);
                let _ = first.try_send(Ok(()));
                if tx.send(Incoming::Connected).await.is_err() {
                    return;
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let Some(held) = claim(&budget, p.payload.len(), &mut stop).await else {
                    return;
                };
                let msg = Incoming::Publish {
                    topic: p.topic,
                    payload: p.payload.to_vec(),
                    held,
                };
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => {
                let was = connected.swap(false, Ordering::Relaxed);
                if closing.load(Ordering::Relaxed) {
                    // Our own disconnect: nothing to report or retry.
                    return;
                }
                let why = match &e {
                    ConnectionError::ConnectionRefused(code) => {
                        format!("refused: {}", refused_reason(*code))
                    }
                    ConnectionError::Io(io)
                        if io.kind() == std::io::ErrorKind::ConnectionRefused =>
                    {
                        format!("{NOT_LISTENING} {io}")
                    }
                    other => other.to_string(),
                };
                let _ = first.try_send(Err(why.clone()));
                if let ConnectionError::ConnectionRefused(code) = &e {
                    if refusal_is_final(*code) {
                        // Said once, by whoever reads `Refused` (a server ends with it).
                        let _ = tx.try_send(Incoming::Refused(refused_reason(*code).to_string()));
                        return;
                    }
                }
                if was {
                    tracing::warn!(error = %why, "lost the broker; reconnecting");
                    let _ = tx.try_send(Incoming::Disconnected(why));
                } else if let Some(url) = &loud {
                    tracing::warn!(
                        broker = %url,
                        error = %why,
                        retry_in = ?backoff,
                        "cannot connect to the broker"
                    );
                    let _ = tx.try_send(Incoming::Disconnected(why));
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chaos_topics_are_recognised() {
        assert!(is_chaos_topic("mqpaxos/prod/chaos"));
        assert!(is_chaos_topic(&crate::topics::Topics::new("x").chaos()));
        assert!(!is_chaos_topic("mqpaxos/prod/status/server1"));
        assert!(!is_chaos_topic("other/prod/chaos"));
        assert!(!is_chaos_topic("mqpaxos/chaos"));
    }

    #[test]
    fn urls_parse_or_say_why_not() {
        assert_eq!(
            parse_url("mqtt://127.0.0.1:1884").unwrap(),
            BrokerAddr {
                host: "127.0.0.1".into(),
                port: 1884,
                tls: false
            }
        );
        assert_eq!(parse_url("mqtts://broker.local").unwrap().port, 8883);
        assert_eq!(parse_url("mqtt://[::1]:1883").unwrap().host, "::1");
        for bad in [
            "127.0.0.1:1883",
            "http://x:1",
            "mqtt://",
            "mqtt://h:99999",
            "mqtt://h:1/x",
        ] {
            let e = parse_url(bad).unwrap_err().to_string();
            assert!(e.contains("bad broker URL"), "{bad}: {e}");
        }
    }
}
