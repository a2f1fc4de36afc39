//! Linearizability checking for the key/value model.
//!
//! Every operation touches one key, and a history is linearizable iff each key's
//! sub-history is (P-compositionality, Horn & Kroening), so keys are checked independently.
//! Each key is searched with the algorithm of Wing & Gong as refined by Lowe and used by
//! Porcupine: call and return entries sorted by time in a doubly linked list, a depth-first
//! search that "lifts" an operation out of the list when it is linearized and puts it back
//! on backtrack, and a memo of (set of linearized operations, model state) pairs already
//! explored, which is what keeps the search from being exponential in practice.
//!
//! Operations whose outcome is unknown (`info`, or never completed) are what makes such
//! searches blow up: each may take effect anywhere after its call, or never. Here they are
//! tried only after every completed operation, and only in canonical positions (see
//! `check_key`); a lookahead rejects states from which the next read cannot see its value
//! (`Need`); and the memo counts a configuration as explored when one that used a subset
//! of its unknown operations was (`Memo`).
//!
//! Model states (`Option<String>`) are represented by a 122-bit polynomial fingerprint plus
//! the length, so appends, comparisons and memo lookups are O(1) however long the values
//! grow. A fingerprint collision could only make the search accept a wrong interleaving or
//! prune a right one; the first is ruled out by replaying every linearization found on
//! real strings before reporting success, the second has probability around 2^-100.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::history::{
    pair_operations, show_value, Event, HistoryError, OpKind, Operation, Outcome,
};

/// Resource limits for [`check_events`] and [`check_operations`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckLimits {
    /// Search steps allowed per key before giving up with [`CheckOutcome::Unknown`]. The
    /// memo grows with the steps taken, so this also bounds memory.
    pub max_steps_per_key: u64,
}

impl Default for CheckLimits {
    fn default() -> Self {
        CheckLimits {
            max_steps_per_key: 50_000_000,
        }
    }
}

/// The verdict on a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    Linearizable,
    /// No linearization exists for `key`. When several keys fail, the smallest of those
    /// refuted with the least search (see [`check_operations`]).
    NotLinearizable {
        key: String,
        /// The longest linearizable prefix found and the operation that could not follow
        /// it, for humans.
        explanation: String,
    },
    /// The search for `key` ran out of budget before reaching a verdict. Only reported
    /// when no key is known to be non-linearizable.
    Unknown {
        key: String,
        reason: String,
    },
}

impl CheckOutcome {
    pub fn is_linearizable(&self) -> bool {
        matches!(self, CheckOutcome::Linearizable)
    }
}

impl fmt::Display for CheckOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckOutcome::Linearizable => f.write_str("linearizable"),
            CheckOutcome::NotLinearizable { key, explanation } => {
                write!(f, "not linearizable (key {key:?}): {explanation}")
            }
            CheckOutcome::Unknown { key, reason } => {
                write!(f, "unknown (key {key:?}): {reason}")
            }
        }
    }
}

/// Pairs the events into operations and checks them.
pub fn check_events(events: &[Event], limits: CheckLimits) -> Result<CheckOutcome, HistoryError> {
    check_operations(&pair_operations(events)?, limits)
}

/// Checks operations for linearizability against a map from keys to optional strings,
/// initially empty.
///
/// Keys are searched in rounds of growing step budgets (the last one being
/// `limits.max_steps_per_key`), and checking stops after the first round that refutes
/// some key. The key reported is the smallest one refuted in that round: deterministic,
/// and cheap even when some other key would take a very long search to decide.
///
/// Errors only for operations [`pair_operations`] would not produce: a put, append or cas
/// without a value, or a return before its call.
pub fn check_operations(
    ops: &[Operation],
    limits: CheckLimits,
) -> Result<CheckOutcome, HistoryError> {
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for (index, op) in ops.iter().enumerate() {
        validate(index, op)?;
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    let keys: Vec<(&str, Vec<&Operation>)> = by_key.into_iter().collect();

    let mut pending: Vec<usize> = (0..keys.len()).collect();
    let mut budget = FIRST_ROUND_STEPS.min(limits.max_steps_per_key);
    loop {
        let verdicts = check_keys(&keys, &pending, budget);
        let mut unresolved = Vec::new();
        let mut first_unknown = None;
        // `pending` is sorted, so the first refuted key is the smallest.
        for (&i, verdict) in pending.iter().zip(verdicts) {
            match verdict {
                Some(KeyVerdict::NotLinearizable(explanation)) => {
                    return Ok(CheckOutcome::NotLinearizable {
                        key: keys[i].0.to_owned(),
                        explanation,
                    });
                }
                Some(KeyVerdict::Unknown(reason)) => {
                    unresolved.push(i);
                    first_unknown.get_or_insert((i, reason));
                }
                Some(KeyVerdict::Linearizable) | None => {}
            }
        }
        let Some((i, reason)) = first_unknown else {
            return Ok(CheckOutcome::Linearizable);
        };
        if budget >= limits.max_steps_per_key {
            return Ok(CheckOutcome::Unknown {
                key: keys[i].0.to_owned(),
                reason,
            });
        }
        pending = unresolved;
        budget = budget
            .saturating_mul(ROUND_GROWTH)
            .min(limits.max_steps_per_key);
    }
}

/// Step budget of the first round: a few milliseconds per key, enough for nearly every
/// key of nearly every history.
const FIRST_ROUND_STEPS: u64 = 100_000;
/// Each round restarts unresolved keys from scratch, so a factor of 10 wastes at most ~11%.
const ROUND_GROWTH: u64 = 10;

fn validate(index: usize, op: &Operation) -> Result<(), HistoryError> {
    if matches!(op.kind, OpKind::Put | OpKind::Append | OpKind::Cas) && op.value.is_none() {
        return Err(HistoryError::InvalidOperation {
            index,
            reason: format!("{} without a value", op.kind),
        });
    }
    if let Some(ret) = op.ret {
        if ret < op.call {
            return Err(HistoryError::InvalidOperation {
                index,
                reason: format!("returns at {ret} before its call at {}", op.call),
            });
        }
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyVerdict {
    Linearizable,
    NotLinearizable(String),
    Unknown(String),
}

/// Checks the keys at indices `which` (sorted) with `budget` steps each, returning one
/// verdict per index; `None` for keys skipped because a smaller one was already refuted
/// (their verdicts cannot change the outcome).
fn check_keys(
    keys: &[(&str, Vec<&Operation>)],
    which: &[usize],
    budget: u64,
) -> Vec<Option<KeyVerdict>> {
    let total_ops: usize = which.iter().map(|&i| keys[i].1.len()).sum();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(which.len());
    let check = |i: usize| check_key(keys[i].0, &keys[i].1, budget);
    // Thread start-up costs more than checking small histories.
    if threads <= 1 || total_ops < 2_000 {
        let mut verdicts = Vec::with_capacity(which.len());
        let mut refuted = false;
        for &i in which {
            if refuted {
                verdicts.push(None);
                continue;
            }
            let verdict = check(i);
            refuted = matches!(verdict, KeyVerdict::NotLinearizable(_));
            verdicts.push(Some(verdict));
        }
        return verdicts;
    }

    let next = AtomicUsize::new(0);
    // Smallest position of a refuted key so far; later keys need no check.
    let first_refuted = AtomicUsize::new(usize::MAX);
    let results: Mutex<Vec<Option<KeyVerdict>>> = Mutex::new(vec![None; which.len()]);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= which.len() {
                    break;
                }
                if n > first_refuted.load(Ordering::Relaxed) {
                    continue;
                }
                let verdict = check(which[n]);
                if matches!(verdict, KeyVerdict::NotLinearizable(_)) {
                    first_refuted.fetch_min(n, Ordering::Relaxed);
                }
                // A poisoned lock only means another worker panicked; `scope` propagates
                // that panic, so the data is still fine to use here.
                let mut results = results.lock().unwrap_or_else(|e| e.into_inner());
                results[n] = Some(verdict);
            });
        }
    });
    results.into_inner().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------
