//! `mqpaxos broker`: the built-in MQTT broker, for one-machine use.

use super::{fail, stop_signal, CmdResult};
use mqpaxos_broker::{Broker, BrokerConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "MQPAXOS_LISTEN", default_value = "127.0.0.1:1883")]
    pub listen: SocketAddr,
    /// Mosquitto-format password file (`mosquitto_passwd`); without it anyone may connect.
    #[arg(long, env = "MQPAXOS_BROKER_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
    /// Mosquitto-format ACL file; without it every topic is open to everyone.
    #[arg(long, env = "MQPAXOS_ACL_FILE")]
    pub acl_file: Option<PathBuf>,
}

pub async fn run(a: Args) -> CmdResult {
    let cfg = BrokerConfig {
        listen: a.listen,
        password_file: a.password_file,
        acl_file: a.acl_file,
        ..BrokerConfig::default()
    };
    let broker = Broker::start(cfg)
        .await
        .map_err(|e| fail(2, e.to_string()))?;
    eprintln!(
        "mqpaxos: broker listening on mqtt://{}",
        broker.local_addr()
    );
    stop_signal().await;
    broker
        .shutdown()
        .await
        .map_err(|e| fail(4, format!("broker shutdown: {e}")))?;
    Ok(ExitCode::SUCCESS)
}
