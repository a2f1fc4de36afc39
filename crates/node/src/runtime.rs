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
use crate::metrics::{self, Metrics};
use crate::storage::{FileStorage, MemoryStorage, Recovery, Storage, StorageError, SyncPolicy};
use crate::topics::{server_id, server_name, server_user, Parsed, Topics};
use crate::transport::{BrokerOptions, Connection, Incoming, Session, TransportError};
use mqpaxos_core::{
    Config, ConfigError, Dest, Driver, Flush, Input, Message, NodeId, Outgoing, RoleKind, Server,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
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
        }
    }
}

/// What a server says about itself on `status/<server>` (retained).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Status {
    pub id: NodeId,
    pub role: String,
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
}

/// Status reports follow commits at most this often.
const STATUS_EVERY_COMMIT: Duration = Duration::from_millis(20);
/// A new process watches its own status topic this long before it takes part, to notice
/// another process already running as the same server.
const PROBATION: Duration = Duration::from_millis(1500);

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
        // Fault injection for the power-loss test: SIGUSR1 makes the next WAL group be
        // written torn, and the process die, as a power cut in mid-write would.
        let mut usr1 =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1()).map_err(
                |e| NodeError::Config(ConfigError(format!("cannot watch SIGUSR1: {e}"))),
            )?;
        tracing::warn!("fault injection armed: SIGUSR1 tears the next WAL write");
        tokio::spawn(async move {
            while usr1.recv().await.is_some() {
                crate::storage::tear_next_group();
            }
        });
    }
    let id = opts.core.id;
    let me = server_name(id);
    let mut rejoin = opts.rejoin;
    let mut storage: Box<dyn Storage> = match &opts.data_dir {
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
    let mut durable = storage.load()?;
    if rejoin {
        durable.rejoining = true;
    }
    let server = Server::recover(opts.core.clone(), durable)?;
    let topics = Topics::new(&opts.cluster);
    let mut subscriptions = vec![
        topics.all_requests(),
        topics.all_presence(),
        topics.chaos(),
        topics.status(&me),
    ];
    subscriptions.extend(topics.peer_filters(id));
    let instance = format!("{:016x}", rand::random::<u64>());
    let session = Session {
        // Unguessable, so nobody can take the server's session over, and two processes that
        // claim the same server do not kick each other off the broker (they are told apart
        // by the instance in their status reports instead). A secret of its own, not the
        // instance: the status report that carries the instance is readable by every client,
        // and Mosquitto and EMQX do not bind client ids to users.
        client_id: format!(
            "mqpaxos-{}-{me}-{:016x}{:016x}",
            opts.cluster,
            rand::random::<u64>(),
            rand::random::<u64>()
        ),
        subscriptions,
        on_connect: vec![(topics.presence(&me), b"online".to_vec())],
        will: Some((topics.presence(&me), b"offline".to_vec())),
    };
    let mut broker = opts.broker.clone();
    // The broker user names the cluster too (`<cluster>-server<id>`), so the ACL can keep
    // this credential out of every other cluster's topics.
    broker.user = server_user(&opts.cluster, id);
    let conn = Connection::open(&broker, session, None).await?;
    let metrics = Arc::new(Metrics::new());
    metrics.broker_connected.store(false, Ordering::Relaxed);
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
        topics,
        metrics,
        me,
        start: Instant::now(),
        online: BTreeSet::new(),
        arrivals: BTreeMap::new(),
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
    };
    // Presence tells who is online; until it does, nobody is.
    node.driver.set_online(0);
    tracing::info!(server = id, servers = opts.core.servers, "server started");
    if let Some(f) = on_ready {
        f(metrics_addr);
    }
    let result = node.run(shutdown, opts.status_interval).await;
    if let Some(task) = http {
        task.abort();
    }
    let Node {
        conn, topics, me, ..
    } = node;
    // Say goodbye explicitly: a clean disconnect does not trigger the last will.
    let _ = conn
        .publish_retained(topics.presence(&me), b"offline".to_vec())
        .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    conn.close().await;
    result
}