// Model states as fingerprints.

const P: u64 = (1 << 61) - 1;
const BASE1: u64 = 0x1d0c_2ab3_7e51_9f47 % P;
const BASE2: u64 = 0x0a5f_39c6_d2e8_b173 % P;

fn mul_mod(a: u64, b: u64) -> u64 {
    let x = u128::from(a) * u128::from(b);
    let r = (x as u64 & P) + (x >> 61) as u64;
    if r >= P {
        r - P
    } else {
        r
    }
}

fn pow_mod(mut base: u64, mut exp: u64) -> u64 {
    let mut r = 1;
    while exp > 0 {
        if exp & 1 == 1 {
            r = mul_mod(r, base);
        }
        base = mul_mod(base, base);
        exp >>= 1;
    }
    r
}

fn add_mod(a: u64, b: u64) -> u64 {
    let r = a + b;
    if r >= P {
        r - P
    } else {
        r
    }
}

/// `BASE^0 ..= BASE^8` (mod P), for hashing eight bytes per reduction.
const POWERS1: [u64; 9] = powers(BASE1);
const POWERS2: [u64; 9] = powers(BASE2);

const fn powers(base: u64) -> [u64; 9] {
    let mut p = [1u64; 9];
    let mut i = 1;
    while i < 9 {
        let x = p[i - 1] as u128 * base as u128;
        let r = (x as u64 & P) + (x >> 61) as u64;
        p[i] = if r >= P { r - P } else { r };
        i += 1;
    }
    p
}

/// Eight Horner steps `h = h * BASE + (b + 1)` at once: the same value as byte by byte,
/// but the eight products are independent and reduced once, instead of a chain of eight
/// dependent reductions. Values of a MiB made this most of a `large` simulation's check.
fn horner8(h: u64, chunk: &[u8], pow: &[u64; 9]) -> u64 {
    // Each term is below 2^61 * 2^9 = 2^70 and h * BASE^8 below 2^122, so nine of them fit
    // in a u128 with room to spare.
    let mut x = u128::from(h) * u128::from(pow[8]);
    for (i, &b) in chunk.iter().enumerate() {
        x += u128::from(u64::from(b) + 1) * u128::from(pow[7 - i]);
    }
    // x < 2^126: folding the bits above 61 back in (2^61 = 1 mod P) twice leaves it
    // below 2^61 + 2^5, then one conditional subtraction.
    let x = (x & u128::from(P)) + (x >> 61);
    let x = (x & u128::from(P)) + (x >> 61);
    let x = x as u64;
    if x >= P {
        x - P
    } else {
        x
    }
}

/// A model state: `None` or the polynomial hashes of a string under two bases, and its
/// length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Fp {
    h1: u64,
    h2: u64,
    /// `ABSENT_LEN` for a missing key.
    len: u64,
}

const ABSENT_LEN: u64 = u64::MAX;
const ABSENT: Fp = Fp {
    h1: 0,
    h2: 0,
    len: ABSENT_LEN,
};
const EMPTY: Fp = Fp {
    h1: 0,
    h2: 0,
    len: 0,
};

impl Fp {
    fn of(value: Option<&str>) -> Fp {
        let Some(s) = value else { return ABSENT };
        let bytes = s.as_bytes();
        let mut chunks = bytes.chunks_exact(8);
        let (mut h1, mut h2) = (0, 0);
        for chunk in chunks.by_ref() {
            h1 = horner8(h1, chunk, &POWERS1);
            h2 = horner8(h2, chunk, &POWERS2);
        }
        for &b in chunks.remainder() {
            // +1 so that NUL bytes still change the hash.
            h1 = add_mod(mul_mod(h1, BASE1), u64::from(b) + 1);
            h2 = add_mod(mul_mod(h2, BASE2), u64::from(b) + 1);
        }
        Fp {
            h1,
            h2,
            len: s.len() as u64,
        }
    }

    fn mix(self) -> u64 {
        splitmix(self.h1 ^ self.h2.rotate_left(32) ^ self.len.wrapping_mul(0x9e37_79b9))
    }
}

/// What an append concatenates, prepared so that appending is O(1) on fingerprints.
#[derive(Debug, Clone, Copy)]
struct Suffix {
    fp: Fp,
    pow1: u64,
    pow2: u64,
}

impl Suffix {
    fn of(s: &str) -> Suffix {
        // BASE^len by squaring: values run to a MiB, and a multiplication per byte here
        // was a third of the cost of preparing an append.
        let n = s.len() as u64;
        Suffix {
            fp: Fp::of(Some(s)),
            pow1: pow_mod(BASE1, n),
            pow2: pow_mod(BASE2, n),
        }
    }

