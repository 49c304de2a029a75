//! The benchmark plots (PNG, plotters' bitmap backend), drawn from the
//! results/*.jsonl that `cargo xtask bench` writes, so they can be redrawn
//! without rerunning anything (`cargo xtask plot`).

use std::path::Path;

use anyhow::{Context as _, Result, anyhow};
use plotters::{
    coord::{Shift, ranged1d::SegmentValue},
    prelude::*,
    style::{
        FontStyle,
        text_anchor::{HPos, Pos, VPos},
    },
};

use crate::bench::{Stat, groups, stat, undisturbed};

/// The plots' font (plotters draws text with ab_glyph from a font file).
pub const PLOT_PACKAGES: [(&str, &str); 1] = [(
    "fonts-dejavu-core",
    "DejaVu Sans, the font of the benchmark plots",
)];
const PLOT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

const FONT: &str = "sans-serif";

/// Registers DejaVu Sans as plotters' "sans-serif" (ab_glyph draws from
/// the file's bytes; no fontconfig).
fn font() -> Result<()> {
    let bytes = std::fs::read(PLOT_FONT)
        .with_context(|| format!("reading {} (Debian package fonts-dejavu-core)", PLOT_FONT))?;
    plotters::style::register_font(FONT, FontStyle::Normal, Box::leak(bytes.into_boxed_slice()))
        .map_err(|_| anyhow!("{} is not a usable font", PLOT_FONT))
}

/// Draws results/*.png from results/*.jsonl.
pub fn redraw(results: &Path) -> Result<()> {
    for f in plot(results)? {
        eprintln!("xtask: wrote {f}");
    }
    Ok(())
}

fn plot(results: &Path) -> Result<Vec<String>> {
    font()?;
    let mut written = Vec::new();
    let read = |f: &str| {
        std::fs::read_to_string(results.join(f))
            .with_context(|| format!("reading {}", results.join(f).display()))
    };
    let kernel = read("kernel.jsonl")?;
    let out = results.join("kernel.png");
    kernel_chart(&kernel, &out)?;
    written.push(out.display().to_string());
    let e2e = read("e2e.jsonl")?;
    let out = results.join("e2e.png");
    e2e_chart(&e2e, &out)?;
    written.push(out.display().to_string());
    Ok(written)
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// One horizontal bar per row (top to bottom in `rows` order), the bar at
/// the median, a whisker from min to max, the median written beside it.
fn hbars(
    area: &Area,
    caption: &str,
    x_desc: &str,
    labels: Option<&[String]>,
    rows: &[(Stat, RGBColor, String)],
    label_width: u32,
    floor: Option<(f64, &str)>,
) -> Result<()> {
    let n = rows.len();
    let xmax = rows.iter().map(|r| r.0.max).fold(0.0, f64::max) * 1.3;
    // Segment 0 is drawn at the bottom: row i goes to segment n-1-i.
    let seg = |i: usize| n - 1 - i;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 22))
        .margin(12)
        .margin_right(24)
        .x_label_area_size(50)
        .y_label_area_size(label_width)
        // An integer range is inclusive in plotters: 0..n-1 is n segments.
        .build_cartesian_2d(0f64..xmax, (0..n - 1).into_segmented())
        .map_err(|e| anyhow!("{e}"))?;
    let names: Vec<String> = labels.map(|l| l.to_vec()).unwrap_or_default();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(215, 215, 215))
        .x_desc(x_desc)
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(s) if *s < n => {
                names.get(n - 1 - *s).cloned().unwrap_or_default()
            }
            _ => String::new(),
        })
        .x_label_formatter(&|v| {
            if xmax >= 10_000.0 {
                format!("{}k", (v / 1000.0).round())
            } else if xmax >= 10.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.2}")
            }
        })
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 16))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .draw_series(rows.iter().enumerate().map(|(i, (s, c, _))| {
            let mut r = Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(seg(i))),
                    (s.median, SegmentValue::Exact(seg(i) + 1)),
                ],
                c.filled(),
            );
            r.set_margin(5, 5, 0, 0);
            r
        }))
        .map_err(|e| anyhow!("{e}"))?;
    // Whiskers from min to max with end caps (caps in pixels).
    let whisker = BLACK.stroke_width(2);
    chart
        .draw_series(rows.iter().enumerate().map(|(i, (s, _, _))| {
            PathElement::new(
                vec![
                    (s.min, SegmentValue::CenterOf(seg(i))),
                    (s.max, SegmentValue::CenterOf(seg(i))),
                ],
                whisker,
            )
        }))
        .map_err(|e| anyhow!("{e}"))?;
    for (i, (s, _, _)) in rows.iter().enumerate() {
        chart
            .draw_series([s.min, s.max].map(|x| {
                EmptyElement::at((x, SegmentValue::CenterOf(seg(i))))
                    + PathElement::new(vec![(0, -7), (0, 7)], whisker)
            }))
            .map_err(|e| anyhow!("{e}"))?;
    }
    let style = TextStyle::from((FONT, 15).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    chart
        .draw_series(rows.iter().enumerate().map(|(i, (s, _, text))| {
            Text::new(
                text.clone(),
                (s.max + xmax * 0.012, SegmentValue::CenterOf(seg(i))),
                style.clone(),
            )
        }))
        .map_err(|e| anyhow!("{e}"))?;
    if let Some((x, what)) = floor {
        let red = RGBColor(200, 30, 30);
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x, SegmentValue::Exact(0)), (x, SegmentValue::Exact(n))],
                red.stroke_width(2),
            )))
            .map_err(|e| anyhow!("{e}"))?
            .label(what)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], red.stroke_width(2)));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font((FONT, 15))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
    }
    Ok(())
}

