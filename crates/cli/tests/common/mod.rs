//! The multi-process test harness: real brokers (Mosquitto or `mqpaxos broker`) on free
//! loopback ports with per-node users and an ACL as in production, real `mqpaxos server`
//! processes with data directories, and helpers to drive the CLI and the client library.
//! Everything it starts is killed when the handles drop.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_mqpaxos");
pub const PASSWORD: &str = "s3cret-for-tests";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Waits until something accepts connections on `port`.
pub fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on port {port}");
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Mosquitto,
    Embedded,
}

/// A broker with users `<cluster>-server1..9` and client1..9 (all with [`PASSWORD`]) and the
/// production ACL, generated for one cluster (`cluster`: the one [`Cluster::start`] uses), or
/// for several ([`Broker::start_for_clusters`]).
pub struct Broker {
    pub kind: Kind,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub cluster: String,
    child: Option<Child>,
}

/// The shipped Mosquitto settings that matter to mqpaxos (deploy/mosquitto/mosquitto.conf).
pub const MOSQUITTO_LIMITS: &str = "max_packet_size 16778240\nmessage_size_limit 16777216\n";

impl Broker {
    pub fn start(kind: Kind) -> Broker {
        Self::start_for(kind, &format!("t{}", free_port()))
    }

    /// A broker whose ACL gives rights in cluster `cluster` only.
    pub fn start_for(kind: Kind, cluster: &str) -> Broker {
        Self::start_for_clusters(kind, &[cluster])
    }