    fn append_to(&self, state: Fp) -> Fp {
        let base = if state.len == ABSENT_LEN {
            EMPTY
        } else {
            state
        };
        Fp {
            h1: add_mod(mul_mod(base.h1, self.pow1), self.fp.h1),
            h2: add_mod(mul_mod(base.h2, self.pow2), self.fp.h2),
            // Lengths near 2^64 cannot be held in memory, so saturation never aliases ABSENT.
            len: base.len.saturating_add(self.fp.len).min(ABSENT_LEN - 1),
        }
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// An operation's effect on the state of its key.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// A completed get: only legal when the state is the value read.
    Read(Fp),
    /// Put or delete.
    Write(Fp),
    Append(Suffix),
    /// A cas known to have swapped.
    CasSwapped {
        expected: Fp,
        new: Fp,
    },
    /// A cas known not to have swapped.
    CasRefused {
        expected: Fp,
    },
    /// A cas with unknown result: swaps iff the state is as expected.
    Cas {
        expected: Fp,
        new: Fp,
    },
}

impl Step {
    fn apply(self, state: Fp) -> Option<Fp> {
        match self {
            Step::Read(v) => (state == v).then_some(state),
            Step::Write(v) => Some(v),
            Step::Append(suffix) => Some(suffix.append_to(state)),
            Step::CasSwapped { expected, new } => (state == expected).then_some(new),
            Step::CasRefused { expected } => (state != expected).then_some(state),
            Step::Cas { expected, new } => Some(if state == expected { new } else { state }),
        }
    }

    /// Steps that never change the state. If one is legal now it might as well be
    /// linearized now: moving it to the front of any linearization of the remaining
    /// operations keeps that linearization valid, which lets the search skip every
    /// alternative to taking it. (Inside an open run the op must also close it, or the
    /// move could leave the run unjustified.)
    fn is_pure(self) -> bool {
        matches!(self, Step::Read(_) | Step::CasRefused { .. })
    }
}

/// Translates an operation into a step, or `None` if it constrains nothing (a get whose
/// result is unknown).
fn compile(op: &Operation, definite: bool) -> Option<Step> {
    let fp = |v: Option<&String>| Fp::of(v.map(String::as_str));
    Some(match op.kind {
        OpKind::Get => match &op.outcome {
            Outcome::Ok { value, .. } if definite => Step::Read(fp(value.as_ref())),
            _ => return None,
        },
        OpKind::Put => Step::Write(fp(op.value.as_ref())),
        OpKind::Delete => Step::Write(ABSENT),
        OpKind::Append => Step::Append(Suffix::of(op.value.as_deref().unwrap_or(""))),
        OpKind::Cas => {
            let expected = fp(op.expected.as_ref());
            let new = fp(op.value.as_ref());
            match &op.outcome {
                Outcome::Ok {
                    result: Some(true), ..
                } if definite => Step::CasSwapped { expected, new },
                Outcome::Ok {
                    result: Some(false),
                    ..
                } if definite => Step::CasRefused { expected },
                _ => Step::Cas { expected, new },
            }
        }
    })
}

/// Applies an operation to a real value; `false` if it cannot take effect there.
fn apply_exact(op: &Operation, definite: bool, state: &mut Option<String>) -> bool {
    match op.kind {
        OpKind::Get => match &op.outcome {
            Outcome::Ok { value, .. } if definite => *state == *value,
            _ => true,
        },
        OpKind::Put => {
            state.clone_from(&op.value);
            true
        }
        OpKind::Delete => {
            *state = None;
            true
        }
        OpKind::Append => {
            state
                .get_or_insert_with(String::new)
                .push_str(op.value.as_deref().unwrap_or(""));
            true
        }
        OpKind::Cas => {
            let holds = *state == op.expected;
            let result = match &op.outcome {
                Outcome::Ok { result, .. } if definite => *result,
                _ => None,
            };
            if result.is_some_and(|r| r != holds) {
                return false;
            }
            if holds {
                state.clone_from(&op.value);
            }
            true
        }
    }
}

// ---------------------------------------------------------------------------------------
// The set of linearized operations, and the memo.

/// A bit set with an incrementally maintained Zobrist hash and the bounds of its
/// "interesting" window: operations are numbered by call time, so the linearized ones are
/// nearly a prefix, and storing only the words between the first non-full word and the last
/// non-empty one keeps the memo linear rather than quadratic in long histories.
struct LinSet {
    words: Vec<u64>,
    /// First word that is not all ones.
    low: usize,
    /// One past the last non-zero word.
    end: usize,
    hash: u64,
}

impl LinSet {
    fn new(n: usize) -> LinSet {
        LinSet {
            words: vec![0; n.div_ceil(64)],
            low: 0,
            end: 0,
            hash: 0,
        }
    }

    fn zobrist(i: usize) -> u64 {
        splitmix(i as u64 ^ 0x5bd1_e995_0000_0000)
    }

    fn set(&mut self, i: usize) {
        let w = i / 64;
        self.words[w] |= 1 << (i % 64);
        self.hash ^= Self::zobrist(i);
        self.end = self.end.max(w + 1);
        while self.low < self.words.len() && self.words[self.low] == u64::MAX {
            self.low += 1;
        }
    }

    fn clear(&mut self, i: usize) {
        let w = i / 64;
        self.words[w] &= !(1 << (i % 64));
        self.hash ^= Self::zobrist(i);
        self.low = self.low.min(w);
        while self.end > 0 && self.words[self.end - 1] == 0 {
            self.end -= 1;
        }
    }

    /// Together with `low`, identifies the set exactly.
    fn window(&self) -> &[u64] {
        &self.words[self.low..self.end.max(self.low)]
    }
}

/// For keys that are already well mixed (`u64` hashes).
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The set of linearized operations: a bit set over the completed ones and a sorted list
/// of the unknown ones (few at a time, and compared by inclusion, see `Memo`).
struct Linearized {
    done: LinSet,
    unknown: Vec<u32>,
    /// Index of each op among the completed or among the unknown ones, by call time.
    slot: Vec<usize>,
    definite: Vec<bool>,
}

impl Linearized {
    fn new(definite: &[bool]) -> Linearized {
        let (mut done, mut unknown) = (0, 0);
        let slot = definite
            .iter()
            .map(|&d| {
                let counter = if d { &mut done } else { &mut unknown };
                *counter += 1;
                *counter - 1
            })
            .collect();
        Linearized {
            done: LinSet::new(done),
            unknown: Vec::new(),
            slot,
            definite: definite.to_vec(),
        }
    }

    fn add(&mut self, op: usize) {
        if self.definite[op] {
            self.done.set(self.slot[op]);
        } else {
            let slot = self.slot[op] as u32;
            if let Err(at) = self.unknown.binary_search(&slot) {
                self.unknown.insert(at, slot);
            }
        }
    }

