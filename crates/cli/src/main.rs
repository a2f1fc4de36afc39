//! `mqpaxos`: one binary for the broker, the servers, the client commands and the local
//! cluster. Every flag can also be set by an `MQPAXOS_*` environment variable or in a TOML
//! file given with `--config` (command line first, then environment, then file).

mod charts;
mod cmd;
mod config;
mod connect;
mod launch;
#[cfg(feature = "embedded-broker")]
mod local_cluster;
mod metrics;

use crate::cmd::Exit;
use clap::{Parser, Subcommand};
use std::process::ExitCode;

// Every server, the built-in broker and the bench allocate per message; see Cargo.toml.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "mqpaxos",
    version,
    about = "A replicated key/value store: Multi-Paxos over MQTT",
    propagate_version = true
)]
struct Cli {
    /// TOML file with settings (keys are the long flag names, e.g. broker = "mqtt://...").
    #[arg(long, global = true, env = "MQPAXOS_CONFIG")]
    config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process; boxing the large argument structs would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// Run the built-in MQTT broker.
    #[cfg(feature = "embedded-broker")]
    Broker(cmd::broker::Args),
    /// Run one Paxos server.
    Server(cmd::server::Args),
    /// Set a key.
    Put(cmd::kv::PutArgs),
    /// Print a key's value, or with -o json its revisions too (exit 1 if it does not exist).
    Get(cmd::kv::GetArgs),
    /// Append to a key's value (a missing key counts as empty).
    Append(cmd::kv::PutArgs),
    /// Delete a key (exit 1 if it did not exist).
    Delete(cmd::kv::KeyArgs),
    /// Compare and swap: set KEY to NEW if its value is EXPECTED, with --absent if KEY does
    /// not exist, with --revision REV if its last change is REV (exit 1 if not swapped).
    Cas(cmd::kv::CasArgs),
    /// Print every change of KEY (or of the keys under a prefix) as it is committed, in
    /// revision order, resuming by itself across failover, as `etcdctl watch` does.
    Watch(cmd::kv::WatchArgs),
    /// Backups: save a consistent copy of the state, check a file, restore a data directory.
    #[command(subcommand)]
    Snapshot(cmd::snapshot::Action),
    /// The reference experiment on real processes: faults, partitions, and a verdict.
    Chaos(cmd::chaos::Args),
    /// Print the broker ACL (Mosquitto or EMQX) that the topic layout needs.
    Acl(cmd::acl::Args),
    /// Measure throughput and latency: own local cluster, a running one, or (feature compare) etcd/NATS.
    Bench(cmd::bench::Args),
    /// Ask each server now: role, ballot, leader, positions, data size, version, health (exit 3
    /// unless a majority answers).
    Status(cmd::status::Args),
    /// A linearizable read through the cluster and its latency (exit 3 if it fails).
    Health(cmd::health::Args),
    /// A local cluster: the built-in broker and N servers.
    #[cfg(feature = "embedded-broker")]
    #[command(subcommand)]
    Cluster(cmd::cluster::Action),
    /// Measure failover: kill -9 the leader again and again, time until the next write commits.
    #[cfg(feature = "embedded-broker")]
    Failover(cmd::failover::Args),
}

const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// The log filter from `MQPAXOS_LOG`: a level (`info`), or comma-separated `target=level`
/// directives (`info,mqpaxos_node=debug`). tracing's own parser takes any bare word as a
/// target name, so a misspelt level would silently log nothing: every directive must name a
/// known level.
fn log_filter(spec: Option<&str>) -> Result<tracing_subscriber::EnvFilter, LogFilterError> {
    let Some(spec) = spec.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(tracing_subscriber::EnvFilter::new("warn,mqtt5=error"));
    };
    let bad = |why: LogFilterWhy| LogFilterError {
        spec: spec.to_string(),
        why,
    };
    for directive in spec.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let level = directive.rsplit_once('=').map_or(directive, |(_, l)| l);
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(bad(LogFilterWhy::UnknownLevel(level.to_string())));
        }
    }
    tracing_subscriber::EnvFilter::try_new(spec).map_err(|e| bad(LogFilterWhy::Parse(e)))
}

/// A `MQPAXOS_LOG` that [`log_filter`] refuses, with the levels it would take.
#[derive(Debug, thiserror::Error)]
#[error(
    "MQPAXOS_LOG={spec:?}: {why} (use one of {}, or target=level directives separated by commas)",
    LEVELS.join(", ")
)]
struct LogFilterError {
    spec: String,
    why: LogFilterWhy,
}

#[derive(Debug, thiserror::Error)]
enum LogFilterWhy {
    /// A directive whose level is none of [`LEVELS`] (tracing would read it as a target).
    #[error("unknown level {0:?}")]
    UnknownLevel(String),
    #[error("{0}")]
    Parse(tracing_subscriber::filter::ParseError),
}

