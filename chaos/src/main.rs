//! `holdfast-chaos`: the chaos harness of Holdfast. `run` starts a cluster
//! of real server processes, drives a workload while injecting faults,
//! records the history, collects every replica's state and checks it;
//! `check` judges a recorded run again; `timeline` draws a run's
//! `timeline.svg` again from its files (docs/chaos.md).

mod run;

use clap::{Parser, Subcommand};
use holdfast_chaos::chart::{Chart, LeaderSample};
use holdfast_chaos::check::Linearizable;
use holdfast_chaos::history::Entry;
use holdfast_chaos::jsonl::{read_final_state, read_history, read_jsonl};
use holdfast_chaos::{check_entries, CheckConfig};
use run::nemesis::FaultKind;
use run::workload::Workload;
use run::RunConfig;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Exit code when a promise is broken.
const EXIT_VIOLATION: u8 = 1;
/// Exit code for unreadable input or a missing feature.
const EXIT_USAGE: u8 = 2;
/// Exit code when nothing is broken but a search ran out of budget.
const EXIT_INCONCLUSIVE: u8 = 3;

#[derive(Parser)]
#[command(name = "holdfast-chaos", about = "Chaos runs of Holdfast clusters")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a recorded history against the replicas' final state. Exits 0
    /// if every promise held, 1 on a violation, 2 on unreadable input, 3 if
    /// a linearizability search ran out of budget.
    Check {
        /// The history (JSON lines).
        #[arg(long)]
        history: PathBuf,
        /// The replicas' final states (JSON lines, one replica per line).
        #[arg(long = "final")]
        final_state: PathBuf,
        /// Linearizability search steps per row before "unknown".
        #[arg(long, default_value_t = CheckConfig::default().budget_steps_per_row)]
        budget_steps: u64,
    },
    /// Run a chaos scenario on a fresh local cluster and check it. Exits
    /// like `check`; 2 also when the run itself failed (a cluster that
    /// never came up, replicas that never converged).
    Run(RunArgs),
    /// Draw `DIR/timeline.svg` from a run's `history.jsonl`, `leaders.jsonl`
    /// (if there) and the first line of `report.txt` (if there), as `run`
    /// does at its end.
    Timeline {
        /// The run's output directory.
        dir: PathBuf,
    },
}

/// The picture `run` leaves next to the history.
const TIMELINE_FILE: &str = "timeline.svg";

#[derive(clap::Args)]
struct RunArgs {
    /// Nodes of the cluster (3 or 5).
    #[arg(long, default_value_t = 3, value_parser = parse_nodes)]
    nodes: usize,
    /// Shards of the cluster.
    #[arg(long, default_value_t = 4)]
    shards: u32,
    /// Length of the workload and fault phase (`60s`, `1500ms`, `2m`).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Seed of the fault schedule and of the clients' choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Faults to inject, comma-separated (empty: none).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "kill,pause,partition,restart"
    )]
    faults: Vec<FaultKind>,
    /// Workload.
    #[arg(long, value_enum, default_value = "flash")]
    workload: Workload,
    /// Concurrent clients (history processes).
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Fresh SKUs every this long (keeps each row's history small).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    round: Duration,
    /// Output directory (history, final state, schedule, report, logs,
    /// data).
    #[arg(long, default_value = "chaos-out")]
    out: PathBuf,
    /// The server binary (default: `holdfast-server` next to this binary).
    #[arg(long, env = "HOLDFAST_SERVER_BIN")]
    server_bin: Option<PathBuf>,
    /// Extra server argument, repeatable (e.g. `--server-arg=--unsafe-chaos-bug=skip-dedup`).
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
    /// Linearizability search steps per row before "unknown".
    #[arg(long, default_value_t = CheckConfig::default().budget_steps_per_row)]
    budget_steps: u64,
}

fn parse_nodes(s: &str) -> Result<usize, String> {
    match s {
        "3" => Ok(3),
        "5" => Ok(5),
        _ => Err(format!("--nodes must be 3 or 5, not {s:?}")),
    }
}

/// `60s`, `500ms`, `2m`, or plain seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("bad duration {s:?} (use 60s, 500ms or 2m)");
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => s.split_at(at),
        None => (s, "s"),
    };
    let n: u64 = number.parse().map_err(|_| bad())?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(bad()),
    }
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run(args) => run_command(args),
        Command::Check {
            history,
            final_state,
            budget_steps,
        } => check(&history, &final_state, budget_steps, None),
        Command::Timeline { dir } => timeline_command(&dir),
    }
}

