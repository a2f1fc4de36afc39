//! A local cluster: the built-in broker (in this process) plus N `mqpaxos server` processes
//! started through [`crate::launch`], as `cluster up`, `bench` and `failover` run it.
//!
//! On loopback the broker takes anyone on this machine, as a development tool should. On any
//! other address it never runs open: the first start makes a password for each server, for
//! `client1` and for the `operator`, under `<data-dir>/<cluster>/credentials/` (readable by
//! this user only), and the broker enforces them with the generated ACL.

use crate::cmd::{fail, write_private, Exit, Failure};
use crate::launch::{Output, ServerCommand, Servers};
use mqpaxos_broker::{Broker, BrokerConfig};
use std::net::SocketAddr;
use std::path::PathBuf;

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
    /// Keep the servers' output off the terminal (the measurement owns it): each server
    /// appends it to `<data_dir>/<cluster>/server<i>.log` instead, which
    /// [`LocalCluster::diagnosis`] quotes when the cluster does not come up.
    pub quiet: bool,
    /// More flags for every `mqpaxos server` (e.g. `--reads=log`), for comparisons.
    pub server_args: Vec<String>,
}

impl ClusterSpec {
    /// A cluster for a measurement (`bench`, `failover`): the broker on a free loopback port,
    /// each server's metrics on a free local port (the measurement reads them, see
    /// [`ClusterSpec::metrics_addrs`]), the servers' output silenced (the measurement owns
    /// the terminal).
    pub fn measured(
        servers: u32,
        cluster: String,
        data_dir: PathBuf,
        sync: String,
        server_args: Vec<String>,
    ) -> Result<ClusterSpec, Failure> {
        let metrics = (0..servers)
            .map(|_| crate::launch::free_local_addr().map(Some))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ClusterSpec {
            servers,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            cluster,
            data_dir,
            metrics,
            sync,
            quiet: true,
            server_args,
        })
    }

    /// The servers' metrics endpoints (host:port), in server order.
    pub fn metrics_addrs(&self) -> Vec<String> {
        self.metrics
            .iter()
            .flatten()
            .map(|m| m.to_string())
            .collect()
    }
}

/// A new directory name under the system's temporary directory for a measurement's own
/// cluster, `mqpaxos-<what>-<pid>-<random>`, so that runs side by side never share one. The
/// caller removes it.
pub fn temp_data_dir(what: &str) -> PathBuf {
    data_dir_in(&std::env::temp_dir(), what)
}

/// The same name under `parent` (a directory on the disk to be measured).
pub fn data_dir_in(parent: &std::path::Path, what: &str) -> PathBuf {
    parent.join(format!(
        "mqpaxos-{what}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ))
}

/// The line a quiet server's log gets before each start (then the server's id).
const START_MARK: &str = "--- mqpaxos: starting server ";

/// The last 64 KiB of a log, as text (a torn or foreign byte is replaced, not an error).
fn log_tail(path: &std::path::Path) -> Option<String> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    const MAX: u64 = 64 << 10;
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(MAX))).ok()?;
    let mut bytes = Vec::new();
    f.take(MAX).read_to_end(&mut bytes).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// The last `tail` lines a log got since its last [`START_MARK`] (all of its last `tail`
/// lines if it has none).
fn last_start(text: &str, tail: usize) -> Vec<&str> {
    let (text, skip) = match text.rfind(START_MARK) {
        Some(i) => (&text[i..], 1),
        None => (text, 0),
    };
    let lines: Vec<&str> = text.lines().skip(skip).collect();
    lines[lines.len().saturating_sub(tail)..].to_vec()
}

/// The built-in broker (in this process) and N `mqpaxos server` child processes.
pub struct LocalCluster {
    broker: Broker,
    servers: Servers,
    spec: ClusterSpec,
    /// `mqtt://host:port` of the broker.
    pub url: String,
    /// Off loopback: the directory of generated passwords (`<user>.password`).
    pub credentials: Option<PathBuf>,
}

/// The users a protected local cluster gets passwords for: its servers
/// (`<cluster>-server<i>`), client1 and the operator.
fn cluster_users(cluster: &str, servers: u32) -> Vec<String> {
    let mut users: Vec<String> = (1..=servers)
        .map(|i| mqpaxos_node::topics::server_user(cluster, i))
        .collect();
    users.push("client1".to_string());
    users.push(mqpaxos_node::acl::OPERATOR.to_string());
    users
}