    fn remove(&mut self, op: usize) {
        if self.definite[op] {
            self.done.clear(self.slot[op]);
        } else if let Ok(at) = self.unknown.binary_search(&(self.slot[op] as u32)) {
            self.unknown.remove(at);
        }
    }
}

/// 32 bytes: the memo is most of the checker's memory.
/// A fast hasher for `Fp`, whose fields are already near-uniform: SipHash would dominate
/// the cost of interning.
#[derive(Default)]
struct FpHasher(u64);

impl Hasher for FpHasher {
    fn finish(&self) -> u64 {
        splitmix(self.0)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

struct MemoNode {
    /// Interned state and shadow (`NIL`: no open run).
    state: u32,
    shadow: u32,
    low: u32,
    /// The bit-set window and unknown ops, in `Memo::words` and `Memo::unknown`.
    start: u32,
    len: u32,
    unknown_start: u32,
    unknown_len: u32,
    next: u32,
}

const NIL: u32 = u32::MAX;
/// Longest chain walked per lookup. Chains grow long only when many configurations differ
/// just in their unknown ops; past this, the memo forgets, costing time, not correctness.
const MAX_CHAIN_WALK: usize = 64;

/// Configurations already explored (and so known to lead nowhere), chained per hash in an
/// arena: no allocation per lookup, and only the bit-set window stored.
///
/// Having linearized fewer unknown ops is never worse: an unknown op left out can still be
/// linearized later or never. So a configuration is also covered by an explored one that
/// differs only in having linearized a subset of its unknown ops. The hash ignores unknown
/// ops so that such configurations meet in the same chain.
#[derive(Default)]
struct Memo {
    heads: HashMap<u64, u32, BuildHasherDefault<IdentityHasher>>,
    nodes: Vec<MemoNode>,
    words: Vec<u64>,
    unknown: Vec<u32>,
    states: HashMap<Fp, u32, BuildHasherDefault<FpHasher>>,
    /// Set once an arena outgrows 32-bit indices; the memo then stops growing.
    full: bool,
}

impl Memo {
    /// The id of `state`, or `None` once ids run out.
    fn intern(&mut self, state: Fp) -> Option<u32> {
        let next = u32::try_from(self.states.len())
            .ok()
            .filter(|&id| id != NIL)?;
        Some(*self.states.entry(state).or_insert(next))
    }

    /// Records the configuration; `false` if an explored one covers it.
    fn insert(&mut self, set: &Linearized, state: Fp, shadow: Option<Fp>) -> bool {
        if self.full {
            return true;
        }
        let done = &set.done;
        let hash = done.hash ^ state.mix() ^ shadow.map_or(0, |s| s.mix().rotate_left(17));
        let (Some(state), Some(shadow)) = (
            self.intern(state),
            shadow.map_or(Some(NIL), |s| self.intern(s)),
        ) else {
            self.full = true;
            return true;
        };
        let window = done.window();
        let head = self.heads.get(&hash).copied().unwrap_or(NIL);
        let mut at = head;
        for _ in 0..MAX_CHAIN_WALK {
            let Some(node) = self.nodes.get(at as usize) else {
                break;
            };
            let words = node.start as usize..(node.start + node.len) as usize;
            let unknown =
                node.unknown_start as usize..(node.unknown_start + node.unknown_len) as usize;
            if node.state == state
                && node.shadow == shadow
                && node.low as usize == done.low
                && self.words[words] == *window
                && is_subset(&self.unknown[unknown], &set.unknown)
            {
                return false;
            }
            at = node.next;
        }
        // 32-bit indices suffice for far more configurations than memory holds; should
        // they not, forgetting costs time, never correctness.
        let fits = |n: usize| u32::try_from(n).ok().filter(|&n| n != NIL);
        let node = (|| {
            Some(MemoNode {
                state,
                shadow,
                low: fits(done.low)?,
                start: fits(self.words.len())?,
                len: fits(window.len())
                    .filter(|_| fits(self.words.len() + window.len()).is_some())?,
                unknown_start: fits(self.unknown.len())?,
                unknown_len: fits(set.unknown.len())
                    .filter(|_| fits(self.unknown.len() + set.unknown.len()).is_some())?,
                next: head,
            })
        })();
        let (Some(node), Some(index)) = (node, fits(self.nodes.len())) else {
            self.full = true;
            return true;
        };
        self.nodes.push(node);
        self.words.extend_from_slice(window);
        self.unknown.extend_from_slice(&set.unknown);
        self.heads.insert(hash, index);
        true
    }
}

/// Whether sorted `a` is a subset of sorted `b`.
fn is_subset(a: &[u32], b: &[u32]) -> bool {
    if a.len() > b.len() {
        return false;
    }
    let mut rest = b.iter();
    a.iter().all(|x| rest.any(|y| y == x))
}

// ---------------------------------------------------------------------------------------
// The search.

struct Frame {
    op: usize,
    prev_state: Fp,
    prev_shadow: Option<Fp>,
    /// Whether undoing this op makes its parent configuration dead (see `check_key`).
    shortcut: bool,
    /// For an unknown op: the `limit` of the scan that chose it, to resume that scan.
    limit: usize,
}

/// Where the search looks for the next operation to linearize. Completed operations are
/// tried before unknown ones: unknown ones are only needed to explain observations, and
/// trying them first makes every dead end fan out over all their combinations.
#[derive(Clone, Copy)]
enum Cursor {
    /// At an entry of the list of completed operations' calls and returns.
    Done(usize),
    /// At an entry of the list of unknown operations' calls; only those before entry
    /// `limit` (the first pending return) are candidates.
    Unknown(usize, usize),
}

// Sentinels of the two lists; entries follow, numbered in time order.
const DONE_HEAD: usize = 0;
const DONE_TAIL: usize = 1;
const UNKNOWN_HEAD: usize = 2;
const UNKNOWN_TAIL: usize = 3;
const FIRST_ENTRY: usize = 4;

/// The call and return entries of the operations not linearized yet, in time order, as two
/// doubly linked lists (completed operations, unknown operations) that operations are
/// lifted out of and put back into.
struct Lists {
    next: Vec<usize>,
    prev: Vec<usize>,
    entry_op: Vec<usize>,
    entry_is_return: Vec<bool>,
    call_entry: Vec<usize>,
    return_entry: Vec<Option<usize>>,
}

impl Lists {
    fn new(live: &[(&Operation, bool, Step)]) -> Lists {
        let n = live.len();
        // At equal times calls come first, so touching intervals count as concurrent.
        let mut sorted: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
        for (i, (op, definite, _)) in live.iter().enumerate() {
            sorted.push((op.call, false, i));
            if let (true, Some(ret)) = (definite, op.ret) {
                sorted.push((ret, true, i));
            }
        }
        sorted.sort_by_key(|&(t, is_return, _)| (t, is_return));
        let size = FIRST_ENTRY + sorted.len();
        let mut lists = Lists {
            next: vec![0; size],
            prev: vec![0; size],
            entry_op: vec![usize::MAX; size],
            entry_is_return: vec![false; size],
            call_entry: vec![0; n],
            return_entry: vec![None; n],
        };
        let (mut done_last, mut unknown_last) = (DONE_HEAD, UNKNOWN_HEAD);
        for (i, &(_, is_return, op)) in sorted.iter().enumerate() {
            let e = FIRST_ENTRY + i;
            lists.entry_op[e] = op;
            lists.entry_is_return[e] = is_return;
            if is_return {
                lists.return_entry[op] = Some(e);
            } else {
                lists.call_entry[op] = e;
            }
            let last = if live[op].1 {
                &mut done_last
            } else {
                &mut unknown_last
            };
            lists.next[*last] = e;
            lists.prev[e] = *last;
            *last = e;
        }
        lists.next[done_last] = DONE_TAIL;
        lists.prev[DONE_TAIL] = done_last;
        lists.next[unknown_last] = UNKNOWN_TAIL;
        lists.prev[UNKNOWN_TAIL] = unknown_last;
        lists
    }

    fn lift(&mut self, op: usize) {
        for e in std::iter::once(self.call_entry[op]).chain(self.return_entry[op]) {
            self.next[self.prev[e]] = self.next[e];
            self.prev[self.next[e]] = self.prev[e];
        }
    }

    /// Exactly undoes `lift`: links are restored in reverse order of removal.
    fn unlift(&mut self, op: usize) {
        for e in self.return_entry[op]
            .into_iter()
            .chain(std::iter::once(self.call_entry[op]))
        {
            self.next[self.prev[e]] = e;
            self.prev[self.next[e]] = e;
        }
    }

    /// The operations that could still be linearized before the return entry `limit`:
    /// pending calls before it in either list.
    fn candidates_before(&self, limit: usize) -> impl Iterator<Item = usize> + '_ {
        let walk = move |head: usize| {
            std::iter::successors(Some(self.next[head]), move |&e| Some(self.next[e]))
                .take_while(move |&e| e < limit && e >= FIRST_ENTRY)
        };
        walk(DONE_HEAD)
            .chain(walk(UNKNOWN_HEAD))
            .filter(|&e| !self.entry_is_return[e])
            .map(|e| self.entry_op[e])
    }
}

/// Cap on the prefix hashes kept for `Reach` (16 bytes each); past it the pruning is
/// skipped, which costs time, never correctness.
const MAX_PREFIX_HASHES: usize = 1 << 22;
/// How far down the list of completed operations to look for one that needs a specific
/// state; bounded so that histories with few reads do not make every step linear.
const NEED_SCAN: usize = 256;
/// Beyond this many possible justifiers, unjustified runs are not pruned.
const MAX_OBSERVERS: usize = 64;
const NO_OP: usize = usize::MAX;

/// What the pending operations that need a specific state (reads, and cas ops that
/// swapped or refused) require of the states the search moves to. Computed once per
/// configuration and used to reject moves to states that cannot lead anywhere.
///
/// Let R be the first read or swapped cas to return. Only the candidates called before R
/// returns can change the state before R is linearized. Each put, delete or cas among them
/// can reset the state to a known value; otherwise only appends change it, and they only
/// extend it. So the value R needs must be one of those bases or extend one.
///
/// In an unjustified run (see `check_key`) only appends and unknown-result cas ops may
/// follow until some op justifies the run: a read or swapped cas seeing the current state
/// (R or a candidate before it), or a refused cas that would have swapped on the shadow
/// state. The same reasoning then applies to each of these.
///
/// Without this, unknown appends make the search try every combination of them before
/// each observation that none of them explains.
#[derive(Default)]
struct Need {
    valid: bool,
    /// R; `NO_OP` when there is nothing to enforce.
    op: usize,
    /// Whether an append is among the candidates.
    appends: bool,
    /// Whether a reset among the candidates could lead to what R needs: then any state can.
    regardless: bool,
    /// Whether an unjustified run can be justified whatever the state and shadow are.
    run_regardless: bool,
    /// R and the candidate reads and swapped cas ops, then the candidate refused cas ops
    /// (from `refusers_from` on), each with whether appends could build its value from an
    /// absent key.
    observers: Vec<(usize, bool)>,
    refusers_from: usize,
}

/// The value an op needs, and its prefix hashes (`None` past `MAX_PREFIX_HASHES`).
type Target = (Fp, Option<Vec<(u64, u64)>>);

struct Reach {
    /// Per op, computed on first use.
    targets: Vec<Option<Target>>,
    cached: usize,
    /// Whether the key has appends at all: prefix hashes (one pair per byte of a value)
    /// are only ever consulted when it does.
    appends: bool,
    bases: Vec<Fp>,
    cas_bases: Vec<Fp>,
    suffixes: Vec<Fp>,
}

impl Reach {
    fn new(live: &[(&Operation, bool, Step)]) -> Reach {
        Reach {
            targets: vec![None; live.len()],
            cached: 0,
            appends: live.iter().any(|(_, _, s)| matches!(s, Step::Append(_))),
            bases: Vec::new(),
            cas_bases: Vec::new(),
            suffixes: Vec::new(),
        }
    }

