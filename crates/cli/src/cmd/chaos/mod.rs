//! `mqpaxos chaos`: the reference experiment on the real system, with a verdict.
//!
//! It starts a broker (the built-in one unless `--broker` names another), N real server
//! processes, and C clients issuing a mix of put/get/cas on a few keys so that operations
//! conflict. Faults go through the cluster's chaos topic: loss and delay from the start, and
//! `--partitions` random splits of the servers into groups of the given sizes. Then it heals
//! everything and checks: the clients' history is linearizable (a final read of every key
//! included, so a lost acknowledged write fails it), and all replicas agree. With `--out` it
//! writes `history.jsonl`, `summary.json`, `timeseries.json` and the charts (see `src/charts.rs`).

mod launch;
mod netns;
mod observer;
mod report;
mod sampler;
mod schedule;
mod verdict;
mod workload;

use crate::charts;
use crate::cmd::{fail, parse_duration, stop_signal, CmdResult, Exit, Failure};
use mqpaxos_node::chaos::Faults;
use mqpaxos_node::topics::Topics;
use rand::SeedableRng;
use std::path::PathBuf;
use std::time::Duration;

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

/// The run, until it ends or Ctrl-C or SIGTERM stops it. A stopped run is dropped where it
/// is, so its guards clean up as on an error: the servers are killed, then the namespaces and
/// the servers' data directories go (the default handler would end the process without
/// running them, leaving the data directories in `$TMPDIR`). With `--netns` the lab's own
/// handler (`netns::cleanup_on_signal`) acts as well, at once even while the run is busy in
/// a synchronous step.
pub async fn run(a: Args) -> CmdResult {
    validate(&a)?;
    tokio::select! {
        // First, so the handler is in place before the run starts anything.
        biased;
        _ = stop_signal() => Err(fail(
            Exit::Interrupted,
            "chaos: interrupted; the run's servers are stopped and their data directories removed",
        )),
        verdict = experiment(a) => verdict,
    }
}

/// The run, phase by phase: start, wait for a leader, clients and faults, heal, verdict,
/// report.
async fn experiment(a: Args) -> CmdResult {
    let seed = a.seed.unwrap_or_else(rand::random);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let cluster = format!("chaos{seed}");
    // Dropped in reverse order however the run ends: the observer, the servers (killed), the
    // broker, the namespaces, and last the servers' data directories.
    let data = launch::DataDir::new(seed);
    let lab = launch::lab(&a, seed, &data)?;
    let broker = launch::Broker::start(&a, lab.as_ref()).await?;
    let (mut servers, metrics) = launch::servers(&a, &cluster, lab.as_ref(), &broker, &data)?;
    let observer = observer::Observer::start(
        &broker.options(mqpaxos_node::acl::OPERATOR),
        &Topics::new(&cluster),
        seed,
    )
    .await?;
    observer.set_faults(Faults::default()).await?;
    // Wait for a leader before the clients start.
    observer.wait_for_leader(Duration::from_secs(30)).await?;

    let mut clients = workload::Clients::start(&a, &cluster, &broker, lab.as_ref(), &mut rng);
    // Every server's message counters, sampled until the replicas have agreed.
    let sampler = sampler::Sampler::start(
        metrics.clone(),
        charts::sample_interval(a.duration),
        clients.start,
        clients.series.clone(),
    );
    let mut schedule = schedule::Schedule::new(&a, lab.as_ref(), &observer, clients.start);
    let bar = schedule::progress_bar(a.duration);
    schedule.run(&mut rng, &clients.history, &bar).await?;
    // Heal, let the clients finish, and wait for the replicas to agree.
    schedule.heal().await?;
    let faults = schedule.log;
    bar.set_message("healed; waiting for the replicas to agree");
    clients.finish().await;
    let agree = verdict::wait_agreement(&observer, a.servers, Duration::from_secs(30)).await;
    bar.finish_and_clear();
    sampler.stop().await;
    // A client that panicked took the history with it: never judge an empty one.
    let events = clients
        .history
        .lock()
        .map(|h| h.clone())
        .map_err(|_| fail(Exit::Failed, "a client failed: the history is incomplete"))?;
    let reader = verdict::reader_options(&broker, &cluster);
    let verdict = verdict::judge(agree, &observer, events, reader, a.keys, clients.start).await;

    let series = clients.series.lock().map(|s| s.clone()).map_err(|_| {
        fail(
            Exit::Failed,
            "a client failed: the time series is incomplete",
        )
    })?;
    let report = report::Report::build(
        &a,
        seed,
        observer.leader_changes(),
        faults,
        verdict,
        &metrics,
        series,
    )
    .await;
    report.print(&a, seed, lab.as_ref());
    if let Some(dir) = &a.out {
        report.write(dir)?;
    }
    servers.kill_all().await;
    observer.close().await;
    broker.shutdown().await;
    drop(lab);
    drop(data);
    Ok(report.verdict())
}

/// The combinations of flags a run cannot have.
fn validate(a: &Args) -> Result<(), Failure> {
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
    Ok(())
}
