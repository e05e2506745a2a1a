//! The man page and shell completions the package installs are generated from the clap
//! definitions and kept in `packaging/generated/`. This test renders them again and fails when the
//! committed files are stale; `cargo test --test generated -- --ignored regenerate` rewrites them.

use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;
use swarm_upgrade::cli::Cli;

fn rendered() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    let mut man = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut man).unwrap();
    out.push(("swarm-upgrade.1", man));
    for (shell, file) in [
        (Shell::Bash, "swarm-upgrade.bash"),
        (Shell::Zsh, "_swarm-upgrade"),
        (Shell::Fish, "swarm-upgrade.fish"),
    ] {
        let mut text = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "swarm-upgrade", &mut text);
        out.push((file, text));
    }
    out
}

#[test]
fn man_page_and_completions_are_up_to_date() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/generated");
    for (file, text) in rendered() {
        let path = dir.join(file);
        let committed = std::fs::read(&path).unwrap_or_default();
        assert!(
            committed == text,
            "{} is stale: run `cargo test --test generated -- --ignored regenerate` and commit it",
            path.display()
        );
    }
}

/// Writes the files again; run by hand (it is ignored), then commit what it wrote. Apart from the
/// check above, so that no setting can make that check pass without comparing.
#[test]
#[ignore = "rewrites packaging/generated/: run by hand"]
fn regenerate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/generated");
    std::fs::create_dir_all(&dir).unwrap();
    for (file, text) in rendered() {
        std::fs::write(dir.join(file), &text).unwrap();
    }
}

#[test]
fn the_man_page_documents_every_command_and_the_exit_codes() {
    let man = String::from_utf8(rendered().remove(0).1).unwrap();
    for command in
        ["plan", "run", "resume", "status", "abort", "unlock", "snapshot", "agent", "report"]
    {
        assert!(man.contains(&format!("swarm\\-upgrade\\-{command}(1)")), "{command} is listed");
    }
    assert!(man.contains("Exit codes"), "the exit codes are documented");
    assert!(man.contains("SWARM_UPGRADE_UNLOCK_KEY"), "the unlock key's variable is documented");
}
