//! The broker ACL that the topic layout needs, generated from the code so that the files
//! operators install (Mosquitto, EMQX) cannot drift from the topics the nodes really use.
//!
//! Least privilege, per cluster (every rule names its cluster: no `+` for it, so the users
//! of one cluster cannot write into another's topics, and a server's user name names its
//! cluster too, `<cluster>-server<i>`, so no server credential is valid in two clusters):
//! - every user: publish its own requests (postcard and JSON; to all servers or to the
//!   leader alone) and read its own replies and the leader announcements among them (`%u`
//!   rules).
//! - the servers, the [`OPERATOR`] and any extra readers named (monitoring users): read the
//!   servers' presence and status (for `mqpaxos status`). Not every user: Mosquitto can
//!   grant a topic to every user only by a `pattern` line without `%u` or `%c`, which it
//!   warns about at every start, and clients of the key/value API do not need the cluster's
//!   inner state. Nothing retained that a server reads is writable by clients: presence and
//!   status are written by servers only, so no client can park a message that every server
//!   receives on every reconnect.
//! - server `i` (user `<cluster>-server<i>`) only: its own presence and status, read every
//!   request, publish replies,
//!   publish Paxos messages under its own name, read the broadcasts and its own inbox, and
//!   read the fault-injection switches (it subscribes only when started with
//!   `--allow-fault-injection`).
//! - the [`OPERATOR`] only: publish the fault-injection switches.
//! - watchers named with a key prefix ([`WatchGrant`], `mqpaxos acl --watch-reader
//!   USER:PREFIX`): read the watch events and the retained view of the keys under it. Nobody
//!   else: the changes of a store can be a tenant's business even where gets are open, so
//!   who may follow them is the operator's choice. Only the servers publish there. Each
//!   such watcher may also register, retained under its own name (`watching/<user>/+`),
//!   which keys it follows, and the servers read every registration: only watchers the
//!   operator named can make the leader publish, or park retained messages the servers read.

use std::fmt::Write;

/// Who a rule is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Who {
    /// Every user; `{user}` in the filter stands for the connecting user's name.
    Everyone,
    User(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Subscribe and receive.
    Read,
    Publish,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub who: Who,
    pub access: Access,
    /// A topic filter; `{user}` is the connecting user's name.
    pub filter: String,
}

const USER: &str = "{user}";

/// What every user may do in each cluster, under `mqpaxos/<cluster>/`; `{u}` stands for the
/// user's own name.
const EVERYONE_RULES: [(Access, &str); 5] = [
    (Access::Publish, "request/{u}"),
    // A command for the announced leader alone (`request/<user>/server<i>`).
    (Access::Publish, "request/{u}/+"),
    (Access::Read, "reply/{u}/#"),
    (Access::Publish, "json/request/{u}"),
    (Access::Read, "json/reply/{u}/#"),
];

/// What server `i` of a cluster may do, under `mqpaxos/<cluster>/`; `{s}` stands for its
/// name in the topics, `server<i>`.
const SERVER_RULES: [(Access, &str); 14] = [
    (Access::Publish, "presence/{s}"),
    (Access::Publish, "status/{s}"),
    (Access::Read, "request/+"),
    (Access::Read, "request/+/{s}"),
    (Access::Publish, "reply/#"),
    (Access::Read, "json/request/+"),
    (Access::Publish, "json/reply/#"),
    (Access::Publish, "peer/+/{s}"),
    (Access::Read, "peer/all/+"),
    (Access::Read, "peer/{s}/+"),
    (Access::Read, "chaos"),
    (Access::Publish, "watch/#"),
    (Access::Publish, "view/#"),
    (Access::Read, "watching/+/+"),
];

/// A user allowed to read the watch events and retained view of the keys under `prefix`
/// (whole topic levels: `config` grants `config` and `config/...`; empty: every key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchGrant {
    pub user: String,
    pub prefix: String,
}

/// Why a `--watch-reader` grant was refused: the ACL files would not mean what it says.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WatchGrantError {
    #[error("{0:?}: expected USER:PREFIX (an empty prefix: every key)")]
    NoColon(String),
    #[error("user name {0:?} cannot go into an ACL: use letters, digits, '-', '_' and '.'")]
    BadUser(String),
    #[error(
        "key prefix {0:?} cannot go into an ACL: whole levels of letters, digits, '-', '_' and \
         '.', separated by '/'"
    )]
    BadPrefix(String),
}

