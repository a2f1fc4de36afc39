//! `mqpaxos bench`: load against a key/value store, with throughput, HDR latency percentiles,
//! MQTT publishes per committed command, and the servers' CPU and memory.
//!
//! By default it starts its own local cluster (the built-in broker and N servers with
//! durable storage in a temporary directory, fsync always, exactly as `mqpaxos cluster up`
//! does) and stops it at the end; `--broker` targets a running cluster instead. With the
//! `compare` feature, `--target etcd|nats` runs the same workload against etcd or NATS
//! JetStream KV, and `--report` turns result files into docs/performance.md and its charts.
//!
//! Each step is one client count (closed loop) or one rate (open loop, `--rate`): connect,
//! warm up, measure, disconnect. A benchmark measures; it asserts nothing.

#[cfg(feature = "compare")]
mod compare;
mod observe;
#[cfg(feature = "compare")]
mod report;
#[cfg(feature = "compare")]
mod rounds;
mod target;
mod workload;

use super::{fail, parse_duration, password, stop_signal, CmdResult, DurationError, Failure};
use crate::cmd::Exit;
use crate::metrics::Counters;
use indicatif::{ProgressBar, ProgressStyle};
use mqpaxos_node::{BrokerOptions, ClientOptions};
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use target::{Conn, Target};
use tokio::time::Instant;
use workload::{parse_mix, Live, Mix, StepLoad};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The broker of a running cluster (mqtt://host:port). Without it, bench starts its own
    /// cluster: the built-in broker and --servers servers.
    #[arg(long, env = "MQPAXOS_BROKER")]
    pub broker: Option<String>,
    /// The cluster's name: its topics live under mqpaxos/<cluster>/.
    #[arg(long, env = "MQPAXOS_CLUSTER", default_value = "default")]
    pub cluster: String,
    /// File holding the broker password (or set MQPAXOS_PASSWORD; never a flag).
    #[arg(long, env = "MQPAXOS_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
    /// PEM file of CAs to trust for mqtts://.
    #[arg(long, env = "MQPAXOS_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// The MQTT user name every bench client connects as (each with its own session).
    #[arg(long, env = "MQPAXOS_USER", default_value = "client")]
    pub user: String,
    /// Give up on one command after this long (it counts as an error).
    #[arg(long, env = "MQPAXOS_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Own cluster: how many servers.
    #[arg(long, env = "MQPAXOS_SERVERS", default_value_t = 3)]
    pub servers: u32,
    /// A flag for every server of the bench's own cluster, e.g. `--server-arg=--reads=log` or
    /// `--server-arg=--max-batch=1` (repeatable): to measure what a feature gains.
    #[arg(long, env = "MQPAXOS_SERVER_ARG", allow_hyphen_values = true)]
    pub server_arg: Vec<String>,
    /// Own cluster: fsync policy of the servers.
    #[arg(long, env = "MQPAXOS_SYNC", default_value = "always", value_parser = ["always", "never"])]
    pub sync: String,
    /// Own cluster: parent of the servers' data directories (default: a new temporary
    /// directory, removed afterwards).
    #[arg(long, env = "MQPAXOS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// A running cluster's metrics endpoints (host:port,...), to count publishes per command.
    #[arg(long, env = "MQPAXOS_METRICS", value_delimiter = ',')]
    pub metrics: Vec<String>,
    /// Processes on this machine whose CPU and memory to report (pid,...); own cluster: its
    /// servers.
    #[arg(long, env = "MQPAXOS_PIDS", value_delimiter = ',')]
    pub pids: Vec<u32>,
    /// Closed loop: concurrent clients; one step per value.
    #[arg(
        long,
        env = "MQPAXOS_CLIENTS",
        default_value = "1,16,64,256",
        value_delimiter = ','
    )]
    pub clients: Vec<usize>,
    /// Open loop: commands per second over all clients; one step per value (each step uses
    /// --connections clients).
    #[arg(long, env = "MQPAXOS_RATE", value_delimiter = ',')]
    pub rate: Vec<f64>,
    /// Closed loop: commands each client keeps in flight (1 to 64), through the Rust
    /// client's `pipeline` (each in a lane of its own; the leader answers a connection's
    /// results in one publish). 1 waits for each reply before the next command.
    #[arg(long, env = "MQPAXOS_PIPELINE", default_value_t = 1)]
    pub pipeline: usize,
    /// Open loop: how many clients share the rate.
    #[arg(long, env = "MQPAXOS_CONNECTIONS", default_value_t = 64)]
    pub connections: usize,
    /// Operation mix as weights, e.g. put=80,get=10,cas=10.
    #[arg(long, env = "MQPAXOS_MIX", default_value = "put=100", value_parser = parse_mix)]
    pub mix: Mix,
    /// How many distinct keys the load touches (chosen uniformly).
    #[arg(long, env = "MQPAXOS_KEYS", default_value_t = 1000)]
    pub keys: usize,
    /// Size of each value in bytes.
    #[arg(long, env = "MQPAXOS_VALUE_SIZE", default_value_t = 100)]
    pub value_size: usize,
    /// Measured time per step.
    #[arg(long, env = "MQPAXOS_DURATION", default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Unmeasured time at the start of each step ("0s" for none).
    #[arg(long, env = "MQPAXOS_WARMUP", default_value = "2s", value_parser = parse_warmup)]
    pub warmup: Duration,
    /// Also write the results as JSON to this file ("-": standard output, instead of the
    /// table).
    #[arg(long, env = "MQPAXOS_JSON")]
    pub json: Option<PathBuf>,
    /// The name of this run in reports (default: the target's name).
    #[arg(long, env = "MQPAXOS_LABEL")]
    pub label: Option<String>,
    /// Which round of a comparison this run is (bench/compare sets it): the report takes the
    /// median and range over rounds, and pairs systems of one round for their ratio.
    #[arg(long, env = "MQPAXOS_REPETITION")]
    pub repetition: Option<u32>,
    /// What to write under "version" in the JSON (e.g. the etcd version).
    #[arg(long, env = "MQPAXOS_SYSTEM_VERSION")]
    pub system_version: Option<String>,
    /// How to talk to mqpaxos: its Rust client (postcard) or the JSON API (docs/api.md).
    #[arg(long, env = "MQPAXOS_API", default_value = "postcard", value_parser = ["postcard", "json"])]
    pub api: String,
    /// What to load: this mqpaxos (own or running cluster), etcd or NATS JetStream KV.
    #[cfg(feature = "compare")]
    #[arg(long, env = "MQPAXOS_TARGET", default_value = "mqpaxos", value_parser = ["mqpaxos", "etcd", "nats"])]
    pub target: String,
    /// etcd or NATS endpoints (host:port,...).
    #[cfg(feature = "compare")]
    #[arg(long, env = "MQPAXOS_ENDPOINTS", value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// NATS: the KV bucket (created with 3 replicas if missing).
    #[cfg(feature = "compare")]
    #[arg(long, env = "MQPAXOS_BUCKET", default_value = "bench")]
    pub bucket: String,
    /// NATS: replicas of a bucket the bench creates.
    #[cfg(feature = "compare")]
    #[arg(long, env = "MQPAXOS_REPLICAS", default_value_t = 3)]
    pub replicas: usize,
    /// Instead of a run: read every *.json in this directory and write the performance
    /// document (--doc) and its charts (--img-dir).
    #[cfg(feature = "compare")]
    #[arg(long, env = "MQPAXOS_REPORT")]
    pub report: Option<PathBuf>,
    #[cfg(feature = "compare")]
    #[arg(long, env = "MQPAXOS_DOC", default_value = "docs/performance.md")]
    pub doc: PathBuf,
    #[cfg(feature = "compare")]
    #[arg(long, env = "MQPAXOS_IMG_DIR", default_value = "docs/img")]
    pub img_dir: PathBuf,
}

