//! The JSON Lines history format and the pairing of events into operations.
//!
//! One [`Event`] per line:
//!
//! ```text
//! {"t": 12, "client": "3", "type": "invoke", "f": "cas", "key": "r", "expected": "1", "value": "2"}
//! {"t": 15, "client": "3", "type": "ok", "f": "cas", "key": "r", "result": true}
//! ```
//!
//! Each client is sequential: an `invoke` is completed by the same client's next
//! `ok`, `fail` or `info` event. `ok` means the operation took effect, `fail` means it
//! certainly did not, and `info` means nobody knows (it may take effect at any time after
//! its invoke, or never). Blank lines are ignored and unknown fields are tolerated so that
//! tools may annotate histories.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

/// Everything that can be wrong with a history. Bad input is always reported through
/// this type, never through a panic.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("cannot read history file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("line {line}: malformed event: {source}")]
    Json {
        /// 1-based line number in the input.
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot write history: {0}")]
    Write(#[source] serde_json::Error),
    #[error("event {index}: client {client:?} completes an operation it never invoked")]
    CompletionWithoutInvoke {
        /// 0-based index of the offending event.
        index: usize,
        client: String,
    },
    #[error(
        "event {index}: client {client:?} invokes while its operation from event {pending} \
         is still pending"
    )]
    InvokeWhilePending {
        index: usize,
        client: String,
        /// Index of the invoke that has not completed yet.
        pending: usize,
    },
    #[error(
        "event {index}: client {client:?} completes {found} but invoked {invoked} \
         (event {invoke})"
    )]
    Mismatch {
        index: usize,
        client: String,
        /// Index of the matching invoke.
        invoke: usize,
        /// What the invoke said, e.g. `put("k")` or `value "a"`.
        invoked: String,
        /// What the completion said.
        found: String,
    },
    #[error("event {index}: completion at t={ret} precedes its invoke at t={call}")]
    ReturnBeforeCall { index: usize, call: u64, ret: u64 },
    #[error("event {index}: {f} needs a value")]
    MissingValue { index: usize, f: OpKind },
    #[error("operation {index}: {reason}")]
    InvalidOperation { index: usize, reason: String },
}

/// The `type` of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Invoke,
    Ok,
    Fail,
    Info,
}

/// The operation an event belongs to (`f`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    Put,
    Get,
    Append,
    Delete,
    Cas,
}

impl OpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Put => "put",
            OpKind::Get => "get",
            OpKind::Append => "append",
            OpKind::Delete => "delete",
            OpKind::Cas => "cas",
        }
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Invoke => "invoke",
            EventType::Ok => "ok",
            EventType::Fail => "fail",
            EventType::Info => "info",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of a history.
///
/// `value`: the value written (put, append, cas's new value) on an invoke, or the value
/// read on a get's `ok` (`None` = key absent). `expected`: a cas's expected current value
/// (`None` = expects the key to be absent). `result`: whether an `ok` cas swapped.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Event {
    /// Time in nanoseconds; only the order of times matters to the checker.
    pub t: u64,
    pub client: String,
    #[serde(rename = "type")]
    pub ty: EventType,
    pub f: OpKind,
    pub key: String,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub expected: Option<String>,
    #[serde(default)]
    pub result: Option<bool>,
}

impl Event {
    fn new(t: u64, client: &str, ty: EventType, f: OpKind, key: &str) -> Event {
        Event {
            t,
            client: client.to_owned(),
            ty,
            f,
            key: key.to_owned(),
            value: None,
            expected: None,
            result: None,
        }
    }

    /// An `invoke` event without value, expected or result.
    pub fn invoke(t: u64, client: &str, f: OpKind, key: &str) -> Event {
        Event::new(t, client, EventType::Invoke, f, key)
    }

    /// An `ok` event without value, expected or result.
    pub fn ok(t: u64, client: &str, f: OpKind, key: &str) -> Event {
        Event::new(t, client, EventType::Ok, f, key)
    }

    /// A `fail` event.
    pub fn fail(t: u64, client: &str, f: OpKind, key: &str) -> Event {
        Event::new(t, client, EventType::Fail, f, key)
    }

    /// An `info` event.
    pub fn info(t: u64, client: &str, f: OpKind, key: &str) -> Event {
        Event::new(t, client, EventType::Info, f, key)
    }

    pub fn with_value(mut self, value: Option<&str>) -> Event {
        self.value = value.map(str::to_owned);
        self
    }

