//! The CLI and a server on their own: error paths, config files, readiness, metrics, TLS.

mod common;

use common::*;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One line on stderr, naming the problem.
fn one_line(o: &std::process::Output) -> String {
    let e = stderr(o);
    assert_eq!(e.lines().count(), 1, "expected one line, got: {e}");
    e
}

#[test]
fn error_paths_give_one_clear_line_and_an_exit_code() {
    let o = run(&["get", "k", "--bogus"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(one_line(&o).contains("--bogus"));

    let o = run(&["get", "k", "--broker", "http://localhost:1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(one_line(&o).contains("bad broker URL"));

    let port = free_port(); // nothing listens there
    let url = format!("mqtt://127.0.0.1:{port}");
    let started = Instant::now();
    let o = run(&["get", "k", "--broker", &url, "--timeout", "1s"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(one_line(&o).contains("cannot reach the broker"));
    assert!(started.elapsed() < Duration::from_secs(10));

    let o = run(&["server", "--id", "4", "--servers", "3", "--in-memory"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(one_line(&o).contains("outside 1..=3"));

    let o = run(&["get", "k", "--timeout", "soon"]);
    assert_eq!(o.status.code(), Some(2));
    one_line(&o);
}

#[test]
fn a_config_file_sets_flags_and_unknown_keys_are_refused() {
    let d = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let f = d.path().join("mqpaxos.toml");
    std::fs::write(
        &f,
        format!("broker = \"mqtt://127.0.0.1:{port}\"\ntimeout = \"1s\"\ncluster = \"x\"\n"),
    )
    .expect("write config");
    let o = run(&["get", "k", "--config", f.to_str().expect("utf-8 path")]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("127.0.0.1:{port}")),
        "the file's broker was used: {}",
        stderr(&o)
    );
    // The command line wins over the file.
    let o = run(&[
        "get",
        "k",
        "--config",
        f.to_str().expect("utf-8"),
        "--broker",
        "bad://x",
    ]);
    assert_eq!(o.status.code(), Some(2));

    std::fs::write(&f, "brokr = \"mqtt://x\"\n").expect("write config");
    let o = run(&["get", "k", "--config", f.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(one_line(&o).contains("unknown setting \"brokr\""));
}

/// A server waits for a majority to be online before it stands for election, and serves
/// metrics and a health probe.
#[test]
fn readiness_and_metrics() {
    let broker = Broker::start(Kind::Mosquitto);
    let mut cluster = Cluster::start(&broker, 0);
    cluster.n = 3;
    cluster.resize(3);
    let metrics = free_port();
    // A new cluster whose third server cannot start yet: `--new-cluster` lets the first two
    // vote without the third confirming that the cluster is new.
    cluster.start_server_with(
        1,
        &[
            "--metrics",
            &format!("127.0.0.1:{metrics}"),
            "--new-cluster",
        ],
    );
    wait_listening(metrics);
    // Alone, server 1 must not elect itself; give it several election timeouts.
    std::thread::sleep(Duration::from_secs(2));
    let st = cluster.status();
    assert_eq!(st[0]["online"], true);
    assert_eq!(st[0]["role"], "follower", "{st:?}");
    assert!(st[0]["leader"].is_null());
    cluster.start_server_with(2, &["--new-cluster"]);
    let leader = cluster.leader(Duration::from_secs(20));
    assert!(leader == 1 || leader == 2);
    let o = cluster.cli(&["put", "m", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));

    let health = http_get(metrics, "/health");
    assert!(
        health.starts_with("HTTP/1.0 200") || health.starts_with("HTTP/1.1 200"),
        "{health}"
    );
    let body = http_get(metrics, "/metrics");
    for needle in [
        "mqpaxos_messages_total{direction=\"in\",kind=\"heartbeat\"",
        "mqpaxos_messages_total{direction=\"out\"",
        "mqpaxos_ballot_round",
        "mqpaxos_commit_index",
        "mqpaxos_servers_online 2",
        "mqpaxos_executed_commands_total",
        "mqpaxos_command_latency_seconds",
    ] {
        assert!(
            body.contains(needle) || (needle.contains("heartbeat") && leader == 1),
            "metrics lack {needle}:\n{body}"
        );
    }
}

/// `mqtts://` with a CA file: Mosquitto with a TLS listener and a certificate signed by a
/// CA made for the test.
/// A CA (`ca.crt`, `ca.key`) and a certificate for localhost and 127.0.0.1 signed by it
/// (`srv.crt`, `srv.key`) in `dir`, made with openssl as docs/operations.md says.
fn make_tls_certs(dir: &std::path::Path) {
    let p = |f: &str| dir.join(f).to_string_lossy().into_owned();
    let ssl = |args: &[&str]| {
        let ok = Command::new("openssl")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl is installed");
        assert!(ok.success(), "openssl {args:?}");
    };
    ssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        &p("ca.key"),
        "-out",
        &p("ca.crt"),
    ]);
    ssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        &p("srv.key"),
        "-out",
        &p("srv.csr"),
    ]);
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .expect("ext");
    ssl(&[
        "x509",
        "-req",
        "-in",
        &p("srv.csr"),
        "-CA",
        &p("ca.crt"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &p("ext"),
        "-out",
        &p("srv.crt"),
    ]);
}

#[test]
fn tls_with_a_ca_file() {
    let d = tempfile::tempdir().expect("temp dir");
    let p = |f: &str| d.path().join(f).to_string_lossy().into_owned();
    make_tls_certs(d.path());
    let port = free_port();
    let conf = format!(
        "listener {port} 127.0.0.1\nallow_anonymous true\ncafile {}\ncertfile {}\nkeyfile {}\n\
         set_tcp_nodelay true\nmax_queued_messages 0\npersistence false\n{}",
        p("ca.crt"),
        p("srv.crt"),
        p("srv.key"),
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            "user root\n"
        } else {
            ""
        }
    );
    std::fs::write(d.path().join("m.conf"), conf).expect("conf");
    let mut mosq = Command::new("mosquitto")
        .args(["-c", &p("m.conf")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto");
    wait_listening(port);
    let url = format!("mqtts://localhost:{port}");
    let mut server = Command::new(BIN)
        .args([
            "server",
            "--id",
            "1",
            "--servers",
            "1",
            "--in-memory",
            "--broker",
            &url,
        ])
        .args(["--ca-file", &p("ca.crt"), "--cluster", "tls"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("server");
    let put = |v: &str| {
        Command::new(BIN)
            .args([
                "put",
                "k",
                v,
                "--broker",
                &url,
                "--ca-file",
                &p("ca.crt"),
                "--cluster",
                "tls",
                "--timeout",
                "20s",
            ])
            .output()
            .expect("put")
    };
    let o = put("over-tls");
    assert!(o.status.success(), "put over TLS failed: {}", stderr(&o));
    // Without the CA, the broker's certificate is not trusted.
    let o = Command::new(BIN)
        .args(["get", "k", "--broker", &url, "--timeout", "2s"])
        .output()
        .expect("get");
    let _ = server.kill();
    let _ = mosq.kill();
    let _ = server.wait();
    let _ = mosq.wait();
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr(&o).to_lowercase().contains("certificate"),
        "the refusal names the certificate: {}",
        stderr(&o)
    );
}

/// The CLI against `cluster`, as client1, with `input` on standard input.
fn cli_with_stdin(cluster: &Cluster, args: &[&str], input: &[u8]) -> std::process::Output {
    let mut child = Command::new(BIN)
        .args(args)
        .args(["--broker", &cluster.url, "--cluster", &cluster.cluster])
        .args(["--user", "client1", "--timeout", "20s"])
        .env("MQPAXOS_PASSWORD", PASSWORD)
        .env_remove("MQPAXOS_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mqpaxos");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

/// Values from a file or standard input (byte for byte, past what a command line takes),
/// and `cas KEY --absent NEW` without a dummy EXPECTED.
#[test]
fn values_from_files_and_stdin_and_cas_on_an_absent_key() {
    let broker = Broker::start(Kind::Embedded);
    let cluster = Cluster::start(&broker, 1);
    cluster.leader(Duration::from_secs(30));
    let d = tempfile::tempdir().expect("temp dir");
    let p = |f: &str| d.path().join(f).to_string_lossy().into_owned();

    // 600 KB with a trailing newline: over the ~128 KiB a single argument may hold.
    let big = format!("{}\n", "x".repeat(600_000));
    std::fs::write(p("big"), &big).expect("write");
    let o = cluster.cli(&["put", "big", "--file", &p("big")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = cluster.cli(&["get", "big"]);
    // `get` prints the value and a newline: the value's own newline was kept.
    assert_eq!(o.stdout.len(), big.len() + 1);

    let o = cli_with_stdin(&cluster, &["put", "piped", "--file", "-"], b"from stdin");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&cluster.cli(&["get", "piped"])), "from stdin");
    let o = cli_with_stdin(&cluster, &["append", "piped", "--file", "-"], b"+more");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&cluster.cli(&["get", "piped"])), "from stdin+more");

    // cas on an absent key: no dummy argument; a second time it is no longer absent.
    let o = cluster.cli(&["cas", "fresh", "--absent", "one"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = cluster.cli(&["cas", "fresh", "--absent", "two"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    std::fs::write(p("three"), "three").expect("write");
    let o = cluster.cli(&["cas", "fresh", "one", "--file", &p("three")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&cluster.cli(&["get", "fresh"])), "three");
    let o = cli_with_stdin(
        &cluster,
        &["cas", "other", "--absent", "--file", "-"],
        b"new",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&cluster.cli(&["get", "other"])), "new");

    // Usage mistakes: one line, exit 2, nothing sent.
    for args in [
        vec!["cas", "fresh", "--absent", "a", "b"],
        vec!["cas", "fresh", "only-one"],
        vec!["put", "k", "v", "--file", "f"],
        vec!["put", "k"],
    ] {
        let o = cluster.cli(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        one_line(&o);
    }
    std::fs::write(p("binary"), [0xff, 0xfe, 0x00]).expect("write");
    let o = cluster.cli(&["put", "k", "--file", &p("binary")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(one_line(&o).contains("not UTF-8"));
    let o = cluster.cli(&["put", "k", "--file", &p("missing")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(one_line(&o).contains("missing"));
}

/// Nothing listening on the broker's port is said at once, not after the whole timeout;
/// a CA file given with a plain mqtt:// URL is warned about.
#[test]
fn a_refused_connection_fails_at_once_and_tls_options_on_plain_mqtt_are_warned_about() {
    let port = free_port(); // nothing listens there
    let url = format!("mqtt://127.0.0.1:{port}");
    let started = Instant::now();
    let o = run(&["get", "k", "--broker", &url, "--timeout", "60s"]);
    let took = started.elapsed();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let e = one_line(&o);
    assert!(e.contains("connection refused") && e.contains(&url), "{e}");
    // Behaviour, not speed: "at once" means well short of the 60 s it would otherwise wait.
    assert!(took < Duration::from_secs(30), "took {took:?}");

    let o = run(&[
        "get",
        "k",
        "--broker",
        &url,
        "--ca-file",
        "/nonexistent/ca.pem",
        "--timeout",
        "2s",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.lines()
            .next()
            .is_some_and(|l| l.contains("warning: --ca-file") && l.contains("not TLS")),
        "{e}"
    );
}

/// deploy/mosquitto/mosquitto.conf as shipped (only its paths and ports moved into a temporary
/// directory), with the shipped ACL, run as user mosquitto: Mosquitto drops root for it
/// before it reads the key and the password file, so this proves the files' ownership and
/// modes that docs/operations.md gives. A server and a client over mqtts:// through it; and
/// Mosquitto says nothing at warning level about the configuration or the ACL.
#[test]
fn mosquitto_from_the_shipped_configuration_as_user_mosquitto_with_tls() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        // Only root can start Mosquitto so that it switches to its own user. CI runs as root:
        // there a skip would hide a broken configuration.
        assert!(
            std::env::var_os("CI").is_none(),
            "this test must run as root in CI (it starts Mosquitto as user mosquitto)"
        );
        eprintln!("skipped: not root, so Mosquitto cannot switch to user mosquitto");
        return;
    }
    let d = tempfile::tempdir().expect("temp dir");
    let root = d.path();
    let p = |f: &str| root.join(f).to_string_lossy().into_owned();
    let sh = |cmd: &str, args: &[&str]| {
        let ok = Command::new(cmd)
            .args(args)
            .status()
            .unwrap_or_else(|e| panic!("{cmd}: {e}"));
        assert!(ok.success(), "{cmd} {args:?}");
    };
    // The temporary directory is 0700 root: Mosquitto's user must be able to walk into it.
    sh("chmod", &["0755", &p("")]);
    std::fs::create_dir(root.join("certs")).expect("certs dir");
    make_tls_certs(&root.join("certs"));
    std::fs::rename(root.join("certs/srv.crt"), root.join("certs/server.crt")).expect("mv");
    std::fs::rename(root.join("certs/srv.key"), root.join("certs/server.key")).expect("mv");
    std::fs::write(root.join("mqpaxos.passwd"), "").expect("passwd");
    // The shipped ACL is for cluster `default`: its server users are `default-server<i>`.
    for user in ["default-server1", "client1"] {
        sh(
            "mosquitto_passwd",
            &["-b", &p("mqpaxos.passwd"), user, PASSWORD],
        );
    }
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/mosquitto/");
    std::fs::copy(format!("{shipped}acl.conf"), root.join("mqpaxos.acl")).expect("acl");
    // Owned by mosquitto, readable by nobody else: what docs/operations.md installs.
    for f in ["certs/server.key", "mqpaxos.passwd"] {
        sh("chown", &["mosquitto:mosquitto", &p(f)]);
        sh("chmod", &["0600", &p(f)]);
    }
    sh("chmod", &["0755", &p("certs")]);
    sh(
        "chmod",
        &["0644", &p("certs/server.crt"), &p("mqpaxos.acl")],
    );

    let conf = std::fs::read_to_string(format!("{shipped}mosquitto.conf")).expect("conf");
    assert!(
        !conf.contains("\nuser root"),
        "the shipped file runs as root"
    );
    let (plain, tls) = (free_port(), free_port());
    let mut moved = conf.replace("/etc/mosquitto/", &format!("{}/", p("")));
    for (from, to) in [
        (
            "\nlistener 1883 127.0.0.1\n",
            format!("\nlistener {plain} 127.0.0.1\n"),
        ),
        ("\nlistener 8883\n", format!("\nlistener {tls} 127.0.0.1\n")),
    ] {
        assert!(moved.contains(from), "the shipped file has {from:?}");
        moved = moved.replace(from, &to);
    }
    std::fs::write(root.join("mosquitto.conf"), moved).expect("conf");
    let log = std::fs::File::create(root.join("mosquitto.log")).expect("log");
    let mut mosq = Command::new("mosquitto")
        .args(["-c", &p("mosquitto.conf")])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("mosquitto is installed");
    wait_listening(tls);
    let uid = |status: &str| {
        status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(str::to_string)
    };
    let running = std::fs::read_to_string(format!("/proc/{}/status", mosq.id())).expect("proc");
    let mosquitto_uid = Command::new("id")
        .args(["-u", "mosquitto"])
        .output()
        .expect("id");
    assert_eq!(
        uid(&running),
        Some(
            String::from_utf8_lossy(&mosquitto_uid.stdout)
                .trim()
                .to_string()
        ),
        "Mosquitto runs as user mosquitto"
    );

    let url = format!("mqtts://localhost:{tls}");
    let mut server = Command::new(BIN)
        .args(["server", "--id", "1", "--servers", "1", "--in-memory"])
        .args(["--broker", &url, "--ca-file", &p("certs/ca.crt")])
        .env("MQPAXOS_PASSWORD", PASSWORD)
        .env_remove("MQPAXOS_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("server");
    let client = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .args(["--broker", &url, "--ca-file", &p("certs/ca.crt")])
            .args(["--user", "client1", "--timeout", "20s"])
            .env("MQPAXOS_PASSWORD", PASSWORD)
            .env_remove("MQPAXOS_CONFIG")
            .output()
            .expect("client")
    };
    let put = client(&["put", "k", "over-mqtts"]);
    let get = client(&["get", "k"]);
    let _ = server.kill();
    let _ = server.wait();
    let _ = mosq.kill();
    let _ = mosq.wait();
    let log = std::fs::read_to_string(root.join("mosquitto.log")).unwrap_or_default();
    assert!(put.status.success(), "put: {}\n{log}", stderr(&put));
    assert_eq!(stdout(&get), "over-mqtts", "{}\n{log}", stderr(&get));
    // Configuration and ACL problems are "Warning:" lines at start. (OpenSSL's "unexpected
    // eof" lines are this test's port probe and clients that close without a TLS goodbye.)
    assert!(!log.contains("Warning"), "Mosquitto warned:\n{log}");
    assert!(!log.contains("does not contain '%c' or '%u'"), "{log}");
    assert!(log.contains("running"), "{log}");
}

/// The servers' process ids: children of `parent` running `mqpaxos server`.
fn servers_of(parent: u32) -> Vec<u32> {
    let o = Command::new("pgrep")
        .args(["-P", &parent.to_string(), "-f", "server --id"])
        .output()
        .expect("pgrep");
    stdout(&o)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// A process that is gone (or a zombie nobody has reaped yet).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// `cluster up` killed with SIGKILL (a test's cleanup, the OOM killer, `kill -9`) must not
/// leave its servers running: they used to reconnect forever to the broker that died with it
/// (CI found three orphans of a killed test an hour later).
#[test]
fn a_killed_cluster_takes_its_servers_with_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut up = Command::new(BIN)
        .args(["cluster", "up", "--servers", "3", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env_remove("MQPAXOS_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cluster up");
    wait_listening(port);
    let deadline = Instant::now() + Duration::from_secs(30);
    let servers = loop {
        let s = servers_of(up.id());
        if s.len() == 3 {
            break s;
        }
        assert!(Instant::now() < deadline, "servers never started: {s:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    up.kill().expect("SIGKILL");
    let _ = up.wait();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !servers.iter().all(|p| gone(*p)) {
        if Instant::now() > deadline {
            for p in &servers {
                // Do not leave them behind ourselves.
                let _ = Command::new("kill").args(["-9", &p.to_string()]).status();
            }
            panic!("servers {servers:?} outlived their cluster by 20 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
