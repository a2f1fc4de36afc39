//! `mqpaxos server`: run one Paxos server until Ctrl-C or SIGTERM.

use super::{fail, parse_duration, stop_signal, CmdResult, ConnArgs};
use crate::cmd::Exit;
use mqpaxos_core::Config;
use mqpaxos_node::{run_server, NodeError, ServerOptions, SyncPolicy};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// This server's id, 1..=N (it connects as MQTT user <cluster>-server<id>).
    #[arg(long, env = "MQPAXOS_ID")]
    pub id: u32,
    /// How many servers the cluster has.
    #[arg(long, env = "MQPAXOS_SERVERS")]
    pub servers: u32,
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Where durable state lives (default: ./mqpaxos-data/<cluster>/server<id>).
    #[arg(long, env = "MQPAXOS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep state in memory only. Unsafe across restarts: for tests and benchmarks.
    #[arg(long, env = "MQPAXOS_IN_MEMORY", conflicts_with = "data_dir")]
    pub in_memory: bool,
    /// fsync policy: always (an acknowledged write survives power loss) or never.
    #[arg(long, env = "MQPAXOS_SYNC", default_value = "always", value_parser = ["always", "never"])]
    pub sync: String,
    /// Serve Prometheus metrics and /health on this address (e.g. 127.0.0.1:9101).
    #[arg(long, env = "MQPAXOS_METRICS")]
    pub metrics: Option<SocketAddr>,
    /// File holding a bearer token: /metrics then answers only requests with
    /// `Authorization: Bearer <token>` (401 otherwise). /health and /live stay open for
    /// probes unless --metrics-protect-health.
    #[arg(long, env = "MQPAXOS_METRICS_TOKEN_FILE", requires = "metrics")]
    pub metrics_token_file: Option<PathBuf>,
    /// /health needs the metrics token too (/live, which says only "the process answers",
    /// never does).
    #[arg(
        long,
        env = "MQPAXOS_METRICS_PROTECT_HEALTH",
        requires = "metrics_token_file"
    )]
    pub metrics_protect_health: bool,
    /// How often the leader sends a heartbeat.
    #[arg(long, env = "MQPAXOS_HEARTBEAT", default_value = "100ms", value_parser = parse_duration)]
    pub heartbeat: Duration,
    /// Silence from the leader before an election (randomized up to twice this).
    #[arg(long, env = "MQPAXOS_ELECTION_TIMEOUT", default_value = "300ms", value_parser = parse_duration)]
    pub election_timeout: Duration,
    /// This server's data directory lost state it had acknowledged (a replaced disk, a
    /// restored backup): take no part in votes until the other servers have brought it up to
    /// date. Needs a majority of the other servers running. A damaged end of the log found at
    /// start-up does the same by itself.
    #[arg(long, env = "MQPAXOS_REJOIN")]
    pub rejoin: bool,
    /// The very first start of a new cluster, when not every server can start yet: an empty
    /// data directory votes at once. Without it, a server on an empty data directory (a new
    /// cluster, or a lost disk: it cannot tell which) joins through the others first, which
    /// for a new cluster needs more than a bare majority of them running (all of a 3-server
    /// cluster). Never use it for a server whose data was lost.
    #[arg(long, env = "MQPAXOS_NEW_CLUSTER")]
    pub new_cluster: bool,
    /// How gets are made linearizable: read-index (the leader confirms with a majority that it
    /// still leads, then answers from its state: no log write) or log (a get takes a log slot
    /// like a write).
    #[arg(long, env = "MQPAXOS_READS", default_value = "read-index", value_parser = ["read-index", "log"])]
    pub reads: String,
    /// Most commands the leader packs into one log slot. Commands share a slot only while the
    /// pipeline window is full, so an idle leader never waits to fill a batch.
    #[arg(long, env = "MQPAXOS_MAX_BATCH", default_value_t = 64)]
    pub max_batch: usize,
    /// Most slots the leader has proposed and not yet seen chosen (the pipeline), at most 64.
    #[arg(long, env = "MQPAXOS_WINDOW", default_value_t = 64)]
    pub window: usize,
    /// How many client sessions the at-most-once table remembers. Past it, the longest idle
    /// session of the user holding the most is forgotten (so one tenant never evicts
    /// another's); a command from a forgotten session is refused, never run twice. Every
    /// server of a cluster must use the same value.
    #[arg(long, env = "MQPAXOS_MAX_SESSIONS", default_value_t = 100_000)]
    pub max_sessions: usize,
    /// Obey the cluster's fault-injection topic (`mqpaxos chaos` sets this). Without it the
    /// server never subscribes there, so nobody can make it drop or delay messages.
    #[arg(long, env = "MQPAXOS_ALLOW_FAULT_INJECTION")]
    pub allow_fault_injection: bool,
    /// Do not publish changes on the watch topics (`mqpaxos watch` then works only from the
    /// history, by polling).
    #[arg(long, env = "MQPAXOS_NO_WATCH", conflicts_with = "watch_all")]
    pub no_watch: bool,
    /// Publish every change on the watch topics, whether a watcher registered for its key or
    /// not: for subscribers that cannot register (a plain mosquitto_sub), at one publish per
    /// change. Without it, the leader publishes the changes of the keys that watchers
    /// registered for on mqpaxos/<cluster>/watching/<user>/<name> (`mqpaxos watch` does).
    #[arg(long, env = "MQPAXOS_WATCH_ALL")]
    pub watch_all: bool,
    /// Keep a retained view of the keys under this prefix: each key's current value as a
    /// retained message on mqpaxos/<cluster>/view/<key>, cleared when the key is deleted.
    /// Repeat or separate with commas; an empty prefix views every key.
    #[arg(long, env = "MQPAXOS_VIEW_PREFIX", value_delimiter = ',')]
    pub view_prefix: Vec<String>,
    /// MiB of recent changes each server keeps for watchers that missed events; a watcher
    /// further behind is told its changes were compacted.
    #[arg(long, env = "MQPAXOS_WATCH_HISTORY_MIB", default_value_t = 32)]
    pub watch_history_mib: usize,
    /// Threads that run the server. With 1 (the default) the event loop, the broker
    /// connections and the log writes take turns on one thread: no hand-offs between
    /// threads, which measured faster and cheaper than more of them (docs/speed.md). More
    /// lets the broker connections be read while the log syncs.
    #[arg(long, env = "MQPAXOS_THREADS", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub threads: u16,
}