fn parse_warmup(s: &str) -> Result<Duration, DurationError> {
    if matches!(s.trim(), "0" | "0s" | "0ms") {
        return Ok(Duration::ZERO);
    }
    parse_duration(s)
}

/// One step's results.
#[derive(Serialize, serde::Deserialize, Clone, Debug)]
pub struct Step {
    pub clients: usize,
    /// Open loop: the offered rate (commands/s); closed loop: absent.
    pub rate: Option<f64>,
    pub ops: u64,
    pub errors: u64,
    pub ops_per_sec: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// Commands the servers executed in the measured window (from their metrics).
    pub committed: Option<u64>,
    /// MQTT publishes by all servers per committed command.
    pub publishes_per_command: Option<f64>,
    /// CPU of the observed processes (the servers), summed, in percent of one core.
    pub cpu_percent: Option<f64>,
    /// Resident memory of the observed processes, summed, in MiB, at the step's end.
    pub rss_mib: Option<f64>,
    /// Their peak resident memory since they started, summed, in MiB (`VmHWM`).
    #[serde(default)]
    pub peak_rss_mib: Option<f64>,
    /// The live data at the step's end: bytes of keys and values in the fullest server's
    /// store, in MiB (mqpaxos only, from its metrics).
    #[serde(default)]
    pub live_mib: Option<f64>,
    /// Each server's resident memory over the live data: `rss_mib` over the servers and
    /// `live_mib` (what "memory close to the live data" is measured by).
    #[serde(default)]
    pub rss_per_live: Option<f64>,
    /// CPU of this bench process (clients, and the built-in broker when it runs one).
    pub bench_cpu_percent: Option<f64>,
    /// CPU time per acknowledged command, in microseconds: the servers' plus this bench
    /// process's (so, for its own cluster, the built-in broker's and the clients' too). The
    /// cost of a command whatever the machine's speed: what the CPU work targets.
    #[serde(default)]
    pub cpu_us_per_command: Option<f64>,
    /// The first error seen, if any.
    pub first_error: Option<String>,
}