fn main() -> ExitCode {
    // Settings from a file become environment defaults before clap reads the environment.
    if let Err(e) = config::load_file_into_env(<Cli as clap::CommandFactory>::command()) {
        eprintln!("mqpaxos: {e}");
        return Exit::Usage.into();
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                e.exit();
            }
            // One clear line, not clap's usage block.
            let text = e.render().to_string();
            let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
            let mut first = lines
                .next()
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ")
                .to_string();
            if first.ends_with(':') {
                first = format!("{first} {}", lines.next().unwrap_or(""));
            }
            eprintln!("mqpaxos: {first} (see mqpaxos --help)");
            return Exit::Usage.into();
        }
    };
    let filter = match log_filter(std::env::var("MQPAXOS_LOG").ok().as_deref()) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("mqpaxos: {e}");
            return Exit::Usage.into();
        }
    };
    // Colour only for a person at a terminal: a file or a log collector gets plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .init();
    // A server's work is one event loop; on one thread it never waits for a hand-off
    // between threads (`mqpaxos server --threads`, docs/speed.md). Everything else (the
    // bench's many clients, the broker) spreads over the cores.
    let mut builder = match &cli.command {
        Command::Server(a) if a.threads == 1 => tokio::runtime::Builder::new_current_thread(),
        Command::Server(a) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(usize::from(a.threads));
            b
        }
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mqpaxos: cannot start the async runtime: {e}");
            return Exit::Failed.into();
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            #[cfg(feature = "embedded-broker")]
            Command::Broker(a) => cmd::broker::run(a).await,
            Command::Server(a) => cmd::server::run(a).await,
            Command::Put(a) => cmd::kv::put(a).await,
            Command::Get(a) => cmd::kv::get(a).await,
            Command::Append(a) => cmd::kv::append(a).await,
            Command::Delete(a) => cmd::kv::delete(a).await,
            Command::Cas(a) => cmd::kv::cas(a).await,
            Command::Watch(a) => cmd::kv::watch(a).await,
            Command::Status(a) => cmd::status::run(a).await,
            Command::Health(a) => cmd::health::run(a).await,
            Command::Snapshot(a) => cmd::snapshot::run(a).await,
            Command::Bench(a) => cmd::bench::run(a).await,
            Command::Acl(a) => cmd::acl::run(a).await,
            Command::Chaos(a) => cmd::chaos::run(a).await,
            #[cfg(feature = "embedded-broker")]
            Command::Cluster(a) => cmd::cluster::run(a).await,
            #[cfg(feature = "embedded-broker")]
            Command::Failover(a) => cmd::failover::run(a).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mqpaxos: {}", e.message);
            e.code.into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::collections::BTreeSet;

    /// Every flag's variable, and the flags that break the rule, over the whole command tree.
    fn walk(cmd: &clap::Command, path: &str, vars: &mut BTreeSet<String>, bad: &mut Vec<String>) {
        for a in cmd.get_arguments() {
            let Some(long) = a.get_long() else { continue };
            if long == "help" || long == "version" {
                continue;
            }
            let want = format!("MQPAXOS_{}", long.to_uppercase().replace('-', "_"));
            match a.get_env().map(|e| e.to_string_lossy().into_owned()) {
                Some(env) if env == want => {
                    vars.insert(env);
                }
                other => bad.push(format!("{path} --{long}: {other:?}, not {want}")),
            }
        }
        for s in cmd.get_subcommands() {
            walk(s, &format!("{path} {}", s.get_name()), vars, bad);
        }
    }

    /// One rule for every environment variable: flag `--foo-bar` is `MQPAXOS_FOO_BAR`, in
    /// every command, and docs/operations.md lists every one of them.
    #[test]
    fn every_flag_has_the_variable_its_name_says_and_the_docs_list_it() {
        let mut vars = BTreeSet::new();
        let mut bad = Vec::new();
        walk(&Cli::command(), "mqpaxos", &mut vars, &mut bad);
        assert!(
            bad.is_empty(),
            "flags off the MQPAXOS_<FLAG> rule:\n{}",
            bad.join("\n")
        );
        assert!(vars.len() > 50, "the walk found only {vars:?}");
        let docs = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/operations.md"
        ))
        .expect("docs/operations.md");
        let missing: Vec<&String> = vars
            .iter()
            .filter(|v| !docs.contains(&format!("`{v}`")))
            .collect();
        assert!(
            missing.is_empty(),
            "docs/operations.md does not list {missing:?}"
        );
    }

    #[test]
    fn log_levels_are_checked() {
        for good in [
            None,
            Some(""),
            Some("info"),
            Some("WARN"),
            Some("warn,mqpaxos_node=debug"),
        ] {
            assert!(log_filter(good).is_ok(), "{good:?}");
        }
        for bad in ["verbose", "info,mqpaxos_node=loud", "inf"] {
            let e = log_filter(Some(bad)).expect_err(bad);
            assert!(matches!(e.why, LogFilterWhy::UnknownLevel(_)), "{e}");
            assert!(e.to_string().contains("unknown level"), "{e}");
        }
    }
}
