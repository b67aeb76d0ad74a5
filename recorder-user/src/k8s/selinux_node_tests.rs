use serde_json::json;

use super::*;
use crate::selinux::Complaint;

fn profile(name: &str, spec: serde_json::Value) -> SelinuxProfile {
    serde_json::from_value(json!({
        "apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "SelinuxProfile",
        "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap()
}

fn raw(name: &str, policy: &str) -> RawSelinuxProfile {
    serde_json::from_value(json!({
        "apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "RawSelinuxProfile",
        "metadata": {"name": name}, "spec": {"policy": policy},
    }))
    .unwrap()
}

fn pod_with_type(type_: &str, phase: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "web-1", "namespace": "shop"},
        "spec": {"containers": [{"name": "web", "image": "x",
                 "securityContext": {"seLinuxOptions": {"type": type_}}}]},
        "status": {"phase": phase},
    }))
    .unwrap()
}

fn logger() -> SelinuxProfile {
    profile(
        "errorlogger",
        json!({"allow": {"var_log_t": {"file": ["read", "open"]}}}),
    )
}

#[test]
fn a_node_without_selinux_says_so_and_never_installs() {
    let p = logger();
    let plan = plan(
        "errorlogger",
        Some(Object::Profile(&p)),
        None,
        [],
        &mut Validator::default(),
        false,
    );
    assert_eq!(plan, SelinuxPlan::Off);
    assert!(SELINUX_OFF.contains("SELinux is off on this node"));
}

#[test]
fn a_valid_profile_becomes_its_module_with_each_line_traced() {
    let p = logger();
    let SelinuxPlan::Install { cil, origins } = plan(
        "errorlogger",
        Some(Object::Profile(&p)),
        None,
        [],
        &mut Validator::default(),
        true,
    ) else {
        panic!("not installed");
    };
    assert_eq!(
        cil,
        "(block errorlogger\n    (blockinherit container)\n    (allow process var_log_t (file (open read)))\n)\n"
    );
    assert_eq!(origins[2], "spec.allow.var_log_t.file");
    let r = raw(
        "rawlogger",
        "(blockinherit container)\n(allow process var_log_t (dir (search)))\n",
    );
    let SelinuxPlan::Install { cil, origins } = plan(
        "rawlogger",
        Some(Object::Raw(&r)),
        None,
        [],
        &mut Validator::default(),
        true,
    ) else {
        panic!("not installed");
    };
    assert!(cil.starts_with("(block rawlogger\n    (blockinherit container)\n"));
    assert_eq!(origins[2], "spec.policy line 2");
    let refused = StoreError::Refused {
        name: "rawlogger".into(),
        complaints: vec![
            Complaint {
                line: Some(3),
                message: "Failed to resolve allow statement".into(),
            },
            Complaint {
                line: None,
                message: "Failed to resolve AST".into(),
            },
        ],
    };
    assert_eq!(
        explain(&refused, &origins),
        "the policy compiler refused the module: spec.policy line 2: Failed to resolve allow statement; Failed to resolve AST"
    );
}

#[test]
fn invalid_shared_or_unnameable_profiles_are_refused_with_the_reason() {
    let bad = raw("broken", "(allow process var_log_t (file (read))\n");
    let SelinuxPlan::Refuse(reason) = plan(
        "broken",
        Some(Object::Raw(&bad)),
        None,
        [],
        &mut Validator::default(),
        false,
    ) else {
        panic!("not refused");
    };
    assert!(
        reason.contains("spec.policy: policy line 1:1: this '(' is never closed"),
        "{reason}"
    );
    let dotted = profile("web.app", json!({}));
    let SelinuxPlan::Refuse(reason) = plan(
        "web.app",
        Some(Object::Profile(&dotted)),
        None,
        [],
        &mut Validator::default(),
        true,
    ) else {
        panic!("not refused");
    };
    assert!(reason.contains("namespace separator"), "{reason}");
    let r = raw("errorlogger", "(blockinherit container)\n");
    let SelinuxPlan::Refuse(reason) = plan(
        "errorlogger",
        Some(Object::Raw(&r)),
        Some(SelinuxKind::Profile),
        [],
        &mut Validator::default(),
        true,
    ) else {
        panic!("not refused");
    };
    assert!(
        reason.starts_with("a SelinuxProfile named errorlogger exists too"),
        "{reason}"
    );
}

#[test]
fn a_disabled_profile_stays_while_a_running_pod_uses_its_type() {
    let mut p = logger();
    p.spec.state = Some(ProfileState::Disabled);
    let running = pod_with_type("errorlogger.process", "Running");
    let done = pod_with_type("errorlogger.process", "Succeeded");
    let other = pod_with_type("other.process", "Running");
    let mut v = Validator::default();
    assert_eq!(
        plan(
            "errorlogger",
            Some(Object::Profile(&p)),
            None,
            [&running, &other],
            &mut v,
            true
        ),
        SelinuxPlan::Hold {
            users: vec!["shop/web-1".into()]
        }
    );
    assert_eq!(
        plan(
            "errorlogger",
            Some(Object::Profile(&p)),
            None,
            [&done, &other],
            &mut v,
            true
        ),
        SelinuxPlan::Remove
    );
    // Deleted: the same.
    assert_eq!(
        plan("errorlogger", None, None, [&running], &mut v, false),
        SelinuxPlan::Hold {
            users: vec!["shop/web-1".into()]
        }
    );
}

/// A recorded partial profile waits to be merged: never installed, on any node.
#[test]
fn a_partial_recorded_profile_is_not_installed() {
    let mut p = logger();
    p.metadata.labels = Some([(LABEL_PARTIAL.to_owned(), "true".to_owned())].into());
    for selinux_on in [true, false] {
        let plan = plan(
            "errorlogger",
            Some(Object::Profile(&p)),
            None,
            [],
            &mut Validator::default(),
            selinux_on,
        );
        assert_eq!(plan, SelinuxPlan::Partial);
    }
}
