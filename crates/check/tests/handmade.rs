//! Small histories with a known verdict, one behaviour at a time.

use mqpaxos_check::{check_events, CheckLimits, CheckOutcome, Event, EventType, OpKind};

/// Builds histories operation by operation. Each client's operations must be added in
/// that client's order; the interleaving of clients in the event list does not matter.
#[derive(Default)]
struct H {
    events: Vec<Event>,
}

#[derive(Clone, Copy)]
enum End {
    Ok(u64),
    Fail(u64),
    Info(u64),
    Never,
}

impl H {
    #[allow(clippy::too_many_arguments)]
    fn op(
        &mut self,
        client: &str,
        f: OpKind,
        key: &str,
        value: Option<&str>,
        expected: Option<&str>,
        call: u64,
        end: End,
        ok_value: Option<&str>,
        result: Option<bool>,
    ) -> &mut Self {
        let mut invoke = Event::invoke(call, client, f, key).with_value(value);
        if f == OpKind::Cas {
            invoke = invoke.with_expected(expected);
        }
        self.events.push(invoke);
        let done = match end {
            End::Ok(t) => {
                let mut e = Event::ok(t, client, f, key).with_value(ok_value);
                if let Some(r) = result {
                    e = e.with_result(r);
                }
                e
            }
            End::Fail(t) => Event::fail(t, client, f, key),
            End::Info(t) => Event::info(t, client, f, key),
            End::Never => return self,
        };
        self.events.push(done);
        self
    }

    fn put(&mut self, c: &str, k: &str, v: &str, call: u64, end: End) -> &mut Self {
        self.op(c, OpKind::Put, k, Some(v), None, call, end, None, None)
    }

    fn append(&mut self, c: &str, k: &str, v: &str, call: u64, end: End) -> &mut Self {
        self.op(c, OpKind::Append, k, Some(v), None, call, end, None, None)
    }

    fn delete(&mut self, c: &str, k: &str, call: u64, end: End) -> &mut Self {
        self.op(c, OpKind::Delete, k, None, None, call, end, None, None)
    }

    /// A get; `read` is what its `ok` carries (ignored for other ends).
    fn get(&mut self, c: &str, k: &str, read: Option<&str>, call: u64, end: End) -> &mut Self {
        self.op(c, OpKind::Get, k, None, None, call, end, read, None)
    }

    #[allow(clippy::too_many_arguments)]
    fn cas(
        &mut self,
        c: &str,
        k: &str,
        expected: Option<&str>,
        new: &str,
        result: Option<bool>,
        call: u64,
        end: End,
    ) -> &mut Self {
        self.op(
            c,
            OpKind::Cas,
            k,
            Some(new),
            expected,
            call,
            end,
            None,
            result,
        )
    }

    fn check(&self) -> CheckOutcome {
        check_events(&self.events, CheckLimits::default()).expect("well-formed history")
    }

    #[track_caller]
    fn assert_ok(&self) {
        let outcome = self.check();
        assert_eq!(outcome, CheckOutcome::Linearizable, "{outcome}");
    }

    #[track_caller]
    fn assert_bad(&self) {
        let outcome = self.check();
        assert!(
            matches!(outcome, CheckOutcome::NotLinearizable { .. }),
            "expected a violation, got {outcome}"
        );
    }
}

use End::{Fail, Info, Never, Ok};

/// One history for each choice in `good` and in `bad`, alike but for that choice: those
/// built from `good` must be linearizable, those built from `bad` must not.
#[track_caller]
fn verdicts<T: Copy>(good: &[T], bad: &[T], build: impl Fn(&mut H, T)) {
    for (choices, linearizable) in [(good, true), (bad, false)] {
        for &choice in choices {
            let mut h = H::default();
            build(&mut h, choice);
            if linearizable {
                h.assert_ok();
            } else {
                h.assert_bad();
            }
        }
    }
}

/// A put or an append, as [`H::put`] and [`H::append`] take them.
type Write = for<'h> fn(&'h mut H, &str, &str, &str, u64, End) -> &'h mut H;