impl WatchGrant {
    /// Reads `USER:PREFIX` (the `--watch-reader` flag). The prefix is whole levels of
    /// letters, digits, `-`, `_`, `.` and `/`, so it means the same to MQTT, Mosquitto and
    /// EMQX (no wildcard, no quoting).
    pub fn parse(s: &str) -> Result<WatchGrant, WatchGrantError> {
        let (user, prefix) = s
            .split_once(':')
            .ok_or_else(|| WatchGrantError::NoColon(s.to_string()))?;
        if !valid_cluster(user) {
            return Err(WatchGrantError::BadUser(user.to_string()));
        }
        let prefix = prefix.trim_end_matches('/');
        let ok = prefix.len() <= 512
            && prefix
                .split('/')
                .all(|l| prefix.is_empty() || valid_cluster(l));
        if !ok {
            return Err(WatchGrantError::BadPrefix(prefix.to_string()));
        }
        Ok(WatchGrant {
            user: user.to_string(),
            prefix: prefix.to_string(),
        })
    }

    /// The topic filters under `mqpaxos/<cluster>/` it grants.
    fn filters(&self) -> [String; 2] {
        let tail = if self.prefix.is_empty() {
            "#".to_string()
        } else {
            format!("{}/#", self.prefix)
        };
        [format!("watch/{tail}"), format!("view/{tail}")]
    }
}

/// The administrator user: the only one that may publish fault-injection settings.
pub const OPERATOR: &str = "operator";

