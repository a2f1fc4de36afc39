//! Mosquitto-format password files: reading them, checking a password, writing a hash line.
//!
//! One file must serve both the embedded broker and Mosquitto, so the format is exactly what
//! `mosquitto_passwd` writes: one `user:hash` a line, the hash being
//! `$7$<iterations>$<salt, base64>$<PBKDF2-HMAC-SHA512, base64>` (Mosquitto 2.0's default,
//! 101 iterations, 12-byte salt, 64-byte hash) or the older `$6$<salt>$<SHA-512(password ‖ salt)>`
//! that Mosquitto 1.x wrote and 2.0 still reads. Lines starting with `#` and blank lines are
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

use crate::BrokerError;

/// Iterations `hash_password` uses: what `mosquitto_passwd` 2.0 writes by default, so files
/// written by either tool look alike.
pub const PBKDF2_ITERATIONS: u32 = 101;
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
#[derive(Clone, Default)]
pub struct PasswordFile {
    users: HashMap<String, StoredHash>,
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
    /// Reads and parses a password file.
    pub fn load(path: &Path) -> Result<Self, BrokerError> {
        let text = std::fs::read_to_string(path).map_err(|source| BrokerError::ReadFile {
            kind: "password",
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses the text of a password file; `path` only names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, BrokerError> {
        let mut users = HashMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let err = |message: String| BrokerError::PasswordFile {
                path: path.to_path_buf(),
                line,
                message,
            };
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
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
            if users.insert(user.to_string(), stored).is_some() {
                return Err(err(format!("user {user:?} appears twice")));
            }
        }
        Ok(PasswordFile { users })
    }

    /// Whether `user` is in the file and `password` is its password.
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        self.users
            .get(user)
            .is_some_and(|stored| stored.verify(password))
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

fn decode(what: &str, text: &str) -> Result<Vec<u8>, String> {
    let bytes = B64
        .decode(text)
        .map_err(|e| format!("{what} is not valid base64: {e}"))?;
    if bytes.is_empty() {
        return Err(format!("{what} is empty"));
    }
    Ok(bytes)
}

fn parse_hash(text: &str) -> Result<StoredHash, String> {
    let unsupported = || {
        format!(
            "unsupported password hash {:?}: expected `$7$…` (PBKDF2-SHA512) or `$6$…` \
             (salted SHA-512) as written by mosquitto_passwd; a plain-text password must \
             be hashed first",
            text.chars().take(4).collect::<String>()
        )
    };
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
                .ok_or_else(|| format!("bad iteration count {iterations:?} in `$7$` hash"))?;
            Ok(StoredHash::Pbkdf2Sha512 {
                iterations,
                salt: decode("salt", salt)?,
                hash: decode("hash", hash)?,
            })
        }
        ["6", salt, hash] => {
            let hash = decode("hash", hash)?;
            if hash.len() != HASH_LEN {
                return Err(format!(
                    "`$6$` hash is {} bytes, SHA-512 gives {HASH_LEN}",
                    hash.len()
                ));
            }
            Ok(StoredHash::SaltedSha512 {
                salt: decode("salt", salt)?,
                hash,
            })
        }
        ["7", ..] => Err("a `$7$` hash is `$7$<iterations>$<salt>$<hash>`".to_string()),
        ["6", ..] => Err("a `$6$` hash is `$6$<salt>$<hash>`".to_string()),
        _ => Err(unsupported()),
    }
}

/// Hashes `password` the way `mosquitto_passwd` 2.0 does, giving the part after `user:` of a
/// password-file line: `$7$101$<salt>$<hash>` (PBKDF2-HMAC-SHA512, fresh 12-byte salt).
pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; SALT_LEN];
    // The system RNG failing means no secure randomness is left on this machine at all;
    // hashing with a predictable salt instead would be silently weak.
    ring::rand::SystemRandom::new()
        .fill(&mut salt)
        .expect("the operating system's random number generator failed");
    hash_with_salt(password, &salt, PBKDF2_ITERATIONS)
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
        assert!(a.starts_with("$7$101$"));
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
    fn debug_output_hides_hashes() {
        let pw = file(MOSQUITTO_7).unwrap();
        let shown = format!("{pw:?}");
        assert!(
            shown.contains("alice") && !shown.contains("C3fZ"),
            "{shown}"
        );
    }
}
