//! `mqpaxos cluster up`: the one-command local cluster: the built-in broker plus N server
//! processes, stopped together on Ctrl-C. The cluster itself is
//! [`LocalCluster`](crate::local_cluster::LocalCluster), which `bench` and `failover` start
//! exactly as `cluster up` does; this file is the command around it.

use super::{stop_signal, CmdResult};
use crate::local_cluster::{ClusterSpec, LocalCluster};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
pub enum Action {
    /// Start the broker and the servers; Ctrl-C stops them all.
    Up(UpArgs),
}

#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// How many servers.
    #[arg(long, env = "MQPAXOS_SERVERS", default_value_t = 3)]
    pub servers: u32,
    /// Where the built-in broker listens.
    #[arg(long, env = "MQPAXOS_LISTEN", default_value = "127.0.0.1:1883")]
    pub listen: SocketAddr,
    #[arg(long, env = "MQPAXOS_CLUSTER", default_value = "default")]
    pub cluster: String,
    /// Parent directory of the servers' data directories.
    #[arg(long, env = "MQPAXOS_DATA_DIR", default_value = "mqpaxos-data")]
    pub data_dir: PathBuf,
    /// Serve server i's metrics on this port + i - 1 (0: no metrics).
    #[arg(long, env = "MQPAXOS_METRICS_PORT", default_value_t = 0)]
    pub metrics_port: u16,
}

pub async fn run(action: Action) -> CmdResult {
    let Action::Up(a) = action;
    let metrics = (1..=a.servers)
        .map(|id| {
            (a.metrics_port != 0).then(|| {
                let port = a.metrics_port.saturating_add(id.saturating_sub(1) as u16);
                SocketAddr::from(([127, 0, 0, 1], port))
            })
        })
        .collect();
    let spec = ClusterSpec {
        servers: a.servers,
        listen: a.listen,
        cluster: a.cluster.clone(),
        data_dir: a.data_dir.clone(),
        metrics,
        sync: "always".to_string(),
        quiet: false,
        server_args: Vec::new(),
    };
    let cluster = LocalCluster::start(&spec).await?;
    let url = cluster.url.clone();
    let mut flags = String::new();
    if url != "mqtt://127.0.0.1:1883" {
        flags.push_str(&format!(" --broker {url}"));
    }
    if a.cluster != "default" {
        flags.push_str(&format!(" --cluster {}", a.cluster));
    }
    if let Some(dir) = &cluster.credentials {
        flags.push_str(&format!(
            " --user client1 --password-file {}",
            dir.join("client1.password").display()
        ));
        eprintln!(
            "mqpaxos: {} is not loopback, so the broker requires passwords: one per server, \
             client1 and operator, in {} (another client: write its password to \
             NAME.password there and restart)",
            a.listen,
            dir.display()
        );
    }
    eprintln!(
        "mqpaxos: local cluster {:?} is up: broker {url}, {} servers, data in {}\n\
         try, in another terminal:\n  mqpaxos put hello world{flags}\n  mqpaxos get hello{flags}\n  mqpaxos status{flags}\n\
         Ctrl-C stops everything.",
        a.cluster,
        a.servers,
        a.data_dir.display()
    );
    stop_signal().await;
    eprintln!("mqpaxos: stopping");
    cluster.stop().await?;
    Ok(ExitCode::SUCCESS)
}
