//! The broker's password file (Mosquitto format, `user:$7$…` / `user:$6$…`): parsing any
//! text gives the users or an error naming the line, never a panic; checking a password
//! against whatever parsed never panics, and a user the file does not name never gets in.
//!
//! Input: the file, then optionally NUL, a user name, NUL, a password to check.
//!
//! Every input is parsed. Checking a password is what costs: a `$7$` line carries its PBKDF2
//! iteration count (up to 10 million is accepted), a user the file does not name is checked
//! against a dummy priced at the file's usual count (210,000 when it has no `$7$` line), and
//! even at one iteration ring's HMAC-SHA512 and the OS random salt of `hash_password_with`
//! cost far more than parsing. So the password is checked only for a deterministic sample of
//! the inputs (one in [`SAMPLE`], chosen by a hash of the whole input, so a crash replays)
//! and only when every count in the file is small: the target runs at tens of thousands of
//! inputs a second instead of about a thousand. Production code is unchanged: no test-only
//! iteration count exists to weaken it. The hashing itself is ring's.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mqpaxos_broker::{hash_password_with, PasswordFile};

/// Above this, checking a password would make the execution slow.
const CHEAP: u32 = 64;

/// One input in this many (by [`sampled`]) has its password checked.
const SAMPLE: u32 = 64;

/// Whether this input is in the sample whose password is checked: FNV-1a over the whole
/// input, so the same input is always in or out (a crash found here replays with
/// `cargo fuzz run`), and a mutation anywhere in it reshuffles the choice.
fn sampled(data: &[u8]) -> bool {
    let mut h: u32 = 0x811c_9dc5;
    for &b in data {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h % SAMPLE == 0
}

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
    let parsed = PasswordFile::parse(Path::new("fuzz"), file);
    if !sampled(data) {
        return;
    }
    if let Ok(passwords) = &parsed {
        if cheap_to_check(file) {
            let ok = passwords.verify(user, password.as_bytes());
            assert!(!ok || passwords.contains(user), "an unknown user got in");
        }
    }
    // A line written by hash_password_with always parses and lets its password (and only
    // it) in, whatever the password (and whether or not the file above parsed).
    let line = format!("fuzzer:{}", hash_password_with(password, 1));
    let own = PasswordFile::parse(Path::new("fuzz"), &line).expect("a written line parses");
    assert!(own.verify("fuzzer", password.as_bytes()));
    assert!(!own.verify("fuzzer", format!("{password}x").as_bytes()));
});
