//! Mosquitto-format password files: reading them, checking a password, writing a hash line.
//!
//! One file must serve both the embedded broker and Mosquitto, so the format is exactly what
//! `mosquitto_passwd` writes: one `user:hash` a line, the hash being
//! `$7$<iterations>$<salt, base64>$<PBKDF2-HMAC-SHA512, base64>` (12-byte salt, 64-byte hash;
//! the count each line carries is the one used to check it, so lines written by
//! `mosquitto_passwd` 2.0 at 101 iterations and ours at [`PBKDF2_ITERATIONS`] both work) or
//! the older `$6$<salt>$<SHA-512(password ‖ salt)>` that Mosquitto 1.x wrote and 2.0 still
//! reads.
//!
//! Checking a password costs the same whether or not the user exists: an unknown user is
//! checked against a dummy hash with the file's usual iteration count, so connection times
//! do not tell which user names are real. Lines starting with `#` and blank lines are
//! skipped, as Mosquitto does; anything else that is not a valid entry is an error naming the
//! file and line, where Mosquitto would only log and drop the entry, because a silently
//! missing user is much harder to diagnose than a broker that refuses to start.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::Path;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use ring::rand::SecureRandom;
use subtle::ConstantTimeEq;

use crate::{rule_file, BrokerError};

/// Iterations `hash_password` uses: OWASP's recommendation for PBKDF2-HMAC-SHA512 (2023).
/// Mosquitto 2.0's `mosquitto_passwd` writes 101, which a GPU tries billions of times a
/// second against a stolen file; the count is stored in each line, so Mosquitto reads ours.
/// The price is paid on every CONNECT: see `docs/security.md` for the measured cost.
pub const PBKDF2_ITERATIONS: u32 = 210_000;
/// Above this a `$7$` line is refused when the file is read: at ~1 µs an iteration one
/// connection would cost the broker seconds of CPU, a typo (or a hostile file) worth catching.
pub const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;
const SALT_LEN: usize = 12;
const HASH_LEN: usize = 64;

/// Mosquitto writes padded standard base64; accept it unpadded too, since hand-made files
/// (or other tools) sometimes drop the `=`.
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Clone)]
enum StoredHash {
    Pbkdf2Sha512 {
        iterations: NonZeroU32,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
    SaltedSha512 {
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
}

impl StoredHash {
    fn verify(&self, password: &[u8]) -> bool {
        match self {
            StoredHash::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            } => ring::pbkdf2::verify(
                ring::pbkdf2::PBKDF2_HMAC_SHA512,
                *iterations,
                salt,
                password,
                hash,
            )
            .is_ok(),
            StoredHash::SaltedSha512 { salt, hash } => {
                let mut ctx = ring::digest::Context::new(&ring::digest::SHA512);
                ctx.update(password);
                ctx.update(salt);
                let digest = ctx.finish();
                digest.as_ref().ct_eq(hash).into()
            }
        }
    }
}

/// The users of one password file and their password hashes.
#[derive(Clone)]
pub struct PasswordFile {
    users: HashMap<String, StoredHash>,
    /// Checked for a user the file does not name, so that costs what a real check does.
    dummy: StoredHash,
}

impl Default for PasswordFile {
    fn default() -> Self {
        PasswordFile {
            users: HashMap::new(),
            dummy: dummy_hash(PBKDF2_ITERATIONS),
        }
    }
}

/// A hash no password matches (its salt and hash are zeros, and PBKDF2 output is never all
/// zeros in practice), costing `iterations` like a real line.
fn dummy_hash(iterations: u32) -> StoredHash {
    StoredHash::Pbkdf2Sha512 {
        iterations: NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN),
        salt: vec![0; SALT_LEN],
        hash: vec![0; HASH_LEN],
    }
}

/// Whether a file's mode lets anyone but its owner read it (Unix; elsewhere: no).
pub fn readable_by_others(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

impl std::fmt::Debug for PasswordFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print hashes, even in debug output: they are offline-crackable.
        let mut names: Vec<&String> = self.users.keys().collect();
        names.sort();
        f.debug_struct("PasswordFile")
            .field("users", &names)
            .finish()
    }
}

impl PasswordFile {
    /// Reads and parses a password file; warns (in the log) when others than its owner may
    /// read it, as Mosquitto does: the hashes are offline-crackable.
    pub fn load(path: &Path) -> Result<Self, BrokerError> {
        if readable_by_others(path) {
            tracing::warn!(
                "password file {} is readable by its group or by others; make it private: \
                 chmod 600 {}",
                path.display(),
                path.display()
            );
        }
        Self::parse(path, &rule_file::read("password", path)?)
    }

