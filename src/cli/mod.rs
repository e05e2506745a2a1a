//! The command line: parses arguments, loads the configuration, runs a command, and turns the
//! result into output and an exit code.

/// `print!` to standard output, except that a reader that went away (`swarm-upgrade plan | head`)
/// only ends the output: the command goes on to its own exit code.
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::write_out(&format!($($arg)*)) };
}

/// `println!` as [`out!`] does it.
macro_rules! outln {
    ($($arg:tt)*) => { $crate::cli::write_out(&format!("{}\n", format!($($arg)*))) };
}

mod confirm;
mod drive;
mod live;
mod plan;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::model::DebVersion;

/// Exit codes, documented in `--help` and the README.
pub mod exit {
    /// The command did what was asked.
    pub const OK: u8 = 0;
    /// The run ended failed: a node rolled back or was restored, or was left for a person with
    /// its recovery in the run record.
    pub(crate) const RUN_FAILED: u8 = 1;
    /// Bad input: arguments, configuration, or a snapshot file.
    pub(crate) const BAD_INPUT: u8 = 2;
    /// Preflight refused; nothing was changed.
    pub(crate) const REFUSED: u8 = 3;
    /// Another coordinator holds the lock.
    pub(crate) const LOCKED: u8 = 4;
    // 5 is not used: it meant a part not built yet, and the other codes keep their numbers.
    /// The run stopped between nodes (or batches) because an operator asked it to, or was not
    /// confirmed at its question (nothing changed).
    pub(crate) const ABORTED: u8 = 6;
}

const EXIT_CODES: &str = "Exit codes: 0 done; 1 run failed (a node rolled back or restored, or left for a person with its recovery in `status`); 2 bad input \
(arguments, configuration, snapshot); 3 refused by preflight (nothing changed); 4 locked by another coordinator; \
6 stopped between nodes (an operator's abort or stop label, an alert gate closed for all of gates.wait, a hold \
nobody let go) or the plan not confirmed at `run`'s question (nothing changed) (5 is not used).

Environment: SWARM_UPGRADE_UNLOCK_KEY, an autolocked swarm's unlock key (`docker swarm unlock-key -q`; \
instead of the file agent.unlock_key_file; never give it as an argument); DOCKER_HOST, the manager's \
Docker API (default: the local socket).";

/// Upgrades the Docker Engine on every node of a Docker Swarm, one node or one batch of workers at a time, with zero downtime.
#[derive(Debug, Parser)]
#[command(name = "swarm-upgrade", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// Configuration file; drop-ins are read from `config.d/` beside it.
    #[arg(long, global = true, value_name = "PATH", env = "SWARM_UPGRADE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Output format of reports.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// More log detail (or set RUST_LOG).
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Report format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// For people.
    Text,
    /// For programs.
    Json,
}

/// Flags shared by `plan` and `run`.
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// Target: an engine version (28.5.2), resolved on each node to the package versions its own
    /// repository names for it; an exact package version as apt shows it
    /// (5:28.5.2-1~debian.13~trixie), installed exactly; or `latest` or `latest-patch`.
    /// Overrides the configured target.
    #[arg(long, value_name = "VERSION", value_parser = parse_target)]
    pub to: Option<crate::config::TargetSetting>,
    /// Allow a target below the installed version.
    #[arg(long)]
    pub allow_downgrade: bool,
    /// Allow upgrading a swarm with a single manager (its control plane goes down during the restart).
    #[arg(long)]
    pub allow_single_manager: bool,
    /// Workers upgraded at once: a number (4) or a percentage of the workers (10%); overrides
    /// upgrade.parallel. Managers always go one at a time.
    #[arg(long, value_name = "N|P%")]
    pub parallel: Option<crate::config::Parallel>,
    /// Accept the outage of this service while the node of a task of it that cannot run
    /// elsewhere (pinned by its constraints, ports or reservations) upgrades: the drain stops
    /// the task and it comes back with the node, as the service label
    /// swarm-upgrade.downtime=accept does. Repeat for several services.
    #[arg(long, value_name = "SERVICE")]
    pub accept_downtime: Vec<String>,
}

