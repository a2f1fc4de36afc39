//! The CLI and a server on their own: error paths, config files, readiness, metrics, TLS.

mod common;

use common::*;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env_remove("MQPAXOS_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("run mqpaxos")
}

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

fn http_get(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect metrics");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").expect("send");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
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
#[test]
fn tls_with_a_ca_file() {
    let d = tempfile::tempdir().expect("temp dir");
    let p = |f: &str| d.path().join(f).to_string_lossy().into_owned();
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
        d.path().join("ext"),
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