/// Two concurrent writes to x, by a (`values.0` over [1, 5]) and by b (`values.1` over
/// [2, 4]), then c reads `read` over [6, 7].
fn concurrent_writes_then_read(h: &mut H, write: Write, values: (&str, &str), read: &str) {
    write(h, "a", "x", values.0, 1, Ok(5));
    write(h, "b", "x", values.1, 2, Ok(4));
    h.get("c", "x", Some(read), 6, Ok(7));
}

#[test]
fn empty_history_is_linearizable() {
    H::default().assert_ok();
}

#[test]
fn read_of_missing_key_is_null() {
    H::default().get("a", "x", None, 1, Ok(2)).assert_ok();
    H::default().get("a", "x", Some(""), 1, Ok(2)).assert_bad();
}

#[test]
fn read_after_acknowledged_put_sees_it() {
    let mut h = H::default();
    h.put("a", "x", "1", 1, Ok(2))
        .get("b", "x", Some("1"), 3, Ok(4));
    h.assert_ok();
}

#[test]
fn stale_read_after_acknowledged_put_is_rejected() {
    let mut h = H::default();
    h.put("a", "x", "1", 1, Ok(2)).get("b", "x", None, 3, Ok(4));
    h.assert_bad();

    let mut h = H::default();
    h.put("a", "x", "1", 1, Ok(2))
        .put("a", "x", "2", 3, Ok(4))
        .get("b", "x", Some("1"), 5, Ok(6));
    h.assert_bad();
}

#[test]
fn read_concurrent_with_put_may_see_either() {
    verdicts(&[None, Some("1")], &[], |h, read| {
        h.put("a", "x", "1", 1, Ok(5)).get("b", "x", read, 2, Ok(3));
    });
}

#[test]
fn concurrent_puts_then_read_sees_either_but_not_a_third_value() {
    verdicts(&["1", "2"], &["3"], |h, read| {
        concurrent_writes_then_read(h, H::put, ("1", "2"), read);
    });
}

#[test]
fn reads_must_agree_on_the_order_of_concurrent_puts() {
    // Both puts finish before either read; the reads are concurrent with each other, but
    // after both puts only one value can remain.
    let mut h = H::default();
    h.put("a", "x", "1", 1, Ok(5))
        .put("b", "x", "2", 2, Ok(4))
        .get("c", "x", Some("1"), 6, Ok(9))
        .get("d", "x", Some("2"), 7, Ok(8));
    h.assert_bad();
}

#[test]
fn flickering_reads_are_rejected() {
    // A put of 2 in flight; one reader sees 2 and a later reader sees 1 again (bad). The
    // same reads in the other order are fine: the put takes effect in between.
    verdicts(&[("1", "2")], &[("2", "1")], |h, (first, second)| {
        h.put("a", "x", "1", 1, Ok(2))
            .put("b", "x", "2", 3, Ok(20))
            .get("c", "x", Some(first), 4, Ok(5))
            .get("d", "x", Some(second), 6, Ok(7));
    });
}

#[test]
fn cas_that_swapped_needs_its_condition() {
    let mut h = H::default();
    h.put("a", "x", "1", 1, Ok(2))
        .cas("b", "x", Some("1"), "2", Some(true), 3, Ok(4))
        .get("c", "x", Some("2"), 5, Ok(6));
    h.assert_ok();

    let mut h = H::default();
    h.put("a", "x", "1", 1, Ok(2))
        .cas("b", "x", Some("0"), "2", Some(true), 3, Ok(4));
    h.assert_bad();

    // Expecting null means expecting the key to be absent.
    let mut h = H::default();
    h.cas("b", "x", None, "2", Some(true), 3, Ok(4))
        .get("c", "x", Some("2"), 5, Ok(6));
    h.assert_ok();
}

#[test]
fn cas_that_refused_needs_its_condition_to_fail() {
    // A refused cas does not write: the value read after it is still 1.
    verdicts(&["1"], &["2"], |h, read| {
        h.put("a", "x", "1", 1, Ok(2))
            .cas("b", "x", Some("0"), "2", Some(false), 3, Ok(4))
            .get("c", "x", Some(read), 5, Ok(6));
    });

    let mut h = H::default();
    h.put("a", "x", "1", 1, Ok(2))
        .cas("b", "x", Some("1"), "2", Some(false), 3, Ok(4));
    h.assert_bad();
}

