//! `mqpaxos put|get|append|delete|cas`: thin wrappers over the client library.

use super::{fail, CmdResult, Failure};
use crate::cmd::Exit;
use crate::connect::{client_failure, connect, ClientArgs};
use mqpaxos_node::ClientOptions;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct KeyArgs {
    pub key: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(clap::Args, Debug)]
pub struct GetArgs {
    pub key: String,
    /// text: the value alone; json: the value with its revisions (`create_revision`,
    /// `mod_revision`, `version`) and the store's `revision`, as one JSON object.
    #[arg(long, short = 'o', env = "MQPAXOS_OUTPUT", default_value = "text", value_parser = ["text", "json"])]
    pub output: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `watch KEY [--prefix] [--from REV]`.
#[derive(clap::Args, Debug)]
pub struct WatchArgs {
    /// The key, or with --prefix the prefix of the keys to watch (may be empty with it).
    pub key: String,
    /// Watch every key starting with KEY.
    #[arg(long, env = "MQPAXOS_PREFIX")]
    pub prefix: bool,
    /// Start with the changes from this revision on (inclusive), from the servers' history;
    /// without it, from now.
    #[arg(long, env = "MQPAXOS_FROM")]
    pub from: Option<u64>,
    /// text: etcdctl's lines (PUT, key, value; DELETE, key); json: one event per line, as
    /// published on the watch topics (docs/api.md).
    #[arg(long, short = 'o', env = "MQPAXOS_OUTPUT", default_value = "text", value_parser = ["text", "json"])]
    pub output: String,
    /// Exit after this many changes.
    #[arg(long, env = "MQPAXOS_COUNT")]
    pub count: Option<u64>,
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
            (None, None) => Err(fail(Exit::Usage, "a value or --file is required")),
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
    #[arg(long, env = "MQPAXOS_ABSENT", conflicts_with = "revision")]
    pub absent: bool,
    /// Swap only if KEY's last change has this revision (its mod_revision, `get -o json`;
    /// 0: KEY is absent); then there is no EXPECTED argument.
    #[arg(long, env = "MQPAXOS_REVISION")]
    pub revision: Option<u64>,
    /// Read NEW from this file (`-`: standard input), byte for byte.
    #[arg(long, env = "MQPAXOS_FILE", value_name = "F")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub client: ClientArgs,
}

impl CasArgs {
    /// (expected, new) from the arguments, or what is wrong with them.
    fn operands(&self) -> Result<(Option<String>, String), Failure> {
        let no_expected = self.absent || self.revision.is_some();
        let want = 2 - usize::from(no_expected) - usize::from(self.file.is_some());
        if self.values.len() != want {
            let usage = match (self.absent, self.revision.is_some(), self.file.is_some()) {
                (false, false, false) => "cas KEY EXPECTED NEW",
                (true, _, false) => "cas KEY --absent NEW",
                (false, false, true) => "cas KEY EXPECTED --file F",
                (true, _, true) => "cas KEY --absent --file F",
                (false, true, false) => "cas KEY --revision REV NEW",
                (false, true, true) => "cas KEY --revision REV --file F",
            };
            return Err(fail(
                Exit::Usage,
                format!(
                    "cas takes {want} value argument(s) here, got {}: use {usage}",
                    self.values.len()
                ),
            ));
        }
        let mut values = self.values.iter().cloned();
        let expected = if no_expected { None } else { values.next() };
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
    read.map_err(|e| {
        fail(
            Exit::Usage,
            format!("cannot read the value from {name}: {e}"),
        )
    })?;
    if bytes.len() as u64 >= limit {
        return Err(fail(
            Exit::Usage,
            format!(
                "the value in {name} is over {} bytes, the most a value may hold",
                mqpaxos_node::client::MAX_VALUE
            ),
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        fail(
            Exit::Usage,
            format!("the value in {name} is not UTF-8 text: {e}"),
        )
    })
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

pub async fn get(a: GetArgs) -> CmdResult {
    let c = connect(&a.client).await?;
    let r = c.read(&a.key).await;
    c.close().await;
    let (revision, entry) = r.map_err(client_failure)?;
    match entry {
        Some(e) if a.output == "json" => {
            let v = serde_json::json!({
                "key": a.key,
                "value": e.value,
                "create_revision": e.create,
                "mod_revision": e.modified,
                "version": e.version,
                "revision": revision,
            });
            println!("{v}");
            Ok(ExitCode::SUCCESS)
        }
        Some(e) => {
            println!("{}", e.value);
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!("mqpaxos: key {:?} not found", a.key);
            Ok(ExitCode::from(Exit::No))
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
        Ok(ExitCode::from(Exit::No))
    }
}

pub async fn cas(a: CasArgs) -> CmdResult {
    let (expected, new) = a.operands()?;
    let c = connect(&a.client).await?;
    let r = match a.revision {
        Some(rev) => c.cas_revision(&a.key, rev, &new).await,
        None => c.cas(&a.key, expected.as_deref(), &new).await,
    };
    c.close().await;
    if r.map_err(client_failure)? {
        Ok(ExitCode::SUCCESS)
    } else {
        let what = match a.revision {
            Some(rev) => format!("its last change is not revision {rev}"),
            None => "it does not hold the expected value".to_string(),
        };
        eprintln!("mqpaxos: not swapped: {:?}: {what}", a.key);
        Ok(ExitCode::from(Exit::No))
    }
}

pub async fn watch(a: WatchArgs) -> CmdResult {
    use std::io::Write;
    if a.from == Some(0) {
        return Err(fail(Exit::Usage, "--from is a revision, from 1"));
    }
    if a.key.is_empty() && !a.prefix {
        return Err(fail(
            Exit::Usage,
            "the key is empty (an empty prefix, with --prefix, watches every key)",
        ));
    }
    let mut opts = ClientOptions::new(&a.client.conn.broker, &a.client.user);
    opts.broker = a.client.conn.broker_options(&a.client.user)?;
    opts.cluster = a.client.conn.cluster.clone();
    opts.timeout = a.client.timeout;
    let mut w = mqpaxos_node::watch::Watcher::start(opts, &a.key, a.prefix, a.from)
        .await
        .map_err(client_failure)?;
    let mut seen = 0;
    let stdout = std::io::stdout();
    let stop = super::stop_signal();
    tokio::pin!(stop);
    while !matches!(a.count, Some(n) if seen >= n) {
        let c = tokio::select! {
            c = w.next() => c,
            _ = &mut stop => break,
        };
        let c = match c {
            Ok(c) => c,
            Err(e) => {
                w.close().await;
                return Err(client_failure(e));
            }
        };
        let mut out = stdout.lock();
        let written = if a.output == "json" {
            writeln!(out, "{}", mqpaxos_node::json::event(&c))
        } else {
            match &c.kind {
                mqpaxos_core::ChangeKind::Put { value, .. } => {
                    writeln!(out, "PUT\n{}\n{value}", c.key)
                }
                mqpaxos_core::ChangeKind::Delete => writeln!(out, "DELETE\n{}", c.key),
            }
        };
        // A closed pipe (`| head`) ends the watch quietly.
        if written.and_then(|()| out.flush()).is_err() {
            break;
        }
        seen += 1;
    }
    w.close().await;
    Ok(ExitCode::SUCCESS)
}
