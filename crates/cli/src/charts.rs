//! The time series of a chaos run and the charts drawn from them.
//!
//! `mqpaxos chaos` fills a [`Timeseries`] while it runs (cumulative message counters sampled
//! from every server's `/metrics`, the latency of every client operation, the partition
//! windows) and [`write_charts`] turns it into `messages_in`, `messages_out` and `latency`
//! charts, each as PNG and SVG. This file only draws what it is given: it never touches the
//! network or the cluster, so a chart can be redrawn from a saved `timeseries.json`.
//!
//! Text is rendered with DejaVu Sans embedded in the binary (the `dejavu` crate) through
//! plotters' `ab_glyph` backend, so PNGs have readable labels on machines without fontconfig
//! or any system font.

use mqpaxos_check::OpKind;
use plotters::chart::MeshStyle;
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// At most this many message samples are kept; [`sample_interval`] stretches the interval so
/// that even a day-long run stays under it.
pub const MAX_SAMPLES: usize = 2_000;
/// At most this many client operations are kept for the latency chart; the rest are counted.
pub const MAX_OPS: usize = 200_000;

/// Chart size in pixels (PNG) and user units (SVG).
const SIZE: (u32, u32) = (1200, 600);
const FONT: &str = "sans-serif";
/// Room right of the plot for the legend, so it never hides a line, a point or a label.
const LEGEND_WIDTH: u32 = 230;

/// Everything the charts show, in seconds since the clients started.
#[derive(Serialize, Debug, Default, Clone)]
pub struct Timeseries {
    /// One line describing the run (seed, servers, faults), shown under every chart title.
    pub run: String,
    /// Server names, in the order of each sample's counters.
    pub nodes: Vec<String>,
    pub samples: Vec<MessageSample>,
    pub ops: Vec<OpSample>,
    /// Operations that completed after [`MAX_OPS`] were recorded.
    pub ops_not_recorded: u64,
    pub partitions: Vec<PartitionWindow>,
    /// When the run ended (the right edge of every chart).
    pub end_s: f64,
}

/// Cumulative messages in and out of every server (summed over message types) at one time;
/// `None` where a server's metrics could not be read.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct MessageSample {
    pub at_s: f64,
    pub messages_in: Vec<Option<u64>>,
    pub messages_out: Vec<Option<u64>>,
}

/// One client operation: when it was invoked, how long until its answer (or until the client
/// gave up), and whether the answer came (`ok`) or the outcome is unknown (timed out).
#[derive(Serialize, Debug, Clone, Copy, PartialEq)]
pub struct OpSample {
    pub at_s: f64,
    pub latency_ms: f64,
    pub kind: OpKind,
    pub ok: bool,
}

/// An interval during which the servers were split into `groups`.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct PartitionWindow {
    pub from_s: f64,
    pub to_s: f64,
    pub groups: Vec<Vec<u32>>,
}

impl Timeseries {
    pub fn record_sample(&mut self, s: MessageSample) {
        if self.samples.len() < MAX_SAMPLES {
            self.samples.push(s);
        }
    }

    pub fn record_op(&mut self, op: OpSample) {
        if self.ops.len() < MAX_OPS {
            self.ops.push(op);
        } else {
            self.ops_not_recorded += 1;
        }
    }
}

/// How often to sample the servers' metrics in a run of this length: every 500 ms, or less
/// often in runs so long that [`MAX_SAMPLES`] would not cover them.
pub fn sample_interval(run: Duration) -> Duration {
    (run / MAX_SAMPLES as u32 * 2).max(Duration::from_millis(500))
}