    /// Prepares the value `op` needs (or, for a refused cas, must not see), if any.
    fn prepare(&mut self, op: usize, live: &[(&Operation, bool, Step)]) -> Option<Fp> {
        if let Some((target, _)) = &self.targets[op] {
            return Some(*target);
        }
        let (operation, _, step) = live[op];
        let (target, text) = match step {
            Step::Read(v) => match &operation.outcome {
                Outcome::Ok { value, .. } => (v, value.as_deref()),
                Outcome::Unknown => return None,
            },
            Step::CasSwapped { expected, .. } | Step::CasRefused { expected } => {
                (expected, operation.expected.as_deref())
            }
            _ => return None,
        };
        let prefixes = text.filter(|_| self.appends).and_then(|text| {
            if self.cached + text.len() + 1 > MAX_PREFIX_HASHES {
                return None;
            }
            self.cached += text.len() + 1;
            let mut hashes = Vec::with_capacity(text.len() + 1);
            let (mut h1, mut h2) = (0, 0);
            hashes.push((h1, h2));
            for &b in text.as_bytes() {
                h1 = add_mod(mul_mod(h1, BASE1), u64::from(b) + 1);
                h2 = add_mod(mul_mod(h2, BASE2), u64::from(b) + 1);
                hashes.push((h1, h2));
            }
            Some(hashes)
        });
        self.targets[op] = Some((target, prefixes));
        Some(target)
    }

    /// Whether appends could turn `state` into what `op` (prepared) needs. `from_absent`
    /// answers for an absent state.
    fn reaches(&self, state: Fp, op: usize, appends: bool, from_absent: bool) -> bool {
        let Some((target, prefixes)) = &self.targets[op] else {
            return true;
        };
        if state == *target {
            return true;
        }
        if !appends || target.len == ABSENT_LEN {
            return false;
        }
        if state.len == ABSENT_LEN {
            return from_absent;
        }
        match prefixes {
            Some(prefixes) => is_prefix(prefixes, state.len, state.h1, state.h2),
            None => true,
        }
    }

