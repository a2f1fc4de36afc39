//! The server runtime: one task that owns the protocol core and drives it with real time,
//! the MQTT connection and the disk.
//!
//! It decides nothing that can lose data: the [`Driver`] (in `mqpaxos-core`, shared with the
//! simulator) buffers the steps, orders the flush and keeps the timers; this file steps it
//! with whatever has arrived, carries out each flush (publish the early messages, one write
//! and sync, publish the rest) and sleeps until the driver's next deadline.
//!
//! Readiness: a server learns the cluster size from its configuration and who is online from
//! the retained presence topics; it does not stand for election until a majority is online.

use crate::chaos::Faults;
use crate::codec;
use crate::metrics::{self, BrokerLink, Metrics};
use crate::storage::{FileStorage, MemoryStorage, Recovery, Storage, StorageError, SyncPolicy};
use crate::topics::{server_id, server_name, server_user, Parsed, Topics, V5Reply};
use crate::transport::{BrokerOptions, Connection, Incoming, Qos, Session, TransportError};
use mqpaxos_core::{
    Answer, Config, ConfigError, Dest, Driver, Flush, Input, Message, NodeId, Note, OpResult,
    Outgoing, RoleKind, Server,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::time::Instant;

#[derive(Debug, Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("server {id} is already running elsewhere (another process reports as server {id} on this cluster); refusing to run twice")]
    Duplicate { id: NodeId },
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Which committed changes the leader publishes as watch events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchFeed {
    /// None: watchers work from the history alone, by polling.
    Off,
    /// The changes of keys some watcher registered for ([`crate::interest`]).
    Registered,
    /// Every change, registered for or not: for subscribers that cannot register (a plain
    /// `mosquitto_sub`), at one publish per change.
    All,
}

/// Where and under which id to answer a JSON request.
struct JsonReturn {
    id: String,
    reply_to: String,
    /// An MQTT 5 request's correlation data, carried back on the answer.
    correlation: Option<Vec<u8>>,
}
/// How many JSON requests a server remembers the answer topic of (about 1 KiB each at most).
const JSON_WAITING_MAX: usize = 65_536;
/// Everything a server needs to run.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    pub cluster: String,
    pub broker: BrokerOptions,
    pub core: Config,
    /// Where durable state lives; `None` keeps it in memory (tests and benchmarks only:
    /// a server that forgets its promises may break safety when it restarts).
    pub data_dir: Option<PathBuf>,
    pub sync: SyncPolicy,
    pub metrics_addr: Option<SocketAddr>,
    /// Who may read the metrics endpoint (a bearer token for `/metrics`, optionally
    /// `/health`).
    pub metrics_access: metrics::HttpAccess,
    /// How often the retained status is refreshed.
    pub status_interval: Duration,
    pub max_payload: usize,
    /// The data directory lost state this server had acknowledged (a replaced disk, restored
    /// from an old backup): rejoin without voting until the peers have brought it up to date.
    /// A damaged log tail found at start-up sets this by itself.
    pub rejoin: bool,
    /// The very first start of a new cluster: an empty data directory may vote at once
    /// without the others confirming (needed only when some servers of a new cluster cannot
    /// start yet). Never for a server whose data was lost.
    pub new_cluster: bool,
    /// Which changes this server, as leader, publishes on `watch/<key>`
    /// ([`crate::topics`]), for watchers.
    pub watch: WatchFeed,
    /// Keys under these prefixes also get a retained view: their current value on
    /// `view/<key>`, cleared when they are deleted.
    pub view_prefixes: Vec<String>,
}

impl ServerOptions {
    pub fn new(cluster: &str, broker: BrokerOptions, core: Config) -> Self {
        ServerOptions {
            cluster: cluster.to_string(),
            broker,
            core,
            data_dir: None,
            sync: SyncPolicy::Always,
            metrics_addr: None,
            metrics_access: metrics::HttpAccess::default(),
            status_interval: Duration::from_secs(1),
            max_payload: codec::DEFAULT_MAX_PAYLOAD,
            rejoin: false,
            new_cluster: false,
            watch: WatchFeed::Registered,
            view_prefixes: Vec::new(),
        }
    }
}

/// What a server says about itself on `status/<server>` (retained).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Status {
    pub id: NodeId,
    pub role: RoleKind,
    /// The highest ballot promised, as `round.server`.
    pub ballot: String,
    pub leader: Option<NodeId>,
    pub commit: u64,
    pub executed: u64,
    pub servers: u32,
    pub online: Vec<NodeId>,
    pub keys: usize,
    /// A digest of the replicated state: replicas at the same commit point agree on it.
    pub digest: String,
    /// Not voting yet: re-learning state after it lost some (see `ServerOptions::rejoin`).
    #[serde(default)]
    pub rejoining: bool,
    /// When this report was published (milliseconds since the Unix epoch), so a reader can
    /// tell its age. Reports are republished within 20 ms of every change of the commit
    /// point, and every `status_interval` regardless.
    #[serde(default)]
    pub published_ms: u64,
    /// A random id of the process: a second process running as the same server is noticed
    /// when its report carries another one.
    #[serde(default)]
    pub instance: String,
    /// The server's build (`mqpaxos-node`'s version).
    #[serde(default)]
    pub version: String,
    /// Bytes of keys and values in the state machine (filled in answers to a status query;
    /// 0 in the retained report, which is refreshed too often to count them).
    #[serde(default)]
    pub bytes: u64,
    /// Log entries kept since the last snapshot.
    #[serde(default)]
    pub log: u64,
    /// Part of a quorum that can commit (what `/health` calls ready), and why or why not.
    #[serde(default)]
    pub ready: bool,
    #[serde(default)]
    pub health: String,
}

/// A question to every server, published on the asker's own `request/<user>` topic: "what is
/// your status now?". Each server answers with its [`Status`] on
/// `reply/<user>/<reply_to>`, so only the asker reads the answers and no broker ACL needs a
/// new rule. JSON, so its first byte (`{`) is never the codec's version byte: a command can
/// never be taken for a query, nor the other way round.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct StatusQuery {
    /// The last level of the reply topic (a topic level of at most 64 bytes).
    pub status_to: String,
}

impl StatusQuery {
    pub fn parse(payload: &[u8]) -> Option<StatusQuery> {
        if payload.first() != Some(&b'{') || payload.len() > 256 {
            return None;
        }
        serde_json::from_slice::<StatusQuery>(payload)
            .ok()
            .filter(|q| q.status_to.len() <= 64 && crate::topics::valid_level(&q.status_to))
    }
}

/// At most this many status queries are answered per second; the rest are dropped
/// (`mqpaxos_dropped_messages_total{reason="backlog"}`), so a client cannot make a server
/// count its data over and over.
const STATUS_QUERIES_PER_SECOND: u32 = 20;

/// Status reports follow commits at most this often.
const STATUS_EVERY_COMMIT: Duration = Duration::from_millis(20);
/// A new process watches its own status topic this long before it takes part, to notice
/// another process already running as the same server.
const PROBATION: Duration = Duration::from_millis(1500);