/// Makes (or reuses) a password per user under `dir`, and writes the broker's password
/// file and ACL from them. Returns (password file, ACL file).
fn make_credentials(
    dir: &std::path::Path,
    spec: &ClusterSpec,
) -> Result<(PathBuf, PathBuf), Failure> {
    let bad = |what: &str, e: std::io::Error| {
        fail(
            Exit::Failed,
            format!("cannot {what} {}: {e}", dir.display()),
        )
    };
    std::fs::create_dir_all(dir).map_err(|e| bad("create", e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| bad("restrict", e))?;
    }
    let mut users = cluster_users(&spec.cluster, spec.servers);
    // Users added by hand: a `<name>.password` file dropped into the directory.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(user) = name.strip_suffix(".password") {
                if mqpaxos_node::topics::valid_level(user)
                    && !user.contains([':', ' ', '%'])
                    && !users.iter().any(|u| u == user)
                {
                    users.push(user.to_string());
                }
            }
        }
    }
    let mut passwd = String::new();
    for user in users {
        let file = dir.join(format!("{user}.password"));
        let password = match std::fs::read_to_string(&file) {
            Ok(p) if !p.trim().is_empty() => p.trim().to_string(),
            _ => {
                // 128 random bits from the OS-seeded CSPRNG, as hex: nothing to quote.
                let p: String = rand::random::<[u8; 16]>()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                write_private(&file, format!("{p}\n").as_bytes())?;
                p
            }
        };
        passwd.push_str(&format!(
            "{user}:{}\n",
            mqpaxos_broker::hash_password(&password)
        ));
    }
    let passwd_file = dir.join("passwd");
    write_private(&passwd_file, passwd.as_bytes())?;
    let acl_file = dir.join("acl.conf");
    let acl = mqpaxos_node::acl::mosquitto(
        std::slice::from_ref(&spec.cluster),
        spec.servers,
        // The client it prints the flags for also runs `mqpaxos status` and `mqpaxos watch`.
        &["client1".to_string()],
        &[mqpaxos_node::acl::WatchGrant {
            user: "client1".into(),
            prefix: String::new(),
        }],
    );
    write_private(&acl_file, acl.as_bytes())?;
    Ok((passwd_file, acl_file))
}

impl LocalCluster {
    pub async fn start(spec: &ClusterSpec) -> Result<LocalCluster, Failure> {
        if spec.servers == 0 || spec.servers > mqpaxos_core::Config::MAX_SERVERS {
            return Err(fail(
                Exit::Usage,
                format!(
                    "--servers must be 1 to {}",
                    mqpaxos_core::Config::MAX_SERVERS
                ),
            ));
        }
        let mut config = BrokerConfig {
            listen: spec.listen,
            ..BrokerConfig::default()
        };
        let credentials = if spec.listen.ip().is_loopback() {
            None
        } else {
            if !mqpaxos_node::acl::valid_cluster(&spec.cluster) {
                return Err(fail(
                    Exit::Usage,
                    format!(
                        "cluster name {:?} cannot go into an ACL: use letters, digits, '-', '_' and '.'",
                        spec.cluster
                    ),
                ));
            }
            let dir = spec.data_dir.join(&spec.cluster).join("credentials");
            let (passwd, acl) = make_credentials(&dir, spec)?;
            config.password_file = Some(passwd);
            config.acl_file = Some(acl);
            Some(dir)
        };
        let broker = Broker::start(config)
            .await
            .map_err(|e| fail(Exit::Usage, e.to_string()))?;
        // Listening on every address (0.0.0.0 or ::), the servers here still connect over
        // loopback.
        let mut local = broker.local_addr();
        if local.ip().is_unspecified() {
            local.set_ip(match local {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let url = format!("mqtt://{local}");
        let servers = match Servers::new() {
            Ok(servers) => servers,
            Err(e) => {
                let _ = broker.shutdown().await;
                return Err(e);
            }
        };
        let mut cluster = LocalCluster {
            broker,
            servers,
            spec: spec.clone(),
            url,
            credentials,
        };
        for id in 1..=spec.servers {
            if let Err(e) = cluster.spawn(id) {
                let _ = cluster.stop().await;
                return Err(e);
            }
        }
        Ok(cluster)
    }

    /// Where server `id` writes its output when the cluster is quiet.
    fn log_file(&self, id: u32) -> PathBuf {
        let spec = &self.spec;
        spec.data_dir
            .join(&spec.cluster)
            .join(format!("server{id}.log"))
    }

    /// Starts server `id` (again) from its data directory.
    fn spawn(&mut self, id: u32) -> Result<(), Failure> {
        let output = if self.spec.quiet {
            let log = self.log_file(id);
            if let Some(dir) = log.parent() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    fail(
                        Exit::Failed,
                        format!("cannot create {}: {e}", dir.display()),
                    )
                })?;
            }
            // Where this start begins in a log that a reused data directory (or a restart)
            // appends to: the diagnosis quotes nothing from before it.
            use std::io::Write as _;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .and_then(|mut f| writeln!(f, "{}{id}", START_MARK))
                .map_err(|e| {
                    fail(
                        Exit::Failed,
                        format!("cannot write the server log {}: {e}", log.display()),
                    )
                })?;
            Output::File(log)
        } else {
            Output::Inherit
        };
        let spec = &self.spec;
        let server = ServerCommand {
            id,
            servers: spec.servers,
            broker: self.url.clone(),
            cluster: spec.cluster.clone(),
            data_dir: spec
                .data_dir
                .join(&spec.cluster)
                .join(format!("server{id}")),
            metrics: spec.metrics.get(id as usize - 1).copied().flatten(),
            sync: Some(spec.sync.clone()),
            password_file: self.credentials.as_ref().map(|dir| {
                let user = mqpaxos_node::topics::server_user(&spec.cluster, id);
                dir.join(format!("{user}.password"))
            }),
            password: None,
            args: spec.server_args.clone(),
            output,
            wrapper: Vec::new(),
        };
        self.servers.start(&server)
    }

