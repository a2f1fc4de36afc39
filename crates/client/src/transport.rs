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

/// Bytes an event loop holds, read from the broker while its own write waits. Only a broker
/// that sends this much to one connection while that connection's write stands still fills
/// it; past it the connection falls back to reading once its write is done (and a timeout
/// on one side or the other ends a standstill). Sixteen of the largest packets.
pub const READ_AHEAD: usize = 16 * MAX_PACKET_SIZE;
/// At most this many queued publishes share one write to the socket (the codec still
/// writes out whenever its buffer passes its own bound, so large ones do not pile up).
const WRITE_BATCH: usize = 64;

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
use std::future::Future;
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
async fn claim(
    budget: &Arc<tokio::sync::Semaphore>,
    len: usize,
    stop: &mut watch::Receiver<bool>,
) -> Option<Held> {
    let kib = (len / 1024 + 1).min(INCOMING_BYTES / 1024) as u32;
    until_stopped(stop, budget.clone().acquire_many_owned(kib))
        .await
        .map(|p| Held(p.ok()))
}

/// `work`'s output, or `None` if the connection is stopped (or its owner gone) first.
async fn until_stopped<F: Future>(stop: &mut watch::Receiver<bool>, work: F) -> Option<F::Output> {
    tokio::select! {
        out = work => Some(out),
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
    task: ConnectionTask,
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
        // Everything queued goes out in one write: a leader's replies and watch events of a
        // flush, a pipelined client's commands (vendor/rumqttc/PATCH.md).
        mo.set_max_request_batch(WRITE_BATCH);
        // Read while a write waits, so that large messages crossing on this connection cannot
        // leave the broker and this event loop each waiting for the other to read
        // (vendor/rumqttc/PATCH.md, docs/broker.md).
        mo.set_read_ahead(READ_AHEAD);
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
        eventloop.set_network_options(network_options());

        let (tx, incoming) = mpsc::channel(10_000);
        let (first_tx, mut first_rx) = mpsc::channel(4);
        let task = ConnectionTask::spawn(Events {
            eventloop,
            client: client.clone(),
            session,
            tx,
            first: first_tx,
            // A caller that waits reports the outcome itself; one that does not (a server)
            // has only the log to say why it is not connected, so every failed attempt goes
            // there.
            loud: wait.is_none().then(|| opts.url.clone()),
        });
        let conn = Connection {
            client,
            incoming,
            task,
        };
        let Some(limit) = wait else {
            return Ok(conn);
        };
        let deadline = tokio::time::Instant::now() + limit;
        let mut last = String::from("no answer");
        loop {
            match tokio::time::timeout_at(deadline, first_rx.recv()).await {
                Ok(Some(Ok(()))) => return Ok(conn),
                Ok(Some(Err(AttemptError::Refused(code)))) => {
                    conn.close().await;
                    return Err(TransportError::Refused {
                        url: opts.url.clone(),
                        why: refused_reason(code).to_string(),
                    });
                }
                Ok(Some(Err(AttemptError::NotListening(_)))) => {
                    conn.close().await;
                    return Err(TransportError::NotListening {
                        url: opts.url.clone(),
                    });
                }
                Ok(Some(Err(AttemptError::Other(e)))) => last = e,
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
        self.task.is_connected()
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
        self.task.close(self.client.disconnect()).await;
    }
}

/// Whether a refusal is about who we are, which no retry can change.
fn refusal_is_final(code: ConnectReturnCode) -> bool {
    matches!(
        code,
        ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized
    )
}

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

/// Why one connection attempt failed, as the background task tells an [`Connection::open`]
/// that waits for the first outcome; its text is also what the log and
/// [`Incoming::Disconnected`] say.
#[derive(Clone, Debug, Error)]
enum AttemptError {
    /// The broker answered the CONNECT with a refusal.
    #[error("refused: {}", refused_reason(*.0))]
    Refused(ConnectReturnCode),
    /// Nothing accepts connections there (ECONNREFUSED): a caller waiting for the broker is
    /// told at once, since nobody is there to answer within any timeout.
    #[error("not listening: {0}")]
    NotListening(String),
    /// Anything else (a timeout, a reset, TLS): worth another attempt.
    #[error("{0}")]
    Other(String),
}

impl From<&ConnectionError> for AttemptError {
    fn from(e: &ConnectionError) -> Self {
        match e {
            ConnectionError::ConnectionRefused(code) => AttemptError::Refused(*code),
            ConnectionError::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                AttemptError::NotListening(io.to_string())
            }
            other => AttemptError::Other(other.to_string()),
        }
    }
}

/// The MQTT 3.1.1 half of a [`Connection`]'s background task.
struct Events {
    eventloop: EventLoop,
    client: AsyncClient,
    session: Session,
    tx: mpsc::Sender<Incoming>,
    /// Every attempt's outcome, for an `open` that waits for the first success.
    first: mpsc::Sender<Result<(), AttemptError>>,
    /// The broker's URL, when every failed attempt is to be logged.
    loud: Option<String>,
}

impl ConnectionEvents for Events {
    type Publish = rumqttc::Publish;
    type Error = ConnectionError;

    async fn next(&mut self) -> LoopEvent<Self::Publish, Self::Error> {
        match self.eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => LoopEvent::ConnAck,
            Ok(Event::Incoming(Packet::Publish(p))) => LoopEvent::Publish(p),
            Ok(_) => LoopEvent::Other,
            Err(e) => LoopEvent::Failed(e),
        }
    }

    fn size(publish: &Self::Publish) -> usize {
        publish.payload.len()
    }

    async fn restore(&mut self) {
        for filter in &self.session.subscriptions {
            let _ = self.client.subscribe(filter.clone(), QoS::AtMostOnce).await;
        }
        for (topic, payload) in &self.session.on_connect {
            let _ = self
                .client
                .publish(topic.clone(), QoS::AtLeastOnce, true, payload.clone())
                .await;
        }
    }

    async fn connected(&mut self) -> bool {
        let _ = self.first.try_send(Ok(()));
        self.tx.send(Incoming::Connected).await.is_ok()
    }

    async fn received(&mut self, p: Self::Publish, held: Held) -> bool {
        let msg = Incoming::Publish {
            topic: p.topic,
            payload: p.payload.to_vec(),
            held,
        };
        self.tx.send(msg).await.is_ok()
    }

    fn failed(&mut self, e: ConnectionError, was_connected: bool, retry_in: Duration) -> bool {
        let attempt = AttemptError::from(&e);
        let why = attempt.to_string();
        let _ = self.first.try_send(Err(attempt));
        if let ConnectionError::ConnectionRefused(code) = &e {
            if refusal_is_final(*code) {
                // Said once, by whoever reads `Refused` (a server ends with it).
                let _ = self
                    .tx
                    .try_send(Incoming::Refused(refused_reason(*code).to_string()));
                return false;
            }
        }
        if was_connected {
            tracing::warn!(error = %why, "lost the broker; reconnecting");
            let _ = self.tx.try_send(Incoming::Disconnected(why));
        } else if let Some(url) = &self.loud {
            tracing::warn!(
                broker = %url,
                error = %why,
                retry_in = ?retry_in,
                "cannot connect to the broker"
            );
            let _ = self.tx.try_send(Incoming::Disconnected(why));
        }
        true
    }
}

