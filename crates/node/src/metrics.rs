//! A server's Prometheus metrics and the HTTP endpoint that serves them (`/metrics`) with a
//! readiness probe (`/health`).
//!
//! Readiness means "part of a quorum that can commit": a leader that has heard from a
//! majority within the election timeout, or a follower that has heard its leader within it.
//! The runtime keeps a [`HealthState`] up to date after every step; the probe and the gauges
//! that depend on time (quorum, seconds since the last commit) are worked out from it when
//! asked, so they are never staler than the last step.

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where a server stands with its broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrokerLink {
    /// Not yet accepted by the broker (no attempt has failed yet).
    Connecting,
    Connected,
    /// The last attempt failed, or the connection was lost: why.
    Unreachable(String),
    /// The broker refused the login (bad user name or password, not authorized).
    Refused(String),
}

/// What the probe and the time-dependent gauges are worked out from.
#[derive(Clone, Debug)]
pub struct HealthState {
    pub broker: BrokerLink,
    /// `leader`, `follower` or `candidate`.
    pub role: &'static str,
    pub leader: Option<u32>,
    pub rejoining: bool,
    /// Until when this server is part of a quorum that can commit
    /// (`mqpaxos_core::Server::quorum_until`, on the runtime's clock).
    pub quorum_until: Option<Instant>,
    /// When the commit index last moved here (or the server started).
    pub last_commit: Instant,
    pub election_timeout: Duration,
}

impl HealthState {
    pub fn new(election_timeout: Duration) -> Self {
        HealthState {
            broker: BrokerLink::Connecting,
            role: "follower",
            leader: None,
            rejoining: false,
            quorum_until: None,
            last_commit: Instant::now(),
            election_timeout,
        }
    }

    /// Whether this server is in a quorum that can commit at `now`.
    pub fn quorum(&self, now: Instant) -> bool {
        self.broker == BrokerLink::Connected
            && !self.rejoining
            && self.quorum_until.is_some_and(|t| now < t)
    }

