//! Reading the Prometheus text exposition the daemons serve: samples of the families asked
//! for, labels unescaped. Pure; whatever the text holds, a malformed line is skipped.

use std::collections::HashMap;

use super::Denials;

/// One sample: its labels (name → value) and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Every sample of the metric `name` in `text`.
pub fn samples<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = Sample> + 'a {
    text.lines().filter_map(move |line| {
        let rest = line.strip_prefix(name)?;
        let (labels, value) = if let Some(rest) = rest.strip_prefix('{') {
            parse_labels(rest)?
        } else if rest.starts_with(' ') {
            (Vec::new(), rest)
        } else {
            return None;
        };
        let value = value.split_whitespace().next()?.parse().ok()?;
        Some(Sample { labels, value })
    })
}

/// `k="v",…}` and what follows the closing brace.
fn parse_labels(mut rest: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        rest = rest.trim_start_matches(',');
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break i,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                c => value.push(c),
            }
        };
        labels.push((key.trim().to_owned(), value));
        rest = &after[end + 1..];
    }
}

/// `(namespace, pod, container)`.
pub type ContainerKey = (String, String, String);

/// The upstream audit counters of one daemon, summed per container.
pub fn denials(text: &str) -> HashMap<ContainerKey, Denials> {
    let mut out: HashMap<ContainerKey, Denials> = HashMap::new();
    for (family, selinux) in [
        (
            "security_profiles_operator_seccomp_profile_audit_total",
            false,
        ),
        (
            "security_profiles_operator_selinux_profile_audit_total",
            true,
        ),
    ] {
        for sample in samples(text, family) {
            let key = (
                sample.label("namespace").unwrap_or_default().to_owned(),
                sample.label("pod").unwrap_or_default().to_owned(),
                sample.label("container").unwrap_or_default().to_owned(),
            );
            if key.1.is_empty() {
                // Not a pod's process (the host's, or one no index named).
                continue;
            }
            let count = if sample.value.is_finite() && sample.value > 0.0 {
                sample.value as u64
            } else {
                0
            };
            let entry = out.entry(key).or_default();
            if selinux {
                entry.selinux += count;
            } else {
                entry.seccomp += count;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_the_audit_counters_per_container_with_escaped_labels() {
        let text = concat!(
            "# HELP security_profiles_operator_seccomp_profile_audit_total x\n",
            "security_profiles_operator_seccomp_profile_audit_total{node=\"n\",namespace=\"shop\",pod=\"web\",container=\"a\\\"b\",executable=\"/x\",syscall=\"sync\"} 3\n",
            "security_profiles_operator_seccomp_profile_audit_total{node=\"n\",namespace=\"shop\",pod=\"web\",container=\"a\\\"b\",executable=\"/x\",syscall=\"mount\"} 2\n",
            "security_profiles_operator_selinux_profile_audit_total{node=\"n\",namespace=\"shop\",pod=\"web\",container=\"a\\\"b\",executable=\"/x\",scontext=\"s\",tcontext=\"t\"} 4\n",
            "security_profiles_operator_seccomp_profile_audit_total{node=\"n\",namespace=\"\",pod=\"\",container=\"\",executable=\"/h\",syscall=\"sync\"} 9\n",
            "security_profiles_operator_seccomp_profile_audit_total_other{pod=\"web\"} 7\n",
            "security_profiles_operator_seccomp_profile_audit_total{broken 1\n",
        );
        let counted = denials(text);
        assert_eq!(counted.len(), 1, "{counted:?}");
        assert_eq!(
            counted[&("shop".into(), "web".into(), "a\"b".into())],
            Denials {
                seccomp: 5,
                selinux: 4
            }
        );
        let plain: Vec<Sample> = samples("up 1\nupx 2\n", "up").collect();
        assert_eq!(plain.len(), 1);
        assert_eq!(plain[0].value, 1.0);
    }
}
