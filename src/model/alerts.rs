//! The alert gate's domain: the alerts a monitoring system says are firing, the operator's filter
//! on their names, and the answer the gate gives before a node (open, or closed by which alerts).

use serde::{Deserialize, Serialize, Serializer};

/// One alert firing now, as the monitoring system names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// Its name (Prometheus' `alertname` label).
    pub name: String,
    /// Where it fires, when its labels say (`instance`, else `job`); empty when they do not.
    pub instance: String,
}

/// What `gates.alert_filter` does with the alerts whose names it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FilterMode {
    /// Those alerts are ignored; every other firing alert closes the gate.
    Exclude,
    /// Only those alerts close the gate; every other is ignored.
    Include,
}

/// The operator's filter on alert names: a regular expression (searched anywhere in the name,
/// as kured's `--alert-filter-regexp`; anchor it with `^…$` for whole names) and its mode.
#[derive(Clone, Debug)]
pub struct AlertFilter {
    /// The expression; `None`: every firing alert counts.
    pub pattern: Option<regex::Regex>,
    /// Whether a match is ignored or is what counts.
    pub mode: FilterMode,
}

impl Default for AlertFilter {
    fn default() -> Self {
        AlertFilter { pattern: None, mode: FilterMode::Exclude }
    }
}

impl PartialEq for AlertFilter {
    fn eq(&self, other: &Self) -> bool {
        self.pattern.as_ref().map(regex::Regex::as_str)
            == other.pattern.as_ref().map(regex::Regex::as_str)
            && self.mode == other.mode
    }
}

impl Serialize for AlertFilter {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("AlertFilter", 2)?;
        st.serialize_field("pattern", &self.pattern.as_ref().map(regex::Regex::as_str))?;
        st.serialize_field("mode", &self.mode)?;
        st.end()
    }
}

impl AlertFilter {
    /// Whether a firing alert of this name closes the gate.
    pub fn counts(&self, name: &str) -> bool {
        match (&self.pattern, self.mode) {
            (None, FilterMode::Exclude) => true,
            (None, FilterMode::Include) => false,
            (Some(re), FilterMode::Exclude) => !re.is_match(name),
            (Some(re), FilterMode::Include) => re.is_match(name),
        }
    }
}

/// The gate's answer from the alerts firing now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum GateAnswer {
    /// No firing alert counts: a node may start. `ignored`: the firing alerts the filter left out.
    Open {
        /// Names of firing alerts the filter ignores, sorted, once each.
        ignored: Vec<String>,
    },
    /// These alerts fire and count: no node starts until they clear.
    Closed {
        /// The alerts that count, sorted by name then place, once each.
        firing: Vec<Alert>,
        /// Names of firing alerts the filter ignores, sorted, once each.
        ignored: Vec<String>,
    },
}

impl GateAnswer {
    /// Judges the alerts firing now with the operator's filter.
    pub fn judge(alerts: &[Alert], filter: &AlertFilter) -> GateAnswer {
        let (mut firing, rest): (Vec<Alert>, Vec<Alert>) =
            alerts.iter().cloned().partition(|a| filter.counts(&a.name));
        firing.sort_by(|a, b| (&a.name, &a.instance).cmp(&(&b.name, &b.instance)));
        firing.dedup();
        let mut ignored: Vec<String> = rest.into_iter().map(|a| a.name).collect();
        ignored.sort();
        ignored.dedup();
        if firing.is_empty() {
            GateAnswer::Open { ignored }
        } else {
            GateAnswer::Closed { firing, ignored }
        }
    }

    /// Whether a node may start.
    pub fn is_open(&self) -> bool {
        matches!(self, GateAnswer::Open { .. })
    }

    /// The alerts that close it, for people: `LabAlarm (10.0.0.5:9701), NodeDown`; past
    /// [`NAMED`] of them, how many more (the text goes into the store's header, the webhook
    /// and the log, whatever a monitoring system fires).
    pub fn firing_text(&self) -> String {
        let GateAnswer::Closed { firing, .. } = self else { return String::new() };
        let mut named: Vec<String> = firing
            .iter()
            .take(NAMED)
            .map(|a| {
                let name = clip(&a.name);
                if a.instance.is_empty() { name } else { format!("{name} ({})", clip(&a.instance)) }
            })
            .collect();
        if firing.len() > NAMED {
            named.push(format!("and {} more", firing.len() - NAMED));
        }
        named.join(", ")
    }

