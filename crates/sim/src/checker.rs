//! The verdict on a run's client history: linearizable or not, via the mqpaxos-check crate.

use mqpaxos_check::{check_events, CheckLimits, CheckOutcome, Event, HistoryError};

/// Why a run's history failed the check. The run reports it as one of its violations.
#[derive(Debug, thiserror::Error)]
pub enum HistoryViolation {
    /// Not linearizable, or the search ran out of budget: either way no proof it is safe.
    #[error("safety: history is {0}")]
    Unsafe(CheckOutcome),
    /// The simulator recorded events that do not pair up: a bug in the simulator itself.
    #[error("history is malformed: {0}")]
    Malformed(#[from] HistoryError),
}

/// `Ok` when the history is linearizable.
pub fn check_history(history: &[Event]) -> Result<(), HistoryViolation> {
    match check_events(history, CheckLimits::default())? {
        CheckOutcome::Linearizable => Ok(()),
        other => Err(HistoryViolation::Unsafe(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqpaxos_check::OpKind;

    #[test]
    fn each_failure_has_its_own_variant() {
        let put = |t, v| Event::invoke(t, "c1", OpKind::Put, "k").with_value(Some(v));
        let get = |t, v| Event::ok(t, "c2", OpKind::Get, "k").with_value(Some(v));
        assert!(check_history(&[]).is_ok());
        // A get that saw a value no put wrote.
        let history = [
            put(1, "a"),
            Event::ok(2, "c1", OpKind::Put, "k").with_value(Some("a")),
            Event::invoke(3, "c2", OpKind::Get, "k"),
            get(4, "b"),
        ];
        assert!(matches!(
            check_history(&history),
            Err(HistoryViolation::Unsafe(
                CheckOutcome::NotLinearizable { .. }
            ))
        ));
        // A completion without its invocation.
        let e = check_history(&[get(1, "a")]).expect_err("malformed");
        assert!(matches!(e, HistoryViolation::Malformed(_)));
        assert!(e.to_string().starts_with("history is malformed: "), "{e}");
    }
}
