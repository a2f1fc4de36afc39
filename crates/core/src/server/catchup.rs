//! Catching up: chosen values for a replica that lags, and snapshots in pieces for one that
//! lags behind the log's start (and for `backup`).

use super::*;

/// A snapshot being received in pieces.
#[derive(Debug)]
pub(super) struct SnapshotIn {
    pub(super) next_slot: Slot,
    pub(super) total: u64,
    pub(super) from: NodeId,
    pub(super) data: Vec<u8>,
    /// Resends of the current fetch without an answer; past a few the transfer is dropped, so
    /// a sender that died mid-way does not hold the receiver forever.
    pub(super) stalls: u32,
}

impl Server {
    /// The piece at `offset` of the backup copy taken before slot `at`, or, if that copy is
    /// not the one held (`at: None`, another leader took it, another backup replaced it), the
    /// first piece of a new copy taken now. Called only once a read round confirmed this
    /// server still leads and the commit point is at least where it was when the request
    /// came, so a new copy holds every write acknowledged before the request.
    pub(super) fn backup_piece(&mut self, at: Option<Slot>, offset: u64) -> OpResult {
        let held = matches!(&self.backup_out, Some((slot, _)) if Some(*slot) == at);
        let offset = if held {
            offset
        } else {
            let snapshot = self.snapshot_now();
            match crate::encode_snapshot(&snapshot) {
                Some(bytes) => self.backup_out = Some((snapshot.next_slot, bytes)),
                None => {
                    return OpResult::Rejected {
                        code: ErrorCode::Busy,
                        message: "the state could not be encoded; retry later".into(),
                    }
                }
            }
            0
        };
        let Some((next_slot, bytes)) = &self.backup_out else {
            return OpResult::Done;
        };
        // An offset past the end is the client's mistake: the copy from its start again.
        let start = usize::try_from(offset)
            .ok()
            .filter(|o| *o <= bytes.len())
            .unwrap_or(0);
        let end = bytes.len().min(start + self.cfg.snapshot_chunk);
        OpResult::SnapshotPiece {
            next_slot: *next_slot,
            offset: start as u64,
            total: bytes.len() as u64,
            data: bytes[start..end].to_vec(),
        }
    }

    pub(super) fn on_catchup(&mut self, from: NodeId, slot: Slot) {
        if slot >= self.commit {
            return;
        }
        let msg = if slot < self.log.start() {
            self.send_snapshot(from, false);
            return;
        } else {
            #[cfg(feature = "mutations")]
            let limit = if self.cfg.mutated(crate::config::Mutation::CatchUpUnchosen) {
                self.log.end()
            } else {
                self.commit
            };
            #[cfg(not(feature = "mutations"))]
            let limit = self.commit;
            let end = limit.min(slot + self.cfg.max_catchup as Slot);
            // Bounded in bytes as well as slots (at least one slot, always).
            let mut bytes = 0;
            let values: Vec<Value> = (slot..end)
                .map_while(|s| self.log.get(s))
                .take_while(|e| {
                    let first = bytes == 0;
                    bytes += crate::limits::value_size(&e.value);
                    first || bytes <= self.cfg.message_budget
                })
                .map(|e| e.value.clone())
                .collect();
            Message::Chosen {
                first: slot,
                values,
            }
        };
        self.send_now(Dest::Server(from), msg);
    }

    pub(super) fn on_chosen(&mut self, first: Slot, values: Vec<Value>) {
        if matches!(self.role, Role::Leader(_)) {
            // A leader knows every chosen value from its phase 1.
            return;
        }
        let mut advanced = false;
        for (i, value) in values.into_iter().enumerate() {
            let slot = first + i as Slot;
            if slot < self.commit {
                continue;
            }
            if slot > self.commit {
                break;
            }
            self.execute(slot, &value);
            self.store(
                slot,
                Entry {
                    ballot: Ballot::CHOSEN,
                    value,
                },
            );
            self.commit += 1;
            advanced = true;
        }
        if advanced {
            self.maybe_snapshot();
        }
        self.learn_commit(self.leader_commit);
    }

    /// Sends `to` the first piece of this server's snapshot (after the sync if `after_sync`:
    /// it answers a Prepare whose promise must be durable first).
    pub(super) fn send_snapshot(&mut self, to: NodeId, after_sync: bool) {
        let usable = self
            .snapshot_out
            .as_ref()
            .is_some_and(|(slot, _)| *slot >= self.log.start() && *slot <= self.commit);
        if !usable {
            let snapshot = self.snapshot_now();
            match crate::encode_snapshot(&snapshot) {
                Some(bytes) => self.snapshot_out = Some((snapshot.next_slot, bytes)),
                None => return,
            }
        }
        if let Some(msg) = self.snapshot_chunk(0) {
            if after_sync {
                self.send_after(Dest::Server(to), msg);
            } else {
                self.send_now(Dest::Server(to), msg);
            }
        }
    }

