//! `mqpaxos chaos --netns`: the chaos experiment with faults made by the kernel.
//!
//! Every server process runs in its own network namespace, joined by a veth pair to a bridge
//! in a "hub" namespace; each broker runs in a namespace of its own on the same bridge, and
//! the runner (its clients and observer) reaches the bridge from the root namespace through
//! one more veth. All addresses are in one private /24 (`10.213.<x>.0/24`, `<x>` picked per
//! run so that parallel runs do not collide): broker `b` is `.b`, server `i` is `.(10+i)`, the
//! root end is `.254`. Traffic goes only to loopback and to the namespaces the run created.
//!
//! Faults are iptables rules inside those namespaces, in two chains of our own:
//! `MQPX-LOSS` (jumped to from INPUT on the server's veth: `-m statistic --mode random` DROP,
//! so loss hits what a server receives, as the transport-layer loss does) and `MQPX-CUT`
//! (jumped to from INPUT and OUTPUT on the veth: a plain DROP cuts a server off, or in a
//! broker namespace a DROP of the other broker's address cuts the bridge link). Healing is
//! flushing the chains. Deleting a namespace deletes its veths and its rules with it, so
//! cleanup is: kill what runs in our namespaces, delete them, delete the root veth.
//!
//! Names carry the run prefix `mqpx-<pid>-` (namespaces) and `mqx<pid>` (the root veth, as
//! interface names are limited to 15 bytes); [`sweep`] removes those of runs whose process is
//! gone. This module must never touch a namespace, interface or rule it did not create.
//!
//! It shells out to `ip` and `iptables` on purpose: they are what an operator would type, the
//! rules they make can be inspected with the same tools while a run is going, and a netlink or
//! nftables library would add a large dependency for a few dozen calls per run.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const PORT: u16 = 1883;
const METRICS_PORT: u16 = 9100;
/// The user mosquitto's bridge connects as (read and write on `mqpaxos/#`).
const BRIDGE_USER: &str = "bridge";

/// Why `--netns` cannot run here: not root, or the kernel refuses namespaces. The tests look
/// for these words to tell a machine that cannot run `--netns` from a broken run.
pub const UNAVAILABLE: &str = "network namespaces are not available";

/// Why a lab could not be set up, or a fault not made. One line each, for the operator: the
/// command that failed and what it said, or what to install.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// Namespaces need root: this machine (as this user) cannot run `--netns` at all.
    #[error(
        "{UNAVAILABLE}: --netns must run as root (it creates namespaces, veths and iptables rules)"
    )]
    NotRoot,
    /// The kernel refused the first namespace: this machine cannot run `--netns` at all.
    #[error("{UNAVAILABLE}: {0}")]
    NoNamespaces(Box<NetnsError>),
    /// Servers are `.11` to `.210` of the run's /24.
    #[error("--netns supports at most 200 servers")]
    TooManyServers,
    #[error("--brokers 2 needs two --groups (servers on broker A, on broker B)")]
    TwoBrokersNeedTwoGroups,
    #[error("--netns needs iptables (apt-get install iptables, or scripts/install-deps)")]
    NoIptables,
    #[error("--netns with two brokers needs mosquitto (apt-get install mosquitto)")]
    NoMosquitto,
    /// Every /24 of 10.213.0.0/16 is in use (by parallel runs, or by the machine itself).
    #[error("no free /24 left in 10.213.0.0/16")]
    NoFreeSubnet,
    /// `ip`, `iptables` or `mosquitto_passwd` could not be started at all.
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    /// A command ran and failed; `stderr` is the first line of what it said.
    #[error("{command} failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("cannot create {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The lab's broker is this executable run as `mqpaxos broker`.
    #[error("cannot find this executable: {0}")]
    CurrentExe(std::io::Error),
    #[error("cannot start broker {broker}: {source}")]
    StartBroker { broker: u8, source: std::io::Error },
    #[error("broker {broker} does not listen on {addr} after 10 s")]
    BrokerNotListening { broker: u8, addr: SocketAddr },
}

