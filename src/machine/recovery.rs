//! What a node the machine could not bring back needs from a person: its state as the tool left
//! it, and the exact commands, in order, that bring it back. Pure: written into the run record
//! when the node fails, shown by `status` and the report.

use super::{NodeProgress, Phase};
use crate::model::{Availability, RESTORE_LABEL};

/// What became of a failed node's surge: scaled back, but a service a batch-mate still needed
/// surged is left to that batch-mate.
const SCALED_BACK: &str =
    "surged services scaled back (one a batch-mate still needed surged: by that batch-mate)";

/// The recovery of `p`, a node left in [`Phase::Failed`]; `availability` is what the swarm shows
/// now (`None`: the node is not in the swarm's view).
pub fn steps(p: &NodeProgress, availability: Option<Availability>) -> String {
    let host = &p.hostname;
    let before = p.original_availability.name();
    let mut out = vec![format!(
        "{host} needs a person: its upgrade failed and could not be undone ({})",
        p.reason.as_deref().unwrap_or("no reason recorded")
    )];
    out.push(match availability {
        Some(now) if now != p.original_availability => format!(
            "state: availability {} (swarm-upgrade left it so; the node label {RESTORE_LABEL}={before} says what it was); {SCALED_BACK}",
            now.name()
        ),
        Some(now) => format!("state: availability {} as before; {SCALED_BACK}", now.name()),
        None => format!("state: the node is not in the swarm's view; {SCALED_BACK}"),
    });
    // (A rollback, done or not, has its own span: the history alone says whether apt ran.)
    let touched = p.history.iter().any(|s| matches!(s.phase, Phase::Upgrade | Phase::Rollback));
    out.push(format!(
        "1. on {host}: `systemctl status docker` and `journalctl -u docker -n 200`; if dpkg reports an interrupted transaction, `dpkg --configure -a`"
    ));
    match (&p.previous, touched) {
        (Some(prev), true) => {
            let pins: Vec<String> = prev.0.iter().map(|(n, v)| format!("{n}={v}")).collect();
            out.push(format!(
                "2. on {host}, to go back to the engine it had: `apt-get install --allow-downgrades --allow-change-held-packages {}` then `systemctl restart docker`",
                pins.join(" ")
            ));
        }
        _ => out.push(format!("2. on {host}: its packages were not changed; start the engine (`systemctl start docker`) once step 1 shows why it stopped")),
    }
    out.push(format!(
        "3. once `docker node ls` shows {host} Ready: `swarm-upgrade run` gives it back its availability ({before}) and goes on with the rest; or by hand: `docker node update --availability {before} --label-rm {RESTORE_LABEL} {host}`"
    ));
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::Span;
    use crate::model::{NodeId, PackageSet, Role};

    fn failed(upgraded: bool) -> NodeProgress {
        let t: jiff::Timestamp = "2026-12-03T03:00:00Z".parse().unwrap();
        let span = |phase| Span::new(phase, t, t);
        NodeProgress {
            node: NodeId("w1".into()),
            hostname: "worker1".into(),
            role: Role::Worker,
            addr: String::new(),
            phase: Phase::Failed,
            phase_started: t,
            original_availability: Availability::Active,
            labels: Default::default(),
            surge: vec![],
            downtime: vec![],
            scope: vec![],
            packages: PackageSet::default(),
            standalone_before: None,
            standalone_after: None,
            swarm_backup: None,
            previous: Some(PackageSet(
                [("docker-ce".to_string(), "5:26.1.5-1~debian.13~trixie".parse().unwrap())].into(),
            )),
            rolled_back: false,
            rejoined_from: None,
            converged_since: None,
            rescaled_at: None,
            held_since: None,
            kicked_at: None,
            reason: Some("Rollback on worker1: docker.service failed".into()),
            recovery: None,
            hooks: vec![],
            attention: None,
            history: if upgraded {
                vec![span(Phase::Upgrade), span(Phase::Rollback)]
            } else {
                vec![span(Phase::Drain)]
            },
            batch: None,
        }
    }

    #[test]
    fn a_node_left_drained_after_its_packages_changed_gets_every_step() {
        let text = steps(&failed(true), Some(Availability::Drain));
        assert!(text.starts_with("worker1 needs a person: its upgrade failed and could not be undone (Rollback on worker1: docker.service failed)"), "{text}");
        assert!(text.contains("availability drain (swarm-upgrade left it so; the node label swarm-upgrade.restore-availability=active says what it was)"), "{text}");
        assert!(text.contains("apt-get install --allow-downgrades --allow-change-held-packages docker-ce=5:26.1.5-1~debian.13~trixie"), "{text}");
        assert!(text.contains("docker node update --availability active --label-rm swarm-upgrade.restore-availability worker1"), "{text}");
    }

    #[test]
    fn a_node_whose_packages_never_changed_is_not_told_to_reinstall() {
        let text = steps(&failed(false), Some(Availability::Active));
        assert!(!text.contains("apt-get install"), "{text}");
        assert!(text.contains("availability active as before"), "{text}");
        assert!(steps(&failed(false), None).contains("not in the swarm's view"));
    }
}