/// A leader tells one user who leads at most this often (`Node::announce_to`): a client's
/// broadcasts come one resend interval (200 ms by default) apart.
const ANNOUNCE_EVERY: Duration = Duration::from_millis(100);

/// The users a leader remembers having told (`Node::announce_to`), and the most it tells at
/// once on taking office.
const MAX_ANNOUNCED: usize = 4096;

/// Called once the server is up, with the metrics endpoint's address if any.
pub type OnReady = Box<dyn FnOnce(Option<SocketAddr>) + Send>;

/// Runs server `opts.core.id` until `shutdown` completes.
pub async fn run_server(
    opts: ServerOptions,
    shutdown: impl Future<Output = ()>,
    on_ready: Option<OnReady>,
) -> Result<(), NodeError> {
    opts.core.validate()?;
    if std::env::var("MQPAXOS_FAULT_TEAR_WAL").as_deref() == Ok("1") {
        arm_tear_fault()?;
    }
    let id = opts.core.id;
    let me = server_name(id);
    let (mut storage, rejoin) = open_storage(&opts)?;
    let mut durable = storage.load()?;
    if rejoin {
        durable.rejoining = true;
    }
    let server = Server::recover(opts.core.clone(), durable)?;
    let topics = Topics::new(&opts.cluster);
    let instance = format!("{:016x}", rand::random::<u64>());
    let (conn, requests, conn5, broker) = open_connections(&opts, &topics, &me).await?;
    let metrics = Arc::new(Metrics::new());
    metrics.update_health(|h| h.election_timeout = opts.core.election_timeout);
    let mut http = None;
    let mut metrics_addr = None;
    if let Some(addr) = opts.metrics_addr {
        let (bound, task) = metrics::serve(addr, metrics.clone(), opts.metrics_access.clone())
            .await
            .map_err(|source| NodeError::Metrics { addr, source })?;
        metrics_addr = Some(bound);
        http = Some(task);
    }
    let (delayed_tx, delayed_rx) = mpsc::unbounded_channel();
    let mut node = Node {
        driver: Driver::new(server, rand::random()),
        storage,
        conn,
        requests,
        topics,
        metrics,
        me,
        start: Instant::now(),
        online: BTreeSet::new(),
        arrivals: BTreeMap::new(),
        conn5,
        json_waiting: BTreeMap::new(),
        json_order: BTreeMap::new(),
        json_next: 0,
        watch: opts.watch,
        interest: crate::interest::Interest::default(),
        view_prefixes: opts.view_prefixes.clone(),
        view_refresh_due: false,
        announced: HashMap::new(),
        max_payload: opts.max_payload,
        last_status: None,
        instance,
        probation: Some((Instant::now() + PROBATION, false)),
        status_due: None,
        last_status_at: None,
        faults: Faults::default(),
        delayed_tx,
        delayed_rx,
        chaos_rng: rand::SeedableRng::from_entropy(),
        on_ready: on_ready.map(|f| (f, metrics_addr)),
        broker_url: broker.url.clone(),
        last_commit: None,
        queries: (Instant::now(), 0),
    };
    // Presence tells who is online; until it does, nobody is.
    node.driver.set_online(0);
    tracing::info!(
        server = id,
        servers = opts.core.servers,
        broker = %broker.url,
        "server started; connecting to the broker"
    );
    let result = node.run(shutdown, opts.status_interval).await;
    if let Some(task) = http {
        task.abort();
    }
    close(node).await;
    match &result {
        Ok(()) => tracing::info!(server = id, "stopped"),
        Err(e) => tracing::info!(server = id, error = %e, "stopped"),
    }
    result
}

/// Fault injection for the power-loss test: SIGUSR1 makes the next WAL group be written
/// torn, and the process die, as a power cut in mid-write would.
fn arm_tear_fault() -> Result<(), NodeError> {
    let mut usr1 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
        .map_err(|e| NodeError::Config(ConfigError(format!("cannot watch SIGUSR1: {e}"))))?;
    tracing::warn!("fault injection armed: SIGUSR1 tears the next WAL write");
    tokio::spawn(async move {
        while usr1.recv().await.is_some() {
            crate::storage::tear_next_group();
        }
    });
    Ok(())
}

/// Opens the server's storage, and says whether the server must rejoin before it votes (as
/// asked, or because its disk is empty or lost synced records).
fn open_storage(opts: &ServerOptions) -> Result<(Box<dyn Storage>, bool), NodeError> {
    let id = opts.core.id;
    let mut rejoin = opts.rejoin;
    let storage: Box<dyn Storage> = match &opts.data_dir {
        Some(dir) => {
            let fs = FileStorage::open(dir, &opts.cluster, id, opts.core.max_sessions, opts.sync)?;
            if fs.empty && !opts.new_cluster && !opts.core.trust_empty_disk() {
                // A new cluster's first start and a server whose disk was lost look the same
                // from here; only the second may have made promises a quorum counted. Rejoin:
                // in a new cluster the other servers, still pristine, confirm it at once.
                tracing::info!(
                    dir = %dir.display(),
                    "empty data directory: joining through the others before voting"
                );
                rejoin = true;
            }
            match &fs.recovery {
                Recovery::Clean => {}
                Recovery::TornUnsynced { offset, bytes } => {
                    // Only the last, never-synced group was torn: nothing in it was
                    // acknowledged, so nothing this server vouched for is lost.
                    tracing::info!(
                        dir = %dir.display(),
                        offset,
                        bytes,
                        "cut off a write torn by a crash before its sync"
                    );
                }
                Recovery::LostSynced { offset, why } => {
                    // Synced records may hold a promise or an accept that a quorum counted:
                    // re-learn before voting.
                    tracing::warn!(
                        dir = %dir.display(),
                        offset,
                        "the write-ahead log lost synced records ({why}); cut back to the last whole group, rejoining without a vote until the peers have brought this server up to date"
                    );
                    rejoin = true;
                }
            }
            Box::new(fs)
        }
        None => Box::new(MemoryStorage::new(opts.core.max_sessions)),
    };
    Ok((storage, rejoin))
}

/// The server's three broker connections: peers, presence, status and chaos; the clients'
/// requests; the JSON API's (MQTT 5). Also returns the broker settings it connected with.
async fn open_connections(
    opts: &ServerOptions,
    topics: &Topics,
    me: &str,
) -> Result<
    (
        Connection,
        Connection,
        crate::transport5::Connection5,
        BrokerOptions,
    ),
    NodeError,
