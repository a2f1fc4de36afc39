//! The client's side of the protocol: one command at a time, sent to every server, resent
//! with the same sequence number until a matching reply arrives.
//!
//! Leader first, broadcast as the fallback. A client told who leads ([`Client::on_leader`]:
//! the leaders announce themselves, on MQTT as a retained message) sends each command to that
//! server alone, and every resend to all servers (one publish on MQTT). The broadcast is
//! what makes a wrong or stale hint harmless: a command sent to a server that no longer
//! leads waits one resend interval, no more. Sending to the leader alone spares the broker
//! two deliveries per command and the followers decoding each one. A new hint resends the
//! pending command to the new leader at once, so a failover does not wait for the timer.
//! Only the leader answers, but after a leader change, or when a reply is duplicated,
//! several replies for one command may arrive: the first one that matches the pending
//! sequence number and fits the operation wins; the rest are ignored.
//!
//! Before its first command that changes data, a client opens a session through the log
//! ([`Op::Open`], see `kv`): its commands then carry the session id `<id>/<slot>` so that they
//! execute at most once. If the session is forgotten (the table is bounded), the command is
//! refused with [`OpResult::SessionExpired`], the client forgets the session and reports the
//! result; the next command opens a new one. Pure logic; no IO, no clock.

use crate::ballot::NodeId;
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
    /// A message to send (the command, to the leader it was told of or to all servers).
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
    /// The server last announced as leader, if any. The latest announcement wins, whatever
    /// its ballot: a cluster made anew starts its ballots again from the bottom, and a
    /// stale announcement costs one resend interval, after which the current leader, which
    /// sees it too, announces itself again.
    leader: Option<NodeId>,
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
            leader: None,
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
        let ready = self.send(&pending.cmd, self.to_leader());
        self.pending = Some(pending);
        Ok(ready)
    }

    /// A server announced that it leads. A pending command then goes to the new leader at
    /// once (the old one may be gone, and the broadcast would wait for the resend timer).
    pub fn on_leader(&mut self, server: NodeId) -> ClientReady {
        let changed = self.leader != Some(server);
        self.leader = Some(server);
        match &self.pending {
            Some(p) if changed => {
                let cmd = p.cmd.clone();
                self.send(&cmd, Dest::Server(server))
            }
            _ => ClientReady::default(),
        }
    }

    /// The server this client believes leads, if it was told.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    fn to_leader(&self) -> Dest {
        self.leader.map_or(Dest::AllServers, Dest::Server)
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
            let ready = self.send(&cmd, self.to_leader());
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

    /// The resend timer fired: the pending command goes to every server, whoever was
    /// thought to lead (the fallback that makes a stale hint harmless).
    pub fn on_timer(&mut self) -> ClientReady {
        match &self.pending {
            Some(p) => {
                let cmd = p.cmd.clone();
                self.send(&cmd, Dest::AllServers)
            }
            None => ClientReady::default(),
        }
    }

    /// Gives up on the pending command; its outcome stays unknown (it may still execute, but
    /// never after a later command of this client). Returns its sequence number.
    pub fn abandon(&mut self) -> Option<u64> {
        self.pending.take().map(|p| p.cmd.seq)
    }

    fn send(&self, cmd: &Command, to: Dest) -> ClientReady {
        ClientReady {
            send: Some(Outgoing {
                to,
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
    fn a_told_leader_gets_the_command_alone_and_resends_go_to_all() {
        let mut c = Client::new("c1", ClientConfig::default());
        assert_eq!(c.on_leader(3), ClientReady::default());
        let r = c.invoke(get()).unwrap();
        assert_eq!(r.send.map(|o| o.to), Some(Dest::Server(3)));
        assert_eq!(c.on_timer().send.map(|o| o.to), Some(Dest::AllServers));
        // A new leader gets the pending command at once, with the same sequence number.
        let r = c.on_leader(1);
        assert!(matches!(
            r.send,
            Some(Outgoing {
                to: Dest::Server(1),
                msg: Message::Request(Command { seq: 1, .. })
            })
        ));
        assert_eq!(r.timer, Some(ClientConfig::default().resend));
        // The same leader again (re-announced): nothing to resend.
        assert_eq!(c.on_leader(1), ClientReady::default());
        assert!(c.on_reply(1, OpResult::Value(None)).done.is_some());
        // Nothing pending: a new leader is noted, nothing is sent.
        assert_eq!(c.on_leader(2), ClientReady::default());
        let r = c.invoke(get()).unwrap();
        assert_eq!(r.send.map(|o| o.to), Some(Dest::Server(2)));
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
