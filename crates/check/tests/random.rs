//! Small random histories checked against a brute-force search over all orders, which
//! shares no code (and no pruning) with the checker.

use mqpaxos_check::{
    check_events, pair_operations, CheckLimits, CheckOutcome, Event, OpKind, Operation, Outcome,
};

#[path = "support/xorshift.rs"]
mod xorshift;
use xorshift::Rng;

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    fn maybe<'a>(&mut self, items: &[&'a str]) -> Option<&'a str> {
        if self.below(4) == 0 {
            None
        } else {
            Some(self.pick(items))
        }
    }
}

/// `cas_percent` of the operations are cas; the rest are mostly gets, puts and appends.
fn random_history(rng: &mut Rng, ops: usize, info_percent: u64, cas_percent: u64) -> Vec<Event> {
    let clients = 1 + rng.below(4);
    let mut clock = vec![0u64; clients as usize];
    let mut events = Vec::new();
    for _ in 0..ops {
        let c = rng.below(clients) as usize;
        let client = c.to_string();
        let key = if rng.below(5) == 0 { "y" } else { "x" };
        let call = clock[c] + rng.below(4);
        let ret = call + rng.below(6);
        clock[c] = ret + 1;
        let f = if rng.below(100) < cas_percent {
            OpKind::Cas
        } else {
            match rng.below(9) {
                0..=2 => OpKind::Get,
                3..=4 => OpKind::Put,
                5..=7 => OpKind::Append,
                _ => OpKind::Delete,
            }
        };
        let mut invoke = Event::invoke(call, &client, f, key);
        match f {
            OpKind::Put => invoke = invoke.with_value(Some(rng.pick(&["a", "b"]))),
            OpKind::Append => invoke = invoke.with_value(Some(rng.pick(&["a", "b"]))),
            OpKind::Cas => {
                invoke = invoke
                    .with_expected(rng.maybe(&["a", "b", "ab"]))
                    .with_value(Some(rng.pick(&["a", "b"])))
            }
            OpKind::Get | OpKind::Delete => {}
        }
        events.push(invoke);
        let roll = rng.below(100);
        let done = match roll {
            _ if roll < info_percent => Event::info(ret, &client, f, key),
            _ if roll < info_percent + 10 => Event::fail(ret, &client, f, key),
            // Never completed; the client must not invoke again.
            _ if roll < info_percent + 13 => {
                clock[c] = u64::MAX / 2;
                continue;
            }
            _ => {
                let mut ok = Event::ok(ret, &client, f, key);
                match f {
                    OpKind::Get => ok = ok.with_value(rng.maybe(&["a", "b", "ab", "ba", "aa"])),
                    OpKind::Cas => ok = ok.with_result(rng.below(2) == 0),
                    _ => {}
                }
                ok
            }
        };
        events.push(done);
    }
    // Clients that never completed stay silent; drop invokes issued after that (their
    // clock jumped) to keep each client sequential.
    events.retain(|e| e.t < u64::MAX / 4);
    events
}

fn apply(op: &Operation, state: &mut Option<String>) -> bool {
    let definite = op.ret.is_some() && matches!(op.outcome, Outcome::Ok { .. });
    match op.kind {
        OpKind::Get => match &op.outcome {
            Outcome::Ok { value, .. } if definite => state == value,
            _ => true,
        },
        OpKind::Put => {
            *state = op.value.clone();
            true
        }
        OpKind::Delete => {
            *state = None;
            true
        }
        OpKind::Append => {
            let mut s = state.take().unwrap_or_default();
            s.push_str(op.value.as_deref().unwrap());
            *state = Some(s);
            true
        }
        OpKind::Cas => {
            let holds = *state == op.expected;
            if let Outcome::Ok {
                result: Some(r), ..
            } = op.outcome
            {
                if definite && r != holds {
                    return false;
                }
            }
            if holds {
                *state = op.value.clone();
            }
            true
        }
    }
}

