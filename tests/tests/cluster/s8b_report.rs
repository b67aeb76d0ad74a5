//! `syscribe report`: counts, coverage, the HTML page and the daemon's gauges (s8b).

use serde_json::Value;
use syscribe_tests::cluster::{Kube, deployed, image};

use super::common::{MINUTE, namespace_yaml};

/// `syscribe report` on pods of known settings in two fresh namespaces: exact counts and
/// coverage in its JSON, read by a ServiceAccount holding only deploy/report-rbac.yaml's
/// roles; a denial logged by a Localhost profile counted from the daemon's /metrics; the HTML
/// page as headless Chromium renders it; the daemon's gauges through the pod proxy.
#[test]
fn s8b_the_report_counts_each_namespaces_containers_by_seccomp_mode() {
    let kube = Kube::get();
    deployed(&kube);
    // Allows everything; logs mkdir (an audit record the enricher counts as a denial).
    kube.apply(
        r#"apiVersion: security-profiles-operator.x-k8s.io/v1
kind: SeccompProfile
metadata: {name: report-log}
spec:
  defaultAction: SCMP_ACT_ALLOW
  architectures: [SCMP_ARCH_X86_64, SCMP_ARCH_X86, SCMP_ARCH_X32]
  syscalls:
  - action: SCMP_ACT_LOG
    names: [mkdir, mkdirat]
---
apiVersion: security-profiles-operator.x-k8s.io/v1
kind: SeccompProfile
metadata:
  name: report-rec-main
  labels:
    spo.x-k8s.io/recording-id: report-rec
    spo.x-k8s.io/recording-namespace: report-a
    spo.x-k8s.io/container-id: main
spec:
  defaultAction: SCMP_ACT_ALLOW
"#,
    );
    kube.wait_status("seccompprofile", "report-log", "Installed", MINUTE);
    let hostile = "<script>alert(1)</script>";
    let pod = |ns: &str, name: &str, pod_sc: &str, host: &str, container_sc: &str| {
        format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}}}
spec:
  terminationGracePeriodSeconds: 0
{host}  securityContext: {{{pod_sc}}}
  containers:
  - name: main
    image: {image}
    command: [sh, -c, "mkdir /tmp/x; exec sleep 3600"]
    securityContext: {{{container_sc}}}
