//! The `swarm-upgrade` binary: the command line over the library.

fn main() -> std::process::ExitCode {
    swarm_upgrade::cli::main()
}
