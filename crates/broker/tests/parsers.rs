//! The password and ACL file parsers on hostile input: many thousands of generated files
//! made of the tokens the formats use, mutated, never make either parser panic; each
//! answer is a value or an error naming a line of the file. (A cargo-fuzz target can call
//! the same two entry points, `PasswordFile::parse` and `Acl::parse`.)

use std::path::Path;

use mqpaxos_broker::{Acl, BrokerError, PasswordFile};

/// The check crate's test generator (no dependency on that crate: the file is included).
#[path = "../../check/tests/support/xorshift.rs"]
mod xorshift;
use xorshift::Rng;

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const TOKENS: &[&str] = &[
    "user",
    "topic",
    "pattern",
    "read",
    "write",
    "readwrite",
    "deny",
    " ",
    "  ",
    "\t",
    "\n",
    "\r\n",
    "#",
    "+",
    "/",
    "%u",
    "%c",
    ":",
    "$",
    "$7$",
    "$6$",
    "101",
    "210000",
    "0",
    "4294967296",
    "10000001",
    "AAAA",
    "6QcvyTw5hOju+TUo",
    "==",
    "!",
    "mqpaxos",
    "server1",
    "client1",
    "a/#/b",
    "é",
    "\u{0}",
    "\u{feff}",
    "🦀",
    "$SYS/#",
    "$share/g/",
    "x",
];

fn generate(rng: &mut Rng) -> String {
    let mut s = String::new();
    for _ in 0..rng.below(40) {
        s.push_str(TOKENS[rng.below(TOKENS.len())]);
    }
    // Sometimes cut it anywhere (on a character boundary).
    if rng.below(4) == 0 && !s.is_empty() {
        let mut cut = rng.below(s.len());
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

#[test]
fn generated_files_never_panic_the_parsers() {
    let path = Path::new("/fuzz/input");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut ok, mut refused) = (0, 0);
    for _ in 0..50_000 {
        let text = generate(&mut rng);
        match PasswordFile::parse(path, &text) {
            Ok(_) => ok += 1,
            Err(BrokerError::PasswordFile { line, .. }) => {
                assert!(line >= 1 && line <= text.lines().count(), "{text:?}");
                refused += 1;
            }
            Err(e) => panic!("unexpected error kind for {text:?}: {e}"),
        }
        match Acl::parse(path, &text) {
            Ok(acl) => {
                // Decisions on what a hostile client may send do not panic either.
                let user = Some(TOKENS[rng.below(TOKENS.len())]);
                let topic = generate(&mut rng);
                let _ = acl.can_publish(user, "id", &topic);
                let _ = acl.can_subscribe(user, "id", &topic);
                let _ = acl.can_read(None, &topic, "mqpaxos/x/request/client1");
                ok += 1;
            }
            Err(BrokerError::AclFile { line, .. }) => {
                assert!(line >= 1 && line <= text.lines().count(), "{text:?}");
                refused += 1;
            }
            Err(e) => panic!("unexpected error kind for {text:?}: {e}"),
        }
    }
    // Both outcomes were exercised.
    assert!(ok > 1000 && refused > 1000, "ok {ok}, refused {refused}");
}
