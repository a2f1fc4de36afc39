//! `mqpaxos cluster up`: the one-command local cluster: the built-in broker plus N server
//! processes, stopped together on Ctrl-C. [`LocalCluster`] is the same thing as a library
//! piece, so `mqpaxos bench` can start its own cluster exactly as `cluster up` does.

use super::{fail, stop_signal, CmdResult, Failure};
use mqpaxos_broker::{Broker, BrokerConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::Duration;
use tokio::process::{Child, Command};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
}

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

/// What a local cluster is made of.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    pub servers: u32,
    pub listen: SocketAddr,
    pub cluster: String,
    /// Parent of the data directories: server i keeps its state in `<data_dir>/<cluster>/server<i>`.
    pub data_dir: PathBuf,
    /// Server i serves its metrics on this address, if given.
    pub metrics: Vec<Option<SocketAddr>>,
    /// fsync policy passed to every server (`always` or `never`).
    pub sync: String,
    /// Send the servers' stderr to /dev/null (the bench's progress bar owns the terminal).
    pub quiet: bool,
    /// More flags for every `mqpaxos server` (e.g. `--reads=log`), for comparisons.
    pub server_args: Vec<String>,
}

/// The built-in broker (in this process) and N `mqpaxos server` child processes.
pub struct LocalCluster {
    broker: Broker,
    children: Vec<(u32, Child)>,
    spec: ClusterSpec,
    exe: PathBuf,
    /// `mqtt://host:port` of the broker.
    pub url: String,
}

impl LocalCluster {
    pub async fn start(spec: &ClusterSpec) -> Result<LocalCluster, Failure> {
        if spec.servers == 0 || spec.servers > mqpaxos_core::Config::MAX_SERVERS {
            return Err(fail(
                2,
                format!(
                    "--servers must be 1 to {}",
                    mqpaxos_core::Config::MAX_SERVERS
                ),
            ));
        }
        let broker = Broker::start(BrokerConfig {
            listen: spec.listen,
            ..BrokerConfig::default()
        })
        .await
        .map_err(|e| fail(2, e.to_string()))?;
        let url = format!("mqtt://{}", broker.local_addr());
        let exe = match std::env::current_exe() {
            Ok(exe) => exe,
            Err(e) => {
                let _ = broker.shutdown().await;
                return Err(fail(4, format!("cannot find this executable: {e}")));
            }
        };
        let mut cluster = LocalCluster {
            broker,
            children: Vec::new(),
            spec: spec.clone(),
            exe,
            url,
        };
        for id in 1..=spec.servers {
            if let Err(e) = cluster.spawn(id) {
                let _ = cluster.stop().await;
                return Err(e);
            }
        }
        Ok(cluster)
    }

    /// Starts server `id` (again) from its data directory.
    fn spawn(&mut self, id: u32) -> Result<(), Failure> {
        let spec = &self.spec;
        let mut cmd = Command::new(&self.exe);
        cmd.arg("server")
            .args([
                "--id",
                &id.to_string(),
                "--servers",
                &spec.servers.to_string(),
            ])
            .args(["--broker", &self.url, "--cluster", &spec.cluster])
            .args(["--sync", &spec.sync])
            .arg("--data-dir")
            .arg(
                spec.data_dir
                    .join(&spec.cluster)
                    .join(format!("server{id}")),
            )
            .env_remove("MQPAXOS_CONFIG")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if spec.quiet {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
        if let Some(Some(addr)) = spec.metrics.get(id as usize - 1) {
            cmd.args(["--metrics", &addr.to_string()]);
        }
        cmd.args(&spec.server_args);
        let child = cmd
            .spawn()
            .map_err(|e| fail(4, format!("cannot start server {id}: {e}")))?;
        self.children.retain(|(i, _)| *i != id);
        self.children.push((id, child));
        self.children.sort_by_key(|(i, _)| *i);
        Ok(())
    }

    /// kill -9 of server `id`, as a crash would: no goodbye, nothing flushed.
    pub async fn kill(&mut self, id: u32) {
        if let Some((_, c)) = self.children.iter_mut().find(|(i, _)| *i == id) {
            let _ = c.kill().await;
        }
    }

    /// Starts a killed server `id` again from its data directory.
    pub fn restart(&mut self, id: u32) -> Result<(), Failure> {
        self.spawn(id)
    }

    /// The servers' process ids, in id order (a server that already exited has none).
    pub fn server_pids(&self) -> Vec<Option<u32>> {
        self.children.iter().map(|(_, c)| c.id()).collect()
    }

    /// Stops the servers (SIGTERM, then SIGKILL after a grace period) and the broker.
    pub async fn stop(mut self) -> Result<(), Failure> {
        stop_all(&mut self.children).await;
        self.broker
            .shutdown()
            .await
            .map_err(|e| fail(4, format!("broker shutdown: {e}")))
    }
}

pub async fn run(a: Args) -> CmdResult {
    let Action::Up(a) = a.action;
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

/// Asks each server to stop (SIGTERM, so it says goodbye on its presence topic), then kills
/// what is still running after a grace period.
async fn stop_all(children: &mut [(u32, Child)]) {
    for (_, c) in children.iter() {
        if let Some(pid) = c.id() {
            // SAFETY: kill(2) with a pid we spawned and still own; no memory is involved.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
    }
    for (id, c) in children.iter_mut() {
        match tokio::time::timeout(Duration::from_secs(5), c.wait()).await {
            Ok(_) => {}
            Err(_) => {
                eprintln!("mqpaxos: server {id} did not stop in time; killing it");
                let _ = c.kill().await;
            }
        }
    }
}