impl PartitionWindow {
    /// The windows of a fault log: each change `(at_s, groups)` ends the window before it;
    /// an empty `groups` means no partition. The last window ends at `end_s`.
    pub fn from_log(
        changes: impl IntoIterator<Item = (f64, Vec<Vec<u32>>)>,
        end_s: f64,
    ) -> Vec<Self> {
        let mut out: Vec<Self> = Vec::new();
        let mut open: Option<(f64, Vec<Vec<u32>>)> = None;
        for (at, groups) in changes {
            if let Some((from_s, g)) = open.take() {
                out.push(Self {
                    from_s,
                    to_s: at,
                    groups: g,
                });
            }
            if !groups.is_empty() {
                open = Some((at, groups));
            }
        }
        if let Some((from_s, groups)) = open {
            out.push(Self {
                from_s,
                to_s: end_s.max(from_s),
                groups,
            });
        }
        out
    }

    /// The groups as they are labelled on a chart, one string per group.
    fn group_labels(&self) -> Vec<String> {
        self.groups.iter().map(|g| format_group(g)).collect()
    }
}

/// A split as the charts and the progress bar show it: `{1,2,5} {3,4}`.
pub fn format_groups(groups: &[Vec<u32>]) -> String {
    let labels: Vec<String> = groups.iter().map(|g| format_group(g)).collect();
    labels.join(" ")
}

fn format_group(group: &[u32]) -> String {
    let ids: Vec<String> = group.iter().map(u32::to_string).collect();
    format!("{{{}}}", ids.join(","))
}

/// Messages per second of one server between consecutive samples, plotted at the end of
/// each interval. A gap in the counters (an unreadable scrape) leaves a gap in the line; a
/// counter that went down (a restarted server) counts from zero.
pub fn rates(samples: &[MessageSample], node: usize, outgoing: bool) -> Vec<(f64, f64)> {
    let count = |s: &MessageSample| {
        let v = if outgoing {
            &s.messages_out
        } else {
            &s.messages_in
        };
        v.get(node).copied().flatten()
    };
    samples
        .windows(2)
        .filter_map(|w| {
            let (a, b) = (count(&w[0])?, count(&w[1])?);
            let dt = w[1].at_s - w[0].at_s;
            if dt <= 0.0 {
                return None;
            }
            let delta = if b >= a { b - a } else { b };
            Some((w[1].at_s, delta as f64 / dt))
        })
        .collect()
}

/// Why the charts could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// plotters could not draw or write one of the files.
    #[error("cannot draw {file}: {reason}")]
    Draw { file: String, reason: DrawError },
    #[error("cannot draw charts: the embedded font does not load")]
    Font,
}

/// A drawing error of plotters, kept as its text: its type depends on the backend (PNG or
/// SVG) the chart is drawn on, and the text is all a caller can do anything with.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DrawError(String);

impl<E: std::error::Error + Send + Sync> From<DrawingAreaErrorKind<E>> for DrawError {
    fn from(e: DrawingAreaErrorKind<E>) -> Self {
        DrawError(e.to_string())
    }
}

/// Writes `messages_in`, `messages_out` and `latency`, each as `.png` and `.svg`, into `dir`
/// (which must exist), and returns the paths written.
pub fn write_charts(dir: &Path, ts: &Timeseries) -> Result<Vec<PathBuf>, ChartError> {
    register_font()?;
    let mut written = Vec::new();
    for (name, chart) in [
        ("messages_in", Chart::MessagesIn),
        ("messages_out", Chart::MessagesOut),
        ("latency", Chart::Latency),
    ] {
        let png = dir.join(format!("{name}.png"));
        let err = |file: &Path| {
            let file = file.display().to_string();
            move |reason| ChartError::Draw { file, reason }
        };
        draw(
            BitMapBackend::new(&png, SIZE).into_drawing_area(),
            chart,
            ts,
        )
        .map_err(err(&png))?;
        written.push(png);
        let svg = dir.join(format!("{name}.svg"));
        draw(SVGBackend::new(&svg, SIZE).into_drawing_area(), chart, ts).map_err(err(&svg))?;
        written.push(svg);
    }
    Ok(written)
}

