//! Executing chosen slots in order, the change history watchers read, and snapshots of the
//! state by bytes written since the last one.

use super::*;

impl Server {
    pub(super) fn execute(&mut self, slot: Slot, value: &Value) {
        if self.cfg.trace_chosen {
            self.ready.executed.push((slot, crate::value_digest(value)));
        }
        self.since_snapshot += crate::limits::value_size(value) as u64;
        for (index, cmd) in value.iter().enumerate() {
            let (store_before, key_before) = (
                self.kv.revision(),
                self.kv.entry(cmd.op.key()).map_or(0, |r| r.modified),
            );
            let applied = self.kv.apply_nth(slot, index, cmd);
            if matches!(applied, Applied::Executed(_)) {
                self.ready.executed_commands += 1;
            }
            if self.kv.revision() != store_before {
                // Every change raises the store's revision to its own (revisions only grow),
                // so a changed revision is exactly a changed key: this command's.
                self.record_change(cmd.op.key(), key_before, store_before);
            }
            let Role::Leader(l) = &mut self.role else {
                continue;
            };
            l.proposed.remove(&(cmd.client.clone(), cmd.seq));
            let result = match applied {
                Applied::Executed(r) | Applied::Duplicate(r) | Applied::Refused(r) => r,
                Applied::Stale => continue,
            };
            let msg = Message::Reply {
                client: cmd.client.clone(),
                seq: cmd.seq,
                result,
            };
            // The reply vouches for the slot on a majority's disks. The followers' copies are
            // durable (they acknowledge after their sync); this leader's copy is, once the
            // flush that carried its proposal is done. A slot proposed before the last flush
            // was taken thus needs no sync of the current flush, and its reply leaves ahead
            // of it. A lone server executes what it proposes in the same step, before any
            // sync: its replies wait.
            let early = slot < l.flushed_below;
            #[cfg(feature = "mutations")]
            let early = early
                || self
                    .cfg
                    .mutated(crate::config::Mutation::ReplyBeforeItsFlush);
            let to = Dest::Client(cmd.client.clone());
            if early {
                self.send_now(to, msg);
            } else {
                self.send_after(to, msg);
            }
        }
    }

    /// Keeps the change just made to `key` in the history and, as leader, hands it out for
    /// watchers.
    pub(super) fn record_change(
        &mut self,
        key: &str,
        prev_revision: u64,
        prev_store_revision: u64,
    ) {
        let kind = match self.kv.entry(key) {
            Some(r) => ChangeKind::Put {
                value: r.value.clone(),
                create: r.create,
                version: r.version,
            },
            None => ChangeKind::Delete,
        };
        let change = Change {
            revision: self.kv.revision(),
            key: key.to_string(),
            kind,
            prev_revision,
            prev_store_revision,
        };
        if matches!(self.role, Role::Leader(_)) {
            self.ready.changes.push(change.clone());
        }
        self.history.push(change);
    }

    /// The recent changes this server holds for watchers.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The answer to [`crate::kv::Op::Changes`], from the history.
    pub(super) fn changes_since(&self, key: &str, prefix: bool, from: u64) -> OpResult {
        match self.history.since(key, prefix, from) {
            Ok((changes, more)) => OpResult::Changes {
                revision: self.kv.revision(),
                changes,
                more,
            },
            Err(c) => OpResult::Compacted { floor: c.floor },
        }
    }

    pub(super) fn snapshot_now(&self) -> Snapshot {
        #[cfg(feature = "mutations")]
        if self
            .cfg
            .mutated(crate::config::Mutation::SnapshotWithoutSessions)
        {
            return Snapshot {
                next_slot: self.commit,
                kv: self.kv.without_sessions(),
            };
        }
        Snapshot {
            next_slot: self.commit,
            kv: self.kv.clone(),
        }
    }

    pub(super) fn maybe_snapshot(&mut self) {
        // Each server waits a little longer than the one before it: storage writes a
        // snapshot whole, which with a large store stalls its server for a while, and servers
        // that all stalled at the same slot left the leader without a majority for that long.
        let servers = u64::from(self.cfg.servers);
        let stagger =
            |x: u64| x.saturating_add(x / servers * u64::from(self.cfg.id.saturating_sub(1)));
        if self.commit - self.log.start() < self.cfg.snapshot_interval
            && self.since_snapshot < stagger(self.cfg.snapshot_log_bytes)
        {
            return;
        }
        let share = stagger(
            self.kv
                .data_bytes()
                .saturating_mul(self.cfg.snapshot_log_percent)
                / 100,
        );
        if self.since_snapshot < share {
            // Storage writes a snapshot whole: waiting until the log holds a share of the
            // data makes that a constant cost per byte of commands at any data size.
            return;
        }
        self.since_snapshot = 0;
        let snapshot = self.snapshot_now();
        self.log.truncate_before(self.commit);
        self.persist(PersistOp::Snapshot(snapshot));
        if self
            .snapshot_out
            .as_ref()
            .is_some_and(|(slot, _)| *slot < self.log.start())
        {
            // Receivers of it could no longer catch up from our log; free the memory.
            self.snapshot_out = None;
        }
    }
}
