//! The client's side of the protocol: one command at a time, sent to every server, resent
//! with the same sequence number until a matching reply arrives.
//!
//! A client broadcasts because it cannot know who leads (on MQTT the broadcast is a single
//! publish). Only the leader answers, but after a leader change, or when a reply is
//! duplicated, several replies for one command may arrive: the first one that matches the
//! pending sequence number and fits the operation wins; the rest are ignored.
//!
//! Before its first command that changes data, a client opens a session through the log
//! ([`Op::Open`], see `kv`): its commands then carry the session id `<id>/<slot>` so that they
//! execute at most once. If the session is forgotten (the table is bounded), the command is
//! refused with [`OpResult::SessionExpired`], the client forgets the session and reports the
//! result; the next command opens a new one. Pure logic; no IO, no clock.

use crate::kv::{ClientId, Command, Op, OpResult};
use crate::message::{Dest, Message, Outgoing};
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// How long to wait for a reply before sending the command again.
    pub resend: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            resend: Duration::from_millis(200),
        }
    }
}

/// Why a client call was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// A command is still pending; a client is sequential.
    Busy,
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Busy => write!(f, "a command is still pending"),
        }
    }
}

impl std::error::Error for ClientError {}

/// What the client asks of its driver after an input.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ClientReady {
    /// A message to send (the command, to all servers).
    pub send: Option<Outgoing>,
    /// Fire the resend timer after this long (replacing any earlier one).
    pub timer: Option<Duration>,
    /// The pending command completed: its sequence number and result.
    pub done: Option<(u64, OpResult)>,
}

#[derive(Debug)]
struct Pending {
    /// What is on the wire: the caller's command, or the open that must come first.
    cmd: Command,
    /// The caller's operation, while its session is being opened.
    waiting: Option<Op>,
}

/// One sequential client.
#[derive(Debug)]
pub struct Client {
    id: ClientId,
    cfg: ClientConfig,
    /// The open session's id, if any.
    session: Option<ClientId>,
    /// One counter for opens and commands alike, so a late reply to one is never taken for
    /// a reply to another.
    next_seq: u64,
    pending: Option<Pending>,
}