#[test]
fn cas_refusal_explained_by_a_concurrent_put() {
    let mut h = H::default();
    h.put("a", "x", "1", 1, Ok(2))
        .put("b", "x", "3", 3, Ok(10))
        .cas("c", "x", Some("1"), "2", Some(false), 4, Ok(5))
        .get("d", "x", Some("3"), 11, Ok(12));
    h.assert_ok();
}

#[test]
fn cas_without_result_swaps_exactly_when_its_condition_holds() {
    verdicts(&["2"], &["1"], |h, read| {
        h.put("a", "x", "1", 1, Ok(2))
            .cas("b", "x", Some("1"), "2", None, 3, Ok(4))
            .get("c", "x", Some(read), 5, Ok(6));
    });
}

#[test]
fn info_cas_may_or_may_not_swap() {
    // (expected, read): with its condition held it may or may not have swapped; with its
    // condition false it cannot have.
    let good = [("1", "1"), ("1", "2")];
    verdicts(&good, &[("0", "2")], |h, (expected, read)| {
        h.put("a", "x", "1", 1, Ok(2))
            .cas("b", "x", Some(expected), "2", None, 3, Info(4))
            .get("c", "x", Some(read), 5, Ok(6));
    });
}

#[test]
fn delete_then_get_is_null() {
    verdicts(&[None], &[Some("1")], |h, read| {
        h.put("a", "x", "1", 1, Ok(2))
            .delete("a", "x", 3, Ok(4))
            .get("b", "x", read, 5, Ok(6));
    });
}

#[test]
fn append_to_missing_key_starts_from_empty() {
    // Sequential appends happen in order.
    verdicts(&["abc"], &["cab"], |h, read| {
        h.append("a", "x", "ab", 1, Ok(2))
            .append("a", "x", "c", 3, Ok(4))
            .get("b", "x", Some(read), 5, Ok(6));
    });
    let mut h = H::default();
    h.append("a", "x", "ab", 1, Ok(2))
        .get("b", "x", None, 5, Ok(6));
    h.assert_bad();
}

#[test]
fn concurrent_appends_in_either_order() {
    // Appends concatenate; "a" and "b" reading as "b" would lose one.
    verdicts(&["ab", "ba"], &["b"], |h, read| {
        concurrent_writes_then_read(h, H::append, ("a", "b"), read);
    });
}

#[test]
fn append_after_delete_starts_over() {
    let mut h = H::default();
    h.put("a", "x", "1", 1, Ok(2))
        .delete("a", "x", 3, Ok(4))
        .append("a", "x", "2", 5, Ok(6))
        .get("b", "x", Some("2"), 7, Ok(8));
    h.assert_ok();
}

#[test]
fn info_put_may_or_may_not_be_visible() {
    // Either, but a value never written cannot be read.
    verdicts(&[None, Some("1")], &[Some("2")], |h, read| {
        h.put("a", "x", "1", 1, Info(2))
            .get("b", "x", read, 3, Ok(4));
    });
    // Visible long after the info was logged: it may take effect at any later time.
    let mut h = H::default();
    h.put("a", "x", "1", 1, Info(2))
        .get("b", "x", None, 3, Ok(4))
        .get("b", "x", Some("1"), 100, Ok(101));
    h.assert_ok();
    // But not before it was invoked.
    let mut h = H::default();
    h.get("b", "x", Some("1"), 1, Ok(2))
        .put("a", "x", "1", 3, Info(4));
    h.assert_bad();
    // Once visible it stays (nothing else writes).
    let mut h = H::default();
    h.put("a", "x", "1", 1, Info(2))
        .get("b", "x", Some("1"), 3, Ok(4))
        .get("b", "x", None, 5, Ok(6));
    h.assert_bad();
}

#[test]
fn info_put_takes_effect_at_most_once() {
    // 1 (info), then 2 overwrites, then reading 1 again needs the info put to happen
    // twice.
    let mut h = H::default();
    h.put("a", "x", "1", 1, Info(2))
        .get("b", "x", Some("1"), 3, Ok(4))
        .put("b", "x", "2", 5, Ok(6))
        .get("b", "x", Some("1"), 7, Ok(8));
    h.assert_bad();
}

