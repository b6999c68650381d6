//! `holdfast-bench`: how fast Holdfast is on this machine, beside what a
//! team would use instead (PostgreSQL, Redis + Lua) and beside what the
//! transport allows (the no-op gRPC floor), all in one run.
//!
//! ```sh
//! cargo build --release -p holdfast-server -p holdfast-bench
//! target/release/holdfast-bench --quick --json bench.json
//! target/release/holdfast-bench --scenario hot --json hot.json
//! ```
//!
//! It starts every system itself (real processes on 127.0.0.1, data in
//! temp dirs, installing PostgreSQL and Redis with apt when missing and
//! allowed), runs the scenarios, and writes a JSON report, a Markdown
//! report and SVG plots. Exit status: 0 done; 1 the harness failed (a
//! Holdfast system or the floor could not run, a file could not be
//! written, bad arguments); 3 a Holdfast flash sale did not sell exactly
//! its units.

/// mimalloc, as in the server: the gRPC stack allocates per request.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use holdfast_bench::bench::plan::Options;
use holdfast_bench::bench::plot;
use holdfast_bench::bench::report::markdown;
use holdfast_bench::bench::run;
use holdfast_bench::bench::scenario::Scenario;
use holdfast_bench::bench::system::SystemId;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(about = "Holdfast against PostgreSQL, Redis and the gRPC floor, side by side")]
struct Args {
    /// Scenarios to run (comma-separated or repeated): hot, uniform, zipf,
    /// flash, lifecycle, batch, open. Default: all.
    #[arg(long, value_delimiter = ',')]
    scenario: Vec<String>,
    /// Systems (comma-separated): floor, holdfast-1n, holdfast-3n,
    /// postgres, postgres-async, redis-always, redis-everysec. Default: all.
    #[arg(long, value_delimiter = ',')]
    systems: Vec<String>,
    /// CI's short run (about 2 minutes): a small catalogue, 1 s cells, few
    /// levels.
    #[arg(long)]
    quick: bool,
    /// Where the JSON report goes.
    #[arg(long, default_value = "holdfast-bench.json")]
    json: PathBuf,
    /// Where the Markdown report goes (default: the JSON path with `.md`).
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Directory of the SVG plots (default: `<json stem>-plots` beside it).
    #[arg(long)]
    plots: Option<PathBuf>,
    /// Closed-loop levels (comma-separated callers) instead of the mode's.
    #[arg(long, value_delimiter = ',')]
    levels: Vec<usize>,
    /// Measured seconds per cell instead of the mode's.
    #[arg(long)]
    seconds: Option<f64>,
    /// Open-loop arrivals per second instead of the mode's.
    #[arg(long)]
    rate: Option<u64>,
    /// Flash-sale buyers released at once.
    #[arg(long, default_value_t = 10_000)]
    buyers: usize,
    /// Catalogue SKUs (each at 4 locations) instead of the mode's.
    #[arg(long)]
    skus: Option<u32>,
    /// Never install a missing peer with apt (skip it instead).
    #[arg(long)]
    no_install: bool,
}

/// Upper bounds that keep a mistyped option from exhausting the machine.
const CALLERS_MAX: usize = 100_000;
const BUYERS_MAX: usize = 100_000;
const SKUS_MAX: u32 = 10_000_000;
const SECONDS_MAX: f64 = 3_600.0;

fn options(args: &Args) -> Result<Options, String> {
    let scenarios = if args.scenario.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        args.scenario
            .iter()
            .map(|s| Scenario::parse(s))
            .collect::<Result<_, _>>()?
    };
    let systems = if args.systems.is_empty() {
        SystemId::ALL.to_vec()
    } else {
        args.systems
            .iter()
            .map(|s| SystemId::parse(s))
            .collect::<Result<_, _>>()?
    };
    if args.levels.iter().any(|&c| c == 0 || c > CALLERS_MAX) {
        return Err(format!("--levels takes 1 to {CALLERS_MAX} callers"));
    }
    if args.buyers > BUYERS_MAX {
        return Err(format!("--buyers takes at most {BUYERS_MAX}"));
    }
    if args.skus.is_some_and(|s| s == 0 || s > SKUS_MAX) {
        return Err(format!("--skus takes 1 to {SKUS_MAX}"));
    }
    if args.seconds.is_some_and(|s| !(s > 0.0 && s <= SECONDS_MAX)) {
        return Err(format!(
            "--seconds takes more than 0 and at most {SECONDS_MAX}"
        ));
    }
    if args.rate == Some(0) {
        return Err("--rate takes a positive number".into());
    }
    Ok(Options {
        scenarios,
        systems,
        quick: args.quick,
        levels: (!args.levels.is_empty()).then(|| args.levels.clone()),
        seconds: args.seconds,
        open_rate: args.rate,
        buyers: args.buyers,
        skus: args.skus,
        install: !args.no_install,
        command: std::env::args().collect::<Vec<_>>().join(" "),
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    let options = match options(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("holdfast-bench: {e}");
            return ExitCode::from(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("holdfast-bench: tokio runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let outcomes = match runtime.block_on(run::run(&options)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("holdfast-bench: {e}");
            return ExitCode::from(1);
        }
    };
    let report = &outcomes.report;
    let md = markdown(report);
    println!("{md}");
    let md_path = args
        .markdown
        .clone()
        .unwrap_or_else(|| args.json.with_extension("md"));
    let plots_dir = args.plots.clone().unwrap_or_else(|| {
        let stem = args
            .json
            .file_stem()
            .map_or("holdfast-bench".into(), |s| s.to_string_lossy().to_string());
        args.json.with_file_name(format!("{stem}-plots"))
    });
    let mut failed = outcomes.errors.clone();
    let json = serde_json::to_string_pretty(report).map_err(|e| e.to_string());
    if let Err(e) = json.and_then(|j| std::fs::write(&args.json, j).map_err(|e| e.to_string())) {
        failed.push(format!("{}: {e}", args.json.display()));
    }
    if let Err(e) = std::fs::write(&md_path, &md) {
        failed.push(format!("{}: {e}", md_path.display()));
    }
    match plot::all(&report.rows, &plots_dir) {
        Ok(files) => eprintln!(
            "holdfast-bench: {} plots in {}",
            files.len(),
            plots_dir.display()
        ),
        Err(e) => failed.push(format!("plots: {e}")),
    }
    eprintln!(
        "holdfast-bench: report in {} and {} ({:.0} s)",
        args.json.display(),
        md_path.display(),
        report.wall_s
    );
    if !failed.is_empty() {
        for f in &failed {
            eprintln!("holdfast-bench: error: {f}");
        }
        return ExitCode::from(1);
    }
    let wrong: Vec<String> = report
        .flash
        .iter()
        .filter(|f| SystemId::parse(&f.system).is_ok_and(SystemId::is_holdfast) && !f.exact())
        .map(|f| format!("{} sold {} of {}", f.system, f.sold, f.units))
        .collect();
    if !wrong.is_empty() {
        eprintln!("holdfast-bench: flash sale not exact: {}", wrong.join("; "));
        return ExitCode::from(3);
    }
    ExitCode::SUCCESS
}
