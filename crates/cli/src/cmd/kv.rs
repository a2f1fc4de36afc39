//! `mqpaxos put|get|append|delete|cas`: thin wrappers over the client library.

use super::{fail, parse_duration, CmdResult, ConnArgs, Failure};
use mqpaxos_node::{Client, ClientError, ClientOptions, TransportError};
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct ClientArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// The MQTT user name to connect as.
    #[arg(long, env = "MQPAXOS_USER", default_value = "client")]
    pub user: String,
    /// Give up after this long (e.g. 500ms, 10s).
    #[arg(long, env = "MQPAXOS_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(clap::Args, Debug)]
pub struct KeyArgs {
    pub key: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(clap::Args, Debug)]
pub struct PutArgs {
    pub key: String,
    pub value: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(clap::Args, Debug)]
pub struct CasArgs {
    pub key: String,
    /// The value KEY must have for the swap to happen.
    pub expected: String,
    pub new: String,
    /// Expect KEY to be absent instead of EXPECTED.
    #[arg(long, env = "MQPAXOS_ABSENT")]
    pub absent: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub fn client_failure(e: ClientError) -> Failure {
    let code = match &e {
        ClientError::Timeout(_)
        | ClientError::Transport(TransportError::Unreachable { .. })
        | ClientError::Transport(TransportError::Closed) => 3,
        ClientError::Invalid(_) | ClientError::Transport(TransportError::BadUrl { .. }) => 2,
        ClientError::Transport(TransportError::CaFile { .. }) => 2,
        // Busy is the cluster's state, not the input's: like unavailable, worth a retry.
        ClientError::Rejected {
            code: mqpaxos_core::ErrorCode::Busy,
            ..
        } => 3,
        ClientError::Rejected { .. } => 2,
        _ => 4,
    };
    fail(code, e.to_string())
}

async fn connect(a: &ClientArgs) -> Result<Client, Failure> {
    let mut opts = ClientOptions::new(&a.conn.broker, &a.user);
    opts.broker = a.conn.broker_options(&a.user)?;
    opts.cluster = a.conn.cluster.clone();
    opts.timeout = a.timeout;
    Client::connect(opts).await.map_err(client_failure)
}

pub async fn put(a: PutArgs) -> CmdResult {
    let c = connect(&a.client).await?;
    let r = c.put(&a.key, &a.value).await;
    c.close().await;
    r.map_err(client_failure)?;
    Ok(ExitCode::SUCCESS)
}

pub async fn append(a: PutArgs) -> CmdResult {
    let c = connect(&a.client).await?;
    let r = c.append(&a.key, &a.value).await;
    c.close().await;
    r.map_err(client_failure)?;
    Ok(ExitCode::SUCCESS)
}

pub async fn get(a: KeyArgs) -> CmdResult {
    let c = connect(&a.client).await?;
    let r = c.get(&a.key).await;
    c.close().await;
    match r.map_err(client_failure)? {
        Some(v) => {
            println!("{v}");
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!("mqpaxos: key {:?} not found", a.key);
            Ok(ExitCode::from(1))
        }
    }
}

pub async fn delete(a: KeyArgs) -> CmdResult {
    let c = connect(&a.client).await?;
    let r = c.delete(&a.key).await;
    c.close().await;
    if r.map_err(client_failure)? {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("mqpaxos: key {:?} not found", a.key);
        Ok(ExitCode::from(1))
    }
}

pub async fn cas(a: CasArgs) -> CmdResult {
    let c = connect(&a.client).await?;
    let expected = (!a.absent).then_some(a.expected.as_str());
    let r = c.cas(&a.key, expected, &a.new).await;
    c.close().await;
    if r.map_err(client_failure)? {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "mqpaxos: not swapped: {:?} does not hold the expected value",
            a.key
        );
        Ok(ExitCode::from(1))
    }
}
