//! `mqpaxos bench`: a closed-loop load generator against a running cluster. For each
//! client count it runs C concurrent clients (each its own connection and session) for a
//! warm-up and then a measured period, and reports throughput and latency percentiles from an
//! HDR histogram.

use super::kv::{client_failure, ClientArgs};
use super::{fail, parse_duration, CmdResult};
use hdrhistogram::Histogram;
use mqpaxos_node::{Client, ClientOptions};
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Concurrent clients; a comma-separated list runs one step per value.
    #[arg(long, default_value = "1,16,64", value_delimiter = ',')]
    pub clients: Vec<usize>,
    /// Measured time per step.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Unmeasured time before each step.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// How many distinct keys the load touches.
    #[arg(long, default_value_t = 1000)]
    pub keys: usize,
    /// Size of each value in bytes.
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
    /// Percent of operations that are gets; the rest are puts.
    #[arg(long, default_value_t = 0)]
    pub get_percent: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize, Debug)]
pub struct Step {
    pub clients: usize,
    pub ops: u64,
    pub errors: u64,
    pub ops_per_sec: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

pub async fn run(a: Args) -> CmdResult {
    if a.clients.is_empty() || a.clients.iter().any(|c| *c == 0 || *c > 4096) {
        return Err(fail(2, "--clients takes 1 to 4096 per step"));
    }
    if a.get_percent > 100 || a.keys == 0 {
        return Err(fail(2, "--get-percent is 0..=100 and --keys at least 1"));
    }
    let mut steps = Vec::new();
    for &c in &a.clients {
        let step = run_step(&a, c).await?;
        if !a.json {
            eprintln!(
                "clients {:>4}: {:>9.0} ops/s  p50 {:>7.2} ms  p99 {:>7.2} ms  ({} errors)",
                step.clients, step.ops_per_sec, step.p50_ms, step.p99_ms, step.errors
            );
        }
        steps.push(step);
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&steps).unwrap_or_default()
        );
    } else {
        println!("| clients | ops/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | errors |");
        println!("|---|---|---|---|---|---|---|---|");
        for s in &steps {
            println!(
                "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
                s.clients,
                s.ops_per_sec,
                s.p50_ms,
                s.p90_ms,
                s.p99_ms,
                s.p999_ms,
                s.max_ms,
                s.errors
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_step(a: &Args, clients: usize) -> Result<Step, super::Failure> {
    let mut conns = Vec::with_capacity(clients);
    for _ in 0..clients {
        let mut opts = ClientOptions::new(&a.client.conn.broker, &a.client.user);
        opts.broker = a.client.conn.broker_options(&a.client.user)?;
        opts.cluster = a.client.conn.cluster.clone();
        opts.timeout = a.client.timeout;
        conns.push(Client::connect(opts).await.map_err(client_failure)?);
    }
    let value: Arc<str> = "x".repeat(a.value_size).into();
    let started = Instant::now();
    let measure_from = started + a.warmup;
    let end = measure_from + a.duration;
    let mut tasks = Vec::new();
    for (i, client) in conns.into_iter().enumerate() {
        let value = value.clone();
        let keys = a.keys;
        let get_percent = a.get_percent;
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(i as u64);
            let mut hist = Histogram::<u64>::new(3).expect("3 significant figures is valid");
            let mut errors = 0u64;
            while Instant::now() < end {
                let key = format!("bench-{}", rng.gen_range(0..keys));
                let t = Instant::now();
                let r = if rng.gen_range(0..100) < get_percent {
                    client.get(&key).await.map(|_| ())
                } else {
                    client.put(&key, &value).await
                };
                if t >= measure_from {
                    match r {
                        Ok(()) => {
                            let _ = hist.record(t.elapsed().as_micros() as u64);
                        }
                        Err(_) => errors += 1,
                    }
                }
            }
            client.close().await;
            (hist, errors)
        }));
    }
    let mut hist = Histogram::<u64>::new(3).expect("3 significant figures is valid");
    let mut errors = 0;
    for t in tasks {
        let (h, e) = t
            .await
            .map_err(|e| fail(4, format!("a bench client failed: {e}")))?;
        let _ = hist.add(&h);
        errors += e;
    }
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    Ok(Step {
        clients,
        ops: hist.len(),
        errors,
        ops_per_sec: hist.len() as f64 / a.duration.as_secs_f64(),
        p50_ms: ms(0.5),
        p90_ms: ms(0.9),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        max_ms: hist.max() as f64 / 1000.0,
    })
}
