//! Feature `compare`: `mqpaxos bench --report DIR` reads the result files a comparison wrote
//! (`*.json`, one per system and workload, in name order) and writes the performance document
//! with a table and charts (SVG and PNG, drawn with plotters). An optional `machine.md` in
//! DIR (disk, versions: what `bench/compare` gathers) is copied into the document, and two
//! more files, when there, get sections of their own: [`FAILOVER`] (`mqpaxos failover
//! --json`) and [`MEMORY`] (one `mqpaxos bench` run of many steps on one cluster).

use super::rounds::{main_sizes, sizes_of};
use super::{Failure, Results, Step};
use crate::charts::{DrawError, PALETTE};
use crate::cmd::fail;
use crate::cmd::Exit;
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The result file of `mqpaxos failover --json` in a results directory.
pub const FAILOVER: &str = "failover.json";
/// The result file of the long run on one cluster whose resident memory is followed step by
/// step.
pub const MEMORY: &str = "memory.json";

pub fn write(dir: &Path, doc: &Path, img_dir: &Path) -> Result<(), Failure> {
    // One series per system and workload: the median round of each step, and every
    // round's figures for the ranges and ratios.
    let rounds = super::rounds::fold(read_runs(dir)?);
    let runs: Vec<Results> = rounds.iter().map(|s| s.results.clone()).collect();
    if runs.is_empty() {
        return Err(fail(
            Exit::Usage,
            format!("no result files (*.json) in {}", dir.display()),
        ));
    }
    std::fs::create_dir_all(img_dir).map_err(|e| {
        fail(
            Exit::Usage,
            format!("cannot create {}: {e}", img_dir.display()),
        )
    })?;
    register_font()?;
    // Charts: the closed-loop put-only runs of the main data size, one line per system.
    let sizes = main_sizes(runs.iter());
    let series: Vec<&Results> = runs
        .iter()
        .filter(|r| r.params.mode == "closed" && r.params.mix == "put=100" && sizes_of(r) == sizes)
        .collect();
    if !series.is_empty() {
        put_charts(img_dir, &series).map_err(draw_err)?;
    }
    let notes = std::fs::read_to_string(dir.join("machine.md")).unwrap_or_default();
    let mut text = document(&runs, &rounds, &notes, doc, img_dir, !series.is_empty());
    let failover: Option<crate::cmd::failover::Report> = read_optional(&dir.join(FAILOVER))?;
    if let Some(f) = failover {
        failover_section(&mut text, &f);
    }
    if let Some(m) = read_optional::<Results>(&dir.join(MEMORY))? {
        memory_section(&mut text, &m);
    }
    reproduce(&mut text);
    if let Some(parent) = doc.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            fail(
                Exit::Usage,
                format!("cannot create {}: {e}", parent.display()),
            )
        })?;
    }
    std::fs::write(doc, text)
        .map_err(|e| fail(Exit::Usage, format!("cannot write {}: {e}", doc.display())))?;
    eprintln!(
        "mqpaxos: wrote {} and charts in {}",
        doc.display(),
        img_dir.display()
    );
    Ok(())
}

/// The put-only charts, throughput and latency, each as SVG and PNG.
fn put_charts(img_dir: &Path, series: &[&Results]) -> Result<(), DrawError> {
    for ext in ["svg", "png"] {
        let t = img_dir.join(format!("bench-throughput.{ext}"));
        let l = img_dir.join(format!("bench-latency.{ext}"));
        if ext == "svg" {
            throughput_chart(SVGBackend::new(&t, (900, 500)).into_drawing_area(), series)?;
            latency_chart(SVGBackend::new(&l, (1200, 500)).into_drawing_area(), series)?;
        } else {
            throughput_chart(
                BitMapBackend::new(&t, (900, 500)).into_drawing_area(),
                series,
            )?;
            latency_chart(
                BitMapBackend::new(&l, (1200, 500)).into_drawing_area(),
                series,
            )?;
        }
    }
    Ok(())
}

fn read_runs(dir: &Path) -> Result<Vec<Results>, Failure> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| fail(Exit::Usage, format!("cannot read {}: {e}", dir.display())))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter(|p| p.file_name().is_none_or(|n| n != FAILOVER && n != MEMORY))
        .collect();
    paths.sort();
    let mut runs = Vec::new();
    for p in paths {
        let text = std::fs::read_to_string(&p)
            .map_err(|e| fail(Exit::Usage, format!("cannot read {}: {e}", p.display())))?;
        let r: Results = serde_json::from_str(&text).map_err(|e| {
            fail(
                Exit::Usage,
                format!("{} is not a bench result: {e}", p.display()),
            )
        })?;
        runs.push(r);
    }
    Ok(runs)
}

