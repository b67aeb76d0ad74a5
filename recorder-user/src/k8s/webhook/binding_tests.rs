use base64::Engine as _;
use serde_json::{Value, json};

use super::*;

const UID: &str = "705ab4f5-6393-11e8-b7cc-42010a800002";

fn review(operation: &str, pod: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": UID,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop", "operation": operation,
            "object": pod,
        }
    }))
    .unwrap()
}

fn pod(labels: Value, containers: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"generateName": "web-", "namespace": "shop", "labels": labels},
           "spec": {"containers": containers}})
}

fn spec(kind: &str, profile: &str, image: &str, selector: Option<Value>) -> ProfileBindingSpec {
    let mut spec = json!({"profileRef": {"kind": kind, "name": profile}, "image": image});
    if let Some(selector) = selector {
        spec["podSelector"] = selector;
    }
    serde_json::from_value(spec).unwrap()
}

/// The answer and its decoded patch.
fn answer(body: &[u8], bindings: &[(&str, ProfileBindingSpec)]) -> (Value, Value) {
    let list: Vec<Binding<'_>> = bindings
        .iter()
        .map(|(name, spec)| Binding { name, spec })
        .collect();
    let answer = mutate(body, |namespace| {
        assert_eq!(namespace, "shop");
        list
    })
    .unwrap();
    let patch = match answer["response"]["patch"].as_str() {
        Some(text) => serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(text)
                .unwrap(),
        )
        .unwrap(),
        None => Value::Null,
    };
    (answer, patch)
}

#[test]
fn a_container_of_the_bound_image_gets_the_seccomp_profile_and_the_pod_says_by_whom() {
    let body = review(
        "CREATE",
        pod(
            json!({"app": "web"}),
            json!([{"name": "web", "image": "nginx:1.27"}, {"name": "side", "image": "busybox"}]),
        ),
    );
    let (answer, patch) = answer(
        &body,
        &[(
            "web-seccomp",
            spec("SeccompProfile", "web", "nginx:1.27", None),
        )],
    );
    assert_eq!(answer["response"]["allowed"], true);
    assert_eq!(answer["response"]["uid"], UID);
    assert_eq!(answer["response"]["patchType"], "JSONPatch");
    assert_eq!(
        patch,
        json!([
            {"op": "add", "path": "/spec/containers/0/securityContext",
             "value": {"seccompProfile": {"type": "Localhost", "localhostProfile": "operator/web.json"}}},
            {"op": "add", "path": "/metadata/labels/syscribe.dev~1bound", "value": "true"},
            {"op": "add", "path": "/metadata/annotations", "value": {"syscribe.dev/bindings": "web-seccomp"}},
        ])
    );
}

#[test]
fn a_selinux_binding_by_any_image_sets_the_type_beside_an_existing_security_context() {
    let body = review(
        "CREATE",
        pod(
            json!(null),
            json!([{"name": "web", "image": "nginx", "securityContext": {"runAsUser": 1000}}]),
        ),
    );
    let (answer, patch) = answer(&body, &[("b", spec("SelinuxProfile", "web", "*", None))]);
    assert_eq!(answer["response"]["allowed"], true);
    assert_eq!(
        patch[0],
        json!({"op": "add", "path": "/spec/containers/0/securityContext/seLinuxOptions",
               "value": {"type": "web.process"}})
    );
    assert_eq!(
        patch[1],
        json!({"op": "add", "path": "/metadata/labels", "value": {"syscribe.dev/bound": "true"}})
    );
    assert!(answer["response"].get("warnings").is_none(), "{answer}");
}

#[test]
fn the_pod_selector_decides_which_pods_are_bound() {
    let bindings = [(
        "locked",
        spec(
            "SeccompProfile",
            "strict",
            "*",
            Some(
                json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["locked"]}]}),
            ),
        ),
    )];
    let containers = json!([{"name": "c", "image": "busybox"}]);
    let (_, patch) = answer(
        &review("CREATE", pod(json!({"tier": "locked"}), containers.clone())),
        &bindings,
    );
    assert_eq!(
        patch[0]["value"]["seccompProfile"]["localhostProfile"],
        "operator/strict.json"
    );
    let (answer, patch) = answer(
        &review("CREATE", pod(json!({"tier": "open"}), containers)),
        &bindings,
    );
    assert_eq!(answer["response"]["allowed"], true);
    assert_eq!(patch, Value::Null, "an unmatched pod is not touched");
    assert!(answer["response"].get("patchType").is_none());
}

#[test]
fn two_bindings_giving_one_container_different_profiles_refuse_the_pod_naming_both() {
    let body = review(
        "CREATE",
        pod(
            json!({"app": "web"}),
            json!([{"name": "web", "image": "nginx"}]),
        ),
    );
    let (answer, patch) = answer(
        &body,
        &[
            ("by-image", spec("SeccompProfile", "a", "nginx", None)),
            (
                "by-label",
                spec(
                    "SeccompProfile",
                    "b",
                    "*",
                    Some(json!({"matchLabels": {"app": "web"}})),
                ),
            ),
            // Another kind, or the same profile again, is no conflict.
            ("selinux", spec("SelinuxProfile", "web", "*", None)),
            ("again", spec("SeccompProfile", "a", "*", None)),
        ],
    );
    let response = &answer["response"];
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 403);
    assert_eq!(patch, Value::Null);
    assert_eq!(
        response["status"]["message"],
        "pod \"web-…\" is refused: its ProfileBindings conflict: container \"web\": \
         ProfileBindings \"by-image\" (SeccompProfile \"a\") and \"by-label\" (SeccompProfile \
         \"b\") both match it with different profiles (delete or narrow one binding: syscribe \
         never picks one silently)"
    );
}

