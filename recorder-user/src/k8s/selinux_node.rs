//! SelinuxProfile and RawSelinuxProfile on this node: each enabled, valid profile becomes the
//! policy module `<name>` in the node's store (built by the real compiler, see
//! [`crate::selinux`]), whose type pods use as `seLinuxOptions.type: <name>.process`. A node
//! without SELinux says so in its status — the profile is never Installed there. A disabled or
//! deleted profile's module is removed unless a running pod on the node uses its type: then it
//! stays (Terminating while the profile exists) until the last such pod is gone.
//!
//! Building a module takes seconds: it runs on a blocking thread and its result comes back to
//! the daemon's loop ([`SelinuxNode::results`]), which never waits for it.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Pod, SELinuxOptions};
use kube::Client;
use tokio::sync::mpsc;

use super::{
    crd::{
        LABEL_PARTIAL, ProfileState, ProfileStatus, ProfileStatusKind, RawSelinuxProfile,
        SelinuxProfile,
    },
    install::running_pods_where,
    node_status::{self, NodeProfile},
    publish::PublishError,
};
use crate::{
    profile::{
        cil,
        validate::{Severity, Validator},
    },
    selinux::{PolicyStore, RECORDING_MODULE, RECORDING_TYPE, StoreError, module_name_problem},
};

/// The two kinds that become policy modules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SelinuxKind {
    Profile,
    Raw,
}

impl SelinuxKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Profile => "SelinuxProfile",
            Self::Raw => "RawSelinuxProfile",
        }
    }
}

impl NodeProfile for SelinuxProfile {
    const KIND: &'static str = "SelinuxProfile";

    fn profile_status(&self) -> Option<&ProfileStatus> {
        self.status.as_ref()
    }
}

impl NodeProfile for RawSelinuxProfile {
    const KIND: &'static str = "RawSelinuxProfile";

    fn profile_status(&self) -> Option<&ProfileStatus> {
        self.status.as_ref()
    }
}

/// What this node does about one SELinux profile.
#[derive(Debug, Clone, PartialEq)]
pub enum SelinuxPlan {
    /// Build and install the module; `origins[i]` is the profile field line i + 1 comes from.
    Install { cil: String, origins: Vec<String> },
    /// SELinux is off here: nothing can be installed, and the status says so.
    Off,
    /// Invalid, or not a module name: an Error status with the reason.
    Refuse(String),
    /// Disabled or deleted, but running pods here use its type.
    Hold { users: Vec<String> },
    /// Disabled or deleted, and unused: the module goes.
    Remove,
    /// A recorded partial profile (`mergeStrategy: Containers`): not installed, merged first.
    Partial,
}

/// Why a node without SELinux cannot install a profile.
pub const SELINUX_OFF: &str =
    "SELinux is off on this node (no /sys/fs/selinux): its policy modules cannot be installed here";

/// `namespace/pod` of each pod not finished whose pod- or container-level
/// `seLinuxOptions.type` is `type_`.
pub fn users<'a>(type_: &str, pods: impl IntoIterator<Item = &'a Pod>) -> Vec<String> {
    let uses = |o: Option<&SELinuxOptions>| o.and_then(|o| o.type_.as_deref()) == Some(type_);
    running_pods_where(
        pods,
        |sc| uses(sc.and_then(|sc| sc.se_linux_options.as_ref())),
        |sc| uses(sc.and_then(|sc| sc.se_linux_options.as_ref())),
    )
}