    /// Parses the text of a password file; `path` only names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, BrokerError> {
        let mut users = HashMap::new();
        // How many lines use each iteration count: the most common one prices the dummy.
        let mut counts: HashMap<u32, usize> = HashMap::new();
        for (line, trimmed) in rule_file::lines(text) {
            let err = |message: String| BrokerError::PasswordFile {
                path: path.to_path_buf(),
                line,
                message,
            };
            let Some((user, hash)) = trimmed.split_once(':') else {
                return Err(err(
                    "expected `user:hash`, as `mosquitto_passwd -b FILE USER PASSWORD` writes"
                        .to_string(),
                ));
            };
            let user = user.trim();
            if user.is_empty() {
                return Err(err("empty user name".to_string()));
            }
            let stored = parse_hash(hash.trim()).map_err(|m| err(format!("user {user:?}: {m}")))?;
            if let StoredHash::Pbkdf2Sha512 { iterations, .. } = &stored {
                *counts.entry(iterations.get()).or_default() += 1;
            }
            if users.insert(user.to_string(), stored).is_some() {
                return Err(err(format!("user {user:?} appears twice")));
            }
        }
        let usual = counts
            .into_iter()
            .max_by_key(|(iterations, n)| (*n, *iterations))
            .map_or(PBKDF2_ITERATIONS, |(iterations, _)| iterations);
        Ok(PasswordFile {
            users,
            dummy: dummy_hash(usual),
        })
    }

    /// Whether `user` is in the file and `password` is its password. An unknown user costs a
    /// check against the dummy hash, so the time taken does not say whether the user exists.
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        match self.users.get(user) {
            Some(stored) => stored.verify(password),
            None => {
                let _ = self.dummy.verify(password);
                false
            }
        }
    }

    /// Whether the file names `user`.
    pub fn contains(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// How many users the file holds.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether the file holds no user.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// Why the hash part of a password-file line was refused. The line and the user are added
/// by [`PasswordFile::parse`]: these say what is wrong with the hash itself.
#[derive(Debug, thiserror::Error)]
enum HashError {
    /// Neither `$7$` nor `$6$`; the first characters only, never a whole (plain) password.
    #[error(
        "unsupported password hash {0:?}: expected `$7$…` (PBKDF2-SHA512) or `$6$…` \
         (salted SHA-512) as written by mosquitto_passwd; a plain-text password must \
         be hashed first"
    )]
    Unsupported(String),
    #[error("{what} is not valid base64: {source}")]
    Base64 {
        what: &'static str,
        source: base64::DecodeError,
    },
    #[error("{0} is empty")]
    Empty(&'static str),
    #[error("bad iteration count {0:?} in `$7$` hash")]
    BadIterations(String),
    #[error(
        "iteration count {0} is above {MAX_PBKDF2_ITERATIONS}: every connection would cost \
         seconds of CPU"
    )]
    TooManyIterations(u32),
    #[error("`$6$` hash is {0} bytes, SHA-512 gives {HASH_LEN}")]
    WrongLength(usize),
    #[error("a `$7$` hash is `$7$<iterations>$<salt>$<hash>`")]
    MalformedPbkdf2,
    #[error("a `$6$` hash is `$6$<salt>$<hash>`")]
    MalformedSha512,
}

fn decode(what: &'static str, text: &str) -> Result<Vec<u8>, HashError> {
    let bytes = B64
        .decode(text)
        .map_err(|source| HashError::Base64 { what, source })?;
    if bytes.is_empty() {
        return Err(HashError::Empty(what));
    }
    Ok(bytes)
}

fn parse_hash(text: &str) -> Result<StoredHash, HashError> {
    let unsupported = || HashError::Unsupported(text.chars().take(4).collect());
    let Some(rest) = text.strip_prefix('$') else {
        return Err(unsupported());
    };
    let fields: Vec<&str> = rest.split('$').collect();
    match fields.as_slice() {
        ["7", iterations, salt, hash] => {
            let iterations = iterations
                .parse::<u32>()
                .ok()
                .and_then(NonZeroU32::new)
                .ok_or_else(|| HashError::BadIterations(iterations.to_string()))?;
            if iterations.get() > MAX_PBKDF2_ITERATIONS {
                return Err(HashError::TooManyIterations(iterations.get()));
            }
            Ok(StoredHash::Pbkdf2Sha512 {
                iterations,
                salt: decode("salt", salt)?,
                hash: decode("hash", hash)?,
            })
        }
        ["6", salt, hash] => {
            let hash = decode("hash", hash)?;
            if hash.len() != HASH_LEN {
                return Err(HashError::WrongLength(hash.len()));
            }
            Ok(StoredHash::SaltedSha512 {
                salt: decode("salt", salt)?,
                hash,
            })
        }
        ["7", ..] => Err(HashError::MalformedPbkdf2),
        ["6", ..] => Err(HashError::MalformedSha512),
        _ => Err(unsupported()),
    }
}