    /// Computes the need of the configuration whose pending ops are in `lists`.
    fn compute(&mut self, need: &mut Need, lists: &Lists, live: &[(&Operation, bool, Step)]) {
        need.valid = true;
        need.op = NO_OP;
        need.observers.clear();
        let blocked = std::iter::successors(Some(lists.next[DONE_HEAD]), |&e| Some(lists.next[e]))
            .take(NEED_SCAN)
            .take_while(|&e| e != DONE_TAIL)
            .find(|&e| {
                lists.entry_is_return[e]
                    && matches!(
                        live[lists.entry_op[e]].2,
                        Step::Read(_) | Step::CasSwapped { .. }
                    )
                    && self.prepare(lists.entry_op[e], live).is_some()
            });
        let Some(ret) = blocked else { return };
        let blocked = lists.entry_op[ret];
        self.bases.clear();
        self.cas_bases.clear();
        self.suffixes.clear();
        need.observers.push((blocked, false));
        let mut refusers = Vec::new();
        for candidate in lists.candidates_before(ret) {
            match live[candidate].2 {
                _ if candidate == blocked => {}
                Step::Write(v) => self.bases.push(v),
                Step::Cas { new, .. } => self.cas_bases.push(new),
                Step::CasSwapped { new, .. } => {
                    self.bases.push(new);
                    need.observers.push((candidate, false));
                }
                Step::Read(_) => need.observers.push((candidate, false)),
                Step::CasRefused { .. } => refusers.push((candidate, false)),
                Step::Append(suffix) => self.suffixes.push(suffix.fp),
            }
        }
        need.op = blocked;
        need.appends = !self.suffixes.is_empty();
        need.refusers_from = need.observers.len();
        need.observers.extend(refusers);
        need.run_regardless = need.observers.len() > MAX_OBSERVERS;
        if need.run_regardless {
            need.observers.truncate(1);
            need.refusers_from = 1;
        }
        for i in 0..need.observers.len() {
            let op = need.observers[i].0;
            if self.prepare(op, live).is_none() {
                continue;
            }
            // Built from an absent key, the value starts with the first append's suffix.
            need.observers[i].1 = self
                .suffixes
                .iter()
                .any(|&x| self.reaches(x, op, true, false));
        }
        let from_absent = need.observers[0].1;
        need.regardless = self
            .bases
            .iter()
            .chain(&self.cas_bases)
            .any(|&b| self.reaches(b, blocked, need.appends, from_absent));
        need.run_regardless = need.run_regardless
            || need.observers.iter().any(|&(op, from_absent)| {
                self.cas_bases
                    .iter()
                    .any(|&b| self.reaches(b, op, need.appends, from_absent))
            });
    }

    /// Whether moving to `state` (by linearizing `tried`, or `NO_OP` for staying), in an
    /// unjustified run with `shadow` if any, leaves the need satisfiable.
    fn allows(&self, need: &Need, tried: usize, state: Fp, shadow: Option<Fp>) -> bool {
        if need.op == NO_OP || tried == need.op {
            return true;
        }
        let Some(shadow) = shadow else {
            return need.regardless
                || self.reaches(state, need.op, need.appends, need.observers[0].1);
        };
        let (seeing, refusing) = need.observers.split_at(need.refusers_from);
        need.run_regardless
            || seeing
                .iter()
                .any(|&(op, from_absent)| self.reaches(state, op, need.appends, from_absent))
            || refusing
                .iter()
                .any(|&(op, from_absent)| self.reaches(shadow, op, need.appends, from_absent))
    }
}

/// Whether the string with hashes (h1, h2) and length `len` is a prefix of the string
/// whose prefix hashes are `prefixes`.
fn is_prefix(prefixes: &[(u64, u64)], len: u64, h1: u64, h2: u64) -> bool {
    usize::try_from(len)
        .ok()
        .and_then(|len| prefixes.get(len))
        .is_some_and(|&p| p == (h1, h2))
}

/// Checks the operations on one key, given in any order, taking at most `budget` steps.
///
/// Besides the memo and `Reach`, some rules cut the search without losing
/// linearizations, because any linearization can be rewritten into one that obeys them:
/// - a pure op that can go next goes next (see `Step::is_pure`);
/// - unknown ops go as late as possible: one is never directly followed by a pure op that
///   would be legal without it (swap them);
/// - of unknown ops with identical effects, the earliest called goes first (see `twins`);
/// - unknown ops must be justified. From the first unknown op linearized, a *run* is open,
///   and the search tracks its *shadow*: the state the key would have without the run's
///   unknown ops. A completed op that would be illegal on the shadow justifies the run and
///   closes it. An op that makes the state equal the shadow while the run is open makes
///   it pointless (every put or delete does): all its unknown ops could be dropped, so
///   that move is not made. The shadow is therefore part of a configuration, and of its
///   memo key.
fn check_key(key: &str, ops: &[&Operation], budget: u64) -> KeyVerdict {
    let live = live_ops(ops);
    let n = live.len();
    let Some(mut search) = Search::new(&live) else {
        return KeyVerdict::Linearizable;
    };
    let mut steps_taken: u64 = 0;

    let mut cursor = Cursor::Done(search.lists.next[DONE_HEAD]);
    'search: loop {
        steps_taken += 1;
        if steps_taken > budget {
            return KeyVerdict::Unknown(format!(
                "gave up after {budget} search steps ({n} operations, {} configurations \
                 memoized, deepest linearizable prefix {} operations); raise \
                 max_steps_per_key",
                search.memo.nodes.len(),
                search.best.len()
            ));
        }

        let need = &mut search.needs[search.stack.len()];
        // The candidate to try, or `None` when this configuration leads nowhere.
        let candidate = if !need.valid {
            search.reach.compute(need, &search.lists, &live);
            if search
                .reach
                .allows(need, NO_OP, search.state, search.shadow)
            {
                continue;
            }
            None
        } else {
            match cursor {
                Cursor::Done(e) if e == DONE_TAIL || search.lists.entry_is_return[e] => {
                    // No completed op can go next; unknown ops called before this return
                    // can.
                    let limit = if e == DONE_TAIL { usize::MAX } else { e };
                    cursor = Cursor::Unknown(search.lists.next[UNKNOWN_HEAD], limit);
                    continue;
                }
                Cursor::Done(e) => Some((e, None)),
                Cursor::Unknown(e, limit) if e != UNKNOWN_TAIL && e < limit => {
                    Some((e, Some(limit)))
                }
                // Every candidate has been tried.
                Cursor::Unknown(..) => None,
            }
        };

        if let Some((entry, limit)) = candidate {
            match search.try_candidate(entry, limit) {
                Move::Finished => break 'search,
                Move::Pushed => {
                    cursor = Cursor::Done(search.lists.next[DONE_HEAD]);
                    continue;
                }
                Move::Refused => {
                    cursor = match limit {
                        None => Cursor::Done(search.lists.next[entry]),
                        Some(limit) => Cursor::Unknown(search.lists.next[entry], limit),
                    };
                    continue;
                }
                Move::Dead => {}
            }
        }

        match search.backtrack() {
            Some(next) => cursor = next,
            None => return KeyVerdict::NotLinearizable(explain(key, &live, &search.best)),
        }
    }

