//! The report's decisions, from pods written as JSON (what the API server returns).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use super::*;

struct Fixed;

impl Lookup for Fixed {
    fn node_status(&self, profile: &str, node: &str) -> Option<String> {
        (profile == "web" && node == "n1").then(|| "Installed".to_owned())
    }
    fn recorded_for(&self, namespace: &str, container: &str) -> Vec<String> {
        if namespace == "shop" && container == "app" {
            vec!["rec-app".to_owned(), "web".to_owned()]
        } else {
            Vec::new()
        }
    }
    fn denials(&self, node: &str, _: &str, pod: &str, _: &str) -> Option<Denials> {
        (node == "n1").then_some(Denials {
            seccomp: u64::from(pod == "loc") * 3,
            selinux: 0,
        })
    }
}

fn pod(value: serde_json::Value) -> Pod {
    serde_json::from_value(value).unwrap()
}

fn rows(value: serde_json::Value, assumptions: Assumptions) -> Vec<ContainerRow> {
    pod_rows(&pod(value), assumptions, &Fixed)
}

#[test]
fn the_container_field_wins_over_the_pods_and_absent_means_the_kubelets_default() {
    let spec = serde_json::json!({
        "metadata": {"name": "p", "namespace": "shop"},
        "spec": {
            "nodeName": "n1",
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "initContainers": [{"name": "init", "securityContext": {"seccompProfile": {"type": "Unconfined"}}}],
            "containers": [{"name": "app"}],
            "ephemeralContainers": [{"name": "debug"}]
        }
    });
    let got = rows(spec, Assumptions::default());
    let summary: Vec<(&str, ContainerKind, SeccompMode, SeccompSource)> = got
        .iter()
        .map(|r| {
            (
                r.container.as_str(),
                r.kind,
                r.seccomp.mode,
                r.seccomp.source,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "init",
                ContainerKind::Init,
                SeccompMode::Unconfined,
                SeccompSource::Container
            ),
            (
                "app",
                ContainerKind::Container,
                SeccompMode::RuntimeDefault,
                SeccompSource::Pod
            ),
            (
                "debug",
                ContainerKind::Ephemeral,
                SeccompMode::RuntimeDefault,
                SeccompSource::Pod
            ),
        ]
    );
    // Recorded for shop/app and not used by it.
    assert_eq!(got[1].recorded_unused, ["rec-app", "web"]);

    let bare = serde_json::json!({
        "metadata": {"name": "p", "namespace": "x"},
        "spec": {"containers": [{"name": "c"}]}
    });
    let off = rows(bare.clone(), Assumptions::default());
    assert_eq!(off[0].seccomp.mode, SeccompMode::Unconfined);
    assert_eq!(off[0].seccomp.source, SeccompSource::Default);
    // Unscheduled: no node, nothing denied yet.
    assert_eq!(off[0].denials, Some(Denials::default()));
    let on = rows(
        bare,
        Assumptions {
            seccomp_default: true,
        },
    );
    assert_eq!(on[0].seccomp.mode, SeccompMode::RuntimeDefault);
}

#[test]
fn a_privileged_container_runs_unconfined_whatever_it_asks() {
    let got = rows(
        serde_json::json!({
            "metadata": {"name": "priv", "namespace": "ops"},
            "spec": {
                "nodeName": "n2",
                "hostNetwork": true, "hostPID": true,
                "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}, "seLinuxOptions": {"type": "pod_t", "level": "s0"}},
                "containers": [{"name": "c", "securityContext": {
                    "privileged": true,
                    "seLinuxOptions": {"level": "s0:c1"},
                    "capabilities": {"add": ["SYS_ADMIN", "NET_ADMIN", "SYS_ADMIN"]}
                }}]
            }
        }),
        Assumptions::default(),
    );
    let row = &got[0];
    assert_eq!(row.seccomp.mode, SeccompMode::Unconfined);
    assert_eq!(row.seccomp.source, SeccompSource::Privileged);
    assert_eq!(row.seccomp.requested.as_deref(), Some("RuntimeDefault"));
    assert!(row.privileged && row.host_pid && row.host_network && !row.host_ipc);
    assert_eq!(row.added_capabilities, ["NET_ADMIN", "SYS_ADMIN"]);
    // The container's seLinuxOptions replace the pod's whole: no type.
    assert_eq!(row.selinux_type, None);
    // n2's daemon was not read: unknown, not zero.
    assert_eq!(row.denials, None);
    assert!(!row.covered());
}

