//! `mqpaxos snapshot save|status|restore`: backups of a cluster's state and disaster
//! recovery from them (the file format and the restore are `mqpaxos_node::backup`).

use super::{fail, CmdResult, Failure};
use crate::cmd::Exit;
use crate::connect::{client_failure, connect, ClientArgs};
use mqpaxos_node::backup::{self, BackupError};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
pub enum Action {
    /// Save a linearizable point-in-time copy of the cluster's state to FILE.
    Save {
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Check FILE (format, checksum) and print what it holds.
    Status {
        file: PathBuf,
        /// Print the file's header as JSON.
        #[arg(long, env = "MQPAXOS_JSON")]
        json: bool,
    },
    /// Write a new data directory for one server of a new cluster from FILE.
    Restore {
        file: PathBuf,
        /// The server this directory is for (restore every server of the new cluster from
        /// the same file).
        #[arg(long, env = "MQPAXOS_ID")]
        id: u32,
        /// The new directory (default: ./mqpaxos-data/<cluster>/server<id>, as `mqpaxos
        /// server`); it must not exist or be empty.
        #[arg(long, env = "MQPAXOS_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// The new cluster's name (default: the one the backup was taken from).
        #[arg(long, env = "MQPAXOS_CLUSTER")]
        cluster: Option<String>,
    },
}

pub async fn run(action: Action) -> CmdResult {
    match action {
        Action::Save { file, client } => save(file, client).await,
        Action::Status { file, json } => status(file, json),
        Action::Restore {
            file,
            id,
            data_dir,
            cluster,
        } => restore(file, id, data_dir, cluster),
    }
}

fn backup_failure(e: BackupError) -> Failure {
    let code = match e {
        BackupError::Io { .. } | BackupError::Storage(_) => Exit::Failed,
        _ => Exit::Usage,
    };
    fail(code, e.to_string())
}

async fn save(file: PathBuf, a: ClientArgs) -> CmdResult {
    let c = connect(&a).await?;
    let r = c.snapshot().await;
    c.close().await;
    let (next_slot, encoded) = r.map_err(client_failure)?;
    let snapshot = mqpaxos_core::decode_snapshot(&encoded)
        .filter(|s| s.next_slot == next_slot)
        .ok_or_else(|| {
            fail(
                Exit::Failed,
                "the copy the cluster sent does not decode".to_string(),
            )
        })?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let bytes = backup::encode(&a.conn.cluster, &snapshot, &encoded, now);
    backup::write(&file, &bytes).map_err(backup_failure)?;
    println!(
        "saved {}: cluster {:?}, slot {next_slot}, {} keys, {} bytes",
        file.display(),
        a.conn.cluster,
        snapshot.kv.len(),
        bytes.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn status(file: PathBuf, json: bool) -> CmdResult {
    let b = backup::read(&file).map_err(backup_failure)?;
    let h = &b.header;
    if json {
        let text =
            serde_json::to_string_pretty(h).map_err(|e| fail(Exit::Failed, e.to_string()))?;
        println!("{text}");
    } else {
        println!("file      {}", file.display());
        println!("checksum  ok (SHA-256), format {}", backup::FORMAT);
        println!("cluster   {}", h.cluster);
        println!(
            "slot      {} (the copy holds every slot before it)",
            h.next_slot
        );
        println!("keys      {}", h.keys);
        println!("sessions  {} (a restore drops them)", h.sessions);
        println!("size      {} bytes of state", h.snapshot_bytes);
        println!(
            "saved at  {} (Unix time) by mqpaxos {}",
            h.saved_at_unix, h.version
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn restore(
    file: PathBuf,
    id: u32,
    data_dir: Option<PathBuf>,
    cluster: Option<String>,
) -> CmdResult {
    let b = backup::read(&file).map_err(backup_failure)?;
    let cluster = cluster.unwrap_or_else(|| b.header.cluster.clone());
    if !mqpaxos_node::topics::valid_level(&cluster) {
        return Err(fail(
            Exit::Usage,
            format!("cluster name {cluster:?} cannot be part of a topic"),
        ));
    }
    if id == 0 {
        return Err(fail(Exit::Usage, "--id must be 1 or more"));
    }
    let user = mqpaxos_node::topics::server_name(id);
    let dir = data_dir.unwrap_or_else(|| PathBuf::from("mqpaxos-data").join(&cluster).join(user));
    // The session table's bound travels in the snapshot; this only sizes an empty store.
    backup::restore(&b, &dir, &cluster, id, 100_000).map_err(backup_failure)?;
    println!(
        "restored {} into {}: server {id} of cluster {cluster:?}, slot {}, {} keys",
        file.display(),
        dir.display(),
        b.header.next_slot,
        b.header.keys
    );
    Ok(ExitCode::SUCCESS)
}