    verify_exact(&live, &search.stack)
}

/// The operations on a key that can take effect, compiled, with whether each completed;
/// in call order. Operations that may never have happened have their return at infinity:
/// they never force anything and are only linearized when that helps explain an
/// observation.
fn live_ops<'o>(ops: &[&'o Operation]) -> Vec<(&'o Operation, bool, Step)> {
    let mut live: Vec<(&Operation, bool, Step)> = ops
        .iter()
        .filter_map(|op| {
            let definite = op.ret.is_some() && matches!(op.outcome, Outcome::Ok { .. });
            compile(op, definite).map(|step| (*op, definite, step))
        })
        .collect();
    // Numbering by call time keeps the linearized set close to a prefix; the stable sort
    // keeps ties in history order so verdicts and explanations are deterministic.
    live.sort_by_key(|(op, _, _)| op.call);
    live
}

/// Fingerprints found the order in `stack`; checks that it also holds for the real values.
fn verify_exact(live: &[(&Operation, bool, Step)], stack: &[Frame]) -> KeyVerdict {
    let mut value = None;
    for frame in stack {
        let (op, d, _) = live[frame.op];
        if !apply_exact(op, d, &mut value) {
            return KeyVerdict::Unknown(format!(
                "state fingerprint collision: the linearization found fails on real values \
                 at {op}"
            ));
        }
    }
    KeyVerdict::Linearizable
}

/// What trying a candidate op did (see `Search::try_candidate`).
enum Move {
    /// Linearized, and it was the last completed op: the key is linearizable.
    Finished,
    /// Linearized; the search goes on from the new configuration.
    Pushed,
    /// Not taken; the next candidate is tried.
    Refused,
    /// Not taken, and the configuration is a dead end: backtrack.
    Dead,
}

/// The state of `check_key`'s depth-first search: the current configuration (stack of
/// linearized ops, state, shadow) and what prunes it and reports on it.
struct Search {
    definite: Vec<bool>,
    steps: Vec<Step>,
    class: Vec<usize>,
    rank: Vec<usize>,
    used: Vec<usize>,
    /// Completed ops not linearized yet.
    remaining: usize,
    lists: Lists,
    reach: Reach,
    /// The need of the configuration at each stack depth, computed on first use.
    needs: Vec<Need>,
    set: Linearized,
    memo: Memo,
    stack: Vec<Frame>,
    state: Fp,
    /// While an unjustified run is open, the state the key would have without its unknown
    /// ops.
    shadow: Option<Fp>,
    /// The deepest stack seen; `best_valid` is how much of `best` still matches `stack`,
    /// so each op is copied once per push instead of once per new record.
    best: Vec<usize>,
    best_valid: usize,
}

impl Search {
    /// The search's start, or `None` when no op completed (nothing to linearize).
    fn new(live: &[(&Operation, bool, Step)]) -> Option<Search> {
        let definite: Vec<bool> = live.iter().map(|&(_, d, _)| d).collect();
        let steps: Vec<Step> = live.iter().map(|&(_, _, s)| s).collect();
        let remaining = definite.iter().filter(|&&d| d).count();
        if remaining == 0 {
            return None;
        }
        let (class, rank, used) = twins(&definite, &steps);
        let set = Linearized::new(&definite);
        Some(Search {
            definite,
            steps,
            class,
            rank,
            used,
            remaining,
            lists: Lists::new(live),
            reach: Reach::new(live),
            needs: vec![Need::default()],
            set,
            memo: Memo::default(),
            stack: Vec::new(),
            state: ABSENT,
            shadow: None,
            best: Vec::new(),
            best_valid: 0,
        })
    }

    /// Tries to linearize the op at list entry `entry` next (`limit`: that of the scan of
    /// unknown ops, if it is one), pushing it if the pruning rules allow it and the new
    /// configuration is not memoized.
    fn try_candidate(&mut self, entry: usize, limit: Option<usize>) -> Move {
        let need = &self.needs[self.stack.len()];
        let op = self.lists.entry_op[entry];
        let step = self.steps[op];
        let definite = &self.definite;
        let state = self.state;
        let shadow = self.shadow;
        let Some(new_state) = step.apply(state) else {
            return Move::Refused;
        };
        // `pointless`: the op leaves the state as it would be without the open
        // run's unknown ops, which could then all be dropped.
        let (new_shadow, pointless) = match (shadow, definite[op]) {
            // An unknown op opens a run...
            (None, false) => (Some(state), new_state == state),
            // ... or joins the open one.
            (Some(shadow), false) => (Some(shadow), step.apply(shadow) == Some(new_state)),
            (None, true) => (None, false),
            // An op that would be illegal without the run's unknown ops
            // justifies the run, closing it.
            (Some(shadow), true) => {
                let new_shadow = step.apply(shadow);
                (new_shadow, new_shadow == Some(new_state))
            }
        };
        // See `Step::is_pure`; inside an unjustified run the op must also justify
        // it, or moving it to the front could make the run pointless.
        let shortcut = step.is_pure() && new_shadow.is_none();
        // A pure op legal without the unknown op just before it could go first:
        // unknown ops go as late as possible.
        let postponed = step.is_pure()
            && self
                .stack
                .last()
                .is_some_and(|top| !definite[top.op] && step.apply(top.prev_state).is_some());
        if pointless
            || postponed
            || !(definite[op] || self.rank[op] == self.used[self.class[op]])
            || !self.reach.allows(need, op, new_state, new_shadow)
        {
            return Move::Refused;
        }
        self.set.add(op);
        if !self.memo.insert(&self.set, new_state, new_shadow) {
            self.set.remove(op);
            // Taking this op leads to an explored dead end, so everything from here
            // does.
            return if shortcut { Move::Dead } else { Move::Refused };
        }
        self.stack.push(Frame {
            op,
            prev_state: state,
            prev_shadow: shadow,
            shortcut,
            limit: limit.unwrap_or(0),
        });
        self.state = new_state;
        self.shadow = new_shadow;
        self.lists.lift(op);
        if !self.definite[op] {
            self.used[self.class[op]] += 1;
        }
        if self.needs.len() <= self.stack.len() {
            self.needs.push(Need::default());
        }
        let depth = self.stack.len();
        self.needs[depth].valid = false;
        if self.definite[op] {
            self.remaining -= 1;
            if self.remaining == 0 {
                return Move::Finished;
            }
        }
        if self.stack.len() > self.best.len() {
            self.best.truncate(self.best_valid);
            self.best
                .extend(self.stack[self.best_valid..].iter().map(|f| f.op));
            self.best_valid = self.best.len();
        }
        Move::Pushed
    }

