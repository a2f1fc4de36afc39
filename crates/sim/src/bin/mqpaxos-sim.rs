//! `mqpaxos-sim`: runs the deterministic simulator from the command line.
//!
//! `--scenario NAME --seeds N` runs N seeds on all cores and prints, for each failing seed,
//! the one line that replays it; `--seed S` replays one seed; `--history FILE` writes that
//! seed's client history as JSON Lines; `--list` names the scenarios; `--messages` prints the
//! message accounting table.

use clap::Parser;
use mqpaxos_sim::{accounting, run_seed, run_seeds, scenario};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "mqpaxos-sim",
    version,
    about = "Deterministic simulator for mqpaxos"
)]
struct Args {
    /// Scenario to run (see --list); `all` runs every one.
    #[arg(long, default_value = "paper")]
    scenario: String,
    /// Run this many seeds, starting at --first-seed.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// The first seed of a --seeds batch.
    #[arg(long, default_value_t = 0)]
    first_seed: u64,
    /// Replay exactly this seed and describe the run.
    #[arg(long)]
    seed: Option<u64>,
    /// With --seed: write the run's client history (JSON Lines) to this file.
    #[arg(long, requires = "seed")]
    history: Option<std::path::PathBuf>,
    /// Threads for a batch (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
    /// Print messages per election and per committed command for 3, 5 and 7 servers.
    #[arg(long)]
    messages: bool,
    /// Break the protocol on purpose (see docs/simulator.md; needs `--features mutations`),
    /// or `unsafe-disk` for acknowledgements before the sync.
    #[arg(long)]
    mutation: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.list {
        for s in scenario::all() {
            println!("{:<14} {}", s.name, s.about);
        }
        return ExitCode::SUCCESS;
    }
    if args.messages {
        print!("{}", accounting::markdown_table(&[3, 5, 7]));
        return ExitCode::SUCCESS;
    }
    let scenarios = match chosen_scenarios(&args) {
        Ok(scenarios) => scenarios,
        Err(code) => return code,
    };
    if let Some(seed) = args.seed {
        return replay_seed(&scenarios, seed, args.history.as_deref());
    }
    let threads = args.threads.unwrap_or_else(mqpaxos_sim::default_threads);
    run_batches(&scenarios, args.first_seed, args.seeds, threads)
}

/// The scenarios `--scenario` names, with `--mutation` applied; on a bad name, prints why
/// and gives the exit code (2).
fn chosen_scenarios(args: &Args) -> Result<Vec<scenario::Scenario>, ExitCode> {
    let mut scenarios = if args.scenario == "all" {
        scenario::all()
    } else {
        match scenario::by_name(&args.scenario) {
            Some(s) => vec![s],
            None => {
                eprintln!(
                    "mqpaxos-sim: no scenario named {:?} (try --list)",
                    args.scenario
                );
                return Err(ExitCode::from(2));
            }
        }
    };
    if let Some(name) = &args.mutation {
        if name == "unsafe-disk" {
            for sc in &mut scenarios {
                sc.unsafe_disk = true;
            }
        } else {
            #[cfg(feature = "mutations")]
            let tweak = scenario::mutations::by_name(name);
            #[cfg(not(feature = "mutations"))]
            let tweak: Option<fn(&mut mqpaxos_core::Config)> = None;
            let Some(tweak) = tweak else {
                eprintln!(
                    "mqpaxos-sim: no mutation named {name:?} (the binary needs --features mutations)"
                );
                return Err(ExitCode::from(2));
            };
            for sc in &mut scenarios {
                sc.tweak = Some(tweak);
            }
        }
    }
    Ok(scenarios)
}

/// `--seed`: replays one seed of each scenario, describes the run and, with `--history`,
/// writes its client history.
fn replay_seed(
    scenarios: &[scenario::Scenario],
    seed: u64,
    history: Option<&std::path::Path>,
) -> ExitCode {
    let mut failed = false;
    for sc in scenarios {
        let r = run_seed(sc, seed);
        println!(
            "scenario {} seed {}: {} ({} ops, {} elections won, {} crashes ({} losing state), {:.1} s virtual, {} events, fingerprint {:016x})",
            r.scenario,
            r.seed,
            if r.ok() { "ok" } else { "FAILED" },
            r.ops_completed,
            r.elections_won,
            r.crashes,
            r.amnesias,
            r.virtual_time.as_secs_f64(),
            r.events,
            r.fingerprint
        );
        for v in &r.violations {
            println!("  {v}");
        }
        if let Some(path) = history {
            if let Err(code) = write_history(path, &r.history) {
                return code;
            }
        }
        failed |= !r.ok();
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Writes a run's client history as JSON Lines to `path` and says so; on failure, prints
/// why and gives the exit code (2).
fn write_history(path: &std::path::Path, history: &[mqpaxos_check::Event]) -> Result<(), ExitCode> {
    let written = std::fs::File::create(path)
        .map_err(|e| e.to_string())
        .and_then(|f| {
            mqpaxos_check::write_jsonl(std::io::BufWriter::new(f), history)
                .map_err(|e| e.to_string())
        });
    match written {
        Ok(()) => {
            println!("  history: {} events in {}", history.len(), path.display());
            Ok(())
        }
        Err(e) => {
            eprintln!("mqpaxos-sim: cannot write {}: {e}", path.display());
            Err(ExitCode::from(2))
        }
    }
}

/// `--seeds`: runs a batch of seeds of each scenario and prints a summary line, plus the
/// replay line of every failing seed.
fn run_batches(
    scenarios: &[scenario::Scenario],
    first_seed: u64,
    seeds: u64,
    threads: usize,
) -> ExitCode {
    let mut failed = false;
    for sc in scenarios {
        let b = run_seeds(sc, first_seed, seeds, threads);
        println!(
            "scenario {}: {} seeds, {} failed, {} ops, {:.1} s wall, {:.1} seeds/s, {:.0} s virtual, {} ballots reused",
            b.scenario,
            b.seeds,
            b.failures.len(),
            b.ops_completed,
            b.wall.as_secs_f64(),
            b.seeds_per_second(),
            b.virtual_time.as_secs_f64(),
            b.ballots_reused
        );
        for r in &b.failures {
            println!(
                "  FAILED seed {}: {}",
                r.seed,
                r.violations.first().map_or("", String::as_str)
            );
            println!(
                "    replay: mqpaxos-sim --scenario {} --seed {}",
                r.scenario, r.seed
            );
        }
        failed |= !b.failures.is_empty();
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