#[test]
fn refused_cas_explained_by_unknown_write() {
    // The refusal needs the unknown put to have happened, so 1 cannot come back.
    verdicts(&["2"], &["1"], |h, read| {
        h.put("a", "x", "1", 1, Ok(2))
            .put("b", "x", "2", 3, Info(4))
            .cas("c", "x", Some("1"), "3", Some(false), 5, Ok(6))
            .get("c", "x", Some(read), 7, Ok(8));
    });
}

#[test]
fn unknown_appends_in_any_order_but_once_each() {
    let unknown_appends = |h: &mut H| {
        h.append("a", "x", "a", 1, Info(2))
            .append("b", "x", "b", 1, Info(2));
    };
    verdicts(&["ab", "ba", "a", "b"], &["aba"], |h, read| {
        unknown_appends(h);
        h.get("c", "x", Some(read), 5, Ok(6));
    });
    // Order seen by one read holds for later ones.
    let mut h = H::default();
    unknown_appends(&mut h);
    h.get("c", "x", Some("b"), 5, Ok(6))
        .get("c", "x", Some("ab"), 7, Ok(8));
    h.assert_bad();
}

#[test]
fn identical_unknown_operations_each_count_once() {
    // Two unknown deletes can explain two reads of null between puts, not three.
    let build = |rounds: u64| {
        let mut h = H::default();
        h.delete("d1", "x", 0, Info(1))
            .delete("d2", "x", 0, Info(1));
        for r in 0..rounds {
            let t = 10 * (r + 1);
            h.put("w", "x", &r.to_string(), t, Ok(t + 1))
                .get("r", "x", None, t + 5, Ok(t + 6));
        }
        h
    };
    build(2).assert_ok();
    build(3).assert_bad();
}

#[test]
fn never_completed_invoke_is_like_info() {
    verdicts(&[None, Some("1")], &[Some("2")], |h, read| {
        h.put("a", "x", "1", 1, Never).get("b", "x", read, 3, Ok(4));
    });
}

#[test]
fn info_get_is_unconstrained() {
    let mut h = H::default();
    h.put("a", "x", "1", 1, Ok(2)).op(
        "b",
        OpKind::Get,
        "x",
        None,
        None,
        3,
        Info(4),
        Some("zzz"),
        None,
    );
    h.assert_ok();
}

#[test]
fn failed_operations_are_ignored() {
    verdicts(&[None], &[Some("1")], |h, read| {
        h.put("a", "x", "1", 1, Fail(2))
            .get("b", "x", read, 3, Ok(4));
    });
    // A failed cas whose condition held did not swap either.
    let mut h = H::default();
    h.put("a", "x", "1", 1, Ok(2))
        .cas("a", "x", Some("1"), "2", None, 3, Fail(4))
        .get("b", "x", Some("1"), 5, Ok(6));
    h.assert_ok();
}

#[test]
fn equal_timestamps_count_as_concurrent() {
    // The read is invoked at the instant the put returns (fine), or just after (stale).
    verdicts(&[5], &[6], |h, call| {
        h.put("a", "x", "1", 1, Ok(5))
            .get("b", "x", None, call, Ok(call + 1));
    });
}

#[test]
fn keys_are_independent_and_smallest_bad_key_is_reported() {
    let mut h = H::default();
    // x: fine. y and z: stale reads.
    h.put("a", "z", "1", 1, Ok(2))
        .get("b", "z", None, 3, Ok(4))
        .put("c", "x", "1", 1, Ok(2))
        .get("d", "x", Some("1"), 3, Ok(4))
        .put("e", "y", "1", 1, Ok(2))
        .get("f", "y", None, 3, Ok(4));
    match h.check() {
        CheckOutcome::NotLinearizable { key, explanation } => {
            assert_eq!(key, "y");
            assert!(explanation.contains("get(\"y\") -> null"), "{explanation}");
        }
        other => panic!("expected a violation, got {other}"),
    }
    // Same values on different keys do not interact.
    let mut h = H::default();
    h.put("a", "x", "1", 1, Ok(2)).get("b", "y", None, 3, Ok(4));
    h.assert_ok();
}

