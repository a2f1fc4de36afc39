//! A server's Prometheus metrics and the HTTP endpoint that serves them (`/metrics`) with a
//! readiness probe (`/health`) and a liveness probe (`/live`).
//!
//! With a bearer token ([`HttpAccess::token`]), `/metrics` answers only a request carrying
//! `Authorization: Bearer <token>` (compared in constant time) and 401 to anything else;
//! `/health` too when [`HttpAccess::protect_health`] says so. `/live` always answers `ok`:
//! it says nothing but "the process serves HTTP", which a kubelet must be able to ask
//! without a credential.
//!
//! Readiness means "part of a quorum that can commit": a leader that has heard from a
//! majority within the election timeout, or a follower that has heard its leader within it.
//! The runtime keeps a [`HealthState`] up to date after every step; the probe and the gauges
//! that depend on time (quorum, seconds since the last commit) are worked out from it when
//! asked, so they are never staler than the last step.

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
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
use subtle::ConstantTimeEq;

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
    pub store_bytes: Gauge,
    pub store_keys: Gauge,
    pub watch_registrations: Gauge,
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
        let store_bytes = Gauge::default();
        registry.register(
            "store_bytes",
            "Bytes of keys and values in this replica's store (the live data)",
            store_bytes.clone(),
        );
        let store_keys = Gauge::default();
        registry.register(
            "store_keys",
            "Keys in this replica's store",
            store_keys.clone(),
        );
        let watch_registrations = Gauge::default();
        registry.register(
            "watch_registrations",
            "Watchers registered on watching/<user>/<name>: the leader publishes watch events only for the keys they follow",
            watch_registrations.clone(),
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
            store_bytes,
            store_keys,
            watch_registrations,
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

/// Who may read the HTTP endpoint.
#[derive(Clone, Debug, Default)]
pub struct HttpAccess {
    /// The bearer token `/metrics` requires; `None`: no credential (a network policy, or
    /// loopback, is then the only protection).
    pub token: Option<String>,
    /// `/health` requires the token too. Off by default: readiness probes (the kubelet)
    /// carry no credential, and `/health` says only "connected to the broker or not".
    pub protect_health: bool,
}

impl HttpAccess {
    /// Whether `headers` carry the token (always, when there is none).
    fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        // `Bearer <token>`; the scheme's case does not matter (RFC 9110, 11.1).
        let Some(given) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .and_then(|(scheme, t)| scheme.eq_ignore_ascii_case("bearer").then_some(t))
        else {
            return false;
        };
        // Constant time, so response times do not reveal how much of a guess was right (only
        // whether its length was: the token's length is no secret worth keeping).
        given.trim().as_bytes().ct_eq(token.as_bytes()).into()
    }
}

/// Reads a bearer token from `path`: its text, without surrounding whitespace (a trailing
/// newline, as `echo` and Kubernetes Secrets written by hand leave, is no part of it).
pub fn read_token(path: &std::path::Path) -> std::io::Result<String> {
    let token = std::fs::read_to_string(path)?.trim().to_string();
    if token.is_empty() || token.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the token must be one word, printable, not empty",
        ));
    }
    Ok(token)
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "this endpoint needs Authorization: Bearer <token>\n",
    )
        .into_response()
}

/// Serves `/metrics`, `/health` and `/live` on `addr` until the task is dropped, as `access`
/// allows. Returns the bound address (port 0 picks a free one).
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    access: HttpAccess,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let access = Arc::new(access);
    let (m1, a1, a2) = (metrics.clone(), access.clone(), access);
    let app = Router::new()
        .route(
            "/metrics",
            get(move |headers: HeaderMap| {
                let (m, a) = (m1.clone(), a1.clone());
                async move {
                    if !a.admits(&headers) {
                        return unauthorized();
                    }
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        m.render(),
                    )
                        .into_response()
                }
            }),
        )
        .route(
            "/health",
            get(move |headers: HeaderMap| {
                let (ready, why) = metrics.health().readiness(Instant::now());
                let a = a2.clone();
                async move {
                    if a.protect_health && !a.admits(&headers) {
                        return unauthorized();
                    }
                    let code = if ready {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    (code, format!("{why}\n")).into_response()
                }
            }),
        )
        // Liveness: "the process answers HTTP". Deliberately not /health (a server cut off
        // from the broker is alive) nor /metrics (which may need a token the kubelet lacks).
        .route("/live", get(|| async { "ok\n" }));
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "metrics endpoint stopped");
        }
    });
    Ok((local, task))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The status code of `GET path` with `extra` header lines.
    async fn get_status(addr: SocketAddr, path: &str, extra: &str) -> u16 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap()
    }

    async fn start(access: HttpAccess) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let m = Arc::new(Metrics::new());
        // A ready server: connected, leading a majority heard just now.
        m.update_health(|h| {
            h.broker = BrokerLink::Connected;
            h.role = "leader";
            h.quorum_until = Some(Instant::now() + Duration::from_secs(3600));
        });
        serve("127.0.0.1:0".parse().unwrap(), m, access)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn with_a_token_metrics_need_it_and_probes_stay_open() {
        let (addr, task) = start(HttpAccess {
            token: Some("s3cret-token".into()),
            protect_health: false,
        })
        .await;
        assert_eq!(get_status(addr, "/metrics", "").await, 401);
        let wrong = "Authorization: Bearer s3cret-tokem\r\n";
        assert_eq!(get_status(addr, "/metrics", wrong).await, 401);
        let prefix = "Authorization: Bearer s3cret\r\n";
        assert_eq!(get_status(addr, "/metrics", prefix).await, 401);
        let basic = "Authorization: Basic s3cret-token\r\n";
        assert_eq!(get_status(addr, "/metrics", basic).await, 401);
        let right = "Authorization: Bearer s3cret-token\r\n";
        assert_eq!(get_status(addr, "/metrics", right).await, 200);
        let lower = "authorization: bearer s3cret-token\r\n";
        assert_eq!(get_status(addr, "/metrics", lower).await, 200);
        assert_eq!(get_status(addr, "/health", "").await, 200);
        assert_eq!(get_status(addr, "/live", "").await, 200);
        task.abort();
    }

    #[tokio::test]
    async fn health_can_need_the_token_too() {
        let (addr, task) = start(HttpAccess {
            token: Some("t".into()),
            protect_health: true,
        })
        .await;
        assert_eq!(get_status(addr, "/health", "").await, 401);
        assert_eq!(
            get_status(addr, "/health", "Authorization: Bearer t\r\n").await,
            200
        );
        assert_eq!(get_status(addr, "/live", "").await, 200);
        task.abort();
    }

    #[tokio::test]
    async fn without_a_token_everything_is_open() {
        let (addr, task) = start(HttpAccess::default()).await;
        assert_eq!(get_status(addr, "/metrics", "").await, 200);
        assert_eq!(get_status(addr, "/health", "").await, 200);
        task.abort();
    }

    #[test]
    fn a_token_file_is_one_trimmed_word() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, "abc123\n").unwrap();
        assert_eq!(read_token(&p).unwrap(), "abc123");
        for bad in ["", "  \n", "two words"] {
            std::fs::write(&p, bad).unwrap();
            assert!(read_token(&p).is_err(), "{bad:?}");
        }
    }
}
