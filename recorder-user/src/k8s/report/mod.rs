//! `syscribe report`: which containers run under which seccomp profile, which are privileged,
//! which share the host's namespaces — per namespace, with totals and a coverage figure.
//!
//! This module decides (what a container's effective seccomp mode is, as the kubelet and the
//! runtime decide it; what counts as covered); `fetch` reads the cluster, `render` writes the
//! table, JSON and HTML, `prom` reads the daemons' /metrics. The daemon's per-node gauges
//! (`k8s::coverage`) use the same decisions.

pub mod fetch;
pub mod html;
pub mod prom;
pub mod render;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    Capabilities, Pod, PodSecurityContext, SeccompProfile as PodSeccompProfile, SecurityContext,
};
use kube::ResourceExt as _;
use serde::Serialize;

/// The effective seccomp mode of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum SeccompMode {
    Unconfined,
    RuntimeDefault,
    Localhost,
}

impl SeccompMode {
    pub const ALL: [Self; 3] = [Self::Unconfined, Self::RuntimeDefault, Self::Localhost];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unconfined => "Unconfined",
            Self::RuntimeDefault => "RuntimeDefault",
            Self::Localhost => "Localhost",
        }
    }
}

/// Where the effective mode came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SeccompSource {
    /// The container's own `securityContext.seccompProfile`.
    Container,
    /// The pod's `securityContext.seccompProfile`.
    Pod,
    /// Neither is set: the kubelet's default (`seccompDefault`).
    Default,
    /// The container is privileged: the runtime loads no filter whatever is asked.
    Privileged,
}

/// Which list of the pod spec a container is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ContainerKind {
    Container,
    Init,
    Ephemeral,
}

/// Assumptions the report cannot read from the API server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Assumptions {
    /// The kubelets' `seccompDefault` (KubeletConfiguration, default false): when true, a
    /// container with no profile at all runs RuntimeDefault, else Unconfined.
    pub seccomp_default: bool,
}

/// One container's seccomp, as the kubelet resolves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Seccomp {
    /// The effective mode (what the runtime applies).
    #[serde(rename = "type")]
    pub mode: SeccompMode,
    pub source: SeccompSource,
    /// What the spec asked for when the runtime ignores it (privileged containers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested: Option<String>,
    /// `localhostProfile` (Localhost only), e.g. `operator/web.json`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub localhost_profile: Option<String>,
    /// The SeccompProfile it names (`operator/<name>.json`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// That profile's SecurityProfileNodeStatus on the pod's node (`Installed`, `Pending`,
    /// `Error`…), `Missing` when the node has none; absent for profiles not managed by the
    /// operator and for unscheduled pods.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_status: Option<String>,
}

/// Denials counted by the pod's node's daemon (its /metrics audit counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Denials {
    pub seccomp: u64,
    pub selinux: u64,
}

/// One container of one pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRow {
    pub pod: String,
    pub container: String,
    pub kind: ContainerKind,
    /// The pod's node (absent while unscheduled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub seccomp: Seccomp,
    /// The effective `seLinuxOptions.type` (the container's options replace the pod's whole).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selinux_type: Option<String>,
    pub privileged: bool,
    pub added_capabilities: Vec<String>,
    #[serde(rename = "hostPID")]
    pub host_pid: bool,
    pub host_network: bool,
    #[serde(rename = "hostIPC")]
    pub host_ipc: bool,
    /// Recorded SeccompProfiles for this namespace and container name that it does not use.
    pub recorded_unused: Vec<String>,
    /// Absent when the node's daemon could not be read (see `nodes`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub denials: Option<Denials>,
}

impl ContainerRow {
    /// Covered: the runtime applies a filter (RuntimeDefault or a Localhost profile).
    pub fn covered(&self) -> bool {
        self.seccomp.mode != SeccompMode::Unconfined
    }

    pub fn host_namespaces(&self) -> bool {
        self.host_pid || self.host_network || self.host_ipc
    }
}

/// Counts over a set of containers.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    pub containers: u64,
    pub unconfined: u64,
    pub runtime_default: u64,
    pub localhost: u64,
    /// Localhost containers whose profile is not Installed on their node.
    pub localhost_not_installed: u64,
    pub privileged: u64,
    pub host_namespaces: u64,
    pub added_capabilities: u64,
    pub selinux_type_set: u64,
    pub recorded_unused: u64,
    pub seccomp_denials: u64,
    pub selinux_denials: u64,
    /// Containers whose node's daemon could not be read: their denials are unknown.
    pub denials_unknown: u64,
    /// `100 × (runtimeDefault + localhost) / containers`, rounded to 0.1; null without
    /// containers.
    pub coverage: Option<f64>,
}

