//! What the transcript tests share.

use mqpaxos_core::{Command, Durable, Op};

/// A fresh server's durable state with sessions `c/1`..`c/9` already open (as if client
/// `c` had opened them before the test began), so that the transcripts can use those ids.
pub fn fresh(max_sessions: usize) -> Durable {
    let mut d = Durable::new(max_sessions);
    for slot in 1..10 {
        d.snapshot.kv.apply(
            slot,
            &Command {
                client: "c".into(),
                seq: slot,
                op: Op::Open,
            },
        );
    }
    d
}
