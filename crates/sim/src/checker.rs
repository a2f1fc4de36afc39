//! The verdict on a run's client history: linearizable or not, via the mqpaxos-check crate.

use mqpaxos_check::{check_events, CheckLimits, CheckOutcome, Event};

/// `Ok` when the history is linearizable; otherwise a one-line description.
pub fn check_history(history: &[Event]) -> Result<(), String> {
    match check_events(history, CheckLimits::default()) {
        Ok(CheckOutcome::Linearizable) => Ok(()),
        Ok(other) => Err(format!("safety: history is {other}")),
        Err(e) => Err(format!("history is malformed: {e}")),
    }
}
