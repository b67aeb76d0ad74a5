//! Installing SeccompProfiles on this node: each enabled profile (its base profiles merged in)
//! becomes `<kubelet dir>/seccomp/operator/<name>.json`, the file pods name with
//! `localhostProfile: operator/<name>.json`. Invalid profiles are never written. A disabled or
//! deleted profile's file is removed, unless a running pod on the node uses it: then it stays,
//! with status Terminating, until the last such pod is gone.
//!
//! What each node did is one SecurityProfileNodeStatus `<profile>-<node>` (owned by the
//! profile, so it goes with it); the profile's own `status` is the summary over all nodes.
//! The files and the decisions are here; the API calls are thin.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use k8s_openapi::api::core::v1::{
    Pod, PodSecurityContext, SeccompProfile as PodSeccompProfile, SecurityContext,
};
use kube::{
    Api, Client, Resource as _, ResourceExt as _,
    api::{Patch, PatchParams},
};
use thiserror::Error;

use super::{
    crd::{
        FINALIZER_BOUND, LABEL_PARTIAL, ProfileState, ProfileStatus, ProfileStatusKind,
        SeccompProfile,
    },
    node_status,
    publish::{MANAGER, PublishError, api_err},
};
use crate::profile::{
    conflict::{Conflict, resolve_labelled},
    seccomp::Seccomp,
    validate::{Severity, Validator},
};

/// Where, under the kubelet's directory, profiles are installed.
pub const OPERATOR_DIR: &str = "seccomp/operator";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BaseError {
    #[error("no SeccompProfile named {name} in {from}")]
    NotFound { name: String, from: String },
    #[error("base profiles of {name} form a cycle through {base}")]
    Cycle { name: String, base: String },
}

/// The profile as OCI JSON with its base profiles' rules first (upstream's union); rules with
/// the same verdict (action, errno, arguments) are joined, so a syscall allowed by both is
/// listed once. Where a profile and a base give one syscall different verdicts, the more
/// restrictive applies ([`crate::profile::conflict`]) and the conflict is returned, naming both.
/// Linear in the names of the whole chain, however deep.
pub fn resolve_bases(
    name: &str,
    profiles: &BTreeMap<String, SeccompProfile>,
    from: &str,
) -> Result<(Seccomp, Vec<Conflict>), BaseError> {
    let get = |n: &str| {
        profiles.get(n).ok_or_else(|| BaseError::NotFound {
            name: n.to_owned(),
            from: from.to_owned(),
        })
    };
    // The chain, the profile first.
    let mut chain = vec![get(name)?];
    let mut seen = std::collections::HashSet::from([name.to_owned()]);
    while let Some(base) = chain.last().and_then(|p| p.spec.base_profile_name.clone()) {
        if !seen.insert(base.clone()) {
            return Err(BaseError::Cycle {
                name: name.to_owned(),
                base,
            });
        }
        chain.push(get(&base)?);
    }
    let mut seccomp = chain[0].spec.to_seccomp();
    let mut rules: Vec<crate::profile::seccomp::SyscallRule> = Vec::new();
    // Where each joined rule came from: (profile, its index there).
    let mut origins: Vec<(String, usize)> = Vec::new();
    let mut names_of: Vec<std::collections::HashSet<String>> = Vec::new();
    let mut by_verdict: std::collections::HashMap<String, usize> = Default::default();
    // The deepest base first: its rules come first.
    for profile in chain.iter().rev() {
        for (k, rule) in profile.spec.to_seccomp().syscalls.into_iter().enumerate() {
            let key = serde_json::to_string(&(rule.action, rule.errno_ret, &rule.args))
                .expect("rules serialize");
            match by_verdict.get(&key) {
                Some(&i) => {
                    for n in rule.names {
                        if names_of[i].insert(n.clone()) {
                            rules[i].names.push(n);
                        }
                    }
                }
                None => {
                    by_verdict.insert(key, rules.len());
                    names_of.push(rule.names.iter().cloned().collect());
                    origins.push((profile.name_any(), k));
                    rules.push(rule);
                }
            }
        }
    }
    seccomp.syscalls = rules;
    let conflicts = resolve_labelled(&mut seccomp, &|i| {
        let (profile, k) = &origins[i];
        format!("{profile}'s syscalls[{k}]")
    });
    Ok((seccomp, conflicts))
}

#[derive(Debug, Error)]
pub enum InstallError {
    #[error(
        "{name:?} cannot be a profile file name: a DNS subdomain of at most 250 characters is needed (no '/', no leading '.')"
    )]
    Name { name: String },
    #[error("{op} {path}: {source}", path = .path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> InstallError {
    let path = path.to_owned();
    move |source| InstallError::Io { op, path, source }
}

/// The profile files of one node.
#[derive(Debug, Clone)]
pub struct Installer {
    kubelet: PathBuf,
    dir: PathBuf,
}