    /// kill -9 of server `id`, as a crash would: no goodbye, nothing flushed.
    pub async fn kill(&mut self, id: u32) {
        self.servers.kill(id).await;
    }

    /// Starts a killed server `id` again from its data directory.
    pub fn restart(&mut self, id: u32) -> Result<(), Failure> {
        self.spawn(id)
    }

    /// The servers' process ids, in id order (a server that already exited has none).
    pub fn server_pids(&self) -> Vec<Option<u32>> {
        self.servers.pids()
    }

    /// How many servers.
    pub fn servers(&self) -> u32 {
        self.spec.servers
    }

    /// How many servers have exited (and not been restarted).
    pub fn exited(&mut self) -> usize {
        self.servers.exited().len()
    }

    /// What the servers said, for an error that the cluster did not come up: which servers
    /// have exited and how, and the last lines of each quiet server's log. Empty when there
    /// is nothing to tell.
    pub fn diagnosis(&mut self) -> String {
        const TAIL: usize = 8;
        let mut out = String::new();
        for (id, status) in self.servers.exited() {
            out.push_str(&format!("\n  server {id} has exited ({status})"));
        }
        if self.spec.quiet {
            for id in 1..=self.spec.servers {
                let path = self.log_file(id);
                let Some(text) = log_tail(&path) else {
                    continue;
                };
                let lines = last_start(&text, TAIL);
                if lines.is_empty() {
                    continue;
                }
                out.push_str(&format!("\n  the end of {}:", path.display()));
                for line in lines {
                    out.push_str(&format!("\n    {line}"));
                }
            }
        }
        out
    }

    /// Stops the servers (SIGTERM, then SIGKILL after a grace period) and the broker.
    pub async fn stop(mut self) -> Result<(), Failure> {
        self.servers.stop().await;
        self.broker
            .shutdown()
            .await
            .map_err(|e| fail(Exit::Failed, format!("broker shutdown: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The diagnosis quotes the end of the server's latest start, never an earlier run's.
    #[test]
    fn a_log_is_quoted_from_its_last_start() {
        let log = format!("old 1\nold 2\n{START_MARK}1\nnew 1\nnew 2\nnew 3\n");
        assert_eq!(last_start(&log, 8), vec!["new 1", "new 2", "new 3"]);
        assert_eq!(last_start(&log, 2), vec!["new 2", "new 3"]);
        // Started, and exited before it said anything.
        assert!(last_start(&format!("old\n{START_MARK}2\n"), 8).is_empty());
        // A log from before markers existed.
        assert_eq!(last_start("a\nb\n", 1), vec!["b"]);
        assert!(last_start("", 8).is_empty());
    }

    /// A log far larger than the tail that is read, with bytes that are not UTF-8.
    #[test]
    fn only_the_tail_of_a_large_log_is_read() {
        let d = tempfile::tempdir().expect("temp dir");
        let path = d.path().join("server1.log");
        let mut bytes = vec![b'x'; 1 << 20];
        bytes.extend_from_slice(b"\n\xff\xfe torn\nlast line\n");
        std::fs::write(&path, &bytes).expect("write the log");
        let tail = log_tail(&path).expect("the tail");
        assert!(tail.len() <= (64 << 10) + 8, "{}", tail.len());
        assert_eq!(
            last_start(&tail, 2),
            vec!["\u{fffd}\u{fffd} torn", "last line"]
        );
        assert!(log_tail(&d.path().join("missing.log")).is_none());
    }
}