/// Whether `cluster` can be written into an ACL file as it is: letters, digits, `-`, `_`
/// and `.` only, so that no character means something to Mosquitto (`%u`, spaces) or EMQX
/// (`${username}`, quotes) or to MQTT (`+`, `#`, `/`).
pub fn valid_cluster(cluster: &str) -> bool {
    !cluster.is_empty()
        && cluster.len() <= 128
        && cluster
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Every rule, for clusters `clusters` with servers `server1..=server{servers}` (users
/// `<cluster>-server<i>`) and the extra users `readers` that may read presence and status,
/// ordered by who they are for (everyone first, then the operator, then the readers, then
/// each cluster's servers).
pub fn rules(
    clusters: &[String],
    servers: u32,
    readers: &[String],
    watchers: &[WatchGrant],
) -> Vec<Rule> {
    let mut r = Vec::new();
    for c in clusters {
        r.extend(EVERYONE_RULES.map(|(access, filter)| Rule {
            who: Who::Everyone,
            access,
            filter: format!("mqpaxos/{c}/{}", filter.replace("{u}", USER)),
        }));
    }
    let observe = |r: &mut Vec<Rule>, user: &str, c: &str| {
        for topic in ["presence/+", "status/+"] {
            r.push(Rule {
                who: Who::User(user.to_string()),
                access: Access::Read,
                filter: format!("mqpaxos/{c}/{topic}"),
            });
        }
    };
    for c in clusters {
        r.push(Rule {
            who: Who::User(OPERATOR.into()),
            access: Access::Publish,
            filter: format!("mqpaxos/{c}/chaos"),
        });
        observe(&mut r, OPERATOR, c);
    }
    let servers_users: Vec<String> = clusters
        .iter()
        .flat_map(|c| (1..=servers).map(move |i| crate::topics::server_user(c, i)))
        .collect();
    for reader in readers {
        if reader == OPERATOR || servers_users.contains(reader) {
            continue;
        }
        for c in clusters {
            observe(&mut r, reader, c);
        }
    }
    let mut registering: Vec<&str> = Vec::new();
    for w in watchers {
        for c in clusters {
            if !registering.contains(&w.user.as_str()) {
                // Its registrations, under its own name: which keys it follows.
                r.push(Rule {
                    who: Who::User(w.user.clone()),
                    access: Access::Publish,
                    filter: format!("mqpaxos/{c}/watching/{}/+", w.user),
                });
            }
            for f in w.filters() {
                r.push(Rule {
                    who: Who::User(w.user.clone()),
                    access: Access::Read,
                    filter: format!("mqpaxos/{c}/{f}"),
                });
            }
        }
        registering.push(&w.user);
    }
    for c in clusters {
        for i in 1..=servers {
            // The user names the cluster (`<cluster>-server<i>`) and the topics name the
            // server (`server<i>`): a broker has one password per user name, so only a user
            // per cluster keeps one cluster's server credential out of another's topics.
            let user = crate::topics::server_user(c, i);
            let s = crate::topics::server_name(i);
            r.extend(SERVER_RULES.map(|(access, filter)| Rule {
                who: Who::User(user.clone()),
                access,
                filter: format!("mqpaxos/{c}/{}", filter.replace("{s}", &s)),
            }));
            observe(&mut r, &user, c);
        }
    }
    r
}

/// Mosquitto's `acl_file` syntax (the built-in broker reads it too).
pub fn mosquitto(
    clusters: &[String],
    servers: u32,
    readers: &[String],
    watchers: &[WatchGrant],
) -> String {
    let mut out = format!(
        "# mqpaxos topic ACL, in Mosquitto's syntax; the built-in broker reads the same file.\n\
         # Generated by `mqpaxos acl --format mosquitto --servers {servers}{}`; do not edit.\n\
         # %u is the user name.\n\
         # Everyone: own requests, own replies.\n",
        command_flags(clusters, readers, watchers)
    );
    let access = |a| match a {
        Access::Read => "read",
        Access::Publish => "write",
    };
    let rules = rules(clusters, servers, readers, watchers);
    for r in rules.iter().filter(|r| r.who == Who::Everyone) {
        let _ = writeln!(
            out,
            "pattern {} {}",
            access(r.access),
            r.filter.replace(USER, "%u")
        );
    }
    out.push_str(
        "# Only the operator injects faults; the operator, the servers and the readers named\n\
         # read presence and status; only servers write presence and status, read commands,\n\
         # answer clients, publish changes and speak Paxos, each under its own name; the\n\
         # watchers named read the changes of their key prefixes.\n",
    );
    let mut current: Option<&str> = None;
    for r in &rules {
        let Who::User(u) = &r.who else { continue };
        if current != Some(u.as_str()) {
            let _ = writeln!(out, "\nuser {u}");
            current = Some(u);
        }
        let _ = writeln!(out, "topic {} {}", access(r.access), r.filter);
    }
    out
}

/// EMQX 5 file authorization rules (`acl.conf`, Erlang terms), ending in deny-all.
pub fn emqx(
    clusters: &[String],
    servers: u32,
    readers: &[String],
    watchers: &[WatchGrant],
) -> String {
    let mut out = format!(
        "%% mqpaxos topic ACL for EMQX 5 (file authorization source).\n\
         %% Generated by `mqpaxos acl --format emqx --servers {servers}{}`; do not edit.\n",
        command_flags(clusters, readers, watchers)
    );
    for r in rules(clusters, servers, readers, watchers) {
        let who = match &r.who {
            Who::Everyone => "all".to_string(),
            Who::User(u) => format!("{{username, \"{u}\"}}"),
        };
        let action = match r.access {
            Access::Read => "subscribe",
            Access::Publish => "publish",
        };
        let _ = writeln!(
            out,
            "{{allow, {who}, {action}, [\"{}\"]}}.",
            r.filter.replace(USER, "${username}")
        );
    }
    out.push_str("{deny, all}.\n");
    out
}

/// The `--cluster` and `--reader` flags that reproduce a file, for its header.
fn command_flags(clusters: &[String], readers: &[String], watchers: &[WatchGrant]) -> String {
    let c = clusters.iter().map(|c| format!(" --cluster {c}"));
    let r = readers.iter().map(|r| format!(" --reader {r}"));
    let w = watchers
        .iter()
        .map(|w| format!(" --watch-reader {}:{}", w.user, w.prefix));
    c.chain(r).chain(w).collect()
}

/// Whether the rules let `user` have `access` to `topic` (a concrete topic for publish, a
/// filter for a subscription), with MQTT wildcard matching.
pub fn allows(rules: &[Rule], user: &str, access: Access, topic: &str) -> bool {
    rules.iter().any(|r| {
        let for_user = match &r.who {
            Who::Everyone => true,
            Who::User(u) => u == user,
        };
        for_user && r.access == access && covers(&r.filter.replace(USER, user), topic)
    })
}

/// Whether filter `f` covers `t` (a topic, or a subscription filter whose wildcards must be
/// matched by wildcards at least as broad).
fn covers(f: &str, t: &str) -> bool {
    let fl: Vec<&str> = f.split('/').collect();
    let tl: Vec<&str> = t.split('/').collect();
    let mut i = 0;
    while i < fl.len() {
        match fl[i] {
            "#" => return true,
            "+" => {
                if i >= tl.len() || tl[i] == "#" {
                    return false;
                }
            }
            lit => {
                if tl.get(i) != Some(&lit) {
                    return false;
                }
            }
        }
        i += 1;
    }
    i == tl.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topics::Topics;

    fn prod() -> Vec<String> {
        vec!["prod".to_string()]
    }

    /// Every topic the code publishes or subscribes to is allowed for the node that uses it,
    /// and what would let one node pose as another, or reach another cluster, is refused.
    #[test]
    fn the_acl_fits_the_topics_the_code_uses() {
        let r = rules(
            &prod(),
            3,
            &["grafana".to_string()],
            &[WatchGrant::parse("dash:config/").unwrap()],
        );
        let t = Topics::new("prod");
        // Servers log in as <cluster>-server<i> and are server<i> in topics.
        let (s1, s2) = ("prod-server1", "prod-server2");
        let (n1, n2) = ("server1", "server2");
        // Servers.
        assert!(allows(&r, s1, Access::Publish, &t.peer_all(1)));
        assert!(allows(&r, s1, Access::Publish, &t.peer(2, 1)));
        for f in t.peer_filters(1) {
            assert!(allows(&r, s1, Access::Read, &f), "{f}");
        }
        assert!(allows(&r, s1, Access::Read, &t.all_requests()));
        assert!(allows(&r, s1, Access::Read, &t.requests_to(1)));
        assert!(!allows(&r, s1, Access::Read, &t.requests_to(2)));
        assert!(allows(&r, s1, Access::Publish, &t.leader_for("client7")));
        assert!(allows(&r, s1, Access::Read, &t.all_presence()));
        assert!(allows(&r, s1, Access::Read, &t.status(n1)));
        assert!(allows(&r, s1, Access::Read, &t.chaos()));
        assert!(allows(&r, s1, Access::Publish, &t.reply("client7/abc")));
        assert!(allows(&r, s1, Access::Publish, &t.presence(n1)));
        assert!(allows(&r, s1, Access::Publish, &t.status(n1)));
        // Clients.
        let c = "client7";
        assert!(allows(&r, c, Access::Publish, &t.request(c)));
        assert!(allows(&r, c, Access::Publish, &t.request_to(c, 3)));
        assert!(allows(&r, c, Access::Read, &t.reply(&format!("{c}/abc"))));
        assert!(allows(&r, c, Access::Read, &t.leader_for(c)));
        // The operator and a named reader watch the servers; a plain client does not.
        assert!(allows(&r, OPERATOR, Access::Publish, &t.chaos()));
        assert!(allows(&r, OPERATOR, Access::Read, &t.all_status()));
        assert!(allows(&r, OPERATOR, Access::Read, &t.all_presence()));
        assert!(allows(&r, "grafana", Access::Read, &t.all_status()));
        assert!(allows(&r, "grafana", Access::Read, &t.all_presence()));
        assert!(!allows(
            &r,
            "grafana",
            Access::Publish,
            &t.status("grafana")
        ));
        assert!(!allows(&r, c, Access::Read, &t.all_status()));
        assert!(!allows(&r, c, Access::Read, &t.all_presence()));
        // Changes: published by the servers only, read by the watchers of their prefix.
        assert!(allows(&r, s1, Access::Publish, &t.watch("any/key")));
        assert!(allows(&r, s1, Access::Publish, &t.view("any/key")));
        assert!(allows(
            &r,
            "dash",
            Access::Read,
            &t.watch_filter("config/", true)
        ));
        assert!(allows(&r, "dash", Access::Read, &t.watch("config/a/b")));
        assert!(allows(&r, "dash", Access::Read, &t.view("config/a")));
        assert!(!allows(&r, "dash", Access::Read, &t.watch("configx")));
        assert!(!allows(&r, "dash", Access::Read, &t.watch_filter("", true)));
        assert!(!allows(&r, c, Access::Read, &t.watch("config/a")));
        assert!(!allows(&r, "dash", Access::Publish, &t.watch("config/a")));
        assert!(!allows(&r, c, Access::Publish, &t.view("config/a")));
        // Registrations: a named watcher under its own name, read by the servers.
        assert!(allows(
            &r,
            "dash",
            Access::Publish,
            &t.watching("dash", "w1")
        ));
        assert!(!allows(
            &r,
            "dash",
            Access::Publish,
            &t.watching("eve", "w1")
        ));
        assert!(!allows(&r, c, Access::Publish, &t.watching(c, "w1")));
        assert!(allows(&r, s1, Access::Read, &t.all_watching()));
        assert!(!allows(&r, "dash", Access::Read, &t.all_watching()));
        assert_eq!(
            WatchGrant::parse("u:a+b"),
            Err(WatchGrantError::BadPrefix("a+b".into()))
        );
        assert!(matches!(
            WatchGrant::parse("u:a//b"),
            Err(WatchGrantError::BadPrefix(_))
        ));
        assert!(matches!(
            WatchGrant::parse("nocolon"),
            Err(WatchGrantError::NoColon(_))
        ));
        assert!(matches!(
            WatchGrant::parse("a b:x"),
            Err(WatchGrantError::BadUser(_))
        ));
        assert_eq!(WatchGrant::parse("u:").unwrap().filters()[0], "watch/#");
        // Posing and spying.
        assert!(
            !allows(&r, s1, Access::Publish, &t.peer_all(2)),
            "as another server"
        );
        assert!(
            !allows(&r, s1, Access::Read, &t.peer_filters(2)[1]),
            "another's inbox"
        );
        assert!(!allows(&r, s1, Access::Publish, &t.presence(n2)));
        assert!(!allows(&r, s2, Access::Publish, &t.presence(n1)));
        assert!(allows(&r, s2, Access::Publish, &t.presence(n2)));
        assert!(!allows(&r, s1, Access::Publish, &t.status(n2)));
        assert!(
            !allows(&r, c, Access::Publish, &t.peer_all(1)),
            "client as server"
        );
        assert!(!allows(
            &r,
            c,
            Access::Publish,
            "mqpaxos/prod/peer/all/client7"
        ));
        assert!(!allows(&r, c, Access::Read, &t.peer_filters(1)[0]));
        assert!(!allows(&r, c, Access::Publish, &t.request("client8")));
        assert!(!allows(&r, c, Access::Publish, &t.request_to("client8", 1)));
        assert!(!allows(&r, c, Access::Read, &t.leader_for("client8")));
        assert!(!allows(&r, c, Access::Publish, &t.leader_for(c)));
        assert!(!allows(&r, c, Access::Read, &t.all_requests()));
        assert!(!allows(&r, c, Access::Read, &t.reply("client8/abc")));
        assert!(!allows(&r, c, Access::Read, "mqpaxos/prod/reply/#"));
        assert!(!allows(&r, c, Access::Publish, &t.reply("client8/abc")));
        // Retained topics servers read: servers only.
        assert!(!allows(&r, c, Access::Publish, &t.presence(n2)));
        assert!(!allows(&r, c, Access::Publish, &t.presence(c)));
        assert!(!allows(&r, c, Access::Publish, &t.status(c)));
        assert!(!allows(&r, c, Access::Publish, &t.status(n1)));
        // Fault injection: the operator only, servers read it.
        assert!(!allows(&r, c, Access::Publish, &t.chaos()));
        assert!(!allows(&r, s1, Access::Publish, &t.chaos()));
        assert!(
            !allows(&r, "prod-server4", Access::Publish, &t.peer_all(4)),
            "not configured"
        );
        // The bare node name is no user.
        assert!(!allows(&r, n1, Access::Publish, &t.peer_all(1)));
        assert!(!allows(&r, n1, Access::Publish, &t.presence(n1)));
        // Another cluster on the same broker.
        let other = Topics::new("staging");
        assert!(!allows(&r, c, Access::Publish, &other.request(c)));
        assert!(!allows(&r, s1, Access::Publish, &other.peer_all(1)));
        assert!(!allows(&r, s1, Access::Read, &other.all_requests()));
        assert!(!allows(&r, OPERATOR, Access::Publish, &other.chaos()));
        assert!(!allows(&r, s1, Access::Read, "mqpaxos/+/request/+"));
    }

    #[test]
    fn both_renderings_carry_every_rule() {
        let clusters = vec!["a".to_string(), "b-2".to_string()];
        let m = mosquitto(&clusters, 2, &[], &[]);
        assert!(m.contains("pattern write mqpaxos/a/request/%u"));
        assert!(m.contains("pattern write mqpaxos/b-2/request/%u"));
        assert!(m.contains("user a-server2\ntopic write mqpaxos/a/presence/server2"));
        assert!(m.contains("user b-2-server2\ntopic write mqpaxos/b-2/presence/server2"));
        assert!(!m.contains("mqpaxos/+"), "no rule spans clusters");
        // One section per user, and no server user shared by the two clusters.
        assert_eq!(m.matches("user a-server1\n").count(), 1);
        assert!(!m.contains("user server1\n"));
        // Mosquitto warns at every start about a pattern with neither %u nor %c.
        for line in m.lines().filter(|l| l.starts_with("pattern ")) {
            assert!(line.contains("%u") || line.contains("%c"), "{line}");
        }
        let e = emqx(&clusters, 2, &[], &[]);
        assert!(e.contains("{allow, all, publish, [\"mqpaxos/a/request/${username}\"]}."));
        assert!(e.contains(
            "{allow, {username, \"b-2-server2\"}, publish, [\"mqpaxos/b-2/peer/+/server2\"]}."
        ));
        assert!(e.trim_end().ends_with("{deny, all}."));
        assert_eq!(
            e.lines().filter(|l| l.starts_with("{allow")).count(),
            rules(&clusters, 2, &[], &[]).len()
        );
    }

    /// Two clusters on one broker, one ACL: a server credential of cluster A has no right in
    /// cluster B, not even for the server with the same id (issue 13: server user names
    /// used to be `server<i>` in every cluster, one password for both).
    #[test]
    fn a_server_credential_of_one_cluster_is_refused_in_another() {
        let r = rules(&["a".to_string(), "b".to_string()], 3, &[], &[]);
        let (a, b) = (Topics::new("a"), Topics::new("b"));
        for i in 1..=3 {
            let user = crate::topics::server_user("a", i);
            let n = crate::topics::server_name(i);
            assert!(allows(&r, &user, Access::Publish, &a.peer_all(i)));
            assert!(allows(&r, &user, Access::Publish, &a.presence(&n)));
            assert!(
                !allows(&r, &user, Access::Publish, &b.peer_all(i)),
                "{user}"
            );
            assert!(!allows(&r, &user, Access::Publish, &b.peer(2, i)), "{user}");
            assert!(!allows(&r, &user, Access::Publish, &b.presence(&n)));
            assert!(!allows(&r, &user, Access::Publish, &b.status(&n)));
            assert!(!allows(&r, &user, Access::Publish, &b.reply("client1/x")));
            assert!(!allows(&r, &user, Access::Read, &b.all_requests()));
            assert!(!allows(&r, &user, Access::Read, &b.peer_filters(i)[0]));
            assert!(!allows(&r, &user, Access::Read, &b.peer_filters(i)[1]));
            // What any user may do in B (its own requests) stays open: a server credential
            // of A is an ordinary client there, under its own name.
            assert!(allows(&r, &user, Access::Publish, &b.request(&user)));
        }
    }

    #[test]
    fn cluster_names_that_would_change_a_rule_are_refused() {
        assert!(valid_cluster("prod-1.eu_west"));
        for bad in ["", "a b", "%u", "${username}", "a\"b", "a/b", "+", "#", "é"] {
            assert!(!valid_cluster(bad), "{bad:?}");
        }
    }

    /// The committed Mosquitto ACL is exactly what the code generates.
    #[test]
    fn the_committed_mosquitto_acl_is_current() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/mosquitto/acl.conf"
        );
        let committed = std::fs::read_to_string(path).expect("deploy/mosquitto/acl.conf exists");
        assert_eq!(
            committed,
            mosquitto(&["default".to_string()], 9, &[], &[]),
            "regenerate with: mqpaxos acl --format mosquitto --servers 9 --cluster default > deploy/mosquitto/acl.conf"
        );
    }
}