/// The most read back of an installed file (to compare it with what would be written).
const MAX_INSTALLED: u64 = 16 << 20;

/// A DNS-1123 subdomain (what the API server allows as a name) short enough for `<name>.json`
/// to be a file name: nothing that could leave the directory.
fn valid_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 250
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

impl Installer {
    pub fn new(kubelet_dir: &Path) -> Self {
        Self {
            kubelet: kubelet_dir.to_owned(),
            dir: kubelet_dir.join(OPERATOR_DIR),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<dir>/<name>.json`; refuses names that are not plain file names.
    pub fn path_of(&self, name: &str) -> Result<PathBuf, InstallError> {
        Ok(self.dir.join(Self::file_name(name)?))
    }

    fn file_name(name: &str) -> Result<String, InstallError> {
        if !valid_file_name(name) {
            return Err(InstallError::Name {
                name: name.to_owned(),
            });
        }
        Ok(format!("{name}.json"))
    }

    /// The operator directory, opened below the kubelet's without following a link: a
    /// `seccomp` or `operator` planted as a link is refused, never written through.
    fn open(&self, create: bool) -> Result<crate::files::Dir, std::io::Error> {
        crate::files::Dir::open_below(&self.kubelet, Path::new(OPERATOR_DIR), create)
    }

    /// Writes the profile atomically (a temporary file in the same directory, synced, renamed
    /// over the old one): a pod starting meanwhile reads the old or the new file, never half
    /// of one. Returns false when the file already held exactly this.
    pub fn install(&self, name: &str, seccomp: &Seccomp) -> Result<bool, InstallError> {
        let file = Self::file_name(name)?;
        let path = self.dir.join(&file);
        let mut text = serde_json::to_string_pretty(seccomp).expect("profiles serialize");
        text.push('\n');
        let dir = self.open(true).map_err(io("open", &self.dir))?;
        if dir
            .read(&file, MAX_INSTALLED)
            .is_ok_and(|old| old.is_some_and(|old| old == text.as_bytes()))
        {
            return Ok(false);
        }
        dir.write_atomically(&file, text.as_bytes(), true)
            .map_err(io("write", &path))?;
        Ok(true)
    }

    /// Removes the profile's file; false when there was none.
    pub fn remove(&self, name: &str) -> Result<bool, InstallError> {
        let file = Self::file_name(name)?;
        let path = self.dir.join(&file);
        let dir = match self.open(false) {
            Ok(dir) => dir,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(source) => return Err(io("open", &self.dir)(source)),
        };
        dir.remove(&file).map_err(io("remove", &path))
    }
}

/// `namespace/pod` of each pod that is not finished and whose pod- or container-level
/// securityContext uses `operator/<name>.json`.
pub fn users<'a>(name: &str, pods: impl IntoIterator<Item = &'a Pod>) -> Vec<String> {
    let wanted = format!("operator/{name}.json");
    let uses = |p: Option<&PodSeccompProfile>| {
        p.is_some_and(|p| p.type_ == "Localhost" && p.localhost_profile.as_deref() == Some(&wanted))
    };
    running_pods_where(
        pods,
        |sc| uses(sc.and_then(|sc| sc.seccomp_profile.as_ref())),
        |sc| uses(sc.and_then(|sc| sc.seccomp_profile.as_ref())),
    )
}

/// `namespace/pod` of each pod that is not finished and whose pod-level securityContext
/// (`pod_uses`) or any container's (init and ephemeral ones too: `container_uses`) says so.
pub fn running_pods_where<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    pod_uses: impl Fn(Option<&PodSecurityContext>) -> bool,
    container_uses: impl Fn(Option<&SecurityContext>) -> bool,
) -> Vec<String> {
    pods.into_iter()
        .filter(|pod| {
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Succeeded" | "Failed"))
        })
        .filter(|pod| {
            let Some(spec) = &pod.spec else {
                return false;
            };
            let containers = spec
                .containers
                .iter()
                .chain(spec.init_containers.iter().flatten())
                .map(|c| c.security_context.as_ref());
            let ephemeral = spec
                .ephemeral_containers
                .iter()
                .flatten()
                .map(|c| c.security_context.as_ref());
            pod_uses(spec.security_context.as_ref())
                || containers.chain(ephemeral).any(&container_uses)
        })
        .map(|pod| format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any()))
        .collect()
}

/// What this node does about one profile.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Recorded partial profiles are not installed (they are merged first).
    Skip,
    Install(Box<Seccomp>),
    /// Not installable: the reason (validation errors, a missing base profile…).
    Refuse(String),
    /// Disabled or deleted, and unused: remove the file (and, when deleted, let it go).
    Remove {
        deleted: bool,
    },
    /// Disabled or deleted, but these pods still use it: keep the file.
    Hold {
        users: Vec<String>,
    },
}

/// Decides what to do with `name` on this node. Pure: the profiles and pods are given.
pub fn plan<'a>(
    name: &str,
    profiles: &BTreeMap<String, SeccompProfile>,
    pods: impl IntoIterator<Item = &'a Pod>,
    validator: &mut Validator,
) -> Plan {
    let Some(profile) = profiles.get(name) else {
        return Plan::Remove { deleted: true };
    };
    if profile.labels().get(LABEL_PARTIAL).map(String::as_str) == Some("true") {
        return Plan::Skip;
    }
    let deleted = profile.meta().deletion_timestamp.is_some();
    if deleted || profile.spec.state == Some(ProfileState::Disabled) {
        let mut users = users(name, pods);
        // Deleted while a ProfileBinding names it: new pods of the binding still need the
        // file until the binding goes (the webhook then removes the finalizer).
        if deleted && profile.finalizers().iter().any(|f| f == FINALIZER_BOUND) {
            users.push(format!("a ProfileBinding (finalizer {FINALIZER_BOUND})"));
        }
        return if users.is_empty() {
            Plan::Remove { deleted }
        } else {
            Plan::Hold { users }
        };
    }
    let seccomp = match resolve_bases(name, profiles, "the cluster") {
        Ok((seccomp, conflicts)) => {
            for conflict in conflicts {
                tracing::warn!(profile = name, %conflict, "base profiles disagree");
            }
            seccomp
        }
        Err(err) => return Plan::Refuse(err.to_string()),
    };
    // The validator reads the merged profile as it will be written.
    let value = serde_yaml::to_value(&seccomp).expect("profiles serialize");
    let errors: Vec<String> = validator
        .validate(&value)
        .into_iter()
        .filter(|p| p.severity == Severity::Error)
        .map(|p| {
            if p.path.is_empty() {
                p.message
            } else {
                format!("{}: {}", p.path, p.message)
            }
        })
        .collect();
    if errors.is_empty() {
        Plan::Install(Box::new(seccomp))
    } else {
        Plan::Refuse(format!("invalid profile: {}", errors.join("; ")))
    }
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

/// The finalizer a node keeps on a profile whose file it may hold: qualified, and short
/// enough for any node name.
/// The API server's answer when a precondition on a profile's uid finds no such profile
/// (409 "uid mismatch") or the profile is not there at all (404).
fn profile_gone(status: &kube::core::Status) -> bool {
    node_status::gone(status)
}

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

/// This node's view of the profiles: the cache the watcher keeps, what was last written.
pub struct NodeProfiles {
    node: String,
    installer: Installer,
    validator: Validator,
    /// Every SeccompProfile (base profiles are looked up here).
    pub profiles: BTreeMap<String, SeccompProfile>,
    /// The node status last written per profile (nothing written again when unchanged).
    written: BTreeMap<String, (ProfileStatusKind, Option<String>)>,
    /// Profiles kept only because pods use them: re-planned when pods change.
    held: BTreeSet<String>,
    /// Profiles whose summary said Pending: summarized again at the instant given, since
    /// another node's status may have changed between this node's list and its write.
    recheck: BTreeMap<String, std::time::Instant>,
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
    fn expire_rechecks(&mut self) {
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
        let path = self.installer.dir().join(format!("{name}.json"));
        let usage = |status: &mut ProfileStatus, installed: bool| {
            status.path = installed.then(|| path.display().to_string());
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

#[cfg(test)]
mod tests {
    use http::Method;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    use serde_json::{Value, json};

    use super::*;
    use crate::k8s::{
        crd::{LABEL_NODE_NAME, LABEL_PROFILE_STATE},
        testing::{expect, mock, scenario},
    };

    const SP: &str = "/apis/security-profiles-operator.x-k8s.io/v1/seccompprofiles";
    const SPNS: &str = "/apis/security-profiles-operator.x-k8s.io/v1/securityprofilenodestatuses";

    fn profile(name: &str, extra_spec: Value, meta: Value) -> SeccompProfile {
        let mut spec = json!({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
                              "syscalls": [{"action": "SCMP_ACT_ALLOW", "names": ["read", "write"]}]});
        for (k, v) in extra_spec.as_object().unwrap() {
            spec[k] = v.clone();
        }
        let mut metadata = json!({"name": name, "uid": format!("uid-{name}"), "generation": 1});
        for (k, v) in meta.as_object().unwrap() {
            metadata[k] = v.clone();
        }
        serde_json::from_value(json!({
            "apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "SeccompProfile",
            "metadata": metadata, "spec": spec,
        }))
        .unwrap()
    }

    fn pod_using(profile_file: &str, phase: &str, container_level: bool) -> Pod {
        let sc = json!({"seccompProfile": {"type": "Localhost", "localhostProfile": profile_file}});
        let (pod_sc, container_sc) = if container_level {
            (json!({}), sc)
        } else {
            (sc, json!({}))
        };
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"securityContext": pod_sc,
                     "containers": [{"name": "app", "image": "x", "securityContext": container_sc}]},
            "status": {"phase": phase},
        }))
        .unwrap()
    }

    fn profile_reply() -> Value {
        serde_json::to_value(profile("p", json!({}), json!({}))).unwrap()
    }

    fn profiles(list: Vec<SeccompProfile>) -> BTreeMap<String, SeccompProfile> {
        list.into_iter().map(|p| (p.name_any(), p)).collect()
    }

    fn temp_kubelet(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("syscribe-kubelet-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn names_that_could_leave_the_directory_are_refused() {
        let installer = Installer::new(Path::new("/var/lib/kubelet"));
        assert_eq!(
            installer.path_of("web-app.v2").unwrap(),
            Path::new("/var/lib/kubelet/seccomp/operator/web-app.v2.json")
        );
        let long = "a".repeat(251);
        for bad in [
            "../etc/passwd",
            "a/b",
            ".hidden",
            "..",
            "Upper",
            "",
            "-x",
            long.as_str(),
        ] {
            let err = installer.path_of(bad).unwrap_err().to_string();
            assert!(
                err.contains("cannot be a profile file name"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn a_linked_operator_directory_is_never_written_or_removed_through() {
        let kubelet = temp_kubelet("linked");
        let elsewhere = temp_kubelet("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::fs::write(elsewhere.join("p.json"), "precious").unwrap();
        std::fs::create_dir_all(kubelet.join("seccomp")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, kubelet.join("seccomp/operator")).unwrap();
        let installer = Installer::new(&kubelet);
        let seccomp = profile("p", json!({}), json!({})).spec.to_seccomp();
        let err = installer.install("p", &seccomp).unwrap_err().to_string();
        assert!(err.contains("is a symbolic link, not a directory"), "{err}");
        let err = installer.remove("p").unwrap_err().to_string();
        assert!(err.contains("is a symbolic link, not a directory"), "{err}");
        assert_eq!(
            std::fs::read_to_string(elsewhere.join("p.json")).unwrap(),
            "precious"
        );
        // The same with the link one level up.
        std::fs::remove_file(kubelet.join("seccomp/operator")).unwrap();
        std::fs::remove_dir(kubelet.join("seccomp")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, kubelet.join("seccomp")).unwrap();
        assert!(installer.install("p", &seccomp).is_err());
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 1);
        std::fs::remove_dir_all(&kubelet).unwrap();
        std::fs::remove_dir_all(&elsewhere).unwrap();
    }

    #[test]
    fn a_kill_written_by_the_user_is_never_weakened_by_a_base() {
        let base = profile(
            "base",
            json!({"syscalls": [{"action": "SCMP_ACT_LOG", "names": ["mkdir", "read"]}]}),
            json!({}),
        );
        let web = profile(
            "web",
            json!({"baseProfileName": "base",
                   "syscalls": [{"action": "SCMP_ACT_ALLOW", "names": ["write"]},
                                {"action": "SCMP_ACT_KILL", "names": ["mkdir"]}]}),
            json!({}),
        );
        let (joined, conflicts) = resolve_bases("web", &profiles(vec![base, web]), "test").unwrap();
        let verdict_of = |name: &str| {
            joined
                .syscalls
                .iter()
                .filter(|r| r.names.iter().any(|n| n == name))
                .map(|r| r.action)
                .collect::<Vec<_>>()
        };
        use crate::profile::seccomp::Action;
        assert_eq!(verdict_of("mkdir"), [Action::Kill]);
        assert_eq!(verdict_of("read"), [Action::Log]);
        assert_eq!(verdict_of("write"), [Action::Allow]);
        assert_eq!(conflicts.len(), 1);
        assert_eq!(
            conflicts[0].to_string(),
            "syscall \"mkdir\" is in web's syscalls[1] (SCMP_ACT_KILL) and in base's syscalls[0] \
             (SCMP_ACT_LOG); SCMP_ACT_KILL applies (the more restrictive, or the first of two equals)"
        );
    }

    #[test]
    fn deep_chains_and_long_lists_join_in_linear_time() {
        // 3000 bases deep, and a profile of 60,000 names over a base of the same names:
        // quadratic joins took tens of seconds; these take a fraction of one.
        let mut chain = Vec::new();
        for i in 0..3000 {
            let base = if i + 1 < 3000 {
                json!(format!("p{}", i + 1))
            } else {
                Value::Null
            };
            chain.push(profile(
                &format!("p{i}"),
                json!({"baseProfileName": base,
                       "syscalls": [{"action": "SCMP_ACT_ALLOW", "names": [format!("n{i}"), "read"]}]}),
                json!({}),
            ));
        }
        let started = std::time::Instant::now();
        let (joined, conflicts) = resolve_bases("p0", &profiles(chain), "test").unwrap();
        assert!(conflicts.is_empty());
        assert_eq!(joined.syscalls.len(), 1);
        assert_eq!(joined.syscalls[0].names.len(), 3001);
        let names: Vec<String> = (0..60_000).map(|i| format!("s{i}")).collect();
        let big = |name: &str, base: Value| {
            profile(
                name,
                json!({"baseProfileName": base,
                       "syscalls": [{"action": "SCMP_ACT_ALLOW", "names": names}]}),
                json!({}),
            )
        };
        let (joined, _) = resolve_bases(
            "big",
            &profiles(vec![
                big("big", json!("bigbase")),
                big("bigbase", Value::Null),
            ]),
            "test",
        )
        .unwrap();
        assert_eq!(joined.syscalls[0].names.len(), 60_000);
        eprintln!(
            "joined 3000 bases and 2 x 60,000 names in {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn installs_atomically_once_and_removes() {
        let kubelet = temp_kubelet("files");
        let installer = Installer::new(&kubelet);
        let seccomp = profile("p", json!({}), json!({})).spec.to_seccomp();
        assert!(installer.install("p", &seccomp).unwrap(), "written");
        assert!(!installer.install("p", &seccomp).unwrap(), "unchanged");
        let path = kubelet.join("seccomp/operator/p.json");
        let back: Seccomp = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(back, seccomp);
        // No temporary file is left behind.
        let entries: Vec<_> = std::fs::read_dir(installer.dir()).unwrap().collect();
        assert_eq!(entries.len(), 1);
        assert!(installer.remove("p").unwrap());
        assert!(!installer.remove("p").unwrap());
        assert!(!path.exists());
        std::fs::remove_dir_all(&kubelet).unwrap();
    }

    #[test]
    fn running_pods_that_name_the_file_use_it() {
        let file = "operator/p.json";
        assert_eq!(
            users("p", [&pod_using(file, "Running", false)]),
            ["shop/web"]
        );
        assert_eq!(
            users("p", [&pod_using(file, "Pending", true)]),
            ["shop/web"]
        );
        assert!(users("p", [&pod_using(file, "Succeeded", true)]).is_empty());
        assert!(users("p", [&pod_using("operator/other.json", "Running", true)]).is_empty());
        assert!(users("p", [&pod_using("p.json", "Running", true)]).is_empty());
    }

    #[test]
    fn plans() {
        let mut validator = Validator::default();
        let base = profile(
            "base",
            json!({"syscalls": [{"action": "SCMP_ACT_ALLOW", "names": ["futex", "read"]}]}),
            json!({}),
        );
        let app = profile("app", json!({"baseProfileName": "base"}), json!({}));
        let all = profiles(vec![base, app]);
        let Plan::Install(merged) = plan("app", &all, [], &mut validator) else {
            panic!("app installs");
        };
        assert_eq!(merged.syscalls.len(), 1, "{merged:?}");
        assert_eq!(
            merged.syscalls[0].names,
            ["futex", "read", "write"],
            "base names first, each once"
        );

        let orphan = profiles(vec![profile(
            "app",
            json!({"baseProfileName": "nope"}),
            json!({}),
        )]);
        assert_eq!(
            plan("app", &orphan, [], &mut validator),
            Plan::Refuse("no SeccompProfile named nope in the cluster".into())
        );
        let typo = profiles(vec![profile(
            "t",
            json!({"syscalls": [{"action": "SCMP_ACT_ALLOW", "names": ["raed"]}]}),
            json!({}),
        )]);
        let Plan::Refuse(reason) = plan("t", &typo, [], &mut validator) else {
            panic!("invalid profiles are refused");
        };
        assert!(
            reason.contains("syscalls[0].names[0]: unknown syscall \"raed\"")
                && reason.contains("did you mean \"read\""),
            "{reason}"
        );
        let partial = profiles(vec![profile(
            "r",
            json!({}),
            json!({"labels": {LABEL_PARTIAL: "true"}}),
        )]);
        assert_eq!(plan("r", &partial, [], &mut validator), Plan::Skip);
        let disabled = profiles(vec![profile("p", json!({"state": "Disabled"}), json!({}))]);
        let user = pod_using("operator/p.json", "Running", false);
        assert_eq!(
            plan("p", &disabled, [&user], &mut validator),
            Plan::Hold {
                users: vec!["shop/web".into()]
            }
        );
        assert_eq!(
            plan("p", &disabled, [], &mut validator),
            Plan::Remove { deleted: false }
        );
        let deleted = profiles(vec![profile(
            "p",
            json!({}),
            json!({"deletionTimestamp": "2026-11-26T20:00:00Z"}),
        )]);
        assert_eq!(
            plan("p", &deleted, [], &mut validator),
            Plan::Remove { deleted: true }
        );
        // Still named by a ProfileBinding: the file stays for the binding's next pods.
        let bound = profiles(vec![profile(
            "p",
            json!({}),
            json!({"deletionTimestamp": "2026-11-26T20:00:00Z", "finalizers": [FINALIZER_BOUND]}),
        )]);
        assert_eq!(
            plan("p", &bound, [], &mut validator),
            Plan::Hold {
                users: vec!["a ProfileBinding (finalizer syscribe.dev/bound)".into()]
            }
        );
    }

    #[test]
    fn long_names_are_shortened_with_a_hash() {
        let node = "ip-10-0-0-1.eu-west-1.compute.internal.example-corporation-cluster-7";
        let finalizer = node_finalizer(node);
        let (prefix, name) = finalizer.split_once('/').unwrap();
        assert_eq!(prefix, "syscribe.dev");
        assert!(
            name.len() <= 63 && name.starts_with("installed-ip-10-0-0-1"),
            "{name}"
        );
        assert_ne!(node_finalizer(node), node_finalizer(&format!("{node}x")));
        let id = profile_id("test-recording-nginx-deployment-web-server-7d9f8c6b5-gmbrj");
        assert!(
            id.len() <= 63 && id.ends_with(|c: char| c.is_ascii_alphanumeric()),
            "{id}"
        );
        assert_eq!(profile_id("p"), "SeccompProfile-p");
        assert_eq!(node_finalizer("node1"), "syscribe.dev/installed-node1");
        assert!(node_status_name(&"p".repeat(250), node).len() <= 253);
    }

    #[test]
    fn summaries() {
        use ProfileStatusKind::*;
        assert_eq!(summary(&[]), None);
        assert_eq!(summary(&[Installed, Installed]), Some(Installed));
        assert_eq!(summary(&[Installed, Pending]), Some(Pending));
        assert_eq!(summary(&[Terminating, Pending]), Some(Terminating));
        assert_eq!(summary(&[Installed, Error, Terminating]), Some(Error));
        assert_eq!(summary(&[Disabled, Disabled]), Some(Disabled));
        assert_eq!(summary(&[Disabled, Installed]), Some(Installed));
    }

    fn node_list(statuses: &[&str]) -> Value {
        json!({"apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "SecurityProfileNodeStatusList",
               "metadata": {}, "items": statuses.iter().enumerate().map(|(i, s)| json!({
                   "apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "SecurityProfileNodeStatus",
                   "metadata": {"name": format!("p-node{i}")}, "nodeName": format!("node{i}"),
                   "status": s})).collect::<Vec<_>>()})
    }

    /// This node's status write: one apply of the object (upstream's shape: state at the top
    /// level, no status subresource), then the list of all nodes' statuses; returns the body.
    async fn node_status(handle: &mut crate::k8s::testing::Handle, others: &[&str]) -> Value {
        let reply = json!({"apiVersion": "security-profiles-operator.x-k8s.io/v1",
            "kind": "SecurityProfileNodeStatus", "metadata": {"name": "p-node1"},
            "nodeName": "node1"});
        let uri = format!("{SPNS}/p-node1?&force=true&fieldManager=syscribe");
        let object = expect(handle, Method::PATCH, &uri, reply).await;
        let state = object["status"].as_str().unwrap().to_owned();
        let mut all: Vec<&str> = others.to_vec();
        all.push(&state);
        let selector = "spo.x-k8s.io%2Fprofile-id%3DSeccompProfile-p";
        expect(
            handle,
            Method::GET,
            &format!("{SPNS}?&labelSelector={selector}"),
            node_list(&all),
        )
        .await;
        object
    }

    #[tokio::test]
    async fn a_new_profile_goes_pending_then_installed() {
        let kubelet = temp_kubelet("new");
        let (client, mut handle) = mock();
        let mut node = NodeProfiles::new(
            "node1".into(),
            Installer::new(&kubelet),
            Validator::default(),
        );
        node.profiles = profiles(vec![profile("p", json!({}), json!({}))]);
        let server = async move {
            let finalizer = expect(
                &mut handle,
                Method::PATCH,
                &format!("{SP}/p?&fieldManager=syscribe-node1"),
                profile_reply(),
            )
            .await;
            assert_eq!(
                finalizer["metadata"]["finalizers"],
                json!(["syscribe.dev/installed-node1"])
            );
            let object = node_status(&mut handle, &[]).await;
            assert_eq!(object["metadata"]["labels"][LABEL_PROFILE_STATE], "Pending");
            assert_eq!(object["metadata"]["labels"][LABEL_NODE_NAME], "node1");
            assert_eq!(object["metadata"]["ownerReferences"][0]["uid"], "uid-p");
            assert_eq!(object["nodeName"], "node1");
            assert_eq!(object["status"], "Pending");
            let summary = expect(
                &mut handle,
                Method::PATCH,
                &format!("{SP}/p/status?"),
                profile_reply(),
            )
            .await;
            assert_eq!(summary["status"]["status"], "Pending");
            assert_eq!(summary["status"]["path"], Value::Null);
            let status = node_status(&mut handle, &["Installed"]).await;
            assert_eq!(status["status"], "Installed");
            let summary = expect(
                &mut handle,
                Method::PATCH,
                &format!("{SP}/p/status?"),
                profile_reply(),
            )
            .await;
            assert_eq!(summary["status"]["status"], "Installed");
            assert_eq!(summary["status"]["localhostProfile"], "operator/p.json");
            assert!(
                summary["status"]["path"]
                    .as_str()
                    .unwrap()
                    .ends_with("seccomp/operator/p.json")
            );
            assert_eq!(summary["status"]["conditions"][0]["status"], "True");
        };
        scenario(node.reconcile(&client, "p", []), server)
            .await
            .unwrap();
        let file = kubelet.join("seccomp/operator/p.json");
        let installed: Seccomp = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(installed.syscalls[0].names, ["read", "write"]);
        // The watcher brings our own writes back: nothing is written again.
        let mut p = profile(
            "p",
            json!({}),
            json!({"finalizers": ["syscribe.dev/installed-node1"]}),
        );
        p.status = Some(ProfileStatus {
            status: Some(ProfileStatusKind::Installed),
            ..ProfileStatus::default()
        });
        node.profiles = profiles(vec![p]);
        let (client, _handle) = mock();
        tokio::time::timeout(
            std::time::Duration::from_secs(1),
            node.reconcile(&client, "p", []),
        )
        .await
        .expect("no API request")
        .unwrap();
        std::fs::remove_dir_all(&kubelet).unwrap();
    }

    #[tokio::test]
    async fn an_invalid_profile_is_an_error_and_never_written() {
        let kubelet = temp_kubelet("invalid");
        let (client, mut handle) = mock();
        let mut node = NodeProfiles::new(
            "node1".into(),
            Installer::new(&kubelet),
            Validator::default(),
        );
        node.profiles = profiles(vec![profile(
            "p",
            json!({"syscalls": [{"action": "SCMP_ACT_ALLOW", "names": ["opne"]}]}),
            json!({"finalizers": ["syscribe.dev/installed-node1"]}),
        )]);
        let server = async move {
            let object = node_status(&mut handle, &["Installed"]).await;
            assert_eq!(object["metadata"]["labels"][LABEL_PROFILE_STATE], "Error");
            let message = object["message"].as_str().unwrap();
            assert!(
                message.contains("syscalls[0].names[0]: unknown syscall \"opne\""),
                "{message}"
            );
            assert!(message.contains("did you mean \"open\""), "{message}");
            let summary = expect(
                &mut handle,
                Method::PATCH,
                &format!("{SP}/p/status?"),
                profile_reply(),
            )
            .await;
            assert_eq!(summary["status"]["status"], "Error");
            assert_eq!(summary["status"]["conditions"][0]["status"], "False");
            assert!(
                summary["status"]["conditions"][0]["message"]
                    .as_str()
                    .unwrap()
                    .contains("opne")
            );
        };
        scenario(node.reconcile(&client, "p", []), server)
            .await
            .unwrap();
        assert!(!kubelet.join("seccomp/operator/p.json").exists());
        let _ = std::fs::remove_dir_all(&kubelet);
    }

    #[tokio::test]
    async fn a_deleted_profile_in_use_stays_terminating_until_its_pod_is_gone() {
        let kubelet = temp_kubelet("deleted");
        let installer = Installer::new(&kubelet);
        let p = profile(
            "p",
            json!({}),
            json!({"finalizers": ["syscribe.dev/installed-node1"], "deletionTimestamp": "2026-11-26T20:00:00Z"}),
        );
        installer.install("p", &p.spec.to_seccomp()).unwrap();
        let mut node = NodeProfiles::new("node1".into(), installer, Validator::default());
        node.profiles = profiles(vec![p]);
        let user = pod_using("operator/p.json", "Running", true);
        let (client, mut handle) = mock();
        let server = async move {
            let object = node_status(&mut handle, &[]).await;
            assert_eq!(
                object["metadata"]["labels"][LABEL_PROFILE_STATE],
                "Terminating"
            );
            assert_eq!(object["message"], "still used by shop/web");
            let summary = expect(
                &mut handle,
                Method::PATCH,
                &format!("{SP}/p/status?"),
                profile_reply(),
            )
            .await;
            assert_eq!(summary["status"]["status"], "Terminating");
        };
        scenario(node.reconcile(&client, "p", [&user]), server)
            .await
            .unwrap();
        let file = kubelet.join("seccomp/operator/p.json");
        assert!(file.exists(), "kept while used");
        assert_eq!(node.held(), ["p"]);
        // The pod is gone: the file goes, then this node's finalizer.
        let (client, mut handle) = mock();
        let server = async move {
            let body = expect(
                &mut handle,
                Method::PATCH,
                &format!("{SP}/p?&fieldManager=syscribe-node1"),
                profile_reply(),
            )
            .await;
            assert_eq!(body["metadata"]["finalizers"], json!([]));
        };
        scenario(node.reconcile(&client, "p", []), server)
            .await
            .unwrap();
        assert!(!file.exists());
        assert!(node.held().is_empty());
        std::fs::remove_dir_all(&kubelet).unwrap();
    }

    #[tokio::test]
    async fn a_disabled_profile_is_removed_and_says_so() {
        let kubelet = temp_kubelet("disabled");
        let installer = Installer::new(&kubelet);
        let p = profile(
            "p",
            json!({"state": "Disabled"}),
            json!({"finalizers": ["syscribe.dev/installed-node1"]}),
        );
        installer.install("p", &p.spec.to_seccomp()).unwrap();
        let mut node = NodeProfiles::new("node1".into(), installer, Validator::default());
        node.profiles = profiles(vec![p]);
        let (client, mut handle) = mock();
        let server = async move {
            let status = node_status(&mut handle, &["Disabled"]).await;
            assert_eq!(status["status"], "Disabled");
            let summary = expect(
                &mut handle,
                Method::PATCH,
                &format!("{SP}/p/status?"),
                profile_reply(),
            )
            .await;
            assert_eq!(summary["status"]["status"], "Disabled");
            assert_eq!(summary["status"]["localhostProfile"], Value::Null);
        };
        scenario(node.reconcile(&client, "p", []), server)
            .await
            .unwrap();
        assert!(!kubelet.join("seccomp/operator/p.json").exists());
        std::fs::remove_dir_all(&kubelet).unwrap();
    }

    #[test]
    fn a_base_change_reaches_every_profile_built_on_it() {
        let mut node = NodeProfiles::new(
            "n".into(),
            Installer::new(Path::new("/nonexistent")),
            Validator::default(),
        );
        node.profiles = profiles(vec![
            profile("base", json!({}), json!({})),
            profile("mid", json!({"baseProfileName": "base"}), json!({})),
            profile("top", json!({"baseProfileName": "mid"}), json!({})),
            profile("other", json!({}), json!({})),
        ]);
        assert_eq!(node.affected("base"), ["base", "mid", "top"]);
        assert_eq!(node.affected("other"), ["other"]);
    }

    #[tokio::test]
    async fn a_pending_summary_is_made_again_once_the_other_nodes_settle() {
        let kubelet = temp_kubelet("recheck");
        let (client, mut handle) = mock();
        let mut node = NodeProfiles::new(
            "node1".into(),
            Installer::new(&kubelet),
            Validator::default(),
        );
        let p = profile(
            "p",
            json!({}),
            json!({"finalizers": ["syscribe.dev/installed-node1"]}),
        );
        node.installer.install("p", &p.spec.to_seccomp()).unwrap();
        node.profiles = profiles(vec![p]);
        let server = async move {
            // node0 has not installed it yet when node1 lists: Pending.
            node_status(&mut handle, &["Pending"]).await;
            let summary = expect(
                &mut handle,
                Method::PATCH,
                &format!("{SP}/p/status?"),
                profile_reply(),
            )
            .await;
            assert_eq!(summary["status"]["status"], "Pending");
            // Later node1 looks again: both installed, and it says so.
            let selector = "spo.x-k8s.io%2Fprofile-id%3DSeccompProfile-p";
            let uri = format!("{SPNS}?&labelSelector={selector}");
            expect(
                &mut handle,
                Method::GET,
                &uri,
                node_list(&["Installed", "Installed"]),
            )
            .await;
            let summary = expect(
                &mut handle,
                Method::PATCH,
                &format!("{SP}/p/status?"),
                profile_reply(),
            )
            .await;
            assert_eq!(summary["status"]["status"], "Installed");
            // And once more after its own write: the same, so nothing is written.
            expect(
                &mut handle,
                Method::GET,
                &uri,
                node_list(&["Installed", "Installed"]),
            )
            .await;
        };
        let client_side = async {
            node.reconcile(&client, "p", []).await.unwrap();
            node.recheck_due(&client).await.unwrap();
            assert_eq!(node.recheck.len(), 1, "not due yet: nothing asked");
            node.expire_rechecks();
            node.recheck_due(&client).await.unwrap();
            assert_eq!(
                node.recheck.len(),
                1,
                "a written summary is looked at again"
            );
            // The watch brings the written status back.
            let written = node.profiles.get_mut("p").unwrap();
            written.status = Some(ProfileStatus {
                status: Some(ProfileStatusKind::Installed),
                path: Some(node.installer.dir().join("p.json").display().to_string()),
                localhost_profile: Some("operator/p.json".into()),
                nodes: Some("2/2".into()),
                conditions: vec![Condition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    reason: "Installed".into(),
                    message: String::new(),
                    observed_generation: Some(1),
                    last_transition_time: Time(k8s_openapi::jiff::Timestamp::now()),
                }],
                ..ProfileStatus::default()
            });
            node.expire_rechecks();
            node.recheck_due(&client).await.unwrap();
            assert!(node.recheck.is_empty(), "settled");
        };
        scenario(client_side, server).await;
        std::fs::remove_dir_all(&kubelet).unwrap();
    }
}
