//! The broker's password file (Mosquitto format, `user:$7$…` / `user:$6$…`): parsing any
//! text gives the users or an error naming the line, never a panic; checking a password
//! against whatever parsed never panics, and a user the file does not name never gets in.
//!
//! Input: the file, then optionally NUL, a user name, NUL, a password to check.
//!
//! A `$7$` line carries its PBKDF2 iteration count (up to 10 million is accepted), and a user
//! the file does not name is checked against a dummy priced at the file's usual count
//! (210,000 when it has no `$7$` line): the password is only checked when every count is
//! small, so one execution stays in microseconds. The hashing itself is ring's.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mqpaxos_broker::{hash_password_with, PasswordFile};

/// Above this, checking a password would make the execution slow.
const CHEAP: u32 = 64;

/// Whether every `$7$` count in the file is small (and there is one, which prices the
/// dummy hash an unknown user is checked against), read the way the parser reads a line.
fn cheap_to_check(file: &str) -> bool {
    let mut any = false;
    for line in file.lines() {
        let Some((_, hash)) = line.trim().split_once(':') else {
            continue;
        };
        if let Some(rest) = hash.trim().strip_prefix("$7$") {
            let count = rest.split('$').next().unwrap_or("");
            match count.parse::<u32>() {
                Ok(n) if n <= CHEAP => any = true,
                _ => return false,
            }
        }
    }
    any
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (file, probe) = text.split_once('\0').unwrap_or((text, ""));
    let (user, password) = probe.split_once('\0').unwrap_or((probe, ""));
    let Ok(passwords) = PasswordFile::parse(Path::new("fuzz"), file) else {
        return;
    };
    if cheap_to_check(file) {
        let ok = passwords.verify(user, password.as_bytes());
        assert!(!ok || passwords.contains(user), "an unknown user got in");
    }
    // A line written by hash_password_with always parses and lets its password (and only
    // it) in, whatever the password.
    let line = format!("fuzzer:{}", hash_password_with(password, 1));
    let own = PasswordFile::parse(Path::new("fuzz"), &line).expect("a written line parses");
    assert!(own.verify("fuzzer", password.as_bytes()));
    assert!(!own.verify("fuzzer", format!("{password}x").as_bytes()));
});