pub async fn run(a: Args) -> CmdResult {
    let mut core = Config::new(a.id, a.servers);
    core.heartbeat = a.heartbeat;
    core.election_timeout = a.election_timeout;
    core.read_index = a.reads == "read-index";
    core.max_batch = a.max_batch;
    core.window = a.window;
    core.max_sessions = a.max_sessions;
    core.history_bytes = a.watch_history_mib.saturating_mul(1 << 20);
    core.validate()
        .map_err(|e| fail(Exit::Usage, e.to_string()))?;
    if !mqpaxos_node::topics::valid_level(&a.conn.cluster) {
        return Err(fail(
            Exit::Usage,
            format!(
                "cluster name {:?} cannot be part of a topic",
                a.conn.cluster
            ),
        ));
    }
    if a.allow_fault_injection {
        eprintln!("mqpaxos: fault injection allowed: this server obeys the cluster's chaos topic");
    }
    mqpaxos_node::transport::allow_fault_injection(a.allow_fault_injection);
    let user = mqpaxos_node::topics::server_user(&a.conn.cluster, a.id);
    let mut opts = ServerOptions::new(&a.conn.cluster, a.conn.broker_options(&user)?, core);
    mqpaxos_node::transport::parse_url(&a.conn.broker)
        .map_err(|e| fail(Exit::Usage, e.to_string()))?;
    opts.data_dir = if a.in_memory {
        None
    } else {
        Some(a.data_dir.unwrap_or_else(|| {
            PathBuf::from("mqpaxos-data")
                .join(&a.conn.cluster)
                .join(mqpaxos_node::topics::server_name(a.id))
        }))
    };
    opts.sync = if a.sync == "never" {
        SyncPolicy::Never
    } else {
        SyncPolicy::Always
    };
    opts.metrics_addr = a.metrics;
    if let Some(path) = &a.metrics_token_file {
        let token = mqpaxos_node::metrics::read_token(path).map_err(|e| {
            fail(
                Exit::Usage,
                format!("cannot read metrics token file {}: {e}", path.display()),
            )
        })?;
        opts.metrics_access = mqpaxos_node::metrics::HttpAccess {
            token: Some(token),
            protect_health: a.metrics_protect_health,
        };
    } else if let Some(addr) = a.metrics.filter(|m| !m.ip().is_loopback()) {
        // Not refused: a network policy may be what guards it (docs/security.md). But the
        // metrics name peers and clients and count their traffic, for anyone who can reach
        // the address.
        eprintln!(
            "mqpaxos: warning: metrics on {addr}, off loopback, need no credentials: anyone \
             who can reach it reads them; give a token with --metrics-token-file FILE"
        );
    }
    opts.rejoin = a.rejoin;
    opts.new_cluster = a.new_cluster;
    opts.watch = if a.no_watch {
        mqpaxos_node::WatchFeed::Off
    } else if a.watch_all {
        mqpaxos_node::WatchFeed::All
    } else {
        mqpaxos_node::WatchFeed::Registered
    };
    opts.view_prefixes = a.view_prefix;
    let id = a.id;
    let on_ready: mqpaxos_node::runtime::OnReady = Box::new(move |metrics| match metrics {
        Some(m) => eprintln!("mqpaxos: server {id} running; metrics on http://{m}/metrics"),
        None => eprintln!("mqpaxos: server {id} running"),
    });
    match run_server(opts, stop_signal(), Some(on_ready)).await {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e @ (NodeError::Config(_) | NodeError::Metrics { .. })) => {
            Err(fail(Exit::Usage, e.to_string()))
        }
        // A refused login will not fix itself: like bad input, it needs the operator.
        Err(e @ NodeError::Transport(mqpaxos_node::TransportError::Refused { .. })) => {
            Err(fail(Exit::Usage, e.to_string()))
        }
        Err(e @ NodeError::Transport(_)) => Err(fail(Exit::Unavailable, e.to_string())),
        Err(e) => Err(fail(Exit::Failed, e.to_string())),
    }
}
