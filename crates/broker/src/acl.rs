//! Mosquitto-syntax ACL files, and the access decisions the broker asks of them.
//!
//! The syntax and the decision order are Mosquitto 2.0's (`acl_file`), so one file serves
//! both brokers:
//!
//! - `user <name>` starts the section of that user; `topic` lines before the first `user`
//!   line belong to anonymous clients (those that sent no user name).
//! - `topic [read|write|readwrite|deny] <filter>` grants (or denies) the current section's
//!   user; without an access word it means `readwrite`.
//! - `pattern [read|write|readwrite|deny] <filter>` applies to *every* client, wherever it
//!   stands in the file, with `%u` replaced by the user name and `%c` by the client id;
//!   a pattern with `%u` never applies to an anonymous client.
//! - `#` at the start of a line is a comment.
//!
//! A topic is allowed when, in the client's own `topic` rules and then in the patterns, the
//! first rule that matches it either grants the access asked for (allowed) or is `deny`
//! (refused); within each of the two lists the `deny` rules are tried first. Nothing matching
//! means refused. As in Mosquitto, once any pattern exists a user name or client id that
//! contains `+` or `#` is refused everything, since it could widen a pattern.
//!
//! Mosquitto checks `read` on every message it delivers; this broker can only check once, on
//! SUBSCRIBE. So a subscription filter is granted only if one `read` rule covers every topic
//! the filter can match, and refused if it could match any topic of a `deny` rule. That is
//! never more permissive than Mosquitto; it refuses a few filters Mosquitto would accept
//! and then thin out (such as `#` for a user who may read only some topics).

use std::collections::HashMap;
use std::path::Path;

use crate::BrokerError;
use crate::{rule_file, topic};

/// What an ACL line grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `deny`: refuses both reading and writing, before any grant is looked at.
    Deny,
    /// `read`: may subscribe to (and so receive) matching topics.
    Read,
    /// `write`: may publish to matching topics.
    Write,
    /// `readwrite`, or no access word at all.
    ReadWrite,
}

impl Access {
    fn grants_read(self) -> bool {
        matches!(self, Access::Read | Access::ReadWrite)
    }

    fn grants_write(self) -> bool {
        matches!(self, Access::Write | Access::ReadWrite)
    }
}

#[derive(Clone, Debug)]
struct Rule {
    access: Access,
    topic: String,
    uses_username: bool,
}

/// A parsed ACL file.
#[derive(Clone, Debug, Default)]
pub struct Acl {
    /// `topic` lines before the first `user` line; `None` when there are none, which (as in
    /// Mosquitto) differs from an empty list only in the absence of patterns: both refuse.
    anonymous: Option<Vec<Rule>>,
    users: HashMap<String, Vec<Rule>>,
    patterns: Vec<Rule>,
}

impl Acl {
    /// Reads and parses an ACL file.
    pub fn load(path: &Path) -> Result<Self, BrokerError> {
        Self::parse(path, &rule_file::read("ACL", path)?)
    }

