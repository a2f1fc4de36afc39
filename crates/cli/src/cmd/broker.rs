//! `mqpaxos broker`: the built-in MQTT broker, for one-machine use; and
//! `mqpaxos broker --password-file F --add-user U`, which writes a user into a password file.

use super::{fail, stop_signal, write_private, CmdResult, Failure};
use crate::cmd::Exit;
use mqpaxos_broker::{Broker, BrokerConfig, TlsListener};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address to listen on (port 0 picks a free port). Any address but loopback needs
    /// --password-file.
    #[arg(long, env = "MQPAXOS_LISTEN", default_value = "127.0.0.1:1883")]
    pub listen: SocketAddr,
    /// Mosquitto-format password file (`mosquitto_passwd`, or `--add-user`); without it
    /// anyone may connect, which is refused off loopback. (MQPAXOS_BROKER_PASSWORD_FILE, its
    /// old variable, still works, with a warning.)
    #[arg(long, env = "MQPAXOS_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
    /// Mosquitto-format ACL file (`mqpaxos acl`); needs --password-file, or any client could
    /// claim any user name.
    #[arg(long, env = "MQPAXOS_ACL_FILE")]
    pub acl_file: Option<PathBuf>,
    /// Certificate chain (PEM) for a TLS listener on --tls-listen; needs --tls-key.
    #[arg(long, env = "MQPAXOS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, env = "MQPAXOS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Where the TLS listener listens (clients use mqtts://HOST:PORT).
    #[arg(long, env = "MQPAXOS_TLS_LISTEN", default_value = "127.0.0.1:8883")]
    pub tls_listen: SocketAddr,
    /// Instead of running a broker: add (or replace) this user in --password-file, with the
    /// password from MQPAXOS_PASSWORD or else the first line of standard input, and exit.
    #[arg(long, env = "MQPAXOS_ADD_USER")]
    pub add_user: Option<String>,
}

/// The variable that named the password file before every variable followed its flag.
const OLD_PASSWORD_FILE_VAR: &str = "MQPAXOS_BROKER_PASSWORD_FILE";

pub async fn run(mut a: Args) -> CmdResult {
    if a.password_file.is_none() {
        if let Some(old) = std::env::var_os(OLD_PASSWORD_FILE_VAR).filter(|v| !v.is_empty()) {
            eprintln!(
                "mqpaxos: warning: {OLD_PASSWORD_FILE_VAR} is deprecated; set MQPAXOS_PASSWORD_FILE (the --password-file flag's variable)"
            );
            a.password_file = Some(PathBuf::from(old));
        }
    }
    match (&a.add_user, &a.password_file) {
        (Some(user), Some(file)) => return add_user(file, user),
        (Some(_), None) => return Err(fail(Exit::Usage, "--add-user needs --password-file")),
        _ => {}
    }
    let tls = match (a.tls_cert, a.tls_key) {
        (Some(cert_file), Some(key_file)) => Some(TlsListener {
            listen: a.tls_listen,
            cert_file,
            key_file,
        }),
        _ => None,
    };
    let cfg = BrokerConfig {
        listen: a.listen,
        tls,
        password_file: a.password_file,
        acl_file: a.acl_file,
        ..BrokerConfig::default()
    };
    if cfg.password_file.is_some() && !cfg.listen.ip().is_loopback() && cfg.tls.is_none() {
        eprintln!(
            "mqpaxos: warning: passwords cross the network in the clear on mqtt://{}; \
             add a TLS listener (--tls-cert, --tls-key) for clients beyond this machine",
            cfg.listen
        );
    }
    let broker = Broker::start(cfg)
        .await
        .map_err(|e| fail(Exit::Usage, e.to_string()))?;
    eprintln!(
        "mqpaxos: broker listening on mqtt://{}",
        broker.local_addr()
    );
    if let Some(tls) = broker.tls_local_addr() {
        eprintln!("mqpaxos: broker listening on mqtts://{tls}");
    }
    stop_signal().await;
    broker
        .shutdown()
        .await
        .map_err(|e| fail(Exit::Failed, format!("broker shutdown: {e}")))?;
    Ok(ExitCode::SUCCESS)
}

/// Writes `user` with a fresh hash of the password into `file` (created private if
/// missing), replacing any line the user had.
fn add_user(file: &Path, user: &str) -> CmdResult {
    if user.is_empty() || user.contains([':', '\n', '\r']) || user.trim() != user {
        return Err(fail(
            Exit::Usage,
            format!("user name {user:?} cannot go into a password file"),
        ));
    }
    let password = match std::env::var("MQPAXOS_PASSWORD") {
        Ok(p) => p,
        Err(_) => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).map_err(|e| {
                fail(
                    Exit::Usage,
                    format!("cannot read the password from stdin: {e}"),
                )
            })?;
            line.trim_end_matches(['\n', '\r']).to_string()
        }
    };
    if password.is_empty() {
        return Err(fail(
            Exit::Usage,
            "no password: set MQPAXOS_PASSWORD or give it on standard input",
        ));
    }
    let line = format!("{user}:{}", mqpaxos_broker::hash_password(&password));
    set_user_line(file, user, &line)?;
    eprintln!("mqpaxos: {} now holds user {user}", file.display());
    Ok(ExitCode::SUCCESS)
}

/// Replaces (or appends) `user`'s line of password file `file`, keeping the file private.
pub fn set_user_line(file: &Path, user: &str, line: &str) -> Result<(), Failure> {
    let old = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(fail(
                Exit::Usage,
                format!("cannot read {}: {e}", file.display()),
            ))
        }
    };
    let prefix = format!("{user}:");
    let mut text: String = old
        .lines()
        .filter(|l| !l.trim_start().starts_with(&prefix))
        .map(|l| format!("{l}\n"))
        .collect();
    text.push_str(line);
    text.push('\n');
    write_private(file, text.as_bytes())
}
