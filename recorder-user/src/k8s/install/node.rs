//! This node's view of the SeccompProfiles and what it did: the file, its finalizer on the
//! profile, its node status, and the profile's summary over all nodes.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client, Resource as _, ResourceExt as _,
    api::{Patch, PatchParams},
};

use super::{Installer, Plan, plan};
use crate::{
    k8s::{
        crd::{ProfileStatus, ProfileStatusKind, SeccompProfile},
        node_status::{self, shorten},
        publish::{MANAGER, PublishError, api_err},
    },
    profile::validate::Validator,
};

/// The API server's answer when a precondition on a profile's uid finds no such profile
/// (409 "uid mismatch") or the profile is not there at all (404).
fn profile_gone(status: &kube::core::Status) -> bool {
    node_status::gone(status)
}

/// The finalizer a node keeps on a profile whose file it may hold: qualified, and short
/// enough for any node name.
pub fn node_finalizer(node: &str) -> String {
    format!("syscribe.dev/{}", shorten(&format!("installed-{node}"), 63))
}

/// `<profile>-<node>` (upstream's naming; hashed when longer than a name may be).
pub fn node_status_name(profile: &str, node: &str) -> String {
    node_status::status_name_of("SeccompProfile", profile, node)
}

/// The profile-id label value of a seccomp profile's node statuses.
pub fn profile_id(profile: &str) -> String {
    node_status::profile_id_of("SeccompProfile", profile)
}
/// This node's view of the profiles: the cache the watcher keeps, what was last written.
pub struct NodeProfiles {
    node: String,
    pub(super) installer: Installer,
    validator: Validator,
    /// Every SeccompProfile (base profiles are looked up here).
    pub profiles: BTreeMap<String, SeccompProfile>,
    /// The node status last written per profile (nothing written again when unchanged).
    written: BTreeMap<String, (ProfileStatusKind, Option<String>)>,
    /// Profiles kept only because pods use them: re-planned when pods change.
    held: BTreeSet<String>,
    /// Profiles whose summary said Pending: summarized again at the instant given, since
    /// another node's status may have changed between this node's list and its write.
    pub(super) recheck: BTreeMap<String, std::time::Instant>,
}

/// How long after a Pending summary the summary is made again.
const RECHECK: std::time::Duration = std::time::Duration::from_secs(5);

impl NodeProfiles {
    pub fn new(node: String, installer: Installer, validator: Validator) -> Self {
        Self {
            node,
            installer,
            validator,
            profiles: BTreeMap::new(),
            written: BTreeMap::new(),
            held: BTreeSet::new(),
            recheck: BTreeMap::new(),
        }
    }

    /// Profiles waiting for their last user to go.
    pub fn held(&self) -> Vec<String> {
        self.held.iter().cloned().collect()
    }

    /// The profiles to reconcile after `name` changed: itself and every profile that has it
    /// in its base chain.
    pub fn affected(&self, name: &str) -> Vec<String> {
        let mut out = vec![name.to_owned()];
        let mut i = 0;
        while i < out.len() {
            let current = out[i].clone();
            for (other, profile) in &self.profiles {
                if profile.spec.base_profile_name.as_deref() == Some(current.as_str())
                    && !out.contains(other)
                {
                    out.push(other.clone());
                }
            }
            i += 1;
        }
        out
    }