/// Registers the embedded font once per process under the family name plotters asks for.
/// Every chart the binary draws (chaos reports, the benchmark's report) goes through this.
pub fn register_font() -> Result<(), ChartError> {
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_ok()
            && plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold()).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(ChartError::Font)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Chart {
    MessagesIn,
    MessagesOut,
    Latency,
}

/// Distinct line colours (Tableau 10), so seven servers stay apart; more servers reuse them.
/// The benchmark's report draws its systems in these colours too.
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
/// Two tints that alternate between partition windows, so back-to-back splits stay apart.
const SHADES: [RGBColor; 2] = [RGBColor(255, 200, 120), RGBColor(170, 190, 230)];
const SHADE_ALPHA: f64 = 0.35;

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    chart: Chart,
    ts: &Timeseries,
) -> Result<(), DrawError> {
    root.fill(&WHITE)?;
    let (title, sub) = match chart {
        Chart::MessagesIn => ("Messages received per server", "messages/s"),
        Chart::MessagesOut => ("Messages sent per server", "messages/s"),
        Chart::Latency => ("Client operation latency", "latency (ms, log scale)"),
    };
    // Title and run description above the plot, drawn by hand so the run line is smaller.
    let (top, body) = root.split_vertically(62);
    top.draw(&Text::new(
        title,
        (70, 8),
        (FONT, 26).into_font().style(FontStyle::Bold).color(&BLACK),
    ))?;
    top.draw(&Text::new(
        ts.run.clone(),
        (70, 36),
        (FONT, 17).into_font().color(&RGBColor(80, 80, 80)),
    ))?;
    match chart {
        Chart::MessagesIn | Chart::MessagesOut => draw_messages(&root, &body, chart, ts, sub)?,
        Chart::Latency => draw_latency(&root, &body, ts, sub)?,
    }
    root.present()?;
    Ok(())
}

/// The x axis of every chart: seconds since the clients started.
const X_DESC: &str = "time since the clients started (s)";

/// The plot area of every chart, under its title: the legend's room on the right, the axes'
/// labels on the left and below.
fn plot<'a, DB: DrawingBackend>(body: &'a DrawingArea<DB, Shift>) -> ChartBuilder<'a, 'a, DB> {
    let mut builder = ChartBuilder::on(body);
    builder
        .margin_left(10)
        .margin_right(LEGEND_WIDTH)
        .margin_bottom(10)
        .x_label_area_size(50)
        .y_label_area_size(70);
    builder
}

/// Every chart's grid and axes, the time axis labelled; the caller labels the y axis (`y_desc`
/// says what it measures) and draws it.
fn time_mesh<'a, 'b, DB, Y>(
    c: &'b mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, Y>>,
    y_desc: &str,
) -> MeshStyle<'a, 'b, RangedCoordf64, Y, DB>
where
    DB: DrawingBackend,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut mesh = c.configure_mesh();
    mesh.x_desc(X_DESC)
        .y_desc(y_desc)
        .label_style((FONT, 16))
        .axis_desc_style((FONT, 18))
        .light_line_style(WHITE.mix(0.0))
        .x_label_formatter(&whole);
    mesh
}

/// An axis label in whole units.
fn whole(v: &f64) -> String {
    format!("{v:.0}")
}

/// Messages per second in or out of each server, one line per server.
fn draw_messages<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    body: &DrawingArea<DB, Shift>,
    chart: Chart,
    ts: &Timeseries,
    sub: &str,
) -> Result<(), DrawError> {
    let x_max = ts.end_s.max(1.0);
    let outgoing = chart == Chart::MessagesOut;
    let lines: Vec<Vec<(f64, f64)>> = (0..ts.nodes.len())
        .map(|n| rates(&ts.samples, n, outgoing))
        .collect();
    let y_top = lines
        .iter()
        .flatten()
        .map(|p| p.1)
        .fold(0.0, f64::max)
        .max(1.0)
        // Headroom for the partition labels above the lines.
        * 1.25;
    let mut c = plot(body).build_cartesian_2d(0.0..x_max, 0.0..y_top)?;
    time_mesh(&mut c, sub).y_label_formatter(&whole).draw()?;
    shade_partitions(&mut c, root, ts, 0.0, y_top)?;
    for (i, pts) in lines.into_iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        c.draw_series(LineSeries::new(pts, color.stroke_width(2)))?;
    }
    let mut entries = partition_entry(ts);
    for (i, node) in ts.nodes.iter().enumerate() {
        entries.push((node.clone(), Mark::Line(PALETTE[i % PALETTE.len()])));
    }
    legend(root, &entries)
}

