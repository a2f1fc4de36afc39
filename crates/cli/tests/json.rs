//! The JSON API from clients that are not ours: the README's `mosquitto_pub`/`mosquitto_sub`
//! (MQTT 3.1.1) and `mosquitto_rr` (MQTT 5) block, run as it is written (only the port
//! changed) against `mqpaxos cluster up`, and the answers checked.

mod common;

use common::*;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The README's JSON example, between the marker comment and the end of its code block.
fn readme_block(marker: &str) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    let start = readme
        .find(&format!("<!-- {marker}"))
        .unwrap_or_else(|| panic!("the README has the {marker} block"));
    let rest = &readme[start..];
    let code = rest.find("```sh\n").expect("a sh block") + "```sh\n".len();
    let end = rest[code..].find("```").expect("the block ends");
    rest[code..code + end].to_string()
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter_map(|l| l.find('{').map(|i| &l[i..]))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

#[test]
fn the_readme_mosquitto_and_python_examples_work() {
    for tool in ["mosquitto_pub", "mosquitto_sub", "mosquitto_rr"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .expect("sh");
        // CI installs mosquitto-clients (scripts/install-deps): missing is a failure there.
        assert!(found.status.success(), "{tool} is not installed");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let up = Up(Command::new(BIN)
        .args([
            "cluster",
            "up",
            "--servers",
            "3",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cluster up"));
    wait_listening(port);
    // Wait for a leader: a put through our own client.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = Command::new(BIN)
            .args(["put", "ready", "yes", "--timeout", "2s", "--broker"])
            .arg(format!("mqtt://127.0.0.1:{port}"))
            .output()
            .expect("put");
        if o.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "no leader: {}", stderr(&o));
    }
    let script = readme_block("json-example").replace("-p 1883", &format!("-p {port}"));
    assert!(script.contains(&format!("-p {port}")), "{script}");
    let out = Command::new("bash")
        .args(["-c", &format!("set -e\n{script}")])
        .output()
        .expect("bash");
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "the README block failed:\n{text}\n{}",
        stderr(&out)
    );
    let replies = json_lines(&text);
    // Every message of this test, for the schema check at the end.
    let mut seen: Vec<String> = script
        .split("-m '")
        .skip(1)
        .filter_map(|rest| {
            rest.split_once('\'')
                .map(|(body, _)| format!("request {body}"))
        })
        .collect();
    seen.extend(replies.iter().map(|r| format!("reply {r}")));
    let by_id = |id: &str| {
        replies
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("no reply {id} in {text}"))
    };
    assert_eq!(by_id("1")["ok"], true);
    let got = by_id("2");
    assert_eq!(got["value"], "hello");
    assert_eq!(got["version"], 1);
    let created = got["create_revision"].as_u64().expect("a revision");
    assert_eq!(got["mod_revision"].as_u64(), Some(created));
    assert_eq!(by_id("3")["swapped"], true);
    let after = by_id("4");
    assert_eq!(after["value"], "hi");
    assert_eq!(after["version"], 2);
    assert_eq!(after["create_revision"].as_u64(), Some(created));
    assert!(after["mod_revision"].as_u64() > Some(created));
    assert!(after["revision"].as_u64() >= after["mod_revision"].as_u64());

    // A cas on the revision just read wins once, then loses to its own change.
    let rev = after["mod_revision"].as_u64().expect("a revision");
    let mut rr = |id: &str, body: &str| {
        let request = format!(
            "{{\"id\":\"{id}\",{body},\"reply_to\":\"mqpaxos/default/json/reply/alice/t\"}}"
        );
        seen.push(format!("request {request}"));
        let o = Command::new("mosquitto_rr")
            .args(["-V", "5", "-p", &port.to_string(), "-u", "alice"])
            .args(["-t", "mqpaxos/default/json/request/alice"])
            .args(["-e", "mqpaxos/default/json/reply/alice/t", "-W", "10", "-m"])
            .arg(&request)
            .output()
            .expect("mosquitto_rr");
        assert!(o.status.success(), "{}", stderr(&o));
        let answer = json_lines(&stdout(&o)).remove(0);
        seen.push(format!("reply {answer}"));
        answer
    };
    let body = format!("\"op\":\"cas\",\"key\":\"greeting\",\"revision\":{rev},\"value\":\"x\"");
    assert_eq!(rr("5", &body)["swapped"], true);
    assert_eq!(rr("6", &body)["swapped"], false);
    // The same request id again: the first answer, not a second execution.
    assert_eq!(rr("5", &body)["swapped"], true);
    // Errors have stable codes.
    let e = rr("7", "\"op\":\"put\",\"key\":\"k\"");
    assert_eq!(e["ok"], false);
    assert_eq!(e["error"]["code"], "bad_request");
    let big = "k".repeat(2000);
    let e = rr("8", &format!("\"op\":\"get\",\"key\":\"{big}\""));
    assert_eq!(e["error"]["code"], "key_too_large");
    // Sessions: open, then numbered commands.
    let s = rr("9", "\"op\":\"open\"");
    let session = s["session"].as_str().expect("a session").to_string();
    let body = format!(
        "\"op\":\"append\",\"key\":\"log\",\"value\":\"a\",\"session\":\"{session}\",\"seq\":1"
    );
    assert_eq!(rr("10", &body)["ok"], true);
    assert_eq!(rr("11", &body)["ok"], true, "a retry");
    let log = rr("12", "\"op\":\"get\",\"key\":\"log\"");
    assert_eq!(log["value"], "a", "the retried append ran once");

    // The README's Python example, with whichever interpreter has paho-mqtt.
    let python = ["python3", "/usr/bin/python3"]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .args(["-c", "import paho.mqtt.client"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("paho-mqtt is installed (scripts/install-deps installs python3-paho-mqtt)");
    let o = Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/json/counter.py"
        ))
        .args(["127.0.0.1", &port.to_string()])
        .output()
        .expect("python");
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let answers = json_lines(&stdout(&o));
    seen.extend(answers.iter().map(|r| format!("reply {r}")));
    let last = answers.last().expect("answers");
    assert_eq!(last["value"], "5");
    assert_eq!(last["version"], 6);
    // The README's watch block: an event as a put commits, then the key's changes (asked
    // for with MQTT 5's response topic, no reply_to).
    let script = readme_block("watch-example").replace("-p 1883", &format!("-p {port}"));
    let bin_dir = std::path::Path::new(BIN).parent().expect("a directory");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args(["-c", &format!("set -e\n{script}")])
        .env("PATH", &path)
        .env("MQPAXOS_BROKER", format!("mqtt://127.0.0.1:{port}"))
        .output()
        .expect("bash");
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "the watch block failed:\n{text}\n{}",
        stderr(&out)
    );
    let lines = json_lines(&text);
    assert_eq!(lines.len(), 2, "{text}");
    let event = &lines[0];
    assert_eq!(event["op"], "put");
    assert_eq!(event["key"], "greeting");
    assert_eq!(event["value"], "bonjour");
    let changes = &lines[1];
    assert_eq!(changes["id"], "20", "{text}");
    assert_eq!(changes["more"], false);
    let all = changes["changes"].as_array().expect("changes");
    assert_eq!(all.last(), Some(event), "the history ends with the event");
    assert!(all.len() >= 3, "{all:?}");
    seen.push(format!("event {event}"));
    seen.extend(all.iter().map(|e| format!("event {e}")));
    seen.push(format!("reply {changes}"));
    seen.extend(
        script
            .split("-m '")
            .skip(1)
            .filter_map(|rest| rest.split_once('\''))
            .map(|(b, _)| {
                if b.starts_with("{\"prefix\"") {
                    format!("watching {b}")
                } else {
                    format!("request {b}")
                }
            }),
    );
    // The block's last line withdrew its registration: with nobody registered for the key,
    // the leader publishes nothing for its changes.
    let quiet = Command::new("bash")
        .args([
            "-c",
            &format!(
                "mosquitto_sub -p {port} -u alice -t mqpaxos/default/watch/greeting -C 1 -W 3 &\n\
                 sleep 1\nmqpaxos put greeting bonjour\nwait\nexit 0"
            ),
        ])
        .env("PATH", &path)
        .env("MQPAXOS_BROKER", format!("mqtt://127.0.0.1:{port}"))
        .output()
        .expect("bash");
    assert!(quiet.status.success(), "{}", stderr(&quiet));
    assert_eq!(
        stdout(&quiet).trim(),
        "",
        "an event published for a key nobody is registered for"
    );
    // MQTT 5 without reply_to: the answer goes to the response topic and carries the
    // request's correlation data back.
    let sub = Command::new("mosquitto_sub")
        .args(["-V", "5", "-p", &port.to_string(), "-u", "bob"])
        .args([
            "-t",
            "mqpaxos/default/json/reply/bob/#",
            "-F",
            "%D|%t|%p",
            "-C",
            "1",
            "-W",
            "10",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub");
    std::thread::sleep(Duration::from_millis(500));
    let request = r#"{"id":"c1","op":"get","key":"greeting"}"#;
    let o = Command::new("mosquitto_pub")
        .args(["-V", "5", "-p", &port.to_string(), "-u", "bob"])
        .args(["-t", "mqpaxos/default/json/request/bob"])
        .args([
            "-D",
            "publish",
            "response-topic",
            "mqpaxos/default/json/reply/bob/x",
        ])
        .args([
            "-D",
            "publish",
            "correlation-data",
            "corr-77",
            "-m",
            request,
        ])
        .output()
        .expect("mosquitto_pub");
    assert!(o.status.success(), "{}", stderr(&o));
    let got = sub.wait_with_output().expect("mosquitto_sub");
    let line = stdout(&got);
    let mut parts = line.trim().splitn(3, '|');
    assert_eq!(parts.next(), Some("corr-77"), "{line}");
    assert_eq!(
        parts.next(),
        Some("mqpaxos/default/json/reply/bob/x"),
        "{line}"
    );
    let answer: serde_json::Value = serde_json::from_str(parts.next().unwrap_or("")).expect("JSON");
    assert_eq!(answer["value"], "bonjour");
    seen.push(format!("request {request}"));
    seen.push(format!("reply {answer}"));
    drop(up);

    // Every request and answer above, against the schemas of docs/asyncapi/ (the bad
    // requests the test sent on purpose aside: they are meant not to fit).
    let good: Vec<&String> = seen
        .iter()
        .filter(|m| {
            m.starts_with("reply") || !(m.contains("\"id\":\"7\"") || m.contains("\"id\":\"8\""))
        })
        .collect();
    let messages: String = good.iter().map(|m| format!("{m}\n")).collect();
    check_api(dir.path(), &messages, good.len());
    assert!(good.len() >= 30, "{} messages", good.len());
}
