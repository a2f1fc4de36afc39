//! One module per subcommand, each a thin layer over the library crates.

pub mod acl;
pub mod bench;
#[cfg(feature = "embedded-broker")]
pub mod broker;
pub mod chaos;
#[cfg(feature = "embedded-broker")]
pub mod cluster;
#[cfg(feature = "embedded-broker")]
pub mod failover;
pub mod health;
pub mod kv;
pub mod server;
pub mod snapshot;
pub mod status;

use std::process::ExitCode;

/// A failure to report: one line, and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub code: Exit,
}

/// Every exit code the CLI uses. Scripts match on them, so they never change meaning;
/// README.md's table of exit codes lists exactly these (a test compares the two).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    /// A negative answer: the key is missing, the cas did not swap, the chaos verdict failed.
    No = 1,
    /// Bad usage or input, or a command the servers refused: retrying cannot help.
    Usage = 2,
    /// The broker or the cluster unreachable in time, or the leader busy: worth a retry.
    Unavailable = 3,
    /// Anything else.
    Failed = 4,
    /// Stopped by Ctrl-C or SIGTERM after cleaning up (128 + SIGINT, as shells report it).
    Interrupted = 130,
}

impl Exit {
    pub const ALL: [Exit; 6] = [
        Exit::Ok,
        Exit::No,
        Exit::Usage,
        Exit::Unavailable,
        Exit::Failed,
        Exit::Interrupted,
    ];

    pub fn code(self) -> u8 {
        self as u8
    }

    /// The first words of its row in README.md's table.
    pub fn summary(self) -> &'static str {
        match self {
            Exit::Ok => "ok",
            Exit::No => "a negative answer",
            Exit::Usage => "bad usage or input",
            Exit::Unavailable => "broker or cluster unreachable in time",
            Exit::Failed => "anything else",
            Exit::Interrupted => "interrupted",
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e.code())
    }
}

pub fn fail(code: Exit, message: impl Into<String>) -> Failure {
    Failure {
        message: message.into(),
        code,
    }
}

pub type CmdResult = Result<ExitCode, Failure>;

/// Options every command that connects to the broker shares.
#[derive(clap::Args, Debug, Clone)]
pub struct ConnArgs {
    /// The broker: mqtt://host:port or mqtts://host:port.
    #[arg(long, env = "MQPAXOS_BROKER", default_value = "mqtt://127.0.0.1:1883")]
    pub broker: String,
    /// The cluster's name: its topics live under mqpaxos/<cluster>/.
    #[arg(long, env = "MQPAXOS_CLUSTER", default_value = "default")]
    pub cluster: String,
    /// File holding the broker password (or set MQPAXOS_PASSWORD; never a flag).
    #[arg(long, env = "MQPAXOS_PASSWORD_FILE")]
    pub password_file: Option<std::path::PathBuf>,
    /// PEM file of CAs to trust for mqtts:// (default: the system's).
    #[arg(long, env = "MQPAXOS_CA_FILE")]
    pub ca_file: Option<std::path::PathBuf>,
}

impl ConnArgs {
    pub fn broker_options(&self, user: &str) -> Result<mqpaxos_node::BrokerOptions, Failure> {
        if let Some(ca) = &self.ca_file {
            if mqpaxos_node::transport::parse_url(&self.broker).is_ok_and(|a| !a.tls) {
                // Said, not refused: the same settings file may serve a TLS and a plain
                // broker, but a silently ignored CA hides an unencrypted connection.
                eprintln!(
                    "mqpaxos: warning: --ca-file {} is ignored: {} is not TLS (use mqtts:// to encrypt)",
                    ca.display(),
                    self.broker
                );
            }
        }
        Ok(mqpaxos_node::BrokerOptions {
            url: self.broker.clone(),
            user: user.to_string(),
            password: password(self.password_file.as_deref())?,
            ca_file: self.ca_file.clone(),
            keep_alive: std::time::Duration::from_secs(5),
        })
    }
}

/// The broker password: from the file if given, else from `MQPAXOS_PASSWORD`.
pub fn password(file: Option<&std::path::Path>) -> Result<Option<String>, Failure> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            fail(
                Exit::Usage,
                format!("cannot read password file {}: {e}", path.display()),
            )
        })?;
        let line = text.lines().next().unwrap_or("").trim_end().to_string();
        return Ok(Some(line));
    }
    Ok(std::env::var("MQPAXOS_PASSWORD").ok())
}

/// Why a duration was refused. clap prints it after the flag and the value, so each names
/// the value and says what would be accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("{0:?} is not a duration (try 500ms, 10s or 2m)")]
    NotANumber(String),
    #[error("{input:?}: unknown unit {unit:?} (use ms, s or m)")]
    UnknownUnit { input: String, unit: String },
    /// Zero, negative, or above a day: no setting of the CLI means that.
    #[error("{0:?} is out of range (above 0, at most 24 hours)")]
    OutOfRange(String),
}

/// Parses a duration like `500ms`, `10s`, `2m` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, DurationError> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| s.split_at(i));
    let n: f64 = num
        .parse()
        .map_err(|_| DurationError::NotANumber(s.to_string()))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => {
            return Err(DurationError::UnknownUnit {
                input: s.to_string(),
                unit: unit.to_string(),
            })
        }
    };
    if !secs.is_finite() || secs <= 0.0 || secs > 86_400.0 {
        return Err(DurationError::OutOfRange(s.to_string()));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
pub async fn stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Writes `bytes` to `path` readable by its owner only (the whole file replaced at once):
/// `broker --add-user` and a local cluster's credentials.
#[cfg(feature = "embedded-broker")]
pub fn write_private(path: &std::path::Path, bytes: &[u8]) -> Result<(), Failure> {
    let bad =
        |e: std::io::Error| fail(Exit::Usage, format!("cannot write {}: {e}", path.display()));
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp).map_err(bad)?;
    std::io::Write::write_all(&mut f, bytes).map_err(bad)?;
    f.sync_all().map_err(bad)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// README.md's table of exit codes has one row per code the CLI uses, in order, each
    /// beginning with the code's summary, and no other rows.
    #[test]
    fn the_readme_lists_every_exit_code() {
        let readme = include_str!("../../../../README.md");
        let table = readme
            .split("Exit codes")
            .nth(1)
            .expect("README.md has a section on exit codes");
        let rows: Vec<(u8, &str)> = table
            .lines()
            .skip_while(|l| !l.starts_with("| code |"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .filter_map(|l| {
                let mut cells = l.split('|').skip(1);
                let code = cells.next()?.trim().parse().ok()?;
                Some((code, cells.next()?.trim()))
            })
            .collect();
        assert_eq!(rows.len(), Exit::ALL.len(), "{rows:?}");
        for (exit, (code, text)) in Exit::ALL.iter().zip(&rows) {
            assert_eq!(exit.code(), *code);
            assert!(text.starts_with(exit.summary()), "{exit:?}: {text}");
        }
    }
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert!(matches!(
            parse_duration("fast"),
            Err(DurationError::NotANumber(_))
        ));
        assert!(matches!(
            parse_duration("0s"),
            Err(DurationError::OutOfRange(_))
        ));
        assert!(matches!(
            parse_duration("3h"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert_eq!(
            parse_duration("3h").map_err(|e| e.to_string()),
            Err(r#""3h": unknown unit "h" (use ms, s or m)"#.to_string())
        );
    }
}
