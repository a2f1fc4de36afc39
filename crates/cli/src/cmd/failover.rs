//! `mqpaxos failover`: how long the cluster is without a leader when its leader dies.
//!
//! It starts its own local cluster (built-in broker, N servers with durable storage), keeps
//! one client writing sequentially, and `--kills` times: waits until one leader is settled,
//! kill -9s it, and measures the time from the kill to the first acknowledgement of a write
//! that was *sent after* the kill (so it was certainly committed by the next leader, not a
//! reply already on its way); then restarts the dead server from its data directory. It
//! reports every failover and their p50/p90/p99/max. A measurement, not a test: the numbers
//! depend on the machine.

use super::{fail, parse_duration, CmdResult, Failure};
use crate::cmd::Exit;
use crate::local_cluster::{data_dir_in, temp_data_dir, ClusterSpec, LocalCluster};
use crate::metrics::scrape_all;
use mqpaxos_node::{Client, ClientOptions};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Servers in the cluster.
    #[arg(long, env = "MQPAXOS_SERVERS", default_value_t = 3)]
    pub servers: u32,
    /// How many times the leader is killed.
    #[arg(long, env = "MQPAXOS_KILLS", default_value_t = 20)]
    pub kills: usize,
    /// Quiet time before each kill, once the cluster has a leader and every server is up.
    #[arg(long, env = "MQPAXOS_SETTLE", default_value = "1s", value_parser = parse_duration)]
    pub settle: Duration,
    /// The client resends an unanswered command after this long (its share of the failover).
    #[arg(long, env = "MQPAXOS_RESEND", default_value = "200ms", value_parser = parse_duration)]
    pub resend: Duration,
    /// Write the results here as JSON.
    #[arg(long, env = "MQPAXOS_JSON")]
    pub json: Option<PathBuf>,
    /// Parent of the servers' data directories (default: a new temporary directory), so
    /// that the failover syncs to the disk being measured rather than wherever the system's
    /// temporary directory lives. Removed afterwards either way.
    #[arg(long, env = "MQPAXOS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

