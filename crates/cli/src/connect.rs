//! What the commands that run key/value operations share: the client flags, connecting, and
//! the exit code each client error maps to (kv, health, snapshot and status use them; a
//! command never reaches into another's module).

use crate::cmd::{fail, parse_duration, ConnArgs, Exit, Failure};
use mqpaxos_client::{Client, ClientError, ClientOptions, TransportError};
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

pub fn client_failure(e: ClientError) -> Failure {
    let code = match &e {
        ClientError::Timeout(_)
        | ClientError::Transport(TransportError::Unreachable { .. })
        | ClientError::Transport(TransportError::NotListening { .. })
        | ClientError::Transport(TransportError::Closed) => Exit::Unavailable,
        ClientError::Invalid(_) | ClientError::Transport(TransportError::BadUrl { .. }) => {
            Exit::Usage
        }
        ClientError::Transport(TransportError::CaFile { .. }) => Exit::Usage,
        // Busy is the cluster's state, not the input's: like unavailable, worth a retry.
        ClientError::Rejected {
            code: mqpaxos_core::ErrorCode::Busy,
            ..
        } => Exit::Unavailable,
        ClientError::Rejected { .. } => Exit::Usage,
        _ => Exit::Failed,
    };
    fail(code, e.to_string())
}

pub async fn connect(a: &ClientArgs) -> Result<Client, Failure> {
    let mut opts = ClientOptions::new(&a.conn.broker, &a.user);
    opts.broker = a.conn.broker_options(&a.user)?;
    opts.cluster = a.conn.cluster.clone();
    opts.timeout = a.timeout;
    Client::connect(opts).await.map_err(client_failure)
}
