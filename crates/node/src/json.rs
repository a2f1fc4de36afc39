//! The JSON request API: any MQTT client (`mosquitto_pub`, paho, Node-RED) can use the store
//! by publishing a JSON request on `mqpaxos/<cluster>/json/request/<user>` and reading the
//! answer on a reply topic under `mqpaxos/<cluster>/json/reply/<user>/` that it names in the
//! request (`reply_to`). The same servers, the same log and the same commands as the Rust
//! client's postcard requests, so the same guarantees; only the encoding differs.
//!
//! Requests (fields by operation; unknown fields are refused so a typo is an error, not a
//! silently different request):
//!
//! | `op` | fields | result fields |
//! |---|---|---|
//! | `get` | `key` | `found`, and if found `value`, `create_revision`, `mod_revision`, `version`; always `revision` (the store's) |
//! | `put`, `append` | `key`, `value` | - |
//! | `delete` | `key` | `deleted` |
//! | `cas` | `key`, `value` (the new one), and one of `expected` (the value now), `absent: true`, `revision` (the key's `mod_revision` now; 0: absent) | `swapped` |
//! | `open` | - | `session` |
//! | `changes` | `key`, `from` (a revision, from 1), optionally `prefix: true` | `revision`, `changes` (watch events), `more`; or the error `compacted` with `compact_revision` |
//!
//! Every request carries `id` (a string of 1-64 letters, digits, `-`, `_`, `.`; echoed in the
//! reply) and says where the answer goes: `reply_to` in the request, or (MQTT 5) the
//! publish's response topic, in which case the answer carries the request's correlation data
//! ([`crate::transport5`]); `reply_to` wins when both are given. Writes are at most once: with `session` (from `open`) and `seq`
//! (1, 2, ... per session), exactly as the Rust client's; without them, per request id (the
//! user's ids must then be unique; a retry with the same id gets the first answer while the
//! servers' session table remembers it). Replies: `{"id", "ok": true, ...}` or
//! `{"id", "ok": false, "error": {"code", "message"}}` with a stable code.

use mqpaxos_core::{Change, ChangeKind, Command, Op, OpResult};
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The largest JSON request taken: a value of the largest size, escaped, and the rest.
pub const MAX_JSON_REQUEST: usize = 2 * mqpaxos_core::limits::MAX_VALUE + 64 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    id: String,
    op: String,
    reply_to: Option<String>,
    key: Option<String>,
    value: Option<String>,
    expected: Option<String>,
    #[serde(default)]
    absent: bool,
    revision: Option<u64>,
    #[serde(default)]
    prefix: bool,
    from: Option<u64>,
    session: Option<String>,
    seq: Option<u64>,
}

/// A request turned into a command, with where and how to answer it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub cmd: Command,
    pub reply_to: String,
    pub id: String,
}