/// One SELinux profile of either kind, as the planner sees it.
pub enum Object<'a> {
    Profile(&'a SelinuxProfile),
    Raw(&'a RawSelinuxProfile),
}

impl Object<'_> {
    fn disabled(&self) -> bool {
        let state = match self {
            Self::Profile(p) => p.spec.state,
            Self::Raw(p) => p.spec.state,
        };
        state == Some(ProfileState::Disabled)
    }

    fn deleting(&self) -> bool {
        match self {
            Self::Profile(p) => p.metadata.deletion_timestamp.is_some(),
            Self::Raw(p) => p.metadata.deletion_timestamp.is_some(),
        }
    }

    fn partial(&self) -> bool {
        let labels = match self {
            Self::Profile(p) => p.metadata.labels.as_ref(),
            Self::Raw(p) => p.metadata.labels.as_ref(),
        };
        labels
            .and_then(|l| l.get(LABEL_PARTIAL))
            .is_some_and(|v| v == "true")
    }

    fn value(&self) -> serde_yaml::Value {
        match self {
            Self::Profile(p) => serde_yaml::to_value(p),
            Self::Raw(p) => serde_yaml::to_value(p),
        }
        .expect("profiles serialize")
    }

    /// The module and, per line, the field it comes from (what `syscribe validate` compiles).
    fn module(&self, name: &str) -> (String, Vec<String>) {
        let mut value = self.value();
        value["metadata"]["name"] = serde_yaml::Value::String(name.to_owned());
        let module = cil::module_of(&value).expect("a SelinuxProfile or RawSelinuxProfile");
        (
            module.cil,
            module.origins.iter().map(ToString::to_string).collect(),
        )
    }
}

/// What this node does about the profile `name` of `kind` (`object` None: deleted).
/// `taken`: a profile of the other kind has this name (and so this module) already.
pub fn plan<'a>(
    name: &str,
    object: Option<Object<'_>>,
    taken: Option<SelinuxKind>,
    pods: impl IntoIterator<Item = &'a Pod>,
    validator: &mut Validator,
    selinux_on: bool,
) -> SelinuxPlan {
    let active = object
        .as_ref()
        .is_some_and(|o| !o.disabled() && !o.deleting());
    if !active {
        let users = users(&cil::usage(name), pods);
        return if users.is_empty() {
            SelinuxPlan::Remove
        } else {
            SelinuxPlan::Hold { users }
        };
    }
    let object = object.expect("active means present");
    if object.partial() {
        return SelinuxPlan::Partial;
    }
    if let Some(other) = taken {
        return SelinuxPlan::Refuse(format!(
            "a {} named {name} exists too: both would be the policy module {name} (type {name}.process); rename one",
            other.name()
        ));
    }
    if let Some(reason) = module_name_problem(name) {
        return SelinuxPlan::Refuse(format!("{name:?} cannot name a policy module: {reason}"));
    }
    let errors: Vec<String> = validator
        .validate(&object.value())
        .into_iter()
        .filter(|p| p.severity == Severity::Error)
        .map(|p| p.to_string())
        .collect();
    if !errors.is_empty() {
        return SelinuxPlan::Refuse(format!("invalid profile: {}", errors.join("; ")));
    }
    if !selinux_on {
        return SelinuxPlan::Off;
    }
    let (cil, origins) = object.module(name);
    SelinuxPlan::Install { cil, origins }
}

/// The compiler's complaints in the profile's terms.
pub fn explain(err: &StoreError, origins: &[String]) -> String {
    match err {
        StoreError::Refused { complaints, .. } => {
            let said: Vec<String> = complaints
                .iter()
                .map(|c| {
                    match c
                        .line
                        .and_then(|l| origins.get(l.wrapping_sub(1)))
                        .filter(|o| !o.is_empty())
                    {
                        Some(field) => format!("{field}: {}", c.message),
                        None => c.to_string(),
                    }
                })
                .collect();
            format!(
                "the policy compiler refused the module: {}",
                said.join("; ")
            )
        }
        other => other.to_string(),
    }
}

/// A module build that finished: kind, name, and the error said in the profile's terms.
pub type Built = (SelinuxKind, String, Result<(), String>);

/// The SELinux profiles of this node.
pub struct SelinuxNode {
    node: String,
    store: Option<PolicyStore>,
    validator: Validator,
    pub profiles: BTreeMap<String, SelinuxProfile>,
    pub raw: BTreeMap<String, RawSelinuxProfile>,
    written: BTreeMap<(SelinuxKind, String), (ProfileStatusKind, Option<String>)>,
    held: BTreeSet<(SelinuxKind, String)>,
    /// Modules being built now, with the module text (a profile changed meanwhile is built
    /// again when the first build reports).
    building: BTreeMap<String, String>,
    done_tx: mpsc::UnboundedSender<Built>,
    done_rx: mpsc::UnboundedReceiver<Built>,
}

