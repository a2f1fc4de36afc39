//! The one way this binary starts `mqpaxos server` processes of its own: `cluster up`, `bench`
//! and `failover` (through [`LocalCluster`](crate::local_cluster::LocalCluster)) and `chaos`
//! (directly, or each server in its network namespace through a wrapper command).
//!
//! Every server started here is killed when its [`Servers`] is dropped (`kill_on_drop`),
//! whichever way the launcher leaves, and gets SIGTERM if the launcher dies without dropping
//! it ([`dies_with_launcher`]). This module never decides how a cluster is made up (broker,
//! users, data directories): its callers do, and say it in a [`ServerCommand`].

use crate::cmd::{fail, Exit, Failure};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use tokio::process::{Child, Command};

/// Where a server's stdout and stderr go.
#[derive(Clone, Debug, Default)]
pub enum Output {
    /// This process's own (`cluster up`: the operator watches the servers' logs).
    #[default]
    Inherit,
    /// Nowhere.
    Null,
    /// Appended to this file, so that a measurement that owns the terminal can still say why
    /// a server failed (and a restarted server adds to its earlier log).
    File(PathBuf),
}

/// How to start one server: the flags of `mqpaxos server` and how its process runs.
#[derive(Clone, Debug, Default)]
pub struct ServerCommand {
    pub id: u32,
    pub servers: u32,
    pub broker: String,
    pub cluster: String,
    /// The server's own data directory.
    pub data_dir: PathBuf,
    /// `--metrics`: where it serves its metrics.
    pub metrics: Option<SocketAddr>,
    /// `--sync`; `None` leaves the server's default.
    pub sync: Option<String>,
    /// `--password-file`.
    pub password_file: Option<PathBuf>,
    /// `MQPAXOS_PASSWORD` in the server's environment.
    pub password: Option<String>,
    /// More flags, after the ones above (e.g. `--allow-fault-injection`, `--reads=log`).
    pub args: Vec<String>,
    /// Where the server's stdout and stderr go (its stdin is always /dev/null).
    pub output: Output,
    /// Run the server under this command, e.g. `ip netns exec <namespace>`; empty: directly.
    pub wrapper: Vec<String>,
}

impl ServerCommand {
    /// The process to spawn: `[wrapper...] exe server --id ... [args...]`.
    fn command(&self, exe: &std::path::Path) -> Result<Command, Failure> {
        let mut cmd = match self.wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        cmd.arg("server")
            .args(["--id", &self.id.to_string()])
            .args(["--servers", &self.servers.to_string()])
            .args(["--broker", &self.broker, "--cluster", &self.cluster]);
        if let Some(sync) = &self.sync {
            cmd.args(["--sync", sync]);
        }
        cmd.arg("--data-dir").arg(&self.data_dir);
        if let Some(addr) = &self.metrics {
            cmd.args(["--metrics", &addr.to_string()]);
        }
        if let Some(file) = &self.password_file {
            cmd.arg("--password-file").arg(file);
        }
        cmd.args(&self.args);
        if let Some(p) = &self.password {
            cmd.env("MQPAXOS_PASSWORD", p);
        }
        cmd.env_remove("MQPAXOS_CONFIG")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        match &self.output {
            Output::Inherit => {}
            Output::Null => {
                cmd.stdout(Stdio::null()).stderr(Stdio::null());
            }
            Output::File(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .and_then(|f| Ok((f.try_clone()?, f)))
                    .map_err(|e| {
                        fail(
                            Exit::Failed,
                            format!("cannot open the server log {}: {e}", path.display()),
                        )
                    })?;
                cmd.stdout(file.0).stderr(file.1);
                // A file nobody watches live is read after something went wrong: it keeps
                // the server's life story (start, broker connections, elections), a few
                // lines per election, unless the operator chose a level.
                if std::env::var_os("MQPAXOS_LOG").is_none() {
                    cmd.env("MQPAXOS_LOG", "info,mqtt5=error");
                }
            }
        }
        dies_with_launcher(&mut cmd);
        Ok(cmd)
    }
}

/// The server processes this process started, by id; dropping it kills them.
pub struct Servers {
    exe: PathBuf,
    children: Vec<(u32, Child)>,
}

impl Servers {
    /// No servers yet; they will run this executable.
    pub fn new() -> Result<Servers, Failure> {
        let exe = std::env::current_exe()
            .map_err(|e| fail(Exit::Failed, format!("cannot find this executable: {e}")))?;
        Ok(Servers {
            exe,
            children: Vec::new(),
        })
    }

    /// Starts a server, in place of any earlier process with the same id.
    pub fn start(&mut self, server: &ServerCommand) -> Result<(), Failure> {
        let id = server.id;
        let child = server
            .command(&self.exe)?
            .spawn()
            .map_err(|e| fail(Exit::Failed, format!("cannot start server {id}: {e}")))?;
        self.children.retain(|(i, _)| *i != id);
        self.children.push((id, child));
        self.children.sort_by_key(|(i, _)| *i);
        Ok(())
    }