/// Tries every order of every subset of the unknown operations, all keys together.
fn brute_force(ops: &[Operation]) -> bool {
    fn definite(op: &Operation) -> bool {
        op.ret.is_some() && matches!(op.outcome, Outcome::Ok { .. })
    }
    fn search(
        ops: &[Operation],
        done: &mut Vec<bool>,
        state: &mut Vec<(String, Option<String>)>,
    ) -> bool {
        if ops
            .iter()
            .zip(done.iter())
            .all(|(op, &d)| d || !definite(op))
        {
            return true;
        }
        for i in 0..ops.len() {
            if done[i] {
                continue;
            }
            // Real time: nothing still to do may have returned before this was called.
            let blocked = ops.iter().enumerate().any(|(j, other)| {
                !done[j] && j != i && definite(other) && other.ret.unwrap() < ops[i].call
            });
            if blocked {
                continue;
            }
            let slot = state.iter().position(|(k, _)| *k == ops[i].key).unwrap();
            let saved = state[slot].1.clone();
            if apply(&ops[i], &mut state[slot].1) {
                done[i] = true;
                if search(ops, done, state) {
                    return true;
                }
                done[i] = false;
            }
            state[slot].1 = saved;
        }
        false
    }
    let mut state: Vec<(String, Option<String>)> = Vec::new();
    for op in ops {
        if !state.iter().any(|(k, _)| *k == op.key) {
            state.push((op.key.clone(), None));
        }
    }
    search(ops, &mut vec![false; ops.len()], &mut state)
}

#[test]
fn checker_agrees_with_brute_force() {
    agree_with_brute_force(0x9e37_79b9_7f4a_7c15, 20_000, 10, 20);
}

#[test]
fn checker_agrees_with_brute_force_when_many_outcomes_are_unknown() {
    agree_with_brute_force(0x0bad_5eed_0bad_5eed, 10_000, 45, 20);
}

#[test]
fn checker_agrees_with_brute_force_on_cas_heavy_histories() {
    agree_with_brute_force(0x1234_79b9_7f4a_7c15, 10_000, 25, 50);
}

fn agree_with_brute_force(seed: u64, rounds: usize, info_percent: u64, cas_percent: u64) {
    let mut rng = Rng(seed);
    let (mut linearizable, mut not) = (0, 0);
    for round in 0..rounds {
        let size = 2 + (round % 10);
        let events = random_history(&mut rng, size, info_percent, cas_percent);
        let ops = pair_operations(&events).unwrap();
        let expected = brute_force(&ops);
        let outcome = check_events(&events, CheckLimits::default()).unwrap();
        assert!(
            !matches!(outcome, CheckOutcome::Unknown { .. }),
            "{outcome}"
        );
        if outcome.is_linearizable() != expected {
            let mut text = Vec::new();
            mqpaxos_check::write_jsonl(&mut text, &events).unwrap();
            panic!(
                "round {round}: checker says {outcome}, brute force says {expected}\n{}",
                String::from_utf8(text).unwrap()
            );
        }
        if expected {
            linearizable += 1;
        } else {
            not += 1;
        }
    }
    eprintln!("{linearizable} linearizable, {not} not");
    // Both verdicts must be well represented for the comparison to mean anything.
    assert!(
        linearizable > 1_000 && not > 1_000,
        "{linearizable} / {not}"
    );
}