#[test]
fn the_bindings_own_profile_replaces_the_containers_and_says_so() {
    let body = review(
        "CREATE",
        pod(
            json!({}),
            json!([{"name": "web", "image": "nginx",
                    "securityContext": {"seccompProfile": {"type": "Unconfined"}}}]),
        ),
    );
    let (answer, patch) = answer(
        &body,
        &[("b", spec("SeccompProfile", "web", "nginx", None))],
    );
    assert_eq!(answer["response"]["allowed"], true);
    assert_eq!(
        patch[0],
        json!({"op": "add", "path": "/spec/containers/0/securityContext/seccompProfile",
               "value": {"type": "Localhost", "localhostProfile": "operator/web.json"}})
    );
    assert_eq!(
        answer["response"]["warnings"][0],
        "container \"web\": its securityContext.seccompProfile {\"type\":\"Unconfined\"} is \
         replaced by {\"localhostProfile\":\"operator/web.json\",\"type\":\"Localhost\"} \
         (ProfileBinding \"b\")"
    );
}

#[test]
fn init_containers_are_bound_too() {
    let mut object = pod(json!({}), json!([{"name": "main", "image": "app"}]));
    object["spec"]["initContainers"] = json!([{"name": "setup", "image": "busybox"}]);
    let (_, patch) = answer(
        &review("CREATE", object),
        &[("b", spec("SeccompProfile", "setup", "busybox", None))],
    );
    assert_eq!(patch[0]["path"], "/spec/initContainers/0/securityContext");
    assert_eq!(patch.as_array().unwrap().len(), 3, "{patch}");
}

#[test]
fn a_pod_not_bound_loses_a_forged_bound_label_and_annotation() {
    let mut object = pod(
        json!({"syscribe.dev/bound": "true"}),
        json!([{"name": "c", "image": "x"}]),
    );
    object["metadata"]["annotations"] = json!({"syscribe.dev/bindings": "someone-elses"});
    let (_, patch) = answer(&review("CREATE", object), &[]);
    assert_eq!(
        patch,
        json!([
            {"op": "remove", "path": "/metadata/labels/syscribe.dev~1bound"},
            {"op": "remove", "path": "/metadata/annotations/syscribe.dev~1bindings"},
        ])
    );
}

#[test]
fn names_that_are_not_object_names_never_reach_the_pod() {
    let body = review(
        "CREATE",
        pod(json!({}), json!([{"name": "c", "image": "x"}])),
    );
    let (answer, patch) = answer(
        &body,
        &[("evil", spec("SeccompProfile", "../../etc/x", "*", None))],
    );
    assert_eq!(answer["response"]["allowed"], false);
    assert_eq!(patch, Value::Null);
    assert!(
        answer["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("ProfileBinding \"evil\" names the profile \"../../etc/x\", which is not a valid object name"),
        "{answer}"
    );
    assert!(valid_profile_name("web.v2-a"));
    for bad in ["", "Web", "a..b", "-a", "a/b", "a b", &"a".repeat(254)] {
        assert!(!valid_profile_name(bad), "{bad:?}");
    }
}

#[test]
fn updates_other_kinds_and_subresources_pass_untouched() {
    let bindings = [("b", spec("SeccompProfile", "web", "*", None))];
    let containers = json!([{"name": "c", "image": "x"}]);
    let (answer_, patch) = answer(
        &review("UPDATE", pod(json!({}), containers.clone())),
        &bindings,
    );
    assert_eq!(
        (answer_["response"]["allowed"].clone(), patch),
        (json!(true), Value::Null)
    );
    let mut body: Value =
        serde_json::from_slice(&review("CREATE", pod(json!({}), containers))).unwrap();
    body["request"]["subResource"] = json!("ephemeralcontainers");
    let (answer_, patch) = answer(&serde_json::to_vec(&body).unwrap(), &bindings);
    assert_eq!(
        (answer_["response"]["allowed"].clone(), patch),
        (json!(true), Value::Null)
    );
}

#[test]
fn hostile_bodies_are_errors_not_panics() {
    for body in [
        &b"not json"[..],
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"kind":"Pod"},"operation":"CREATE","object":{"spec":{"containers":7}}}}"#,
    ] {
        assert!(mutate(body, |_| Vec::new()).is_err());
    }
}

#[test]
fn a_pod_with_too_many_bound_containers_is_refused_not_answered_with_a_huge_patch() {
    let containers: Vec<Value> = (0..=MAX_BOUND_CONTAINERS)
        .map(|i| json!({"name": format!("c{i}"), "image": "x"}))
        .collect();
    let (answer, patch) = answer(
        &review("CREATE", pod(json!({}), Value::Array(containers))),
        &[("b", spec("SeccompProfile", "web", "*", None))],
    );
    assert_eq!(answer["response"]["allowed"], false);
    assert_eq!(patch, Value::Null);
    assert!(
        answer["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("match 201 of its containers, more than the 200"),
        "{answer}"
    );
}