#[derive(Serialize, serde::Deserialize, Clone, Debug)]
pub struct Params {
    pub mode: String,
    pub mix: String,
    pub keys: usize,
    pub value_size: usize,
    pub duration_s: f64,
    pub warmup_s: f64,
    /// Own cluster: servers and fsync policy.
    pub servers: Option<u32>,
    pub sync: Option<String>,
    /// Commands each client kept in flight (absent in reports from before `--pipeline`).
    #[serde(default = "one")]
    pub pipeline: usize,
    /// The comparison round (`--repetition`), if any.
    #[serde(default)]
    pub repetition: Option<u32>,
}

fn one() -> usize {
    1
}

/// Everything `--json` writes.
#[derive(Serialize, serde::Deserialize, Clone, Debug)]
pub struct Results {
    pub target: String,
    pub label: String,
    pub version: String,
    /// Seconds since the Unix epoch at the start.
    pub started_at: u64,
    pub params: Params,
    pub machine: observe::Machine,
    pub steps: Vec<Step>,
}

pub async fn run(a: Args) -> CmdResult {
    #[cfg(feature = "compare")]
    if let Some(dir) = &a.report {
        return report::write(dir, &a.doc, &a.img_dir).map(|()| ExitCode::SUCCESS);
    }
    validate(&a)?;
    let own = own_cluster(&a);
    #[cfg(not(feature = "embedded-broker"))]
    if own {
        return Err(fail(
            Exit::Usage,
            "this build has no built-in broker: give --broker of a running cluster",
        ));
    }
    #[cfg(feature = "embedded-broker")]
    if own {
        return run_own_cluster(&a).await;
    }
    // Ctrl-C or SIGTERM stops the run.
    tokio::select! {
        r = run_other(&a) => r,
        _ = stop_signal() => Err(fail(Exit::Failed, "interrupted")),
    }
}

fn own_cluster(a: &Args) -> bool {
    targets_mqpaxos(a) && a.broker.is_none()
}

/// Whether the load goes to mqpaxos (rather than, with the feature `compare`, etcd or NATS).
fn targets_mqpaxos(a: &Args) -> bool {
    #[cfg(feature = "compare")]
    if a.target != "mqpaxos" {
        return false;
    }
    let _ = a;
    true
}

