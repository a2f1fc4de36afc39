//! What the transcript tests share.

use mqpaxos_core::{Ballot, Command, Durable, Input, Message, NodeId, Op};

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

/// Takes server `id`'s pre-vote out of the messages in `flights` (`sent` reads a flight's
/// sender and message), and returns what a majority's yes to it delivers to `id` in a
/// cluster of `n`; `None` if `id` asked for no pre-vote.
pub fn answer_prevote<F, C>(
    flights: &mut C,
    id: NodeId,
    n: u32,
    sent: impl Fn(&F) -> (NodeId, &Message),
) -> Option<Vec<Input>>
where
    C: Default + IntoIterator<Item = F> + FromIterator<F>,
{
    let mut asked = None;
    *flights = std::mem::take(flights)
        .into_iter()
        .filter(|f| match sent(f) {
            (from, Message::PreVote { ballot }) if from == id => {
                asked = Some(*ballot);
                false
            }
            _ => true,
        })
        .collect();
    asked.map(|ballot| prevote_yeses(id, n, ballot))
}

/// What a majority's yes to server `id`'s pre-vote for `ballot` delivers to it, in a cluster
/// of `n`: the transcripts are about what a bid leads to (the pre-vote's own tests deliver
/// the real answers).
fn prevote_yeses(id: NodeId, n: u32, ballot: Ballot) -> Vec<Input> {
    (1..=n)
        .filter(|p| *p != id)
        .take(n as usize / 2)
        .map(|from| Input::Message {
            from,
            msg: Message::PreVoteAck {
                ballot,
                promised: Ballot::ZERO,
            },
        })
        .collect()
}
