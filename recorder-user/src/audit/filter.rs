//! Volume control for enriched lines: filters (keep or drop by field values, the matching rule
//! with the highest priority wins) and aggregation (one line per key per interval, with a count).

use std::collections::BTreeMap;

use thiserror::Error;

/// `PRIORITY:keep|drop:FIELD=VALUE[,FIELD=VALUE…]`, e.g. `10:drop:syscallName=futex`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterRule {
    pub priority: i32,
    pub keep: bool,
    /// All must match (field names as printed: `type`, `syscallName`, `containerID`…).
    pub matches: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FilterError {
    #[error("filter {rule:?}: {reason} (expected PRIORITY:keep|drop:FIELD=VALUE[,FIELD=VALUE…])")]
    Syntax { rule: String, reason: &'static str },
}

impl std::str::FromStr for FilterRule {
    type Err = FilterError;

    fn from_str(rule: &str) -> Result<Self, Self::Err> {
        let bad = |reason| FilterError::Syntax {
            rule: rule.to_owned(),
            reason,
        };
        let mut parts = rule.splitn(3, ':');
        let priority = parts
            .next()
            .unwrap_or_default()
            .trim()
            .parse()
            .map_err(|_| bad("the priority is not a number"))?;
        let keep = match parts.next().map(str::trim) {
            Some("keep") => true,
            Some("drop") => false,
            _ => return Err(bad("the action must be keep or drop")),
        };
        let conditions = parts.next().ok_or_else(|| bad("no FIELD=VALUE to match"))?;
        let matches = conditions
            .split(',')
            .map(|c| {
                let (k, v) = c
                    .split_once('=')
                    .ok_or_else(|| bad("a condition is not FIELD=VALUE"))?;
                if k.trim().is_empty() {
                    return Err(bad("a condition has no field name"));
                }
                Ok((k.trim().to_owned(), v.trim().to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            priority,
            keep,
            matches,
        })
    }
}

/// Whether a line (its fields, as printed) is kept: by the matching rule of highest priority
/// (the first given wins a tie), kept when none matches.
pub fn keeps(rules: &[FilterRule], fields: &serde_json::Map<String, serde_json::Value>) -> bool {
    let mut best: Option<&FilterRule> = None;
    for rule in rules {
        let matches = rule.matches.iter().all(|(k, v)| match fields.get(k) {
            Some(serde_json::Value::String(s)) => s == v,
            Some(serde_json::Value::Number(n)) => {
                v.parse::<serde_json::Number>().is_ok_and(|w| w == *n)
            }
            Some(serde_json::Value::Bool(b)) => v.parse::<bool>().is_ok_and(|w| w == *b),
            Some(_) => false,
            None => false,
        });
        if matches && best.is_none_or(|b| rule.priority > b.priority) {
            best = Some(rule);
        }
    }
    best.is_none_or(|rule| rule.keep)
}

/// Counts lines by key (every field but `timestamp` and `pid`): one line per key per interval.
/// The table holds [`Aggregator::MAX`] keys; lines of further keys are counted in one catch-all
/// row (`type` [`Aggregator::OTHER`]), so the counts of an interval always add up to the lines
/// aggregated.
#[derive(Debug)]
pub struct Aggregator {
    counts: BTreeMap<String, (serde_json::Map<String, serde_json::Value>, u64)>,
    max: usize,
    /// This interval's lines of keys beyond the table.
    other: u64,
    /// Lines counted in a catch-all row instead of their own, since the start.
    pub overflow: u64,
}

impl Default for Aggregator {
    fn default() -> Self {
        Self::with_max(Self::MAX)
    }
}

impl Aggregator {
    /// Distinct keys per interval.
    pub const MAX: usize = 65536;
    /// The `type` of the catch-all row.
    pub const OTHER: &str = "(other)";

    pub fn with_max(max: usize) -> Self {
        Self {
            counts: BTreeMap::new(),
            max,
            other: 0,
            overflow: 0,
        }
    }

    pub fn add(&mut self, mut fields: serde_json::Map<String, serde_json::Value>) {
        fields.remove("timestamp");
        fields.remove("pid");
        let key = serde_json::Value::Object(fields.clone()).to_string();
        if let Some((_, count)) = self.counts.get_mut(&key) {
            *count += 1;
        } else if self.counts.len() >= self.max {
            self.other += 1;
            self.overflow += 1;
        } else {
            self.counts.insert(key, (fields, 1));
        }
    }

    /// The interval's lines, each with its `count` (and the catch-all row last, if any lines
    /// did not fit); starts a new interval.
    pub fn drain(&mut self) -> Vec<serde_json::Map<String, serde_json::Value>> {
        let mut lines: Vec<_> = std::mem::take(&mut self.counts)
            .into_values()
            .map(|(mut fields, count)| {
                fields.insert("count".to_owned(), count.into());
                fields
            })
            .collect();
        let other = std::mem::take(&mut self.other);
        if other > 0 {
            let mut row = serde_json::Map::new();
            row.insert("type".to_owned(), Self::OTHER.into());
            row.insert("count".to_owned(), other.into());
            row.insert(
                "reason".to_owned(),
                format!("more than {} distinct keys in this interval", self.max).into(),
            );
            lines.push(row);
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn rules_parse_or_say_why_not() {
        let rule: FilterRule = "10:drop:syscallName=futex,type=seccomp".parse().unwrap();
        assert_eq!(rule.priority, 10);
        assert!(!rule.keep);
        assert_eq!(
            rule.matches,
            [
                ("syscallName".into(), "futex".into()),
                ("type".into(), "seccomp".into())
            ]
        );
        for (bad, why) in [
            ("x:drop:a=b", "the priority is not a number"),
            ("1:ignore:a=b", "the action must be keep or drop"),
            ("1:drop", "no FIELD=VALUE"),
            ("1:drop:ab", "not FIELD=VALUE"),
            ("1:drop:=b", "no field name"),
        ] {
            let err = bad.parse::<FilterRule>().unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn the_highest_priority_match_decides() {
        let rules: Vec<FilterRule> = [
            "1:drop:type=seccomp",
            "5:keep:syscallName=sync",
            "9:drop:pid=42",
        ]
        .iter()
        .map(|r| r.parse().unwrap())
        .collect();
        assert!(!keeps(
            &rules,
            &fields(json!({"type": "seccomp", "syscallName": "futex"}))
        ));
        assert!(keeps(
            &rules,
            &fields(json!({"type": "seccomp", "syscallName": "sync"}))
        ));
        assert!(!keeps(
            &rules,
            &fields(json!({"type": "seccomp", "syscallName": "sync", "pid": 42}))
        ));
        assert!(
            keeps(&rules, &fields(json!({"type": "selinux"}))),
            "no rule matches: kept"
        );
    }

    #[test]
    fn aggregation_counts_per_key_per_interval() {
        let mut agg = Aggregator::default();
        for pid in [1, 2, 3] {
            agg.add(fields(
                json!({"type": "seccomp", "syscallName": "sync", "pid": pid, "timestamp": "1.2:3"}),
            ));
        }
        agg.add(fields(
            json!({"type": "seccomp", "syscallName": "mount", "pid": 1}),
        ));
        let lines = agg.drain();
        assert_eq!(lines.len(), 2);
        let sync = lines.iter().find(|l| l["syscallName"] == "sync").unwrap();
        assert_eq!(sync["count"], 3);
        assert!(sync.get("pid").is_none() && sync.get("timestamp").is_none());
        assert!(agg.drain().is_empty(), "a new interval starts empty");
    }

    #[test]
    fn keys_beyond_the_table_are_counted_in_a_catch_all_row() {
        let mut agg = Aggregator::with_max(3);
        for n in 0..10 {
            agg.add(fields(json!({"type": "seccomp", "comm": format!("p{n}")})));
        }
        agg.add(fields(json!({"type": "seccomp", "comm": "p0"})));
        let lines = agg.drain();
        assert_eq!(lines.len(), 4, "three keys and the catch-all: {lines:?}");
        let total: u64 = lines.iter().map(|l| l["count"].as_u64().unwrap()).sum();
        assert_eq!(total, 11, "every line is counted somewhere");
        let other = lines.last().unwrap();
        assert_eq!(other["type"], Aggregator::OTHER);
        assert_eq!(other["count"], 7);
        assert_eq!(agg.overflow, 7);
        assert!(agg.drain().is_empty(), "the catch-all starts over too");
    }
}