> {
    let id = opts.core.id;
    let mut subscriptions = vec![
        // Not the requests: they come on a connection of their own (below). Nor the JSON
        // requests: they come on the MQTT 5 connection (`transport5`).
        topics.all_presence(),
        topics.chaos(),
        topics.status(me),
    ];
    if opts.watch == WatchFeed::Registered {
        subscriptions.push(topics.all_watching());
    }
    subscriptions.extend(topics.peer_filters(id));
    let client_id = format!(
        "mqpaxos-{}-{me}-{:016x}{:016x}",
        opts.cluster,
        rand::random::<u64>(),
        rand::random::<u64>()
    );
    let session = Session {
        // Unguessable, so nobody can take the server's session over, and two processes that
        // claim the same server do not kick each other off the broker (they are told apart
        // by the instance in their status reports instead). A secret of its own, not the
        // instance: the status report that carries the instance is readable by every client,
        // and Mosquitto and EMQX do not bind client ids to users.
        client_id: client_id.clone(),
        subscriptions,
        on_connect: vec![(topics.presence(me), b"online".to_vec())],
        will: Some((topics.presence(me), b"offline".to_vec())),
    };
    let mut broker = opts.broker.clone();
    // The broker user names the cluster too (`<cluster>-server<id>`), so the ACL can keep
    // this credential out of every other cluster's topics.
    broker.user = server_user(&opts.cluster, id);
    let conn = Connection::open(&broker, session, None).await?;
    // Clients' requests on a connection of their own, so that the consensus traffic never
    // queues behind them: one TCP stream carried both, and with values of a megabyte a
    // heartbeat or an acknowledgement waited behind tens of megabytes of requests, longer
    // than an election timeout, so leaders stepped down under load (check-quorum) and
    // throughput fell to nothing at 16 clients. Each connection also has its own budget of
    // received bytes, and the event loop serves this one last.
    let requests = Connection::open(
        &broker,
        Session {
            client_id: format!("{client_id}-requests"),
            subscriptions: vec![topics.all_requests(), topics.requests_to(id)],
            on_connect: Vec::new(),
            will: None,
        },
        None,
    )
    .await?;
    let conn5 = crate::transport5::Connection5::open(
        &broker,
        format!("{client_id}-json"),
        vec![topics.all_json_requests()],
    )?;
    Ok((conn, requests, conn5, broker))
}

/// Closes the connections, saying goodbye on the retained presence first: a clean
/// disconnect does not trigger the last will.
async fn close(node: Node) {
    let Node {
        conn,
        requests,
        conn5,
        topics,
        me,
        ..
    } = node;
    conn5.close().await;
    requests.close().await;
    let _ = conn
        .publish_retained(topics.presence(&me), b"offline".to_vec())
        .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    conn.close().await;
}

struct Node {
    driver: Driver,
    storage: Box<dyn Storage>,
    /// Peer traffic, presence, status and chaos.
    conn: Connection,
    /// Clients' requests in; replies to them, watch events and views out (see
    /// `open_connections`). The client traffic in both directions on a connection apart from
    /// the peers' own: each connection's event loop writes one publish per system call, so a
    /// leader's Accepts and heartbeats queued behind a reply and a watch event per command
    /// (most of what it publishes), and a reply of a megabyte held a heartbeat up.
    requests: Connection,
    topics: Topics,
    metrics: Arc<Metrics>,
    me: String,
    start: Instant,
    online: BTreeSet<NodeId>,
    /// Leader: when each pending command arrived, for the latency histogram.
    arrivals: BTreeMap<(String, u64), Instant>,
    /// Commands that came as JSON requests to this server as leader, by `(client id, seq)`:
    /// their replies go back as JSON to the topic the request named, with its id. Bounded:
    /// the oldest are forgotten (their clients retry, and a retry is answered from the session
    /// table).
    /// Only the id and the reply topic are kept (at most 64 + 512 bytes), never the command:
    /// requests the core drops without an answer (stale sequence numbers) stay here until
    /// evicted, so keeping their values could pin gigabytes.
    json_waiting: BTreeMap<(String, u64), (u64, JsonReturn)>,
    /// The MQTT 5 connection JSON requests arrive and are answered on.
    conn5: crate::transport5::Connection5,
    json_order: BTreeMap<u64, (String, u64)>,
    json_next: u64,
    /// See [`ServerOptions::watch`] and [`ServerOptions::view_prefixes`].
    watch: WatchFeed,
    /// The watchers' registrations (`WatchFeed::Registered`).
    interest: crate::interest::Interest,
    view_prefixes: Vec<String>,
    /// Became leader: republish the view at the next flush ([`Node::refresh_view`]).
    view_refresh_due: bool,
    /// The users told that this server leads, and when (`Node::announce_to`).
    announced: HashMap<String, Instant>,
    max_payload: usize,
    last_status: Option<Status>,
    /// This process's random id (see `Status::instance`).
    instance: String,
    /// Until when this process only watches for another one running as the same server,
    /// and whether it has seen its own report come back yet.
    probation: Option<(Instant, bool)>,
    /// A status report is owed (the commit point moved) at this time.
    status_due: Option<Instant>,
    last_status_at: Option<Instant>,
    /// Injected faults (see `chaos`); none unless switched on through the chaos topic.
    faults: Faults,
    /// Messages held back by an injected delay come back through here.
    delayed_tx: mpsc::UnboundedSender<(Option<Parsed>, Vec<u8>)>,
    delayed_rx: mpsc::UnboundedReceiver<(Option<Parsed>, Vec<u8>)>,
    chaos_rng: rand::rngs::StdRng,
    /// Called when the broker first accepts the server (so "running" means connected).
    on_ready: Option<(OnReady, Option<SocketAddr>)>,
    broker_url: String,
    /// The commit index last seen, for the seconds-since-last-commit gauge.
    last_commit: Option<u64>,
    /// Status queries answered in the second that started at this instant.
    queries: (Instant, u32),
}