fn parse_target(s: &str) -> Result<crate::config::TargetSetting, String> {
    s.parse().map_err(|e: crate::model::TargetError| e.to_string())
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Dry run: preflight, node order and each node's actions, without changing anything.
    Plan {
        /// Plan offline against a cluster saved with `swarm-upgrade snapshot`.
        #[arg(long, value_name = "FILE")]
        snapshot: Option<PathBuf>,
        /// Target and permissions.
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Upgrade every node now (one-off run), holding the cluster-wide lock.
    Run {
        /// Target and permissions.
        #[command(flatten)]
        target: TargetArgs,
        /// Start even outside the configured maintenance windows.
        #[arg(long)]
        ignore_window: bool,
        /// As started by swarm-upgrade.timer: on a worker, outside every window, with every
        /// node at target, or while a node carries the label swarm-upgrade.stop, say so and exit 0; an interrupted run is resumed; another manager's
        /// lock exits 4 (which the unit counts as success); a target whose last run failed is
        /// refused (exit 3) until an operator retries it by hand.
        #[arg(long, conflicts_with = "ignore_window")]
        scheduled: bool,
        /// Start without asking. On a terminal, `run` first prints the plan (order, batches,
        /// surges, accepted outages) and waits for a yes (at most 10 minutes); off a terminal,
        /// and with --scheduled, it never asks.
        #[arg(short = 'y', long)]
        yes: bool,
    },
    /// Take over an interrupted run once its lock is free or expired.
    Resume {
        /// Wait for the holder's lease to expire instead of failing.
        #[arg(long)]
        wait: bool,
    },
    /// Show the lock and each node's progress.
    Status,
    /// Ask the running coordinator to stop after the current node (its batch), leaving it safe.
    /// During the hold after the canary it ends the run there.
    Abort,
    /// Let the run holding after its canary (upgrade.canary) go on. With the run's ID (from
    /// `status`), also before its canary is done: it then goes on without holding. Exit 2 when
    /// no run holds, or the run named is not the one in progress.
    Approve {
        /// The run to let go (needed before it holds).
        #[arg(value_name = "RUN")]
        run: Option<String>,
    },
    /// Break a stale lock, showing who held it.
    Unlock {
        /// Required: breaking a live coordinator's lock lets two coordinators act at once.
        #[arg(long, required = true)]
        force: bool,
    },
    /// Write the observed cluster (nodes, services, tasks, agent reports) as JSON.
    Snapshot {
        /// File to write (standard output when absent).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Show a run's report (every run writes one to /var/lib/swarm-upgrade/runs/), or draw it.
    Report {
        /// The report, or a run record as `run --output json` prints it.
        #[arg(value_name = "REPORT")]
        file: PathBuf,
        /// Draw it as an SVG timeline: one row per node, one bar per phase, a time axis.
        #[arg(long)]
        svg: bool,
        /// The load generator's report, whose failed requests are marked on the timeline.
        #[arg(long, value_name = "FILE", requires = "svg")]
        load: Option<PathBuf>,
        /// Write here instead of standard output.
        #[arg(short = 'o', long = "out", value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Run the node agent (started by swarm-upgrade-agent.service).
    Agent,
    /// Archive a manager's swarm state for a run (the engine's unit runs it before the engine
    /// starts, while an upgrade with upgrade.backup_managers is under way).
    #[command(hide = true)]
    ArchiveSwarm {
        /// The engine's swarm directory.
        #[arg(long, value_name = "DIR")]
        swarm: PathBuf,
        /// Where archives go.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The run's ID.
        #[arg(long, value_name = "RUN")]
        run: String,
        /// How many archives to keep.
        #[arg(long, value_name = "N")]
        keep: usize,
    },
}

/// Whether `run`/`resume` draw live progress: text output to a terminal (`-v` keeps log lines).
fn live_progress(output: Output) -> bool {
    output == Output::Text && std::io::IsTerminal::is_terminal(&std::io::stderr())
}

/// A command's failure: the message for the operator and the exit code.
#[derive(Debug)]
pub struct Failure {
    /// Exit code.
    pub code: u8,
    /// One message: what, where, what to do.
    pub message: String,
}

impl Failure {
    fn new(code: u8, message: impl Into<String>) -> Self {
        Failure { code, message: message.into() }
    }
}

/// Parses the arguments, runs the command, prints, and returns the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let drives = matches!(cli.command, Command::Run { .. } | Command::Resume { .. });
    crate::telemetry::init(cli.verbose, drives && !cli.verbose && live_progress(cli.output));
    match dispatch(&cli) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn dispatch(cli: &Cli) -> Result<(), Failure> {
    let settings = || {
        crate::config::load(cli.config.as_deref())
            .map_err(|e| Failure::new(exit::BAD_INPUT, e.to_string()))
    };
    match &cli.command {
        Command::Plan { snapshot: Some(file), target } => {
            plan::offline(&settings()?, file, target, cli.output)
        }
        Command::Plan { snapshot: None, target } => live::plan(&settings()?, target, cli.output),
        Command::Run { target, ignore_window, scheduled, yes } => {
            let mode = match (*scheduled, *ignore_window) {
                (true, _) => drive::RunMode::Scheduled,
                (false, true) => drive::RunMode::IgnoreWindow,
                (false, false) => drive::RunMode::InWindow,
            };
            let ask = mode != drive::RunMode::Scheduled && confirm::asks(*yes);
            drive::run(&settings()?, target, mode, cli.output, ask)
        }
        Command::Resume { wait } => drive::resume(&settings()?, *wait, cli.output),
        Command::Status => {
            settings()?;
            live::status(cli.output)
        }
        Command::Abort => {
            settings()?;
            live::abort(cli.output)
        }
        Command::Approve { run } => {
            settings()?;
            live::approve(run.as_deref(), cli.output)
        }
        Command::Unlock { .. } => {
            settings()?;
            live::unlock(cli.output)
        }
        Command::Snapshot { out } => live::snapshot(&settings()?, out.as_deref()),
        Command::Report { file, svg, load, out } => {
            report(&settings()?, file, *svg, load.as_deref(), out.as_deref(), cli.output)
        }
        Command::Agent => live::agent(&settings()?, cli.config.as_deref()),
        Command::ArchiveSwarm { swarm, dir, run, keep } => {
            use crate::agent::backup::{ARCHIVE_LIMIT, archive_for_run_within};
            match archive_for_run_within(swarm, dir, run, *keep, ARCHIVE_LIMIT) {
                Ok(Some(path)) => println!("swarm state archived to {}", path.display()),
                Ok(None) => println!("run {run}'s archive of the swarm state is there already"),
                Err(why) => return Err(Failure::new(exit::RUN_FAILED, why)),
            }
            Ok(())
        }
    }
}

/// `report`: a run's report as text, JSON or an SVG timeline.
fn report(
    settings: &crate::config::Settings,
    file: &std::path::Path,
    svg: bool,
    load: Option<&std::path::Path>,
    out: Option<&std::path::Path>,
    output: Output,
) -> Result<(), Failure> {
    use crate::report::{LoadTimeline, RunReport, svg::render};
    let bad = |e: String| Failure::new(exit::BAD_INPUT, e);
    let report = RunReport::read(file, &settings.engine_packages[0]).map_err(bad)?;
    let text = if svg {
        let load = load.map(LoadTimeline::read).transpose().map_err(bad)?;
        render(&report, load.as_ref())
    } else if output == Output::Json {
        serde_json::to_string_pretty(&report).expect("reports serialize") + "\n"
    } else {
        let doc = crate::lock::StoreDoc { run: Some(report.run.clone()), ..Default::default() };
        let mut text =
            live::render_status(&doc, report.run.finished_at.unwrap_or_else(jiff::Timestamp::now));
        for v in &report.versions {
            let show = |v: &Option<DebVersion>| {
                v.as_ref().map(ToString::to_string).unwrap_or_else(|| "?".into())
            };
            text += &format!("{:<16} {} -> {}\n", v.hostname, show(&v.before), show(&v.after));
            if let Some(line) = v.standalone_line() {
                text += &format!("{:<16} {line}\n", "");
            }
            if let Some(archive) = &v.swarm_backup {
                text += &format!("{:<16} swarm state archived to {archive}\n", "");
            }
            if let Some(o) = &v.outage {
                text += &format!("{:<16} {}\n", "", o.line());
            }
            let node = report.run.nodes.iter().find(|n| n.hostname == v.hostname);
            for h in node.map(|n| n.hooks.as_slice()).unwrap_or_default() {
                let how = if h.succeeded() { "ok" } else { "FAILED" };
                text += &format!("{:<16} hook {how}: {}\n", "", h.summary());
            }
        }
        text + &crate::report::svg::floor_line(&report.floor) + "\n"
    };
    match out {
        Some(path) => std::fs::write(path, text)
            .map_err(|e| bad(format!("cannot write {}: {e}", path.display()))),
        None => {
            out!("{text}");
            Ok(())
        }
    }
}

/// Writes to standard output; a closed pipe is not an error (see [`out!`]).
pub(crate) fn write_out(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("error: writing to standard output: {e}")
        }
        _ => {}
    }
}