fn validate(a: &Args) -> Result<(), Failure> {
    if a.rate.is_empty() {
        if a.clients.is_empty() || a.clients.iter().any(|c| *c == 0 || *c > 4096) {
            return Err(fail(Exit::Usage, "--clients takes 1 to 4096 per step"));
        }
    } else {
        if a.rate
            .iter()
            .any(|r| !r.is_finite() || *r <= 0.0 || *r > 1e7)
        {
            return Err(fail(
                Exit::Usage,
                "--rate takes commands per second above 0 per step",
            ));
        }
        if a.connections == 0 || a.connections > 4096 {
            return Err(fail(Exit::Usage, "--connections takes 1 to 4096"));
        }
    }
    if a.pipeline == 0 || a.pipeline > mqpaxos_node::client::MAX_PIPELINE {
        return Err(fail(Exit::Usage, "--pipeline takes 1 to 64"));
    }
    if a.pipeline > 1 && (!a.rate.is_empty() || a.api != "postcard" || !targets_mqpaxos(a)) {
        return Err(fail(
            Exit::Usage,
            "--pipeline above 1 needs the closed loop (no --rate) and mqpaxos's Rust client \
             (--api postcard, --target mqpaxos)",
        ));
    }
    if a.keys == 0 || a.keys > 100_000_000 {
        return Err(fail(Exit::Usage, "--keys takes 1 to 100000000"));
    }
    if a.value_size == 0 || a.value_size > mqpaxos_node::client::MAX_VALUE {
        return Err(fail(
            Exit::Usage,
            format!(
                "--value-size takes 1 to {} bytes",
                mqpaxos_node::client::MAX_VALUE
            ),
        ));
    }
    #[cfg(feature = "compare")]
    if a.target != "mqpaxos" && a.endpoints.is_empty() {
        return Err(fail(
            Exit::Usage,
            format!("--target {} needs --endpoints host:port,...", a.target),
        ));
    }
    Ok(())
}

/// What the run observes besides latency.
struct Observed {
    metrics: Vec<String>,
    pids: Vec<u32>,
}

/// A running cluster, or etcd or NATS.
async fn run_other(a: &Args) -> CmdResult {
    let target = make_target(a, a.broker.as_deref().unwrap_or_default())?;
    let observed = Observed {
        metrics: a.metrics.clone(),
        pids: a.pids.clone(),
    };
    bench(a, &target, &observed, false).await
}

