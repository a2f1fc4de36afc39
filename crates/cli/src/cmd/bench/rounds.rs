//! Rounds of a comparison. `bench/compare` runs each step (one client count of one workload)
//! of every system in turn, and the whole round again (`--repetition` numbers them), so a
//! slow spell of a shared machine falls on all systems of a round alike. This folds the runs
//! of one system and workload into one series with, per step, the round of median
//! throughput (its latencies and resources with it), the range over rounds, and, between two
//! systems, the ratio of their throughput taken round by round: the figure a reader on
//! another machine can check, where absolute numbers differ.

use super::{Results, Step};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// What identifies one series: the system and the workload.
#[derive(Clone, Debug, PartialEq)]
struct Key {
    label: String,
    mode: String,
    mix: String,
    keys: usize,
    value_size: usize,
    pipeline: usize,
}

impl Key {
    fn of(r: &Results) -> Key {
        Key {
            label: r.label.clone(),
            mode: r.params.mode.clone(),
            mix: r.params.mix.clone(),
            keys: r.params.keys,
            value_size: r.params.value_size,
            pipeline: r.params.pipeline,
        }
    }
}

/// One step's figures over rounds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Spread {
    /// Throughput and p50 latency by round (runs without a round number count as round 0).
    pub ops: BTreeMap<u32, f64>,
    pub p50: BTreeMap<u32, f64>,
    pub p99: BTreeMap<u32, f64>,
}

impl Spread {
    /// The lowest and highest throughput over rounds.
    pub fn range(&self) -> (f64, f64) {
        let lo = self.ops.values().copied().fold(f64::INFINITY, f64::min);
        let hi = self.ops.values().copied().fold(0.0, f64::max);
        (lo, hi)
    }
}

/// A system's series for one workload, folded over rounds.
#[derive(Clone, Debug)]
pub struct Series {
    /// The first run's header, with one step per client count (or rate): the step of the
    /// round with the median throughput.
    pub results: Results,
    /// By step (clients), the figures of every round.
    pub spread: BTreeMap<usize, Spread>,
}

impl Series {
    /// How many rounds the series holds at most for one step.
    pub fn rounds(&self) -> usize {
        self.spread.values().map(|s| s.ops.len()).max().unwrap_or(0)
    }
}

/// Folds `runs` (in run order) into one series per system and workload, in the order each
/// first ran.
pub fn fold(runs: Vec<Results>) -> Vec<Series> {
    let mut keys: Vec<Key> = Vec::new();
    let mut groups: Vec<Vec<Results>> = Vec::new();
    for r in runs {
        let k = Key::of(&r);
        match keys.iter().position(|x| *x == k) {
            Some(i) => groups[i].push(r),
            None => {
                keys.push(k);
                groups.push(vec![r]);
            }
        }
    }
    groups.into_iter().filter_map(fold_group).collect()
}

fn fold_group(runs: Vec<Results>) -> Option<Series> {
    let mut header = runs.first()?.clone();
    // By step: (round, step) of every run.
    let mut by_step: BTreeMap<(usize, u64), Vec<(u32, Step)>> = BTreeMap::new();
    for r in &runs {
        let round = r.params.repetition.unwrap_or(0);
        for s in &r.steps {
            let rate = s.rate.map_or(0, f64::to_bits);
            by_step
                .entry((s.clients, rate))
                .or_default()
                .push((round, s.clone()));
        }
    }
    let mut steps = Vec::new();
    let mut spread = BTreeMap::new();
    for ((clients, _), mut rounds) in by_step {
        let sp: &mut Spread = spread.entry(clients).or_default();
        for (round, s) in &rounds {
            sp.ops.insert(*round, s.ops_per_sec);
            sp.p50.insert(*round, s.p50_ms);
            sp.p99.insert(*round, s.p99_ms);
        }
        rounds.sort_by(|a, b| a.1.ops_per_sec.total_cmp(&b.1.ops_per_sec));
        // The lower middle of an even count: never flatters.
        let (_, median) = rounds.swap_remove((rounds.len() - 1) / 2);
        steps.push(median);
    }
    header.steps = steps;
    Some(Series {
        results: header,
        spread,
    })
}

/// The median of `v` (the mean of the middle two for an even count); `None` if empty.
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// `a`'s figure over `b`'s, round by round (the rounds both ran): median, lowest, highest
/// and how many rounds. `pick` chooses the figure (throughput, p50 or p99).
pub fn ratio(
    a: &Spread,
    b: &Spread,
    pick: impl Fn(&Spread) -> &BTreeMap<u32, f64>,
) -> Option<(f64, f64, f64, usize)> {
    let (fa, fb) = (pick(a), pick(b));
    let ratios: Vec<f64> = fa
        .iter()
        .filter_map(|(round, x)| fb.get(round).filter(|y| **y > 0.0).map(|y| x / y))
        .collect();
    let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = ratios.iter().copied().fold(0.0, f64::max);
    let n = ratios.len();
    median(ratios).map(|m| (m, lo, hi, n))
}

