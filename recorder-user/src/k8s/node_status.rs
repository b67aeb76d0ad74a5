//! What each node did with a profile — one SecurityProfileNodeStatus per profile and node,
//! owned by the profile — and the profile's own status, the summary over all nodes. The same
//! for every kind a node installs: SeccompProfile (a file), SelinuxProfile and
//! RawSelinuxProfile (a policy module).

use std::fmt::Debug;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use kube::{
    Api, Client, Resource, ResourceExt as _,
    api::{ListParams, Patch, PatchParams},
};
use serde::{Serialize, de::DeserializeOwned};

use super::{
    crd::{
        LABEL_NODE_NAME, LABEL_PROFILE_ID, LABEL_PROFILE_KIND, LABEL_PROFILE_STATE, ProfileStatus,
        ProfileStatusKind, SecurityProfileNodeStatus,
    },
    publish::{MANAGER, PublishError, api_err},
};

/// A profile kind nodes install and report on.
pub trait NodeProfile:
    Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The kind, as errors name it.
    const KIND: &'static str;
    fn profile_status(&self) -> Option<&ProfileStatus>;
}

/// The profile-id label value of a profile's node statuses: `<Kind>-<name>`.
pub fn profile_id_of(kind: &str, profile: &str) -> String {
    shorten(&format!("{kind}-{profile}"), 63)
}

/// `<profile>-<node>` for a SeccompProfile (upstream's naming), `<profile>-<kind>-<node>` for
/// the others (a SelinuxProfile may have a SeccompProfile's name); hashed when too long.
pub fn status_name_of(kind: &str, profile: &str, node: &str) -> String {
    if kind == "SeccompProfile" {
        shorten(&format!("{profile}-{node}"), 253)
    } else {
        shorten(
            &format!("{profile}-{}-{node}", kind.to_ascii_lowercase()),
            253,
        )
    }
}

/// The API server's answer when the profile is gone (404) or was replaced (409 uid mismatch).
pub fn gone(status: &kube::core::Status) -> bool {
    status.code == 404 || (status.code == 409 && status.message.contains("uid mismatch"))
}

/// `value` when it has at most `max` characters; else its beginning and a hash of all of it
/// (`<prefix>-<8 hex>`), so long names still make valid label values (≤ 63), finalizer names
/// (≤ 63 after the prefix) and object names (≤ 253), distinct for distinct values.
pub fn shorten(value: &str, max: usize) -> String {
    if value.len() <= max {
        return value.to_owned();
    }
    // FNV-1a: the same on every node (std's hasher is not promised to be).
    let hash = value.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let mut prefix: String = value.chars().take(max - 9).collect();
    while prefix.ends_with(|c: char| !c.is_ascii_alphanumeric()) {
        prefix.pop();
    }
    format!("{prefix}-{hash:08x}")
}
/// The profile's status over all nodes: Error if any node failed, else Terminating, else
/// Pending (any node not done yet), else Installed; Disabled when every node has it disabled.
pub fn summary(statuses: &[ProfileStatusKind]) -> Option<ProfileStatusKind> {
    use ProfileStatusKind::*;
    if statuses.is_empty() {
        return None;
    }
    for kind in [Error, Terminating, Pending, InProgress] {
        if statuses.contains(&kind) {
            return Some(kind);
        }
    }
    if statuses.iter().all(|s| *s == Disabled) {
        Some(Disabled)
    } else {
        Some(Installed)
    }
}