    /// Parses the text of an ACL file; `path` only names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, BrokerError> {
        let mut acl = Acl::default();
        let mut current_user: Option<String> = None;
        for (line, trimmed) in rule_file::lines(text) {
            let err = |message: String| BrokerError::AclFile {
                path: path.to_path_buf(),
                line,
                message,
            };
            let (keyword, rest) = split_word(trimmed);
            match keyword {
                "user" => {
                    if rest.is_empty() {
                        return Err(err("`user` needs a user name".to_string()));
                    }
                    acl.users.entry(rest.to_string()).or_default();
                    current_user = Some(rest.to_string());
                }
                "topic" | "pattern" => {
                    if rest.is_empty() {
                        return Err(err(format!("`{keyword}` needs a topic")));
                    }
                    // Mosquitto's reading: one word is the topic itself; with more, the first
                    // is the access and the rest of the line (spaces included) the topic.
                    let (first, remainder) = split_word(rest);
                    let (access, filter) = if remainder.is_empty() {
                        (Access::ReadWrite, first)
                    } else {
                        let access = match first {
                            "read" => Access::Read,
                            "write" => Access::Write,
                            "readwrite" => Access::ReadWrite,
                            "deny" => Access::Deny,
                            other => {
                                return Err(err(format!(
                                    "unknown access {other:?}: expected read, write, \
                                     readwrite or deny"
                                )))
                            }
                        };
                        (access, remainder)
                    };
                    if !topic::is_valid_filter(filter) {
                        return Err(err(format!(
                            "invalid topic filter {filter:?} (`+` and `#` must fill a whole \
                             level, `#` only the last)"
                        )));
                    }
                    let rule = Rule {
                        access,
                        topic: filter.to_string(),
                        uses_username: filter.contains("%u"),
                    };
                    if keyword == "pattern" {
                        if !filter.contains("%u") && !filter.contains("%c") {
                            tracing::warn!(
                                "{} line {line}: pattern {filter:?} has neither %u nor %c, so \
                                 it applies to every client, anonymous ones included",
                                path.display()
                            );
                        }
                        acl.patterns.push(rule);
                    } else {
                        match &current_user {
                            Some(user) => acl.users.entry(user.clone()).or_default().push(rule),
                            None => acl.anonymous.get_or_insert_with(Vec::new).push(rule),
                        }
                    }
                }
                other => {
                    return Err(err(format!(
                        "unknown keyword {other:?}: expected user, topic or pattern"
                    )))
                }
            }
        }
        // Mosquitto puts `deny` rules at the front of each list; a stable sort keeps the
        // grants in file order behind them.
        let deny_first = |rules: &mut Vec<Rule>| rules.sort_by_key(|r| r.access != Access::Deny);
        if let Some(rules) = acl.anonymous.as_mut() {
            deny_first(rules);
        }
        acl.users.values_mut().for_each(deny_first);
        deny_first(&mut acl.patterns);
        Ok(acl)
    }

    /// Whether this client may publish to `topic`.
    pub fn can_publish(&self, username: Option<&str>, client_id: &str, topic: &str) -> bool {
        self.decide(username, client_id, |rule_topic, access| {
            if !topic::matches(rule_topic, topic) {
                Verdict::Next
            } else if access == Access::Deny {
                Verdict::Refuse
            } else if access.grants_write() {
                Verdict::Allow
            } else {
                Verdict::Next
            }
        })
    }

    /// Whether this client may receive messages published to `topic`.
    pub fn can_read(&self, username: Option<&str>, client_id: &str, topic: &str) -> bool {
        self.decide(username, client_id, |rule_topic, access| {
            if !topic::matches(rule_topic, topic) {
                Verdict::Next
            } else if access == Access::Deny {
                Verdict::Refuse
            } else if access.grants_read() {
                Verdict::Allow
            } else {
                Verdict::Next
            }
        })
    }

    /// Whether this client may subscribe to `filter`: some `read` rule must cover all the
    /// filter can match, and no `deny` rule met before it may share a topic with it.
    /// A shared subscription (`$share/<group>/<filter>`) is judged by its `<filter>`.
    pub fn can_subscribe(&self, username: Option<&str>, client_id: &str, filter: &str) -> bool {
        let filter = strip_share(filter);
        self.decide(username, client_id, |rule_topic, access| {
            if access == Access::Deny {
                if topic::overlaps(rule_topic, filter) {
                    Verdict::Refuse
                } else {
                    Verdict::Next
                }
            } else if access.grants_read() && topic::covers(rule_topic, filter) {
                Verdict::Allow
            } else {
                Verdict::Next
            }
        })
    }

    fn decide(
        &self,
        username: Option<&str>,
        client_id: &str,
        mut judge: impl FnMut(&str, Access) -> Verdict,
    ) -> bool {
        let own = match username {
            Some(user) => self.users.get(user),
            None => self.anonymous.as_ref(),
        };
        if own.is_none() && self.patterns.is_empty() {
            return false;
        }
        for rule in own.into_iter().flatten() {
            match judge(&rule.topic, rule.access) {
                Verdict::Allow => return true,
                Verdict::Refuse => return false,
                Verdict::Next => {}
            }
        }
        if self.patterns.is_empty() {
            return false;
        }
        let dangerous = |s: &str| s.contains('+') || s.contains('#');
        if username.is_some_and(dangerous) || dangerous(client_id) {
            return false;
        }
        for rule in &self.patterns {
            if rule.uses_username && username.is_none() {
                continue;
            }
            let expanded = expand(&rule.topic, username, client_id);
            match judge(&expanded, rule.access) {
                Verdict::Allow => return true,
                Verdict::Refuse => return false,
                Verdict::Next => {}
            }
        }
        false
    }
}