/// The network settings of every connection to the broker. Shared with the servers' MQTT 5
/// connection (`mqpaxos_node::transport5`).
pub fn network_options() -> NetworkOptions {
    let mut net = NetworkOptions::new();
    // Without it every hop waits for Nagle's algorithm: ~40 ms a round trip, not ~0.15.
    net.set_tcp_nodelay(true);
    net.set_connection_timeout(5);
    net
}

/// One event of an MQTT client's event loop, as [`ConnectionTask`] tells them apart.
pub enum LoopEvent<P, E> {
    /// The broker accepted the connection.
    ConnAck,
    /// A message arrived.
    Publish(P),
    /// Anything else (acknowledgements, pings): nothing to do.
    Other,
    /// An attempt failed or the connection was lost.
    Failed(E),
}

/// The half of a connection's background task that depends on the MQTT version and on what
/// the connection is for: reading the client's next event and handling it. The other half,
/// [`ConnectionTask`], is the same for this crate's MQTT 3.1.1 [`Connection`] and the servers'
/// MQTT 5 connection (`mqpaxos_node::transport5`): stopping, reconnecting with backoff, the
/// connected flag, and the byte budget of received messages.
pub trait ConnectionEvents: Send + 'static {
    type Publish: Send;
    type Error: Send;

    /// The client's next event (polling it is what drives the connection).
    fn next(&mut self) -> impl Future<Output = LoopEvent<Self::Publish, Self::Error>> + Send;

    /// A received message's size, for its share of [`INCOMING_BYTES`].
    fn size(publish: &Self::Publish) -> usize;

    /// The broker accepted the connection: set the session up again (rumqttc does not restore
    /// subscriptions after a reconnect). The connection counts as connected after this.
    fn restore(&mut self) -> impl Future<Output = ()> + Send;

    /// The connection counts as connected now; `false` ends the task.
    fn connected(&mut self) -> impl Future<Output = bool> + Send {
        async { true }
    }

    /// A received message with its claim on the byte budget; `false` ends the task.
    fn received(&mut self, publish: Self::Publish, held: Held)
        -> impl Future<Output = bool> + Send;

    /// An attempt failed or the connection was lost (`was_connected`), and the owner is not
    /// closing it; the next attempt starts in `retry_in`. `false` ends the task instead (a
    /// refusal no retry can fix).
    fn failed(&mut self, error: Self::Error, was_connected: bool, retry_in: Duration) -> bool;
}