/// A result file that a comparison may have skipped: `None` when it is not there.
fn read_optional<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, Failure> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(fail(
                Exit::Usage,
                format!("cannot read {}: {e}", path.display()),
            ))
        }
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        fail(
            Exit::Usage,
            format!("{} is not readable: {e}", path.display()),
        )
    })
}

/// `mqpaxos failover`'s kills of the leader, from the same run as the rest of the page.
fn failover_section(d: &mut String, f: &crate::cmd::failover::Report) {
    let each: Vec<String> = f.failover_ms.iter().map(|m| format!("{m:.0}")).collect();
    let _ = writeln!(
        d,
        "\n## Failover: kill -9 of the leader\n\n\
         `mqpaxos failover --kills {}`: its own cluster of {} servers (fsync always), one client \
         writing one command at a time (resend after {:.0} ms); {} times, once one leader is \
         settled, kill -9 of the leader, then its restart from its data directory. Measured: \
         from the kill to the acknowledgement of the first write sent after it. With fewer \
         than 100 kills, p99 is the slowest of them.\n\n\
         | kills | p50 ms | p90 ms | p99 ms | max ms |\n|--:|--:|--:|--:|--:|\n\
         | {} | {:.0} | {:.0} | {:.0} | {:.0} |\n\n\
         Each, in order (ms): {}",
        f.kills,
        f.servers,
        f.client_resend_ms,
        f.kills,
        f.kills,
        f.p50_ms,
        f.p90_ms,
        f.p99_ms,
        f.max_ms,
        each.join(" ")
    );
}

/// One cluster under load for many steps: whether its resident memory stays flat.
fn memory_section(d: &mut String, m: &Results) {
    let Some((first, last)) = m.steps.first().zip(m.steps.last()) else {
        return;
    };
    // Measured windows only (not the prefill before the first step).
    let total: u64 = m.steps.iter().map(|s| s.ops).sum();
    let servers = m
        .params
        .servers
        .map_or_else(String::new, |n| format!("{n} servers, "));
    let sync = m.params.sync.as_deref().unwrap_or("default");
    let _ = writeln!(
        d,
        "\n## Memory under load\n\n\
         One mqpaxos cluster ({servers}fsync {sync}) under {} steps of {} clients putting \
         {}-byte values over {} keys, {:.0} s each, back to back (new client sessions each \
         step): about {:.1} million puts. The servers' resident memory, summed, at the end of \
         each step, and the highest it had been (`VmHWM`, summed):\n\n\
         | step | puts/s | p99 ms | RSS MiB | peak RSS MiB |\n|--:|--:|--:|--:|--:|",
        m.steps.len(),
        first.clients,
        m.params.value_size,
        m.params.keys,
        m.params.duration_s,
        total as f64 / 1e6
    );
    for (i, s) in m.steps.iter().enumerate() {
        let _ = writeln!(
            d,
            "| {} | {:.0} | {:.2} | {} | {} |",
            i + 1,
            s.ops_per_sec,
            s.p99_ms,
            opt(s.rss_mib, 1),
            opt(s.peak_rss_mib, 1)
        );
    }
    if let (Some(a), Some(b)) = (first.rss_mib, last.rss_mib) {
        let _ = writeln!(
            d,
            "\nThe last step's resident memory is {:+.1}% against the first's.",
            (b - a) / a * 100.0
        );
    }
}

/// The font embedded for every chart (see `charts::register_font`).
fn register_font() -> Result<(), Failure> {
    crate::charts::register_font().map_err(|e| fail(Exit::Failed, e.to_string()))
}

/// One colour per system: the chaos charts' palette, with red second so that the first two
/// systems (mqpaxos and etcd in a comparison) stand apart most.
const COLORS: [RGBColor; 6] = [
    PALETTE[0], PALETTE[3], PALETTE[2], PALETTE[1], PALETTE[4], PALETTE[5],
];

fn draw_err(e: DrawError) -> Failure {
    fail(Exit::Failed, format!("cannot draw the chart: {e}"))
}