    pub fn with_expected(mut self, expected: Option<&str>) -> Event {
        self.expected = expected.map(str::to_owned);
        self
    }

    pub fn with_result(mut self, result: bool) -> Event {
        self.result = Some(result);
        self
    }
}

// Hand-written so that absent fields stay absent, except a get's `ok`, whose null value
// is information (the key was absent) and is written out to make that explicit.
impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("t", &self.t)?;
        map.serialize_entry("client", &self.client)?;
        map.serialize_entry("type", &self.ty)?;
        map.serialize_entry("f", &self.f)?;
        map.serialize_entry("key", &self.key)?;
        if self.value.is_some() || (self.f == OpKind::Get && self.ty == EventType::Ok) {
            map.serialize_entry("value", &self.value)?;
        }
        if let Some(expected) = &self.expected {
            map.serialize_entry("expected", expected)?;
        }
        if let Some(result) = self.result {
            map.serialize_entry("result", &result)?;
        }
        map.end()
    }
}

/// Parses a JSON Lines history. Blank lines are skipped; errors carry 1-based line numbers.
pub fn parse_jsonl(input: &str) -> Result<Vec<Event>, HistoryError> {
    let mut events = Vec::new();
    for (i, line) in input.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let event = serde_json::from_str(line).map_err(|source| HistoryError::Json {
            line: i + 1,
            source,
        })?;
        events.push(event);
    }
    Ok(events)
}

/// Reads and parses a JSON Lines history file.
pub fn read_file(path: impl AsRef<Path>) -> Result<Vec<Event>, HistoryError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| HistoryError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_jsonl(&text)
}

/// Writes events as JSON Lines, one event per line.
pub fn write_jsonl<W: Write>(mut writer: W, events: &[Event]) -> Result<(), HistoryError> {
    for event in events {
        serde_json::to_writer(&mut writer, event).map_err(HistoryError::Write)?;
        writer
            .write_all(b"\n")
            .map_err(|e| HistoryError::Write(serde_json::Error::io(e)))?;
    }
    writer
        .flush()
        .map_err(|e| HistoryError::Write(serde_json::Error::io(e)))
}

/// What is known about an operation's completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The operation took effect. `value` is what a get read (`None` = absent), `result`
    /// whether a cas swapped; both are copied from the `ok` event.
    Ok {
        value: Option<String>,
        result: Option<bool>,
    },
    /// `info` or never completed: it may have taken effect at any time after its call, or
    /// never.
    Unknown,
}

/// An invoke paired with its completion. Operations that failed are not represented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub client: String,
    pub kind: OpKind,
    pub key: String,
    /// The value written: put/append value, cas's new value. `None` for get and delete.
    pub value: Option<String>,
    /// A cas's expected current value (`None` = expects the key to be absent).
    pub expected: Option<String>,
    pub call: u64,
    /// `None` when the outcome is unknown: the operation may take effect at any later time.
    pub ret: Option<u64>,
    pub outcome: Outcome,
}

/// Pairs every invoke with its client's next completion. `fail`ed operations are dropped;
/// an invoke that never completes is treated like `info`. The operations come back in the
/// order of their invokes.
pub fn pair_operations(events: &[Event]) -> Result<Vec<Operation>, HistoryError> {
    let mut pending: HashMap<&str, usize> = HashMap::new();
    let mut ops: Vec<(usize, Operation)> = Vec::new();
    for (index, event) in events.iter().enumerate() {
        if event.ty == EventType::Invoke {
            if let Some(&prev) = pending.get(event.client.as_str()) {
                return Err(HistoryError::InvokeWhilePending {
                    index,
                    client: event.client.clone(),
                    pending: prev,
                });
            }
            pending.insert(&event.client, index);
            continue;
        }
        let Some(inv_index) = pending.remove(event.client.as_str()) else {
            return Err(HistoryError::CompletionWithoutInvoke {
                index,
                client: event.client.clone(),
            });
        };
        let invoke = &events[inv_index];
        if invoke.f != event.f || invoke.key != event.key {
            return Err(HistoryError::Mismatch {
                index,
                client: event.client.clone(),
                invoke: inv_index,
                invoked: format!("{}({:?})", invoke.f, invoke.key),
                found: format!("{}({:?})", event.f, event.key),
            });
        }
        if event.t < invoke.t {
            return Err(HistoryError::ReturnBeforeCall {
                index,
                call: invoke.t,
                ret: event.t,
            });
        }
        let (ret, outcome) = match event.ty {
            EventType::Fail => continue,
            EventType::Info => (None, Outcome::Unknown),
            EventType::Ok => (
                Some(event.t),
                Outcome::Ok {
                    value: event.value.clone(),
                    result: event.result,
                },
            ),
            // Handled above; kept exhaustive so a new event type cannot slip through.
            EventType::Invoke => continue,
        };
        ops.push((
            inv_index,
            operation(inv_index, invoke, Some((index, event)), ret, outcome)?,
        ));
    }
    for (_, &inv_index) in pending.iter() {
        let invoke = &events[inv_index];
        ops.push((
            inv_index,
            operation(inv_index, invoke, None, None, Outcome::Unknown)?,
        ));
    }
    ops.sort_by_key(|(index, _)| *index);
    Ok(ops.into_iter().map(|(_, op)| op).collect())
}