    /// Brings the node in line with the profile `name`: file, finalizer, node status, summary.
    pub async fn reconcile<'a>(
        &mut self,
        client: &Client,
        name: &str,
        pods: impl IntoIterator<Item = &'a Pod>,
    ) -> Result<(), PublishError> {
        let plan = plan(name, &self.profiles, pods, &mut self.validator);
        let Some(profile) = self.profiles.get(name).cloned() else {
            // Gone without our finalizer (force-deleted): the file goes too.
            if let Err(err) = self.installer.remove(name) {
                tracing::warn!(error = %err, "removing a deleted profile's file");
            }
            self.written.remove(name);
            self.held.remove(name);
            self.recheck.remove(name);
            return Ok(());
        };
        self.held.remove(name);
        let finalizer = node_finalizer(&self.node);
        let has_finalizer = profile.finalizers().contains(&finalizer);
        match plan {
            Plan::Skip => Ok(()),
            Plan::Install(seccomp) => {
                if !has_finalizer && !self.set_finalizer(client, &profile, true).await? {
                    // Deleted before this node could hold it: nothing to install or report;
                    // the deletion reaches the watch next.
                    return Ok(());
                }
                let new_here = !self.installer.path_of(name).is_ok_and(|p| p.exists());
                if new_here && !self.written.contains_key(name) {
                    self.set_status(client, &profile, ProfileStatusKind::Pending, None)
                        .await?;
                }
                match self.installer.install(name, &seccomp) {
                    Ok(changed) => {
                        if changed {
                            crate::audit::op_metrics::count(
                                crate::audit::op_metrics::Op::ProfileInstalled,
                                "SeccompProfile",
                            );
                            tracing::info!(profile = name, path = %self.installer.path_of(name).unwrap_or_default().display(), "installed");
                        }
                        self.set_status(client, &profile, ProfileStatusKind::Installed, None)
                            .await
                    }
                    Err(err) => {
                        crate::audit::op_metrics::count(
                            crate::audit::op_metrics::Op::ProfileFailed,
                            "SeccompProfile",
                        );
                        self.set_status(
                            client,
                            &profile,
                            ProfileStatusKind::Error,
                            Some(err.to_string()),
                        )
                        .await
                    }
                }
            }
            Plan::Refuse(reason) => {
                crate::audit::op_metrics::count(
                    crate::audit::op_metrics::Op::ProfileFailed,
                    "SeccompProfile",
                );
                tracing::warn!(profile = name, %reason, "not installed");
                self.set_status(client, &profile, ProfileStatusKind::Error, Some(reason))
                    .await
            }
            Plan::Hold { users } => {
                self.held.insert(name.to_owned());
                let reason = format!("still used by {}", users.join(", "));
                self.set_status(
                    client,
                    &profile,
                    ProfileStatusKind::Terminating,
                    Some(reason),
                )
                .await
            }
            Plan::Remove { deleted } => {
                let removed = self.installer.remove(name);
                if matches!(removed, Ok(true)) {
                    crate::audit::op_metrics::count(
                        crate::audit::op_metrics::Op::ProfileRemoved,
                        "SeccompProfile",
                    );
                }
                if let Err(err) = removed {
                    return self
                        .set_status(
                            client,
                            &profile,
                            ProfileStatusKind::Error,
                            Some(err.to_string()),
                        )
                        .await;
                }
                if deleted {
                    // The node status goes with the profile (owner reference).
                    self.written.remove(name);
                    if has_finalizer {
                        self.set_finalizer(client, &profile, false).await?;
                    }
                    Ok(())
                } else {
                    self.set_status(client, &profile, ProfileStatusKind::Disabled, None)
                        .await
                }
            }
        }
    }

    /// Summarizes again the profiles whose last summary said Pending, once their time came:
    /// the nodes' statuses settle, and one of the nodes writes the final summary.
    pub async fn recheck_due(&mut self, client: &Client) -> Result<(), PublishError> {
        let now = std::time::Instant::now();
        let due: Vec<String> = self
            .recheck
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(name, _)| name.clone())
            .collect();
        for name in due {
            self.recheck.remove(&name);
            if let Some(profile) = self.profiles.get(&name).cloned() {
                // This node's own message, as last written.
                let message = self.written.get(&name).and_then(|(_, m)| m.clone());
                self.summarize(client, &profile, message).await?;
            }
        }
        Ok(())
    }

    /// Summarizes `name` again at the next tick: another node's status changed (e.g. it went
    /// with its node).
    pub fn summarize_soon(&mut self, name: &str) {
        if self.profiles.contains_key(name) {
            self.recheck
                .insert(name.to_owned(), std::time::Instant::now());
        }
    }

    /// Forgets what this node wrote, so that every profile is stated again (finalizer, node
    /// status): its own Node object was deleted and came back, and the daemons that saw it go
    /// removed them. Returns the profiles to reconcile.
    pub fn restate(&mut self) -> Vec<String> {
        self.written.clear();
        self.profiles.keys().cloned().collect()
    }

    #[cfg(test)]
    pub(super) fn expire_rechecks(&mut self) {
        for at in self.recheck.values_mut() {
            *at = std::time::Instant::now();
        }
    }

    /// Adds or removes this node's finalizer: a server-side apply by this node's own field
    /// manager touches only its own entry of the list, never another node's. The profile's uid
    /// is a precondition: an apply to a profile deleted meanwhile would otherwise create a new
    /// one with no spec (seen on the real cluster: a 422 "spec: Required value" when a profile
    /// was deleted right after it was made). A profile that is gone is not an error: its
    /// deletion reaches the watch next. Whether the profile was still there.
    async fn set_finalizer(
        &self,
        client: &Client,
        profile: &SeccompProfile,
        present: bool,
    ) -> Result<bool, PublishError> {
        let name = profile.name_any();
        let api: Api<SeccompProfile> = Api::all(client.clone());
        let finalizers: Vec<String> = if present {
            vec![node_finalizer(&self.node)]
        } else {
            Vec::new()
        };
        let body = serde_json::json!({
            "apiVersion": SeccompProfile::api_version(&()),
            "kind": SeccompProfile::kind(&()),
            "metadata": {"name": name, "uid": profile.uid(), "finalizers": finalizers},
        });
        let applied = api
            .patch(
                &name,
                &PatchParams::apply(&format!("{MANAGER}-{}", self.node)),
                &Patch::Apply(&body),
            )
            .await;
        match applied {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if profile_gone(&status) => Ok(false),
            Err(err) => Err(api_err(
                "set the node finalizer of",
                "SeccompProfile",
                &name,
            )(err)),
        }
    }

    /// Writes this node's status (when it changed) and then the profile's summary.
    async fn set_status(
        &mut self,
        client: &Client,
        profile: &SeccompProfile,
        status: ProfileStatusKind,
        message: Option<String>,
    ) -> Result<(), PublishError> {
        let name = profile.name_any();
        let now = (status, message.clone());
        if self.written.get(&name) == Some(&now) {
            return Ok(());
        }
        node_status::apply(client, &self.node, profile, status, message.as_deref()).await?;
        self.written.insert(name.clone(), now);
        self.summarize(client, profile, message).await
    }

    /// The profile's status from every node's status. Another node may write its summary from
    /// an older list: a Pending summary, and any summary this node writes, is made again a
    /// little later (until nothing changes).
    async fn summarize(
        &mut self,
        client: &Client,
        profile: &SeccompProfile,
        message: Option<String>,
    ) -> Result<(), PublishError> {
        let name = profile.name_any();
        let path = self.installer.path_of(&name).ok();
        let usage = |status: &mut ProfileStatus, installed: bool| {
            status.path = path
                .as_ref()
                .filter(|_| installed)
                .map(|p| p.display().to_string());
            status.localhost_profile = installed.then(|| format!("operator/{name}.json"));
        };
        let Some((summary, written)) =
            node_status::summarize(client, profile, message, usage).await?
        else {
            return Ok(());
        };
        let settled = !matches!(
            summary,
            ProfileStatusKind::Pending | ProfileStatusKind::InProgress
        );
        self.recheck.remove(&name);
        if !settled || written {
            self.recheck
                .insert(name, std::time::Instant::now() + RECHECK);
        }
        Ok(())
    }
}

impl node_status::NodeProfile for SeccompProfile {
    const KIND: &'static str = "SeccompProfile";

    fn profile_status(&self) -> Option<&ProfileStatus> {
        self.status.as_ref()
    }
}