/// A run's namespaces, links, rules and broker processes; dropping it removes them all.
pub struct Lab {
    prefix: String,
    root_if: String,
    subnet: u8,
    servers: u32,
    brokers: u8,
    /// Broker (0 or 1) of each server, by id - 1.
    server_broker: Vec<u8>,
    password: String,
    dir: PathBuf,
    broker_children: Vec<Child>,
}

/// What the run needs to set up a lab.
pub struct Plan {
    pub servers: u32,
    pub clients: usize,
    pub brokers: u8,
    /// Group sizes; with two brokers the first group goes to broker A, the rest to B.
    pub groups: Vec<usize>,
    pub seed: u64,
}

fn run_prefix(pid: u32) -> String {
    format!("mqpx-{pid}-")
}

fn root_if_name(pid: u32) -> String {
    format!("mqx{pid}")
}

/// Runs a command to completion; its stderr's first line is the error.
fn sh(program: &str, args: &[&str]) -> Result<String, NetnsError> {
    let out = std::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| NetnsError::Spawn {
            program: program.to_string(),
            source,
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(NetnsError::Command {
            command: format!("{program} {}", args.join(" ")),
            stderr: err.lines().next().unwrap_or("").trim().to_string(),
        })
    }
}

fn ip(args: &[&str]) -> Result<(), NetnsError> {
    sh("ip", args).map(|_| ())
}

/// iptables inside namespace `ns` (`-w`: the xtables lock file is shared by all namespaces).
fn iptables(ns: &str, args: &[&str]) -> Result<(), NetnsError> {
    let mut all = vec!["netns", "exec", ns, "iptables", "-w"];
    all.extend_from_slice(args);
    sh("ip", &all).map(|_| ())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Whether process `pid` is a live mqpaxos (a leftover of a dead run otherwise).
fn run_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim().starts_with("mqpaxos"))
        .unwrap_or(false)
}