impl Client {
    /// `id` must be unique to this client incarnation: servers remember the last sequence
    /// number per id, and sequence numbers start again at 1.
    pub fn new(id: impl Into<ClientId>, cfg: ClientConfig) -> Self {
        Client {
            id: id.into(),
            cfg,
            session: None,
            next_seq: 1,
            pending: None,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The pending command's sequence number, if any.
    pub fn pending(&self) -> Option<u64> {
        self.pending.as_ref().map(|p| p.cmd.seq)
    }

    /// Starts a command.
    pub fn invoke(&mut self, op: Op) -> Result<ClientReady, ClientError> {
        if self.pending.is_some() {
            return Err(ClientError::Busy);
        }
        let needs_session = !op.is_read();
        let pending = match (&self.session, needs_session) {
            (None, true) => Pending {
                cmd: self.command(self.id.clone(), Op::Open),
                waiting: Some(op),
            },
            (session, _) => {
                let id = session.clone().unwrap_or_else(|| self.id.clone());
                Pending {
                    cmd: self.command(id, op),
                    waiting: None,
                }
            }
        };
        let ready = self.send(&pending.cmd);
        self.pending = Some(pending);
        Ok(ready)
    }

    /// The session this client's commands run in, once opened.
    pub fn session(&self) -> Option<&str> {
        self.session.as_deref()
    }

    fn command(&mut self, client: ClientId, op: Op) -> Command {
        let seq = self.next_seq;
        self.next_seq += 1;
        Command { client, seq, op }
    }

    /// A reply arrived for `seq`. Returns the result once the caller's command is done; while
    /// its session is being opened, the open's reply instead sends the command itself.
    pub fn on_reply(&mut self, seq: u64, result: OpResult) -> ClientReady {
        let Some(p) = &self.pending else {
            return ClientReady::default();
        };
        if p.cmd.seq != seq || !fits(&p.cmd.op, &result) {
            return ClientReady::default();
        }
        if let (Some(_), OpResult::Opened(slot)) = (&p.waiting, &result) {
            let session = crate::kv::session_id(&self.id, *slot);
            self.session = Some(session.clone());
            let op = self
                .pending
                .take()
                .and_then(|p| p.waiting)
                .unwrap_or(Op::Open);
            let cmd = self.command(session, op);
            let ready = self.send(&cmd);
            self.pending = Some(Pending { cmd, waiting: None });
            return ready;
        }
        if result == OpResult::SessionExpired {
            // Forgotten by the servers: the next command opens a new session.
            self.session = None;
        }
        self.pending = None;
        ClientReady {
            done: Some((seq, result)),
            ..ClientReady::default()
        }
    }

    pub fn on_timer(&mut self) -> ClientReady {
        match &self.pending {
            Some(p) => {
                let cmd = p.cmd.clone();
                self.send(&cmd)
            }
            None => ClientReady::default(),
        }
    }

    /// Gives up on the pending command; its outcome stays unknown (it may still execute, but
    /// never after a later command of this client). Returns its sequence number.
    pub fn abandon(&mut self) -> Option<u64> {
        self.pending.take().map(|p| p.cmd.seq)
    }

    fn send(&self, cmd: &Command) -> ClientReady {
        ClientReady {
            send: Some(Outgoing {
                to: Dest::AllServers,
                msg: Message::Request(cmd.clone()),
            }),
            timer: Some(self.cfg.resend),
            done: None,
        }
    }
}

/// Whether `result` is the kind of answer `op` gets.
fn fits(op: &Op, result: &OpResult) -> bool {
    matches!(
        (op, result),
        (Op::Open, OpResult::Opened(_))
            | (
                Op::Put { .. }
                    | Op::Append { .. }
                    | Op::Delete { .. }
                    | Op::Cas { .. }
                    | Op::CasRevision { .. },
                OpResult::SessionExpired
            )
            | (Op::Get { .. }, OpResult::Value(_))
            | (Op::Read { .. }, OpResult::Entry { .. })
            | (Op::Put { .. } | Op::Append { .. }, OpResult::Done)
            | (Op::Delete { .. }, OpResult::Deleted(_))
            | (
                Op::Cas { .. } | Op::CasRevision { .. },
                OpResult::Swapped(_)
            )
            | (Op::SnapshotPiece { .. }, OpResult::SnapshotPiece { .. })
            | (
                Op::Changes { .. },
                OpResult::Changes { .. } | OpResult::Compacted { .. }
            )
            | (_, OpResult::Rejected { .. })
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get() -> Op {
        Op::Get { key: "k".into() }
    }

    #[test]
    fn first_matching_reply_wins_and_repeats_are_ignored() {
        let mut c = Client::new("c1", ClientConfig::default());
        let r = c.invoke(get()).unwrap();
        assert!(matches!(
            r.send,
            Some(Outgoing {
                to: Dest::AllServers,
                msg: Message::Request(Command { seq: 1, .. })
            })
        ));
        assert_eq!(c.invoke(get()), Err(ClientError::Busy));
        // Wrong sequence number and wrong result kind are both ignored.
        assert_eq!(c.on_reply(7, OpResult::Value(None)).done, None);
        assert_eq!(c.on_reply(1, OpResult::Done).done, None);
        let v = OpResult::Value(Some("x".into()));
        assert_eq!(c.on_reply(1, v.clone()).done, Some((1, v.clone())));
        assert_eq!(
            c.on_reply(1, v).done,
            None,
            "a repeat after completion is ignored"
        );
        assert_eq!(c.pending(), None);
    }

    #[test]
    fn resends_keep_the_sequence_number() {
        let mut c = Client::new("c1", ClientConfig::default());
        c.invoke(get()).unwrap();
        let r = c.on_timer();
        assert!(matches!(
            r.send.map(|o| o.msg),
            Some(Message::Request(Command { seq: 1, .. }))
        ));
        assert_eq!(c.abandon(), Some(1));
        assert_eq!(c.on_timer(), ClientReady::default());
        let r = c.invoke(get()).unwrap();
        assert!(matches!(
            r.send.map(|o| o.msg),
            Some(Message::Request(Command { seq: 2, .. }))
        ));
    }

    #[test]
    fn a_write_opens_a_session_first_and_reopens_after_it_expired() {
        let mut c = Client::new("u/t", ClientConfig::default());
        let put = Op::Put {
            key: "k".into(),
            value: "v".into(),
        };
        let r = c.invoke(put.clone()).unwrap();
        let Some(Message::Request(open)) = r.send.map(|o| o.msg) else {
            panic!("no request")
        };
        assert_eq!((open.client.as_str(), &open.op), ("u/t", &Op::Open));
        // The open's reply sends the put, in the new session.
        let r = c.on_reply(open.seq, OpResult::Opened(42));
        assert_eq!(r.done, None);
        let Some(Message::Request(cmd)) = r.send.map(|o| o.msg) else {
            panic!("the put was not sent")
        };
        assert_eq!((cmd.client.as_str(), &cmd.op), ("u/t/42", &put));
        assert_eq!(
            c.on_reply(cmd.seq, OpResult::Done).done,
            Some((cmd.seq, OpResult::Done))
        );
        // Expired: reported, and the next write opens a new session.
        let r = c.invoke(put.clone()).unwrap();
        let Some(Message::Request(cmd)) = r.send.map(|o| o.msg) else {
            panic!()
        };
        assert_eq!(cmd.client, "u/t/42");
        assert_eq!(
            c.on_reply(cmd.seq, OpResult::SessionExpired).done,
            Some((cmd.seq, OpResult::SessionExpired))
        );
        assert_eq!(c.session(), None);
        let r = c.invoke(put).unwrap();
        assert!(matches!(
            r.send.map(|o| o.msg),
            Some(Message::Request(Command { op: Op::Open, .. }))
        ));
    }
}
