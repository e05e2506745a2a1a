//! The Vagrantfile (real VMs: 3 managers, 2 workers, a balancer) is valid Vagrant configuration:
//! `vagrant validate`, from Debian's vagrant package, which ./scripts/test.sh installs. The VMs
//! are not started here; the container lab is what the tests run on.

use std::path::Path;
use std::process::Command;

fn validate(dir: &Path) -> (bool, String) {
    let dotfiles = std::env::temp_dir().join(format!(
        "swarm-upgrade-vagrant-{}-{}",
        std::process::id(),
        dir.display().to_string().len()
    ));
    let out = Command::new("vagrant")
        .args(["validate", "--ignore-provider"])
        .current_dir(dir)
        .env("VAGRANT_CHECKPOINT_DISABLE", "1")
        // Its own state directory, so that the checkout is left as it was.
        .env("VAGRANT_DOTFILE_PATH", &dotfiles)
        .output()
        .expect("vagrant is installed (./scripts/test.sh installs Debian's vagrant package)");
    let _ = std::fs::remove_dir_all(&dotfiles);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn the_vagrantfile_validates() {
    let (ok, text) = validate(Path::new(env!("CARGO_MANIFEST_DIR")));
    assert!(ok && text.contains("Vagrantfile validated successfully"), "{text}");
    for node in ["manager1", "manager2", "manager3", "worker1", "worker2", "balancer"] {
        assert!(text.contains(&format!("==> {node}:")), "{node} is defined: {text}");
    }
}

#[test]
fn validate_catches_a_broken_vagrantfile() {
    let dir =
        std::env::temp_dir().join(format!("swarm-upgrade-bad-vagrantfile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ours =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Vagrantfile")).unwrap();
    // A misspelt setting, as a hand edit might leave it.
    std::fs::write(
        dir.join("Vagrantfile"),
        ours.replace("node.vm.hostname = name", "node.vm.hostnme = name"),
    )
    .unwrap();
    let (ok, text) = validate(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!ok && text.contains("hostnme"), "{text}");
}