/// Kills what runs in every namespace named `<prefix>*`, deletes them and the root veth.
/// Errors are ignored: this is cleanup, and it must go as far as it can.
pub fn cleanup(prefix: &str, root_if: &str) {
    let names: Vec<String> = sh("ip", &["netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect();
    for ns in &names {
        for pid in sh("ip", &["netns", "pids", ns])
            .unwrap_or_default()
            .lines()
            .filter_map(|p| p.trim().parse::<i32>().ok())
        {
            // SAFETY: kill has no memory preconditions; the pid is one in our namespace.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
    for ns in &names {
        // A namespace whose processes are still exiting is removed once they are gone.
        let _ = ip(&["netns", "del", ns]);
    }
    let _ = ip(&["link", "del", root_if]);
}

/// Removes the namespaces and root veths of earlier runs whose process is gone.
pub fn sweep() {
    let list = sh("ip", &["netns", "list"]).unwrap_or_default();
    let mut dead: Vec<u32> = list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|n| n.strip_prefix("mqpx-"))
        .filter_map(|r| r.split('-').next())
        .filter_map(|p| p.parse::<u32>().ok())
        .filter(|p| !run_alive(*p))
        .collect();
    let links = sh("ip", &["-o", "link", "show"]).unwrap_or_default();
    dead.extend(
        links
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|n| n.trim().split('@').next().unwrap_or(""))
            .filter_map(|n| n.strip_prefix("mqx"))
            .filter_map(|p| p.parse::<u32>().ok())
            .filter(|p| !run_alive(*p)),
    );
    dead.sort_unstable();
    dead.dedup();
    for pid in dead {
        eprintln!("mqpaxos chaos: removing the leftovers of run {pid}");
        cleanup(&run_prefix(pid), &root_if_name(pid));
    }
}

/// A /24 under 10.213.0.0/16 that no interface of the root namespace uses yet.
fn pick_subnet(pid: u32) -> Result<u8, NetnsError> {
    let addrs = sh("ip", &["-o", "-4", "addr", "show"])?;
    let start = (pid % 200) as u8;
    (0..250u8)
        .map(|i| 1 + (start.wrapping_add(i)) % 250)
        .find(|x| !addrs.contains(&format!(" 10.213.{x}.")))
        .ok_or(NetnsError::NoFreeSubnet)
}

/// Writes one of the lab's files; the error names the file.
fn write(path: &std::path::Path, contents: impl AsRef<[u8]>) -> Result<(), NetnsError> {
    std::fs::write(path, contents).map_err(|source| NetnsError::Write {
        path: path.to_path_buf(),
        source,
    })
}

impl Lab {
    /// Checks that namespaces and iptables work here, sweeps leftovers, and builds the
    /// namespaces, links and brokers of one run. [`NetnsError::NotRoot`] and
    /// [`NetnsError::NoNamespaces`] mean this machine cannot do it at all.
    pub fn create(plan: &Plan) -> Result<Lab, NetnsError> {
        if !is_root() {
            return Err(NetnsError::NotRoot);
        }
        if plan.servers > 200 {
            return Err(NetnsError::TooManyServers);
        }
        if plan.brokers == 2 && plan.groups.len() != 2 {
            return Err(NetnsError::TwoBrokersNeedTwoGroups);
        }
        sh("iptables", &["-V"]).map_err(|_| NetnsError::NoIptables)?;
        let mosquitto = std::process::Command::new("mosquitto")
            .arg("-h")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if (plan.brokers == 2 || cfg!(not(feature = "embedded-broker"))) && mosquitto.is_err() {
            return Err(NetnsError::NoMosquitto);
        }
        sweep();
        let pid = std::process::id();
        let prefix = run_prefix(pid);
        let hub = format!("{prefix}hub");
        ip(&["netns", "add", &hub]).map_err(|e| NetnsError::NoNamespaces(Box::new(e)))?;
        let password = std::env::var("MQPAXOS_PASSWORD").unwrap_or_else(|_| {
            format!(
                "{:016x}{:016x}",
                rand::random::<u64>(),
                rand::random::<u64>()
            )
        });
        let dir = std::env::temp_dir().join(format!("{prefix}lab"));
        // From here on, dropping the lab removes whatever was made so far.
        let mut lab = Lab {
            prefix: prefix.clone(),
            root_if: root_if_name(pid),
            subnet: 0,
            servers: plan.servers,
            brokers: plan.brokers,
            server_broker: vec![0; plan.servers as usize],
            password,
            dir,
            broker_children: Vec::new(),
        };
        lab.subnet = pick_subnet(pid)?;
        // Seeded assignment of servers to brokers: the first group on A, the others on B.
        if plan.brokers == 2 {
            let mut ids: Vec<u32> = (1..=plan.servers).collect();
            ids.shuffle(&mut rand::rngs::StdRng::seed_from_u64(
                plan.seed ^ 0x006e_6574_6e73,
            ));
            for id in ids.into_iter().skip(plan.groups[0]) {
                lab.server_broker[id as usize - 1] = 1;
            }
        }
        lab.build()?;
        lab.write_auth(plan)?;
        lab.start_brokers()?;
        Ok(lab)
    }

    fn ns(&self, what: &str) -> String {
        format!("{}{what}", self.prefix)
    }

    fn addr(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.subnet, host)
    }

    /// A namespace `<prefix><name>` with lo up and a veth `eth0` at `.host` on the hub bridge.
    fn attach(&self, name: &str, host: u8) -> Result<(), NetnsError> {
        let (ns, hub) = (self.ns(name), self.ns("hub"));
        ip(&["netns", "add", &ns])?;
        ip(&[
            "link", "add", "name", "eth0", "netns", &ns, "type", "veth", "peer", "name", name,
            "netns", &hub,
        ])?;
        ip(&["-n", &hub, "link", "set", name, "master", "br0", "up"])?;
        let cidr = format!("{}/24", self.addr(host));
        ip(&["-n", &ns, "addr", "add", &cidr, "dev", "eth0"])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        iptables(&ns, &["-N", "MQPX-LOSS"])?;
        iptables(&ns, &["-N", "MQPX-CUT"])?;
        iptables(&ns, &["-A", "INPUT", "-i", "eth0", "-j", "MQPX-CUT"])?;
        iptables(&ns, &["-A", "OUTPUT", "-o", "eth0", "-j", "MQPX-CUT"])?;
        iptables(&ns, &["-A", "INPUT", "-i", "eth0", "-j", "MQPX-LOSS"])?;
        Ok(())
    }

    fn build(&self) -> Result<(), NetnsError> {
        let hub = self.ns("hub");
        ip(&["-n", &hub, "link", "set", "lo", "up"])?;
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        for b in 1..=self.brokers {
            let name = format!("b{b}");
            self.attach(&name, b)?;
            // A bridge that tries to reconnect during a cut must not sit in SYN backoff (up
            // to ~2 min by default) after the heal: give up after 1 + 2 s and retry afresh.
            ip(&[
                "netns",
                "exec",
                &self.ns(&name),
                "sysctl",
                "-qw",
                "net.ipv4.tcp_syn_retries=1",
            ])?;
        }
        for id in 1..=self.servers {
            self.attach(&format!("s{id}"), 10 + id as u8)?;
        }
        // The runner's way in, from the root namespace.
        ip(&[
            "link",
            "add",
            "name",
            &self.root_if,
            "type",
            "veth",
            "peer",
            "name",
            "root",
            "netns",
            &hub,
        ])?;
        ip(&["-n", &hub, "link", "set", "root", "master", "br0", "up"])?;
        let cidr = format!("{}/24", self.addr(254));
        ip(&["addr", "add", &cidr, "dev", &self.root_if])?;
        ip(&["link", "set", &self.root_if, "up"])?;
        Ok(())
    }

    /// The password file (every server, client, the operator and the bridge, all with the
    /// run's password) and the production ACL plus the bridge user.
    fn write_auth(&self, plan: &Plan) -> Result<(), NetnsError> {
        std::fs::create_dir_all(&self.dir).map_err(|source| NetnsError::CreateDir {
            path: self.dir.clone(),
            source,
        })?;
        // The cluster is named after the seed (`chaos<seed>`), and so are its server users.
        let cluster = format!("chaos{}", plan.seed);
        let mut users: Vec<String> = (1..=plan.servers)
            .map(|i| mqpaxos_node::topics::server_user(&cluster, i))
            .collect();
        users.extend((0..=plan.clients).map(|i| format!("client{i}")));
        users.extend([
            mqpaxos_node::acl::OPERATOR.to_string(),
            BRIDGE_USER.to_string(),
        ]);
        let passwd = self.dir.join("passwd");
        #[cfg(feature = "embedded-broker")]
        {
            let text: String = users
                .iter()
                // The run's throwaway password never leaves its namespaces: a low count keeps
                // reconnect storms under kernel loss about Paxos, not about PBKDF2 (at the
                // default 210,000 iterations every connection costs the broker ~0.16 s).
                .map(|u| {
                    let hash = mqpaxos_broker::hash_password_with(&self.password, 1000);
                    format!("{u}:{hash}\n")
                })
                .collect();
            write(&passwd, text)?;
        }
        #[cfg(not(feature = "embedded-broker"))]
        {
            write(&passwd, "")?;
            let p = passwd.to_string_lossy().into_owned();
            for u in &users {
                sh("mosquitto_passwd", &["-b", &p, u, &self.password])?;
            }
        }
        let acl = format!(
            "{}\n# The bridge between the run's two brokers.\nuser {BRIDGE_USER}\ntopic readwrite mqpaxos/#\n",
            mqpaxos_node::acl::mosquitto(&[cluster], plan.servers, &[], &[])
        );
        write(&self.dir.join("acl.conf"), acl)
    }

    fn mosquitto_conf(&self, b: u8) -> Result<PathBuf, NetnsError> {
        let mut c = format!(
            "listener {PORT} {}\nallow_anonymous false\npassword_file {}\nacl_file {}\n\
             set_tcp_nodelay true\nmax_queued_messages 0\npersistence false\nlog_dest stderr\n\
             log_type error\nuser root\n",
            self.addr(b),
            self.dir.join("passwd").display(),
            self.dir.join("acl.conf").display()
        );
        if b == 2 {
            // Broker B bridges every mqpaxos topic both ways to broker A, retained messages
            // (the chaos switches, presence, status) included. No notifications: they are
            // published under $SYS, which the ACL denies, and A then drops the bridge.
            c.push_str(&format!(
                "connection a\naddress {}:{PORT}\nremote_username {BRIDGE_USER}\n\
                 remote_password {}\nremote_clientid {}bridge\nnotifications false\n\
                 topic mqpaxos/# both 1\ncleansession true\nkeepalive_interval 5\n\
                 restart_timeout 1\n",
                self.addr(1),
                self.password,
                self.prefix
            ));
        }
        let path = self.dir.join(format!("mosquitto-b{b}.conf"));
        write(&path, c)?;
        Ok(path)
    }

    fn start_brokers(&mut self) -> Result<(), NetnsError> {
        for b in 1..=self.brokers {
            let ns = self.ns(&format!("b{b}"));
            let mut cmd = std::process::Command::new("ip");
            cmd.args(["netns", "exec", &ns]);
            // One broker: the built-in one. Two: Mosquitto, whose bridge mqpaxos-broker does
            // not expose (the mqtt5 engine has one, not wired to our auth files yet).
            if self.brokers == 1 && cfg!(feature = "embedded-broker") {
                let exe = std::env::current_exe().map_err(NetnsError::CurrentExe)?;
                cmd.arg(exe)
                    .arg("broker")
                    .args(["--listen", &format!("{}:{PORT}", self.addr(b))])
                    .arg("--password-file")
                    .arg(self.dir.join("passwd"))
                    .arg("--acl-file")
                    .arg(self.dir.join("acl.conf"))
                    .env("MQPAXOS_LOG", "error");
            } else {
                cmd.arg("mosquitto").arg("-c").arg(self.mosquitto_conf(b)?);
            }
            let child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|source| NetnsError::StartBroker { broker: b, source })?;
            self.broker_children.push(child);
        }
        for b in 1..=self.brokers {
            let addr = SocketAddr::from((self.addr(b), PORT));
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
                if Instant::now() > deadline {
                    return Err(NetnsError::BrokerNotListening { broker: b, addr });
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    fn broker_url(&self, b: u8) -> String {
        format!("mqtt://{}:{PORT}", self.addr(b + 1))
    }

    /// The broker the runner's observer and final reader use (broker A).
    pub fn runner_url(&self) -> String {
        self.broker_url(0)
    }

    /// Client `c` (from 1) uses broker A or B in turn.
    pub fn client_url(&self, c: usize) -> String {
        self.broker_url(((c + 1) % self.brokers as usize) as u8)
    }

    pub fn server_url(&self, id: u32) -> String {
        self.broker_url(self.server_broker[id as usize - 1])
    }

    /// Where server `id` serves its metrics, reachable from the root namespace.
    pub fn metrics_addr(&self, id: u32) -> SocketAddr {
        SocketAddr::from((self.addr(10 + id as u8), METRICS_PORT))
    }

    /// `ip netns exec <server's namespace>`: the command a server process runs under.
    pub fn server_wrapper(&self, id: u32) -> Vec<String> {
        ["ip", "netns", "exec", &self.ns(&format!("s{id}"))]
            .map(str::to_string)
            .to_vec()
    }

    /// Kernel loss: every server drops what arrives on its veth with probability `p`.
    pub fn set_loss(&self, p: f64) -> Result<String, NetnsError> {
        for id in 1..=self.servers {
            let ns = self.ns(&format!("s{id}"));
            iptables(&ns, &["-F", "MQPX-LOSS"])?;
            if p > 0.0 {
                let prob = format!("{p}");
                iptables(
                    &ns,
                    &[
                        "-A",
                        "MQPX-LOSS",
                        "-m",
                        "statistic",
                        "--mode",
                        "random",
                        "--probability",
                        &prob,
                        "-j",
                        "DROP",
                    ],
                )?;
            }
        }
        Ok(format!(
            "iptables: each server drops incoming packets on its veth with probability {p}"
        ))
    }

    /// Makes a split. One broker: every group but the largest is cut off from the broker
    /// (and so from everyone). Two brokers: the bridge link is cut, and the groups are the
    /// servers on each broker whatever `groups` says. Returns the groups and what was done.
    pub fn split(&self, groups: &[Vec<u32>]) -> Result<(Vec<Vec<u32>>, String), NetnsError> {
        self.heal_cuts()?;
        if self.brokers == 2 {
            for (me, other) in [(1u8, 2u8), (2, 1)] {
                let ns = self.ns(&format!("b{me}"));
                let peer = self.addr(other).to_string();
                iptables(&ns, &["-A", "MQPX-CUT", "-s", &peer, "-j", "DROP"])?;
                iptables(&ns, &["-A", "MQPX-CUT", "-d", &peer, "-j", "DROP"])?;
            }
            let on = |b: u8| -> Vec<u32> {
                (1..=self.servers)
                    .filter(|id| self.server_broker[*id as usize - 1] == b)
                    .collect()
            };
            return Ok((
                vec![on(0), on(1)],
                "iptables: the bridge link between broker A and broker B is cut".into(),
            ));
        }
        let keep = groups
            .iter()
            .enumerate()
            .max_by_key(|(i, g)| (g.len(), usize::MAX - i))
            .map(|(i, _)| i)
            .unwrap_or(0);
        let mut cut = Vec::new();
        for (i, g) in groups.iter().enumerate() {
            if i == keep {
                continue;
            }
            for id in g {
                iptables(
                    &self.ns(&format!("s{id}")),
                    &["-A", "MQPX-CUT", "-j", "DROP"],
                )?;
                cut.push(*id);
            }
        }
        cut.sort_unstable();
        Ok((
            groups.to_vec(),
            format!("iptables: servers {cut:?} are cut off from the broker"),
        ))
    }

    /// Whether a split heals halfway through its slice of the run: with two brokers every
    /// split is the same cut of the bridge, so without a pause it would be one long cut.
    pub fn heals_midway(&self) -> bool {
        self.brokers == 2
    }

    /// Removes every cut (not the loss).
    pub fn heal_cuts(&self) -> Result<String, NetnsError> {
        for b in 1..=self.brokers {
            iptables(&self.ns(&format!("b{b}")), &["-F", "MQPX-CUT"])?;
        }
        for id in 1..=self.servers {
            iptables(&self.ns(&format!("s{id}")), &["-F", "MQPX-CUT"])?;
        }
        Ok("iptables: every cut removed (the loss stays)".into())
    }

    /// Removes every cut and the loss.
    pub fn heal(&self) -> Result<(), NetnsError> {
        self.heal_cuts()?;
        self.set_loss(0.0).map(|_| ())
    }

    /// The prefix and root veth, for a signal handler that must clean up without the lab.
    pub fn names(&self) -> (String, String) {
        (self.prefix.clone(), self.root_if.clone())
    }

    /// A one-line description for the report.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "network namespaces {}*, 10.213.{}.0/24, {} broker(s)",
            self.prefix, self.subnet, self.brokers
        );
        if self.brokers == 2 {
            let on = |b: u8| -> Vec<u32> {
                (1..=self.servers)
                    .filter(|id| self.server_broker[*id as usize - 1] == b)
                    .collect()
            };
            s.push_str(&format!(", servers {:?} on A, {:?} on B", on(0), on(1)));
        }
        s
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.broker_children {
            let _ = c.kill();
            let _ = c.wait();
        }
        cleanup(&self.prefix, &self.root_if);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// On Ctrl-C or SIGTERM: remove everything of this run (its namespaces, then the servers'
/// data directories under `data`, once nothing runs there), then exit with 130.
pub fn cleanup_on_signal(names: (String, String), data: PathBuf) {
    tokio::spawn(async move {
        crate::cmd::stop_signal().await;
        eprintln!("\nmqpaxos chaos: interrupted; removing the run's namespaces");
        cleanup(&names.0, &names.1);
        let _ = std::fs::remove_dir_all(&data);
        std::process::exit(i32::from(crate::cmd::Exit::Interrupted.code()));
    });
}