"#,
            image = image("workload")
        )
    };
    let init = format!(
        "  initContainers:\n  - {{name: setup, image: {}, command: [sh, -c, \"exit 0\"]}}\n",
        image("workload")
    );
    let docs = [
        namespace_yaml("report-a", None),
        namespace_yaml("report-b", None),
        pod(
            "report-a",
            "unconfined",
            "",
            "",
            "seccompProfile: {type: Unconfined}",
        ),
        pod("report-a", "no-profile", "", "", ""),
        pod(
            "report-a",
            "runtime-default",
            "seccompProfile: {type: RuntimeDefault}",
            &init,
            "",
        ),
        pod(
            "report-a",
            "localhost",
            "",
            "",
            "seccompProfile: {type: Localhost, localhostProfile: operator/report-log.json}",
        ),
        pod(
            "report-b",
            "privileged",
            "seccompProfile: {type: RuntimeDefault}",
            "",
            "privileged: true",
        ),
        pod(
            "report-b",
            "hostnet",
            &format!(
                "seccompProfile: {{type: RuntimeDefault}}, seLinuxOptions: {{type: \"{hostile}\"}}"
            ),
            "  hostNetwork: true\n",
            "capabilities: {add: [NET_ADMIN]}",
        ),
    ];
    kube.apply(&docs.join("---\n"));
    // Only the report's roles: a ServiceAccount bound to them, its token in a kubeconfig.
    kube.apply(
        r#"apiVersion: v1
kind: ServiceAccount
metadata: {name: report-reader, namespace: report-a}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: report-reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: syscribe-report}
subjects: [{kind: ServiceAccount, name: report-reader, namespace: report-a}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: report-reader, namespace: syscribe}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: syscribe-report-metrics}
subjects: [{kind: ServiceAccount, name: report-reader, namespace: report-a}]
"#,
    );
    let token = kube.ok(&["create", "token", "report-reader", "-n", "report-a"]);
    let admin = kube.json(&["config", "view", "--raw", "--minify"]);
    let cluster = &admin["clusters"][0]["cluster"];
    let dir = syscribe_tests::TempDir::new("report");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        serde_json::json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "c", "cluster": cluster}],
            "users": [{"name": "reader", "user": {"token": token.trim()}}],
            "contexts": [{"name": "r", "context": {"cluster": "c", "user": "reader"}}],
            "current-context": "r",
        })
        .to_string(),
    )
    .unwrap();
    let report = |args: &[&str]| {
        let out = syscribe_tests::syscribe()
            .env("KUBECONFIG", &kubeconfig)
            .arg("report")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "syscribe report {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    // Every pod running (the privileged one may crash-loop: still not finished), and the
    // localhost pod's mkdir counted by the daemon.
    let json = kube.wait_for(
        "the report counting the localhost pod's denial",
        2 * MINUTE,
        || {
            let json: Value = serde_json::from_str(&report(&["--format", "json"])).unwrap();
            let ns = json["namespaces"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["name"] == "report-a")?
                .clone();
            let row = ns["containers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["pod"] == "localhost")?
                .clone();
            (row["denials"]["seccomp"].as_u64()? >= 1).then_some(json)
        },
    );
    let namespace = |name: &str| {
        json["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {json}"))
            .clone()
    };
    let a = namespace("report-a");
    let t = &a["totals"];
    assert_eq!(
        (
            t["containers"].as_u64(),
            t["unconfined"].as_u64(),
            t["runtimeDefault"].as_u64(),
            t["localhost"].as_u64()
        ),
        (Some(5), Some(2), Some(2), Some(1)),
        "{a}"
    );
    assert_eq!(t["coverage"], 60.0, "{a}");
    assert_eq!(t["localhostNotInstalled"], 0, "{a}");
    // report-rec-main is recorded for report-a/main: the four pods' main containers leave it unused.
    assert_eq!(t["recordedUnused"], 4, "{a}");
    let row = |ns: &Value, pod: &str, container: &str| {
        ns["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["pod"] == pod && c["container"] == container)
            .unwrap_or_else(|| panic!("no {pod}/{container} in {ns}"))
            .clone()
    };
    let local = row(&a, "localhost", "main");
    assert_eq!(local["seccomp"]["type"], "Localhost");
    assert_eq!(local["seccomp"]["profile"], "report-log");
    assert_eq!(local["seccomp"]["nodeStatus"], "Installed");
    assert_eq!(local["node"], kube.node.as_str());
    assert_eq!(row(&a, "runtime-default", "setup")["kind"], "init");
    assert_eq!(
        row(&a, "runtime-default", "main")["seccomp"]["source"],
        "pod"
    );
    assert_eq!(
        row(&a, "no-profile", "main")["seccomp"]["source"],
        "default"
    );
    assert_eq!(
        row(&a, "no-profile", "main")["recordedUnused"],
        serde_json::json!(["report-rec-main"])
    );
    let b = namespace("report-b");
    let t = &b["totals"];
    assert_eq!(
        (
            t["containers"].as_u64(),
            t["unconfined"].as_u64(),
            t["runtimeDefault"].as_u64()
        ),
        (Some(2), Some(1), Some(1)),
        "{b}"
    );
    assert_eq!(t["coverage"], 50.0);
    assert_eq!(
        (
            t["privileged"].as_u64(),
            t["hostNamespaces"].as_u64(),
            t["addedCapabilities"].as_u64()
        ),
        (Some(1), Some(1), Some(1)),
        "{b}"
    );
    let privileged = row(&b, "privileged", "main");
    assert_eq!(privileged["seccomp"]["source"], "privileged");
    assert_eq!(privileged["seccomp"]["requested"], "RuntimeDefault");
    let hostnet = row(&b, "hostnet", "main");
    assert_eq!(hostnet["hostNetwork"], true);
    assert_eq!(
        hostnet["addedCapabilities"],
        serde_json::json!(["NET_ADMIN"])
    );
    assert_eq!(hostnet["selinuxType"], hostile);
    let node = json["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == kube.node.as_str())
        .unwrap_or_else(|| panic!("no node in {json}"));
    assert_eq!(
        node["metrics"], true,
        "the daemon's /metrics through the pod proxy: {node}"
    );
    let profile = json["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "report-log")
        .unwrap();
    assert_eq!(profile["nodes"][kube.node.as_str()], "Installed");
    println!(
        "report: cluster {} containers, coverage {}%; report-a 60.0%, report-b 50.0%",
        json["cluster"]["containers"], json["cluster"]["coverage"]
    );

    // The table, and -n: only that namespace.
    let table = report(&["-n", "report-b"]);
    assert!(
        table.contains("Namespace report-b: 2 containers, coverage 50.0%"),
        "{table}"
    );
    assert!(!table.contains("report-a"), "{table}");
    println!("$ syscribe report -n report-b\n{table}");
    println!(
        "$ syscribe report -n report-a --format json\n{}",
        report(&["-n", "report-a", "--format", "json"])
    );

    // The HTML page, as a real browser renders it.
    let page = dir.join("report.html");
    report(&["--format", "html", "-o", page.to_str().unwrap()]);
    let out = std::process::Command::new("timeout")
        .arg("120")
        .arg("chromium")
        .args(["--headless", "--disable-gpu", "--no-sandbox", "--dump-dom"])
        .arg(format!(
            "--user-data-dir={}",
            dir.join("chromium").display()
        ))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium (Debian's package, installed by cargo xtask setup)");
    let dom = String::from_utf8_lossy(&out.stdout);
    if let Some(keep) = std::env::var_os("SYSCRIBE_REPORT_EXAMPLES") {
        // For docs/commands.md: the page, kept.
        let keep = std::path::PathBuf::from(keep);
        let _ = std::fs::create_dir_all(&keep);
        let _ = std::fs::copy(&page, keep.join("report.html"));
    }
    assert!(
        out.status.success() && dom.contains("</html>"),
        "chromium: {out:?}"
    );
    for shown in [
        "report-a",
        "report-b",
        "60.0%",
        "50.0%",
        "Security profile report",
        "report-log",
    ] {
        assert!(
            dom.contains(shown),
            "the page does not show {shown:?}:\n{dom}"
        );
    }
    // The SELinux type is text in the page: escaped in the DOM, no script element.
    assert!(
        dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{dom}"
    );
    assert!(!dom.contains("<script"), "{dom}");
    let shot = dir.join("report.png");
    let out = std::process::Command::new("timeout")
        .arg("120")
        .arg("chromium")
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--window-size=1200,900",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.join("chromium").display()
        ))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success() && std::fs::metadata(&shot).is_ok_and(|m| m.len() > 1000),
        "chromium --screenshot: {out:?}"
    );

    // The daemon's gauges, through the API server's pod proxy.
    let daemon = kube.syscribe_pods("syscribe");
    let daemon = daemon["items"][0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/v1/namespaces/syscribe/pods/{daemon}:9890/proxy/metrics");
    let node = kube.node.clone();
    let wanted = [
        format!(
            r#"syscribe_node_containers{{node="{node}",namespace="report-a",seccomp="Unconfined"}} 2"#
        ),
        format!(
            r#"syscribe_node_containers{{node="{node}",namespace="report-a",seccomp="RuntimeDefault"}} 2"#
        ),
        format!(
            r#"syscribe_node_containers{{node="{node}",namespace="report-a",seccomp="Localhost"}} 1"#
        ),
        format!(
            r#"syscribe_node_containers{{node="{node}",namespace="report-b",seccomp="Unconfined"}} 1"#
        ),
        format!(
            r#"syscribe_node_containers{{node="{node}",namespace="report-b",seccomp="RuntimeDefault"}} 1"#
        ),
        format!(r#"syscribe_node_privileged_containers{{node="{node}",namespace="report-b"}} 1"#),
        format!(
            r#"syscribe_node_host_namespace_containers{{node="{node}",namespace="report-b"}} 1"#
        ),
        "syscribe_node_coverage_namespaces_folded 0".to_owned(),
    ];
    kube.wait_for("the daemon's gauges", MINUTE, || {
        let text = kube.ok(&["get", "--raw", &path]);
        wanted
            .iter()
            .all(|line| text.lines().any(|l| l == line))
            .then_some(())
    });

    kube.delete(&["namespace", "report-a", "report-b", "--timeout=120s"]);
    kube.ok(&["delete", "clusterrolebinding", "report-reader"]);
    kube.ok(&["delete", "rolebinding", "-n", "syscribe", "report-reader"]);
    kube.delete(&[
        "seccompprofile",
        "report-log",
        "report-rec-main",
        "--timeout=120s",
    ]);
}
