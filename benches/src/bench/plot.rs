//! SVG plots of a report (plotters, SVG backend only, so no font or image
//! libraries are needed): throughput against callers per scenario, and the
//! latency CDF of each system at one load of each scenario.

use crate::bench::report::Row;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// Plot size in pixels.
const SIZE: (u32, u32) = (900, 540);

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// The systems of `rows`, in first-seen order.
fn systems(rows: &[&Row]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in rows {
        if !out.contains(&r.system) {
            out.push(r.system.clone());
        }
    }
    out
}

/// One chart: a log-scaled x axis, a linear y axis, one labelled line per
/// series.
struct Chart<'a> {
    title: &'a str,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
    x_desc: &'a str,
    y_desc: &'a str,
    legend: SeriesLabelPosition,
}

impl Chart<'_> {
    fn draw(self, series: Vec<(String, Vec<(f64, f64)>)>, path: &Path) -> Result<(), String> {
        let root = SVGBackend::new(path, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(self.title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(self.x.log_scale(), self.y)
            .map_err(err)?;
        // Whole numbers without ".0"; fractions (latency below 1 ms, the
        // CDF's axis) as they are.
        let label = |v: &f64| {
            if v.fract() == 0.0 {
                format!("{v:.0}")
            } else {
                format!("{v}")
            }
        };
        chart
            .configure_mesh()
            .x_desc(self.x_desc)
            .y_desc(self.y_desc)
            .x_label_formatter(&label)
            .y_label_formatter(&label)
            .draw()
            .map_err(err)?;
        for (i, (label, points)) in series.into_iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(err)?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(self.legend)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)
    }
}

/// Throughput against callers, one line per system, for closed-loop rows
/// of one scenario, line count and batch size.
pub fn throughput(rows: &[&Row], title: &str, path: &Path) -> Result<(), String> {
    let series = systems(rows)
        .into_iter()
        .map(|system| {
            let points = rows
                .iter()
                .filter(|r| r.system == system)
                .filter_map(|r| r.callers.map(|c| (c as f64, r.throughput_per_s)))
                .collect();
            (system, points)
        })
        .collect();
    let x_max = rows
        .iter()
        .filter_map(|r| r.callers)
        .max()
        .unwrap_or(1)
        .max(2) as f64
        * 1.5;
    let y_max = rows.iter().map(|r| r.throughput_per_s).fold(1.0, f64::max) * 1.1;
    Chart {
        title,
        x: 0.8..x_max,
        y: 0.0..y_max,
        x_desc: "concurrent callers (log)",
        y_desc: "per second",
        legend: SeriesLabelPosition::UpperLeft,
    }
    .draw(series, path)
}

/// Latency CDF (log latency against fraction of calls), one line per row.
pub fn latency_cdf(rows: &[&Row], title: &str, path: &Path) -> Result<(), String> {
    let all = rows.iter().flat_map(|r| r.cdf.iter());
    let x_min = all.clone().map(|p| p.0).fold(f64::MAX, f64::min).max(0.001) * 0.8;
    let x_max = all.map(|p| p.0).fold(0.01, f64::max) * 1.25;
    let series = rows
        .iter()
        .map(|r| (r.system.clone(), r.cdf.clone()))
        .collect();
    Chart {
        title,
        x: x_min.min(x_max / 2.0)..x_max,
        y: 0.0..1.0,
        x_desc: "latency, ms (log)",
        y_desc: "fraction of calls",
        legend: SeriesLabelPosition::LowerRight,
    }
    .draw(series, path)
}

/// Every plot of `rows` into `dir`; the files written.
pub fn all(rows: &[Row], dir: &Path) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(err)?;
    let mut written = Vec::new();
    let mut cells: Vec<(String, usize, usize, String)> = Vec::new();
    for r in rows {
        let key = (r.scenario.clone(), r.lines, r.batch, r.load.clone());
        if !cells.contains(&key) {
            cells.push(key);
        }
    }
    for (scenario, lines, batch, load) in cells {
        let of_cell: Vec<&Row> = rows
            .iter()
            .filter(|r| {
                r.scenario == scenario && r.lines == lines && r.batch == batch && r.load == load
            })
            .collect();
        let stem = format!(
            "{scenario}-{lines}l{}",
            if batch > 1 {
                format!("-batch{batch}")
            } else {
                String::new()
            }
        );
        let levels: Vec<usize> = {
            let mut l: Vec<usize> = of_cell.iter().filter_map(|r| r.callers).collect();
            l.sort_unstable();
            l.dedup();
            l
        };
        if levels.len() > 1 {
            let path = dir.join(format!("throughput-{stem}.svg"));
            throughput(
                &of_cell,
                &format!("{scenario}, {lines}-line: throughput vs callers"),
                &path,
            )?;
            written.push(path);
        }
        // The CDF at 64 callers where there is such a level, else the
        // largest; open-loop rows have one rate.
        let level = levels
            .iter()
            .copied()
            .find(|&c| c == 64)
            .or(levels.last().copied());
        let at_level: Vec<&Row> = of_cell
            .iter()
            .copied()
            .filter(|r| r.callers == level && !r.cdf.is_empty())
            .collect();
        if !at_level.is_empty() {
            let what = level.map_or_else(|| at_level[0].load_label(), |c| format!("{c} callers"));
            let path = dir.join(format!("latency-cdf-{stem}.svg"));
            latency_cdf(
                &at_level,
                &format!("{scenario}, {lines}-line: latency CDF at {what}"),
                &path,
            )?;
            written.push(path);
        }
    }
    Ok(written)
}
