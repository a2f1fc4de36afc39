//! `mqpaxos acl`: print the broker ACL the topic layout needs, for Mosquitto (and the
//! built-in broker) or EMQX, generated from the code.

use super::{fail, CmdResult};
use crate::cmd::Exit;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// mosquitto (also read by the built-in broker) or emqx (EMQX 5 file authorization).
    #[arg(long, env = "MQPAXOS_FORMAT", default_value = "mosquitto", value_parser = ["mosquitto", "emqx"])]
    pub format: String,
    /// Servers 1..=N of each cluster get server rights, as users <cluster>-server<i>.
    #[arg(long, env = "MQPAXOS_SERVERS", default_value_t = 9)]
    pub servers: u32,
    /// The cluster(s) the rules are for; repeat for several clusters on one broker. Every
    /// rule names its cluster, so nobody gets rights in a cluster not listed here.
    #[arg(
        long,
        env = "MQPAXOS_CLUSTER",
        default_value = "default",
        value_delimiter = ','
    )]
    pub cluster: Vec<String>,
    /// Extra users that may read the servers' presence and status (`mqpaxos status`, a
    /// monitoring user); repeat or separate with commas. The servers and `operator` always
    /// may; other users may not.
    #[arg(long, env = "MQPAXOS_READER", value_delimiter = ',')]
    pub reader: Vec<String>,
    /// USER:PREFIX: USER may read the watch events and the retained view of the keys under
    /// PREFIX (whole levels, e.g. `dash:config`; `dash:` for every key); repeat or separate
    /// with commas. Only these users may.
    #[arg(long, env = "MQPAXOS_WATCH_READER", value_delimiter = ',')]
    pub watch_reader: Vec<String>,
}

pub async fn run(a: Args) -> CmdResult {
    if a.servers == 0 || a.servers > mqpaxos_core::Config::MAX_SERVERS {
        return Err(fail(Exit::Usage, "--servers must be 1 to 255"));
    }
    if let Some(bad) = a
        .cluster
        .iter()
        .find(|c| !mqpaxos_node::acl::valid_cluster(c))
    {
        return Err(fail(
            Exit::Usage,
            format!(
                "cluster name {bad:?} cannot go into an ACL: use letters, digits, '-', '_' and '.'"
            ),
        ));
    }
    if let Some(bad) = a
        .reader
        .iter()
        .find(|r| !mqpaxos_node::acl::valid_cluster(r))
    {
        return Err(fail(
            Exit::Usage,
            format!(
                "user name {bad:?} cannot go into an ACL: use letters, digits, '-', '_' and '.'"
            ),
        ));
    }
    let watchers = a
        .watch_reader
        .iter()
        .map(|w| mqpaxos_node::acl::WatchGrant::parse(w))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(Exit::Usage, format!("--watch-reader {e}")))?;
    let text = match a.format.as_str() {
        "emqx" => mqpaxos_node::acl::emqx(&a.cluster, a.servers, &a.reader, &watchers),
        _ => mqpaxos_node::acl::mosquitto(&a.cluster, a.servers, &a.reader, &watchers),
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}
