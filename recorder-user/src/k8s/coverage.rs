//! The daemon's per-node facts of `syscribe report`, as gauges on its /metrics: this node's
//! containers by namespace and effective seccomp mode, the privileged ones, those sharing a
//! host namespace. Made from the node's pod index at each pod event; decided by
//! `report::pod_rows`, as the report decides them (seccompDefault assumed off).
//!
//! Bounded: at most [`MAX_NAMESPACES`] namespaces get series of their own; the containers of
//! further namespaces are counted under `namespace="(other)"` and the namespaces so folded in
//! `syscribe_node_coverage_namespaces_folded`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt as _;

use super::report::{Assumptions, Denials, Lookup, SeccompMode, pod_counts, pod_rows};
use crate::audit::metrics::Gauge;

pub const MAX_NAMESPACES: usize = 1000;
pub const OTHER: &str = "(other)";

pub const CONTAINERS: &str = "syscribe_node_containers";
pub const PRIVILEGED: &str = "syscribe_node_privileged_containers";
pub const HOST_NAMESPACES: &str = "syscribe_node_host_namespace_containers";
pub const FOLDED: &str = "syscribe_node_coverage_namespaces_folded";

/// The gauges need no lookups (node statuses, recordings, denials are the report's).
struct NoLookup;

impl Lookup for NoLookup {
    fn node_status(&self, _: &str, _: &str) -> Option<String> {
        None
    }
    fn recorded_for(&self, _: &str, _: &str) -> Vec<String> {
        Vec::new()
    }
    fn denials(&self, _: &str, _: &str, _: &str, _: &str) -> Option<Denials> {
        None
    }
}

#[derive(Default)]
struct Counts {
    by_mode: [u64; 3],
    privileged: u64,
    host: u64,
}