/// A connection's background task, and what its owner needs to watch and stop it. Shared
/// with the servers' MQTT 5 connection (`mqpaxos_node::transport5`).
pub struct ConnectionTask {
    /// Whether the broker has accepted the connection and it has not dropped since.
    connected: Arc<AtomicBool>,
    /// Set by the owner before it disconnects, so the task takes the drop as the end.
    closing: Arc<AtomicBool>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// The reconnect delay after a failure: this at first, doubling while attempts keep failing.
const FIRST_RETRY: Duration = Duration::from_millis(50);
/// The longest reconnect delay.
const LAST_RETRY: Duration = Duration::from_secs(2);

impl ConnectionTask {
    /// Starts the task that polls `events`' client until the connection is closed.
    pub fn spawn<E: ConnectionEvents>(events: E) -> ConnectionTask {
        let connected = Arc::new(AtomicBool::new(false));
        let closing = Arc::new(AtomicBool::new(false));
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(events, connected.clone(), closing.clone(), stop_rx));
        ConnectionTask {
            connected,
            closing,
            stop,
            task,
        }
    }

    /// Whether the broker has accepted the connection and it has not dropped since.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Stops the task: `disconnect` (the client's clean DISCONNECT) is sent first, and the
    /// connection dropping on it is then no error to report or retry.
    pub async fn close<T>(self, disconnect: impl Future<Output = T>) {
        self.closing.store(true, Ordering::Relaxed);
        let _ = disconnect.await;
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(2), self.task).await;
    }
}

async fn run<E: ConnectionEvents>(
    mut events: E,
    connected: Arc<AtomicBool>,
    closing: Arc<AtomicBool>,
    mut stop: watch::Receiver<bool>,
) {
    let budget = Arc::new(tokio::sync::Semaphore::new(INCOMING_BYTES / 1024));
    let mut backoff = FIRST_RETRY;
    loop {
        let Some(event) = until_stopped(&mut stop, events.next()).await else {
            return;
        };
        match event {
            LoopEvent::ConnAck => {
                backoff = FIRST_RETRY;
                events.restore().await;
                connected.store(true, Ordering::Relaxed);
                if !events.connected().await {
                    return;
                }
            }
            LoopEvent::Publish(p) => {
                let Some(held) = claim(&budget, E::size(&p), &mut stop).await else {
                    return;
                };
                if !events.received(p, held).await {
                    return;
                }
            }
            LoopEvent::Other => {}
            LoopEvent::Failed(e) => {
                let was = connected.swap(false, Ordering::Relaxed);
                if closing.load(Ordering::Relaxed) {
                    // Our own disconnect: nothing to report or retry.
                    return;
                }
                if !events.failed(e, was, backoff) {
                    return;
                }
                let wait = tokio::time::sleep(backoff);
                if until_stopped(&mut stop, wait).await.is_none() {
                    return;
                }
                backoff = (backoff * 2).min(LAST_RETRY);
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