enum Verdict {
    Allow,
    Refuse,
    Next,
}

/// Splits off the first whitespace-separated word; the rest comes back trimmed.
fn split_word(s: &str) -> (&str, &str) {
    match s.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim()),
        None => (s, ""),
    }
}

fn strip_share(filter: &str) -> &str {
    filter
        .strip_prefix("$share/")
        .and_then(|rest| rest.split_once('/'))
        .map_or(filter, |(_group, inner)| inner)
}

/// Mosquitto's substitution: `%c` is the client id, `%u` the user name (the caller skips
/// `%u` patterns for anonymous clients); any other `%` stays as it is.
fn expand(pattern: &str, username: Option<&str>, client_id: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '%' {
            match (chars.peek(), username) {
                (Some('c'), _) => {
                    chars.next();
                    out.push_str(client_id);
                    continue;
                }
                (Some('u'), Some(user)) => {
                    chars.next();
                    out.push_str(user);
                    continue;
                }
                _ => {}
            }
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(text: &str) -> Acl {
        Acl::parse(Path::new("test.acl"), text).unwrap()
    }

    fn error_of(text: &str) -> String {
        match Acl::parse(Path::new("/x/test.acl"), text) {
            Ok(_) => panic!("expected an error for {text:?}"),
            Err(e) => e.to_string(),
        }
    }

    const EXAMPLE: &str = include_str!("../examples/acl.conf");

    #[test]
    fn example_file_implements_the_topic_layout() {
        let a = acl(EXAMPLE);
        let s1 = Some("server1");
        let s2 = Some("server2");
        let c1 = Some("client1");
        let c2 = Some("client2");
        let id = "some-client-id";

        // request/<user>: clients write their own; servers read all.
        assert!(a.can_publish(c1, id, "mqpaxos/main/request/client1"));
        assert!(!a.can_publish(c1, id, "mqpaxos/main/request/client2"));
        assert!(!a.can_subscribe(c1, id, "mqpaxos/main/request/+"));
        assert!(a.can_subscribe(s1, id, "mqpaxos/main/request/+"));
        assert!(a.can_subscribe(s1, id, "mqpaxos/+/request/+"));

        // peer/<to>/<from>: only servers, only as themselves.
        assert!(a.can_publish(s1, id, "mqpaxos/main/peer/all/server1"));
        assert!(a.can_publish(s1, id, "mqpaxos/main/peer/server2/server1"));
        assert!(!a.can_publish(s1, id, "mqpaxos/main/peer/all/server2"));
        assert!(!a.can_publish(c1, id, "mqpaxos/main/peer/all/client1"));
        assert!(!a.can_publish(c1, id, "mqpaxos/main/peer/all/server1"));
        assert!(a.can_subscribe(s1, id, "mqpaxos/main/peer/all/+"));
        assert!(a.can_subscribe(s1, id, "mqpaxos/main/peer/server1/+"));
        assert!(!a.can_subscribe(s1, id, "mqpaxos/main/peer/server2/+"));
        assert!(!a.can_subscribe(s1, id, "mqpaxos/main/peer/#"));
        assert!(!a.can_subscribe(c1, id, "mqpaxos/main/peer/all/+"));
        assert!(a.can_read(s2, id, "mqpaxos/main/peer/server2/server1"));

        // reply/<user>/<session>: servers write, a client reads only its own.
        assert!(a.can_publish(s1, id, "mqpaxos/main/reply/client2/s7"));
        assert!(!a.can_publish(c1, id, "mqpaxos/main/reply/client2/s7"));
        assert!(a.can_subscribe(c1, id, "mqpaxos/main/reply/client1/#"));
        assert!(a.can_subscribe(c1, id, "mqpaxos/main/reply/client1/s1"));
        assert!(!a.can_subscribe(c1, id, "mqpaxos/main/reply/client2/#"));
        assert!(!a.can_subscribe(c1, id, "mqpaxos/main/reply/+/#"));
        assert!(!a.can_subscribe(c1, id, "#"));
        assert!(!a.can_read(c1, id, "mqpaxos/main/reply/client2/s1"));
        assert!(!a.can_read(c2, id, "mqpaxos/main/reply/client1/s1"));

        // presence/ and status/: each server writes its own, everyone named reads; clients
        // write neither (servers read them, retained).
        for user in [s1, s2, c1, c2] {
            let name = user.unwrap();
            let server = name.starts_with("server");
            let own_presence = format!("mqpaxos/main/presence/{name}");
            let own_status = format!("mqpaxos/main/status/{name}");
            assert_eq!(a.can_publish(user, id, &own_presence), server, "{name}");
            assert_eq!(a.can_publish(user, id, &own_status), server, "{name}");
            assert!(a.can_subscribe(user, id, "mqpaxos/main/presence/+"));
            assert!(a.can_subscribe(user, id, "mqpaxos/main/status/+"));
            assert!(a.can_subscribe(user, id, "mqpaxos/+/status/+"));
        }
        assert!(!a.can_publish(c1, id, "mqpaxos/main/presence/server1"));
        assert!(!a.can_publish(s1, id, "mqpaxos/main/status/server2"));

        // Nothing for anonymous clients or unlisted users beyond their %u patterns.
        assert!(!a.can_publish(None, id, "mqpaxos/main/request/x"));
        assert!(!a.can_subscribe(None, id, "mqpaxos/main/presence/+"));
        assert!(!a.can_subscribe(Some("stranger"), id, "mqpaxos/main/presence/+"));
        assert!(a.can_publish(Some("stranger"), id, "mqpaxos/main/request/stranger"));

        // All nine servers are listed.
        for n in 1..=9 {
            let user = format!("server{n}");
            let topic = format!("mqpaxos/c/peer/all/{user}");
            assert!(a.can_publish(Some(&user), id, &topic), "{user}");
        }
        assert!(!a.can_publish(Some("server10"), id, "mqpaxos/c/peer/all/server10"));
    }

    /// The ACL operators install (generated by `mqpaxos acl`, patterns without `%u`
    /// included) must load here as it does in Mosquitto.
    #[test]
    fn deploy_acl_loads_and_separates_servers_from_clients() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/mosquitto/acl.conf");
        // Part of the repository: a missing file is a failure, not a skip.
        let a = Acl::load(&path).expect("deploy/mosquitto/acl.conf loads");
        let id = "id";
        // Server users name their cluster (`default-server<i>`); topics name the server.
        let (s1, s2, c1) = (
            Some("default-server1"),
            Some("default-server2"),
            Some("client1"),
        );
        let op = Some("operator");
        assert!(a.can_publish(s1, id, "mqpaxos/default/peer/all/server1"));
        assert!(!a.can_publish(c1, id, "mqpaxos/default/peer/all/client1"));
        assert!(!a.can_publish(s2, id, "mqpaxos/default/peer/all/server1"));
        assert!(a.can_subscribe(c1, id, "mqpaxos/default/reply/client1/#"));
        assert!(!a.can_subscribe(c1, id, "mqpaxos/default/reply/client2/#"));
        // Retained topics servers read: servers (each its own) and the operator only.
        assert!(a.can_publish(s1, id, "mqpaxos/default/presence/server1"));
        assert!(!a.can_publish(c1, id, "mqpaxos/default/presence/client1"));
        assert!(!a.can_publish(c1, id, "mqpaxos/default/status/client1"));
        assert!(!a.can_publish(c1, id, "mqpaxos/default/chaos"));
        assert!(!a.can_publish(s1, id, "mqpaxos/default/chaos"));
        assert!(a.can_publish(op, id, "mqpaxos/default/chaos"));
        // Rules name their cluster: nothing anywhere else.
        assert!(!a.can_publish(s1, id, "mqpaxos/other/peer/all/server1"));
        assert!(!a.can_publish(c1, id, "mqpaxos/other/request/client1"));
        assert!(!a.can_subscribe(s1, id, "mqpaxos/+/request/+"));
    }

    #[test]
    fn anonymous_section_and_user_sections() {
        let a = acl("topic read public/#\n\
             topic write anon/in\n\
             user alice\n\
             topic alice/#\n\
             topic read public/#\n\
             user bob\n");
        assert!(a.can_subscribe(None, "c", "public/#"));
        assert!(a.can_publish(None, "c", "anon/in"));
        assert!(!a.can_publish(None, "c", "public/x"));
        assert!(!a.can_publish(None, "c", "alice/x"));
        // No access word means readwrite.
        assert!(a.can_publish(Some("alice"), "c", "alice/x/y"));
        assert!(a.can_subscribe(Some("alice"), "c", "alice/#"));
        assert!(!a.can_publish(Some("alice"), "c", "anon/in"));
        // bob's section is empty and there are no patterns: nothing.
        assert!(!a.can_subscribe(Some("bob"), "c", "public/#"));
        // Unknown users get neither the anonymous rules nor anyone else's.
        assert!(!a.can_subscribe(Some("eve"), "c", "public/#"));
    }

    #[test]
    fn deny_rules_win_wherever_they_stand() {
        let a = acl("user u\n\
             topic read a/#\n\
             topic deny a/secret/#\n\
             topic write a/secret/inbox\n");
        assert!(a.can_read(Some("u"), "c", "a/x"));
        assert!(!a.can_read(Some("u"), "c", "a/secret/x"));
        assert!(!a.can_publish(Some("u"), "c", "a/secret/inbox"));
        assert!(a.can_subscribe(Some("u"), "c", "a/x/#"));
        // Could deliver a denied topic: refused.
        assert!(!a.can_subscribe(Some("u"), "c", "a/#"));
        assert!(!a.can_subscribe(Some("u"), "c", "a/+/x"));
        assert!(!a.can_subscribe(Some("u"), "c", "a/secret"));
    }

    #[test]
    fn a_user_grant_comes_before_a_pattern_deny() {
        // Mosquitto checks the user's own list completely before any pattern.
        let a = acl("pattern deny a/%u\nuser u\ntopic read a/#\n");
        assert!(a.can_read(Some("u"), "c", "a/u"));
        assert!(!a.can_read(Some("v"), "c", "a/v"));
    }

    #[test]
    fn a_matching_rule_without_the_access_falls_through() {
        let a = acl("user u\ntopic write x/#\ntopic read x/y\n");
        assert!(a.can_read(Some("u"), "c", "x/y"));
        assert!(a.can_subscribe(Some("u"), "c", "x/y"));
        assert!(!a.can_subscribe(Some("u"), "c", "x/+"));
        assert!(a.can_publish(Some("u"), "c", "x/y"));
    }

    #[test]
    fn patterns_substitute_user_and_client_id() {
        let a = acl("pattern readwrite users/%u/#\n\
             pattern read clients/%c\n\
             pattern write both/%u/%c\n\
             pattern write percent/%x/%u\n");
        assert!(a.can_publish(Some("ann"), "dev1", "users/ann/a/b"));
        assert!(!a.can_publish(Some("ann"), "dev1", "users/bob/a"));
        assert!(a.can_subscribe(Some("ann"), "dev1", "users/ann/#"));
        assert!(a.can_subscribe(Some("ann"), "dev1", "clients/dev1"));
        assert!(!a.can_subscribe(Some("ann"), "dev1", "clients/dev2"));
        assert!(a.can_publish(Some("ann"), "dev1", "both/ann/dev1"));
        assert!(!a.can_publish(Some("ann"), "dev1", "both/dev1/ann"));
        assert!(a.can_publish(Some("ann"), "dev1", "percent/%x/ann"));
        // %c applies to anonymous clients, %u patterns do not.
        assert!(a.can_subscribe(None, "dev1", "clients/dev1"));
        assert!(!a.can_publish(None, "dev1", "users/%u/x"));
        assert!(!a.can_publish(None, "dev1", "users//x"));
    }

    #[test]
    fn wildcards_in_names_are_refused_once_patterns_exist() {
        let a = acl("pattern readwrite users/%u/#\n\
             user a+b\n\
             topic readwrite own/#\n");
        assert!(!a.can_publish(Some("a+b"), "c", "users/a+b/x"));
        assert!(!a.can_read(Some("x#"), "c", "users/x#/y"));
        assert!(!a.can_publish(Some("ann"), "dev#", "users/ann/x"));
        assert!(a.can_publish(Some("ann"), "dev", "users/ann/x"));
        // Mosquitto refuses only at the pattern stage, after the user's own `topic` rules
        // were tried, so those still apply.
        assert!(a.can_publish(Some("a+b"), "c", "own/x"));
    }

    #[test]
    fn dollar_topics_need_dollar_rules() {
        let a = acl("user u\ntopic read #\ntopic read $SYS/broker/#\n");
        assert!(a.can_read(Some("u"), "c", "anything/at/all"));
        assert!(!a.can_read(Some("u"), "c", "$SYS/other"));
        assert!(a.can_read(Some("u"), "c", "$SYS/broker/uptime"));
        assert!(!a.can_subscribe(Some("u"), "c", "$SYS/#"));
        assert!(a.can_subscribe(Some("u"), "c", "$SYS/broker/#"));
    }

    #[test]
    fn shared_subscriptions_are_judged_by_their_filter() {
        let a = acl("user u\ntopic read jobs/#\n");
        assert!(a.can_subscribe(Some("u"), "c", "$share/workers/jobs/+"));
        assert!(!a.can_subscribe(Some("u"), "c", "$share/workers/other/+"));
    }

    #[test]
    fn topics_may_hold_spaces_and_one_word_is_a_topic() {
        let a = acl("user u\ntopic read with space/x\ntopic read\n");
        assert!(a.can_read(Some("u"), "c", "with space/x"));
        // `topic read` alone is the topic "read" with readwrite, as Mosquitto reads it.
        assert!(a.can_publish(Some("u"), "c", "read"));
    }

    #[test]
    fn whitespace_and_comments() {
        let a = acl("# comment\n\n  # indented comment\n\tuser   u  \r\n  topic\tread   a/b  \n");
        assert!(a.can_read(Some("u"), "c", "a/b"));
    }

    #[test]
    fn empty_file_refuses_everything() {
        let a = acl("# nothing\n");
        assert!(!a.can_publish(None, "c", "a"));
        assert!(!a.can_subscribe(Some("u"), "c", "a"));
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = error_of("user u\ntopic reed a/b\n");
        assert!(
            e.contains("/x/test.acl") && e.contains("line 2") && e.contains("reed"),
            "{e}"
        );
        let e = error_of("\n\nfoo bar\n");
        assert!(e.contains("line 3") && e.contains("unknown keyword"), "{e}");
        let e = error_of("user\n");
        assert!(e.contains("line 1") && e.contains("user name"), "{e}");
        let e = error_of("topic\n");
        assert!(e.contains("needs a topic"), "{e}");
        let e = error_of("pattern read a/#/b\n");
        assert!(e.contains("invalid topic filter"), "{e}");
        let e = error_of("topic read a/b+\n");
        assert!(e.contains("invalid topic filter"), "{e}");
    }

    #[test]
    fn expand_handles_edge_cases() {
        assert_eq!(expand("a/%u/%c", Some("u"), "c"), "a/u/c");
        assert_eq!(expand("%", Some("u"), "c"), "%");
        assert_eq!(expand("a%", Some("u"), "c"), "a%");
        assert_eq!(expand("%%u", Some("u"), "c"), "%u");
        assert_eq!(expand("x/%u", None, "c"), "x/%u");
    }
}
