//! Rajesh deploys profiles on a base and sees where they are installed (s8f).

use serde_json::Value;
use syscribe_tests::cluster::{Kube, deployed, image};

use super::common::{MINUTE, installed_file, namespace_yaml};

/// The names of the installed file's rule with this errno (the joined ERRNO rule).
fn errno_names(file: &Value, errno: u64) -> Vec<String> {
    let mut names: Vec<String> = file["syscalls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["action"] == "SCMP_ACT_ERRNO" && r["errnoRet"] == errno)
        .flat_map(|r| r["names"].as_array().cloned().unwrap_or_default())
        .filter_map(|n| n.as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

/// This node's SecurityProfileNodeStatus of a SeccompProfile.
fn node_status(kube: &Kube, profile: &str) -> Value {
    kube.json(&["get", "spns", &format!("{profile}-{}", kube.node)])
}

/// Issue 15, Rajesh: an invalid profile is refused at `kubectl apply` with every problem, its
/// field path and a suggestion; a profile built on a base installs the joined rules and is
/// installed again when the base changes; `kubectl get sp` shows Installed and on how many
/// nodes, `kubectl describe` the Ready condition; disabled, its file goes — unless a pod uses
/// it, and then `kubectl get spns` names the pod.
#[test]
fn s8f_rajesh_deploys_profiles_on_a_base_and_sees_where_they_are_installed() {
    let kube = Kube::get();
    deployed(&kube);
    // Every problem the webhook finds, each with its path (the API server's own schema
    // checks, such as an unknown action, come before the webhook and stop at the first).
    let invalid = r#"apiVersion: security-profiles-operator.x-k8s.io/v1
kind: SeccompProfile
metadata: {name: rajesh-broken}
spec:
  defaultAction: SCMP_ACT_ERRNO
  architectures: [SCMP_ARCH_X86_64, SCMP_ARCH_X86_46]
  flags: [SECCOMP_FILTER_FLAG_TSYNK]
  syscalls:
  - action: SCMP_ACT_ALLOW
    names: [read, wirte, exit_group]
  - action: SCMP_ACT_ERRNO
    errnoRet: 1
    names: [mkdri]
"#;
    let out = kube.with_stdin(&["apply"], invalid);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "admitted: {stderr}");
    for part in [
        "spec.architectures[1]",
        "did you mean \"SCMP_ARCH_X86_64\"",
        "spec.flags[0]",
        "did you mean \"SECCOMP_FILTER_FLAG_TSYNC\"",
        "spec.syscalls[0].names[1]",
        "unknown syscall \"wirte\"",
        "did you mean \"write\"",
        "spec.syscalls[1].names[0]",
        "unknown syscall \"mkdri\"",
        "did you mean \"mkdir\"",
    ] {
        assert!(
            stderr.contains(part),
            "kubectl's output lacks {part:?}:\n{stderr}"
        );
    }
    println!("refused at apply:\n{}", stderr.trim());

    // A base that refuses mkdir, and a profile on it that also refuses rmdir; both allow the
    // rest, so a pod runs under the joined rules.
    let base = |names: &str| {
        format!(
            "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SeccompProfile\nmetadata: {{name: rajesh-base}}\nspec:\n  defaultAction: SCMP_ACT_ALLOW\n  syscalls:\n  - action: SCMP_ACT_ERRNO\n    errnoRet: 1\n    names: [{names}]\n"
        )
    };
    kube.apply(&base("mkdir, mkdirat"));
    kube.apply(
        r#"apiVersion: security-profiles-operator.x-k8s.io/v1
kind: SeccompProfile
metadata: {name: rajesh-app}
spec:
  defaultAction: SCMP_ACT_ALLOW
  baseProfileName: rajesh-base
  syscalls:
  - action: SCMP_ACT_ERRNO
    errnoRet: 1
    names: [rmdir]
"#,
    );
    let file = kube.wait_for("rajesh-app installed with its base's rules", MINUTE, || {
        installed_file("rajesh-app").filter(|f| errno_names(f, 1).len() == 3)
    });
    assert_eq!(
        errno_names(&file, 1),
        ["mkdir", "mkdirat", "rmdir"],
        "{file}"
    );
    // Installed, on how many nodes, and Ready.
    kube.wait_status("seccompprofile", "rajesh-app", "Installed", MINUTE);
    let table = kube.ok(&["get", "sp", "rajesh-app"]);
    let mut lines = table.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .split_whitespace()
            .eq(["NAME", "STATUS", "NODES", "AGE"]),
        "{table}"
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row[..3], ["rajesh-app", "Installed", "1/1"], "{table}");
    println!("$ kubectl get sp rajesh-app\n{table}");
    let described = kube.ok(&["describe", "sp", "rajesh-app"]);
    let conditions = described
        .split_once("Conditions:")
        .unwrap_or_else(|| panic!("no conditions:\n{described}"))
        .1;
    let field = |name: &str| {
        conditions
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{name}:")))
            .map(str::trim)
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(
        (field("Type"), field("Status"), field("Reason")),
        (
            "Ready".to_owned(),
            "True".to_owned(),
            "Installed".to_owned()
        ),
        "{described}"
    );

    // The base changes: the profile is installed again with it.
    let changed = std::time::Instant::now();
    kube.apply(&base("mkdir, mkdirat, unlink"));
    let file = kube.wait_for(
        "rajesh-app installed again with the new base",
        MINUTE,
        || installed_file("rajesh-app").filter(|f| errno_names(f, 1).len() == 4),
    );
    assert_eq!(
        errno_names(&file, 1),
        ["mkdir", "mkdirat", "rmdir", "unlink"]
    );
    println!(
        "base changed: rajesh-app installed again {:.1} s later",
        changed.elapsed().as_secs_f64()
    );

    // Disabled while unused: the file goes.
    let set_state = |state: &str| {
        let patch = format!(r#"{{"spec":{{"state":"{state}"}}}}"#);
        kube.ok(&["patch", "sp", "rajesh-app", "--type=merge", "-p", &patch]);
    };
    set_state("Disabled");
    kube.wait_for("rajesh-app's file removed", MINUTE, || {
        installed_file("rajesh-app").is_none().then_some(())
    });
    kube.wait_for("rajesh-app Disabled", MINUTE, || {
        (node_status(&kube, "rajesh-app")["status"] == "Disabled").then_some(())
    });
    set_state("Enabled");
    kube.wait_for("rajesh-app installed again", MINUTE, || {
        installed_file("rajesh-app")
    });

    // Disabled while a pod uses it: kept, and the node status says who holds it.
    kube.apply(&namespace_yaml("rajesh", None));
    kube.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: holder, namespace: rajesh}}
spec:
  terminationGracePeriodSeconds: 1
  securityContext:
    seccompProfile: {{type: Localhost, localhostProfile: operator/rajesh-app.json}}
  containers:
  - name: main
    image: {image}
    command: [sh, -c, "mkdir /tmp/x; echo mkdir-status=$?; rm -f /tmp/y; exec sleep 3600"]
"#,
        image = image("workload")
    ));
    let logs = kube.wait_log("rajesh", "holder", "mkdir-status", MINUTE);
    assert!(
        logs.contains("mkdir-status=1"),
        "the base's rule applies: {logs}"
    );
    set_state("Disabled");
    let wide = kube.wait_for("the node status naming the holder", MINUTE, || {
        let wide = kube.ok(&["get", "spns", "-o", "wide"]);
        wide.lines()
            .any(|l| {
                l.starts_with(&format!("rajesh-app-{}", kube.node)) && l.contains("rajesh/holder")
            })
            .then_some(wide)
    });
    let row = wide.lines().find(|l| l.starts_with("rajesh-app-")).unwrap();
    assert!(row.contains("Terminating"), "{row}");
    println!(
        "$ kubectl get spns -o wide (rajesh-app disabled, a pod uses it)\n{}\n{row}",
        wide.lines().next().unwrap()
    );
    assert!(
        installed_file("rajesh-app").is_some(),
        "the file a pod uses was removed"
    );
    kube.delete(&["pod", "-n", "rajesh", "holder"]);
    kube.wait_for(
        "rajesh-app's file removed once the pod went",
        MINUTE,
        || installed_file("rajesh-app").is_none().then_some(()),
    );
    kube.wait_for("rajesh-app Disabled", MINUTE, || {
        (node_status(&kube, "rajesh-app")["status"] == "Disabled").then_some(())
    });
    kube.ok(&["delete", "namespace", "rajesh", "--wait=false"]);
    kube.delete(&["sp", "rajesh-app", "rajesh-base"]);
}
