//! Client commands at the leader: limits, at-most-once against the session table, reads
//! routed to the read index, writes queued for slots; followers keep recent requests for a
//! leader they may become.

use super::*;

/// The requests a server that does not lead received lately, bounded in count and bytes and
/// forgotten after an election timeout: a new leader proposes them at once.
#[derive(Debug, Default)]
pub(super) struct Recent {
    pub(super) commands: VecDeque<(Duration, Command)>,
    pub(super) bytes: usize,
}

impl Recent {
    const MAX_COMMANDS: usize = 1024;
    const MAX_BYTES: usize = 4 << 20;

    pub(super) fn keep(&mut self, now: Duration, cmd: Command, ttl: Duration) {
        if crate::limits::check_command(&cmd).is_some() {
            return;
        }
        self.expire(now, ttl);
        self.bytes += crate::limits::command_size(&cmd);
        self.commands.push_back((now, cmd));
        while self.commands.len() > Self::MAX_COMMANDS || self.bytes > Self::MAX_BYTES {
            self.pop();
        }
    }

    pub(super) fn take(&mut self, now: Duration, ttl: Duration) -> Vec<Command> {
        self.expire(now, ttl);
        self.bytes = 0;
        self.commands.drain(..).map(|(_, c)| c).collect()
    }

    pub(super) fn expire(&mut self, now: Duration, ttl: Duration) {
        while self
            .commands
            .front()
            .is_some_and(|(at, _)| now.saturating_sub(*at) > ttl)
        {
            self.pop();
        }
    }

    pub(super) fn pop(&mut self) {
        if let Some((_, c)) = self.commands.pop_front() {
            self.bytes = self.bytes.saturating_sub(crate::limits::command_size(&c));
        }
    }
}

impl Server {
    /// A client's command. Only the leader acts on it; every server receives it, so whichever
    /// leads answers. Others keep the latest for a while: if they are elected soon, they
    /// propose them, so a client whose leader died is answered without waiting to resend.
    pub(super) fn on_request(&mut self, now: Duration, cmd: Command) {
        let Role::Leader(l) = &mut self.role else {
            self.recent.keep(now, cmd, self.cfg.election_timeout);
            return;
        };
        if let Some(refusal) = crate::limits::check_command(&cmd) {
            if crate::limits::client_id_problem(&cmd.client).is_none() {
                let msg = Message::Reply {
                    client: cmd.client.clone(),
                    seq: cmd.seq,
                    result: refusal,
                };
                self.send_reply(Dest::Client(cmd.client), msg);
            }
            // A client id that is no valid topic cannot be answered at all: dropped.
            return;
        }
        // Reads change nothing, so they need no at-most-once bookkeeping: a read under an id
        // whose last command was a write must not be answered with that write's result.
        let last_seq = if cmd.op.is_read() {
            None
        } else {
            self.kv.last_seq(&cmd.client)
        };
        match last_seq {
            Some(last) if cmd.seq < last => return,
            Some(last) if cmd.seq == last => {
                // Executed already: the reply was lost, so send the remembered result again.
                if let Some(result) = self.kv.cached(&cmd.client, cmd.seq) {
                    let msg = Message::Reply {
                        client: cmd.client.clone(),
                        seq: cmd.seq,
                        result: result.clone(),
                    };
                    // After the sync: the result may come from a slot this very group
                    // committed, which (with a quorum of one) is not yet durable anywhere.
                    self.send_reply(Dest::Client(cmd.client), msg);
                }
                return;
            }
            _ => {}
        }
        if l.proposed.contains(&(cmd.client.clone(), cmd.seq)) {
            return;
        }
        let size = crate::limits::command_size(&cmd);
        if l.queued_bytes + size > crate::limits::MAX_QUEUED {
            // Back-pressure in bytes: the queue, not the clients, decides how much memory a
            // leader holds.
            let msg = Message::Reply {
                client: cmd.client.clone(),
                seq: cmd.seq,
                result: OpResult::Rejected {
                    code: ErrorCode::Busy,
                    message: format!(
                        "the leader holds {} bytes of waiting commands; retry later",
                        l.queued_bytes
                    ),
                },
            };
            self.send_reply(Dest::Client(cmd.client), msg);
            return;
        }
        l.proposed.insert((cmd.client.clone(), cmd.seq));
        l.queued_bytes += size;
        // A backup copy is always taken at a quorum-confirmed commit point, whatever
        // `read_index` says: it must not go through the log (it would be a slot holding the
        // whole state's worth of reply on every replica).
        let read = matches!(
            cmd.op,
            crate::kv::Op::SnapshotPiece { .. } | crate::kv::Op::Changes { .. }
        ) || (self.cfg.read_index && cmd.op.is_read());
        if read {
            // A later round, not one already under way: that one may have been confirmed by
            // followers before the get arrived, and so prove nothing about now.
            let read = Read {
                cmd,
                index: self.commit.max(l.through),
                round: l.reads.round + {
                    #[cfg(feature = "mutations")]
                    let next = u64::from(
                        !self
                            .cfg
                            .mutated(crate::config::Mutation::ReadJoinsRunningRound),
                    );
                    #[cfg(not(feature = "mutations"))]
                    let next = 1;
                    next
                },
            };
            l.reads.waiting.push(read);
            if l.reads.confirmed == l.reads.round {
                self.start_read_round();
            }
            self.serve_reads();
            return;
        }
        l.queue.push_back(cmd);
        self.propose_queued(now);
    }
}
