//! `mqpaxos`: one binary for the broker, the servers, the client commands and the local
//! cluster. Every flag can also be set by an `MQPAXOS_*` environment variable or in a TOML
//! file given with `--config` (command line first, then environment, then file).

mod cmd;
mod config;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

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
    /// Print a key's value (exit 1 if it does not exist).
    Get(cmd::kv::KeyArgs),
    /// Append to a key's value (a missing key counts as empty).
    Append(cmd::kv::PutArgs),
    /// Delete a key (exit 1 if it did not exist).
    Delete(cmd::kv::KeyArgs),
    /// Compare and swap: set KEY to NEW if its value is EXPECTED, or with --absent if KEY
    /// does not exist (exit 1 if not swapped).
    Cas(cmd::kv::CasArgs),
    /// Backups: save a consistent copy of the state, check a file, restore a data directory.
    Snapshot(cmd::snapshot::Args),
    /// The seed's experiment on real processes: faults, partitions, and a verdict.
    Chaos(cmd::chaos::Args),
    /// Print the broker ACL (Mosquitto or EMQX) that the topic layout needs.
    Acl(cmd::acl::Args),
    /// Measure throughput and latency: own local cluster, a running one, or (feature compare) etcd/NATS.
    Bench(cmd::bench::Args),
    /// Show each server: online, ballot, leader, commit and execute positions.
    Status(cmd::status::Args),
    /// A local cluster: the built-in broker and N servers.
    #[cfg(feature = "embedded-broker")]
    Cluster(cmd::cluster::Args),
    /// Measure failover: kill -9 the leader again and again, time until the next write commits.
    #[cfg(feature = "embedded-broker")]
    Failover(cmd::failover::Args),
}

fn main() -> ExitCode {
    // Settings from a file become environment defaults before clap reads the environment.
    if let Err(e) = config::load_file_into_env(<Cli as clap::CommandFactory>::command()) {
        eprintln!("mqpaxos: {e}");
        return ExitCode::from(2);
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
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("MQPAXOS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,mqtt5=error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mqpaxos: cannot start the async runtime: {e}");
            return ExitCode::from(4);
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
            Command::Status(a) => cmd::status::run(a).await,
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
            ExitCode::from(e.code)
        }
    }
}