/// Writes this node's status for `profile` (a server-side apply owned by the profile).
pub async fn apply<K: NodeProfile>(
    client: &Client,
    node: &str,
    profile: &K,
    status: ProfileStatusKind,
    message: Option<&str>,
) -> Result<(), PublishError> {
    let name = profile.name_any();
    let kind = K::kind(&());
    let node_statuses: Api<SecurityProfileNodeStatus> = Api::all(client.clone());
    let status_name = status_name_of(&kind, &name, node);
    let state = serde_json::to_value(status).expect("statuses serialize");
    let owner = OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: kind.clone().into_owned(),
        name: name.clone(),
        uid: profile.uid().unwrap_or_default(),
        ..OwnerReference::default()
    };
    let mut body = serde_json::json!({
        "apiVersion": SecurityProfileNodeStatus::api_version(&()),
        "kind": SecurityProfileNodeStatus::kind(&()),
        "metadata": {
            "name": status_name,
            "labels": {
                LABEL_PROFILE_ID: profile_id_of(&kind, &name),
                LABEL_NODE_NAME: shorten(node, 63),
                LABEL_PROFILE_STATE: state,
                LABEL_PROFILE_KIND: kind,
            },
            "ownerReferences": [owner],
        },
        // Upstream's shape: the state at the top level (no status subresource).
        "nodeName": node,
        "status": status,
    });
    if let Some(message) = message {
        body["message"] = serde_json::Value::String(message.to_owned());
    }
    let params = PatchParams::apply(MANAGER).force();
    node_statuses
        .patch(&status_name, &params, &Patch::Apply(&body))
        .await
        .map_err(api_err("apply", "SecurityProfileNodeStatus", &status_name))?;
    Ok(())
}

/// Writes the profile's status from every node's status (listed by the profile-id label), with
/// a Ready condition; `usage` sets what the summary says beyond its state (where the profile
/// is, how pods use it), given whether it is installed on every node. Returns the summary and
/// whether the profile's status was written, or None when there is nothing to summarize (no
/// node status yet, or the profile is gone).
pub async fn summarize<K: NodeProfile>(
    client: &Client,
    profile: &K,
    message: Option<String>,
    usage: impl FnOnce(&mut ProfileStatus, bool),
) -> Result<Option<(ProfileStatusKind, bool)>, PublishError> {
    let name = profile.name_any();
    let kind = K::kind(&());
    let node_statuses: Api<SecurityProfileNodeStatus> = Api::all(client.clone());
    let listed = node_statuses
        .list(&ListParams::default().labels(&format!(
            "{LABEL_PROFILE_ID}={}",
            profile_id_of(&kind, &name)
        )))
        .await
        .map_err(api_err("list", "SecurityProfileNodeStatus", &name))?;
    let kinds: Vec<ProfileStatusKind> = listed.items.iter().filter_map(|s| s.status).collect();
    let Some(summary) = summary(&kinds) else {
        return Ok(None);
    };
    let current = profile.profile_status().cloned().unwrap_or_default();
    let installed = matches!(summary, ProfileStatusKind::Installed);
    let installed_on = kinds
        .iter()
        .filter(|k| **k == ProfileStatusKind::Installed)
        .count();
    let mut wanted = ProfileStatus {
        status: Some(summary),
        nodes: Some(format!("{installed_on}/{}", kinds.len())),
        ..current.clone()
    };
    usage(&mut wanted, installed);
    let ready = Condition {
        type_: "Ready".into(),
        status: if installed { "True" } else { "False" }.into(),
        reason: format!("{summary:?}"),
        message: message.unwrap_or_default(),
        observed_generation: profile.meta().generation,
        last_transition_time: Time(k8s_openapi::jiff::Timestamp::now()),
    };
    let same_condition = current.conditions.iter().any(|c| {
        c.type_ == ready.type_
            && c.status == ready.status
            && c.reason == ready.reason
            && c.message == ready.message
    });
    if !same_condition {
        wanted.conditions.retain(|c| c.type_ != "Ready");
        wanted.conditions.push(ready);
    }
    if wanted == current {
        return Ok(Some((summary, false)));
    }
    let api: Api<K> = Api::all(client.clone());
    let patched = api
        .patch_status(
            &name,
            &PatchParams::default(),
            // Explicit nulls: a merge patch removes what is no longer true.
            &Patch::Merge(&serde_json::json!({ "status": {
                "status": wanted.status,
                "path": wanted.path,
                "localhostProfile": wanted.localhost_profile,
                "usage": wanted.usage,
                "nodes": wanted.nodes,
                "conditions": wanted.conditions,
            }})),
        )
        .await;
    match patched {
        // Deleted meanwhile (its node statuses go with it): nothing to summarize.
        Err(kube::Error::Api(status)) if gone(&status) => return Ok(None),
        other => other.map_err(api_err("set the status of", K::KIND, &name))?,
    };
    Ok(Some((summary, true)))
}
