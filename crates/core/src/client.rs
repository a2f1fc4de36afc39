//! The client's side of the protocol: one command at a time, sent to every server, resent
//! with the same sequence number until a matching reply arrives.
//!
//! A client broadcasts because it cannot know who leads (on MQTT the broadcast is a single
//! publish). Only the leader answers, but after a leader change, or when a reply is
//! duplicated, several replies for one command may arrive: the first one that matches the
//! pending sequence number and fits the operation wins; the rest are ignored. Pure logic; no
//! IO, no clock.

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
    cmd: Command,
}

/// One sequential client.
#[derive(Debug)]
pub struct Client {
    id: ClientId,
    cfg: ClientConfig,
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
        let cmd = Command {
            client: self.id.clone(),
            seq: self.next_seq,
            op,
        };
        self.next_seq += 1;
        let ready = self.send(&cmd);
        self.pending = Some(Pending { cmd });
        Ok(ready)
    }

    /// A reply arrived.
    pub fn on_reply(&mut self, seq: u64, result: OpResult) -> ClientReady {
        let Some(p) = &self.pending else {
            return ClientReady::default();
        };
        if p.cmd.seq != seq || !fits(&p.cmd.op, &result) {
            // A repeat of an earlier reply, or one that cannot be an answer to this command.
            return ClientReady::default();
        }
        self.pending = None;
        ClientReady {
            done: Some((seq, result)),
            ..ClientReady::default()
        }
    }

    /// The resend timer fired.
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
        (Op::Get { .. }, OpResult::Value(_))
            | (Op::Put { .. } | Op::Append { .. }, OpResult::Done)
            | (Op::Delete { .. }, OpResult::Deleted(_))
            | (Op::Cas { .. }, OpResult::Swapped(_))
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
}