/// Runs a random concurrent execution against a real map, each operation taking effect at
/// a random instant inside its interval (or, when its outcome is logged as unknown, at a
/// random later instant or never), and logs what clients would see.
fn linearizable_history(rng: &mut Rng, clients: usize, ops: usize) -> Vec<Event> {
    struct Pending {
        event: Event,
        effect_done: bool,
        value: Option<String>,
        result: Option<bool>,
    }
    let keys = ["x", "y"];
    let mut state: [Option<String>; 2] = [None, None];
    let mut pending: Vec<Option<Pending>> = (0..clients).map(|_| None).collect();
    // Operations logged as info that may still take effect later.
    let mut lingering: Vec<Event> = Vec::new();
    let mut events = Vec::new();
    let mut started = 0;
    let mut t = 0u64;
    let take_effect =
        |e: &Event, state: &mut [Option<String>; 2]| -> (Option<String>, Option<bool>) {
            let s = &mut state[keys.iter().position(|k| *k == e.key).unwrap()];
            match e.f {
                OpKind::Get => (s.clone(), None),
                OpKind::Put => {
                    *s = e.value.clone();
                    (None, None)
                }
                OpKind::Append => {
                    s.get_or_insert_with(String::new)
                        .push_str(e.value.as_deref().unwrap());
                    (None, None)
                }
                OpKind::Delete => {
                    *s = None;
                    (None, None)
                }
                OpKind::Cas => {
                    let holds = *s == e.expected;
                    if holds {
                        *s = e.value.clone();
                    }
                    (None, Some(holds))
                }
            }
        };
    while started < ops || pending.iter().any(Option::is_some) {
        t += 1;
        if rng.below(8) == 0 && !lingering.is_empty() {
            let i = rng.below(lingering.len() as u64) as usize;
            let e = lingering.swap_remove(i);
            take_effect(&e, &mut state);
            continue;
        }
        let c = rng.below(clients as u64) as usize;
        let client = c.to_string();
        match pending[c].take() {
            None if started < ops => {
                started += 1;
                let key = keys[rng.below(2) as usize];
                let f = match rng.below(10) {
                    0..=3 => OpKind::Get,
                    4..=5 => OpKind::Put,
                    6..=7 => OpKind::Append,
                    8 => OpKind::Delete,
                    _ => OpKind::Cas,
                };
                let mut e = Event::invoke(t, &client, f, key);
                match f {
                    OpKind::Put | OpKind::Append => {
                        e = e.with_value(Some(rng.pick(&["a", "b", "c"])))
                    }
                    OpKind::Cas => {
                        e = e
                            .with_expected(rng.maybe(&["a", "b", "c", "ab", "ba"]))
                            .with_value(Some(rng.pick(&["a", "b", "c"])))
                    }
                    _ => {}
                }
                events.push(e.clone());
                pending[c] = Some(Pending {
                    event: e,
                    effect_done: false,
                    value: None,
                    result: None,
                });
            }
            None => {}
            Some(mut p) if !p.effect_done && rng.below(2) == 0 => {
                let (value, result) = take_effect(&p.event, &mut state);
                p.effect_done = true;
                p.value = value;
                p.result = result;
                pending[c] = Some(p);
            }
            Some(p) => {
                let e = &p.event;
                let roll = rng.below(10);
                if roll == 0 {
                    events.push(Event::info(t, &client, e.f, &e.key));
                    if !p.effect_done && rng.below(2) == 0 {
                        lingering.push(e.clone());
                    }
                } else if !p.effect_done {
                    // Never took effect: it either failed or is put back to run later.
                    if roll < 3 {
                        events.push(Event::fail(t, &client, e.f, &e.key));
                    } else {
                        pending[c] = Some(p);
                    }
                } else {
                    let mut ok = Event::ok(t, &client, e.f, &e.key).with_value(p.value.as_deref());
                    if let Some(r) = p.result {
                        ok = ok.with_result(r);
                    }
                    events.push(ok);
                }
            }
        }
    }
    events
}

#[test]
fn histories_of_linearizable_executions_are_accepted() {
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    for round in 0..300 {
        let clients = 1 + round % 8;
        let ops = 20 + 3 * round;
        let events = linearizable_history(&mut rng, clients, ops);
        let outcome = check_events(&events, CheckLimits::default()).unwrap();
        if !outcome.is_linearizable() {
            let mut text = Vec::new();
            mqpaxos_check::write_jsonl(&mut text, &events).unwrap();
            panic!(
                "round {round}: {outcome}\n{}",
                String::from_utf8(text).unwrap()
            );
        }
    }
}

#[test]
fn small_executions_with_one_corrupted_read_agree_with_brute_force() {
    let mut rng = Rng(0xfeed_beef_1234_5678);
    let (mut linearizable, mut not) = (0, 0);
    for round in 0..3_000 {
        let mut events = linearizable_history(&mut rng, 2 + round % 3, 3 + round % 7);
        let reads: Vec<usize> = (0..events.len())
            .filter(|&i| events[i].f == OpKind::Get && events[i].ty == mqpaxos_check::EventType::Ok)
            .collect();
        if reads.is_empty() {
            continue;
        }
        let i = reads[rng.below(reads.len() as u64) as usize];
        events[i].value = rng
            .maybe(&["a", "b", "c", "ab", "ca", "cc"])
            .map(str::to_owned);
        let expected = brute_force(&pair_operations(&events).unwrap());
        let outcome = check_events(&events, CheckLimits::default()).unwrap();
        assert_eq!(
            outcome.is_linearizable(),
            expected,
            "round {round}: {outcome}"
        );
        if expected {
            linearizable += 1;
        } else {
            not += 1;
        }
    }
    eprintln!("{linearizable} linearizable, {not} not");
    assert!(linearizable > 200 && not > 200, "{linearizable} / {not}");
}