fn timeline_command(dir: &Path) -> ExitCode {
    let history = match read_history(&dir.join("history.jsonl")) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("holdfast-chaos timeline: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let title = std::fs::read_to_string(dir.join("report.txt"))
        .ok()
        .and_then(|r| r.lines().next().map(str::to_string))
        .unwrap_or_else(|| dir.display().to_string());
    match write_timeline(dir, &title, &history) {
        Ok(path) => {
            println!("{}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("holdfast-chaos timeline: {e}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Writes `dir/timeline.svg` from `history` and `dir/leaders.jsonl` (no
/// leader lanes without it).
fn write_timeline(dir: &Path, title: &str, history: &[Entry]) -> Result<PathBuf, String> {
    let leaders_path = dir.join(run::LEADERS_FILE);
    let leaders: Vec<LeaderSample> = match std::fs::File::open(&leaders_path) {
        Ok(f) => read_jsonl(std::io::BufReader::new(f))
            .map_err(|e| format!("{}: {e}", leaders_path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(format!("{}: {e}", leaders_path.display())),
    };
    let svg = Chart::from_run(title, history, leaders).render_svg();
    let path = dir.join(TIMELINE_FILE);
    std::fs::write(&path, svg).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

fn run_command(args: RunArgs) -> ExitCode {
    let server_bin = args.server_bin.unwrap_or_else(|| {
        std::env::current_exe()
            .map(|me| me.with_file_name("holdfast-server"))
            .unwrap_or_else(|_| PathBuf::from("holdfast-server"))
    });
    let config = RunConfig {
        nodes: args.nodes,
        shards: args.shards,
        duration: args.duration,
        seed: args.seed,
        faults: args.faults,
        workload: args.workload,
        clients: args.clients.max(1),
        round: args.round,
        out: args.out.clone(),
        server_bin,
        server_args: args.server_args,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("holdfast-chaos run: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    // The run's cluster lives inside the future: on Ctrl-C (or a hard
    // timeout) the future is dropped, and with it every node.
    let outcome = runtime.block_on(async {
        tokio::select! {
            r = run::run(&config) => r,
            _ = tokio::signal::ctrl_c() => Err("interrupted".to_string()),
        }
    });
    drop(runtime);
    match outcome {
        Ok(out) => {
            eprintln!("holdfast-chaos run: {} faults injected", out.faults);
            check(
                &args.out.join("history.jsonl"),
                &args.out.join("final.jsonl"),
                args.budget_steps,
                Some(&args.out),
            )
        }
        Err(e) => {
            eprintln!("holdfast-chaos run: {e}");
            // The picture helps most when the run itself failed.
            if let Ok(history) = read_history(&args.out.join("history.jsonl")) {
                let _ = write_timeline(&args.out, &format!("run failed: {e}"), &history);
            }
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Checks a recorded run and prints the report. With `run_dir`, also
/// writes `report.txt` and `timeline.svg` there.
fn check(
    history: &Path,
    final_state: &Path,
    budget_steps: u64,
    run_dir: Option<&Path>,
) -> ExitCode {
    let input = read_history(history).and_then(|h| Ok((h, read_final_state(final_state)?)));
    let (entries, final_state) = match input {
        Ok(input) => input,
        Err(e) => {
            eprintln!("holdfast-chaos check: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let config = CheckConfig {
        budget_steps_per_row: budget_steps,
    };
    let report = match check_entries(&entries, &final_state, config) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("holdfast-chaos check: {}: {e}", history.display());
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let rendered = report.render();
    print!("{rendered}");
    if let Some(dir) = run_dir {
        let path = dir.join("report.txt");
        if let Err(e) = std::fs::write(&path, &rendered) {
            eprintln!("holdfast-chaos: {}: {e}", path.display());
        }
        if let Err(e) = write_timeline(dir, &report.summary_line(), &entries) {
            eprintln!("holdfast-chaos: {e}");
        }
    }
    if !report.violations.is_empty() || report.linearizable() == Linearizable::No {
        ExitCode::from(EXIT_VIOLATION)
    } else if report.linearizable() == Linearizable::Unknown {
        ExitCode::from(EXIT_INCONCLUSIVE)
    } else {
        ExitCode::SUCCESS
    }
}