/// Hashes `password` in `mosquitto_passwd`'s format, giving the part after `user:` of a
/// password-file line: `$7$210000$<salt>$<hash>` (PBKDF2-HMAC-SHA512, fresh 12-byte salt).
pub fn hash_password(password: &str) -> String {
    hash_password_with(password, PBKDF2_ITERATIONS)
}

/// [`hash_password`] with another iteration count (tests; files for slow machines).
pub fn hash_password_with(password: &str, iterations: u32) -> String {
    let mut salt = [0u8; SALT_LEN];
    // The system RNG failing means no secure randomness is left on this machine at all;
    // hashing with a predictable salt instead would be silently weak.
    ring::rand::SystemRandom::new()
        .fill(&mut salt)
        .expect("the operating system's random number generator failed");
    hash_with_salt(password, &salt, iterations)
}

fn hash_with_salt(password: &str, salt: &[u8], iterations: u32) -> String {
    let mut hash = [0u8; HASH_LEN];
    let iterations = NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN);
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA512,
        iterations,
        salt,
        password.as_bytes(),
        &mut hash,
    );
    format!(
        "$7${}${}${}",
        iterations,
        B64.encode(salt),
        B64.encode(hash)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Result<PasswordFile, BrokerError> {
        PasswordFile::parse(Path::new("/etc/test.pw"), text)
    }

    /// Written by `mosquitto_passwd -b -c pw alice secret` (Mosquitto 2.0.11).
    const MOSQUITTO_7: &str = "alice:$7$101$6QcvyTw5hOju+TUo$C3fZqN2EGKxK4pomDkNLzf/f6IAa2rpMonyl9KV/NrprU3F2Xh4a5SpHmWS1Sh41a1x7H3vQYRWGchfxTTwnBg==";

    #[test]
    fn reads_a_mosquitto_pbkdf2_line() {
        let pw = file(MOSQUITTO_7).unwrap();
        assert!(pw.verify("alice", b"secret"));
        assert!(!pw.verify("alice", b"Secret"));
        assert!(!pw.verify("alice", b""));
        assert!(!pw.verify("bob", b"secret"));
    }

    #[test]
    fn reads_a_salted_sha512_line() {
        // $6$ is SHA-512 over the password then the raw salt bytes.
        let salt = b"0123456789ab";
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA512);
        ctx.update(b"pw6");
        ctx.update(salt);
        let line = format!(
            "carol:$6${}${}",
            B64.encode(salt),
            B64.encode(ctx.finish().as_ref())
        );
        let pw = file(&line).unwrap();
        assert!(pw.verify("carol", b"pw6"));
        assert!(!pw.verify("carol", b"pw7"));
    }

    #[test]
    fn hash_password_round_trips_and_salts() {
        let a = hash_password("hunter2");
        let b = hash_password("hunter2");
        assert_ne!(a, b, "fresh salt each time");
        assert!(a.starts_with("$7$210000$"));
        let pw = file(&format!("u:{a}\n")).unwrap();
        assert!(pw.verify("u", b"hunter2"));
        assert!(!pw.verify("u", b"hunter3"));
        // Same shape as mosquitto_passwd: 16 base64 chars of salt, 88 of hash.
        let parts: Vec<&str> = a.split('$').collect();
        assert_eq!(parts[3].len(), 16);
        assert_eq!(parts[4].len(), 88);
    }

    #[test]
    fn known_vector() {
        // Recomputes the Mosquitto line above from its salt: our derivation is theirs.
        let salt = B64.decode("6QcvyTw5hOju+TUo").unwrap();
        let line = hash_with_salt("secret", &salt, 101);
        assert_eq!(format!("alice:{line}"), MOSQUITTO_7);
    }

    #[test]
    fn skips_comments_and_blank_lines_and_trims() {
        let h = hash_password("x");
        let text = format!("# users\n\n   \n  bob : {h}  \r\n#alice:nothing\n");
        let pw = file(&text).unwrap();
        assert_eq!(pw.len(), 1);
        assert!(pw.verify("bob", b"x"));
    }

    fn error_of(text: &str) -> String {
        match file(text) {
            Ok(_) => panic!("expected an error for {text:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn errors_name_file_and_line() {
        let h = hash_password("x");
        let e = error_of(&format!("a:{h}\nnocolon\n"));
        assert!(e.contains("/etc/test.pw") && e.contains("line 2"), "{e}");

        let e = error_of("a:plaintext");
        assert!(e.contains("line 1") && e.contains("unsupported"), "{e}");

        let e = error_of("a:$7$0$AAAA$AAAA");
        assert!(e.contains("iteration"), "{e}");

        let e = error_of("a:$7$101$!!!$AAAA");
        assert!(e.contains("base64"), "{e}");

        let e = error_of("a:$7$101$AAAA");
        assert!(e.contains("$7$<iterations>"), "{e}");

        let e = error_of("a:$6$AAAA$AAAA");
        assert!(e.contains("SHA-512"), "{e}");

        let e = error_of(&format!("a:{h}\n\na:{h}\n"));
        assert!(e.contains("line 3") && e.contains("twice"), "{e}");

        let e = error_of(&format!(":{h}"));
        assert!(e.contains("empty user"), "{e}");
    }

    #[test]
    fn each_bad_hash_has_its_own_error() {
        let kind = |text: &str| match parse_hash(text) {
            Ok(_) => panic!("expected an error for {text:?}"),
            Err(e) => e,
        };
        assert!(matches!(kind("plaintext"), HashError::Unsupported(s) if s == "plai"));
        assert!(matches!(
            kind("$7$0$AAAA$AAAA"),
            HashError::BadIterations(_)
        ));
        assert!(matches!(
            kind("$7$10000001$AAAA$AAAA"),
            HashError::TooManyIterations(10_000_001)
        ));
        assert!(matches!(
            kind("$7$101$!!!$AAAA"),
            HashError::Base64 { what: "salt", .. }
        ));
        assert!(matches!(kind("$7$101$$AAAA"), HashError::Empty("salt")));
        assert!(matches!(kind("$7$101$AAAA"), HashError::MalformedPbkdf2));
        assert!(matches!(kind("$6$AAAA"), HashError::MalformedSha512));
        assert!(matches!(kind("$6$AAAA$AAAA"), HashError::WrongLength(3)));
    }

    #[test]
    fn the_stored_iteration_count_is_the_one_used() {
        // Same password and salt, two counts: each line verifies with its own count only.
        let salt = [7u8; SALT_LEN];
        let fast = hash_with_salt("pw", &salt, 1000);
        let slow = hash_with_salt("pw", &salt, 2000);
        assert_ne!(fast, slow);
        let pw = file(&format!("a:{fast}\nb:{slow}\n")).unwrap();
        assert!(pw.verify("a", b"pw") && pw.verify("b", b"pw"));
        // A line whose count was tampered with no longer matches.
        let forged = slow.replacen("$2000$", "$1000$", 1);
        let pw = file(&format!("c:{forged}\n")).unwrap();
        assert!(!pw.verify("c", b"pw"));
        let e = error_of("a:$7$10000001$AAAA$AAAA");
        assert!(e.contains("above"), "{e}");
    }

    #[test]
    fn unknown_users_are_checked_against_a_dummy_of_the_usual_cost() {
        let h = hash_password_with("x", 3000);
        let pw = file(&format!("a:{h}\nb:{h}\n{MOSQUITTO_7}\n")).unwrap();
        match &pw.dummy {
            StoredHash::Pbkdf2Sha512 { iterations, .. } => assert_eq!(iterations.get(), 3000),
            StoredHash::SaltedSha512 { .. } => panic!("the dummy is PBKDF2"),
        }
        assert!(!pw.verify("nobody", b"x"));
        assert!(!pw.verify("nobody", b""));
        let empty = file("").unwrap();
        match &empty.dummy {
            StoredHash::Pbkdf2Sha512 { iterations, .. } => {
                assert_eq!(iterations.get(), PBKDF2_ITERATIONS)
            }
            StoredHash::SaltedSha512 { .. } => panic!("the dummy is PBKDF2"),
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_file_others_can_read_is_noticed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("mqpaxos-pw-mode-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("passwd");
        std::fs::write(&path, format!("a:{}\n", hash_password_with("x", 10))).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(readable_by_others(&path));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(!readable_by_others(&path));
        assert!(PasswordFile::load(&path).unwrap().verify("a", b"x"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn debug_output_hides_hashes() {
        let pw = file(MOSQUITTO_7).unwrap();
        let shown = format!("{pw:?}");
        assert!(
            shown.contains("alice") && !shown.contains("C3fZ"),
            "{shown}"
        );
    }
}