    /// A broker whose ACL (one file, as one `mqpaxos acl` prints it) gives rights in each of
    /// `clusters`, with server users for each; [`Cluster::start`] uses the first.
    pub fn start_for_clusters(kind: Kind, clusters: &[&str]) -> Broker {
        let cluster = clusters[0];
        let dir = tempfile::tempdir().expect("temp dir");
        let acl = Command::new(BIN)
            .args(["acl", "--format", "mosquitto", "--servers", "9"])
            // client1 may watch every key (the watch tests).
            .args(["--watch-reader", "client1:"])
            .args(clusters.iter().flat_map(|c| ["--cluster", c]))
            .output()
            .expect("run mqpaxos acl");
        assert!(acl.status.success(), "mqpaxos acl failed");
        std::fs::write(dir.path().join("acl.conf"), &acl.stdout).expect("write acl.conf");
        let passwd = dir.path().join("passwd");
        std::fs::write(&passwd, "").expect("write password file");
        let mut users: Vec<String> = (1..=9).map(|i| format!("client{i}")).collect();
        for c in clusters {
            users.extend((1..=9).map(|i| format!("{c}-server{i}")));
        }
        users.extend(["client0".to_string(), "operator".to_string()]);
        {
            for user in users {
                let ok = Command::new("mosquitto_passwd")
                    .arg("-b")
                    .arg(&passwd)
                    .arg(user)
                    .arg(PASSWORD)
                    .status()
                    .expect("mosquitto_passwd is installed (apt-get install mosquitto)");
                assert!(ok.success(), "mosquitto_passwd failed");
            }
        }
        let mut b = Broker {
            kind,
            port: free_port(),
            dir,
            cluster: cluster.to_string(),
            child: None,
        };
        b.launch();
        b
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    pub fn acl_file(&self) -> PathBuf {
        self.dir.path().join("acl.conf")
    }

    fn launch(&mut self) {
        let passwd = self.dir.path().join("passwd");
        let acl_file = self.acl_file();
        let child = match self.kind {
            Kind::Mosquitto => {
                let conf = self.dir.path().join("mosquitto.conf");
                let mut c = format!(
                    "listener {} 127.0.0.1\nallow_anonymous false\npassword_file {}\nacl_file {}\n\
                     set_tcp_nodelay true\nmax_queued_messages 0\npersistence false\nlog_dest stderr\nlog_type error\n{MOSQUITTO_LIMITS}",
                    self.port,
                    passwd.display(),
                    acl_file.display()
                );
                // SAFETY: geteuid has no preconditions.
                if unsafe { libc::geteuid() } == 0 {
                    c.push_str("user root\n");
                }
                std::fs::write(&conf, c).expect("write mosquitto.conf");
                Command::new("mosquitto")
                    .arg("-c")
                    .arg(&conf)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("mosquitto is installed (apt-get install mosquitto)")
            }
            Kind::Embedded => Command::new(BIN)
                .args(["broker", "--listen", &format!("127.0.0.1:{}", self.port)])
                .arg("--password-file")
                .arg(&passwd)
                .arg("--acl-file")
                .arg(&acl_file)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start mqpaxos broker"),
        };
        self.child = Some(child);
        wait_listening(self.port);
    }

    /// Kills the broker (SIGKILL) and starts it again on the same port after `down`.
    pub fn restart(&mut self, down: Duration) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        std::thread::sleep(down);
        self.launch();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// N server processes on one broker, each with its own data directory.
pub struct Cluster {
    pub n: u32,
    pub url: String,
    pub cluster: String,
    pub data: tempfile::TempDir,
    servers: Vec<Option<Child>>,
}

impl Cluster {
    pub fn start(broker: &Broker, n: u32) -> Cluster {
        Self::start_with(broker, n, &[])
    }

    /// Starts `n` servers, each with the extra flags `extra`.
    pub fn start_with(broker: &Broker, n: u32, extra: &[&str]) -> Cluster {
        let mut c = Cluster {
            n,
            url: broker.url(),
            cluster: broker.cluster.clone(),
            data: tempfile::tempdir().expect("temp dir"),
            servers: (0..n).map(|_| None).collect(),
        };
        for id in 1..=n {
            c.start_server_with(id, extra);
        }
        c
    }

    pub fn start_server(&mut self, id: u32) {
        self.start_server_with(id, &[]);
    }

    /// Makes room for `n` servers (for tests that start them one by one).
    pub fn resize(&mut self, n: u32) {
        self.servers.resize_with(n as usize, || None);
    }

    /// The command that runs server `id` of this cluster on data directory `data_dir`.
    pub fn server_command(&self, id: u32, data_dir: &str) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("server")
            .args(["--id", &id.to_string(), "--servers", &self.n.to_string()])
            .args(["--broker", &self.url, "--cluster", &self.cluster])
            .arg("--data-dir")
            .arg(self.data.path().join(data_dir))
            .env("MQPAXOS_PASSWORD", PASSWORD)
            .env("MQPAXOS_LOG", "warn")
            .stdin(Stdio::null());
        cmd
    }

    pub fn start_server_with(&mut self, id: u32, extra: &[&str]) {
        let child = self
            .server_command(id, &format!("server{id}"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mqpaxos server");
        self.servers[id as usize - 1] = Some(child);
    }

    /// kill -9.
    pub fn kill(&mut self, id: u32) {
        if let Some(mut c) = self.servers[id as usize - 1].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Server `id`'s process id, while it runs.
    pub fn pid(&self, id: u32) -> Option<u32> {
        self.servers[id as usize - 1].as_ref().map(Child::id)
    }

    /// Waits (at most `limit`) for server `id`'s process to exit by itself and returns how it
    /// ended; `None` if it is still running (it is left running) or was never started.
    pub fn wait_exit(&mut self, id: u32, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            let child = self.servers[id as usize - 1].as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                self.servers[id as usize - 1] = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether server `id`'s process is still running (false once it has exited, or if it
    /// was never started).
    pub fn is_running(&mut self, id: u32) -> bool {
        self.servers[id as usize - 1]
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Runs the CLI against this cluster as user `client1`.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_as("client1", args)
    }

    /// Runs the CLI against this cluster as `user`.
    pub fn cli_as(&self, user: &str, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .args([
                "--broker",
                &self.url,
                "--cluster",
                &self.cluster,
                "--user",
                user,
            ])
            .env("MQPAXOS_PASSWORD", PASSWORD)
            .stdin(Stdio::null())
            .output()
            .expect("run mqpaxos")
    }

    /// What `mqpaxos status --json` shows. Its exit code is not checked: it is 3 whenever
    /// fewer than a majority answer, which many tests bring about on purpose.
    pub fn status(&self) -> Vec<serde_json::Value> {
        // As the operator: the ACL lets plain clients read no presence or status. Not
        // required to exit 0: `status` exits 3 while fewer than a majority answer.
        let out = self.cli_as(
            "operator",
            &["status", "--json", "--servers", &self.n.to_string()],
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "status --json printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// Waits until an online server reports itself leader, and returns its id.
    pub fn leader(&self, timeout: Duration) -> u32 {
        let deadline = Instant::now() + timeout;
        loop {
            let st = self.status();
            let leader = st
                .iter()
                .find(|s| s["online"] == true && s["role"] == "leader");
            if let Some(l) = leader {
                return l["id"].as_u64().expect("numeric id") as u32;
            }
            assert!(
                Instant::now() < deadline,
                "no leader within {timeout:?}: {st:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn client_options(&self, user: &str) -> mqpaxos::ClientOptions {
        let mut o = mqpaxos::ClientOptions::new(&self.url, user);
        o.cluster = self.cluster.clone();
        o.broker.password = Some(PASSWORD.to_string());
        o.timeout = Duration::from_secs(20);
        o
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for id in 1..=self.n {
            self.kill(id);
        }
    }
}

/// Runs the CLI with `args` alone: no config file named by the environment, no stdin.
pub fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("MQPAXOS_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("run mqpaxos")
}

/// An HTTP/1.0 GET of `path` from a server's metrics listener on `port`: the whole response.
pub fn http_get(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect metrics");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").expect("send");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Checks `messages` (one a line: its kind, a space, its JSON) against the JSON Schemas of
/// docs/asyncapi/ with scripts/check-api, from a file written in `dir`: all `n` are valid.
pub fn check_api(dir: &Path, messages: &str, n: usize) {
    let file = dir.join("messages.txt");
    std::fs::write(&file, messages).expect("write");
    let o = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../scripts/check-api"
        ))
        .arg("--messages")
        .arg(&file)
        .output()
        .expect("check-api");
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains(&format!("{n} messages valid")),
        "{}",
        stdout(&o)
    );
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_string()
}

/// Sets the cluster's injected faults (retained on its chaos topic, as the operator): JSON as
/// `mqpaxos_node::chaos::Faults` reads it, `{}` for none.
pub fn set_faults(broker: &Broker, cluster: &str, faults: &str) {
    let o = Command::new("mosquitto_pub")
        .args([
            "-p",
            &broker.port.to_string(),
            "-u",
            "operator",
            "-P",
            PASSWORD,
        ])
        .args(["-t", &format!("mqpaxos/{cluster}/chaos"), "-r", "-q", "1"])
        .args(["-m", faults])
        .output()
        .expect("mosquitto_pub is installed");
    assert!(o.status.success(), "{}", stderr(&o));
}

/// A load test's history of client operations for the linearizability checker: events
/// timestamped in nanoseconds since the history began, shared by every writer task.
#[derive(Clone)]
pub struct History {
    start: Instant,
    events: std::sync::Arc<std::sync::Mutex<Vec<mqpaxos_check::Event>>>,
}

impl History {
    pub fn new() -> History {
        History {
            start: Instant::now(),
            events: Default::default(),
        }
    }

    /// Nanoseconds since the history began: every event's time.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    pub fn push(&self, e: mqpaxos_check::Event) {
        self.events.lock().expect("lock").push(e);
    }

    /// A put, recorded: its invocation, then its acknowledgement or, if it failed, an
    /// unknown outcome (a timed-out command may still execute). Whether it was acknowledged.
    pub async fn put(&self, client: &mqpaxos::Client, name: &str, key: &str, value: &str) -> bool {
        use mqpaxos_check::{Event, OpKind};
        self.push(Event::invoke(self.now(), name, OpKind::Put, key).with_value(Some(value)));
        let acknowledged = client.put(key, value).await.is_ok();
        self.push(if acknowledged {
            Event::ok(self.now(), name, OpKind::Put, key).with_value(Some(value))
        } else {
            Event::info(self.now(), name, OpKind::Put, key)
        });
        acknowledged
    }

    /// Everything recorded, then a read of each of `keys` by a client of its own
    /// (`client9`), for after the load has stopped and the cluster has settled: a lost
    /// acknowledged write then shows up as a non-linearizable history. Also the values read.
    pub fn with_final_reads(
        &self,
        rt: &tokio::runtime::Runtime,
        cluster: &Cluster,
        keys: &[&str],
    ) -> (Vec<mqpaxos_check::Event>, Vec<Option<String>>) {
        use mqpaxos_check::{Event, OpKind};
        let reader = rt
            .block_on(mqpaxos::Client::connect(cluster.client_options("client9")))
            .expect("connect reader");
        let mut events = self.events.lock().expect("lock").clone();
        let mut values = Vec::new();
        for key in keys {
            events.push(Event::invoke(self.now(), "client9", OpKind::Get, key));
            let v = rt.block_on(reader.get(key)).expect("final read");
            events
                .push(Event::ok(self.now(), "client9", OpKind::Get, key).with_value(v.as_deref()));
            values.push(v);
        }
        rt.block_on(reader.close());
        (events, values)
    }
}

/// How many puts `events` has acknowledged.
pub fn acknowledged_puts(events: &[mqpaxos_check::Event]) -> usize {
    events
        .iter()
        .filter(|e| e.ty == mqpaxos_check::EventType::Ok && e.f == mqpaxos_check::OpKind::Put)
        .count()
}

/// The runtime a test's client tasks run on (a load test's, an attacker's), beside the
/// test's own thread.
pub fn load_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}