impl Node {
    async fn run(
        &mut self,
        shutdown: impl Future<Output = ()>,
        status_every: Duration,
    ) -> Result<(), NodeError> {
        tokio::pin!(shutdown);
        let mut status_tick = tokio::time::interval(status_every);
        loop {
            let next = if self.probation.is_some() {
                None
            } else {
                self.driver.next_deadline().map(|d| self.start + d)
            };
            let probation_ends = self.probation.map(|(until, _)| until);
            // In order of priority: what is ready first in this list is served first, so
            // that a flood of client requests never delays the protocol's own messages and
            // timers.
            tokio::select! {
                biased;
                _ = &mut shutdown => {
                    tracing::info!(server = self.server().id(), "shutting down");
                    return self.flush().await;
                }
                _ = sleep_until(probation_ends) => {
                    // Nobody else runs as this server: take part from now on.
                    self.probation = None;
                    let now = self.now();
                    self.driver.start(now);
                    self.flush().await?;
                }
                _ = sleep_until(self.status_due) => {
                    self.status_due = None;
                    self.publish_status(false).await;
                }
                _ = status_tick.tick() => self.publish_status(true).await,
                _ = sleep_until(next) => {
                    // What arrived before the timer came due happened before it: a heartbeat
                    // that waited while this server was busy (a long sync, a snapshot) must
                    // reset the election timer before it fires, and acknowledgements must
                    // count before check-quorum looks.
                    self.take_arrived().await?;
                    let before = self.observed();
                    let now = self.now();
                    self.driver.fire_due(now);
                    self.after_steps(before).await;
                    self.flush().await?;
                }
                msg = self.conn.recv() => match msg {
                    Some(m) => {
                        self.on_incoming(m).await?;
                        self.take_arrived().await?;
                        self.flush().await?;
                    }
                    None => return Err(TransportError::Closed.into()),
                },
                Some(r) = self.conn5.incoming.recv() => {
                    self.on_json5(r).await?;
                    while !self.driver.flush_due() {
                        match self.conn5.incoming.try_recv() {
                            Ok(r) => self.on_json5(r).await?,
                            Err(_) => break,
                        }
                    }
                    self.flush().await?;
                }
                Some((parsed, payload)) = self.delayed_rx.recv() => {
                    self.deliver(parsed, payload).await?;
                    self.flush().await?;
                }
                msg = self.requests.recv() => match msg {
                    Some(m) => {
                        self.on_request_incoming(m).await?;
                        self.take_arrived_requests().await?;
                        self.flush().await?;
                    }
                    None => return Err(TransportError::Closed.into()),
                },
            }
        }
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Group commit: steps the core through the peer messages that have already arrived, up
    /// to a flush's worth, so that one sync serves them all.
    async fn take_arrived(&mut self) -> Result<(), NodeError> {
        while !self.driver.flush_due() {
            match self.conn.try_recv() {
                Some(m) => self.on_incoming(m).await?,
                None => break,
            }
        }
        Ok(())
    }

    /// [`Node::take_arrived`] for the requests' connection.
    async fn take_arrived_requests(&mut self) -> Result<(), NodeError> {
        while !self.driver.flush_due() {
            match self.requests.try_recv() {
                Some(m) => self.on_request_incoming(m).await?,
                None => break,
            }
        }
        Ok(())
    }

    fn server(&self) -> &Server {
        self.driver.server()
    }

    /// What the retained status reports changes with.
    fn observed(&self) -> (RoleKind, Option<NodeId>, mqpaxos_core::Ballot) {
        let s = self.server();
        (s.role(), s.leader(), s.ballot())
    }

    async fn step(&mut self, input: Input) -> Result<(), NodeError> {
        let before = self.observed();
        let now = self.now();
        self.driver.step(now, input);
        self.after_steps(before).await;
        Ok(())
    }

    async fn after_steps(&mut self, before: (RoleKind, Option<NodeId>, mqpaxos_core::Ballot)) {
        let executed = self.driver.take_executed_commands();
        self.metrics.executed_commands.inc_by(executed);
        let commit = self.server().commit();
        self.metrics.commit_index.set(commit as i64);
        let after = self.observed();
        if before.0 != RoleKind::Leader && after.0 == RoleKind::Leader {
            self.view_refresh_due = true;
            self.announce_to_sessions();
        }
        if before != after {
            self.publish_status(false).await;
        } else if self
            .last_status
            .as_ref()
            .is_some_and(|s| s.commit != commit)
            && self.status_due.is_none()
        {
            // Follow the commit point closely (a status right after a write shows it), but
            // at most every STATUS_EVERY_COMMIT.
            let at = self
                .last_status_at
                .map_or_else(Instant::now, |t| t + STATUS_EVERY_COMMIT);
            self.status_due = Some(at);
        }
    }

    /// Carries out what the driver says is due, in its order: the messages that may leave
    /// before the disk, one sync for every write since the last flush, then what depended on
    /// those writes.
    async fn flush(&mut self) -> Result<(), NodeError> {
        let Flush {
            send_early,
            persist,
            send_durable,
            notes,
            changes,
            ..
        } = self.driver.flush();
        for note in notes {
            self.log_note(note);
        }
        self.update_health();
        let early = !send_early.is_empty();
        self.send_all(send_early).await;
        if !persist.is_empty() {
            if tokio::runtime::Handle::current().runtime_flavor()
                == tokio::runtime::RuntimeFlavor::CurrentThread
            {
                // On one thread, the Accepts just queued reach the broker only when their
                // connection's task runs: let it write them before the sync blocks the
                // thread, so the followers' round trip overlaps this server's own fsync.
                // Without this, one client's p50 rose by about a sync's time.
                if early {
                    tokio::task::yield_now().await;
                }
                self.storage.persist(persist)?;
            } else {
                let storage = &mut self.storage;
                // An fsync blocks; let the runtime move other tasks off this thread meanwhile.
                tokio::task::block_in_place(|| storage.persist(persist))?;
            }
        }
        self.send_all(send_durable).await;
        for c in &changes {
            self.publish_change(c);
        }
        if self.view_refresh_due && self.server().role() == RoleKind::Leader {
            self.view_refresh_due = false;
            self.refresh_view();
        }
        Ok(())
    }

    /// Republishes the retained view of every viewed key, and clears the views of keys the
    /// history saw deleted, when this server becomes leader: the last leader may have died
    /// between a change and its view message, which would otherwise stay stale until the key
    /// next changes. Sent after the changes published so far, on the same connection, so no
    /// older value can land after a newer one.
    fn refresh_view(&mut self) {
        if self.view_prefixes.is_empty() || !self.requests.is_connected() {
            return;
        }
        let mut out: Vec<(String, Vec<u8>)> = Vec::new();
        let kv = self.driver.server().kv();
        for p in &self.view_prefixes {
            for (key, r) in kv.scan_prefix(p) {
                let c = mqpaxos_core::Change {
                    revision: r.modified,
                    key: key.clone(),
                    kind: mqpaxos_core::ChangeKind::Put {
                        value: r.value.clone(),
                        create: r.create,
                        version: r.version,
                    },
                    prev_revision: 0,
                    prev_store_revision: 0,
                };
                out.push((self.topics.view(key), crate::json::view(&c)));
            }
        }
        let deleted: BTreeSet<&String> = self
            .driver
            .server()
            .history()
            .iter()
            .filter(|c| c.kind == mqpaxos_core::ChangeKind::Delete)
            .map(|c| &c.key)
            .filter(|k| kv.entry(k).is_none())
            .filter(|k| self.view_prefixes.iter().any(|p| k.starts_with(p.as_str())))
            .collect();
        out.extend(
            deleted
                .into_iter()
                .map(|k| (self.topics.view(k), Vec::new())),
        );
        for (topic, body) in out {
            match self
                .requests
                .try_publish(topic, Qos::AtLeastOnce, true, body)
            {
                Ok(()) => self.metrics.count("out", "view", "watchers".to_string()),
                Err(_) => self.metrics.drop_message("backlog"),
            }
        }
    }

    /// Publishes a change committed as leader: the watch event, and the retained view if the
    /// key is under a viewed prefix. Watch events go at QoS 0, like the protocol's own
    /// messages: a watcher finds a lost one from the next event's `prev_store_revision`
    /// and asks for the changes since, so a broker acknowledgement per change would cost
    /// more than it saves. The view is retained QoS 1: what a device finds on subscribing
    /// must be there.
    fn publish_change(&mut self, c: &mqpaxos_core::Change) {
        let viewed = self
            .view_prefixes
            .iter()
            .any(|p| c.key.starts_with(p.as_str()));
        let watched = match self.watch {
            WatchFeed::Off => false,
            WatchFeed::Registered => self.interest.matches(&c.key),
            WatchFeed::All => true,
        };
        if !watched && !viewed {
            return;
        }
        if !self.requests.is_connected() {
            self.metrics.drop_message("offline");
            return;
        }
        // Injected loss drops watch events too (on their way out: watchers are no servers
        // and obey no fault settings), so tests see watchers fill real gaps.
        let lost = self.faults.loss > 0.0
            && rand::Rng::gen_bool(&mut self.chaos_rng, self.faults.loss.min(1.0));
        if watched && lost {
            self.metrics.drop_message("chaos");
        } else if watched {
            let body = serde_json::to_vec(&crate::json::event(c)).unwrap_or_default();
            let topic = self.topics.watch(&c.key);
            match self
                .requests
                .try_publish(topic, Qos::AtMostOnce, false, body)
            {
                Ok(()) => self.metrics.count("out", "watch", "watchers".to_string()),
                Err(_) => self.metrics.drop_message("backlog"),
            }
        }
        if viewed {
            let topic = self.topics.view(&c.key);
            match self
                .requests
                .try_publish(topic, Qos::AtLeastOnce, true, crate::json::view(c))
            {
                Ok(()) => self.metrics.count("out", "view", "watchers".to_string()),
                Err(_) => self.metrics.drop_message("backlog"),
            }
        }
    }

    /// Writes what the core noted at info: what an operator follows in the log.
    fn log_note(&self, note: Note) {
        let server = self.server().id();
        match note {
            Note::ElectionStarted { ballot } => {
                tracing::info!(server, %ballot, "election started")
            }
            Note::ElectionWon { ballot } => {
                tracing::info!(server, %ballot, "election won: leading")
            }
            Note::ElectionLost { ballot, why } => {
                tracing::info!(server, %ballot, why = why.text(), "election lost")
            }
            Note::SteppedDown { ballot, why } => {
                tracing::info!(server, %ballot, why = why.text(), "stepped down as leader")
            }
            Note::LeaderChanged {
                leader: Some(leader),
                ballot,
            } => tracing::info!(server, leader, %ballot, "leader changed"),
            Note::LeaderChanged {
                leader: None,
                ballot,
            } => tracing::info!(server, %ballot, "no leader known"),
            Note::RejoinStarted { incarnation } => tracing::info!(
                server,
                incarnation,
                "rejoin started: not voting until the other servers have brought this one up to date"
            ),
            Note::RejoinFinished {
                incarnation,
                commit,
            } => tracing::info!(server, incarnation, commit, "rejoin finished: voting again"),
            Note::SnapshotInstalled { from, next_slot } => {
                tracing::info!(server, from, next_slot, "snapshot installed")
            }
        }
    }

    /// Brings what `/health` and the gauges read up to date with the core.
    fn update_health(&mut self) {
        let s = self.driver.server();
        let commit = s.commit();
        let moved = self.last_commit.is_some_and(|c| c != commit);
        if moved || self.last_commit.is_none() {
            // O(1) once the store has counted itself (any change does); a restarted store
            // that has not changed yet is counted here each time the commit index moves.
            let kv = s.kv();
            self.metrics
                .store_bytes
                .set(i64::try_from(kv.key_value_bytes()).unwrap_or(i64::MAX));
            self.metrics
                .store_keys
                .set(i64::try_from(kv.len()).unwrap_or(i64::MAX));
        }
        self.last_commit = Some(commit);
        // The probe reads std's clock; `start` is the same instant on tokio's.
        let start = self.start.into_std();
        let far = std::time::Instant::now() + Duration::from_secs(365 * 86_400);
        let until = s
            .quorum_until()
            .map(|d| start.checked_add(d).unwrap_or(far).min(far));
        let (role, leader, rejoining) = (s.role().name(), s.leader(), s.rejoining());
        self.metrics.update_health(|h| {
            h.role = role;
            h.leader = leader;
            h.rejoining = rejoining;
            h.quorum_until = until;
            if moved {
                h.last_commit = std::time::Instant::now();
            }
        });
    }

    /// Sends one flush's messages in order, except that the replies for one reply topic (one
    /// client connection) leave together after the rest, as one [`Message::Replies`] when
    /// there are several: a client that pipelines commands then costs the leader one publish
    /// per flush rather than one per command.
    async fn send_all(&mut self, out: Vec<Outgoing>) {
        let mut groups: Vec<(String, Vec<Answer>)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for o in out {
            let Outgoing {
                to: Dest::Client(to),
                msg:
                    Message::Reply {
                        client,
                        seq,
                        result,
                    },
            } = o
            else {
                self.send(o).await;
                continue;
            };
            if self.answer_json(&client, seq, &result) {
                continue;
            }
            if let Some(t) = self.arrivals.remove(&(client.clone(), seq)) {
                self.metrics
                    .command_latency
                    .observe(t.elapsed().as_secs_f64());
            }
            let topic = self.topics.reply(&to);
            let i = *index.entry(topic.clone()).or_insert_with(|| {
                groups.push((topic, Vec::new()));
                groups.len() - 1
            });
            groups[i].1.push(Answer {
                client,
                seq,
                result,
            });
        }
        for (topic, answers) in groups {
            // Only a pipelining client has commands of two ids (lanes) in flight at once; a
            // client with one command in flight gets plain replies even when a duplicate is
            // answered in the same flush, so a client that predates `Replies` never sees one.
            let lanes = answers.iter().any(|a| a.client != answers[0].client);
            if lanes {
                self.send_answers(topic, answers);
            } else {
                for a in answers {
                    self.send_answers(topic.clone(), vec![a]);
                }
            }
        }
    }

    /// Answers a JSON request if `(client, seq)` is one (on its MQTT 5 connection, in JSON);
    /// returns whether it was.
    fn answer_json(&mut self, client: &str, seq: u64, result: &OpResult) -> bool {
        if self.json_waiting.is_empty() {
            // The usual case: no JSON request waits, so no key to build for the lookup.
            return false;
        }
        let key = (client.to_string(), seq);
        let Some((order, a)) = self.json_waiting.remove(&key) else {
            return false;
        };
        self.json_order.remove(&order);
        if let Some(t) = self.arrivals.remove(&key) {
            self.metrics
                .command_latency
                .observe(t.elapsed().as_secs_f64());
        }
        let payload = crate::json::reply(&a.id, client, result);
        self.publish_json(a.reply_to, payload, a.correlation);
        true
    }

    /// Publishes `answers` on `topic`: one alone as a [`Message::Reply`], several as one
    /// [`Message::Replies`], split in halves while that is larger than a payload may be.
    fn send_answers(&mut self, topic: String, mut answers: Vec<Answer>) {
        let msg = match answers.len() {
            0 => return,
            1 => {
                let Some(Answer {
                    client,
                    seq,
                    result,
                }) = answers.pop()
                else {
                    return;
                };
                Message::Reply {
                    client,
                    seq,
                    result,
                }
            }
            n => {
                let msg = Message::Replies(answers);
                match codec::encode(&msg, self.max_payload) {
                    Ok(payload) => self.publish_to_client(topic, "replies", payload),
                    Err(codec::CodecError::TooLarge { .. }) => {
                        let Message::Replies(mut first) = msg else {
                            return;
                        };
                        let second = first.split_off(n / 2);
                        self.send_answers(topic.clone(), first);
                        self.send_answers(topic, second);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot encode replies");
                        self.metrics.drop_message(e.reason());
                    }
                }
                return;
            }
        };
        match codec::encode(&msg, self.max_payload) {
            Ok(payload) => self.publish_to_client(topic, "reply", payload),
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode a reply");
                self.metrics.drop_message(e.reason());
            }
        }
    }
    /// A reply's payload, on the requests' connection (see `Node::requests`).
    fn publish_to_client(&mut self, topic: String, kind: &'static str, payload: Vec<u8>) {
        if !self.requests.is_connected() {
            self.metrics.drop_message("offline");
            return;
        }
        if self
            .requests
            .try_publish(topic, Qos::AtMostOnce, false, payload)
            .is_ok()
        {
            self.metrics.count("out", kind, "client".to_string());
        } else {
            self.metrics.drop_message("backlog");
        }
    }