    /// Undoes the last choice and gives where to resume the scan for the next candidate
    /// after it, or `None` when there is no choice left to undo. Undoing a shortcut op
    /// makes its parent configuration dead too, so that goes on.
    fn backtrack(&mut self) -> Option<Cursor> {
        loop {
            let frame = self.stack.pop()?;
            self.best_valid = self.best_valid.min(self.stack.len());
            self.state = frame.prev_state;
            self.shadow = frame.prev_shadow;
            self.set.remove(frame.op);
            self.lists.unlift(frame.op);
            if self.definite[frame.op] {
                self.remaining += 1;
            } else {
                self.used[self.class[frame.op]] -= 1;
            }
            if frame.shortcut {
                continue;
            }
            let after = self.lists.next[self.lists.call_entry[frame.op]];
            return Some(if self.definite[frame.op] {
                Cursor::Done(after)
            } else {
                Cursor::Unknown(after, frame.limit)
            });
        }
    }
}

/// Groups unknown ops with identical effects (deletes, puts of one value, ...). Only the
/// earliest-called unused member of a group is ever linearized: any linearization using a
/// later one can use the earlier one instead, since it was called no later. This stops the
/// search from telling apart orders that differ only by which twin was used.
///
/// Returns each op's group and rank in it (for definite ops, 0 and 0), and a zeroed
/// count of used members per group.
fn twins(definite: &[bool], steps: &[Step]) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
    let mut groups: HashMap<(u8, Fp, Fp), usize> = HashMap::new();
    let mut sizes: Vec<usize> = vec![0];
    let mut class = vec![0; steps.len()];
    let mut rank = vec![0; steps.len()];
    for (op, step) in steps.iter().enumerate() {
        if definite[op] {
            continue;
        }
        let key = match *step {
            Step::Write(v) => (0, v, ABSENT),
            Step::Append(suffix) => (1, suffix.fp, ABSENT),
            Step::Cas { expected, new } => (2, expected, new),
            // Unknown ops compile to the steps above only.
            Step::Read(v) => (3, v, ABSENT),
            Step::CasSwapped { expected, new } => (4, expected, new),
            Step::CasRefused { expected } => (5, expected, ABSENT),
        };
        let next = sizes.len();
        let group = *groups.entry(key).or_insert(next);
        if group == next {
            sizes.push(0);
        }
        class[op] = group;
        rank[op] = sizes[group];
        sizes[group] += 1;
    }
    let used = vec![0; sizes.len()];
    (class, rank, used)
}

fn explain(key: &str, live: &[(&Operation, bool, Step)], best: &[usize]) -> String {
    const SHOWN: usize = 5;
    let total = live.iter().filter(|(_, d, _)| *d).count();
    let mut lists = Lists::new(live);
    let mut value = None;
    for &i in best {
        lists.lift(i);
        let (op, d, _) = live[i];
        apply_exact(op, d, &mut value);
    }
    let done = best.iter().filter(|&&i| live[i].1).count();
    let mut text = format!(
        "key {key:?}: the longest linearizable prefix found places {done} of {total} completed \
         operations"
    );
    if best.len() > done {
        text.push_str(&format!(" (and {} of unknown outcome)", best.len() - done));
    }
    if !best.is_empty() {
        let from = best.len().saturating_sub(SHOWN);
        text.push_str(if from > 0 { ", ending with: " } else { ": " });
        let shown: Vec<String> = best[from..]
            .iter()
            .map(|&i| live[i].0.to_string())
            .collect();
        text.push_str(&shown.join("; "));
    }
    text.push_str(&format!(
        ". The value is then {}.",
        show_value(value.as_deref())
    ));
    // What the search could not get past from there: the first pending op to return, and
    // the first that needs a specific value (often the real culprit, a read that no order
    // of the remaining writes explains).
    let first_return = std::iter::successors(Some(lists.next[DONE_HEAD]), |&e| Some(lists.next[e]))
        .take_while(|&e| e != DONE_TAIL)
        .find(|&e| lists.entry_is_return[e])
        .map(|e| lists.entry_op[e]);
    let mut need = Need::default();
    Reach::new(live).compute(&mut need, &lists, live);
    if let Some(blocked) = first_return {
        text.push_str(&format!(" Stuck at: {}", live[blocked].0));
        if need.op != NO_OP && need.op != blocked {
            text.push_str(&format!(", before {}", live[need.op].0));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn powers_by_squaring_match_repeated_multiplication() {
        let (mut p1, mut p2) = (1, 1);
        for n in 0..2000u64 {
            assert_eq!(pow_mod(BASE1, n), p1, "BASE1^{n}");
            assert_eq!(pow_mod(BASE2, n), p2, "BASE2^{n}");
            p1 = mul_mod(p1, BASE1);
            p2 = mul_mod(p2, BASE2);
        }
    }

    /// The eight-at-a-time fingerprint is the byte-by-byte polynomial hash, for every
    /// length around the chunk size and for bytes at both ends of the range (0xff bytes
    /// make the largest terms).
    #[test]
    fn fingerprints_match_the_byte_by_byte_hash() {
        let slow = |s: &str| {
            let (mut h1, mut h2) = (0, 0);
            for &b in s.as_bytes() {
                h1 = add_mod(mul_mod(h1, BASE1), u64::from(b) + 1);
                h2 = add_mod(mul_mod(h2, BASE2), u64::from(b) + 1);
            }
            (h1, h2)
        };
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for len in 0..200usize {
            for kind in 0..3 {
                let text: String = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        match kind {
                            0 => char::from(b' ' + (x % 95) as u8),
                            1 => '\u{10ffff}',
                            _ => '\0',
                        }
                    })
                    .collect();
                let fp = Fp::of(Some(&text));
                assert_eq!((fp.h1, fp.h2), slow(&text), "length {len}, kind {kind}");
                assert_eq!(fp.len, text.len() as u64);
            }
        }
    }
}
