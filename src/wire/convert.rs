//! Conversions between the wire messages and our own domain types, used by both sides.

use super::pb;
use crate::model::hooks::{HookPoint, HookStatus};
use crate::model::{
    AgentReport, DebVersion, EngineConfigProblem, LocalSwarm, LocalSwarmState, PackageSet,
    Standalone, VersionError,
};

/// An order for `set`, fenced by the run and token of `op`.
pub fn order(set: &PackageSet, run_id: &str, token: u64) -> pb::Order {
    pb::Order {
        backup_swarm: false,
        again: false,
        fence: Some(pb::Fence { run_id: run_id.to_string(), token }),
        packages: set
            .0
            .iter()
            .map(|(n, v)| pb::Package { name: n.clone(), version: v.to_string() })
            .collect(),
    }
}

/// The wire's package list as our package set; a version that does not parse is refused.
pub(crate) fn package_set(packages: &[pb::Package]) -> Result<PackageSet, VersionError> {
    packages
        .iter()
        .map(|p| p.version.parse::<DebVersion>().map(|v| (p.name.clone(), v)))
        .collect::<Result<_, _>>()
        .map(PackageSet)
}

/// Our report as the wire message.
pub(crate) fn report_to_pb(r: &AgentReport) -> pb::NodeReport {
    pb::NodeReport {
        installed: r
            .installed
            .iter()
            .map(|(n, v)| pb::Package { name: n.clone(), version: v.to_string() })
            .collect(),
        available: r
            .available
            .iter()
            .map(|(n, vs)| pb::Available {
                name: n.clone(),
                versions: vs.iter().map(ToString::to_string).collect(),
            })
            .collect(),
        repository_error: r.repository_error.clone().unwrap_or_default(),
        disk_free_bytes: r.disk_free_bytes,
        engine_active: r.engine_active,
        local_node_id: r.local_swarm.as_ref().map(|l| l.node_id.clone()).unwrap_or_default(),
        local_swarm_state: r
            .local_swarm
            .as_ref()
            .map(|l| l.state.name().to_string())
            .unwrap_or_default(),
        dpkg_interrupted: r.dpkg_interrupted.clone().unwrap_or_default(),
        engine_config: r.engine_config.as_ref().map(|p| pb::EngineConfigProblem {
            file: p.file.clone(),
            keys: p.keys.clone(),
            detail: p.detail.clone(),
        }),
        standalone: r
            .standalone
            .iter()
            .map(|c| pb::Standalone {
                name: c.name.clone(),
                image: c.image.clone(),
                restart: c.restart.clone(),
            })
            .collect(),
        swarm_backups: r.swarm_backups.clone(),
        backup_room: r.backup_room.as_ref().map(|b| pb::BackupRoom {
            swarm_bytes: b.swarm_bytes,
            free_bytes: b.free_bytes,
            dir: b.dir.clone(),
        }),
        hooks: r
            .hooks
            .iter()
            .map(|h| pb::Hook {
                point: h.point.name().to_string(),
                command: h.command.clone(),
                problem: h.problem.clone().unwrap_or_default(),
            })
            .collect(),
    }
}