    /// One message to a peer (replies go through [`Self::send_all`]).
    async fn send(&mut self, o: Outgoing) {
        let kind = o.msg.kind();
        let (topic, peer) = match &o.to {
            Dest::AllServers => (self.topics.peer_all(self.server().id()), "all".to_string()),
            Dest::Server(to) => (self.topics.peer(*to, self.server().id()), server_name(*to)),
            Dest::Client(c) => {
                // Not a reply (those are grouped); nothing else goes to clients today.
                let topic = self.topics.reply(c);
                match codec::encode(&o.msg, self.max_payload) {
                    Ok(payload) => self.publish_to_client(topic, kind, payload),
                    Err(e) => self.metrics.drop_message(e.reason()),
                }
                return;
            }
        };
        if !self.conn.is_connected() {
            // Offline: drop it like a lost message; Paxos resends what matters.
            self.metrics.drop_message("offline");
            return;
        }
        match codec::encode(&o.msg, self.max_payload) {
            Ok(payload) => {
                if self
                    .conn
                    .try_publish(topic, Qos::AtMostOnce, false, payload)
                    .is_ok()
                {
                    self.metrics.count("out", kind, peer);
                } else {
                    self.metrics.drop_message("backlog");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, kind, "cannot encode an outgoing message");
                self.metrics.drop_message(e.reason());
            }
        }
    }