fn operation(
    index: usize,
    invoke: &Event,
    completion: Option<(usize, &Event)>,
    ret: Option<u64>,
    outcome: Outcome,
) -> Result<Operation, HistoryError> {
    let mut value = None;
    let mut expected = None;
    match invoke.f {
        OpKind::Get | OpKind::Delete => {}
        OpKind::Put | OpKind::Append | OpKind::Cas => {
            // The invoke is authoritative; a completion may repeat the value, and some
            // writers only put it there.
            let repeated = completion.and_then(|(_, c)| c.value.as_ref());
            value = match (&invoke.value, repeated) {
                (Some(v), Some(r)) if v != r => {
                    return Err(HistoryError::Mismatch {
                        index: completion.map_or(index, |(i, _)| i),
                        client: invoke.client.clone(),
                        invoke: index,
                        invoked: format!("value {v:?}"),
                        found: format!("value {r:?}"),
                    });
                }
                (Some(v), _) => Some(v.clone()),
                (None, r) => r.cloned(),
            };
            if value.is_none() {
                return Err(HistoryError::MissingValue { index, f: invoke.f });
            }
            if invoke.f == OpKind::Cas {
                expected = invoke
                    .expected
                    .clone()
                    .or_else(|| completion.and_then(|(_, c)| c.expected.clone()));
            }
        }
    }
    Ok(Operation {
        client: invoke.client.clone(),
        kind: invoke.f,
        key: invoke.key.clone(),
        value,
        expected,
        call: invoke.t,
        ret,
        outcome,
    })
}

/// Quotes a value for messages, shortening long ones (append histories grow big values).
pub(crate) fn show_value(value: Option<&str>) -> String {
    const MAX: usize = 40;
    match value {
        None => "null".to_owned(),
        Some(v) if v.len() <= MAX => format!("{v:?}"),
        Some(v) => {
            let mut cut = MAX - 12;
            while !v.is_char_boundary(cut) {
                cut -= 1;
            }
            let tail_start = v.len() - 8;
            let mut tail = tail_start;
            while !v.is_char_boundary(tail) {
                tail += 1;
            }
            format!("\"{}…{}\" ({} bytes)", &v[..cut], &v[tail..], v.len())
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = format!("{:?}", self.key);
        match self.kind {
            OpKind::Get | OpKind::Delete => write!(f, "{}({key})", self.kind)?,
            OpKind::Put | OpKind::Append => write!(
                f,
                "{}({key}, {})",
                self.kind,
                show_value(self.value.as_deref())
            )?,
            OpKind::Cas => write!(
                f,
                "cas({key}, expected {}, new {})",
                show_value(self.expected.as_deref()),
                show_value(self.value.as_deref())
            )?,
        }
        match (&self.outcome, self.kind) {
            (Outcome::Unknown, _) => f.write_str(" -> ?")?,
            (Outcome::Ok { value, .. }, OpKind::Get) => {
                write!(f, " -> {}", show_value(value.as_deref()))?
            }
            (
                Outcome::Ok {
                    result: Some(r), ..
                },
                OpKind::Cas,
            ) => write!(f, " -> {r}")?,
            (Outcome::Ok { .. }, _) => f.write_str(" -> ok")?,
        }
        write!(f, " by client {} at [{}, ", self.client, self.call)?;
        match self.ret {
            Some(ret) => write!(f, "{ret}]"),
            None => f.write_str("inf)"),
        }
    }
}
