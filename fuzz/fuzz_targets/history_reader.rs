//! The history reader and the linearizability checker (`mqpaxos check FILE`): a history
//! file can come from anywhere (Jepsen, Porcupine, a crashed test run cut mid-line). Parsing
//! must give events or an error naming the line; what parses must be written back and read
//! again unchanged (`write_jsonl` is how the tools save histories); and the checker must give
//! a verdict or an error on any parsed history, never a panic. Its step budget is kept small
//! so one execution stays fast; an exhausted budget is the `Unknown` verdict, also a result.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mqpaxos_check::{check_events, parse_jsonl, write_jsonl, CheckLimits};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(events) = parse_jsonl(text) else {
        return;
    };
    let mut out = Vec::new();
    write_jsonl(&mut out, &events).expect("parsed events are written");
    let out = String::from_utf8(out).expect("JSON Lines are UTF-8");
    let again = parse_jsonl(&out).expect("written events parse");
    assert_eq!(again, events, "events changed through write and read");
    let _ = check_events(
        &events,
        CheckLimits {
            max_steps_per_key: 10_000,
        },
    );
});