/// The system every ratio is taken against.
const BASELINE: &str = "etcd";

/// A run's data size: (keys, value size).
pub fn sizes_of(r: &Results) -> (usize, usize) {
    (r.params.keys, r.params.value_size)
}

/// The comparison's main data size: the first run's (bench/compare runs the other sizes
/// after the main steps).
pub fn main_sizes<'a>(mut runs: impl Iterator<Item = &'a Results>) -> (usize, usize) {
    runs.next().map_or((0, 0), sizes_of)
}

/// The comparison's figures over rounds: each series' throughput per step as median and
/// range, and its ratio to etcd's (throughput, and p50 latency) round by round. Nothing when
/// every step ran once.
pub fn section(d: &mut String, series: &[Series]) {
    let rounds = series.iter().map(Series::rounds).max().unwrap_or(0);
    if rounds < 2 {
        return;
    }
    let _ = writeln!(d, "\n## Rounds: median, range, ratio to etcd\n");
    let _ = writeln!(
        d,
        "Every step ran {rounds} rounds; within a round each system ran in turn, each on a \
         fresh cluster. The result tables below show the round of median throughput. Here: \
         the median and range of throughput over rounds, and the system's throughput over \
         etcd's in the same round (the median of those ratios, with the lowest and highest), \
         then the same for p50 latency (below 1: faster than etcd). Ratios are what another \
         machine can check; absolute numbers move with the machine.\n"
    );
    let _ = writeln!(
        d,
        "| system | workload | clients | rounds | ops/s median | ops/s range | ops/s ÷ etcd | p50 ÷ etcd |"
    );
    let _ = writeln!(d, "|---|---|--:|--:|--:|--:|--:|--:|");
    // The main workload's data size goes without saying; others are named.
    let main = main_sizes(series.iter().map(|s| &s.results));
    for s in series {
        let r = &s.results;
        let base = series.iter().find(|b| {
            b.results.label == BASELINE
                && b.results.params.mix == r.params.mix
                && sizes_of(&b.results) == sizes_of(r)
        });
        let mut workload = r.params.mix.clone();
        if r.params.pipeline > 1 {
            let _ = write!(workload, ", {} in flight per client", r.params.pipeline);
        }
        if sizes_of(r) != main {
            let _ = write!(
                workload,
                ", {} keys of {} bytes",
                r.params.keys, r.params.value_size
            );
        }
        for (clients, sp) in &s.spread {
            let (lo, hi) = sp.range();
            let median_ops = median(sp.ops.values().copied().collect()).unwrap_or(0.0);
            let against = |pick: fn(&Spread) -> &BTreeMap<u32, f64>| {
                let b = base.filter(|b| b.results.label != r.label)?;
                let (m, lo, hi, n) = ratio(sp, b.spread.get(clients)?, pick)?;
                Some(format!("{m:.2} ({lo:.2}–{hi:.2}, {n} rounds)"))
            };
            let _ = writeln!(
                d,
                "| {} | {} | {} | {} | {:.0} | {:.0}–{:.0} | {} | {} |",
                r.label,
                workload,
                clients,
                sp.ops.len(),
                median_ops,
                lo,
                hi,
                against(|s| &s.ops).unwrap_or_else(|| "–".into()),
                against(|s| &s.p50).unwrap_or_else(|| "–".into()),
            );
        }
    }
}

