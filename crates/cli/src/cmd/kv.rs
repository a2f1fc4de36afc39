//! `mqpaxos put|get|append|delete|cas`: thin wrappers over the client library.

use super::{fail, parse_duration, CmdResult, ConnArgs, Failure};
use mqpaxos_node::{Client, ClientError, ClientOptions, TransportError};
use std::path::{Path, PathBuf};
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
    /// The value (or give --file).
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    pub value: Option<String>,
    /// Read the value from this file instead (`-`: standard input), byte for byte: a
    /// trailing newline is part of the value. Values over ~128 KiB cannot be arguments.
    #[arg(long, env = "MQPAXOS_FILE", value_name = "F")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub client: ClientArgs,
}

impl PutArgs {
    fn value(&self) -> Result<String, Failure> {
        match (&self.value, &self.file) {
            (Some(v), _) => Ok(v.clone()),
            (None, Some(f)) => read_value(f),
            (None, None) => Err(fail(2, "a value or --file is required")),
        }
    }
}

/// `cas KEY EXPECTED NEW`, `cas KEY --absent NEW`, and either with `--file F` for NEW.
#[derive(clap::Args, Debug)]
pub struct CasArgs {
    pub key: String,
    /// EXPECTED then NEW: EXPECTED is left out with --absent, NEW with --file.
    #[arg(value_name = "EXPECTED NEW", num_args = 0..=2)]
    pub values: Vec<String>,
    /// Swap only if KEY is absent (then there is no EXPECTED argument).
    #[arg(long, env = "MQPAXOS_ABSENT")]
    pub absent: bool,
    /// Read NEW from this file (`-`: standard input), byte for byte.
    #[arg(long, env = "MQPAXOS_FILE", value_name = "F")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub client: ClientArgs,
}

impl CasArgs {
    /// (expected, new) from the arguments, or what is wrong with them.
    fn operands(&self) -> Result<(Option<String>, String), Failure> {
        let want = 2 - usize::from(self.absent) - usize::from(self.file.is_some());
        if self.values.len() != want {
            let usage = match (self.absent, self.file.is_some()) {
                (false, false) => "cas KEY EXPECTED NEW",
                (true, false) => "cas KEY --absent NEW",
                (false, true) => "cas KEY EXPECTED --file F",
                (true, true) => "cas KEY --absent --file F",
            };
            return Err(fail(
                2,
                format!(
                    "cas takes {want} value argument(s) here, got {}: use {usage}",
                    self.values.len()
                ),
            ));
        }
        let mut values = self.values.iter().cloned();
        let expected = if self.absent { None } else { values.next() };
        let new = match &self.file {
            Some(f) => read_value(f)?,
            None => values.next().unwrap_or_default(),
        };
        Ok((expected, new))
    }
}

/// A value from a file, or from standard input for `-`. Values are text: anything else is
/// refused rather than mangled.
fn read_value(path: &Path) -> Result<String, Failure> {
    use std::io::Read;
    let mut bytes = Vec::new();
    // One byte past the limit is enough to know it is too large, without reading a huge
    // file or an endless pipe into memory.
    let limit = mqpaxos_node::client::MAX_VALUE as u64 + 1;
    let (name, read) = if path.as_os_str() == "-" {
        let r = std::io::stdin().lock().take(limit).read_to_end(&mut bytes);
        ("standard input".to_string(), r)
    } else {
        let r = std::fs::File::open(path).and_then(|f| f.take(limit).read_to_end(&mut bytes));
        (path.display().to_string(), r)
    };
    read.map_err(|e| fail(2, format!("cannot read the value from {name}: {e}")))?;
    if bytes.len() as u64 >= limit {
        return Err(fail(
            2,
            format!(
                "the value in {name} is over {} bytes, the most a value may hold",
                mqpaxos_node::client::MAX_VALUE
            ),
        ));
    }
    String::from_utf8(bytes)
        .map_err(|e| fail(2, format!("the value in {name} is not UTF-8 text: {e}")))
}

pub fn client_failure(e: ClientError) -> Failure {
    let code = match &e {
        ClientError::Timeout(_)
        | ClientError::Transport(TransportError::Unreachable { .. })
        | ClientError::Transport(TransportError::NotListening { .. })
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

pub async fn connect(a: &ClientArgs) -> Result<Client, Failure> {
    let mut opts = ClientOptions::new(&a.conn.broker, &a.user);
    opts.broker = a.conn.broker_options(&a.user)?;
    opts.cluster = a.conn.cluster.clone();
    opts.timeout = a.timeout;
    Client::connect(opts).await.map_err(client_failure)
}

pub async fn put(a: PutArgs) -> CmdResult {
    let value = a.value()?;
    let c = connect(&a.client).await?;
    let r = c.put(&a.key, &value).await;
    c.close().await;
    r.map_err(client_failure)?;
    Ok(ExitCode::SUCCESS)
}

pub async fn append(a: PutArgs) -> CmdResult {
    let value = a.value()?;
    let c = connect(&a.client).await?;
    let r = c.append(&a.key, &value).await;
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
    let (expected, new) = a.operands()?;
    let c = connect(&a.client).await?;
    let r = c.cas(&a.key, expected.as_deref(), &new).await;
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