    /// Ready or not, and the reason in one line.
    pub fn readiness(&self, now: Instant) -> (bool, String) {
        let window = self.election_timeout;
        match &self.broker {
            BrokerLink::Refused(why) => {
                return (
                    false,
                    format!("not ready: the broker refused the login: {why}"),
                )
            }
            BrokerLink::Unreachable(why) => {
                return (false, format!("not ready: broker unreachable: {why}"))
            }
            BrokerLink::Connecting => {
                return (false, "not ready: connecting to the broker".to_string())
            }
            BrokerLink::Connected => {}
        }
        if self.rejoining {
            return (
                false,
                "not ready: rejoining (re-learning state from the other servers; not voting)"
                    .to_string(),
            );
        }
        let quorum = self.quorum(now);
        let text = match (self.role, quorum, self.leader) {
            ("leader", true, _) => {
                format!("ready: leader, a majority heard within the election timeout ({window:?})")
            }
            ("leader", false, _) => format!(
                "not ready: leader without a majority heard within the election timeout ({window:?})"
            ),
            (_, true, Some(l)) => format!(
                "ready: following leader {l}, heard within the election timeout ({window:?})"
            ),
            ("candidate", _, _) => "not ready: election under way, no leader".to_string(),
            (_, _, Some(l)) => format!(
                "not ready: leader {l} not heard within the election timeout ({window:?})"
            ),
            (_, _, None) => "not ready: no leader known".to_string(),
        };
        (quorum, text)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MessageLabels {
    /// `in` or `out`.
    pub direction: &'static str,
    /// The message type (`prepare`, `accept`, ...).
    pub kind: &'static str,
    /// The other end: `server3`, `all` (a broadcast), or `client` for client traffic.
    pub peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    /// Why the message was dropped: `malformed`, `version`, `too_large`, `forged`, `topic`.
    pub reason: &'static str,
}

/// Every metric a server exports.
pub struct Metrics {
    registry: Registry,
    pub messages: Family<MessageLabels, Counter>,
    pub dropped: Family<DropLabels, Counter>,
    pub ballot_round: Gauge,
    pub leader: Gauge,
    pub is_leader: Gauge,
    pub commit_index: Gauge,
    pub executed_commands: Counter,
    pub command_latency: Histogram,
    pub servers_online: Gauge,
    quorum: Gauge,
    rejoining: Gauge,
    broker_connected: Gauge,
    last_commit_age: Gauge<f64, AtomicU64>,
    pub health: Mutex<HealthState>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("mqpaxos");
        let messages = Family::<MessageLabels, Counter>::default();
        registry.register(
            "messages",
            "Protocol messages in and out, by type and peer",
            messages.clone(),
        );
        let dropped = Family::<DropLabels, Counter>::default();
        registry.register(
            "dropped_messages",
            "Incoming payloads dropped as invalid, by reason",
            dropped.clone(),
        );
        let ballot_round = Gauge::default();
        registry.register(
            "ballot_round",
            "Round of the highest ballot promised",
            ballot_round.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "Id of the server believed to lead (0: none)",
            leader.clone(),
        );
        let is_leader = Gauge::default();
        registry.register("is_leader", "1 while this server leads", is_leader.clone());
        let commit_index = Gauge::default();
        registry.register(
            "commit_index",
            "Every slot below this is chosen and executed here",
            commit_index.clone(),
        );
        let executed_commands = Counter::default();
        registry.register(
            "executed_commands",
            "Client commands executed by this replica",
            executed_commands.clone(),
        );
        let command_latency = Histogram::new(exponential_buckets(0.0001, 2.0, 18));
        registry.register(
            "command_latency_seconds",
            "Leader: from a command's arrival to its reply",
            command_latency.clone(),
        );
        let servers_online = Gauge::default();
        registry.register(
            "servers_online",
            "Servers whose presence is online",
            servers_online.clone(),
        );
        let quorum = Gauge::default();
        registry.register(
            "quorum",
            "1 while this server is part of a quorum that can commit (what /health calls ready)",
            quorum.clone(),
        );
        let rejoining = Gauge::default();
        registry.register(
            "rejoining",
            "1 while this server re-learns lost state and does not vote",
            rejoining.clone(),
        );
        let broker_connected = Gauge::default();
        registry.register(
            "broker_connected",
            "1 while the broker has accepted this server's connection",
            broker_connected.clone(),
        );
        let last_commit_age = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "last_commit_age_seconds",
            "Seconds since the commit index last moved here (grows on an idle cluster)",
            last_commit_age.clone(),
        );
        Metrics {
            registry,
            messages,
            dropped,
            ballot_round,
            leader,
            is_leader,
            commit_index,
            executed_commands,
            command_latency,
            servers_online,
            quorum,
            rejoining,
            broker_connected,
            last_commit_age,
            health: Mutex::new(HealthState::new(Duration::from_millis(300))),
        }
    }

    pub fn count(&self, direction: &'static str, kind: &'static str, peer: String) {
        self.messages
            .get_or_create(&MessageLabels {
                direction,
                kind,
                peer,
            })
            .inc();
    }

    pub fn drop_message(&self, reason: &'static str) {
        self.dropped.get_or_create(&DropLabels { reason }).inc();
    }

    /// A copy of the health state (a poisoned lock still holds the last state written).
    pub fn health(&self) -> HealthState {
        match self.health.lock() {
            Ok(h) => h.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Changes the health state.
    pub fn update_health(&self, f: impl FnOnce(&mut HealthState)) {
        match self.health.lock() {
            Ok(mut h) => f(&mut h),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let h = self.health();
        let now = Instant::now();
        self.quorum.set(i64::from(h.quorum(now)));
        self.rejoining.set(i64::from(h.rejoining));
        self.broker_connected
            .set(i64::from(h.broker == BrokerLink::Connected));
        self.last_commit_age
            .set(now.saturating_duration_since(h.last_commit).as_secs_f64());
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Serves `/metrics` and `/health` on `addr` until the task is dropped. Returns the bound
/// address (port 0 picks a free one).
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let m1 = metrics.clone();
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = m1.clone();
                async move {
                    (
                        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
                        m.render(),
                    )
                }
            }),
        )
        .route(
            "/health",
            get(move || {
                let (ready, why) = metrics.health().readiness(Instant::now());
                let code = if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                async move { (code, format!("{why}\n")) }
            }),
        );
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "metrics endpoint stopped");
        }
    });
    Ok((local, task))
}