    /// A JSON answer, on the MQTT 5 connection the request came on.
    fn publish_json(&mut self, topic: String, payload: Vec<u8>, correlation: Option<Vec<u8>>) {
        if self.conn5.try_publish(topic, payload, correlation) {
            self.metrics
                .count("out", "json_reply", "client".to_string());
        } else {
            self.metrics.drop_message("backlog");
        }
    }

    /// A JSON request (see [`crate::json`]): parsed, remembered for its answer, and handed to
    /// the core as the same command a Rust client would send.
    async fn on_json_request(
        &mut self,
        user: String,
        v5: Option<Box<V5Reply>>,
        payload: &[u8],
    ) -> Result<(), NodeError> {
        if self.server().role() != RoleKind::Leader {
            // Only a leader acts on requests (the core drops them elsewhere), so the others
            // need not even parse them; a client whose leader changes resends with the same
            // id (or seq), and the new leader answers that.
            return Ok(());
        }
        let leader = true;
        let (response_topic, mut correlation) = match v5 {
            Some(v) => (v.response_topic, v.correlation),
            None => (None, None),
        };
        let oversized = correlation
            .as_ref()
            .is_some_and(|c| c.len() > crate::transport5::MAX_CORRELATION);
        let parsed = if oversized {
            // Answered (without the correlation data it cannot carry) so the client knows.
            correlation = None;
            crate::json::parse(
                payload,
                &user,
                &self.topics.json_reply_prefix(),
                response_topic.as_deref(),
            )
            .and_then(|a| {
                Err(crate::json::Refused {
                    reply_to: Some(a.reply_to),
                    id: Some(a.id),
                    message: format!(
                        "correlation data of over {} bytes is refused",
                        crate::transport5::MAX_CORRELATION
                    ),
                })
            })
        } else {
            crate::json::parse(
                payload,
                &user,
                &self.topics.json_reply_prefix(),
                response_topic.as_deref(),
            )
        };
        let accepted = match parsed {
            Ok(a) => a,
            Err(refused) => {
                self.metrics.drop_message("bad_json");
                // Only the leader answers, or every server would.
                if let (true, Some(topic)) = (leader, refused.reply_to) {
                    let id = refused.id.unwrap_or_default();
                    let body = crate::json::error(&id, crate::json::BAD_REQUEST, &refused.message);
                    self.publish_json(topic, body, correlation);
                }
                return Ok(());
            }
        };
        self.metrics
            .count("in", "json_request", "client".to_string());
        let key = (accepted.cmd.client.clone(), accepted.cmd.seq);
        if leader {
            if self.arrivals.len() > 100_000 {
                self.arrivals.clear();
            }
            self.arrivals
                .entry(key.clone())
                .or_insert_with(Instant::now);
        }
        let crate::json::Accepted { cmd, reply_to, id } = accepted;
        let order = self.json_next;
        self.json_next += 1;
        let back = JsonReturn {
            id,
            reply_to,
            correlation,
        };
        if let Some((old, _)) = self.json_waiting.insert(key.clone(), (order, back)) {
            self.json_order.remove(&old);
        }
        self.json_order.insert(order, key);
        while self.json_waiting.len() > JSON_WAITING_MAX {
            let Some((_, oldest)) = self.json_order.pop_first() else {
                break;
            };
            self.json_waiting.remove(&oldest);
        }
        self.step(Input::Request(cmd)).await
    }

    async fn on_incoming(&mut self, m: Incoming) -> Result<(), NodeError> {
        let (topic, payload) = match m {
            Incoming::Connected => {
                self.metrics
                    .update_health(|h| h.broker = BrokerLink::Connected);
                tracing::info!(server = self.server().id(), "connected to the broker");
                // The subscription brings every retained registration back right after
                // this; those withdrawn while away would otherwise stay, unseen.
                self.interest = crate::interest::Interest::default();
                self.metrics.watch_registrations.set(0);
                if let Some((f, addr)) = self.on_ready.take() {
                    f(addr);
                }
                self.publish_status(true).await;
                return Ok(());
            }
            Incoming::Disconnected(why) => {
                self.metrics
                    .update_health(|h| h.broker = BrokerLink::Unreachable(why));
                return Ok(());
            }
            Incoming::Refused(why) => {
                self.metrics
                    .update_health(|h| h.broker = BrokerLink::Refused(why.clone()));
                return Err(TransportError::Refused {
                    url: self.broker_url.clone(),
                    why,
                }
                .into());
            }
            Incoming::Publish { topic, payload, .. } => (topic, payload),
        };
        let parsed = self.topics.parse(&topic);
        self.on_message(parsed, payload).await
    }

