//! `cargo xtask`: the lab, the load generator, the naive baseline and the demo.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use xtask::engine::Engine;
use xtask::{demo, lab, load, naive, web};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "swarm-upgrade's own tooling: the lab, the load generator, the demo (not shipped)"
)]
struct Cli {
    #[command(subcommand)]
    command: Top,
}

#[derive(Subcommand)]
enum Top {
    /// The lab: a real swarm on this machine, five nodes unless asked (run as root).
    Lab {
        #[command(subcommand)]
        command: Lab,
    },
    /// Brings the lab up, runs `swarm-upgrade run` under load on manager1, prints the outcome.
    Demo {
        /// Use this .deb instead of building one with cargo-deb.
        #[arg(long)]
        deb: Option<PathBuf>,
    },
    /// The lab workload's server (runs inside the workload image as /lab-web).
    #[command(hide = true)]
    Web {
        #[command(subcommand)]
        command: Web,
    },
}

#[derive(Subcommand)]
enum Lab {
    /// Builds what is missing and starts the lab; exits 0 only when all of it is healthy.
    Up {
        /// Use this .deb instead of building one with cargo-deb.
        #[arg(long)]
        deb: Option<PathBuf>,
        /// Managers, `manager1..M` (1 to 9).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=i64::from(lab::Shape::MAX_MANAGERS)))]
        managers: u8,
        /// Workers, `worker1..W` (0 to 150).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(0..=i64::from(lab::Shape::MAX_WORKERS)))]
        workers: u8,
    },
    /// Removes everything the lab made, the labs the tests run side by side (slots) included; its
    /// caches (/var/cache/swarm-upgrade-lab and the private engines' image stores
    /// /var/lib/swarm-upgrade-lab and /var/lib/swarm-upgrade-lab-N) stay for a fast next start
    /// unless --purge.
    Down {
        /// Also remove the caches and the lab's images.
        #[arg(long)]
        purge: bool,
    },
    /// Shows the lab's containers, the swarm's nodes and services, and the balancer.
    Status,
    /// Runs a command on a lab node: `cargo xtask lab exec manager1 -- docker node ls`.
    Exec {
        /// manager1.., worker1.., balancer or repo.
        node: String,
        /// The command.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Sends requests through the balancer until stopped (Ctrl-C, SIGTERM) or --duration; prints
    /// and writes the report.
    Load {
        /// Requests per second.
        #[arg(long, default_value_t = 50)]
        rate: u32,
        /// Stop after this many seconds.
        #[arg(long)]
        duration: Option<u64>,
        /// Write the JSON report here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Targets as host:port/path (default: the balancer's web and solo frontends).
        #[arg(long = "target")]
        targets: Vec<String>,
    },
    /// What the last successful run cost, from its coordinator's final metrics: Docker requests,
    /// agent calls and store writes per node, and the run record's size.
    Cost {
        /// The manager the run was coordinated from.
        #[arg(long, default_value = "manager1")]
        node: String,
    },
    /// The naive baseline (drain, fixed sleep, apt-get install, restart, activate; node by node).
    NaiveUpgrade {
        /// The docker-ce version to install.
        #[arg(long)]
        to: String,
        /// Seconds to sleep after each drain.
        #[arg(long, default_value_t = 10)]
        sleep: u64,
    },
}

#[derive(Subcommand)]
enum Web {
    /// Serves on the port until SIGTERM, then drains.
    Serve {
        port: u16,
        /// Seconds to keep serving with a failing health check after SIGTERM.
        #[arg(long, default_value_t = 3)]
        drain: u64,
    },
    /// Exits 0 when /health on the local port answers 200.
    Check { port: u16 },
    /// Serves the files under a directory (the lab repository).
    Files { root: PathBuf, port: u16 },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn options(deb: Option<PathBuf>, shape: lab::Shape) -> Result<lab::Options> {
    Ok(lab::Options {
        tool: std::env::current_exe().context("this tool's path")?,
        deb,
        shape,
        slot: 0,
    })
}

fn engine() -> Result<Engine> {
    Engine::find().context("no lab engine answers: run `cargo xtask lab up` first")
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Top::Demo { deb } => demo::run(&options(deb, lab::Shape::default())?)?,
        Top::Web { command } => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            match command {
                Web::Serve { port, drain } => {
                    rt.block_on(web::serve(port, Duration::from_secs(drain)))?
                }
                Web::Files { root, port } => rt.block_on(web::serve_files(root, port))?,
                Web::Check { port } => {
                    return Ok(if rt.block_on(web::check(port)) {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    });
                }
            }
        }
        Top::Lab { command } => match command {
            Lab::Up { deb, managers, workers } => {
                let shape = lab::Shape::new(managers, workers).map_err(anyhow::Error::msg)?;
                let (_, t) = lab::up(&options(deb, shape)?)?;
                for (step, d) in &t.0 {
                    println!("  {step:<32} {:>6.1} s", d.as_secs_f64());
                }
                println!(
                    "lab up in {:.1} s: {} nodes Ready at docker-ce {}, workload converged, balancer answers at http://{}/",
                    t.total().as_secs_f64(),
                    shape.len(),
                    xtask::repo::OLD,
                    lab::balancer_web(0)
                );
                let e = engine()?;
                if e.private {
                    println!("the lab's engine: export DOCKER_HOST={}", e.host);
                }
            }
            Lab::Cost { node } => {
                let e = engine()?;
                let text = e.sh(&node, &format!("cat {}", xtask::cost::TEXTFILE)).with_context(
                    || format!("no finished run's metrics on {node}: run `swarm-upgrade run` there first"),
                )?;
                let nodes = lab::running_nodes(&e)?.len();
                println!("{}", xtask::cost::Cost::from_metrics(&text, nodes).summary());
            }
            Lab::Down { purge } => {
                lab::down(purge)?;
                println!("lab down: no lab container, network or volume left");
            }
            Lab::Status => status()?,
            Lab::Exec { node, command } => {
                let mut args = vec!["exec".to_string()];
                if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                    args.push("-it".into());
                }
                args.push(node);
                args.extend(command);
                let status = engine()?
                    .command(&args.iter().map(String::as_str).collect::<Vec<_>>())
                    .status()?;
                return Ok(ExitCode::from(status.code().unwrap_or(1) as u8));
            }
            Lab::Load { rate, duration, out, targets } => {
                let targets = if targets.is_empty() {
                    vec![
                        format!("{}/", lab::balancer_web(0)),
                        format!("{}/", lab::balancer_solo(0)),
                    ]
                } else {
                    targets
                };
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()?;
                let report = rt.block_on(load::generate(load::Options { targets, rate, timeout: Duration::from_secs(5) }, async move {
                    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal");
                    let limit = tokio::time::sleep(Duration::from_secs(duration.unwrap_or(u64::MAX / 4)));
                    tokio::select! { _ = term.recv() => {}, _ = tokio::signal::ctrl_c() => {}, _ = limit => {} }
                }));
                println!("load: {}", report.summary());
                if let Some(out) = out {
                    std::fs::write(&out, serde_json::to_string_pretty(&report)?)?;
                    println!("load: report written to {}", out.display());
                }
            }
            Lab::NaiveUpgrade { to, sleep } => {
                let outcome = naive::upgrade(&engine()?, &to, Duration::from_secs(sleep))?;
                println!("{}", serde_json::to_string_pretty(&outcome)?);
            }
        },
    }
    Ok(ExitCode::SUCCESS)
}

fn status() -> Result<()> {
    let e = engine()?;
    println!("engine: {}{}", e.host, if e.private { " (the lab's private dockerd)" } else { "" });
    println!(
        "{}",
        e.docker(&[
            "ps",
            "-a",
            "--filter",
            &format!("label={}", lab::LABEL),
            "--format",
            "table {{.Names}}\t{{.Status}}"
        ])?
    );
    match e.sh(lab::MANAGER, "docker node ls && docker service ls") {
        Ok(s) => println!("{s}"),
        Err(err) => bail!("the swarm does not answer on {}: {err:#}", lab::MANAGER),
    }
    let web = xtask::http::get_blocking(&lab::balancer_web(0), "/", Duration::from_secs(2));
    println!("balancer http://{}/: {web:?}", lab::balancer_web(0));
    Ok(())
}