/// A chart's plot area with its title; the y labels take `y_label_width` pixels.
fn plot<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    title: &str,
    y_label_width: u32,
) -> ChartBuilder<'a, 'a, DB> {
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(y_label_width);
    builder
}

/// The grid and axes of a chart over client counts (a log axis); `y_label` formats the y
/// axis, which `y_desc` describes.
fn clients_mesh<DB, Y>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<LogCoord<f64>, Y>>,
    y_desc: &str,
    y_label: &dyn Fn(&f64) -> String,
) -> Result<(), DrawError>
where
    DB: DrawingBackend,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_desc("clients")
        .y_desc(y_desc)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(y_label)
        .draw()?;
    Ok(())
}

fn x_range(series: &[&Results]) -> (f64, f64) {
    let max = series
        .iter()
        .flat_map(|r| r.steps.iter().map(|s| s.clients as f64))
        .fold(1.0, f64::max);
    (0.8, max * 1.25)
}

fn throughput_chart<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    series: &[&Results],
) -> Result<(), DrawError> {
    root.fill(&WHITE)?;
    let (x0, x1) = x_range(series);
    let ymax = series
        .iter()
        .flat_map(|r| r.steps.iter().map(|s| s.ops_per_sec))
        .fold(1.0, f64::max)
        * 1.1;
    let mut chart = plot(&root, "Throughput (puts/s) vs concurrent clients", 70)
        .build_cartesian_2d((x0..x1).log_scale(), 0.0..ymax)?;
    clients_mesh(&mut chart, "puts/s", &|y| format!("{y:.0}"))?;
    draw_lines(&mut chart, series, |s| s.ops_per_sec)?;
    root.present()?;
    Ok(())
}

fn latency_chart<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    series: &[&Results],
) -> Result<(), DrawError> {
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(600);
    type Pick = fn(&Step) -> f64;
    let panels: [(&DrawingArea<DB, Shift>, &str, Pick); 2] = [
        (&left, "p50 latency (ms)", |s| s.p50_ms),
        (&right, "p99 latency (ms)", |s| s.p99_ms),
    ];
    let (x0, x1) = x_range(series);
    for (area, title, pick) in panels {
        let values = series.iter().flat_map(|r| r.steps.iter().map(pick));
        let ymax = values.clone().fold(0.01, f64::max) * 1.5;
        let ymin = values.fold(f64::MAX, f64::min).clamp(0.001, ymax / 10.0) / 1.5;
        let mut chart = plot(area, title, 60)
            .build_cartesian_2d((x0..x1).log_scale(), (ymin..ymax).log_scale())?;
        clients_mesh(&mut chart, "ms (log scale)", &|y| format!("{y}"))?;
        draw_lines(&mut chart, series, |s| pick(s).max(ymin))?;
    }
    root.present()?;
    Ok(())
}

/// One line with dots per system (y from `y`, over the client counts), and the legend.
fn draw_lines<'a, DB, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    series: &[&Results],
    y: impl Fn(&Step) -> f64,
) -> Result<(), DrawError>
where
    DB: DrawingBackend + 'a,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for (i, r) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<(f64, f64)> = r.steps.iter().map(|s| (s.clients as f64, y(s))).collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(r.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 4, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".to_string(), |v| format!("{v:.digits$}"))
}

/// A path to `target` relative to the directory of `doc` (both relative to the same root).
fn relative(doc: &Path, target: &Path) -> String {
    let dir = doc.parent().unwrap_or(Path::new(""));
    if let Ok(rel) = target.strip_prefix(dir) {
        return rel.to_string_lossy().into_owned();
    }
    let depth = dir
        .components()
        .filter(|c| !c.as_os_str().is_empty())
        .count();
    let mut s = "../".repeat(depth);
    s.push_str(&target.to_string_lossy());
    s
}