    /// kill -9 of every server, waiting until each is gone.
    pub async fn kill_all(&mut self) {
        for (_, c) in self.children.iter_mut() {
            let _ = c.kill().await;
        }
    }
}

/// What a local cluster (`cluster up`, `bench`, `failover`) does with its servers; `chaos` only
/// drops them.
#[cfg(feature = "embedded-broker")]
impl Servers {
    /// kill -9 of server `id`, as a crash would: no goodbye, nothing flushed.
    pub async fn kill(&mut self, id: u32) {
        if let Some((_, c)) = self.children.iter_mut().find(|(i, _)| *i == id) {
            let _ = c.kill().await;
        }
    }

    /// The servers' process ids, in id order (a server that already exited has none).
    pub fn pids(&self) -> Vec<Option<u32>> {
        self.children.iter().map(|(_, c)| c.id()).collect()
    }

    /// How each server that has already exited ended, by id.
    pub fn exited(&mut self) -> Vec<(u32, std::process::ExitStatus)> {
        self.children
            .iter_mut()
            .filter_map(|(id, c)| Some((*id, c.try_wait().ok()??)))
            .collect()
    }

    /// Asks each server to stop (SIGTERM, so it says goodbye on its presence topic), then
    /// kills what is still running after a grace period.
    pub async fn stop(&mut self) {
        for (_, c) in self.children.iter() {
            if let Some(pid) = c.id() {
                // SAFETY: kill(2) with a pid we spawned and still own; no memory is involved.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGTERM);
                }
            }
        }
        for (id, c) in self.children.iter_mut() {
            match tokio::time::timeout(std::time::Duration::from_secs(5), c.wait()).await {
                Ok(_) => {}
                Err(_) => {
                    eprintln!("mqpaxos: server {id} did not stop in time; killing it");
                    let _ = c.kill().await;
                }
            }
        }
    }
}

/// Makes a server process that this one launches (cluster, bench, chaos, failover) end when
/// this process ends, however it ends. `kill_on_drop` covers an orderly exit only: a launcher
/// killed with SIGKILL, or one that exits without dropping its children, left its servers
/// running forever, reconnecting to a broker that was gone (CI found three such orphans of a
/// killed test run an hour later). Linux only (`PR_SET_PDEATHSIG`); the server gets SIGTERM
/// and shuts down as on Ctrl-C, which loses nothing acknowledged.
///
/// The signal follows the death of the launching *thread*; launchers spawn from the tokio
/// runtime's worker threads, which live as long as the runtime.
fn dies_with_launcher(cmd: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        let launcher = std::process::id();
        // SAFETY: runs in the child between fork and exec, calling only async-signal-safe
        // functions (prctl, getppid, _exit) and allocating nothing.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The launcher died before the prctl took effect: nobody would signal us.
                if libc::getppid() as u32 != launcher {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

/// A loopback address with a port that was free a moment ago, for a server's metrics: the
/// server binds it itself, after this returns.
///
/// The port comes from below the kernel's ephemeral range. A port the kernel handed out for
/// `:0` was one that any outgoing connection could take in the meantime (the servers' own
/// connections to the broker start at the same moment), and a server that cannot bind its
/// metrics port exits. Below the range, only a process that asks for that very port can
/// take it.
pub fn free_local_addr() -> Result<SocketAddr, Failure> {
    let (low, _) = ephemeral_ports();
    // Registered ports start at 1024; most well-known services sit below 10000.
    let floor = if low > 11_000 { 10_000 } else { 1024 };
    if low > floor {
        for _ in 0..200 {
            let port = floor + (rand::random::<u16>() % (low - floor));
            if let Ok(addr) =
                std::net::TcpListener::bind(("127.0.0.1", port)).and_then(|l| l.local_addr())
            {
                return Ok(addr);
            }
        }
    }
    // A machine whose ephemeral range starts very low, or whose low ports are all taken.
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| fail(Exit::Failed, format!("no free port: {e}")))
}

/// The kernel's range of ports for outgoing connections and `:0` (Linux's default where it
/// cannot be read).
fn ephemeral_ports() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| {
            let mut it = t.split_whitespace().map(|n| n.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A metrics port for a server comes from below the ephemeral range, where no outgoing
    /// connection can take it before the server binds it, and is free to bind.
    #[test]
    fn metrics_ports_come_from_below_the_ephemeral_range() {
        let (low, high) = ephemeral_ports();
        assert!(low <= high);
        for _ in 0..20 {
            let addr = free_local_addr().expect("a free port");
            assert!(addr.ip().is_loopback());
            if low > 11_000 {
                assert!((10_000..low).contains(&addr.port()), "{addr}");
            }
            std::net::TcpListener::bind(addr).expect("still free");
        }
    }
}