#[test]
fn explanation_names_the_operation_that_cannot_be_placed() {
    let mut h = H::default();
    h.put("a", "x", "1", 1, Ok(2))
        .put("a", "x", "2", 3, Ok(4))
        .get("b", "x", Some("1"), 5, Ok(6));
    let CheckOutcome::NotLinearizable { key, explanation } = h.check() else {
        panic!("expected a violation");
    };
    assert_eq!(key, "x");
    assert!(explanation.contains("1 of 3"), "{explanation}");
    assert!(
        explanation.contains("get(\"x\") -> \"1\" by client b at [5, 6]"),
        "{explanation}"
    );
    assert!(
        explanation.contains("The value is then \"1\""),
        "{explanation}"
    );
}

/// Concurrent puts, an overwrite, then a read of an overwritten value: refuting it takes
/// trying the orders of the puts.
fn needs_some_search(h: &mut H, key: &str) {
    for c in 0..6u64 {
        let name = format!("{key}{c}");
        h.put(&name, key, &c.to_string(), c, Ok(100 + c));
    }
    let w = format!("{key}w");
    h.put(&w, key, "last", 150, Ok(160));
    h.get(&w, key, Some("0"), 200, Ok(201));
}

#[test]
fn step_budget_gives_unknown() {
    let mut h = H::default();
    needs_some_search(&mut h, "x");
    let outcome = check_events(
        &h.events,
        CheckLimits {
            max_steps_per_key: 10,
        },
    )
    .unwrap();
    assert!(
        matches!(&outcome, CheckOutcome::Unknown { key, .. } if key == "x"),
        "{outcome}"
    );
    // With the default budget the same history is decided.
    h.assert_bad();
}

#[test]
fn violation_beats_unknown_on_a_larger_key() {
    let mut h = H::default();
    needs_some_search(&mut h, "a");
    // "b" is bad and decided within a few steps; "a" is cut off by the budget.
    h.put("s", "b", "1", 1, Ok(2)).get("s", "b", None, 3, Ok(4));
    let outcome = check_events(
        &h.events,
        CheckLimits {
            max_steps_per_key: 10,
        },
    )
    .unwrap();
    assert!(
        matches!(&outcome, CheckOutcome::NotLinearizable { key, .. } if key == "b"),
        "{outcome}"
    );
}

#[test]
fn many_keys_are_checked_deterministically() {
    // Large enough to take the multi-threaded path.
    let mut h = H::default();
    let mut t = 0;
    for round in 0..40 {
        for k in 0..60 {
            let key = format!("k{k:02}");
            let client = format!("c{k}");
            let v = round.to_string();
            h.put(&client, &key, &v, t, Ok(t + 1));
            let read = if (key == "k17" || key == "k42") && round == 30 {
                "stale".to_owned()
            } else {
                v
            };
            h.get(&client, &key, Some(&read), t + 2, Ok(t + 3));
            t += 4;
        }
    }
    for _ in 0..3 {
        match h.check() {
            CheckOutcome::NotLinearizable { key, .. } => assert_eq!(key, "k17"),
            other => panic!("expected a violation, got {other}"),
        }
    }
}

#[test]
fn long_append_history_is_fast() {
    // Values grow to 100 kB; states are fingerprints, so this stays linear in the size of
    // the input. Each append overlaps its neighbour, and a read after every ten pins down
    // the order.
    fn build(bad_group: Option<usize>) -> H {
        let mut h = H::default();
        let mut value = String::new();
        let mut t = 0;
        for group in 0..1_000 {
            for i in 0..10 {
                let piece = format!("<{group}.{i}>");
                h.append(&format!("c{}", i % 2), "x", &piece, t, Ok(t + 3));
                value.push_str(&piece);
                t += 2;
            }
            let read = if bad_group == Some(group) {
                &value[..value.len() - 1]
            } else {
                &value[..]
            };
            h.get("r", "x", Some(read), t + 2, Ok(t + 3));
            t += 4;
        }
        h
    }
    let good = build(None);
    let bad = build(Some(500));
    let start = std::time::Instant::now();
    good.assert_ok();
    bad.assert_bad();
    eprintln!("long append history: {:?}", start.elapsed());
}

#[test]
fn event_type_names() {
    assert_eq!(EventType::Info.to_string(), "info");
    assert_eq!(OpKind::Cas.to_string(), "cas");
}