impl Totals {
    pub fn add(&mut self, row: &ContainerRow) {
        self.containers += 1;
        match row.seccomp.mode {
            SeccompMode::Unconfined => self.unconfined += 1,
            SeccompMode::RuntimeDefault => self.runtime_default += 1,
            SeccompMode::Localhost => {
                self.localhost += 1;
                if row.seccomp.node_status.as_deref() != Some("Installed") {
                    self.localhost_not_installed += 1;
                }
            }
        }
        self.privileged += u64::from(row.privileged);
        self.host_namespaces += u64::from(row.host_namespaces());
        self.added_capabilities += u64::from(!row.added_capabilities.is_empty());
        self.selinux_type_set += u64::from(row.selinux_type.is_some());
        self.recorded_unused += u64::from(!row.recorded_unused.is_empty());
        match row.denials {
            Some(d) => {
                self.seccomp_denials += d.seccomp;
                self.selinux_denials += d.selinux;
            }
            None => self.denials_unknown += 1,
        }
        self.coverage = coverage(self.runtime_default + self.localhost, self.containers);
    }
}

/// Percent, one decimal; None for an empty set.
pub fn coverage(covered: u64, all: u64) -> Option<f64> {
    (all > 0).then(|| (covered as f64 * 1000.0 / all as f64).round() / 10.0)
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NamespaceReport {
    pub name: String,
    pub totals: Totals,
    pub containers: Vec<ContainerRow>,
}

/// How the report read one node's daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeReport {
    pub name: String,
    /// The daemon pod read (`namespace/name`), if the node has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daemon: Option<String>,
    /// Whether its /metrics was read.
    pub metrics: bool,
    /// Why not, when it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A SeccompProfile and its state on each node (`profiles × nodes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileReport {
    pub name: String,
    /// Recorded by a ProfileRecording (it carries the recording labels).
    pub recorded: bool,
    /// Node name → state of its SecurityProfileNodeStatus.
    pub nodes: BTreeMap<String, String>,
}

/// The whole report; its JSON is the `--format json` output (fields documented in
/// docs/commands.md).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The JSON layout's version: fields are only ever added within one version.
    pub version: u32,
    pub assumptions: Assumptions,
    pub cluster: Totals,
    pub namespaces: Vec<NamespaceReport>,
    pub nodes: Vec<NodeReport>,
    pub profiles: Vec<ProfileReport>,
}

impl Report {
    /// Totals per namespace and for the cluster from the rows; namespaces sorted by name.
    pub fn new(
        assumptions: Assumptions,
        mut namespaces: BTreeMap<String, Vec<ContainerRow>>,
        nodes: Vec<NodeReport>,
        profiles: Vec<ProfileReport>,
    ) -> Self {
        let mut cluster = Totals::default();
        let namespaces = std::mem::take(&mut namespaces)
            .into_iter()
            .map(|(name, containers)| {
                let mut totals = Totals::default();
                for row in &containers {
                    totals.add(row);
                    cluster.add(row);
                }
                NamespaceReport {
                    name,
                    totals,
                    containers,
                }
            })
            .collect();
        Self {
            version: 1,
            assumptions,
            cluster,
            namespaces,
            nodes,
            profiles,
        }
    }
}

/// What the report needs to know beside the pod itself.
pub trait Lookup {
    /// The state of SeccompProfile `profile` on `node` (its SecurityProfileNodeStatus).
    fn node_status(&self, profile: &str, node: &str) -> Option<String>;
    /// Recorded SeccompProfiles of `namespace` for containers named `container`.
    fn recorded_for(&self, namespace: &str, container: &str) -> Vec<String>;
    /// Denials counted for the container; None when the node's daemon was not read.
    fn denials(&self, node: &str, namespace: &str, pod: &str, container: &str) -> Option<Denials>;
}

