//! A server's Prometheus metrics and the HTTP endpoint that serves them (`/metrics`) with a
//! liveness probe (`/health`).

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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

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
    pub broker_connected: Arc<AtomicBool>,
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
            broker_connected: Arc::new(AtomicBool::new(false)),
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

    /// The text exposition format.
    pub fn render(&self) -> String {
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
                let up = metrics.broker_connected.load(Ordering::Relaxed);
                async move {
                    if up {
                        (StatusCode::OK, "ok\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "broker unreachable\n")
                    }
                }
            }),
        );
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "metrics endpoint stopped");
        }
    });
    Ok((local, task))
}
