//! `mqpaxos chaos`: the reference experiment on the real system, with a verdict.
//!
//! It starts a broker (the built-in one unless `--broker` names another), N real server
//! processes, and C clients issuing a mix of put/get/cas on a few keys so that operations
//! conflict. Faults go through the cluster's chaos topic: loss and delay from the start, and
//! `--partitions` random splits of the servers into groups of the given sizes. Then it heals
//! everything and checks: the clients' history is linearizable (a final read of every key
//! included, so a lost acknowledged write fails it), and all replicas agree. With `--out` it
//! writes `history.jsonl`, `summary.json`, `timeseries.json` and the charts (see `src/charts.rs`).

mod netns;

use crate::charts::{self, MessageSample, OpSample, PartitionWindow, Timeseries};
use crate::cmd::Exit;
use crate::cmd::{fail, parse_duration, CmdResult};
use crate::launch::{free_local_addr, ServerCommand, Servers};
use mqpaxos_check::{check_events, CheckLimits, CheckOutcome, Event, EventType, OpKind};
use mqpaxos_node::chaos::Faults;
use mqpaxos_node::topics::{server_id, Parsed, Topics};
use mqpaxos_node::transport::{BrokerOptions, Connection, Incoming, Session};
use mqpaxos_node::{Client, ClientError, ClientOptions, Status};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long, env = "MQPAXOS_SERVERS", default_value_t = 7)]
    pub servers: u32,
    #[arg(long, env = "MQPAXOS_CLIENTS", default_value_t = 5)]
    pub clients: usize,
    /// Probability that a message is lost.
    #[arg(long, env = "MQPAXOS_LOSS", default_value_t = 0.2)]
    pub loss: f64,
    /// Delay added to every message.
    #[arg(long, env = "MQPAXOS_DELAY", default_value = "10ms", value_parser = parse_duration)]
    pub delay: Duration,
    /// Probability that a message is delivered twice.
    #[arg(long, env = "MQPAXOS_DUPLICATE", default_value_t = 0.0)]
    pub duplicate: f64,
    /// How many times the servers are split at random.
    #[arg(long, env = "MQPAXOS_PARTITIONS", default_value_t = 5)]
    pub partitions: usize,
    /// Group sizes of each split (must add up to --servers).
    #[arg(
        long,
        env = "MQPAXOS_GROUPS",
        default_value = "4,3",
        value_delimiter = ','
    )]
    pub groups: Vec<usize>,
    /// How long the faults last.
    #[arg(long, env = "MQPAXOS_DURATION", default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Seed for the choice of splits and client operations (default: random).
    #[arg(long, env = "MQPAXOS_SEED")]
    pub seed: Option<u64>,
    /// Use this broker instead of starting the built-in one.
    #[arg(long, env = "MQPAXOS_BROKER")]
    pub broker: Option<String>,
    /// Write history.jsonl, summary.json, timeseries.json and the charts here.
    #[arg(long, env = "MQPAXOS_OUT")]
    pub out: Option<PathBuf>,
    /// Keys the clients work on.
    #[arg(long, env = "MQPAXOS_KEYS", default_value_t = 5)]
    pub keys: usize,
    /// A client gives up on an operation after this long (its outcome is then unknown).
    #[arg(long, env = "MQPAXOS_OP_TIMEOUT", default_value = "3s", value_parser = parse_duration)]
    pub op_timeout: Duration,
    /// Make loss and splits with the kernel: each server in its own network namespace,
    /// iptables rules on the links (root only; see docs/chaos.md).
    #[arg(long, env = "MQPAXOS_NETNS", conflicts_with = "broker")]
    pub netns: bool,
    /// With --netns: one broker, or two bridged brokers whose link the splits cut.
    #[arg(long, env = "MQPAXOS_BROKERS", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2), requires = "netns")]
    pub brokers: u8,
}

#[derive(Serialize, Debug, Default)]
struct Summary {
    seed: u64,
    servers: u32,
    clients: usize,
    duration_s: f64,
    ops_ok: u64,
    ops_info: u64,
    throughput_ok_per_s: f64,
    latency_ms: BTreeMap<String, f64>,
    leader_changes: u64,
    faults: Vec<FaultRecord>,
    /// Per server: message type -> count, for messages in and out.
    messages_in: BTreeMap<String, BTreeMap<String, u64>>,
    messages_out: BTreeMap<String, BTreeMap<String, u64>>,
    linearizable: String,
    replicas_agree: bool,
    violations: Vec<String>,
}

