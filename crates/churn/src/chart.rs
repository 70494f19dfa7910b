//! The SVG chart: p99 checkout latency (log scale) and throughput over time, one colour per
//! pool, faults marked in red and token rotations as short ticks.

use std::path::Path;

use plotters::prelude::*;

use crate::pools::PoolKind;
use crate::report::{RunResult, Sample};

fn colour(p: PoolKind) -> RGBColor {
    match p {
        PoolKind::Ours => RGBColor(31, 119, 180),
        PoolKind::Baseline => RGBColor(40, 40, 40),
        PoolKind::PerConnect => RGBColor(255, 127, 14),
        PoolKind::Rebuild => RGBColor(44, 160, 44),
        PoolKind::SqlxOurs => RGBColor(148, 103, 189),
        PoolKind::SqlxBaseline => RGBColor(127, 127, 127),
    }
}

/// Contiguous runs of one pool's samples (pools take turns, so there are gaps).
fn segments(series: &[Sample], pool: PoolKind) -> Vec<Vec<&Sample>> {
    let mut out: Vec<Vec<&Sample>> = Vec::new();
    let mut last_t = f64::NEG_INFINITY;
    for s in series.iter().filter(|s| s.pool == pool) {
        if s.t - s.dt - last_t > 0.5 || out.is_empty() {
            out.push(Vec::new());
        }
        if let Some(seg) = out.last_mut() {
            seg.push(s);
        }
        last_t = s.t;
    }
    out
}

/// Writes the chart to `path`.
pub fn write_svg(r: &RunResult, path: &Path) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("chart {}: {e}", path.display());
    let root = SVGBackend::new(path, (1200, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (top, bottom) = root.split_vertically(400);
    let tmax = r
        .series
        .iter()
        .map(|s| s.t)
        .fold(1.0f64, f64::max)
        .max(r.faults.iter().map(|m| m.t).fold(0.0, f64::max));
    let pools: Vec<PoolKind> = r.pools.iter().map(|p| p.pool).collect();

    // Top: p99 checkout latency, log scale.
    let lat: Vec<f64> = r
        .series
        .iter()
        .map(|s| s.checkout_p99_ms)
        .filter(|v| *v > 0.0)
        .collect();
    let ymin = lat.iter().copied().fold(f64::INFINITY, f64::min).min(0.01);
    let ymax = lat.iter().copied().fold(1.0f64, f64::max) * 1.5;
    let mut c = ChartBuilder::on(&top)
        .caption(
            "p99 checkout latency per second (ms, log)",
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..tmax, (ymin.max(0.001)..ymax).log_scale())
        .map_err(|e| err(&e))?;
    c.configure_mesh()
        .x_desc("seconds")
        .y_desc("ms")
        .draw()
        .map_err(|e| err(&e))?;
    for &p in &pools {
        let col = colour(p);
        let mut first = true;
        for seg in segments(&r.series, p) {
            let pts: Vec<(f64, f64)> = seg
                .iter()
                .filter(|s| s.checkout_p99_ms > 0.0)
                .map(|s| (s.t, s.checkout_p99_ms))
                .collect();
            let ann = c
                .draw_series(LineSeries::new(pts, col.stroke_width(2)))
                .map_err(|e| err(&e))?;
            if first {
                ann.label(p.name()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2))
                });
                first = false;
            }
        }
    }
    for m in &r.faults {
        c.draw_series(std::iter::once(PathElement::new(
            vec![(m.t, ymin.max(0.001)), (m.t, ymax)],
            RED.stroke_width(1),
        )))
        .map_err(|e| err(&e))?;
    }
    for m in &r.rotations {
        let col = m.pool.map(colour).unwrap_or(RGBColor(128, 128, 128));
        c.draw_series(std::iter::once(PathElement::new(
            vec![(m.t, ymax / 1.5), (m.t, ymax)],
            col.stroke_width(1),
        )))
        .map_err(|e| err(&e))?;
    }
    c.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| err(&e))?;

    // Bottom: throughput.
    let tmax_rps = r
        .series
        .iter()
        .map(|s| s.throughput_rps)
        .fold(1.0f64, f64::max)
        * 1.1;
    let mut c = ChartBuilder::on(&bottom)
        .caption(
            "throughput (requests/s); red: faults, top ticks: token rotations",
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..tmax, 0f64..tmax_rps)
        .map_err(|e| err(&e))?;
    c.configure_mesh()
        .x_desc("seconds")
        .y_desc("req/s")
        .draw()
        .map_err(|e| err(&e))?;
    for &p in &pools {
        let col = colour(p);
        for seg in segments(&r.series, p) {
            let pts: Vec<(f64, f64)> = seg.iter().map(|s| (s.t, s.throughput_rps)).collect();
            c.draw_series(LineSeries::new(pts, col.stroke_width(2)))
                .map_err(|e| err(&e))?;
        }
    }
    for m in &r.faults {
        c.draw_series(std::iter::once(PathElement::new(
            vec![(m.t, 0.0), (m.t, tmax_rps)],
            RED.stroke_width(1),
        )))
        .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