    /// From the requests' connection: a client's request takes the path of every message;
    /// the connection's ups and downs are the transport's to log (the main connection's
    /// say whether the server is reachable), but for a refusal, which is final.
    async fn on_request_incoming(&mut self, m: Incoming) -> Result<(), NodeError> {
        match m {
            Incoming::Publish { topic, payload, .. } => match self.topics.parse(&topic) {
                Some(Parsed::Request { user, to }) => {
                    if to.is_none() {
                        // This user's client knows no leader, or a stale one.
                        self.announce_to(&user);
                    }
                    let parsed = Some(Parsed::Request { user, to });
                    self.on_message(parsed, payload).await
                }
                // Nothing else is subscribed there.
                _ => Ok(()),
            },
            Incoming::Refused(why) => Err(TransportError::Refused {
                url: self.broker_url.clone(),
                why,
            }
            .into()),
            Incoming::Connected | Incoming::Disconnected(_) => Ok(()),
        }
    }

    /// A JSON request from the MQTT 5 connection: the same path as every message, with its
    /// answer properties.
    async fn on_json5(&mut self, r: crate::transport5::Request) -> Result<(), NodeError> {
        let crate::transport5::Request {
            topic,
            payload,
            response_topic,
            correlation,
            held: _held,
        } = r;
        let parsed = match self.topics.parse(&topic) {
            Some(Parsed::JsonRequest { user, .. }) => Some(Parsed::JsonRequest {
                user,
                v5: Some(Box::new(V5Reply {
                    response_topic,
                    correlation,
                })),
            }),
            // Nothing else is subscribed there.
            _ => return Ok(()),
        };
        self.on_message(parsed, payload).await
    }

