//! `POST /mutate`: a pod's CREATE in a namespace that opted in to bindings
//! (`spo.x-k8s.io/enable-binding`, chosen by the MutatingWebhookConfiguration) gets the
//! profiles of the ProfileBindings that match its containers, as a JSONPatch:
//! `securityContext.seccompProfile: {type: Localhost, localhostProfile: operator/<name>.json}`
//! for a SeccompProfile, `securityContext.seLinuxOptions: {type: <name>.process}` for a
//! SelinuxProfile. A binding matches a container when its image is the container's (or `*`)
//! and its podSelector the pod's labels. Two bindings that give one container different
//! profiles of one kind refuse the pod, naming both: never decided silently.
//!
//! Pure: the bindings of the namespace are given; only what is needed of the pod is read
//! (everything else is skipped unread), and the answer is bounded by [`MAX_BOUND_CONTAINERS`].

use std::collections::BTreeMap;

use base64::Engine as _;
use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation, jsonptr::PointerBuf};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::admission::Operation;
use serde::{Deserialize, de::IgnoredAny};
use serde_json::{Value, json};

use super::review::{Incoming, cut, respond, respond_with};
use super::{MAX_ERRORS, ReviewError};
use crate::k8s::crd::{
    ANNOTATION_BINDINGS, ANY_IMAGE, LABEL_BOUND, ProfileBindingSpec, RecordingKind,
};
use crate::k8s::index::selector_matches;

/// Containers one pod may have bound (init containers included); a pod with more is refused
/// rather than answered with an unbounded patch. Real pods have a handful.
pub const MAX_BOUND_CONTAINERS: usize = 200;

/// A binding as the webhook sees it: its name and spec (from the watch cache).
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    pub name: &'a str,
    pub spec: &'a ProfileBindingSpec,
}

