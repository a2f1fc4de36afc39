//! The JSON Lines format and the pairing of events into operations.

use mqpaxos_check::{
    check_operations, pair_operations, parse_jsonl, read_file, write_jsonl, CheckLimits, Event,
    EventType, HistoryError, OpKind, Operation, Outcome,
};

fn sample() -> Vec<Event> {
    vec![
        Event::invoke(1, "a", OpKind::Put, "k").with_value(Some("v1")),
        Event::invoke(2, "b", OpKind::Get, "k"),
        Event::ok(3, "a", OpKind::Put, "k").with_value(Some("v1")),
        Event::ok(4, "b", OpKind::Get, "k").with_value(None),
        Event::invoke(5, "a", OpKind::Cas, "k")
            .with_expected(Some("v1"))
            .with_value(Some("v2")),
        Event::ok(6, "a", OpKind::Cas, "k").with_result(true),
        Event::invoke(7, "c", OpKind::Cas, "k")
            .with_expected(None)
            .with_value(Some("v3")),
        Event::fail(8, "c", OpKind::Cas, "k"),
        Event::invoke(9, "b", OpKind::Append, "other").with_value(Some("tail \"quoted\" ✓")),
        Event::info(10, "b", OpKind::Append, "other"),
        Event::invoke(11, "a", OpKind::Delete, "k"),
        Event::ok(12, "a", OpKind::Delete, "k"),
        Event::invoke(u64::MAX, "d", OpKind::Get, "k"),
    ]
}

#[test]
fn write_then_parse_round_trips() {
    let events = sample();
    let mut out = Vec::new();
    write_jsonl(&mut out, &events).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().count(), events.len());
    assert_eq!(parse_jsonl(&text).unwrap(), events);
}

#[test]
fn writes_the_documented_field_names() {
    let mut out = Vec::new();
    write_jsonl(&mut out, &sample()[..4]).unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        r#"{"t":1,"client":"a","type":"invoke","f":"put","key":"k","value":"v1"}"#
    );
    // A get's null read is information and is written out; other absent fields are not.
    assert_eq!(
        lines[3],
        r#"{"t":4,"client":"b","type":"ok","f":"get","key":"k","value":null}"#
    );
    assert_eq!(
        lines[1],
        r#"{"t":2,"client":"b","type":"invoke","f":"get","key":"k"}"#
    );
}

#[test]
fn parses_the_documented_format() {
    let text = r#"
{"t": 5, "client": "c1", "type": "invoke", "f": "cas", "key": "k", "expected": null, "value": "x"}

{"t": 6, "client": "c1", "type": "ok", "f": "cas", "key": "k", "result": false, "extra": [1, 2]}
"#;
    let events = parse_jsonl(text).unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].ty, EventType::Invoke);
    assert_eq!(events[0].f, OpKind::Cas);
    assert_eq!(events[0].expected, None);
    assert_eq!(events[0].value.as_deref(), Some("x"));
    assert_eq!(events[1].result, Some(false));
}

#[test]
fn malformed_lines_are_reported_with_their_line_number() {
    let good = r#"{"t": 1, "client": "a", "type": "invoke", "f": "get", "key": "k"}"#;
    let cases = [
        "{not json",
        r#"{"t": 1, "client": "a", "type": "begin", "f": "get", "key": "k"}"#,
        r#"{"t": 1, "client": "a", "type": "ok", "f": "scan", "key": "k"}"#,
        r#"{"client": "a", "type": "ok", "f": "get", "key": "k"}"#,
        r#"{"t": -1, "client": "a", "type": "ok", "f": "get", "key": "k"}"#,
        r#"{"t": 1, "client": "a", "type": "ok", "f": "get", "key": "k", "value": 3}"#,
        r#"{"t": 1, "client": "a", "type": "ok", "f": "cas", "key": "k", "result": "yes"}"#,
    ];
    for bad in cases {
        // Line 3: a good line, a blank line, then the bad one.
        let text = format!("{good}\n\n{bad}\n{good}\n");
        match parse_jsonl(&text) {
            Err(HistoryError::Json { line, .. }) => assert_eq!(line, 3, "{bad}"),
            other => panic!("{bad}: expected a JSON error, got {other:?}"),
        }
        let message = parse_jsonl(&text).unwrap_err().to_string();
        assert!(message.starts_with("line 3:"), "{message}");
    }
}