/// The peak of each system's put-only run, and mqpaxos's publishes per command across steps.
fn summary(d: &mut String, runs: &[Results]) {
    let sizes = main_sizes(runs.iter());
    let puts: Vec<&Results> = runs
        .iter()
        .filter(|r| r.params.mode == "closed" && r.params.mix == "put=100" && sizes_of(r) == sizes)
        .collect();
    if puts.is_empty() {
        return;
    }
    let _ = writeln!(d, "\n## Summary (put only, this run)\n");
    for r in &puts {
        let Some(best) = r
            .steps
            .iter()
            .max_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec))
        else {
            continue;
        };
        let one = r.steps.iter().find(|s| s.clients == 1);
        let mut line = format!(
            "- **{}**: peak {:.0} puts/s at {} clients (p50 {:.2} ms, p99 {:.2} ms)",
            r.label, best.ops_per_sec, best.clients, best.p50_ms, best.p99_ms
        );
        if let Some(one) = one {
            let _ = write!(line, "; one client: p50 {:.2} ms", one.p50_ms);
        }
        let ppc: Vec<String> = r
            .steps
            .iter()
            .filter_map(|s| {
                s.publishes_per_command
                    .map(|p| format!("{p:.2} at {}", s.clients))
            })
            .collect();
        if !ppc.is_empty() {
            let _ = write!(line, "; MQTT publishes per command: {}", ppc.join(", "));
        }
        let _ = writeln!(d, "{line}");
    }
}

fn document(
    runs: &[Results],
    rounds: &[super::rounds::Series],
    notes: &str,
    doc: &Path,
    img_dir: &Path,
    charts: bool,
) -> String {
    let mut d = String::new();
    introduction(&mut d, runs, notes);
    summary(&mut d, runs);
    super::rounds::section(&mut d, rounds);
    if charts {
        charts_section(&mut d, doc, img_dir);
    }
    results(&mut d, runs, rounds);
    d
}

/// The page's head: what it compares, the machine, the systems and what one operation is in
/// each.
fn introduction(d: &mut String, runs: &[Results], notes: &str) {
    let first = runs
        .iter()
        .find(|r| r.params.mix == "put=100")
        .unwrap_or(&runs[0]);
    let m = &first.machine;
    let p = &first.params;
    let _ = writeln!(d, "# Performance\n");
    let _ = writeln!(
        d,
        "mqpaxos against etcd and NATS JetStream KV, each a 3-member cluster on one machine's \
         loopback, driven by the same load generator (`mqpaxos bench`, built with \
         `--features compare`): closed loop, each client one connection with one command in \
         flight (but in the rows marked \"in flight per client\", mqpaxos's pipelined client), \
         keys chosen uniformly. Generated by `bench/compare` from the JSON results in \
         `bench/results/`; rerun it to refresh this page.\n"
    );
    let _ = writeln!(
        d,
        "**Read these numbers with care.** The clients, the broker and all three members of \
         every system share the same {} cores of a virtual machine whose host is shared, so the \
         numbers are noisy and say more about relative shape than about absolute capacity. \
         Every system's data directories are on the same disk.\n",
        m.nproc
    );
    let _ = writeln!(d, "## Machine and versions\n");
    let _ = writeln!(
        d,
        "- CPU: {} ({} cores), {:.1} GiB memory",
        m.cpu, m.nproc, m.memory_gib
    );
    let _ = writeln!(d, "- kernel: {}", m.kernel);
    if !notes.trim().is_empty() {
        let _ = writeln!(d, "{}", notes.trim_end());
    }
    let _ = writeln!(
        d,
        "- workload: values of {} bytes over {} keys, {} s warm-up then {} s measured per step; \
         put only at each client count, then a mixed row",
        p.value_size, p.keys, p.warmup_s, p.duration_s
    );
    let _ = writeln!(d, "\nSystems, in run order:\n");
    let mut seen = Vec::new();
    for r in runs {
        if seen.contains(&r.label) {
            continue;
        }
        seen.push(r.label.clone());
        let mut what = format!("- **{}**: {}", r.label, r.version);
        if let (Some(n), Some(sync)) = (r.params.servers, &r.params.sync) {
            let _ = write!(what, "; {n} servers and the built-in broker, fsync {sync}");
        }
        let _ = writeln!(d, "{what}");
    }
    let _ = writeln!(
        d,
        "\n### What one operation is\n\n\
         | | mqpaxos | etcd | NATS JetStream KV |\n\
         |---|---|---|---|\n\
         | put | one command through the leader's log | `Put` | `kv.put`: a publish the stream \
         acknowledges once a quorum of replicas has it |\n\
         | get | read index: the leader confirms with a majority that it still leads, then answers from its state; no log write (linearizable) | `Range`, linearizable (the \
         default) | `kv.get` from the stream leader (the bench creates the bucket without \
         direct gets) |\n\
         | cas | one command (compare value, then set) | one `Txn` (value equal → put) | \
         `kv.entry` for the revision, then `kv.update` with it: two round trips |\n\
         | durability when acknowledged | fsync on a majority (sync always) | fsync of the \
         WAL on a majority | default: in the replicas' page cache, fsynced in the background; \
         sync always: fsync per write (`sync_interval: always`, nats-server 2.10+) |\n"
    );
}

