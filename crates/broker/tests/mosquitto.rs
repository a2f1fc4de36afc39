//! Compatibility with Debian's Mosquitto, so one password file and one ACL file serve both
//! brokers: files written by `mosquitto_passwd` verify here, hashes written by
//! `hash_password` log in to a real Mosquitto, and `examples/acl.conf` has the same effect in
//! Mosquitto as in the embedded broker. Each test is skipped, saying why, when the Mosquitto
//! tool it needs is not installed (`apt-get install -y mosquitto`; CI installs it).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{acl_scenario, connect, try_connect, Opts, WAIT};
use mqpaxos_broker::PasswordFile;
use rumqttc::ConnectReturnCode;

fn find(tool: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(tool))
        .find(|p| p.exists())
}

/// Runs `mosquitto_passwd -b [-c] [-H algo] file user password`.
fn mosquitto_passwd(tool: &Path, file: &Path, user: &str, password: &str, hash: Option<&str>) {
    let mut cmd = Command::new(tool);
    if !file.exists() {
        cmd.arg("-c");
    }
    if let Some(algo) = hash {
        cmd.args(["-H", algo]);
    }
    let out = cmd
        .arg("-b")
        .arg(file)
        .args([user, password])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mosquitto_passwd failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Mosquitto on a free loopback port, killed when dropped.
struct Mosquitto {
    child: std::process::Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_mosquitto(bin: &Path, password_file: &Path, acl_file: Option<&Path>) -> Mosquitto {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut conf = format!(
        "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\n\
         set_tcp_nodelay true\nmax_queued_messages 0\npersistence false\nuser root\n",
        password_file.display()
    );
    if let Some(acl) = acl_file {
        conf.push_str(&format!("acl_file {}\n", acl.display()));
    }
    let conf_path = dir.path().join("mosquitto.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let m = Mosquitto {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        _dir: dir,
    };
    let deadline = Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(m.addr).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "mosquitto did not start listening"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    m
}

#[test]
fn files_written_by_mosquitto_passwd_verify_here() {
    // The test command installs Mosquitto (scripts/install-deps): missing, this must fail,
    // not pass by skipping.
    let tool = find("mosquitto_passwd").expect(
        "mosquitto_passwd is installed (scripts/install-deps: apt-get install -y mosquitto)",
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    mosquitto_passwd(&tool, &file, "alice", "correct horse", None);
    mosquitto_passwd(&tool, &file, "bob", "s3cr3t:with$odd chars", Some("sha512"));
    mosquitto_passwd(&tool, &file, "carol", "pbkdf2", Some("sha512-pbkdf2"));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("alice:$7$") && text.contains("bob:$6$"),
        "{text}"
    );

    let pw = PasswordFile::load(&file).unwrap();
    assert!(pw.verify("alice", b"correct horse"));
    assert!(!pw.verify("alice", b"correct horse "));
    assert!(pw.verify("bob", b"s3cr3t:with$odd chars"));
    assert!(!pw.verify("bob", b"s3cr3t"));
    assert!(pw.verify("carol", b"pbkdf2"));
    assert!(!pw.verify("carol", b"correct horse"));
}

#[tokio::test]
async fn hashes_written_here_log_in_to_mosquitto() {
    let bin = find("mosquitto")
        .expect("mosquitto is installed (scripts/install-deps: apt-get install -y mosquitto)");
    let dir = tempfile::tempdir().unwrap();
    let file = common::write_password_file(dir.path(), &[("dave", "hunter2")]);
    let m = start_mosquitto(&bin, &file, None).await;
    connect(m.addr, Opts::login("dave", "hunter2")).await;
    // Mosquitto 2.0 answers a wrong password with "not authorized" (5) where the embedded
    // broker says "bad user name or password" (4): clients must treat both as refusals.
    let refused = try_connect(m.addr, Opts::login("dave", "hunter3"))
        .await
        .err();
    assert!(
        matches!(
            refused,
            Some(ConnectReturnCode::NotAuthorized | ConnectReturnCode::BadUserNamePassword)
        ),
        "{refused:?}"
    );
}

#[tokio::test]
async fn example_acl_has_the_same_effect_in_mosquitto() {
    let bin = find("mosquitto")
        .expect("mosquitto is installed (scripts/install-deps: apt-get install -y mosquitto)");
    let dir = tempfile::tempdir().unwrap();
    let file = common::write_password_file(dir.path(), common::USERS);
    let m = start_mosquitto(&bin, &file, Some(&common::example_acl())).await;
    acl_scenario(m.addr).await;
}