/// Every operation's latency, a dot per answered one and a cross per unknown outcome.
fn draw_latency<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    body: &DrawingArea<DB, Shift>,
    ts: &Timeseries,
    sub: &str,
) -> Result<(), DrawError> {
    let x_max = ts.end_s.max(1.0);
    let lat = |o: &OpSample| o.latency_ms.max(0.01);
    // Headroom (on a log axis) for the partition labels.
    let hi = ts.ops.iter().map(lat).fold(1.0, f64::max) * 2.0;
    // From the decade below the fastest operation, so the axis has a label under it.
    let fastest = ts.ops.iter().map(lat).fold(hi, f64::min).min(hi / 10.0);
    let lo = 10f64.powf(fastest.log10().floor());
    let mut c = plot(body).build_cartesian_2d(0.0..x_max, (lo..hi).log_scale())?;
    time_mesh(&mut c, sub)
        // Enough that plotters marks 1..9 in every decade; only 1, 2 and 5 are
        // labelled, so the labels never crowd.
        .y_labels(30)
        // Log paper: a faint line at every mark.
        .bold_line_style(BLACK.mix(0.08))
        .y_label_formatter(&|v| format_ms(*v))
        .draw()?;
    shade_partitions(&mut c, root, ts, lo, hi)?;
    for (i, kind) in [OpKind::Get, OpKind::Put, OpKind::Cas]
        .into_iter()
        .enumerate()
    {
        let color = PALETTE[i];
        let pts = ts.ops.iter().filter(|o| o.ok && o.kind == kind);
        c.draw_series(pts.map(|o| Circle::new((o.at_s, lat(o)), 2, color.filled())))?;
    }
    let unknown = PALETTE[3];
    c.draw_series(
        ts.ops
            .iter()
            .filter(|o| !o.ok)
            .map(|o| Cross::new((o.at_s, lat(o)), 5, unknown.stroke_width(2))),
    )?;
    let mut entries = partition_entry(ts);
    for (i, kind) in [OpKind::Get, OpKind::Put, OpKind::Cas]
        .into_iter()
        .enumerate()
    {
        entries.push((format!("{} ok", kind.as_str()), Mark::Dot(PALETTE[i])));
    }
    entries.push(("unknown (timed out)".to_string(), Mark::Cross(unknown)));
    legend(root, &entries)
}