fn kernel_chart(lines: &str, out: &Path) -> Result<()> {
    let g = groups(lines, &["hook", "case"]);
    let floor_of = |hook: &str| {
        g.iter()
            .find(|(k, _)| k[0] == hook && k[1].starts_with("floor"))
            .and_then(|(_, r)| stat(r, "mean_ns"))
    };
    let floor = floor_of("xdp").context("kernel.jsonl has no floor case")?;
    let mut labels = Vec::new();
    let mut rows = Vec::new();
    for (k, r) in &g {
        let (Some(s), Some(f)) = (stat(r, "mean_ns"), floor_of(&k[0])) else {
            continue;
        };
        let color = if k[1].starts_with("floor") || k[1].starts_with("bound") {
            RGBColor(150, 150, 150)
        } else if k[1].starts_with("pass") {
            RGBColor(158, 202, 225)
        } else if k[0] == "tc" {
            RGBColor(44, 160, 44)
        } else {
            RGBColor(31, 119, 180)
        };
        labels.push(format!("{}: {}", k[0], k[1]));
        rows.push((
            s,
            color,
            format!(
                "{:.0} ns  ({:.1}× its floor)",
                s.median,
                s.median / f.median
            ),
        ));
    }
    let root = BitMapBackend::new(out, (1200, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    hbars(
        &root,
        "Cost of one run per hook and case (BPF_PROG_TEST_RUN)",
        "ns per run: mean of single runs; bar = median of the repeats, whisker = min-max",
        Some(&labels),
        &rows,
        340,
        Some((floor.median, "XDP floor: bare reflector")),
    )?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

/// Short row labels for the end-to-end plot.
fn e2e_label(k: &[String]) -> String {
    let server = match k[0].as_str() {
        s if s.starts_with("floor, tc") => "floor tc",
        s if s.starts_with("floor, XDP") => "floor XDP",
        s if s.starts_with("hsdns, tc") => "hsdns tc",
        s if s.starts_with("hsdns, XDP") => "hsdns XDP",
        s if s.starts_with("hsdns") => "hsdns userspace",
        s if s.starts_with("Knot DNS 3.2 over AF_XDP") => "Knot AF_XDP",
        s if s.starts_with("Knot") => "Knot DNS",
        s if s.starts_with("Unbound") => "Unbound",
        s => s,
    };
    let mix = k[1].split(':').next().unwrap_or("");
    let mix = match mix {
        "a" => "a: pod hits",
        "b" => "b: mix",
        "c" => "c: 1/3/20/100",
        m => m,
    };
    let cores = if k[2].contains("no RPS") {
        ", no RPS"
    } else {
        ""
    };
    format!("{server} · {mix}{cores}")
}

fn e2e_color(k: &[String]) -> RGBColor {
    if k[2].contains("no RPS") {
        return RGBColor(150, 150, 150);
    }
    match k[0].as_str() {
        s if s.starts_with("floor") => RGBColor(120, 120, 120),
        s if s.starts_with("hsdns, tc") => RGBColor(31, 119, 180),
        s if s.starts_with("hsdns, XDP") => RGBColor(107, 174, 214),
        s if s.starts_with("hsdns") => RGBColor(158, 202, 225),
        s if s.starts_with("Knot") => RGBColor(44, 160, 44),
        _ => RGBColor(255, 127, 14),
    }
}

fn e2e_chart(lines: &str, out: &Path) -> Result<()> {
    let (lines, _) = undisturbed(lines);
    let g = groups(&lines, &["server", "mix", "cores"]);
    let rate = g
        .first()
        .and_then(|(_, r)| stat(r, "fixed_rate_qps"))
        .map(|s| s.median)
        .unwrap_or(0.0);
    // Rows with no undisturbed run are left out.
    let g: Vec<_> = g
        .into_iter()
        .filter(|(_, r)| stat(r, "qps").is_some() && stat(r, "latency_p99_ms").is_some())
        .collect();
    let labels: Vec<String> = g.iter().map(|(k, _)| e2e_label(k)).collect();
    let series = |field: &str, fmt: &dyn Fn(f64) -> String| -> Vec<(Stat, RGBColor, String)> {
        g.iter()
            .filter_map(|(k, r)| {
                let s = stat(r, field)?;
                Some((s, e2e_color(k), fmt(s.median)))
            })
            .collect()
    };
    let qps = series("qps", &|v| format!("{:.0}k", v / 1000.0));
    let p99 = series("latency_p99_ms", &|v| format!("{v:.3} ms"));
    let root = BitMapBackend::new(out, (1500, 1100)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let root = root
        .titled(
            "End to end: dnsperf in a pod (CPU 1) → server on the node (CPU 0)",
            (FONT, 24),
        )
        .map_err(|e| anyhow!("{e}"))?;
    let (left, right) = root.split_horizontally(880);
    hbars(
        &left,
        "Throughput, saturating client",
        "queries per second (bar = median of the repeats, whisker = min-max)",
        Some(&labels),
        &qps,
        300,
        None,
    )?;
    hbars(
        &right,
        &format!("p99 latency at a fixed {:.0}k QPS", rate / 1000.0),
        "ms (bar = median, whisker = min-max)",
        None,
        &p99,
        8,
        None,
    )?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
