//! How many workers go at once (`upgrade.parallel`, `run --parallel`): a number of nodes or a
//! percentage of the workers being upgraded.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How many workers a batch may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parallel {
    /// At most this many workers at once (at least 1).
    Nodes(u32),
    /// At most this share of the selected workers at once, rounded down, at least one node
    /// (1 to 100).
    Percent(u32),
}

impl Default for Parallel {
    fn default() -> Self {
        Parallel::Nodes(1)
    }
}

impl Parallel {
    /// The largest batch among `workers` selected workers (at least 1).
    pub fn of(self, workers: usize) -> usize {
        match self {
            Parallel::Nodes(n) => n as usize,
            Parallel::Percent(p) => workers * p as usize / 100,
        }
        .max(1)
    }
}

impl fmt::Display for Parallel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Parallel::Nodes(n) => write!(f, "{n}"),
            Parallel::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// The one error a bad value gets.
const WRITE: &str =
    "write a number of nodes (e.g. 4) or a percentage of the workers (e.g. \"10%\")";

impl std::str::FromStr for Parallel {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let (digits, percent) = match t.strip_suffix('%') {
            Some(d) => (d.trim(), true),
            None => (t, false),
        };
        let n: u32 = digits.parse().map_err(|_| format!("{text:?}: {WRITE}"))?;
        match (n, percent) {
            (0, _) => Err(format!("{text:?}: must be at least 1; {WRITE}")),
            (101.., true) => Err(format!("{text:?}: a percentage is at most 100%; {WRITE}")),
            (n, true) => Ok(Parallel::Percent(n)),
            (n, false) => Ok(Parallel::Nodes(n)),
        }
    }
}

impl Serialize for Parallel {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Parallel::Nodes(n) => s.serialize_u32(*n),
            Parallel::Percent(_) => s.serialize_str(&self.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Parallel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Number(i64),
            Text(String),
        }
        let text = match Written::deserialize(d)? {
            Written::Number(n) => n.to_string(),
            Written::Text(t) => t,
        };
        text.parse()
            .map_err(|e: String| serde::de::Error::custom(format!("{}{e}", super::values::REFUSED)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_percentages_are_read_and_written_back() {
        for (text, p) in [("4", Parallel::Nodes(4)), ("10%", Parallel::Percent(10))] {
            assert_eq!(text.parse::<Parallel>().unwrap(), p);
            assert_eq!(p.to_string(), text);
        }
        assert_eq!(serde_json::to_value(Parallel::Nodes(4)).unwrap(), 4);
        assert_eq!(serde_json::to_value(Parallel::Percent(10)).unwrap(), "10%");
    }

    #[test]
    fn bad_values_are_refused_with_what_to_write() {
        for bad in ["0", "0%", "101%", "-1", "many", "1.5", ""] {
            let e = bad.parse::<Parallel>().unwrap_err();
            assert!(e.contains("write a number of nodes"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_percentage_rounds_down_and_takes_at_least_one_node() {
        assert_eq!(Parallel::Percent(10).of(1000), 100);
        assert_eq!(Parallel::Percent(10).of(15), 1);
        assert_eq!(Parallel::Percent(50).of(3), 1);
        assert_eq!(Parallel::Percent(100).of(12), 12);
        assert_eq!(Parallel::Nodes(4).of(2), 4);
        assert_eq!(Parallel::Nodes(1).of(0), 1);
    }
}