#[cfg(feature = "embedded-broker")]
async fn run_own_cluster(a: &Args) -> CmdResult {
    use crate::local_cluster::{temp_data_dir, ClusterSpec, LocalCluster};
    let (data_dir, temporary) = match &a.data_dir {
        Some(d) => (d.clone(), false),
        None => (temp_data_dir("bench"), true),
    };
    let spec = ClusterSpec::measured(
        a.servers,
        a.cluster.clone(),
        data_dir.clone(),
        a.sync.clone(),
        a.server_arg.clone(),
    )?;
    let mut cluster = LocalCluster::start(&spec).await?;
    let metrics = spec.metrics_addrs();
    let work = async {
        let target = make_target(a, &cluster.url)?;
        wait_ready(&target, &mut cluster).await?;
        // Taken once the cluster is up: a server that has exited has no process id any
        // more (once reaped, its old id may belong to some other process).
        let mut pids: Vec<u32> = cluster.server_pids().into_iter().flatten().collect();
        pids.extend(&a.pids);
        let observed = Observed { metrics, pids };
        bench(a, &target, &observed, true).await
    };
    // Ctrl-C or SIGTERM: stop the cluster and remove its data as after a full run.
    let mut interrupted = false;
    let mut result = tokio::select! {
        r = work => r,
        _ = stop_signal() => {
            interrupted = true;
            Err(fail(Exit::Failed, "interrupted"))
        }
    };
    // Whatever went wrong, what the servers said goes with it: their logs are about to be
    // removed with the temporary data directory.
    if let Err(e) = &mut result {
        if !interrupted {
            e.message.push_str(&cluster.diagnosis());
        }
    }
    let stopped = cluster.stop().await;
    if temporary {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    let code = result?;
    stopped?;
    Ok(code)
}

/// Waits until the new cluster has a leader: a put goes through. Gives up as soon as a
/// majority of its servers has exited (e.g. on a `--server-arg` they refuse), also while a
/// put is waiting for its answer: no leader can come.
#[cfg(feature = "embedded-broker")]
async fn wait_ready(
    target: &Target,
    cluster: &mut crate::local_cluster::LocalCluster,
) -> Result<(), Failure> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let attempts = async {
        let mut last = String::new();
        while Instant::now() < deadline {
            match target.connect().await {
                Ok(mut c) => {
                    let r = c.run(workload::OpKind::Put, "bench-ready", "1").await;
                    c.close().await;
                    match r {
                        Ok(()) => return Ok(()),
                        Err(e) => last = e.to_string(),
                    }
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(fail(
            Exit::Unavailable,
            format!("the local cluster did not become ready: {last}"),
        ))
    };
    let servers = cluster.servers() as usize;
    let majority_gone = async {
        loop {
            let exited = cluster.exited();
            if servers.saturating_sub(exited) < servers / 2 + 1 {
                return exited;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::select! {
        r = attempts => r,
        exited = majority_gone => Err(fail(
            Exit::Unavailable,
            format!("the local cluster cannot start: {exited} of its {servers} servers exited"),
        )),
    }
}

fn make_target(a: &Args, broker: &str) -> Result<Target, Failure> {
    #[cfg(feature = "compare")]
    match a.target.as_str() {
        "etcd" => return Ok(Target::Etcd(a.endpoints.clone())),
        "nats" => {
            return Ok(Target::Nats(compare::NatsTarget {
                endpoints: a.endpoints.clone(),
                bucket: a.bucket.clone(),
                replicas: a.replicas,
                timeout: a.timeout,
            }))
        }
        _ => {}
    }
    mqpaxos_node::transport::parse_url(broker).map_err(|e| fail(Exit::Usage, e.to_string()))?;
    let mut opts = ClientOptions::new(broker, &a.user);
    opts.broker = BrokerOptions {
        url: broker.to_string(),
        user: a.user.clone(),
        password: password(a.password_file.as_deref())?,
        ca_file: a.ca_file.clone(),
        keep_alive: Duration::from_secs(5),
    };
    opts.cluster = a.cluster.clone();
    opts.timeout = a.timeout;
    Ok(if a.api == "json" {
        Target::MqpaxosJson(opts)
    } else {
        Target::Mqpaxos(opts)
    })
}

async fn bench(a: &Args, target: &Target, observed: &Observed, own: bool) -> CmdResult {
    let started_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let load = |rate| StepLoad {
        pipeline: a.pipeline,
        keys: a.keys,
        mix: a.mix,
        value: "x".repeat(a.value_size).into(),
        rate,
        warmup: a.warmup,
        duration: a.duration,
    };
    if a.mix.get > 0 || a.mix.cas > 0 {
        prefill(target, &load(None)).await?;
    }
    let plan: Vec<(usize, Option<f64>)> = if a.rate.is_empty() {
        a.clients.iter().map(|c| (*c, None)).collect()
    } else {
        a.rate.iter().map(|r| (a.connections, Some(*r))).collect()
    };
    let mut steps = Vec::new();
    for (clients, rate) in plan {
        let step = run_step(target, clients, &load(rate), observed).await?;
        eprintln!("{}", step_line(&step));
        steps.push(step);
    }
    let results = Results {
        target: target.name().to_string(),
        label: a.label.clone().unwrap_or_else(|| target.name().to_string()),
        version: a
            .system_version
            .clone()
            .unwrap_or_else(|| match target.name() {
                "mqpaxos" => format!("mqpaxos {}", env!("CARGO_PKG_VERSION")),
                other => other.to_string(),
            }),
        started_at,
        params: Params {
            mode: if a.rate.is_empty() {
                "closed".to_string()
            } else {
                "open".to_string()
            },
            mix: a.mix.describe(),
            keys: a.keys,
            value_size: a.value_size,
            duration_s: a.duration.as_secs_f64(),
            warmup_s: a.warmup.as_secs_f64(),
            servers: own.then_some(a.servers),
            sync: own.then(|| a.sync.clone()),
            pipeline: a.pipeline,
            repetition: a.repetition,
        },
        machine: observe::machine(),
        steps,
    };
    let json_to_stdout = a.json.as_deref().is_some_and(|p| p.as_os_str() == "-");
    if !json_to_stdout {
        print_table(&results);
    }
    if let Some(path) = &a.json {
        let text = serde_json::to_string_pretty(&results)
            .map_err(|e| fail(Exit::Failed, format!("cannot encode the results: {e}")))?;
        if path.as_os_str() == "-" {
            println!("{text}");
        } else {
            std::fs::write(path, text + "\n")
                .map_err(|e| fail(Exit::Usage, format!("cannot write {}: {e}", path.display())))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes every key once, so gets and cas find values.
async fn prefill(target: &Target, load: &StepLoad) -> Result<(), Failure> {
    let workers = load.keys.min(16);
    let mut tasks = Vec::new();
    for w in 0..workers {
        let mut conn = target
            .connect()
            .await
            .map_err(|e| fail(Exit::Unavailable, e.to_string()))?;
        let (keys, value) = (load.keys, load.value.clone());
        tasks.push(tokio::spawn(async move {
            let mut r = Ok(());
            for k in (w..keys).step_by(workers) {
                r = conn
                    .run(workload::OpKind::Put, &workload::key(k), &value)
                    .await;
                if r.is_err() {
                    break;
                }
            }
            conn.close().await;
            r
        }));
    }
    for t in tasks {
        t.await
            .map_err(|e| fail(Exit::Failed, format!("a prefill client failed: {e}")))?
            .map_err(|e| fail(Exit::Unavailable, format!("prefill: {e}")))?;
    }
    Ok(())
}

/// One connection per client; on a failure, closes those already open.
async fn connect_all(target: &Target, clients: usize) -> Result<Vec<Conn>, Failure> {
    let mut conns: Vec<Conn> = Vec::with_capacity(clients);
    for _ in 0..clients {
        match target.connect().await {
            Ok(c) => conns.push(c),
            Err(e) => {
                for c in conns {
                    c.close().await;
                }
                return Err(fail(
                    Exit::Unavailable,
                    format!("cannot connect to {}: {e}", target.name()),
                ));
            }
        }
    }
    Ok(conns)
}

/// The step's progress bar (warm-up and measurement), labelled with its load.
fn step_bar(clients: usize, load: &StepLoad) -> ProgressBar {
    let what = match load.rate {
        Some(r) => format!("{r:.0}/s"),
        None => format!("{clients} clients"),
    };
    let total = load.warmup + load.duration;
    let bar = ProgressBar::new(total.as_millis() as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>14} [{bar:30}] {elapsed:>3} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(what);
    bar
}

async fn run_step(
    target: &Target,
    clients: usize,
    load: &StepLoad,
    observed: &Observed,
) -> Result<Step, Failure> {
    let conns = connect_all(target, clients).await?;
    let bar = step_bar(clients, load);
    let live = Arc::new(Live::default());
    let start = Instant::now();
    let measure_from = start + load.warmup;
    let end = measure_from + load.duration;
    let engine = {
        let (load, live) = (load.clone(), live.clone());
        workload::Task(tokio::spawn(async move {
            workload::run(conns, &load, start, live).await
        }))
    };
    // Progress until the measured window opens, then a snapshot, then until it closes.
    let tick = |bar: &ProgressBar, measuring: bool| {
        bar.set_position(start.elapsed().as_millis() as u64);
        if measuring {
            let secs = measure_from.elapsed().as_secs_f64().max(0.001);
            let ops = live.ops.load(Ordering::Relaxed);
            bar.set_message(format!(
                "{:.0} ops/s, {} errors",
                ops as f64 / secs,
                live.errors.load(Ordering::Relaxed)
            ));
        } else {
            bar.set_message("warming up");
        }
    };
    while Instant::now() < measure_from {
        tick(&bar, false);
        tokio::time::sleep_until(measure_from.min(Instant::now() + Duration::from_millis(200)))
            .await;
    }
    let cpu_before = observe::cpu_all(&observed.pids);
    let self_before = observe::cpu_all(&[std::process::id()]);
    let metrics_before: Vec<Option<Counters>> = crate::metrics::scrape_all(&observed.metrics).await;
    let window_start = std::time::Instant::now();
    while Instant::now() < end {
        tick(&bar, true);
        tokio::time::sleep_until(end.min(Instant::now() + Duration::from_millis(200))).await;
    }
    let wall = window_start.elapsed();
    let cpu_after = observe::cpu_all(&observed.pids);
    let self_after = observe::cpu_all(&[std::process::id()]);
    let sum = |f: fn(u32) -> Option<f64>| {
        (!observed.pids.is_empty())
            .then(|| observed.pids.iter().map(|p| f(*p)).sum::<Option<f64>>())
            .flatten()
    };
    let rss = sum(observe::rss_mib);
    let peak_rss = sum(observe::peak_rss_mib);
    // Let commands still in flight finish so the counters cover them, then scrape.
    let mut engine = engine;
    let out = (&mut engine.0)
        .await
        .map_err(|e| fail(Exit::Failed, format!("the load engine failed: {e}")))?
        .map_err(|e| fail(Exit::Failed, e.to_string()))?;
    bar.finish_and_clear();
    let metrics_after = crate::metrics::scrape_all(&observed.metrics).await;
    let ppc = observe::publishes_per_command(&metrics_before, &metrics_after);
    let live_mib = observe::live_mib(&metrics_after);
    let rss_per_live = rss
        .zip(live_mib)
        .filter(|(_, live)| *live > 0.0)
        .map(|(rss, live)| rss / observed.pids.len() as f64 / live);
    let hist = &out.hist;
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let cpu_percent = observe::cpu_percent(&cpu_before, &cpu_after, wall);
    let bench_cpu_percent = observe::cpu_percent(&self_before, &self_after, wall);
    let ops_per_sec = hist.len() as f64 / load.duration.as_secs_f64();
    let cpu_us_per_command = cpu_percent
        .zip(bench_cpu_percent)
        .filter(|_| ops_per_sec > 0.0)
        .map(|(a, b)| (a + b) / 100.0 * 1e6 / ops_per_sec);
    Ok(Step {
        clients,
        rate: load.rate,
        ops: hist.len(),
        errors: out.errors,
        ops_per_sec,
        p50_ms: ms(0.5),
        p90_ms: ms(0.9),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        max_ms: hist.max() as f64 / 1000.0,
        committed: ppc.map(|(_, c)| c),
        publishes_per_command: ppc.map(|(p, _)| p),
        cpu_percent,
        rss_mib: rss,
        peak_rss_mib: peak_rss,
        live_mib,
        rss_per_live,
        bench_cpu_percent,
        cpu_us_per_command,
        first_error: out.first_error.map(|e| e.to_string()),
    })
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.digits$}"))
}

fn step_line(s: &Step) -> String {
    let what = match s.rate {
        Some(r) => format!("rate {r:>7.0}/s"),
        None => format!("clients {:>4}", s.clients),
    };
    let mut line = format!(
        "{what}: {:>9.0} ops/s  p50 {:>7.2} ms  p99 {:>7.2} ms  pub/cmd {:>5}  cpu {:>5}%  cpu/cmd {:>5} us  ({} errors)",
        s.ops_per_sec,
        s.p50_ms,
        s.p99_ms,
        opt(s.publishes_per_command, 2),
        opt(s.cpu_percent, 0),
        opt(s.cpu_us_per_command, 0),
        s.errors
    );
    if let Some(e) = &s.first_error {
        line.push_str(&format!("; first: {e}"));
    }
    line
}

fn print_table(r: &Results) {
    println!(
        "| clients | rate | ops/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | errors | pub/cmd | cpu % | rss MiB | peak rss MiB | live MiB | rss/live | bench cpu % | cpu us/cmd |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for s in &r.steps {
        println!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            s.clients,
            opt(s.rate, 0),
            s.ops_per_sec,
            s.p50_ms,
            s.p90_ms,
            s.p99_ms,
            s.p999_ms,
            s.max_ms,
            s.errors,
            opt(s.publishes_per_command, 2),
            opt(s.cpu_percent, 0),
            opt(s.rss_mib, 1),
            opt(s.peak_rss_mib, 1),
            opt(s.live_mib, 1),
            opt(s.rss_per_live, 2),
            opt(s.bench_cpu_percent, 0),
            opt(s.cpu_us_per_command, 0),
        );
    }
}
