//! The MQTT topic layout. Everything lives under `mqpaxos/<cluster>/`, and the sender's
//! identity is part of every topic it publishes to, so that a broker ACL keyed on the MQTT
//! user name (`%u`) can stop a client from posing as a server or as another client:
//!
//! | topic | who publishes | who subscribes |
//! |---|---|---|
//! | `request/<user>` | a client, under its own user name: a command's resends, or all its commands while it knows no leader | every server (`request/+`) |
//! | `request/<user>/<server>` | a client: a command, to the server announced as leader | that server (`request/+/<server>`) |
//! | `reply/<user>/leader` | the leader, retained: `{"server":N,"ballot":{..}}`, for the users of the sessions it holds as it takes office, and for a user whose command reached it by broadcast | that user's clients (to send to the leader first) |
//! | `peer/all/<server>` | a server, to all servers (one publish, fanned out) | every server (`peer/all/+`) |
//! | `peer/<to>/<server>` | a server, to server `<to>` | server `<to>` (`peer/<to>/+`) |
//! | `reply/<user>/<session>` | the leader | that client only |
//! | `presence/<node>` | each node: retained `online`, `offline` as last will | anyone |
//! | `status/<server>` | each server: retained JSON status | `mqpaxos status` |
//! | `chaos` | the operator: fault injection switches | every node |
//! | `json/request/<user>` | any MQTT client, JSON (see `mqpaxos_node::json`) | every server (`json/request/+`) |
//! | `json/reply/<user>[/...]` | the leader, to the topic the request named | that user's clients |
//! | `watch/<key>` | the leader: every committed change of the key (`mqpaxos_node::json::event`) | watchers (`watch/<prefix>#`) |
//! | `view/<key>` | the leader, retained: the key's value, for prefixes servers are told to (`mqpaxos_node::json::view`) | anyone allowed |
//! | `watching/<user>/<name>` | a watcher, retained: `{"prefix":"..."}`, the keys it follows; cleared (empty) as it leaves, by its last will if it dies | every server (`watching/+/+`): the leader publishes watch events only for keys someone follows |
//!
//! A key becomes topic levels as it is (its `/` separate levels, so `watch/config/#` selects
//! every key starting `config/`), except for the characters MQTT gives a meaning to in a
//! topic, which are percent-encoded ([`encode_key`]): `%`, `+`, `#` and NUL.
//!
//! A server is `server<id>` in topics (its node name), and logs in to the broker as
//! `<cluster>-server<id>` ([`server_user`]): one broker keeps one password per user name, so
//! a name shared by the servers of two clusters would let one cluster's server credential
//! write into the other's topics. A client's session id on the wire is `<user>/<session>`,
//! so servers can check that a request's client id matches the user name in its topic.

use mqpaxos_core::NodeId;

/// Topic names for one cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

/// What an incoming topic is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    Request {
        user: String,
        /// The server it was sent to alone (the client was told it leads); `None`: to all.
        to: Option<NodeId>,
    },
    Peer {
        to_all: bool,
        to: Option<NodeId>,
        from: NodeId,
    },
    Reply {
        user: String,
        session: String,
    },
    Presence {
        node: String,
    },
    Status {
        node: String,
    },
    Chaos,
    Leader {
        user: String,
    },
    /// A watcher's retained registration ([`Topics::watching`]).
    Watching {
        user: String,
        name: String,
    },
    JsonRequest {
        user: String,
        /// Where and with what an MQTT 5 client wants the answer: the publish's response
        /// topic and correlation data ([`crate::transport5`]); never set by [`Topics::parse`].
        v5: Option<Box<V5Reply>>,
    },
}

/// What a leader publishes, retained, on [`Topics::leader_for`]: as it takes office, for the
/// users of the sessions it holds, and whenever a user's command reaches it by broadcast (a
/// client that knows no leader, or a stale one: two servers' announcements may reach the
/// broker in either order, and the last one stays). JSON, so an operator can read it with
/// any MQTT tool.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeaderAnnouncement {
    pub server: NodeId,
    pub ballot: mqpaxos_core::Ballot,
}