/// What more data costs in tail latency: for each series of `mix` over `keys` keys of
/// `value_size` bytes, its p99 against the same system's with the same values over fewer keys
/// (bench/compare's baseline for the large state), as medians over rounds and as the ratio
/// round by round. One line per system and client count that has such a baseline.
pub fn p99_growth(series: &[Series], mix: &str, keys: usize, value_size: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for s in series {
        let p = &s.results.params;
        if (p.mix.as_str(), p.keys, p.value_size) != (mix, keys, value_size) {
            continue;
        }
        let Some(base) = series.iter().find(|b| {
            let q = &b.results.params;
            b.results.label == s.results.label
                && q.mix == p.mix
                && q.value_size == p.value_size
                && q.pipeline == p.pipeline
                && q.keys < p.keys
        }) else {
            continue;
        };
        for (clients, sp) in &s.spread {
            let Some(bp) = base.spread.get(clients) else {
                continue;
            };
            let (Some((m, lo, hi, n)), Some(here), Some(there)) = (
                ratio(sp, bp, |x| &x.p99),
                median(sp.p99.values().copied().collect()),
                median(bp.p99.values().copied().collect()),
            ) else {
                continue;
            };
            lines.push(format!(
                "- **{}**, {clients} clients: p99 {here:.2} ms over {} keys against {there:.2} ms \
                 over {} keys (medians over rounds); round by round {m:.2}× ({lo:.2}–{hi:.2}, \
                 {n} rounds)",
                s.results.label, p.keys, base.results.params.keys
            ));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(label: &str, round: u32, clients: usize, ops: f64, p50: f64) -> Results {
        let text = format!(
            r#"{{"target":"x","label":"{label}","version":"v","started_at":0,
            "params":{{"mode":"closed","mix":"put=100","keys":1000,"value_size":100,
              "duration_s":10,"warmup_s":2,"servers":null,"sync":null,"repetition":{round}}},
            "machine":{{"cpu":"c","nproc":2,"memory_gib":1.0,"kernel":"k"}},
            "steps":[{{"clients":{clients},"rate":null,"ops":1,"errors":0,
              "ops_per_sec":{ops},"p50_ms":{p50},"p90_ms":1,"p99_ms":1,"p999_ms":1,
              "max_ms":1,"committed":null,"publishes_per_command":null,"cpu_percent":null,
              "rss_mib":null,"bench_cpu_percent":null,"cpu_us_per_command":null,
              "first_error":null}}]}}"#
        );
        serde_json::from_str(&text).expect("a result")
    }

    #[test]
    fn rounds_fold_into_the_median_round_and_ratios_pair_rounds() {
        let runs = vec![
            run("a", 1, 64, 100.0, 1.0),
            run("etcd", 1, 64, 50.0, 2.0),
            run("a", 2, 64, 300.0, 0.5),
            run("etcd", 2, 64, 100.0, 1.0),
            run("a", 3, 64, 200.0, 0.8),
            run("etcd", 3, 64, 80.0, 1.6),
            run("a", 1, 1, 10.0, 0.6),
        ];
        let series = fold(runs);
        assert_eq!(series.len(), 2, "one series per system");
        let (a, b) = (&series[0], &series[1]);
        assert_eq!(a.results.label, "a");
        assert_eq!(a.rounds(), 3);
        let steps: Vec<(usize, f64)> = a
            .results
            .steps
            .iter()
            .map(|s| (s.clients, s.ops_per_sec))
            .collect();
        assert_eq!(
            steps,
            vec![(1, 10.0), (64, 200.0)],
            "the median round's step"
        );
        assert_eq!(a.results.steps[1].p50_ms, 0.8, "its latency with it");
        assert_eq!(a.spread[&64].range(), (100.0, 300.0));
        // Round by round: 2.0, 3.0, 2.5.
        let r = ratio(&a.spread[&64], &b.spread[&64], |s| &s.ops).expect("rounds in common");
        assert_eq!(r, (2.5, 2.0, 3.0, 3));
        let p = ratio(&a.spread[&64], &b.spread[&64], |s| &s.p50).expect("rounds in common");
        assert_eq!(p, (0.5, 0.5, 0.5, 3));
        // No round in common: no ratio.
        assert_eq!(ratio(&a.spread[&1], &Spread::default(), |s| &s.ops), None);
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0]), Some(2.0));
        let mut d = String::new();
        section(&mut d, &series);
        assert!(d.contains("| a | put=100 | 64 | 3 | 200 | 100–300 | 2.50 (2.00–3.00, 3 rounds) | 0.50 (0.50–0.50, 3 rounds) |"), "{d}");
    }

    #[test]
    fn p99_growth_pairs_a_large_state_with_the_same_values_over_fewer_keys() {
        let sized = |label: &str, round: u32, keys: usize, p99: f64| {
            let mut r = run(label, round, 64, 100.0, 1.0);
            r.params.keys = keys;
            r.params.value_size = 1000;
            r.steps[0].p99_ms = p99;
            r
        };
        let runs = vec![
            sized("a", 1, 1000, 10.0),
            sized("a", 1, 200_000, 15.0),
            sized("etcd", 1, 200_000, 40.0),
            sized("a", 2, 1000, 8.0),
            sized("a", 2, 200_000, 20.0),
        ];
        let series = fold(runs);
        let lines = p99_growth(&series, "put=100", 200_000, 1000);
        // etcd ran no baseline, so it has no line.
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].contains("p99 17.50 ms over 200000 keys against 9.00 ms over 1000 keys"),
            "{lines:?}"
        );
        // Round by round: 1.5 and 2.5.
        assert!(
            lines[0].contains("2.00× (1.50–2.50, 2 rounds)"),
            "{lines:?}"
        );
        assert!(p99_growth(&series, "put=100", 1000, 1000).is_empty());
    }
}