/// The gauges for `node` from its pods (the pod index; finished pods are not counted).
pub fn node_gauges<'a>(node: &str, pods: impl IntoIterator<Item = &'a Pod>) -> Vec<Gauge> {
    let mut by_ns: BTreeMap<String, Counts> = BTreeMap::new();
    let mut folded = std::collections::BTreeSet::new();
    for pod in pods.into_iter().filter(|p| pod_counts(p)) {
        let mut namespace = pod.namespace().unwrap_or_default();
        if !by_ns.contains_key(&namespace) && by_ns.len() >= MAX_NAMESPACES {
            folded.insert(namespace);
            namespace = OTHER.to_owned();
        }
        let counts = by_ns.entry(namespace).or_default();
        for row in pod_rows(pod, Assumptions::default(), &NoLookup) {
            let i = SeccompMode::ALL
                .iter()
                .position(|m| *m == row.seccomp.mode)
                .expect("every mode is listed");
            counts.by_mode[i] += 1;
            counts.privileged += u64::from(row.privileged);
            counts.host += u64::from(row.host_namespaces());
        }
    }
    let mut containers = Vec::new();
    let mut privileged = Vec::new();
    let mut host = Vec::new();
    for (ns, counts) in &by_ns {
        for (mode, count) in SeccompMode::ALL.iter().zip(counts.by_mode) {
            containers.push((
                vec![node.to_owned(), ns.clone(), mode.as_str().to_owned()],
                count,
            ));
        }
        privileged.push((vec![node.to_owned(), ns.clone()], counts.privileged));
        host.push((vec![node.to_owned(), ns.clone()], counts.host));
    }
    vec![
        Gauge {
            name: CONTAINERS,
            help: "Containers of this node's running pods (init and ephemeral included) by namespace and effective seccomp mode (Unconfined, RuntimeDefault, Localhost; privileged ones are Unconfined).",
            labels: &["node", "namespace", "seccomp"],
            series: containers,
        },
        Gauge {
            name: PRIVILEGED,
            help: "Privileged containers of this node's running pods, by namespace.",
            labels: &["node", "namespace"],
            series: privileged,
        },
        Gauge {
            name: HOST_NAMESPACES,
            help: "Containers of this node's running pods sharing the host's PID, network or IPC namespace, by namespace.",
            labels: &["node", "namespace"],
            series: host,
        },
        Gauge {
            name: FOLDED,
            help: "Namespaces beyond the bound of 1000, whose containers are counted under namespace=\"(other)\".",
            labels: &[],
            series: vec![(Vec::new(), folded.len() as u64)],
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::metrics::Metrics;

    fn pod(ns: &str, name: &str, seccomp: &str, privileged: bool) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "nodeName": "n1",
                "hostNetwork": privileged,
                "securityContext": {"seccompProfile": {"type": seccomp}},
                "containers": [{"name": "c", "securityContext": {"privileged": privileged}}]
            }
        }))
        .unwrap()
    }

    #[test]
    fn counts_the_nodes_containers_by_namespace_and_mode() {
        let pods = [
            pod("shop", "a", "RuntimeDefault", false),
            pod("shop", "b", "RuntimeDefault", true),
            pod("ops", "c", "Unconfined", false),
        ];
        let mut metrics = Metrics::default();
        metrics.gauges = node_gauges("n1", &pods);
        let text = metrics.render();
        for line in [
            "# TYPE syscribe_node_containers gauge",
            r#"syscribe_node_containers{node="n1",namespace="shop",seccomp="RuntimeDefault"} 1"#,
            r#"syscribe_node_containers{node="n1",namespace="shop",seccomp="Unconfined"} 1"#,
            r#"syscribe_node_containers{node="n1",namespace="ops",seccomp="Unconfined"} 1"#,
            r#"syscribe_node_containers{node="n1",namespace="ops",seccomp="Localhost"} 0"#,
            r#"syscribe_node_privileged_containers{node="n1",namespace="shop"} 1"#,
            r#"syscribe_node_host_namespace_containers{node="n1",namespace="shop"} 1"#,
            "syscribe_node_coverage_namespaces_folded 0",
        ] {
            assert!(text.contains(line), "{line}\n{text}");
        }
    }

    #[test]
    fn namespaces_beyond_the_bound_are_folded_and_counted() {
        let pods: Vec<Pod> = (0..MAX_NAMESPACES + 3)
            .map(|i| pod(&format!("ns{i:05}"), "p", "Unconfined", false))
            .collect();
        let gauges = node_gauges("n1", &pods);
        assert_eq!(gauges[0].series.len(), (MAX_NAMESPACES + 1) * 3);
        assert!(
            gauges[0]
                .series
                .iter()
                .any(|(l, v)| l[1] == OTHER && l[2] == "Unconfined" && *v == 3)
        );
        assert_eq!(gauges[3].series, [(Vec::new(), 3)]);
    }

    /// Metric names in a PromQL expression: identifiers followed by `{`, `[`, `)` or the end,
    /// not label names, functions or keywords.
    fn metric_names(expr: &str) -> Vec<String> {
        let mut names = Vec::new();
        let mut rest = expr;
        while let Some(start) = rest.find(|c: char| c.is_ascii_alphabetic() || c == '_') {
            let tail = &rest[start..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(tail.len());
            let word = &tail[..end];
            if word.starts_with("syscribe_") || word.starts_with("security_profiles_operator_") {
                names.push(word.to_owned());
            }
            // Skip quoted label values whole.
            let after = &tail[end..];
            rest = match after.strip_prefix("=\"").or(after.strip_prefix("!=\"")) {
                Some(quoted) => quoted.split_once('"').map_or("", |(_, r)| r),
                None => after,
            };
        }
        names
    }

    #[test]
    fn the_grafana_dashboard_queries_only_metrics_the_daemon_exports() {
        let path = format!(
            "{}/../deploy/grafana/syscribe-coverage.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let dashboard: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let mut metrics = Metrics::default();
        metrics.gauges = node_gauges("n1", []);
        let exported: std::collections::BTreeSet<String> = metrics
            .render()
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .map(str::to_owned)
            .collect();
        let mut used = std::collections::BTreeSet::new();
        for panel in dashboard["panels"].as_array().unwrap() {
            let targets = panel["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{}", panel["title"]);
            for target in targets {
                let expr = target["expr"].as_str().unwrap();
                let names = metric_names(expr);
                assert!(!names.is_empty(), "no metric in {expr}");
                used.extend(names);
            }
        }
        let missing: Vec<&String> = used.difference(&exported).collect();
        assert!(
            missing.is_empty(),
            "not exported: {missing:?} (exported: {exported:?})"
        );
        // Coverage over time is drawn from the gauges, denials from the audit counters.
        for name in [
            CONTAINERS,
            "security_profiles_operator_seccomp_profile_audit_total",
            "security_profiles_operator_selinux_profile_audit_total",
        ] {
            assert!(used.contains(name), "{name} is not graphed");
        }
        assert_eq!(
            metric_names(r#"sum(x_total{a="syscribe_fake"}) + syscribe_node_containers"#),
            ["syscribe_node_containers"]
        );
    }
}