/// An MQTT 5 request's answer properties.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V5Reply {
    pub response_topic: Option<String>,
    pub correlation: Option<Vec<u8>>,
}

/// Server `id`'s name in topics, in metrics and in its data directory: `server<id>`.
pub fn server_name(id: NodeId) -> String {
    format!("server{id}")
}

/// The MQTT user name server `id` of `cluster` logs in with: `<cluster>-server<id>`.
///
/// It names the cluster so that the ACL can confine each server credential to its own
/// cluster's topics. The mapping is one-to-one: the id is the digits after the last
/// `-server`, and the cluster everything before it, so no two (cluster, id) pairs share a
/// name whatever `-` the cluster names hold.
pub fn server_user(cluster: &str, id: NodeId) -> String {
    format!("{cluster}-{}", server_name(id))
}

/// The server id in a user name like `server3`.
pub fn server_id(user: &str) -> Option<NodeId> {
    let n = user.strip_prefix("server")?;
    if n.is_empty() || n.starts_with('0') || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// `key` as topic levels: every other character as it is, but these percent-encoded (their
/// UTF-8 bytes): `%` itself; `+` and `#` (no published topic may hold a wildcard); control
/// characters and Unicode non-characters (Mosquitto drops the connection of a client that
/// publishes a topic holding one, and the leader publishes every key's changes).
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for c in key.chars() {
        let cp = u32::from(c);
        let noncharacter = (0xFDD0..=0xFDEF).contains(&cp) || cp & 0xFFFE == 0xFFFE;
        if matches!(c, '%' | '+' | '#') || c.is_control() || noncharacter {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether `s` can be one topic level: MQTT forbids wildcards in published topics, and a
/// `/` would shift every level after it.
pub fn valid_level(s: &str) -> bool {
    !s.is_empty() && !s.contains(['/', '+', '#', '\0']) && s.len() <= 128
}

impl Topics {
    pub fn new(cluster: &str) -> Self {
        Topics {
            prefix: format!("mqpaxos/{cluster}"),
        }
    }

    pub fn request(&self, user: &str) -> String {
        format!("{}/request/{user}", self.prefix)
    }
    pub fn all_requests(&self) -> String {
        format!("{}/request/+", self.prefix)
    }
    /// A command for server `to` alone (the client was told it leads).
    pub fn request_to(&self, user: &str, to: NodeId) -> String {
        format!("{}/request/{user}/{}", self.prefix, server_name(to))
    }
    /// What server `id` subscribes to for the commands sent to it alone.
    pub fn requests_to(&self, id: NodeId) -> String {
        format!("{}/request/+/{}", self.prefix, server_name(id))
    }
    /// The retained announcement of who leads, for `user`'s clients
    /// ([`LeaderAnnouncement`]). Below the user's replies: the ACL already lets every user
    /// read its own replies and only servers write them, and Mosquitto can grant a topic to
    /// every user only with a `pattern` it warns about at every start.
    pub fn leader_for(&self, user: &str) -> String {
        format!("{}/reply/{user}/leader", self.prefix)
    }
    pub fn peer_all(&self, from: NodeId) -> String {
        format!("{}/peer/all/{}", self.prefix, server_name(from))
    }
    pub fn peer(&self, to: NodeId, from: NodeId) -> String {
        format!(
            "{}/peer/{}/{}",
            self.prefix,
            server_name(to),
            server_name(from)
        )
    }
    /// What server `id` subscribes to for peer traffic.
    pub fn peer_filters(&self, id: NodeId) -> [String; 2] {
        [
            format!("{}/peer/all/+", self.prefix),
            format!("{}/peer/{}/+", self.prefix, server_name(id)),
        ]
    }
    /// The reply topic of a wire client id `<user>/<token>`, and of every session it opens
    /// (`<user>/<token>/<slot>`): one exact topic per client, so brokers match it without a
    /// wildcard (a wildcard subscription per client made the built-in broker's matching,
    /// and the whole bench, a third slower at 64 clients).
    pub fn reply(&self, client_id: &str) -> String {
        let base = match client_id.match_indices('/').nth(1) {
            Some((i, _)) => &client_id[..i],
            None => client_id,
        };
        format!("{}/reply/{base}", self.prefix)
    }
    pub fn presence(&self, node: &str) -> String {
        format!("{}/presence/{node}", self.prefix)
    }
    pub fn all_presence(&self) -> String {
        format!("{}/presence/+", self.prefix)
    }
    pub fn status(&self, node: &str) -> String {
        format!("{}/status/{node}", self.prefix)
    }
    pub fn all_status(&self) -> String {
        format!("{}/status/+", self.prefix)
    }
    pub fn chaos(&self) -> String {
        format!("{}/chaos", self.prefix)
    }
    pub fn json_request(&self, user: &str) -> String {
        format!("{}/json/request/{user}", self.prefix)
    }
    pub fn all_json_requests(&self) -> String {
        format!("{}/json/request/+", self.prefix)
    }
    /// Every JSON reply topic starts with this and the requesting user's name.
    pub fn json_reply_prefix(&self) -> String {
        format!("{}/json/reply/", self.prefix)
    }
    /// Where the changes of `key` are published.
    pub fn watch(&self, key: &str) -> String {
        format!("{}/watch/{}", self.prefix, encode_key(key))
    }
    /// The filter that selects the watch events of `key`, or with `prefix` of every key
    /// starting with it. A prefix that ends inside a topic level (`conf` of `config/a`) needs
    /// the whole store's events, filtered by the watcher: MQTT wildcards match whole levels.
    pub fn watch_filter(&self, key: &str, prefix: bool) -> String {
        if !prefix {
            return self.watch(key);
        }
        match key.rfind('/') {
            Some(i) => format!("{}/watch/{}/#", self.prefix, encode_key(&key[..i])),
            None => format!("{}/watch/#", self.prefix),
        }
    }
    /// Where the retained view of `key` is kept.
    pub fn view(&self, key: &str) -> String {
        format!("{}/view/{}", self.prefix, encode_key(key))
    }
    /// Where watcher `name` of `user` says, retained, which keys it follows: the leader
    /// publishes events only for keys some watcher follows.
    pub fn watching(&self, user: &str, name: &str) -> String {
        format!("{}/watching/{user}/{name}", self.prefix)
    }
    pub fn all_watching(&self) -> String {
        format!("{}/watching/+/+", self.prefix)
    }

    /// Classifies an incoming topic; `None` for anything outside this layout.
    pub fn parse(&self, topic: &str) -> Option<Parsed> {
        let rest = topic.strip_prefix(&self.prefix)?.strip_prefix('/')?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            ["request", user] => Some(Parsed::Request {
                user: (*user).to_string(),
                to: None,
            }),
            ["request", user, to] => Some(Parsed::Request {
                user: (*user).to_string(),
                to: Some(server_id(to)?),
            }),
            // Before the replies: the library's session ids are hexadecimal, never `leader`.
            ["reply", user, "leader"] => Some(Parsed::Leader {
                user: (*user).to_string(),
            }),
            ["peer", to, from] => {
                let from = server_id(from)?;
                if *to == "all" {
                    Some(Parsed::Peer {
                        to_all: true,
                        to: None,
                        from,
                    })
                } else {
                    Some(Parsed::Peer {
                        to_all: false,
                        to: Some(server_id(to)?),
                        from,
                    })
                }
            }
            ["reply", user, session] | ["reply", user, session, _] => Some(Parsed::Reply {
                user: (*user).to_string(),
                session: (*session).to_string(),
            }),
            ["presence", node] => Some(Parsed::Presence {
                node: (*node).to_string(),
            }),
            ["status", node] => Some(Parsed::Status {
                node: (*node).to_string(),
            }),
            ["chaos"] => Some(Parsed::Chaos),
            ["watching", user, name] => Some(Parsed::Watching {
                user: (*user).to_string(),
                name: (*name).to_string(),
            }),
            ["json", "request", user] => Some(Parsed::JsonRequest {
                user: (*user).to_string(),
                v5: None,
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_round_trip() {
        let t = Topics::new("prod");
        assert_eq!(t.request("client1"), "mqpaxos/prod/request/client1");
        assert_eq!(
            t.parse(&t.request("client1")),
            Some(Parsed::Request {
                user: "client1".into(),
                to: None
            })
        );
        assert_eq!(
            t.parse(&t.peer(2, 5)),
            Some(Parsed::Peer {
                to_all: false,
                to: Some(2),
                from: 5
            })
        );
        assert_eq!(
            t.parse(&t.peer_all(3)),
            Some(Parsed::Peer {
                to_all: true,
                to: None,
                from: 3
            })
        );
        assert_eq!(
            t.parse(&t.reply("client1/ab12")),
            Some(Parsed::Reply {
                user: "client1".into(),
                session: "ab12".into()
            })
        );
        assert_eq!(
            t.parse(&t.request_to("client1", 2)),
            Some(Parsed::Request {
                user: "client1".into(),
                to: Some(2)
            })
        );
        assert_eq!(t.request_to("c", 2), "mqpaxos/prod/request/c/server2");
        assert_eq!(t.requests_to(2), "mqpaxos/prod/request/+/server2");
        assert_eq!(t.parse("mqpaxos/prod/request/c/client2"), None);
        assert_eq!(
            t.parse(&t.leader_for("c")),
            Some(Parsed::Leader { user: "c".into() })
        );
        assert_eq!(t.leader_for("c"), "mqpaxos/prod/reply/c/leader");
        assert_eq!(t.parse("mqpaxos/other/request/x"), None);
        assert_eq!(t.parse("mqpaxos/prod/peer/all/client1"), None);
        assert_eq!(t.parse("mqpaxos/prod/peer/all/server01"), None);
    }

    #[test]
    fn server_user_names_carry_the_cluster_and_never_collide() {
        assert_eq!(server_user("prod", 3), "prod-server3");
        // Cluster names may hold `-` and even `-server`: still one name per (cluster, id).
        let mut seen = std::collections::HashSet::new();
        for c in [
            "a",
            "a-server1",
            "a-server",
            "a-",
            "server1",
            "a-server1-server1",
        ] {
            for id in [1, 2, 11] {
                assert!(seen.insert(server_user(c, id)), "{c} {id}");
            }
        }
    }

    #[test]
    fn keys_become_topics_without_wildcards() {
        let t = Topics::new("c");
        assert_eq!(t.watch("config/a"), "mqpaxos/c/watch/config/a");
        assert_eq!(t.watch("50%+#\0"), "mqpaxos/c/watch/50%25%2B%23%00");
        assert_eq!(
            t.watch("a\nb\u{7f}\u{85}é"),
            "mqpaxos/c/watch/a%0Ab%7F%C2%85é"
        );
        assert_eq!(
            t.watch("\u{fffe}\u{fdd0}"),
            "mqpaxos/c/watch/%EF%BF%BE%EF%B7%90"
        );
        assert_eq!(
            t.parse(&t.watching("dash", "w1")),
            Some(Parsed::Watching {
                user: "dash".into(),
                name: "w1".into()
            })
        );
        assert_eq!(t.all_watching(), "mqpaxos/c/watching/+/+");
        assert_eq!(t.watch_filter("config/", true), "mqpaxos/c/watch/config/#");
        assert_eq!(t.watch_filter("config/a", true), "mqpaxos/c/watch/config/#");
        assert_eq!(t.watch_filter("conf", true), "mqpaxos/c/watch/#");
        assert_eq!(t.watch_filter("a+b", false), "mqpaxos/c/watch/a%2Bb");
        assert_eq!(t.view("k"), "mqpaxos/c/view/k");
    }

    #[test]
    fn server_ids_are_strict() {
        assert_eq!(server_id("server12"), Some(12));
        assert_eq!(server_id("server"), None);
        assert_eq!(server_id("server-1"), None);
        assert_eq!(server_id("client1"), None);
        assert!(valid_level("client1"));
        assert!(!valid_level("a/b"));
        assert!(!valid_level("a+"));
        assert!(!valid_level(""));
    }
}