/// A request that cannot be taken; answered (if it named a usable reply topic) with
/// `bad_request`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub reply_to: Option<String>,
    pub id: Option<String>,
    pub message: String,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Parses a request that `user` published (the broker authenticated the user; it is the last
/// level of the request topic). `reply_prefix` is `mqpaxos/<cluster>/json/reply/`: a reply
/// topic must lie under `<reply_prefix><user>`, so nobody can make the servers publish into
/// another user's topics.
pub fn parse(
    payload: &[u8],
    user: &str,
    reply_prefix: &str,
    response_topic: Option<&str>,
) -> Result<Accepted, Refused> {
    let refuse = |reply_to: Option<String>, id: Option<String>, message: String| Refused {
        reply_to,
        id,
        message,
    };
    if payload.len() > MAX_JSON_REQUEST {
        return Err(refuse(
            None,
            None,
            format!(
                "a request of {} bytes; at most {MAX_JSON_REQUEST} are taken",
                payload.len()
            ),
        ));
    }
    let r: Request = match serde_json::from_slice(payload) {
        Ok(r) => r,
        Err(e) => return Err(undecodable(payload, &e, user, reply_prefix, response_topic)),
    };
    let Some(reply_to) = r.reply_to.clone().or(response_topic.map(str::to_string)) else {
        return Err(refuse(
            None,
            None,
            "reply_to (or an MQTT 5 response topic) is required".into(),
        ));
    };
    if !reply_allowed(&reply_to, user, reply_prefix) {
        return Err(refuse(
            None,
            None,
            format!("reply_to must lie under {reply_prefix}{user}/"),
        ));
    }
    let bad = |message: String| refuse(Some(reply_to.clone()), Some(r.id.clone()), message);
    if !valid_id(&r.id) {
        return Err(bad(
            "id must be 1-64 letters, digits, '-', '_' or '.'".into()
        ));
    }
    let op = request_op(&r, &bad)?;
    if r.prefix && !matches!(op, Op::Changes { .. }) {
        return Err(bad("prefix belongs to changes only".into()));
    }
    if r.from.is_some() && !matches!(op, Op::Changes { .. }) {
        return Err(bad("from belongs to changes only".into()));
    }
    let cmd = request_command(&r, user, op, &bad)?;
    Ok(Accepted {
        cmd,
        reply_to,
        id: r.id,
    })
}

/// The refusal of a payload that is not a valid request (`e` says why). It still answers
/// if the reply topic and id can be read: a client deserves to know why its request went
/// nowhere.
fn undecodable(
    payload: &[u8],
    e: &serde_json::Error,
    user: &str,
    reply_prefix: &str,
    response_topic: Option<&str>,
) -> Refused {
    let loose: Option<Map<String, Value>> = serde_json::from_slice(payload).ok();
    let field = |name: &str| {
        loose
            .as_ref()
            .and_then(|m| m.get(name))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let reply_to = field("reply_to")
        .or(response_topic.map(str::to_string))
        .filter(|t| reply_allowed(t, user, reply_prefix));
    Refused {
        reply_to,
        id: field("id"),
        message: format!("bad request: {e}"),
    }
}

/// The operation a request's `op` names, with the fields it needs; `bad` makes the
/// refusal when they are missing or do not fit.
fn request_op(r: &Request, bad: &impl Fn(String) -> Refused) -> Result<Op, Refused> {
    let key = || {
        r.key
            .clone()
            .ok_or_else(|| bad(format!("{} needs a key", r.op)))
    };
    let value = || {
        r.value
            .as_deref()
            .map(std::sync::Arc::<str>::from)
            .ok_or_else(|| bad(format!("{} needs a value", r.op)))
    };
    let op = match r.op.as_str() {
        "get" => Op::Read { key: key()? },
        "put" => Op::Put {
            key: key()?,
            value: value()?,
        },
        "append" => Op::Append {
            key: key()?,
            value: value()?,
        },
        "delete" => Op::Delete { key: key()? },
        "cas" => {
            let (key, new) = (key()?, value()?);
            match (&r.expected, r.absent, r.revision) {
                (Some(e), false, None) => Op::Cas {
                    key,
                    expected: Some(e.clone()),
                    new,
                },
                (None, true, None) => Op::Cas {
                    key,
                    expected: None,
                    new,
                },
                (None, false, Some(revision)) => Op::CasRevision { key, revision, new },
                _ => {
                    return Err(bad(
                        "cas needs exactly one of expected, absent: true, revision".into(),
                    ))
                }
            }
        }
        "open" => Op::Open,
        "changes" => match r.from {
            Some(from) if from >= 1 => Op::Changes {
                key: key()?,
                prefix: r.prefix,
                from,
            },
            _ => return Err(bad("changes needs from, a revision from 1".into())),
        },
        other => {
            return Err(bad(format!(
                "unknown op {other:?} (get, put, append, delete, cas, open, changes)"
            )))
        }
    };
    Ok(op)
}

/// The command that carries `op`: in the request's own session, or else in one named after
/// the request id (which makes a write at most once per id).
fn request_command(
    r: &Request,
    user: &str,
    op: Op,
    bad: &impl Fn(String) -> Refused,
) -> Result<Command, Refused> {
    let cmd = match (&r.session, r.seq, &op) {
        (_, _, Op::Open) => Command {
            client: format!("{user}/json-{}", r.id),
            seq: 1,
            op,
        },
        (Some(session), Some(seq), _) if seq > 0 => {
            if !session.starts_with(&format!("{user}/")) {
                return Err(bad(format!("session must be one of {user}'s")));
            }
            Command {
                client: session.clone(),
                seq,
                op,
            }
        }
        (None, None, op) if op.is_read() => Command {
            client: format!("{user}/json/{}", r.id),
            seq: 1,
            op: op.clone(),
        },
        // At most once per request id: the id is the session (see the module docs).
        (None, None, _) => Command {
            client: format!("{user}/json/{}", r.id),
            seq: 1,
            op: Op::Once(Box::new(op)),
        },
        _ => {
            return Err(bad(
                "session and seq (from 1) come together, or neither".into()
            ))
        }
    };
    Ok(cmd)
}

fn reply_allowed(topic: &str, user: &str, reply_prefix: &str) -> bool {
    let Some(rest) = topic
        .strip_prefix(reply_prefix)
        .and_then(|t| t.strip_prefix(user))
    else {
        return false;
    };
    (rest.is_empty() || rest.starts_with('/'))
        && topic.len() <= 512
        && !topic.contains(['+', '#', '\0'])
}

/// The JSON answer to request `id` whose command, sent under client id `client`, returned
/// `result`.
pub fn reply(id: &str, client: &str, result: &OpResult) -> Vec<u8> {
    let mut out = Map::new();
    out.insert("id".into(), json!(id));
    match result {
        OpResult::Rejected { code, message } => return error(id, code.name(), message),
        OpResult::SessionExpired => {
            return error(
                id,
                "session_expired",
                "the session is not (or no longer) known: open a new one; whether this \
                 command ran is unknown",
            )
        }
        OpResult::Value(v) => {
            out.insert("found".into(), json!(v.is_some()));
            if let Some(v) = v {
                out.insert("value".into(), json!(v));
            }
        }
        OpResult::Entry { revision, entry } => {
            out.insert("found".into(), json!(entry.is_some()));
            if let Some(e) = entry {
                out.insert("value".into(), json!(e.value));
                out.insert("create_revision".into(), json!(e.create));
                out.insert("mod_revision".into(), json!(e.modified));
                out.insert("version".into(), json!(e.version));
            }
            out.insert("revision".into(), json!(revision));
        }
        OpResult::Done => {}
        OpResult::Deleted(d) => {
            out.insert("deleted".into(), json!(d));
        }
        OpResult::Swapped(s) => {
            out.insert("swapped".into(), json!(s));
        }
        OpResult::Opened(slot) => {
            let session = mqpaxos_core::kv::session_id(client, *slot);
            out.insert("session".into(), json!(session));
        }
        OpResult::Changes {
            revision,
            changes,
            more,
        } => {
            out.insert("revision".into(), json!(revision));
            let events: Vec<Value> = changes.iter().map(event).collect();
            out.insert("changes".into(), Value::Array(events));
            out.insert("more".into(), json!(more));
        }
        OpResult::Compacted { floor } => {
            let v = json!({
                "id": id,
                "ok": false,
                "error": {
                    "code": COMPACTED,
                    "message": format!(
                        "the changes asked for are no longer held: only those after revision \
                         {floor} are; read the key anew and watch from its revision"
                    ),
                    "compact_revision": floor,
                },
            });
            return serde_json::to_vec(&v).unwrap_or_default();
        }
        // Backups go through the Rust client only (no JSON request asks for one).
        OpResult::SnapshotPiece { .. } => {
            return error(id, "invalid_op", "backups are not part of the JSON API")
        }
    }
    out.insert("ok".into(), json!(true));
    serde_json::to_vec(&Value::Object(out)).unwrap_or_default()
}

/// An error answer. `code` is stable: programs may match on it.
pub fn error(id: &str, code: &str, message: &str) -> Vec<u8> {
    let v = json!({
        "id": id,
        "ok": false,
        "error": {"code": code, "message": message},
    });
    serde_json::to_vec(&v).unwrap_or_default()
}

/// The code of a request that could not be understood.
pub const BAD_REQUEST: &str = "bad_request";

/// The code of a `changes` request for history the servers no longer hold.
pub const COMPACTED: &str = "compacted";

/// A change as watchers receive it (on the watch topics and in `changes` answers).
pub fn event(c: &Change) -> Value {
    let mut out = Map::new();
    out.insert("revision".into(), json!(c.revision));
    match &c.kind {
        ChangeKind::Put {
            value,
            create,
            version,
        } => {
            out.insert("op".into(), json!("put"));
            out.insert("key".into(), json!(c.key));
            out.insert("value".into(), json!(value));
            out.insert("create_revision".into(), json!(create));
            out.insert("version".into(), json!(version));
        }
        ChangeKind::Delete => {
            out.insert("op".into(), json!("delete"));
            out.insert("key".into(), json!(c.key));
        }
    }
    out.insert("prev_revision".into(), json!(c.prev_revision));
    out.insert("prev_store_revision".into(), json!(c.prev_store_revision));
    Value::Object(out)
}

/// The retained view of a key after `c` (see [`crate::topics::Topics::view`]): the key's
/// value and revisions, or nothing (an empty retained message clears the view) for a delete.
pub fn view(c: &Change) -> Vec<u8> {
    match &c.kind {
        ChangeKind::Put {
            value,
            create,
            version,
        } => serde_json::to_vec(&json!({
            "key": c.key,
            "value": value,
            "create_revision": create,
            "mod_revision": c.revision,
            "version": version,
        }))
        .unwrap_or_default(),
        ChangeKind::Delete => Vec::new(),
    }
}

/// A watch event read back (the Rust client's watcher); `None` if it is not one.
pub fn parse_event(payload: &[u8]) -> Option<Change> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct E {
        revision: u64,
        op: String,
        key: String,
        value: Option<String>,
        create_revision: Option<u64>,
        version: Option<u64>,
        prev_revision: u64,
        prev_store_revision: u64,
    }
    let e: E = serde_json::from_slice(payload).ok()?;
    let kind = match (e.op.as_str(), e.value, e.create_revision, e.version) {
        ("put", Some(value), Some(create), Some(version)) => ChangeKind::Put {
            value: value.into(),
            create,
            version,
        },
        ("delete", None, None, None) => ChangeKind::Delete,
        _ => return None,
    };
    Some(Change {
        revision: e.revision,
        key: e.key,
        kind,
        prev_revision: e.prev_revision,
        prev_store_revision: e.prev_store_revision,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqpaxos_core::ErrorCode;

    const P: &str = "mqpaxos/c/json/reply/";

    fn req(s: &str) -> Result<Accepted, Refused> {
        parse(s.as_bytes(), "alice", P, None)
    }

    #[test]
    fn requests_become_commands() {
        let a = req(r#"{"id":"1","op":"put","key":"k","value":"v","reply_to":"mqpaxos/c/json/reply/alice"}"#)
            .unwrap();
        assert_eq!(a.cmd.client, "alice/json/1");
        assert!(matches!(&a.cmd.op, Op::Once(op) if matches!(**op, Op::Put { .. })));
        let a = req(r#"{"id":"2","op":"get","key":"k","reply_to":"mqpaxos/c/json/reply/alice/x"}"#)
            .unwrap();
        assert_eq!(a.cmd.op, Op::Read { key: "k".into() });
        let a = req(r#"{"id":"3","op":"cas","key":"k","value":"n","revision":7,"reply_to":"mqpaxos/c/json/reply/alice","session":"alice/json-s/4","seq":2}"#)
            .unwrap();
        assert_eq!(a.cmd.client, "alice/json-s/4");
        assert_eq!(a.cmd.seq, 2);
        assert_eq!(
            a.cmd.op,
            Op::CasRevision {
                key: "k".into(),
                revision: 7,
                new: "n".into()
            }
        );
        let a = req(r#"{"id":"s","op":"open","reply_to":"mqpaxos/c/json/reply/alice"}"#).unwrap();
        assert_eq!(a.cmd.op, Op::Open);
        let out = reply("s", &a.cmd.client, &OpResult::Opened(12));
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["session"], "alice/json-s/12");
        assert_eq!(v["ok"], true);
    }

    #[test]
    fn an_mqtt5_response_topic_stands_in_for_reply_to() {
        let body = br#"{"id":"1","op":"get","key":"k"}"#;
        let a = parse(body, "alice", P, Some("mqpaxos/c/json/reply/alice/r")).unwrap();
        assert_eq!(a.reply_to, "mqpaxos/c/json/reply/alice/r");
        // Another user's topic is refused from the property as from the field.
        let e = parse(body, "alice", P, Some("mqpaxos/c/json/reply/bob")).unwrap_err();
        assert_eq!(e.reply_to, None);
        // The field wins over the property.
        let body = br#"{"id":"1","op":"get","key":"k","reply_to":"mqpaxos/c/json/reply/alice/f"}"#;
        let a = parse(body, "alice", P, Some("mqpaxos/c/json/reply/alice/r")).unwrap();
        assert_eq!(a.reply_to, "mqpaxos/c/json/reply/alice/f");
    }

    #[test]
    fn bad_requests_are_refused_with_a_reason() {
        // Another user's reply topic: not answered at all.
        let e = req(r#"{"id":"1","op":"get","key":"k","reply_to":"mqpaxos/c/json/reply/bob"}"#)
            .unwrap_err();
        assert_eq!(e.reply_to, None);
        let e = req(r#"{"id":"1","op":"get","key":"k","reply_to":"mqpaxos/c/json/reply/alicex"}"#)
            .unwrap_err();
        assert_eq!(e.reply_to, None);
        // A typo in a field name: answered, naming it.
        let e = req(r#"{"id":"1","op":"get","kye":"k","reply_to":"mqpaxos/c/json/reply/alice"}"#)
            .unwrap_err();
        assert!(e.message.contains("kye"), "{}", e.message);
        assert_eq!(e.reply_to.as_deref(), Some("mqpaxos/c/json/reply/alice"));
        for bad in [
            r#"{"id":"1","op":"cas","key":"k","value":"n","reply_to":"mqpaxos/c/json/reply/alice"}"#,
            r#"{"id":"a/b","op":"get","key":"k","reply_to":"mqpaxos/c/json/reply/alice"}"#,
            r#"{"id":"1","op":"frob","key":"k","reply_to":"mqpaxos/c/json/reply/alice"}"#,
            r#"{"id":"1","op":"put","key":"k","reply_to":"mqpaxos/c/json/reply/alice"}"#,
            r#"{"id":"1","op":"put","key":"k","value":"v","session":"bob/x/1","seq":1,"reply_to":"mqpaxos/c/json/reply/alice"}"#,
            r#"{"id":"1","op":"put","key":"k","value":"v","seq":1,"reply_to":"mqpaxos/c/json/reply/alice"}"#,
        ] {
            let e = req(bad).unwrap_err();
            assert!(e.reply_to.is_some(), "{bad}");
        }
        assert!(parse(&vec![b' '; MAX_JSON_REQUEST + 1], "alice", P, None).is_err());
        // No reply topic at all: nobody to answer.
        let e = req(r#"{"id":"1","op":"get","key":"k"}"#).unwrap_err();
        assert_eq!(e.reply_to, None);
    }

    #[test]
    fn replies_carry_revisions_and_stable_error_codes() {
        let cmd = Command {
            client: "alice/json/1".into(),
            seq: 1,
            op: Op::Read { key: "k".into() },
        };
        let r = OpResult::Entry {
            revision: 9000,
            entry: Some(mqpaxos_core::kv::Record {
                value: "v".into(),
                create: 2000,
                modified: 8000,
                version: 3,
            }),
        };
        let v: Value = serde_json::from_slice(&reply("1", &cmd.client, &r)).unwrap();
        assert_eq!(v["mod_revision"], 8000);
        assert_eq!(v["create_revision"], 2000);
        assert_eq!(v["version"], 3);
        assert_eq!(v["revision"], 9000);
        let r = OpResult::Rejected {
            code: ErrorCode::KeyTooLarge,
            message: "big".into(),
        };
        let v: Value = serde_json::from_slice(&reply("1", &cmd.client, &r)).unwrap();
        assert_eq!(v["ok"], false);
        assert_eq!(v["error"]["code"], "key_too_large");
    }
}