    /// The piece of the snapshot being handed out that starts at `offset`.
    pub(super) fn snapshot_chunk(&self, offset: u64) -> Option<Message> {
        let (next_slot, bytes) = self.snapshot_out.as_ref()?;
        let start = usize::try_from(offset).ok().filter(|o| *o <= bytes.len())?;
        let end = bytes.len().min(start + self.cfg.snapshot_chunk);
        Some(Message::SnapshotChunk {
            next_slot: *next_slot,
            offset,
            total: bytes.len() as u64,
            data: bytes[start..end].to_vec(),
        })
    }

    pub(super) fn on_snapshot_fetch(&mut self, from: NodeId, next_slot: Slot, offset: u64) {
        match &self.snapshot_out {
            Some((slot, _)) if *slot == next_slot => {
                if let Some(msg) = self.snapshot_chunk(offset) {
                    self.send_now(Dest::Server(from), msg);
                }
            }
            // That snapshot is gone (the log moved past it): start over with a current one.
            _ if next_slot < self.commit => self.send_snapshot(from, false),
            _ => {}
        }
    }

    pub(super) fn on_snapshot_chunk(
        &mut self,
        from: NodeId,
        next_slot: Slot,
        offset: u64,
        total: u64,
        data: Vec<u8>,
    ) {
        if next_slot <= self.commit || matches!(self.role, Role::Leader(_)) {
            return;
        }
        let fits = |have: u64| offset == have && offset.saturating_add(data.len() as u64) <= total;
        match &mut self.snapshot_in {
            Some(t) if t.next_slot == next_slot && t.total == total => {
                if !fits(t.data.len() as u64) {
                    // A copy or a piece out of order: the fetch timer asks again.
                    return;
                }
                t.data.extend_from_slice(&data);
                t.stalls = 0;
            }
            // A transfer under way is kept unless this one is newer: two senders must not
            // keep restarting each other's transfers.
            Some(t) if t.next_slot >= next_slot => return,
            _ => {
                if !fits(0) {
                    return;
                }
                self.snapshot_in = Some(SnapshotIn {
                    next_slot,
                    total,
                    from,
                    data,
                    stalls: 0,
                });
            }
        }
        let Some(t) = &self.snapshot_in else {
            return;
        };
        if (t.data.len() as u64) < total {
            let msg = Message::SnapshotFetch {
                next_slot,
                offset: t.data.len() as u64,
            };
            let to = t.from;
            self.send_now(Dest::Server(to), msg);
            self.arm_catchup();
            return;
        }
        let Some(t) = self.snapshot_in.take() else {
            return;
        };
        match crate::decode_snapshot(&t.data) {
            Some(s) if s.next_slot == next_slot => {
                let next_slot = s.next_slot;
                self.install_snapshot(s);
                self.ready.notes.push(Note::SnapshotInstalled {
                    from: t.from,
                    next_slot,
                });
                self.learn_commit(self.leader_commit);
            }
            // Garbage from a peer: nothing installed; asking again starts over.
            _ => {}
        }
    }

    /// On the catch-up timer: asks again for the piece of a snapshot that has not come.
    /// Returns whether a transfer is under way (then it, not the log, is what to catch up).
    pub(super) fn resend_snapshot_fetch(&mut self) -> bool {
        let Some(t) = &mut self.snapshot_in else {
            return false;
        };
        if t.next_slot <= self.commit || t.stalls >= 8 {
            // Done by other means, or the sender stopped answering: drop it, so that a
            // snapshot from anyone can start a new transfer.
            self.snapshot_in = None;
            return false;
        }
        t.stalls += 1;
        let msg = Message::SnapshotFetch {
            next_slot: t.next_slot,
            offset: t.data.len() as u64,
        };
        let to = t.from;
        self.send_now(Dest::Server(to), msg);
        self.arm_catchup();
        true
    }

    pub(super) fn install_snapshot(&mut self, s: Snapshot) {
        debug_assert!(s.next_slot > self.commit);
        self.kv = s.kv.clone();
        self.kv.set_quota(self.cfg.max_store_bytes);
        self.since_snapshot = 0;
        self.history.reset(self.kv.revision());
        self.commit = s.next_slot;
        self.log.truncate_before(s.next_slot);
        self.persist(PersistOp::Snapshot(s));
    }
}