#[derive(Serialize, Debug, Clone)]
struct FaultRecord {
    at_s: f64,
    faults: Faults,
    /// With --netns: what the kernel does (the transport then adds only delay/duplicate).
    #[serde(skip_serializing_if = "Option::is_none")]
    kernel: Option<String>,
}

/// The latest presence and status of every server, by id.
type Observed = Mutex<BTreeMap<u32, (bool, Option<Status>)>>;

pub async fn run(a: Args) -> CmdResult {
    if a.groups.iter().sum::<usize>() != a.servers as usize || a.groups.contains(&0) {
        return Err(fail(
            Exit::Usage,
            format!(
                "--groups {:?} must add up to --servers {}",
                a.groups, a.servers
            ),
        ));
    }
    if !(0.0..=1.0).contains(&a.loss) || !(0.0..=1.0).contains(&a.duplicate) {
        return Err(fail(
            Exit::Usage,
            "--loss and --duplicate are probabilities in 0..=1",
        ));
    }
    if a.servers == 0 || a.clients == 0 || a.keys == 0 {
        return Err(fail(
            Exit::Usage,
            "--servers, --clients and --keys must be at least 1",
        ));
    }
    if a.brokers == 2 && a.groups.len() != 2 {
        return Err(fail(
            Exit::Usage,
            "--brokers 2 needs two --groups: servers on broker A, on B",
        ));
    }
    let seed = a.seed.unwrap_or_else(rand::random);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let cluster = format!("chaos{seed}");
    let topics = Topics::new(&cluster);
    // With --netns: namespaces, links and brokers; dropping `lab` removes them.
    let lab = if a.netns {
        let lab = netns::Lab::create(&netns::Plan {
            servers: a.servers,
            clients: a.clients,
            brokers: a.brokers,
            groups: a.groups.clone(),
            seed,
        })
        .map_err(|e| fail(Exit::Failed, e))?;
        netns::cleanup_on_signal(lab.names());
        Some(lab)
    } else {
        None
    };
    let password = match &lab {
        Some(l) => Some(l.password().to_string()),
        None => std::env::var("MQPAXOS_PASSWORD").ok(),
    };

    // The broker.
    #[cfg(feature = "embedded-broker")]
    let mut embedded = None;
    let url = match (&a.broker, &lab) {
        (_, Some(l)) => l.runner_url(),
        (Some(u), None) => u.clone(),
        (None, None) => {
            #[cfg(feature = "embedded-broker")]
            {
                let b = mqpaxos_broker::Broker::start(mqpaxos_broker::BrokerConfig {
                    listen: "127.0.0.1:0"
                        .parse()
                        .map_err(|_| fail(Exit::Failed, "bad address"))?,
                    ..mqpaxos_broker::BrokerConfig::default()
                })
                .await
                .map_err(|e| fail(Exit::Failed, e.to_string()))?;
                let u = format!("mqtt://{}", b.local_addr());
                embedded = Some(b);
                u
            }
            #[cfg(not(feature = "embedded-broker"))]
            return Err(fail(
                Exit::Usage,
                "built without the embedded broker: pass --broker",
            ));
        }
    };
    let broker = |user: &str| BrokerOptions {
        url: url.clone(),
        user: user.to_string(),
        password: password.clone(),
        ca_file: None,
        keep_alive: Duration::from_secs(5),
    };

    // The servers, each with its own data directory and metrics port.
    let data = std::env::temp_dir().join(format!("mqpaxos-chaos-{seed}-{}", std::process::id()));
    let mut servers = Servers::new()?;
    let mut metrics = Vec::new();
    for id in 1..=a.servers {
        // A plain process, or one in the server's own namespace.
        let (wrapper, server_url, addr) = match &lab {
            Some(l) => (l.server_wrapper(id), l.server_url(id), l.metrics_addr(id)),
            None => (Vec::new(), url.clone(), free_local_addr()?),
        };
        servers.start(&ServerCommand {
            id,
            servers: a.servers,
            broker: server_url,
            cluster: cluster.clone(),
            data_dir: data.join(format!("server{id}")),
            metrics: Some(addr),
            sync: None,
            password_file: None,
            password: password.clone(),
            // The run's faults come through the chaos topic, which servers ignore without it.
            args: vec!["--allow-fault-injection".to_string()],
            quiet: true,
            wrapper,
        })?;
        metrics.push(addr);
    }

    // An observer that keeps the latest status and presence of every server.
    let observed: Arc<Observed> = Arc::default();
    let mut observer = Connection::open(
        &broker(mqpaxos_node::acl::OPERATOR),
        Session {
            client_id: format!("mqpaxos-chaos-observer-{seed}"),
            subscriptions: vec![topics.all_status(), topics.all_presence()],
            on_connect: Vec::new(),
            will: None,
        },
        Some(Duration::from_secs(10)),
    )
    .await
    .map_err(|e| fail(Exit::Unavailable, e.to_string()))?;
    let (obs_conn, mut obs_rx) = (
        observer.client.clone(),
        std::mem::replace(&mut observer.incoming, tokio::sync::mpsc::channel(1).1),
    );
    let leader_changes = Arc::new(std::sync::atomic::AtomicU64::new(0));
    {
        let observed = observed.clone();
        let topics = topics.clone();
        let leader_changes = leader_changes.clone();
        tokio::spawn(async move {
            let mut last_leader: Option<(String, u32)> = None;
            while let Some(m) = obs_rx.recv().await {
                let Incoming::Publish { topic, payload, .. } = m else {
                    continue;
                };
                let mut o = match observed.lock() {
                    Ok(o) => o,
                    Err(_) => return,
                };
                match topics.parse(&topic) {
                    Some(Parsed::Presence { node }) => {
                        if let Some(id) = server_id(&node) {
                            o.entry(id).or_default().0 = payload.as_slice() == b"online";
                        }
                    }
                    Some(Parsed::Status { node }) => {
                        if let (Some(id), Ok(s)) =
                            (server_id(&node), serde_json::from_slice::<Status>(&payload))
                        {
                            if s.role == "leader" {
                                let now = (s.ballot.clone(), id);
                                if last_leader.as_ref() != Some(&now) {
                                    if last_leader.is_some() {
                                        leader_changes
                                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                    }
                                    last_leader = Some(now);
                                }
                            }
                            o.entry(id).or_default().1 = Some(s);
                        }
                    }
                    _ => {}
                }
            }
        });
    }
    let set_faults = |f: Faults| {
        let client = obs_conn.clone();
        let topic = topics.chaos();
        async move {
            let body = serde_json::to_vec(&f).unwrap_or_default();
            client
                .publish(topic, rumqttc_qos(), true, body)
                .await
                .map_err(|e| {
                    fail(
                        Exit::Unavailable,
                        format!("cannot publish the fault settings: {e}"),
                    )
                })
        }
    };
    set_faults(Faults::default()).await?;

    // Wait for a leader before the clients start.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let has_leader = observed
            .lock()
            .map(|o| {
                o.values()
                    .any(|(on, s)| *on && s.as_ref().is_some_and(|s| s.role == "leader"))
            })
            .unwrap_or(false);
        if has_leader {
            break;
        }
        if Instant::now() > deadline {
            return Err(fail(Exit::Unavailable, "no leader was elected within 30 s"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The clients.
    let start = Instant::now();
    let history: Arc<Mutex<Vec<Event>>> = Arc::default();
    let series: Arc<Mutex<Timeseries>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 1..=a.clients {
        let user = format!("client{c}");
        let mut opts = ClientOptions::new(&url, &user);
        opts.broker = broker(&user);
        if let Some(l) = &lab {
            opts.broker.url = l.client_url(c);
        }
        opts.cluster = cluster.clone();
        opts.timeout = a.op_timeout;
        let (history, series, stop) = (history.clone(), series.clone(), stop.clone());
        let keys = a.keys;
        let client_seed = rng.gen::<u64>();
        tasks.push(tokio::spawn(async move {
            client_loop(opts, keys, client_seed, start, history, series, stop).await
        }));
    }

    // Every server's message counters, sampled until the replicas have agreed.
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = tokio::spawn(sample_messages(
        metrics.clone(),
        charts::sample_interval(a.duration),
        start,
        series.clone(),
        sampling.clone(),
    ));

    // The faults: loss and delay throughout, and the splits.
    let mut faults_log = Vec::new();
    let base = Faults {
        loss: a.loss,
        delay_ms: a.delay.as_millis() as u64,
        jitter_ms: 0,
        duplicate: a.duplicate,
        partition: Vec::new(),
    };
    // With --netns the kernel drops packets; the transport only delays and duplicates.
    let kernel = match &lab {
        Some(l) => Some(l.set_loss(a.loss).map_err(|e| fail(Exit::Failed, e))?),
        None => None,
    };
    let transport = Faults {
        loss: if lab.is_some() { 0.0 } else { a.loss },
        ..base.clone()
    };
    set_faults(transport.clone()).await?;
    faults_log.push(FaultRecord {
        at_s: 0.0,
        faults: base.clone(),
        kernel: kernel.clone(),
    });
    let bar = progress_bar(a.duration);
    let slices = a.partitions + 1;
    for i in 1..=slices {
        let until = start + a.duration * i as u32 / slices as u32;
        let mut midway = lab.as_ref().filter(|l| i > 1 && l.heals_midway());
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(500)).await;
            progress(&bar, start, &history, &faults_log);
            // With two brokers the bridge is restored for the second half of each split.
            if let Some(l) =
                midway.filter(|_| until - Instant::now() < a.duration / (2 * slices as u32))
            {
                let kernel = l.heal_cuts().map_err(|e| fail(Exit::Failed, e))?;
                faults_log.push(FaultRecord {
                    at_s: start.elapsed().as_secs_f64(),
                    faults: base.clone(),
                    kernel: Some(kernel),
                });
                midway = None;
            }
        }
        if i < slices {
            let mut ids: Vec<u32> = (1..=a.servers).collect();
            ids.shuffle(&mut rng);
            let mut groups = Vec::new();
            let mut it = ids.into_iter();
            for size in &a.groups {
                let mut g: Vec<u32> = it.by_ref().take(*size).collect();
                g.sort_unstable();
                groups.push(g);
            }
            let (groups, kernel) = match &lab {
                Some(l) => {
                    let (g, k) = l.split(&groups).map_err(|e| fail(Exit::Failed, e))?;
                    (g, Some(k))
                }
                None => (groups, None),
            };
            let f = Faults {
                partition: groups,
                ..base.clone()
            };
            if lab.is_none() {
                set_faults(f.clone()).await?;
            }
            faults_log.push(FaultRecord {
                at_s: start.elapsed().as_secs_f64(),
                faults: f,
                kernel,
            });
        }
    }
    // Heal, let the clients finish, and wait for the replicas to agree.
    if let Some(l) = &lab {
        l.heal().map_err(|e| fail(Exit::Failed, e))?;
    }
    set_faults(Faults::default()).await?;
    faults_log.push(FaultRecord {
        at_s: start.elapsed().as_secs_f64(),
        faults: Faults::default(),
        kernel: lab
            .as_ref()
            .map(|_| "iptables: every rule removed".to_string()),
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    bar.set_message("healed; waiting for the replicas to agree");
    for t in tasks {
        let _ = t.await;
    }
    let mut violations = Vec::new();
    let agree = wait_agreement(&observed, a.servers, Duration::from_secs(30)).await;
    bar.finish_and_clear();
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    // A scrape gives up after 5 s, so the sampler ends soon; never wait on it for long.
    let _ = tokio::time::timeout(Duration::from_secs(10), sampler).await;
    if !agree {
        // Say what each replica last reported, so a failed run shows who lagged.
        let states = observed
            .lock()
            .map(|o| {
                o.iter()
                    .map(|(id, (on, s))| match (on, s) {
                        (true, Some(s)) => format!("server{id} commit {}", s.commit),
                        (false, _) => format!("server{id} offline"),
                        (true, None) => format!("server{id} no status"),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        violations.push(format!(
            "replicas did not reach the same state within 30 s of the heal ({states})"
        ));
    }
    // Final reads of every key.
    let mut events = history.lock().map(|h| h.clone()).unwrap_or_default();
    let mut opts = ClientOptions::new(&url, "client0");
    opts.broker = broker("client0");
    opts.cluster = cluster.clone();
    opts.timeout = Duration::from_secs(20);
    match Client::connect(opts).await {
        Ok(reader) => {
            for k in 0..a.keys {
                let key = format!("k{k}");
                let t0 = start.elapsed().as_nanos() as u64;
                match reader.get(&key).await {
                    Ok(v) => {
                        events.push(Event::invoke(t0, "final", OpKind::Get, &key));
                        events.push(
                            Event::ok(
                                start.elapsed().as_nanos() as u64,
                                "final",
                                OpKind::Get,
                                &key,
                            )
                            .with_value(v.as_deref()),
                        );
                    }
                    Err(e) => violations.push(format!("final read of {key} failed: {e}")),
                }
            }
            reader.close().await;
        }
        Err(e) => violations.push(format!("final reader cannot connect: {e}")),
    }
    let verdict = match check_events(&events, CheckLimits::default()) {
        Ok(v) => v,
        Err(e) => CheckOutcome::Unknown {
            key: String::new(),
            reason: e.to_string(),
        },
    };
    if !verdict.is_linearizable() {
        violations.push(format!("history: {verdict}"));
    }

    // Messages per node and type, from the servers' own metrics.
    let mut summary = Summary {
        seed,
        servers: a.servers,
        clients: a.clients,
        duration_s: a.duration.as_secs_f64(),
        leader_changes: leader_changes.load(std::sync::atomic::Ordering::Relaxed),
        faults: faults_log,
        linearizable: verdict.to_string(),
        replicas_agree: agree,
        ..Summary::default()
    };
    for (i, addr) in metrics.iter().enumerate() {
        let node = format!("server{}", i + 1);
        if let Some(text) = scrape(*addr).await {
            let (inn, out) = message_counts(&text);
            summary.messages_in.insert(node.clone(), inn);
            summary.messages_out.insert(node, out);
        }
    }
    summary.ops_ok = events
        .iter()
        .filter(|e| e.ty == EventType::Ok && e.client != "final")
        .count() as u64;
    summary.ops_info = events.iter().filter(|e| e.ty == EventType::Info).count() as u64;
    summary.throughput_ok_per_s = summary.ops_ok as f64 / a.duration.as_secs_f64();
    let mut series = series.lock().map(|s| s.clone()).unwrap_or_default();
    let mut lat: Vec<f64> = series
        .ops
        .iter()
        .filter(|o| o.ok)
        .map(|o| o.latency_ms)
        .collect();
    lat.sort_unstable_by(f64::total_cmp);
    for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0)] {
        if !lat.is_empty() {
            let i = ((lat.len() as f64 * q) as usize).min(lat.len() - 1);
            summary.latency_ms.insert(name.to_string(), lat[i]);
        }
    }
    series.run = format!(
        "seed {seed}: {} servers, {} clients, loss {}, delay {:?}, {} splits into {:?}",
        a.servers, a.clients, a.loss, a.delay, a.partitions, a.groups
    );
    series.nodes = (1..=a.servers).map(|i| format!("server{i}")).collect();
    series.end_s = series
        .samples
        .last()
        .map_or(0.0, |s| s.at_s)
        .max(a.duration.as_secs_f64());
    series.partitions = PartitionWindow::from_log(
        summary
            .faults
            .iter()
            .map(|f| (f.at_s, f.faults.partition.clone())),
        series.end_s,
    );
    summary.violations = violations;

    // Report.
    println!("mqpaxos chaos: seed {seed}, {} servers, {} clients, {:.0} s, loss {}, delay {:?}, {} splits into {:?}",
        a.servers, a.clients, a.duration.as_secs_f64(), a.loss, a.delay, a.partitions, a.groups);
    println!(
        "  operations: {} ok, {} unknown; {:.1} ok/s; latency p50 {:.1} ms, p99 {:.1} ms",
        summary.ops_ok,
        summary.ops_info,
        summary.throughput_ok_per_s,
        summary.latency_ms.get("p50").copied().unwrap_or(0.0),
        summary.latency_ms.get("p99").copied().unwrap_or(0.0)
    );
    if let Some(l) = &lab {
        println!("  kernel faults: {}", l.describe());
    }
    println!("  leader changes seen: {}", summary.leader_changes);
    for (node, m) in &summary.messages_out {
        let out: u64 = m.values().sum();
        let inn: u64 = summary
            .messages_in
            .get(node)
            .map_or(0, |m| m.values().sum());
        println!("  {node}: {inn} messages in, {out} out");
    }
    println!(
        "  linearizable: {}; replicas agree: {}",
        summary.linearizable, summary.replicas_agree
    );
    if let Some(dir) = &a.out {
        std::fs::create_dir_all(dir).map_err(|e| {
            fail(
                Exit::Failed,
                format!("cannot create {}: {e}", dir.display()),
            )
        })?;
        let f = std::fs::File::create(dir.join("history.jsonl"))
            .map_err(|e| fail(Exit::Failed, format!("cannot write history.jsonl: {e}")))?;
        mqpaxos_check::write_jsonl(std::io::BufWriter::new(f), &events)
            .map_err(|e| fail(Exit::Failed, format!("cannot write history.jsonl: {e}")))?;
        // A report that cannot be encoded is a failure, never an empty file.
        let body = serde_json::to_vec_pretty(&summary)
            .map_err(|e| fail(Exit::Failed, format!("cannot encode summary.json: {e}")))?;
        std::fs::write(dir.join("summary.json"), body)
            .map_err(|e| fail(Exit::Failed, format!("cannot write summary.json: {e}")))?;
        let body = serde_json::to_vec(&series)
            .map_err(|e| fail(Exit::Failed, format!("cannot encode timeseries.json: {e}")))?;
        std::fs::write(dir.join("timeseries.json"), body)
            .map_err(|e| fail(Exit::Failed, format!("cannot write timeseries.json: {e}")))?;
        charts::write_charts(dir, &series).map_err(|e| fail(Exit::Failed, e.to_string()))?;
        println!("  report: {}", dir.display());
    }
    drop(servers);
    observer.close().await;
    #[cfg(feature = "embedded-broker")]
    if let Some(b) = embedded {
        let _ = b.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&data);
    drop(lab);
    if summary.violations.is_empty() {
        println!("  verdict: PASS");
        Ok(ExitCode::SUCCESS)
    } else {
        for v in &summary.violations {
            println!("  VIOLATION: {v}");
        }
        println!("  verdict: FAIL");
        Ok(ExitCode::from(Exit::No))
    }
}

fn rumqttc_qos() -> mqpaxos_node::rumqttc::QoS {
    mqpaxos_node::rumqttc::QoS::AtLeastOnce
}

/// A bar over the fault phase on stderr (indicatif draws nothing when stderr is not a
/// terminal, so logs and tests stay clean); its position is elapsed milliseconds.
fn progress_bar(total: Duration) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total.as_millis() as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template("  {bar:20.cyan/blue} {wide_msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

fn progress(
    bar: &indicatif::ProgressBar,
    start: Instant,
    history: &Mutex<Vec<Event>>,
    faults: &[FaultRecord],
) {
    let ops = history
        .lock()
        .map(|h| h.iter().filter(|e| e.ty == EventType::Ok).count())
        .unwrap_or(0);
    let split = match faults.last().map(|f| &f.faults.partition) {
        Some(groups) if !groups.is_empty() => charts::format_groups(groups),
        _ => "none".to_string(),
    };
    let elapsed = start.elapsed();
    bar.set_position(elapsed.as_millis() as u64);
    bar.set_message(format!(
        "{:.1}/{:.0} s | {ops} ops ok | partition {split}",
        elapsed.as_secs_f64(),
        Duration::from_millis(bar.length().unwrap_or(0)).as_secs_f64()
    ));
}

/// Samples every server's cumulative message counters until `running` goes false.
async fn sample_messages(
    ports: Vec<std::net::SocketAddr>,
    every: Duration,
    start: Instant,
    series: Arc<Mutex<Timeseries>>,
    running: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while running.load(std::sync::atomic::Ordering::Relaxed) {
        tick.tick().await;
        let at_s = start.elapsed().as_secs_f64();
        let (mut inn, mut out) = (Vec::new(), Vec::new());
        for port in &ports {
            // A server that does not answer leaves a gap, not a zero, in its line.
            let counts = scrape(*port).await.map(|t| message_counts(&t));
            inn.push(counts.as_ref().map(|c| c.0.values().sum()));
            out.push(counts.as_ref().map(|c| c.1.values().sum()));
        }
        if let Ok(mut s) = series.lock() {
            s.record_sample(MessageSample {
                at_s,
                messages_in: inn,
                messages_out: out,
            });
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn client_loop(
    opts: ClientOptions,
    keys: usize,
    seed: u64,
    start: Instant,
    history: Arc<Mutex<Vec<Event>>>,
    series: Arc<Mutex<Timeseries>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let name = opts.broker.user.clone();
    let mut client = match Client::connect(opts.clone()).await {
        Ok(c) => c,
        Err(_) => return,
    };
    let now = || start.elapsed().as_nanos() as u64;
    let push = |e: Event| {
        if let Ok(mut h) = history.lock() {
            h.push(e);
        }
    };
    let mut n = 0u64;
    let mut last_seen: BTreeMap<String, Option<String>> = BTreeMap::new();
    // Bounded by the stop flag and a hard cap on operations.
    while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 1_000_000 {
        n += 1;
        let key = format!("k{}", rng.gen_range(0..keys));
        let value = format!("{name}-{n}");
        let roll = rng.gen_range(0..100);
        let t0 = Instant::now();
        let (kind, invoke) = if roll < 40 {
            (OpKind::Get, Event::invoke(now(), &name, OpKind::Get, &key))
        } else if roll < 80 {
            (
                OpKind::Put,
                Event::invoke(now(), &name, OpKind::Put, &key).with_value(Some(&value)),
            )
        } else {
            let expected = last_seen.get(&key).cloned().flatten();
            (
                OpKind::Cas,
                Event::invoke(now(), &name, OpKind::Cas, &key)
                    .with_value(Some(&value))
                    .with_expected(expected.as_deref()),
            )
        };
        let expected = invoke.expected.clone();
        push(invoke);
        let result: Result<Event, ClientError> = match kind {
            OpKind::Get => client.get(&key).await.map(|v| {
                last_seen.insert(key.clone(), v.clone());
                Event::ok(now(), &name, OpKind::Get, &key).with_value(v.as_deref())
            }),
            OpKind::Put => client.put(&key, &value).await.map(|()| {
                last_seen.insert(key.clone(), Some(value.clone()));
                Event::ok(now(), &name, OpKind::Put, &key).with_value(Some(&value))
            }),
            _ => client
                .cas(&key, expected.as_deref(), &value)
                .await
                .map(|swapped| {
                    if swapped {
                        last_seen.insert(key.clone(), Some(value.clone()));
                    }
                    Event::ok(now(), &name, OpKind::Cas, &key)
                        .with_value(Some(&value))
                        .with_expected(expected.as_deref())
                        .with_result(swapped)
                }),
        };
        if let Ok(mut s) = series.lock() {
            s.record_op(OpSample {
                at_s: t0.duration_since(start).as_secs_f64(),
                latency_ms: t0.elapsed().as_secs_f64() * 1000.0,
                kind,
                ok: result.is_ok(),
            });
        }
        match result {
            Ok(e) => push(e),
            Err(_) => {
                push(Event::info(now(), &name, kind, &key));
                // The abandoned command may still execute; a new session keeps this client's
                // history sequential.
                client.close().await;
                match Client::connect(opts.clone()).await {
                    Ok(c) => client = c,
                    Err(_) => return,
                }
            }
        }
    }
    client.close().await;
}

async fn wait_agreement(observed: &Observed, servers: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let agree = observed
            .lock()
            .map(|o| {
                let states: Vec<(u64, String)> = o
                    .values()
                    .filter(|(on, _)| *on)
                    .filter_map(|(_, s)| s.as_ref().map(|s| (s.commit, s.digest.clone())))
                    .collect();
                states.len() == servers as usize && states.windows(2).all(|w| w[0] == w[1])
            })
            .unwrap_or(false);
        if agree {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// One server's `/metrics` text.
async fn scrape(addr: std::net::SocketAddr) -> Option<String> {
    crate::metrics::fetch_metrics(&addr.to_string()).await
}

/// Sums `mqpaxos_messages_total` by direction and message type.
fn message_counts(text: &str) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
    let (mut inn, mut out) = (BTreeMap::new(), BTreeMap::new());
    for line in text
        .lines()
        .filter(|l| l.starts_with("mqpaxos_messages_total{"))
    {
        let Some((labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(v) = value.parse::<f64>() else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(&format!("{name}=\""))
                .nth(1)
                .and_then(|r| r.split('"').next())
                .map(str::to_string)
        };
        let (Some(dir), Some(kind)) = (label("direction"), label("kind")) else {
            continue;
        };
        let m = if dir == "in" { &mut inn } else { &mut out };
        *m.entry(kind).or_insert(0) += v as u64;
    }
    (inn, out)
}