struct Node {
    driver: Driver,
    storage: Box<dyn Storage>,
    conn: Connection,
    topics: Topics,
    metrics: Arc<Metrics>,
    me: String,
    start: Instant,
    online: BTreeSet<NodeId>,
    /// Leader: when each pending command arrived, for the latency histogram.
    arrivals: BTreeMap<(String, u64), Instant>,
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
            tokio::select! {
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
                _ = &mut shutdown => {
                    tracing::info!(server = self.server().id(), "shutting down");
                    return self.flush().await;
                }
                msg = self.conn.incoming.recv() => match msg {
                    Some(m) => {
                        self.on_incoming(m).await?;
                        // Group commit: take whatever else has already arrived, step the core
                        // through all of it, then sync once for the lot.
                        while !self.driver.flush_due() {
                            match self.conn.incoming.try_recv() {
                                Ok(m) => self.on_incoming(m).await?,
                                Err(_) => break,
                            }
                        }
                        self.flush().await?;
                    }
                    None => return Err(TransportError::Closed.into()),
                },
                Some((parsed, payload)) = self.delayed_rx.recv() => {
                    self.deliver(parsed, payload).await?;
                    self.flush().await?;
                }
                _ = sleep_until(next) => {
                    let before = self.observed();
                    let now = self.now();
                    self.driver.fire_due(now);
                    self.after_steps(before).await;
                    self.flush().await?;
                }
                _ = status_tick.tick() => self.publish_status(true).await,
            }
        }
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
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
        if before != after {
            if before.0 != after.0 || before.1 != after.1 {
                tracing::info!(
                    server = self.server().id(),
                    role = after.0.name(),
                    leader = ?after.1,
                    ballot = %after.2,
                    "role or leader changed"
                );
            }
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
            ..
        } = self.driver.flush();
        for o in send_early {
            self.send(o).await;
        }
        if !persist.is_empty() {
            let storage = &mut self.storage;
            // An fsync blocks; let the runtime move other tasks off this thread meanwhile.
            tokio::task::block_in_place(|| storage.persist(&persist))?;
        }
        for o in send_durable {
            self.send(o).await;
        }
        Ok(())
    }

    async fn send(&mut self, o: Outgoing) {
        let kind = o.msg.kind();
        let (topic, peer) = match &o.to {
            Dest::AllServers => (self.topics.peer_all(self.server().id()), "all".to_string()),
            Dest::Server(to) => (self.topics.peer(*to, self.server().id()), server_name(*to)),
            Dest::Client(c) => {
                if let Message::Reply { client, seq, .. } = &o.msg {
                    if let Some(t) = self.arrivals.remove(&(client.clone(), *seq)) {
                        self.metrics
                            .command_latency
                            .observe(t.elapsed().as_secs_f64());
                    }
                }
                (self.topics.reply(c), "client".to_string())
            }
        };
        if !self.conn.connected.load(Ordering::Relaxed) {
            // Offline: drop it like a lost message; Paxos resends what matters.
            self.metrics.drop_message("offline");
            return;
        }
        match codec::encode(&o.msg, self.max_payload) {
            Ok(payload) => {
                if self
                    .conn
                    .client
                    .try_publish(topic, rumqttc::QoS::AtMostOnce, false, payload)
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

    async fn on_incoming(&mut self, m: Incoming) -> Result<(), NodeError> {
        let (topic, payload) = match m {
            Incoming::Connected => {
                self.metrics.broker_connected.store(true, Ordering::Relaxed);
                tracing::info!(server = self.server().id(), "connected to the broker");
                self.publish_status(true).await;
                return Ok(());
            }
            Incoming::Disconnected(_) => {
                self.metrics
                    .broker_connected
                    .store(false, Ordering::Relaxed);
                return Ok(());
            }
            Incoming::Publish { topic, payload, .. } => (topic, payload),
        };
        let parsed = self.topics.parse(&topic);
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
                Some(Parsed::Request { .. }) => None,
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

    /// Hands a received message to the core (after any injected fault).
    async fn deliver(&mut self, parsed: Option<Parsed>, payload: Vec<u8>) -> Result<(), NodeError> {
        if self.probation.is_some()
            && matches!(parsed, Some(Parsed::Peer { .. } | Parsed::Request { .. }))
        {
            // Not taking part yet; Paxos and the clients resend.
            return Ok(());
        }
        match parsed {
            Some(Parsed::Status { node }) if node == self.me => {
                return self.on_own_status(&payload).await;
            }
            Some(Parsed::Peer { from, .. }) => {
                if from == self.server().id() {
                    // MQTT 3.1.1 echoes our own broadcasts back to us.
                    return Ok(());
                }
                let msg = match codec::decode(&payload, self.max_payload) {
                    Ok(m) => m,
                    Err(e) => {
                        self.metrics.drop_message(e.reason());
                        return Ok(());
                    }
                };
                if matches!(msg, Message::Request(_) | Message::Reply { .. }) {
                    self.metrics.drop_message("forged");
                    return Ok(());
                }
                self.metrics.count("in", msg.kind(), server_name(from));
                self.step(Input::Message { from, msg }).await?;
            }
            Some(Parsed::Request { user }) => {
                let cmd = match codec::decode(&payload, self.max_payload) {
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
                if owner != Some(user.as_str()) {
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
                self.step(Input::Request(cmd)).await?;
            }
            Some(Parsed::Presence { node }) => {
                if let Some(id) =
                    server_id(&node).filter(|id| *id <= self.server().config().servers)
                {
                    if payload.as_slice() == b"online" {
                        self.online.insert(id);
                    } else if id == self.server().id()
                        && self.conn.connected.load(Ordering::Relaxed)
                    {
                        // Our own last will, published by the broker for an earlier connection
                        // it noticed dead only after we had reconnected (a lossy link makes
                        // this common): we are here, so say so again, or peers (and we) count
                        // one server fewer online until our next reconnect.
                        let _ = self.conn.client.try_publish(
                            self.topics.presence(&self.me),
                            rumqttc::QoS::AtLeastOnce,
                            true,
                            b"online".to_vec(),
                        );
                    } else {
                        self.online.remove(&id);
                    }
                    self.metrics.servers_online.set(self.online.len() as i64);
                    self.driver.set_online(self.online.len());
                }
            }
            Some(Parsed::Chaos) | Some(Parsed::Status { .. }) | Some(Parsed::Reply { .. }) => {}
            None => self.metrics.drop_message("topic"),
        }
        Ok(())
    }

    fn status(&self) -> Status {
        Status {
            id: self.server().id(),
            role: self.server().role().name().to_string(),
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
        if !self.conn.connected.load(Ordering::Relaxed) {
            return;
        }
        let mut stamped = s.clone();
        stamped.published_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.last_status_at = Some(Instant::now());
        if let Ok(body) = serde_json::to_vec(&stamped) {
            let topic = self.topics.status(&self.me);
            let _ = self
                .conn
                .client
                .try_publish(topic, rumqttc::QoS::AtLeastOnce, true, body);
        }
        self.last_status = Some(s);
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