/// Links to the put-only charts, SVG inline and PNG named.
fn charts_section(d: &mut String, doc: &Path, img_dir: &Path) {
    let _ = writeln!(d, "\n## Charts (put only)\n");
    let _ = writeln!(
        d,
        "![throughput]({})\n\n![latency]({})\n",
        relative(doc, &img_dir.join("bench-throughput.svg")),
        relative(doc, &img_dir.join("bench-latency.svg"))
    );
    let _ = writeln!(
        d,
        "PNG versions: `{}`, `{}`.",
        img_dir.join("bench-throughput.png").display(),
        img_dir.join("bench-latency.png").display()
    );
}

/// One table per mix and data size.
fn results(d: &mut String, runs: &[Results], rounds: &[super::rounds::Series]) {
    // Put only first, then the other mixes in the order they ran, then other data sizes.
    let sizes = main_sizes(runs.iter());
    let mut groups: Vec<(String, (usize, usize))> = vec![("put=100".to_string(), sizes)];
    for r in runs {
        let g = (r.params.mix.clone(), sizes_of(r));
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    groups.retain(|(m, z)| runs.iter().any(|r| &r.params.mix == m && sizes_of(r) == *z));
    groups.sort_by_key(|(_, z)| *z != sizes);
    for (mix, group) in groups {
        if group == sizes {
            let _ = writeln!(d, "\n## Results: {mix}\n");
        } else if group.0 < LARGE_KEYS {
            let _ = writeln!(
                d,
                "\n## Results: {mix}, {} keys of {} bytes\n\n\
                 The large state's values over few keys: the baseline that the large state's \
                 latency is held against.\n",
                group.0, group.1
            );
        } else {
            let _ = writeln!(
                d,
                "\n## Results: {mix}, large state: {} keys of {} bytes\n\n\
                 The same load over many more keys (uniform random, so the store holds up to \
                 {} MB): what snapshots, memory and the disk cost once the data is not tiny. \
                 mqpaxos and etcd only.\n",
                group.0,
                group.1,
                group.0.saturating_mul(group.1) / 1_000_000
            );
        }
        let _ = writeln!(
            d,
            "ops/s counts answered commands in the measured window; latencies are from the \
             HDR histogram of those commands. pub/cmd is MQTT publishes by all servers per \
             committed command (mqpaxos only); CPU (% of one core, summed over the members) \
             and RSS (MiB, summed) are of the servers' processes; RSS ÷ live is one server's \
             RSS over the bytes of keys and values its store holds at the step's end (mqpaxos \
             only); CPU µs/cmd is the servers' \
             CPU time plus the load generator's (its clients, and mqpaxos's built-in broker, \
             which runs inside it) per acknowledged command.\n"
        );
        let _ = writeln!(
            d,
            "| system | clients | ops/s | p50 ms | p99 ms | p99.9 ms | max ms | errors | pub/cmd | CPU % | RSS MiB | RSS ÷ live | CPU µs/cmd |"
        );
        let _ = writeln!(d, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
        for r in runs
            .iter()
            .filter(|r| r.params.mix == mix && sizes_of(r) == group)
        {
            for s in &r.steps {
                let _ = writeln!(
                    d,
                    "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {} | {} | {} | {} | {} | {} |",
                    r.label,
                    s.clients,
                    s.ops_per_sec,
                    s.p50_ms,
                    s.p99_ms,
                    s.p999_ms,
                    s.max_ms,
                    s.errors,
                    opt(s.publishes_per_command, 2),
                    opt(s.cpu_percent, 0),
                    opt(s.rss_mib, 0),
                    opt(s.rss_per_live, 2),
                    opt(s.cpu_us_per_command, 0),
                );
            }
        }
        let growth = super::rounds::p99_growth(rounds, &mix, group.0, group.1);
        if group != sizes && !growth.is_empty() {
            let _ = writeln!(
                d,
                "\nTail latency against the same values over fewer keys:\n\n{}",
                growth.join("\n")
            );
        }
    }
}

/// From this many keys on, a data size is the large state; fewer keys of another value size
/// are its baseline.
const LARGE_KEYS: usize = 100_000;

fn reproduce(d: &mut String) {
    let _ = writeln!(d, "\n## Reproduce\n");
    let _ = writeln!(
        d,
        "```\nbash bench/compare                  # installs etcd, NATS, protoc if missing; ~60 min\n\
         bash bench/compare --clients 1,64 --reps 3 --systems mqpaxos,etcd,nats --no-mix\n\
         bash bench/compare --clients 1,16 --duration 5s --reps 1 --no-memory   # shorter\n\
         mqpaxos failover --kills 20 --json bench/results/failover.json   # then:\n\
         mqpaxos bench --report bench/results --doc docs/performance.md --img-dir docs/img\n```\n\n\
         `mqpaxos bench` alone (own cluster, or `--broker` for a running one) is described in \
         the README. The comparison needs `cargo build --release -p mqpaxos --features compare`.\n\n\
         What batching and the read path each gain, and the profile: \
         [docs/speed.md](speed.md)."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(clients: usize, ops: f64, rss: f64) -> String {
        let total = (ops * 60.0) as u64;
        format!(
            r#"{{"clients":{clients},"rate":null,"ops":{total},"errors":0,"ops_per_sec":{ops},
            "p50_ms":1,"p90_ms":1,"p99_ms":2,"p999_ms":3,"max_ms":4,"committed":null,
            "publishes_per_command":null,"cpu_percent":null,"rss_mib":{rss},
            "peak_rss_mib":{rss},"bench_cpu_percent":null,"cpu_us_per_command":null,
            "first_error":null}}"#
        )
    }

    fn run(label: &str, steps: &[String]) -> String {
        format!(
            r#"{{"target":"x","label":"{label}","version":"v","started_at":0,
            "params":{{"mode":"closed","mix":"put=100","keys":1000,"value_size":100,
              "duration_s":60,"warmup_s":0,"servers":3,"sync":"always","repetition":1}},
            "machine":{{"cpu":"c","nproc":2,"memory_gib":1.0,"kernel":"k"}},
            "steps":[{}]}}"#,
            steps.join(",")
        )
    }

    /// The failover and memory files get their own sections and are not read as rounds of
    /// the comparison; a broken one is an error that names it.
    #[test]
    fn failover_and_memory_sections() {
        let d = tempfile::tempdir().expect("temp dir");
        let dir = d.path().join("results");
        std::fs::create_dir(&dir).expect("results dir");
        let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).expect("write");
        write(
            "001-mqpaxos.json",
            &run("mqpaxos", &[step(64, 1000.0, 90.0)]),
        );
        write(
            MEMORY,
            &run("long", &[step(64, 500.0, 200.0), step(64, 600.0, 202.0)]),
        );
        write(
            FAILOVER,
            r#"{"servers":3,"kills":2,"client_resend_ms":200,"failover_ms":[20,40],
               "p50_ms":20,"p90_ms":40,"p99_ms":40,"max_ms":40}"#,
        );
        let (doc, img) = (d.path().join("perf.md"), d.path().join("img"));
        super::write(&dir, &doc, &img).expect("the document");
        let text = std::fs::read_to_string(&doc).expect("read the document");
        assert!(
            text.contains("## Failover: kill -9 of the leader"),
            "{text}"
        );
        assert!(text.contains("| 2 | 20 | 40 | 40 | 40 |"), "{text}");
        assert!(text.contains("Each, in order (ms): 20 40"), "{text}");
        assert!(text.contains("## Memory under load"), "{text}");
        assert!(
            text.contains("| 2 | 600 | 2.00 | 202.0 | 202.0 |"),
            "{text}"
        );
        assert!(text.contains("+1.0% against the first's"), "{text}");
        assert!(text.contains("about 0.1 million puts"), "{text}");
        assert!(text.contains("(3 servers, fsync always)"), "{text}");
        // Not a series of the comparison.
        assert!(!text.contains("| long |"), "{text}");
        assert!(text.find("## Memory").unwrap_or(0) < text.find("## Reproduce").unwrap_or(0));

        write(FAILOVER, "{");
        let e = super::write(&dir, &doc, &img).expect_err("a broken failover file");
        assert!(e.message.contains(FAILOVER), "{}", e.message);
    }
}