#[test]
fn a_localhost_profile_is_looked_up_on_the_pods_node() {
    let localhost = |node: &str| {
        rows(
            serde_json::json!({
                "metadata": {"name": "loc", "namespace": "shop"},
                "spec": {
                    "nodeName": node,
                    "containers": [{"name": "app", "securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "operator/web.json"}}}]
                }
            }),
            Assumptions::default(),
        )
        .remove(0)
    };
    let row = localhost("n1");
    assert_eq!(row.seccomp.profile.as_deref(), Some("web"));
    assert_eq!(row.seccomp.node_status.as_deref(), Some("Installed"));
    assert_eq!(
        row.recorded_unused,
        ["rec-app"],
        "web is used, rec-app is not"
    );
    assert_eq!(
        row.denials,
        Some(Denials {
            seccomp: 3,
            selinux: 0
        })
    );
    assert_eq!(
        localhost("n2").seccomp.node_status.as_deref(),
        Some("Missing")
    );
    assert_eq!(operator_profile("operator/a.json"), Some("a"));
    assert_eq!(operator_profile("operator/../a.json"), None);
    assert_eq!(operator_profile("profiles/a.json"), None);
}

#[test]
fn totals_and_coverage_per_namespace_and_cluster() {
    let p = |name: &str, ns: &str, seccomp: serde_json::Value| {
        pod(serde_json::json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {"nodeName": "n1", "securityContext": {"seccompProfile": seccomp}, "containers": [{"name": "c"}]}
        }))
    };
    let mut namespaces: BTreeMap<String, Vec<ContainerRow>> = BTreeMap::new();
    for (name, ns, seccomp) in [
        ("a", "one", serde_json::json!({"type": "RuntimeDefault"})),
        ("b", "one", serde_json::json!({"type": "Unconfined"})),
        ("c", "one", serde_json::json!({"type": "Unconfined"})),
        (
            "d",
            "two",
            serde_json::json!({"type": "Localhost", "localhostProfile": "operator/web.json"}),
        ),
    ] {
        namespaces
            .entry(ns.to_owned())
            .or_default()
            .extend(pod_rows(
                &p(name, ns, seccomp),
                Assumptions::default(),
                &Fixed,
            ));
    }
    namespaces.insert("empty".to_owned(), Vec::new());
    let report = Report::new(Assumptions::default(), namespaces, Vec::new(), Vec::new());
    let by_name: BTreeMap<&str, &Totals> = report
        .namespaces
        .iter()
        .map(|n| (n.name.as_str(), &n.totals))
        .collect();
    assert_eq!(by_name["one"].coverage, Some(33.3));
    assert_eq!(by_name["one"].unconfined, 2);
    assert_eq!(by_name["two"].coverage, Some(100.0));
    assert_eq!(by_name["empty"].coverage, None);
    assert_eq!(report.cluster.containers, 4);
    assert_eq!(report.cluster.coverage, Some(50.0));
    let json: serde_json::Value = serde_json::from_str(&render::json(&report)).unwrap();
    assert_eq!(json["version"], 1);
    assert_eq!(json["cluster"]["coverage"], 50.0);
    assert_eq!(json["namespaces"][0]["name"], "empty");
    assert_eq!(
        json["namespaces"][0]["totals"]["coverage"],
        serde_json::Value::Null
    );
    assert_eq!(
        json["namespaces"][1]["containers"][0]["seccomp"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(
        json["namespaces"][1]["containers"][0]["seccomp"]["source"],
        "pod"
    );
    assert_eq!(json["namespaces"][1]["containers"][0]["hostPID"], false);
}

fn hostile_report() -> Report {
    let name = "x<script>alert(1)</script>\u{1b}[31m\u{202e}";
    let rows = pod_rows(
        &pod(serde_json::json!({
            "metadata": {"name": name, "namespace": "ns\"'&"},
            "spec": {"nodeName": "n1<b>", "containers": [{"name": name}]}
        })),
        Assumptions::default(),
        &Fixed,
    );
    let mut namespaces = BTreeMap::new();
    namespaces.insert("ns\"'&".to_owned(), rows);
    Report::new(
        Assumptions::default(),
        namespaces,
        vec![NodeReport {
            name: "n1<b>".into(),
            daemon: None,
            metrics: false,
            error: Some("no daemon\n\u{7}".into()),
        }],
        vec![ProfileReport {
            name: "<img src=x>".into(),
            recorded: false,
            nodes: [("n1<b>".to_owned(), "Installed\"><i>".to_owned())].into(),
        }],
    )
}

#[test]
fn hostile_names_are_text_in_html_and_inert_on_a_terminal() {
    let report = hostile_report();
    let page = html::html(&report);
    for raw in [
        "<script>", "<img", "<b>", "<i>", "\u{1b}", "\u{202e}", "ns\"'&",
    ] {
        assert!(!page.contains(raw), "{raw:?} reached the page");
    }
    assert!(page.contains("x&lt;script&gt;alert(1)&lt;/script&gt;\\u{001b}[31m\\u{202e}"));
    assert!(page.contains("ns&quot;&#39;&amp;"));
    // Self-contained: no script, no external asset (the one URL is the SVG namespace).
    assert!(!page.contains("<script") && !page.contains("<link") && !page.contains("<img"));
    assert_eq!(
        page.matches("http").count(),
        page.matches("xmlns=\"http://www.w3.org/2000/svg\"").count()
    );
    let table = render::table(&report);
    assert!(
        !table.chars().any(|c| c.is_control() && c != '\n'),
        "{table:?}"
    );
    assert!(table.contains("\\u{001b}[31m\\u{202e}"), "{table}");
    assert!(
        table.contains("denials unknown: no daemon\\u{000a}\\u{0007}"),
        "{table}"
    );
}
