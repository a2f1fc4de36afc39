//! `mqpaxos health`: is the cluster serving? Like `etcdctl endpoint health`, it goes through
//! the cluster rather than asking a server about itself: it makes a linearizable read (a get,
//! which the leader answers only once a majority has confirmed that it still leads, or, with
//! `--reads log`, once the get is chosen in the log) and reports how long it took. Non-zero
//! exit when it fails in time.

use super::{fail, CmdResult};
use crate::connect::{client_failure, ClientArgs};
use mqpaxos_node::{Client, ClientOptions};
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The key to read (its value is not shown; any key proves the read path).
    #[arg(long, env = "MQPAXOS_KEY", default_value = "health")]
    pub key: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(a: Args) -> CmdResult {
    let c = &a.client;
    let mut opts = ClientOptions::new(&c.conn.broker, &c.user);
    opts.broker = c.conn.broker_options(&c.user)?;
    opts.cluster = c.conn.cluster.clone();
    opts.timeout = c.timeout;
    let unhealthy = |e: mqpaxos_node::ClientError| {
        let f = client_failure(e);
        fail(f.code, format!("unhealthy: {}", f.message))
    };
    let started = Instant::now();
    let client = Client::connect(opts).await.map_err(unhealthy)?;
    let connected = started.elapsed();
    let read_started = Instant::now();
    let r = client.get(&a.key).await;
    let read = read_started.elapsed();
    client.close().await;
    r.map_err(unhealthy)?;
    println!(
        "healthy: linearizable read in {:.1} ms (broker connection {:.1} ms) on {}",
        read.as_secs_f64() * 1000.0,
        connected.as_secs_f64() * 1000.0,
        c.conn.broker
    );
    Ok(ExitCode::SUCCESS)
}