#[test]
fn missing_file_is_an_io_error() {
    let err = read_file("/nonexistent/history.jsonl").unwrap_err();
    assert!(matches!(err, HistoryError::Io { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/history.jsonl"));
}

#[test]
fn pairs_invokes_with_completions() {
    let ops = pair_operations(&sample()).unwrap();
    // The failed cas is dropped; the rest come in invoke order.
    let kinds: Vec<(OpKind, &str)> = ops.iter().map(|o| (o.kind, o.client.as_str())).collect();
    assert_eq!(
        kinds,
        [
            (OpKind::Put, "a"),
            (OpKind::Get, "b"),
            (OpKind::Cas, "a"),
            (OpKind::Append, "b"),
            (OpKind::Delete, "a"),
            (OpKind::Get, "d"),
        ]
    );
    assert_eq!(
        ops[1],
        Operation {
            client: "b".into(),
            kind: OpKind::Get,
            key: "k".into(),
            value: None,
            expected: None,
            call: 2,
            ret: Some(4),
            outcome: Outcome::Ok {
                value: None,
                result: None
            },
        }
    );
    assert_eq!(ops[2].expected.as_deref(), Some("v1"));
    assert_eq!(ops[2].value.as_deref(), Some("v2"));
    assert_eq!(
        ops[2].outcome,
        Outcome::Ok {
            value: None,
            result: Some(true)
        }
    );
    // info, and an invoke never completed, are unknown with no return.
    assert_eq!((ops[3].ret, &ops[3].outcome), (None, &Outcome::Unknown));
    assert_eq!((ops[5].ret, &ops[5].outcome), (None, &Outcome::Unknown));
}

#[test]
fn value_may_be_given_only_on_the_completion() {
    let events = [
        Event::invoke(1, "a", OpKind::Put, "k"),
        Event::ok(2, "a", OpKind::Put, "k").with_value(Some("v")),
    ];
    let ops = pair_operations(&events).unwrap();
    assert_eq!(ops[0].value.as_deref(), Some("v"));
}

/// Pairing `$events` fails with an error that matches the pattern (guard allowed).
macro_rules! assert_refused {
    ($events:expr, $($pattern:tt)+) => {{
        let err = pair_operations(&$events).unwrap_err();
        assert!(matches!(&err, $($pattern)+), "{err}");
    }};
}

#[test]
fn inconsistent_histories_are_typed_errors() {
    let inv = |t, c: &str, f, k: &str| Event::invoke(t, c, f, k).with_value(Some("v"));
    let ok = |t, c: &str, f, k: &str| Event::ok(t, c, f, k);

    assert_refused!(
        [ok(1, "a", OpKind::Get, "k")],
        HistoryError::CompletionWithoutInvoke { index: 0, client } if client == "a"
    );
    assert_refused!(
        [
            inv(1, "a", OpKind::Put, "k"),
            inv(2, "b", OpKind::Put, "k"),
            inv(3, "a", OpKind::Put, "k"),
        ],
        HistoryError::InvokeWhilePending {
            index: 2,
            pending: 0,
            ..
        }
    );
    assert_refused!(
        [inv(1, "a", OpKind::Put, "k"), ok(2, "a", OpKind::Get, "k")],
        HistoryError::Mismatch {
            index: 1,
            invoke: 0,
            ..
        }
    );
    for completion in [
        ok(2, "a", OpKind::Put, "j"),
        // Even a fail must match what it completes.
        Event::fail(2, "a", OpKind::Delete, "k"),
        ok(2, "a", OpKind::Put, "k").with_value(Some("w")),
    ] {
        assert_refused!(
            [inv(1, "a", OpKind::Put, "k"), completion],
            HistoryError::Mismatch { index: 1, .. }
        );
    }
    assert_refused!(
        [inv(5, "a", OpKind::Put, "k"), ok(4, "a", OpKind::Put, "k")],
        HistoryError::ReturnBeforeCall {
            index: 1,
            call: 5,
            ret: 4
        }
    );
    for f in [OpKind::Put, OpKind::Append, OpKind::Cas] {
        assert_refused!(
            [Event::invoke(1, "a", f, "k"), Event::info(2, "a", f, "k")],
            HistoryError::MissingValue { index: 0, .. }
        );
    }
    // ... also when the value would only matter if the operation happened.
    assert_refused!(
        [Event::invoke(1, "a", OpKind::Append, "k")],
        HistoryError::MissingValue { index: 0, .. }
    );
}

#[test]
fn check_operations_rejects_operations_pairing_cannot_produce() {
    let op = Operation {
        client: "a".into(),
        kind: OpKind::Put,
        key: "k".into(),
        value: None,
        expected: None,
        call: 1,
        ret: Some(2),
        outcome: Outcome::Ok {
            value: None,
            result: None,
        },
    };
    let err = check_operations(std::slice::from_ref(&op), CheckLimits::default()).unwrap_err();
    assert!(
        matches!(err, HistoryError::InvalidOperation { index: 0, .. }),
        "{err}"
    );

    let backwards = Operation {
        value: Some("v".into()),
        call: 3,
        ..op
    };
    let err = check_operations(&[backwards], CheckLimits::default()).unwrap_err();
    assert!(
        matches!(err, HistoryError::InvalidOperation { index: 0, .. }),
        "{err}"
    );
}

#[test]
fn operations_display_compactly() {
    let ops = pair_operations(&sample()).unwrap();
    assert_eq!(
        ops[0].to_string(),
        r#"put("k", "v1") -> ok by client a at [1, 3]"#
    );
    assert_eq!(
        ops[2].to_string(),
        r#"cas("k", expected "v1", new "v2") -> true by client a at [5, 6]"#
    );
    assert_eq!(
        ops[5].to_string(),
        r#"get("k") -> ? by client d at [18446744073709551615, inf)"#
    );
    let long = Operation {
        value: Some("x".repeat(100)),
        ..ops[0].clone()
    };
    assert!(long.to_string().contains("(100 bytes)"), "{long}");
}