/// Whether a pod counts: not finished (Succeeded or Failed pods run no container).
pub fn pod_counts(pod: &Pod) -> bool {
    !matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// The profile name of an `operator/<name>.json` localhost profile.
pub fn operator_profile(localhost: &str) -> Option<&str> {
    localhost
        .strip_prefix("operator/")?
        .strip_suffix(".json")
        .filter(|n| !n.is_empty() && !n.contains('/'))
}

/// The effective seccomp of a container, as the kubelet (kuberuntime's `getSeccompProfile`:
/// the container's field, else the pod's, else RuntimeDefault with `seccompDefault`, else
/// Unconfined) and the runtime (containerd and CRI-O load no filter into a privileged
/// container) decide it.
pub fn effective_seccomp(
    pod_sc: Option<&PodSecurityContext>,
    sc: Option<&SecurityContext>,
    assumptions: Assumptions,
) -> Seccomp {
    let privileged = sc.and_then(|sc| sc.privileged).unwrap_or(false);
    let (asked, source): (Option<&PodSeccompProfile>, SeccompSource) =
        match sc.and_then(|sc| sc.seccomp_profile.as_ref()) {
            Some(p) => (Some(p), SeccompSource::Container),
            None => match pod_sc.and_then(|sc| sc.seccomp_profile.as_ref()) {
                Some(p) => (Some(p), SeccompSource::Pod),
                None => (None, SeccompSource::Default),
            },
        };
    let (mode, localhost) = match asked {
        Some(p) if p.type_ == "Localhost" => (SeccompMode::Localhost, p.localhost_profile.clone()),
        Some(p) if p.type_ == "RuntimeDefault" => (SeccompMode::RuntimeDefault, None),
        Some(_) => (SeccompMode::Unconfined, None),
        None if assumptions.seccomp_default => (SeccompMode::RuntimeDefault, None),
        None => (SeccompMode::Unconfined, None),
    };
    if privileged {
        let requested = match (mode, &localhost) {
            (SeccompMode::Unconfined, _) => None,
            (SeccompMode::Localhost, Some(l)) => Some(format!("Localhost {l}")),
            (m, _) => Some(m.as_str().to_owned()),
        };
        return Seccomp {
            mode: SeccompMode::Unconfined,
            source: SeccompSource::Privileged,
            requested,
            localhost_profile: None,
            profile: None,
            node_status: None,
        };
    }
    let profile = localhost
        .as_deref()
        .and_then(operator_profile)
        .map(str::to_owned);
    Seccomp {
        mode,
        source,
        requested: None,
        localhost_profile: localhost,
        profile,
        node_status: None,
    }
}

/// The rows of one pod's containers (init and ephemeral ones too), in spec order.
pub fn pod_rows(pod: &Pod, assumptions: Assumptions, lookup: &dyn Lookup) -> Vec<ContainerRow> {
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    let namespace = pod.namespace().unwrap_or_default();
    let pod_name = pod.name_any();
    let node = spec.node_name.clone().filter(|n| !n.is_empty());
    let pod_sc = spec.security_context.as_ref();
    let pod_selinux = pod_sc
        .and_then(|sc| sc.se_linux_options.as_ref())
        .and_then(|o| o.type_.clone());
    let all = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| (ContainerKind::Init, &c.name, c.security_context.as_ref()))
        .chain(spec.containers.iter().map(|c| {
            (
                ContainerKind::Container,
                &c.name,
                c.security_context.as_ref(),
            )
        }))
        .chain(spec.ephemeral_containers.iter().flatten().map(|c| {
            (
                ContainerKind::Ephemeral,
                &c.name,
                c.security_context.as_ref(),
            )
        }));
    let mut rows = Vec::new();
    for (kind, name, sc) in all {
        let mut seccomp = effective_seccomp(pod_sc, sc, assumptions);
        if let (Some(profile), Some(node)) = (&seccomp.profile, &node) {
            seccomp.node_status = Some(
                lookup
                    .node_status(profile, node)
                    .unwrap_or_else(|| "Missing".to_owned()),
            );
        }
        // The container's seLinuxOptions replace the pod's as a whole (DetermineEffectiveSecurityContext).
        let selinux_type = match sc.and_then(|sc| sc.se_linux_options.as_ref()) {
            Some(options) => options.type_.clone(),
            None => pod_selinux.clone(),
        }
        .filter(|t| !t.is_empty());
        let added_capabilities: BTreeSet<String> = sc
            .and_then(|sc| sc.capabilities.as_ref())
            .and_then(|c: &Capabilities| c.add.clone())
            .into_iter()
            .flatten()
            .collect();
        let used = seccomp.profile.clone();
        let recorded_unused = lookup
            .recorded_for(&namespace, name)
            .into_iter()
            .filter(|p| Some(p) != used.as_ref())
            .collect();
        let denials = match &node {
            Some(node) => lookup.denials(node, &namespace, &pod_name, name),
            // Never ran: nothing to count.
            None => Some(Denials::default()),
        };
        rows.push(ContainerRow {
            pod: pod_name.clone(),
            container: name.clone(),
            kind,
            node: node.clone(),
            privileged: sc.and_then(|sc| sc.privileged).unwrap_or(false),
            seccomp,
            selinux_type,
            added_capabilities: added_capabilities.into_iter().collect(),
            host_pid: spec.host_pid.unwrap_or(false),
            host_network: spec.host_network.unwrap_or(false),
            host_ipc: spec.host_ipc.unwrap_or(false),
            recorded_unused,
            denials,
        });
    }
    rows
}

#[cfg(test)]
mod tests;