fn format_ms(v: f64) -> String {
    let leading = v / 10f64.powf(v.log10().floor());
    if ![1.0, 2.0, 5.0].iter().any(|d| (leading - d).abs() < 0.01) {
        return String::new();
    }
    if v >= 1000.0 {
        format!("{:.0} s", v / 1000.0)
    } else if v >= 1.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Shades every partition window from `y0` to `y1` and, where it fits, writes its groups at
/// the top of the window.
fn shade_partitions<'a, DB, Y>(
    c: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, Y>>,
    root: &DrawingArea<DB, Shift>,
    ts: &Timeseries,
    y0: f64,
    y1: f64,
) -> Result<(), DrawError>
where
    DB: DrawingBackend + 'a,
    Y: Ranged<ValueType = f64>,
{
    let font = (FONT, 15).into_font().color(&RGBColor(60, 60, 60));
    for (i, w) in ts.partitions.iter().enumerate() {
        let shade = SHADES[i % SHADES.len()];
        c.draw_series(std::iter::once(Rectangle::new(
            [(w.from_s, y0), (w.to_s, y1)],
            shade.mix(SHADE_ALPHA).filled(),
        )))?;
        // The label goes on one line if it fits the window, else one group per line, else
        // nowhere: an overlapping label is worse than none (the groups are in summary.json).
        let (left, top) = c.backend_coord(&(w.from_s, y1));
        let (right, _) = c.backend_coord(&(w.to_s, y1));
        let room = (right - left - 6).max(0) as u32;
        let labels = w.group_labels();
        let one_line = labels.join(" ");
        let width = |t: &str| root.estimate_text_size(t, &font).map_or(u32::MAX, |s| s.0);
        let lines = if width(&one_line) <= room {
            vec![one_line]
        } else if labels.iter().all(|l| width(l) <= room) {
            labels
        } else {
            Vec::new()
        };
        for (k, line) in lines.into_iter().enumerate() {
            root.draw(&Text::new(
                line,
                (left + 4, top + 4 + 18 * k as i32),
                font.clone(),
            ))?;
        }
    }
    Ok(())
}

/// How a legend entry is marked: as its series is drawn.
enum Mark {
    Line(RGBColor),
    Dot(RGBColor),
    Cross(RGBColor),
    Shade(RGBColor),
}

fn partition_entry(ts: &Timeseries) -> Vec<(String, Mark)> {
    if ts.partitions.is_empty() {
        return Vec::new();
    }
    vec![(
        "partition (groups on top)".to_string(),
        Mark::Shade(SHADES[0]),
    )]
}