    /// The ignored alerts' names, for people (empty when none).
    pub fn ignored(&self) -> &[String] {
        match self {
            GateAnswer::Open { ignored } | GateAnswer::Closed { ignored, .. } => ignored,
        }
    }
}

/// How many firing alerts [`GateAnswer::firing_text`] names.
pub const NAMED: usize = 10;

/// A name or place cut to 100 characters.
fn clip(text: &str) -> String {
    match text.char_indices().nth(100) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn alert(name: &str, instance: &str) -> Alert {
        Alert { name: name.into(), instance: instance.into() }
    }

    fn filter(pattern: &str, mode: FilterMode) -> AlertFilter {
        AlertFilter { pattern: Some(regex::Regex::new(pattern).unwrap()), mode }
    }

    #[test]
    fn no_filter_counts_every_alert_and_include_without_a_pattern_none() {
        let alerts = [alert("NodeDown", "a"), alert("Watchdog", "")];
        let all = GateAnswer::judge(&alerts, &AlertFilter::default());
        assert_eq!(all.firing_text(), "NodeDown (a), Watchdog");
        let none = AlertFilter { pattern: None, mode: FilterMode::Include };
        assert_eq!(
            GateAnswer::judge(&alerts, &none),
            GateAnswer::Open { ignored: vec!["NodeDown".into(), "Watchdog".into()] }
        );
        assert!(GateAnswer::judge(&[], &AlertFilter::default()).is_open());
    }

    #[test]
    fn many_alerts_are_named_up_to_ten_and_counted_after() {
        let alerts: Vec<Alert> = (0..25).map(|i| alert(&format!("A{i:02}"), "")).collect();
        let text = GateAnswer::judge(&alerts, &AlertFilter::default()).firing_text();
        assert!(text.starts_with("A00, A01,") && text.ends_with("A09, and 15 more"), "{text}");
        let long = alert(&"x".repeat(500), "");
        let text = GateAnswer::judge(&[long], &AlertFilter::default()).firing_text();
        assert_eq!(text.chars().count(), 101, "{text}");
    }

    #[test]
    fn exclude_ignores_matches_and_include_keeps_only_them() {
        let alerts = [alert("Watchdog", ""), alert("LabAlarm", "x:1"), alert("LabAlarm", "x:1")];
        let ex = GateAnswer::judge(&alerts, &filter("^Watchdog$", FilterMode::Exclude));
        assert_eq!(
            ex,
            GateAnswer::Closed {
                firing: vec![alert("LabAlarm", "x:1")],
                ignored: vec!["Watchdog".into()]
            }
        );
        let inc = GateAnswer::judge(&alerts, &filter("^Watchdog$", FilterMode::Include));
        assert_eq!(inc.firing_text(), "Watchdog");
        assert_eq!(inc.ignored(), ["LabAlarm".to_string()]);
        // Searched anywhere in the name unless anchored.
        assert!(GateAnswer::judge(&alerts, &filter("Alarm|Watch", FilterMode::Exclude)).is_open());
    }

    proptest! {
        /// Every firing alert is either counted or ignored, never both; the gate is open
        /// exactly when none counts; exclude and include with one pattern split the alerts
        /// the opposite ways.
        #[test]
        fn each_alert_is_counted_or_ignored(
            names in proptest::collection::vec("[A-C][a-c]{0,2}", 0..8),
            pattern in "[A-C][a-c]?",
        ) {
            let alerts: Vec<Alert> = names.iter().map(|n| alert(n, "")).collect();
            let ex = GateAnswer::judge(&alerts, &filter(&pattern, FilterMode::Exclude));
            let inc = GateAnswer::judge(&alerts, &filter(&pattern, FilterMode::Include));
            for a in &alerts {
                let counted = |g: &GateAnswer| matches!(g, GateAnswer::Closed { firing, .. } if firing.contains(a));
                let ignored = |g: &GateAnswer| g.ignored().contains(&a.name);
                prop_assert!(counted(&ex) != ignored(&ex));
                prop_assert!(counted(&inc) != ignored(&inc));
                prop_assert!(counted(&ex) == ignored(&inc));
            }
            prop_assert_eq!(ex.is_open(), alerts.iter().all(|a| a.name.contains(pattern.as_str())));
        }
    }
}