#[derive(Deserialize, Default)]
struct Pod {
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    spec: Spec,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    generate_name: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, IgnoredAny>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Spec {
    #[serde(default)]
    containers: Vec<Container>,
    #[serde(default)]
    init_containers: Vec<Container>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Container {
    #[serde(default)]
    name: String,
    #[serde(default)]
    image: String,
    #[serde(default)]
    security_context: Option<SecurityContext>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SecurityContext {
    #[serde(default)]
    seccomp_profile: Option<Value>,
    #[serde(default)]
    se_linux_options: Option<Value>,
}

/// What one container gets: per kind, the profile and the bindings that name it.
#[derive(Debug, Default, PartialEq)]
struct Chosen<'a> {
    seccomp: Option<(&'a str, Vec<&'a str>)>,
    selinux: Option<(&'a str, Vec<&'a str>)>,
}

/// Object names (DNS-1123 subdomains): what a profile can be called. Anything else would
/// reach the kubelet as a path or SELinux as a type name.
fn valid_profile_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

/// Whether `binding` applies to a container running `image` in a pod labelled `labels`.
pub fn matches(
    binding: &ProfileBindingSpec,
    image: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    (binding.image == ANY_IMAGE || binding.image == image)
        && binding
            .pod_selector
            .as_ref()
            .is_none_or(|s: &LabelSelector| selector_matches(s, labels))
}

/// The profiles for one container, or the conflicts (one line each) that refuse the pod.
fn choose<'a>(
    container: &Container,
    labels: &BTreeMap<String, String>,
    bindings: &[Binding<'a>],
    warnings: &mut Vec<String>,
) -> Result<Chosen<'a>, Vec<String>> {
    let mut chosen = Chosen::default();
    let mut conflicts = Vec::new();
    for binding in bindings {
        if !matches(binding.spec, &container.image, labels) {
            continue;
        }
        let profile = binding.spec.profile_ref.name.as_str();
        let slot = match binding.spec.profile_ref.kind {
            RecordingKind::SeccompProfile => &mut chosen.seccomp,
            RecordingKind::SelinuxProfile => &mut chosen.selinux,
            RecordingKind::AppArmorProfile => {
                warnings.push(cut(&format!(
                    "ProfileBinding {:?} names an AppArmorProfile: syscribe does not apply \
                     AppArmor profiles; container {:?} was not bound by it",
                    binding.name, container.name
                )));
                continue;
            }
        };
        if !valid_profile_name(profile) {
            conflicts.push(cut(&format!(
                "ProfileBinding {:?} names the profile {profile:?}, which is not a valid \
                 object name",
                binding.name
            )));
            continue;
        }
        match slot {
            None => *slot = Some((profile, vec![binding.name])),
            Some((same, names)) if *same == profile => names.push(binding.name),
            Some((other, names)) => conflicts.push(cut(&format!(
                "container {:?}: ProfileBindings {:?} ({:?} {other:?}) and {:?} ({:?} \
                 {profile:?}) both match it with different profiles",
                container.name,
                names[0],
                binding.spec.profile_ref.kind,
                binding.name,
                binding.spec.profile_ref.kind
            ))),
        }
    }
    if conflicts.is_empty() {
        Ok(chosen)
    } else {
        Err(conflicts)
    }
}

/// The AdmissionReview answering a pod review `body`: allowed, with a JSONPatch binding the
/// matching containers (and the label and annotation saying by which bindings), or refused
/// when bindings conflict. `bindings` are the ProfileBindings of the pod's namespace.
pub fn mutate<'a>(
    body: &[u8],
    bindings_of: impl FnOnce(&str) -> Vec<Binding<'a>>,
) -> Result<Value, ReviewError> {
    let incoming: Incoming<Pod> =
        serde_json::from_slice(body).map_err(|e| ReviewError::Json(e.to_string()))?;
    let mut request = incoming.request_checked()?;
    let uid = request.uid.as_str().ok_or(ReviewError::NoUid)?.to_owned();
    let kind = request.kind.as_ref().map(|k| k.kind.as_str());
    // Only a pod's creation is bound (a running pod's securityContext cannot change); the
    // webhook configuration sends nothing else, and anything else passes untouched.
    if request.operation != Some(Operation::Create)
        || kind != Some("Pod")
        || !request.sub_resource.is_null()
    {
        return Ok(respond(&uid, true, None, Vec::new()));
    }
    let namespace = request.namespace.as_str().unwrap_or_default().to_owned();
    let pod = request.object.take().unwrap_or_default();
    let bindings = bindings_of(&namespace);
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let pod_name = cut(pod
        .metadata
        .name
        .as_deref()
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .or_else(|| pod.metadata.generate_name.as_ref().map(|g| format!("{g}…")))
        .as_deref()
        .unwrap_or_default());

    let mut warnings = Vec::new();
    let mut conflicts = Vec::new();
    let mut ops = Vec::new();
    let mut bound_by: Vec<&str> = Vec::new();
    let mut bound = 0usize;
    for (list, containers) in [
        ("containers", &pod.spec.containers),
        ("initContainers", &pod.spec.init_containers),
    ] {
        for (index, container) in containers.iter().enumerate() {
            let chosen = match choose(container, &labels, &bindings, &mut warnings) {
                Ok(chosen) => chosen,
                Err(found) => {
                    conflicts.extend(found);
                    continue;
                }
            };
            if chosen == Chosen::default() {
                continue;
            }
            bound += 1;
            let base = PointerBuf::from_tokens(["spec", list])
                .with_trailing_token(index)
                .with_trailing_token("securityContext");
            let mut context = serde_json::Map::new();
            if let Some((profile, names)) = &chosen.seccomp {
                let value = json!({"type": "Localhost", "localhostProfile": format!("operator/{profile}.json")});
                replaced(container, "seccompProfile", &value, names, &mut warnings);
                context.insert("seccompProfile".into(), value);
                bound_by.extend(names);
            }
            if let Some((profile, names)) = &chosen.selinux {
                let value = json!({"type": format!("{profile}.process")});
                replaced(container, "seLinuxOptions", &value, names, &mut warnings);
                context.insert("seLinuxOptions".into(), value);
                bound_by.extend(names);
            }
            if container.security_context.is_some() {
                // `add` on an object member sets it, whether it was there or not.
                for (field, value) in context {
                    ops.push(add(base.with_trailing_token(field), value));
                }
            } else {
                ops.push(add(base, Value::Object(context)));
            }
        }
    }
    if !conflicts.is_empty() {
        let more = conflicts.len().saturating_sub(MAX_ERRORS);
        conflicts.truncate(MAX_ERRORS);
        let mut message = format!(
            "pod {pod_name:?} is refused: its ProfileBindings conflict: {}",
            conflicts.join("; ")
        );
        if more > 0 {
            message.push_str(&format!("; and {more} more"));
        }
        message.push_str(" (delete or narrow one binding: syscribe never picks one silently)");
        return Ok(respond_with(
            &uid,
            false,
            Some((403, "Forbidden", message)),
            warnings,
            None,
        ));
    }
    if bound > MAX_BOUND_CONTAINERS {
        let message = format!(
            "pod {pod_name:?} is refused: ProfileBindings match {bound} of its containers, \
             more than the {MAX_BOUND_CONTAINERS} syscribe binds in one pod"
        );
        return Ok(respond_with(
            &uid,
            false,
            Some((403, "Forbidden", message)),
            warnings,
            None,
        ));
    }
    // The label and annotation say which bindings bound the pod (the binding's
    // status.activeWorkloads is made from them); a pod not bound never keeps copies of them
    // written by its author.
    let has_label = labels.contains_key(LABEL_BOUND);
    let has_annotation = pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(ANNOTATION_BINDINGS));
    // A key is one token of a pointer (its `/` escaped by jsonptr).
    let labels = PointerBuf::from_tokens(["metadata", "labels"]);
    let annotations = PointerBuf::from_tokens(["metadata", "annotations"]);
    if bound_by.is_empty() {
        if has_label {
            ops.push(remove(labels.with_trailing_token(LABEL_BOUND)));
        }
        if has_annotation {
            ops.push(remove(annotations.with_trailing_token(ANNOTATION_BINDINGS)));
        }
    } else {
        bound_by.sort_unstable();
        bound_by.dedup();
        let names = bound_by.join(",");
        if pod.metadata.labels.is_some() {
            ops.push(add(labels.with_trailing_token(LABEL_BOUND), json!("true")));
        } else {
            ops.push(add(labels, json!({LABEL_BOUND: "true"})));
        }
        if pod.metadata.annotations.is_some() {
            ops.push(add(
                annotations.with_trailing_token(ANNOTATION_BINDINGS),
                json!(names),
            ));
        } else {
            ops.push(add(annotations, json!({ANNOTATION_BINDINGS: names})));
        }
    }
    let patch = (!ops.is_empty()).then_some(Patch(ops));
    Ok(respond_with(&uid, true, None, warnings, patch.as_ref()))
}

fn add(path: PointerBuf, value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation { path, value })
}

fn remove(path: PointerBuf) -> PatchOperation {
    PatchOperation::Remove(RemoveOperation { path })
}

/// Warns when a container's own setting is replaced: a binding is the SRE's rule for these
/// pods, so it wins over what the pod says (as upstream does) — and says so.
fn replaced(
    container: &Container,
    field: &str,
    value: &Value,
    bindings: &[&str],
    warnings: &mut Vec<String>,
) {
    let own = container
        .security_context
        .as_ref()
        .and_then(|sc| match field {
            "seccompProfile" => sc.seccomp_profile.as_ref(),
            _ => sc.se_linux_options.as_ref(),
        });
    if let Some(own) = own.filter(|own| *own != value) {
        warnings.push(cut(&format!(
            "container {:?}: its securityContext.{field} {own} is replaced by {value} \
             (ProfileBinding {:?})",
            container.name, bindings[0]
        )));
    }
}

/// The JSONPatch as the API server takes it in an AdmissionResponse.
pub(super) fn encode_patch(patch: &Patch) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(serde_json::to_vec(patch).expect("patches serialize"))
}

#[cfg(test)]
#[path = "binding_tests.rs"]
mod tests;