/// Draws the legend in the margin right of the plot, where it never hides a line, a point or
/// a partition label. (plotters' own legend is placed inside the plot, and clipped there.)
fn legend<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    entries: &[(String, Mark)],
) -> Result<(), DrawError> {
    let (width, _) = root.dim_in_pixel();
    let x = width as i32 - LEGEND_WIDTH as i32 + 16;
    let y0 = 80;
    let row = 24;
    let font = (FONT, 16).into_font().color(&BLACK);
    for (k, (label, mark)) in entries.iter().enumerate() {
        let y = y0 + row * k as i32;
        match *mark {
            Mark::Line(c) => root.draw(&PathElement::new(
                vec![(x, y), (x + 24, y)],
                c.stroke_width(3),
            )),
            Mark::Dot(c) => root.draw(&Circle::new((x + 12, y), 4, c.filled())),
            Mark::Cross(c) => root.draw(&Cross::new((x + 12, y), 5, c.stroke_width(2))),
            Mark::Shade(c) => root.draw(&Rectangle::new(
                [(x, y - 7), (x + 24, y + 7)],
                c.mix(SHADE_ALPHA * 1.5).filled(),
            )),
        }?;
        root.draw(&Text::new(
            label.clone(),
            (x + 32, y),
            font.clone().pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synthetic() -> Timeseries {
        let nodes: Vec<String> = (1..=3).map(|i| format!("server{i}")).collect();
        let samples = (0..=20)
            .map(|t| MessageSample {
                at_s: t as f64 * 0.5,
                messages_in: (1..=3).map(|n| Some(t * 10 * n)).collect(),
                messages_out: (1..=3).map(|n| Some(t * 5 * n)).collect(),
            })
            .collect();
        let ops = (0..50)
            .map(|i| OpSample {
                at_s: i as f64 * 0.2,
                latency_ms: 5.0 + i as f64,
                kind: [OpKind::Get, OpKind::Put, OpKind::Cas][i % 3],
                ok: i % 10 != 0,
            })
            .collect();
        Timeseries {
            run: "synthetic: 3 servers".to_string(),
            nodes,
            samples,
            ops,
            ops_not_recorded: 0,
            partitions: PartitionWindow::from_log(
                [
                    (0.0, vec![]),
                    (3.0, vec![vec![1, 2], vec![3]]),
                    (6.0, vec![vec![1], vec![2, 3]]),
                    (8.0, vec![]),
                ],
                10.0,
            ),
            end_s: 10.0,
        }
    }

    #[test]
    fn windows_follow_the_fault_log() {
        let w = synthetic().partitions;
        assert_eq!(w.len(), 2);
        assert_eq!((w[0].from_s, w[0].to_s), (3.0, 6.0));
        assert_eq!((w[1].from_s, w[1].to_s), (6.0, 8.0));
        assert_eq!(w[1].group_labels(), ["{1}", "{2,3}"]);
        // A split still on at the end of the run closes there.
        let open = PartitionWindow::from_log([(2.0, vec![vec![1], vec![2]])], 5.0);
        assert_eq!(open[0].to_s, 5.0);
    }

    #[test]
    fn rates_are_per_second_and_skip_gaps() {
        let mut ts = synthetic();
        assert_eq!(rates(&ts.samples, 1, false)[0], (0.5, 40.0));
        assert_eq!(rates(&ts.samples, 0, true)[0], (0.5, 10.0));
        ts.samples[1].messages_in[0] = None;
        let r = rates(&ts.samples, 0, false);
        assert_eq!(r.len(), 18, "both intervals touching the gap are skipped");
    }

    #[test]
    fn ops_and_samples_stay_bounded() {
        let mut ts = Timeseries::default();
        let op = OpSample {
            at_s: 0.0,
            latency_ms: 1.0,
            kind: OpKind::Get,
            ok: true,
        };
        for _ in 0..MAX_OPS + 5 {
            ts.record_op(op);
        }
        assert_eq!((ts.ops.len(), ts.ops_not_recorded), (MAX_OPS, 5));
        let day = sample_interval(Duration::from_secs(86_400));
        assert!(86_400.0 / day.as_secs_f64() <= MAX_SAMPLES as f64);
        assert_eq!(
            sample_interval(Duration::from_secs(20)),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn an_empty_run_still_draws() {
        let dir = tempfile::tempdir().expect("temp dir");
        let written = write_charts(dir.path(), &Timeseries::default()).expect("charts");
        assert!(written
            .iter()
            .all(|p| p.metadata().is_ok_and(|m| m.len() > 0)));
    }

    #[test]
    fn renders_png_and_svg() {
        let dir = tempfile::tempdir().expect("temp dir");
        let written = write_charts(dir.path(), &synthetic()).expect("charts");
        // To look at the synthetic charts: MQPAXOS_KEEP_CHARTS=/some/dir cargo test charts
        if let Ok(keep) = std::env::var("MQPAXOS_KEEP_CHARTS") {
            write_charts(Path::new(&keep), &synthetic()).expect("charts");
        }
        assert_eq!(written.len(), 6);
        for name in ["messages_in", "messages_out", "latency"] {
            let png = std::fs::read(dir.path().join(format!("{name}.png"))).expect("png");
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
            let w = u32::from_be_bytes([png[16], png[17], png[18], png[19]]);
            let h = u32::from_be_bytes([png[20], png[21], png[22], png[23]]);
            assert_eq!((w, h), SIZE);
            let svg = std::fs::read_to_string(dir.path().join(format!("{name}.svg"))).expect("svg");
            assert!(svg.starts_with("<svg"));
            if name != "latency" {
                let lines = svg
                    .lines()
                    .filter(|l| l.starts_with("<polyline") && l.contains("stroke-width=\"2\""))
                    .count();
                assert_eq!(lines, 3, "{name}: one line per server");
                for i in 1..=3 {
                    // plotters writes each text element's content on a line of its own.
                    assert!(
                        svg.contains(&format!("\nserver{i}\n</text>")),
                        "{name}: server{i}"
                    );
                }
            }
            assert!(svg.contains("{2,3}"), "{name}: partition label");
        }
    }
}
