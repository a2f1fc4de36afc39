//! `mqpaxos cluster up`: the one-command local cluster: the built-in broker plus N server
//! processes, stopped together on Ctrl-C.

use super::{fail, stop_signal, CmdResult};
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

pub async fn run(a: Args) -> CmdResult {
    let Action::Up(a) = a.action;
    if a.servers == 0 || a.servers > mqpaxos_core::Config::MAX_SERVERS {
        return Err(fail(
            2,
            format!(
                "--servers must be 1 to {}",
                mqpaxos_core::Config::MAX_SERVERS
            ),
        ));
    }
    let broker = Broker::start(BrokerConfig {
        listen: a.listen,
        ..BrokerConfig::default()
    })
    .await
    .map_err(|e| fail(2, e.to_string()))?;
    let url = format!("mqtt://{}", broker.local_addr());
    let exe = std::env::current_exe()
        .map_err(|e| fail(4, format!("cannot find this executable: {e}")))?;
    let mut children: Vec<(u32, Child)> = Vec::new();
    for id in 1..=a.servers {
        let mut cmd = Command::new(&exe);
        cmd.arg("server")
            .args(["--id", &id.to_string(), "--servers", &a.servers.to_string()])
            .args(["--broker", &url, "--cluster", &a.cluster])
            .arg("--data-dir")
            .arg(a.data_dir.join(&a.cluster).join(format!("server{id}")))
            .env_remove("MQPAXOS_CONFIG")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if a.metrics_port != 0 {
            let port = a.metrics_port.saturating_add(id as u16 - 1);
            cmd.args(["--metrics", &format!("127.0.0.1:{port}")]);
        }
        match cmd.spawn() {
            Ok(child) => children.push((id, child)),
            Err(e) => {
                stop_all(&mut children).await;
                let _ = broker.shutdown().await;
                return Err(fail(4, format!("cannot start server {id}: {e}")));
            }
        }
    }
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
    stop_all(&mut children).await;
    broker
        .shutdown()
        .await
        .map_err(|e| fail(4, format!("broker shutdown: {e}")))?;
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
