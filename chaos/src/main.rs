//! `holdfast-chaos`: the chaos harness of Holdfast. The harness that runs
//! clusters lands with the chaos issue; `check` judges a recorded run.

use clap::{Parser, Subcommand};
use holdfast_chaos::check::Linearizable;
use holdfast_chaos::jsonl::{read_final_state, read_history};
use holdfast_chaos::{check_entries, CheckConfig};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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
    /// Run a chaos scenario against a cluster (not built yet).
    Run,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run => {
            eprintln!("holdfast-chaos run: not built yet (see the chaos issue)");
            ExitCode::from(EXIT_USAGE)
        }
        Command::Check {
            history,
            final_state,
            budget_steps,
        } => check(&history, &final_state, budget_steps),
    }
}

fn check(history: &Path, final_state: &Path, budget_steps: u64) -> ExitCode {
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
    print!("{}", report.render());
    if !report.violations.is_empty() || report.linearizable() == Linearizable::No {
        ExitCode::from(EXIT_VIOLATION)
    } else if report.linearizable() == Linearizable::Unknown {
        ExitCode::from(EXIT_INCONCLUSIVE)
    } else {
        ExitCode::SUCCESS
    }
}
