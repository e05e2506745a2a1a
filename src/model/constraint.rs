//! Swarm placement constraints (`node.role==worker`, `node.labels.zone!=a`) evaluated against a node.

use std::collections::BTreeMap;

use super::cluster::{Node, Role};

/// One parsed constraint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Constraint {
    key: String,
    equal: bool,
    value: String,
}

/// Why a constraint text cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("placement constraint `{0}` is not of the form `KEY==VALUE` or `KEY!=VALUE`")]
pub struct ConstraintError(pub String);

impl Constraint {
    /// Parses `KEY==VALUE` or `KEY!=VALUE` as the swarm does (spaces around parts allowed).
    pub fn parse(text: &str) -> Result<Self, ConstraintError> {
        let (key, value, equal) = if let Some((k, v)) = text.split_once("==") {
            (k, v, true)
        } else if let Some((k, v)) = text.split_once("!=") {
            (k, v, false)
        } else {
            return Err(ConstraintError(text.to_string()));
        };
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() || value.is_empty() {
            return Err(ConstraintError(text.to_string()));
        }
        Ok(Constraint { key: key.to_ascii_lowercase(), equal, value: value.to_string() })
    }

    /// Whether the node satisfies it. Unknown keys never match, as in swarmkit.
    pub fn matches(&self, node: &Node) -> bool {
        fn label<'a>(labels: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
            labels.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
        }
        let actual: Option<&str> = match self.key.as_str() {
            "node.id" => Some(&node.id.0),
            "node.hostname" => Some(&node.hostname),
            "node.role" => Some(match node.role {
                Role::Manager => "manager",
                Role::Worker => "worker",
            }),
            "node.platform.os" => Some(&node.platform.os),
            "node.platform.arch" => Some(&node.platform.arch),
            k => {
                if let Some(name) = k.strip_prefix("node.labels.") {
                    label(&node.labels, name)
                } else if let Some(name) = k.strip_prefix("engine.labels.") {
                    label(&node.engine_labels, name)
                } else {
                    return false;
                }
            }
        };
        // Swarmkit compares values case-insensitively; a missing label equals nothing.
        let same = actual.is_some_and(|a| a.eq_ignore_ascii_case(&self.value));
        same == self.equal
    }
}

/// Whether a node satisfies every constraint; an unreadable constraint matches no node.
pub fn satisfies_all(constraints: &[String], node: &Node) -> bool {
    constraints.iter().all(|c| Constraint::parse(c).is_ok_and(|c| c.matches(node)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testing::node;

    #[test]
    fn matches_like_swarmkit() {
        let mut n = node("w1", Role::Worker);
        n.labels.insert("zone".into(), "A".into());
        assert!(Constraint::parse("node.role==worker").unwrap().matches(&n));
        assert!(!Constraint::parse("node.role == manager").unwrap().matches(&n));
        assert!(Constraint::parse("node.labels.zone==a").unwrap().matches(&n));
        assert!(Constraint::parse("node.labels.rack!=r1").unwrap().matches(&n));
        assert!(!Constraint::parse("node.labels.rack==r1").unwrap().matches(&n));
        assert!(Constraint::parse("node.hostname!=w2").unwrap().matches(&n));
        assert!(!Constraint::parse("node.unknown==x").unwrap().matches(&n));
        assert!(Constraint::parse("node.role").is_err());
        assert!(!satisfies_all(&["bogus".into()], &n));
    }
}