/// What `--json` writes (and `bench --report` reads back for the performance document).
#[derive(Serialize, Deserialize, Debug)]
pub struct Report {
    pub servers: u32,
    pub kills: usize,
    pub client_resend_ms: f64,
    /// Each failover, in milliseconds, in the order of the kills.
    pub failover_ms: Vec<f64>,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// (sent, acknowledged) of every write the client finished.
type Acks = Arc<Mutex<Vec<(Instant, Instant)>>>;

pub async fn run(a: Args) -> CmdResult {
    if a.servers < 3 {
        return Err(fail(
            Exit::Usage,
            "--servers must be at least 3: a failover needs a majority left",
        ));
    }
    if a.kills == 0 {
        return Err(fail(Exit::Usage, "--kills must be at least 1"));
    }
    // A directory of its own even under --data-dir: all of it is removed afterwards.
    let data_dir = match &a.data_dir {
        Some(parent) => data_dir_in(parent, "failover"),
        None => temp_data_dir("failover"),
    };
    let spec = ClusterSpec::measured(
        a.servers,
        "failover".to_string(),
        data_dir.clone(),
        "always".to_string(),
        Vec::new(),
    )?;
    let mut cluster = LocalCluster::start(&spec).await?;
    let addrs = spec.metrics_addrs();
    let mut result = measure(&a, &mut cluster, &addrs).await;
    // The servers' logs go with the data directory: quote them with the error first.
    if let Err(e) = &mut result {
        e.message.push_str(&cluster.diagnosis());
    }
    let _ = cluster.stop().await;
    let _ = std::fs::remove_dir_all(&data_dir);
    let report = result?;
    println!(
        "mqpaxos failover: {} servers, {} kills of the leader (kill -9), client resend {} ms",
        report.servers, report.kills, report.client_resend_ms
    );
    let each: Vec<String> = report
        .failover_ms
        .iter()
        .map(|m| format!("{m:.0}"))
        .collect();
    println!("  each (ms): {}", each.join(" "));
    println!(
        "  kill -9 to the next committed write: p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        report.p50_ms, report.p90_ms, report.p99_ms, report.max_ms
    );
    if let Some(path) = &a.json {
        let body = serde_json::to_vec_pretty(&report)
            .map_err(|e| fail(Exit::Failed, format!("cannot encode the report: {e}")))?;
        std::fs::write(path, body).map_err(|e| {
            fail(
                Exit::Failed,
                format!("cannot write {}: {e}", path.display()),
            )
        })?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn measure(
    a: &Args,
    cluster: &mut LocalCluster,
    addrs: &[String],
) -> Result<Report, Failure> {
    let mut opts = ClientOptions::new(&cluster.url, "client");
    opts.cluster = "failover".to_string();
    opts.timeout = Duration::from_secs(30);
    opts.resend = a.resend;
    leader(addrs, Duration::from_secs(30)).await?;
    let client = Client::connect(opts)
        .await
        .map_err(|e| fail(Exit::Unavailable, format!("cannot connect: {e}")))?;
    let acks: Acks = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acks, stop) = (acks.clone(), stop.clone());
        tokio::spawn(async move {
            // Bounded: by the stop flag, and by a count far above what any run needs.
            for i in 0..10_000_000u64 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let sent = Instant::now();
                if client.put("failover", &i.to_string()).await.is_ok() {
                    if let Ok(mut v) = acks.lock() {
                        v.push((sent, Instant::now()));
                    }
                }
            }
            client.close().await;
        })
    };
    let mut failovers = Vec::new();
    let mut outcome = Ok(());
    for k in 1..=a.kills {
        let result = async {
            let id = leader(addrs, Duration::from_secs(30)).await?;
            tokio::time::sleep(a.settle).await;
            let killed_at = Instant::now();
            cluster.kill(id).await;
            let d = next_write_after(&acks, killed_at, Duration::from_secs(30))
                .await
                .map_err(|mut e| {
                    // Or the diagnosis below reads as if it had crashed.
                    e.message
                        .push_str(&format!(" (kill {k} was of server {id}, the leader)"));
                    e
                })?;
            eprintln!(
                "  kill {k}: server {id}, next write committed after {:.0} ms",
                d.as_secs_f64() * 1000.0
            );
            failovers.push(d);
            cluster.restart(id)?;
            Ok::<(), Failure>(())
        }
        .await;
        if let Err(e) = result {
            outcome = Err(e);
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = writer.await;
    outcome?;
    let mut ms: Vec<f64> = failovers.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    let each = ms.clone();
    ms.sort_by(f64::total_cmp);
    let q = |p: f64| ms[((ms.len() as f64 * p).ceil() as usize).clamp(1, ms.len()) - 1];
    Ok(Report {
        servers: a.servers,
        kills: a.kills,
        client_resend_ms: a.resend.as_secs_f64() * 1000.0,
        failover_ms: each,
        p50_ms: q(0.5),
        p90_ms: q(0.9),
        p99_ms: q(0.99),
        max_ms: q(1.0),
    })
}

/// Waits until every server answers its metrics, exactly one leads and every other follows
/// it (a restarted server takes part only after its start-up probation: killing the leader
/// before would measure a cluster with two servers missing); returns the leader's id.
async fn leader(addrs: &[String], limit: Duration) -> Result<u32, Failure> {
    let deadline = Instant::now() + limit;
    loop {
        let all = scrape_all(addrs).await;
        if all.iter().all(Option::is_some) {
            let leaders: Vec<u32> = all
                .iter()
                .enumerate()
                .filter(|(_, c)| c.is_some_and(|c| c.is_leader))
                .map(|(i, _)| i as u32 + 1)
                .collect();
            if let [one] = leaders[..] {
                if all.iter().all(|c| c.is_some_and(|c| c.leader == one)) {
                    return Ok(one);
                }
            }
        }
        if Instant::now() > deadline {
            return Err(fail(
                Exit::Failed,
                "no single leader with every server up within 30 s",
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How long after `after` the first write *sent* after it was acknowledged.
async fn next_write_after(
    acks: &Acks,
    after: Instant,
    limit: Duration,
) -> Result<Duration, Failure> {
    let deadline = after + limit;
    loop {
        let found = acks.lock().ok().and_then(|v| {
            v.iter()
                .rev()
                .take_while(|(sent, _)| *sent > after)
                .last()
                .map(|(_, acked)| *acked - after)
        });
        if let Some(d) = found {
            return Ok(d);
        }
        if Instant::now() > deadline {
            return Err(fail(
                Exit::Failed,
                "no write committed within 30 s of killing the leader",
            ));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