impl SelinuxNode {
    /// `store`: the node's policy store, None when SELinux is off here.
    pub fn new(node: String, store: Option<PolicyStore>, validator: Validator) -> Self {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Self {
            node,
            store,
            validator,
            profiles: BTreeMap::new(),
            raw: BTreeMap::new(),
            written: BTreeMap::new(),
            held: BTreeSet::new(),
            building: BTreeMap::new(),
            done_tx,
            done_rx,
        }
    }

    /// Installs the permissive recording type (and the template it inherits) on a blocking
    /// thread, where SELinux is on; said in the log either way.
    pub fn prepare_recording(&self) {
        let Some(store) = self.store.clone() else {
            tracing::info!(
                "SELinux is off on this node: {RECORDING_TYPE} is not installed; SelinuxProfile recordings here only get denials from other sources"
            );
            return;
        };
        tokio::task::spawn_blocking(move || match store.ensure_recording_module() {
            Ok(true) => tracing::info!(
                module = RECORDING_MODULE,
                "recording type {RECORDING_TYPE} installed"
            ),
            Ok(false) => tracing::info!(
                module = RECORDING_MODULE,
                "recording type {RECORDING_TYPE} already installed"
            ),
            Err(err) => {
                tracing::error!(module = RECORDING_MODULE, error = %err, "the recording type cannot be installed: pods that ask for {RECORDING_TYPE} will not start")
            }
        });
    }

    /// Builds that finished, for the daemon's loop to hand to [`Self::built`].
    pub async fn next_built(&mut self) -> Option<Built> {
        self.done_rx.recv().await
    }

    /// Profiles kept only because pods use their type.
    pub fn held(&self) -> Vec<(SelinuxKind, String)> {
        self.held.iter().cloned().collect()
    }