/// The wire message as our report.
pub(crate) fn report_from_pb(r: &pb::NodeReport) -> AgentReport {
    let state = LocalSwarmState::from_name(&r.local_swarm_state);
    AgentReport {
        installed: r
            .installed
            .iter()
            .filter_map(|p| Some((p.name.clone(), p.version.parse().ok()?)))
            .collect(),
        available: r
            .available
            .iter()
            .map(|a| (a.name.clone(), a.versions.iter().filter_map(|v| v.parse().ok()).collect()))
            .collect(),
        repository_error: Some(r.repository_error.clone()).filter(|e| !e.is_empty()),
        disk_free_bytes: r.disk_free_bytes,
        engine_active: r.engine_active,
        local_swarm: state.map(|state| LocalSwarm { node_id: r.local_node_id.clone(), state }),
        dpkg_interrupted: Some(r.dpkg_interrupted.clone()).filter(|d| !d.is_empty()),
        // An older agent sends none: no problem it could see.
        engine_config: r.engine_config.as_ref().map(|p| EngineConfigProblem {
            file: p.file.clone(),
            keys: p.keys.clone(),
            detail: p.detail.clone(),
        }),
        standalone: r
            .standalone
            .iter()
            .map(|c| Standalone {
                name: c.name.clone(),
                image: c.image.clone(),
                restart: c.restart.clone(),
            })
            .collect(),
        swarm_backups: r.swarm_backups.clone(),
        backup_room: r.backup_room.as_ref().map(|b| crate::model::swarm_backup::BackupRoom {
            swarm_bytes: b.swarm_bytes,
            free_bytes: b.free_bytes,
            dir: b.dir.clone(),
        }),
        // (A point this build does not know is left out: it would never be asked to run.)
        hooks: r
            .hooks
            .iter()
            .filter_map(|h| {
                Some(HookStatus {
                    point: HookPoint::from_name(&h.point)?,
                    command: h.command.clone(),
                    problem: Some(h.problem.clone()).filter(|p| !p.is_empty()),
                })
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_local_swarm_state_crosses_the_wire_by_its_name() {
        for state in [
            LocalSwarmState::Active,
            LocalSwarmState::Inactive,
            LocalSwarmState::Pending,
            LocalSwarmState::Error,
            LocalSwarmState::Locked,
        ] {
            assert_eq!(serde_json::to_value(state).unwrap(), state.name());
            let report = AgentReport {
                local_swarm: Some(LocalSwarm { node_id: "n1".into(), state }),
                ..Default::default()
            };
            assert_eq!(report_from_pb(&report_to_pb(&report)).local_swarm, report.local_swarm);
        }
    }

    #[test]
    fn standalone_containers_cross_the_wire_and_an_older_agent_reports_none() {
        let cache = Standalone {
            name: "cache".into(),
            image: "redis:7".into(),
            restart: "unless-stopped".into(),
        };
        let report = AgentReport { standalone: vec![cache.clone()], ..Default::default() };
        assert_eq!(report_from_pb(&report_to_pb(&report)).standalone, [cache]);
        let old = pb::NodeReport { engine_active: true, ..Default::default() };
        assert!(report_from_pb(&old).standalone.is_empty());
    }

    #[test]
    fn an_engine_configuration_problem_crosses_the_wire_and_an_older_agent_reports_none() {
        let report = AgentReport {
            engine_config: Some(EngineConfigProblem {
                file: "/etc/docker/daemon.json".into(),
                keys: vec!["live-restore".into()],
                detail: "\"live-restore\": true is not supported in swarm mode".into(),
            }),
            dpkg_interrupted: Some("docker-ce (iF )".into()),
            ..Default::default()
        };
        assert_eq!(report_from_pb(&report_to_pb(&report)), report);
        assert_eq!(report_from_pb(&report_to_pb(&AgentReport::default())).engine_config, None);
        // An agent built before the field existed: its bytes simply lack field 9.
        let old = pb::NodeReport { engine_active: true, ..Default::default() };
        let bytes = prost::Message::encode_to_vec(&old);
        let read: pb::NodeReport = prost::Message::decode(bytes.as_slice()).unwrap();
        assert_eq!(report_from_pb(&read).engine_config, None);
    }

    #[test]
    fn the_room_for_a_swarm_archive_crosses_the_wire_and_an_older_agent_reports_none() {
        let room = crate::model::swarm_backup::BackupRoom {
            swarm_bytes: 300 << 20,
            free_bytes: 5 << 30,
            dir: "/var/lib/swarm-upgrade/swarm-backups".into(),
        };
        let report = AgentReport { backup_room: Some(room.clone()), ..Default::default() };
        assert_eq!(report_from_pb(&report_to_pb(&report)).backup_room, Some(room));
        let old = pb::NodeReport { engine_active: true, ..Default::default() };
        assert_eq!(report_from_pb(&old).backup_room, None);
    }
}