    /// A message, through the injected faults if any, then to [`Node::deliver`].
    async fn on_message(
        &mut self,
        parsed: Option<Parsed>,
        payload: Vec<u8>,
    ) -> Result<(), NodeError> {
        if matches!(parsed, Some(Parsed::Chaos)) {
            match Faults::parse(&payload) {
                Ok(f) => {
                    tracing::warn!(faults = ?f, "fault injection changed");
                    self.faults = f;
                }
                Err(e) => tracing::warn!(error = %e, "ignoring an invalid chaos setting"),
            }
            return Ok(());
        }
        if !self.faults.is_none() {
            let from = match parsed {
                Some(Parsed::Peer { from, .. }) => Some(from),
                Some(Parsed::Request { .. } | Parsed::JsonRequest { .. }) => None,
                // Presence and status are the broker's business, not the network's.
                _ => return self.deliver(parsed, payload).await,
            };
            if from == Some(self.server().id()) {
                return Ok(());
            }
            let copies = self
                .faults
                .deliveries(self.server().id(), from, &mut self.chaos_rng);
            if copies.is_empty() {
                self.metrics.drop_message("chaos");
            }
            for delay in copies {
                if delay.is_zero() {
                    self.deliver(parsed.clone(), payload.clone()).await?;
                } else {
                    let tx = self.delayed_tx.clone();
                    let (t, p) = (parsed.clone(), payload.clone());
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        let _ = tx.send((t, p));
                    });
                }
            }
            return Ok(());
        }
        self.deliver(parsed, payload).await
    }

    /// A watcher's registration, or its withdrawal (empty).
    fn on_watching(&mut self, user: &str, name: &str, payload: &[u8]) {
        if self.watch != WatchFeed::Registered {
            return;
        }
        let topic = self.topics.watching(user, name);
        let overflowed = self.interest.overflowed();
        match self.interest.update(&topic, payload) {
            Ok(()) => {}
            Err(e @ crate::interest::Refused::Full) => {
                // Once: a flood of registrations must not become a flood of log lines.
                if !overflowed {
                    tracing::warn!(error = %e, "watch registrations");
                }
                self.metrics.drop_message("watching");
            }
            Err(e) => {
                tracing::debug!(%user, %name, error = %e, "ignoring a watch registration");
                self.metrics.drop_message("watching");
            }
        }
        self.metrics
            .watch_registrations
            .set(self.interest.len() as i64);
    }

    /// Hands a received message to the core (after any injected fault).
    async fn deliver(&mut self, parsed: Option<Parsed>, payload: Vec<u8>) -> Result<(), NodeError> {
        if self.probation.is_some()
            && matches!(
                parsed,
                Some(Parsed::Peer { .. } | Parsed::Request { .. } | Parsed::JsonRequest { .. })
            )
        {
            // Not taking part yet; Paxos and the clients resend.
            return Ok(());
        }
        match parsed {
            Some(Parsed::Status { node }) if node == self.me => self.on_own_status(&payload).await,
            Some(Parsed::Peer { from, .. }) => self.on_peer_message(from, &payload).await,
            Some(Parsed::JsonRequest { user, v5 }) => {
                self.on_json_request(user, v5, &payload).await
            }
            Some(Parsed::Request { user, .. }) => self.on_request(&user, &payload).await,
            Some(Parsed::Presence { node }) => self.on_presence(&node, &payload).await,
            Some(Parsed::Watching { user, name }) => {
                self.on_watching(&user, &name, &payload);
                Ok(())
            }
            Some(Parsed::Chaos)
            | Some(Parsed::Leader { .. })
            | Some(Parsed::Status { .. })
            | Some(Parsed::Reply { .. }) => Ok(()),
            None => {
                self.metrics.drop_message("topic");
                Ok(())
            }
        }
    }

    /// Tells `user`'s clients, retained, that this server leads, so that they send it their
    /// commands alone (see `mqpaxos_core::client`). A hint only: nothing depends on it for
    /// safety, and a lost or stale one costs a client one resend interval, whose broadcast
    /// then reaches this server and makes it announce again, at most every
    /// [`ANNOUNCE_EVERY`] per user.
    fn announce_to(&mut self, user: &str) {
        let s = self.server();
        if s.role() != RoleKind::Leader || !self.requests.is_connected() {
            return;
        }
        let a = crate::topics::LeaderAnnouncement {
            server: s.id(),
            ballot: s.ballot(),
        };
        let now = Instant::now();
        if self
            .announced
            .get(user)
            .is_some_and(|at| now.duration_since(*at) < ANNOUNCE_EVERY)
        {
            return;
        }
        if self.announced.len() >= MAX_ANNOUNCED {
            // Bounded whatever the number of users: forgetting only lets a user be told again.
            self.announced.clear();
        }
        let Ok(body) = serde_json::to_vec(&a) else {
            return;
        };
        self.announced.insert(user.to_string(), now);
        match self
            .requests
            .try_publish(self.topics.leader_for(user), Qos::AtLeastOnce, true, body)
        {
            Ok(()) => self.metrics.count("out", "leader", "clients".to_string()),
            Err(_) => self.metrics.drop_message("backlog"),
        }
    }

    /// Taking office: the users of the sessions this server holds hear at once that it leads,
    /// so their clients' pending commands come here without waiting for a resend (clients
    /// that sent to the old leader alone would otherwise wait one resend interval). At most
    /// [`MAX_ANNOUNCED`] users; the others are told when their first broadcast arrives.
    fn announce_to_sessions(&mut self) {
        self.announced.clear();
        let users: BTreeSet<String> = self
            .server()
            .kv()
            .session_ids()
            .filter_map(|id| id.split('/').next())
            .filter(|u| crate::topics::valid_level(u))
            .take(MAX_ANNOUNCED)
            .map(str::to_string)
            .collect();
        for u in users {
            self.announce_to(&u);
        }
    }

    /// A protocol message from another server.
    async fn on_peer_message(&mut self, from: NodeId, payload: &[u8]) -> Result<(), NodeError> {
        if from == self.server().id() {
            // MQTT 3.1.1 echoes our own broadcasts back to us.
            return Ok(());
        }
        let msg = match codec::decode(payload, self.max_payload) {
            Ok(m) => m,
            Err(e) => {
                self.metrics.drop_message(e.reason());
                return Ok(());
            }
        };
        if matches!(
            msg,
            Message::Request(_) | Message::Reply { .. } | Message::Replies(_)
        ) {
            self.metrics.drop_message("forged");
            return Ok(());
        }
        self.metrics.count("in", msg.kind(), server_name(from));
        self.step(Input::Message { from, msg }).await
    }

    /// A client's request (or status query) on `user`'s request topic.
    async fn on_request(&mut self, user: &str, payload: &[u8]) -> Result<(), NodeError> {
        if let Some(q) = StatusQuery::parse(payload) {
            self.answer_status_query(user, &q.status_to);
            return Ok(());
        }
        let cmd = match codec::decode(payload, self.max_payload) {
            Ok(Message::Request(cmd)) => cmd,
            Ok(_) => {
                self.metrics.drop_message("forged");
                return Ok(());
            }
            Err(e) => {
                self.metrics.drop_message(e.reason());
                return Ok(());
            }
        };
        // The client id must belong to the user the broker authenticated for this
        // topic, or one client could answer for, or block, another's commands.
        let owner = cmd.client.split_once('/').map(|(u, _)| u);
        if owner != Some(user) {
            self.metrics.drop_message("forged");
            return Ok(());
        }
        self.metrics.count("in", "request", "client".to_string());
        if self.server().role() == RoleKind::Leader {
            if self.arrivals.len() > 100_000 {
                self.arrivals.clear();
            }
            self.arrivals
                .entry((cmd.client.clone(), cmd.seq))
                .or_insert_with(Instant::now);
        }
        self.step(Input::Request(cmd)).await
    }

    /// A server's retained presence, or its last will.
    async fn on_presence(&mut self, node: &str, payload: &[u8]) -> Result<(), NodeError> {
        let Some(id) = server_id(node).filter(|id| *id <= self.server().config().servers) else {
            return Ok(());
        };
        if payload == b"online" {
            self.online.insert(id);
        } else if id == self.server().id() && self.conn.is_connected() {
            // Our own last will, published by the broker for an earlier connection
            // it noticed dead only after we had reconnected (a lossy link makes
            // this common): we are here, so say so again, or peers (and we) count
            // one server fewer online until our next reconnect.
            let _ = self.conn.try_publish(
                self.topics.presence(&self.me),
                Qos::AtLeastOnce,
                true,
                b"online".to_vec(),
            );
        } else {
            self.online.remove(&id);
        }
        self.metrics.servers_online.set(self.online.len() as i64);
        self.driver.set_online(self.online.len());
        if payload != b"online" && id != self.server().id() {
            // A will: if that was our leader, the core stands for election now
            // rather than after the election timeout.
            self.step(Input::PeerOffline(id)).await?;
        }
        Ok(())
    }

    /// Answers a status query on the asker's own reply topic, with what this server knows
    /// now.
    fn answer_status_query(&mut self, user: &str, to: &str) {
        let now = Instant::now();
        if now.duration_since(self.queries.0) >= Duration::from_secs(1) {
            self.queries = (now, 0);
        }
        if self.queries.1 >= STATUS_QUERIES_PER_SECOND {
            self.metrics.drop_message("backlog");
            return;
        }
        self.queries.1 += 1;
        let mut s = self.status();
        s.bytes = self.server().kv().key_value_bytes();
        s.published_ms = unix_ms();
        if let Ok(body) = serde_json::to_vec(&s) {
            let topic = self.topics.reply(&format!("{user}/{to}"));
            let _ = self.conn.try_publish(topic, Qos::AtMostOnce, false, body);
        }
    }

    fn status(&self) -> Status {
        let (ready, health) = self.metrics.health().readiness(std::time::Instant::now());
        Status {
            id: self.server().id(),
            role: self.server().role(),
            ballot: self.server().ballot().to_string(),
            leader: self.server().leader(),
            commit: self.server().commit(),
            executed: self.server().executed(),
            servers: self.server().config().servers,
            online: self.online.iter().copied().collect(),
            keys: self.server().kv().len(),
            digest: format!("{:016x}", self.server().kv().digest()),
            rejoining: self.server().rejoining(),
            published_ms: 0,
            instance: self.instance.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            bytes: 0,
            log: self.server().log().len() as u64,
            ready,
            health,
        }
    }

    /// A report on our own status topic: ours coming back, or another process's.
    async fn on_own_status(&mut self, payload: &[u8]) -> Result<(), NodeError> {
        let Ok(s) = serde_json::from_slice::<Status>(payload) else {
            return Ok(());
        };
        if s.instance == self.instance {
            if let Some((_, seen_own)) = &mut self.probation {
                *seen_own = true;
            }
            return Ok(());
        }
        match self.probation {
            // Another process reported after us: it is alive and was here first.
            Some((_, true)) => Err(NodeError::Duplicate {
                id: self.server().id(),
            }),
            // A report from before we spoke: perhaps a process that has since died.
            Some((_, false)) => Ok(()),
            None => {
                tracing::error!(
                    server = self.server().id(),
                    other = %s.instance,
                    "another process reports as this server; asserting ours (it should stop)"
                );
                self.publish_status(true).await;
                Ok(())
            }
        }
    }

    async fn publish_status(&mut self, force: bool) {
        let s = self.status();
        self.metrics
            .ballot_round
            .set(self.server().ballot().round as i64);
        self.metrics
            .leader
            .set(i64::from(self.server().leader().unwrap_or(0)));
        self.metrics
            .is_leader
            .set(i64::from(self.server().role() == RoleKind::Leader));
        if !force && self.last_status.as_ref() == Some(&s) {
            return;
        }
        if !self.conn.is_connected() {
            return;
        }
        let mut stamped = s.clone();
        stamped.published_ms = unix_ms();
        self.last_status_at = Some(Instant::now());
        if let Ok(body) = serde_json::to_vec(&stamped) {
            let topic = self.topics.status(&self.me);
            let _ = self.conn.try_publish(topic, Qos::AtLeastOnce, true, body);
        }
        self.last_status = Some(s);
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