    fn object(&self, kind: SelinuxKind, name: &str) -> Option<Object<'_>> {
        match kind {
            SelinuxKind::Profile => self.profiles.get(name).map(Object::Profile),
            SelinuxKind::Raw => self.raw.get(name).map(Object::Raw),
        }
    }

    /// Brings the node in line with the profile: module, node status, summary.
    pub async fn reconcile<'a>(
        &mut self,
        client: &Client,
        kind: SelinuxKind,
        name: &str,
        pods: impl IntoIterator<Item = &'a Pod>,
    ) -> Result<(), PublishError> {
        let other = match kind {
            SelinuxKind::Profile => SelinuxKind::Raw,
            SelinuxKind::Raw => SelinuxKind::Profile,
        };
        // The SelinuxProfile keeps a shared name; the RawSelinuxProfile is refused.
        let taken =
            (kind == SelinuxKind::Raw && self.object(other, name).is_some()).then_some(other);
        let selinux_on = self.store.is_some();
        let mut validator = std::mem::take(&mut self.validator);
        let plan = plan(
            name,
            self.object(kind, name),
            taken,
            pods,
            &mut validator,
            selinux_on,
        );
        self.validator = validator;
        let key = (kind, name.to_owned());
        self.held.remove(&key);
        match plan {
            SelinuxPlan::Install { cil, origins } => {
                if self.building.get(name) == Some(&cil) {
                    return Ok(());
                }
                self.set_status(client, kind, name, ProfileStatusKind::InProgress, None)
                    .await?;
                self.building.insert(name.to_owned(), cil.clone());
                let store = self
                    .store
                    .clone()
                    .expect("Install only where SELinux is on");
                let done = self.done_tx.clone();
                let name = name.to_owned();
                tokio::task::spawn_blocking(move || {
                    let result = store
                        .ensure_template()
                        .and_then(|_| store.install(&name, &cil))
                        .map_err(|err| explain(&err, &origins));
                    let _ = done.send((kind, name, result));
                });
            }
            SelinuxPlan::Off => {
                crate::audit::op_metrics::count(
                    crate::audit::op_metrics::Op::ProfileFailed,
                    kind.name(),
                );
                self.set_status(
                    client,
                    kind,
                    name,
                    ProfileStatusKind::Error,
                    Some(SELINUX_OFF.to_owned()),
                )
                .await?;
            }
            SelinuxPlan::Refuse(reason) => {
                crate::audit::op_metrics::count(
                    crate::audit::op_metrics::Op::ProfileFailed,
                    kind.name(),
                );
                tracing::warn!(kind = kind.name(), profile = name, %reason, "not installed");
                self.set_status(client, kind, name, ProfileStatusKind::Error, Some(reason))
                    .await?;
            }
            SelinuxPlan::Partial => {
                tracing::debug!(kind = kind.name(), profile = name, "partial: not installed");
            }
            SelinuxPlan::Hold { users } => {
                self.held.insert(key);
                let message = format!("in use by {}", users.join(", "));
                if self.object(kind, name).is_some() {
                    self.set_status(
                        client,
                        kind,
                        name,
                        ProfileStatusKind::Terminating,
                        Some(message),
                    )
                    .await?;
                }
            }
            SelinuxPlan::Remove => {
                if let Some(store) = self.store.clone() {
                    let module = name.to_owned();
                    let removed_kind = kind.name();
                    tokio::task::spawn_blocking(move || match store.remove(&module) {
                        Ok(true) => {
                            crate::audit::op_metrics::count(
                                crate::audit::op_metrics::Op::ProfileRemoved,
                                removed_kind,
                            );
                            tracing::info!(module, "policy module removed")
                        }
                        Ok(false) => {}
                        Err(err) => {
                            tracing::warn!(module, error = %err, "removing a policy module")
                        }
                    });
                }
                if self.object(kind, name).is_some() {
                    self.set_status(client, kind, name, ProfileStatusKind::Disabled, None)
                        .await?;
                } else {
                    self.written.remove(&(kind, name.to_owned()));
                }
            }
        }
        Ok(())
    }

    /// A build finished: its status, and a new build if the profile changed meanwhile.
    pub async fn built<'a>(
        &mut self,
        client: &Client,
        (kind, name, result): Built,
        pods: impl IntoIterator<Item = &'a Pod>,
    ) -> Result<(), PublishError> {
        let built = self.building.remove(&name);
        match &result {
            Ok(()) => {
                tracing::info!(kind = kind.name(), profile = %name, "policy module installed")
            }
            Err(reason) => {
                tracing::warn!(kind = kind.name(), profile = %name, %reason, "policy module not installed")
            }
        }
        crate::audit::op_metrics::count(
            match result {
                Ok(()) => crate::audit::op_metrics::Op::ProfileInstalled,
                Err(_) => crate::audit::op_metrics::Op::ProfileFailed,
            },
            kind.name(),
        );
        let (status, message) = match result {
            Ok(()) => (ProfileStatusKind::Installed, None),
            Err(reason) => (ProfileStatusKind::Error, Some(reason)),
        };
        self.set_status(client, kind, &name, status, message)
            .await?;
        // Changed while it was built: build what it is now.
        let now = self.object(kind, &name).map(|o| o.module(&name).0);
        if now.is_some() && now != built {
            self.reconcile(client, kind, &name, pods).await?;
        }
        Ok(())
    }

    async fn set_status(
        &mut self,
        client: &Client,
        kind: SelinuxKind,
        name: &str,
        status: ProfileStatusKind,
        message: Option<String>,
    ) -> Result<(), PublishError> {
        let key = (kind, name.to_owned());
        let now = (status, message.clone());
        if self.written.get(&key) == Some(&now) {
            return Ok(());
        }
        let node = &self.node;
        let reported = match kind {
            SelinuxKind::Profile => match self.profiles.get(name) {
                Some(p) => report(client, node, p, status, message).await?,
                None => false,
            },
            SelinuxKind::Raw => match self.raw.get(name) {
                Some(p) => report(client, node, p, status, message).await?,
                None => false,
            },
        };
        if !reported {
            return Ok(());
        }
        self.written.insert(key, now);
        Ok(())
    }
}

/// This node's status for `profile`, then the profile's summary (usage `<name>.process` once
/// installed). Returns true (the profile was there to report on).
async fn report<K: NodeProfile>(
    client: &Client,
    node: &str,
    profile: &K,
    status: ProfileStatusKind,
    message: Option<String>,
) -> Result<bool, PublishError> {
    let name = profile.meta().name.clone().unwrap_or_default();
    node_status::apply(client, node, profile, status, message.as_deref()).await?;
    let usage = |s: &mut ProfileStatus, installed: bool| {
        s.usage = installed.then(|| cil::usage(&name));
    };
    node_status::summarize(client, profile, message, usage).await?;
    Ok(true)
}

#[cfg(test)]
#[path = "selinux_node_tests.rs"]
mod tests;
