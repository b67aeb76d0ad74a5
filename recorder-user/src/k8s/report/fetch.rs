//! Reads what the report needs from the cluster, with the user's credentials: pods (paged),
//! namespaces, SeccompProfiles, SecurityProfileNodeStatuses, and each node's daemon's
//! /metrics through the API server's pod proxy.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use http::Request;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::{
    Api, Client, Resource, ResourceExt as _,
    api::{ListParams, ObjectList},
    client::Body,
};
use serde::de::DeserializeOwned;

use super::{
    Assumptions, ContainerRow, Denials, Lookup, NodeReport, ProfileReport, Report, pod_counts,
    pod_rows,
    prom::{self, ContainerKey},
};
use crate::k8s::crd::{
    LABEL_CONTAINER_ID, LABEL_PARTIAL, LABEL_PROFILE_ID, LABEL_PROFILE_KIND, LABEL_RECORDING_ID,
    LABEL_RECORDING_NAMESPACE, SeccompProfile, SecurityProfileNodeStatus,
};

/// Objects asked for per list request.
pub const PAGE: u32 = 500;
/// The most of one daemon's /metrics read (its series are bounded far below this).
pub const MAX_METRICS_BYTES: usize = 32 << 20;

#[derive(Debug, Clone)]
pub struct Options {
    /// Only this namespace (else every namespace).
    pub namespace: Option<String>,
    /// Where the daemons run, and their pods' label selector.
    pub daemon_namespace: String,
    pub daemon_selector: String,
    pub assumptions: Assumptions,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot list {what}: {source}")]
    List {
        what: &'static str,
        #[source]
        source: kube::Error,
    },
}

/// Every page of a list.
async fn list_all<K>(
    api: &Api<K>,
    params: ListParams,
    what: &'static str,
) -> Result<Vec<K>, ReportError>
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut page_params = params.clone().limit(PAGE);
        if let Some(token) = &token {
            page_params = page_params.continue_token(token);
        }
        let page: ObjectList<K> = api
            .list(&page_params)
            .await
            .map_err(|source| ReportError::List { what, source })?;
        out.extend(page.items);
        match page.metadata.continue_.filter(|t| !t.is_empty()) {
            Some(next) => token = Some(next),
            None => return Ok(out),
        }
    }
}

/// Pages through pods, handing each page to `each` (only one page is held at a time).
async fn for_each_pod(api: &Api<Pod>, mut each: impl FnMut(Pod)) -> Result<(), ReportError> {
    let mut token: Option<String> = None;
    loop {
        let mut params = ListParams::default().limit(PAGE);
        if let Some(token) = &token {
            params = params.continue_token(token);
        }
        let page = api
            .list(&params)
            .await
            .map_err(|source| ReportError::List {
                what: "pods",
                source,
            })?;
        page.items.into_iter().for_each(&mut each);
        match page.metadata.continue_.filter(|t| !t.is_empty()) {
            Some(next) => token = Some(next),
            None => return Ok(()),
        }
    }
}

/// What the rows are completed with.
#[derive(Default)]
struct Known {
    /// (profile, node) → state.
    statuses: HashMap<(String, String), String>,
    /// (namespace, container name) → recorded profiles.
    recorded: HashMap<(String, String), Vec<String>>,
    /// node → its daemon's counters (nodes whose daemon was read).
    denials: HashMap<String, HashMap<ContainerKey, Denials>>,
}

impl Lookup for Known {
    fn node_status(&self, profile: &str, node: &str) -> Option<String> {
        self.statuses
            .get(&(profile.to_owned(), node.to_owned()))
            .cloned()
    }

    fn recorded_for(&self, namespace: &str, container: &str) -> Vec<String> {
        self.recorded
            .get(&(namespace.to_owned(), container.to_owned()))
            .cloned()
            .unwrap_or_default()
    }

    fn denials(&self, node: &str, namespace: &str, pod: &str, container: &str) -> Option<Denials> {
        let counted = self.denials.get(node)?;
        Some(
            counted
                .get(&(namespace.to_owned(), pod.to_owned(), container.to_owned()))
                .copied()
                .unwrap_or_default(),
        )
    }
}

/// The SeccompProfile a node status is about: its owner of that kind, else its profile-id
/// label (`SeccompProfile-<name>`).
fn status_profile(status: &SecurityProfileNodeStatus) -> Option<String> {
    let kind = status.labels().get(LABEL_PROFILE_KIND).map(String::as_str);
    if kind.is_some_and(|k| k != "SeccompProfile") {
        return None;
    }
    status
        .owner_references()
        .iter()
        .find(|o| o.kind == "SeccompProfile")
        .map(|o| o.name.clone())
        .or_else(|| {
            status
                .labels()
                .get(LABEL_PROFILE_ID)?
                .strip_prefix("SeccompProfile-")
                .map(str::to_owned)
        })
}

/// GET through the API server, the body read up to `max` bytes.
async fn get_bounded(client: &Client, path: &str, max: usize) -> Result<String, String> {
    use http_body::Body as _;
    let request = Request::get(path)
        .body(Body::empty())
        .map_err(|e| e.to_string())?;
    let response = client.send(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    loop {
        let frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await;
        match frame {
            None => break,
            Some(Err(e)) => return Err(e.to_string()),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    if bytes.len() + data.len() > max {
                        return Err(format!("more than {max} bytes"));
                    }
                    bytes.extend_from_slice(&data);
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    if !status.is_success() {
        let head: String = text.chars().take(200).collect();
        return Err(format!("HTTP {status}: {}", head.trim()));
    }
    Ok(text)
}

/// The daemon pods (node → pod), and each one's /metrics read through the pod proxy.
async fn read_daemons(
    client: &Client,
    options: &Options,
    known: &mut Known,
) -> Result<BTreeMap<String, NodeReport>, ReportError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &options.daemon_namespace);
    let pods = list_all(
        &api,
        ListParams::default().labels(&options.daemon_selector),
        "the daemon's pods",
    )
    .await?;
    let mut nodes = BTreeMap::new();
    for pod in pods {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            continue;
        };
        let name = pod.name_any();
        let port = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.ports.as_ref())
            .and_then(|ports| {
                ports
                    .iter()
                    .find(|p| p.name.as_deref() == Some("metrics"))
                    .map(|p| p.container_port)
            })
            .unwrap_or(9890);
        let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        let path = format!(
            "/api/v1/namespaces/{}/pods/{}:{port}/proxy/metrics",
            options.daemon_namespace, name
        );
        let read = if running {
            get_bounded(client, &path, MAX_METRICS_BYTES).await
        } else {
            Err("the daemon's pod is not running".to_owned())
        };
        let report = match read {
            Ok(text) => {
                known.denials.insert(node.clone(), prom::denials(&text));
                NodeReport {
                    name: node.clone(),
                    daemon: Some(format!("{}/{name}", options.daemon_namespace)),
                    metrics: true,
                    error: None,
                }
            }
            Err(error) => NodeReport {
                name: node.clone(),
                daemon: Some(format!("{}/{name}", options.daemon_namespace)),
                metrics: false,
                error: Some(error),
            },
        };
        // A node with two daemon pods (a rollout): the one read wins.
        if nodes.get(&node).is_none_or(|r: &NodeReport| !r.metrics) {
            nodes.insert(node, report);
        }
    }
    Ok(nodes)
}

/// The whole report.
pub async fn report(client: &Client, options: &Options) -> Result<Report, ReportError> {
    let mut known = Known::default();
    let profiles = list_all(
        &Api::<SeccompProfile>::all(client.clone()),
        ListParams::default(),
        "SeccompProfiles",
    )
    .await?;
    let mut matrix: BTreeMap<String, ProfileReport> = BTreeMap::new();
    for profile in &profiles {
        let labels = profile.labels();
        let name = profile.name_any();
        let recorded = labels.contains_key(LABEL_RECORDING_ID);
        if recorded
            && labels.get(LABEL_PARTIAL).map(String::as_str) != Some("true")
            && let (Some(ns), Some(container)) = (
                labels.get(LABEL_RECORDING_NAMESPACE),
                labels.get(LABEL_CONTAINER_ID),
            )
        {
            known
                .recorded
                .entry((ns.clone(), container.clone()))
                .or_default()
                .push(name.clone());
        }
        matrix.insert(
            name.clone(),
            ProfileReport {
                name,
                recorded,
                nodes: BTreeMap::new(),
            },
        );
    }
    drop(profiles);
    let statuses = list_all(
        &Api::<SecurityProfileNodeStatus>::all(client.clone()),
        ListParams::default(),
        "SecurityProfileNodeStatuses",
    )
    .await?;
    for status in statuses {
        let Some(profile) = status_profile(&status) else {
            continue;
        };
        let state = status
            .status
            .map(|s| {
                serde_json::to_value(s)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            })
            .unwrap_or_else(|| "Unknown".to_owned());
        if let Some(row) = matrix.get_mut(&profile) {
            row.nodes.insert(status.node_name.clone(), state.clone());
        }
        known
            .statuses
            .insert((profile, status.node_name.clone()), state);
    }

    let mut nodes = read_daemons(client, options, &mut known).await?;

    let mut namespaces: BTreeMap<String, Vec<ContainerRow>> = BTreeMap::new();
    let pods: Api<Pod> = match &options.namespace {
        Some(ns) => {
            namespaces.insert(ns.clone(), Vec::new());
            Api::namespaced(client.clone(), ns)
        }
        None => {
            let all = list_all(
                &Api::<Namespace>::all(client.clone()),
                ListParams::default(),
                "namespaces",
            )
            .await?;
            for ns in all {
                namespaces.insert(ns.name_any(), Vec::new());
            }
            Api::all(client.clone())
        }
    };
    let mut pod_nodes = BTreeSet::new();
    for_each_pod(&pods, |pod| {
        if !pod_counts(&pod) {
            return;
        }
        if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) {
            pod_nodes.insert(node);
        }
        let rows = pod_rows(&pod, options.assumptions, &known);
        namespaces
            .entry(pod.meta().namespace.clone().unwrap_or_default())
            .or_default()
            .extend(rows);
    })
    .await?;
    for node in pod_nodes {
        nodes.entry(node.clone()).or_insert_with(|| NodeReport {
            name: node,
            daemon: None,
            metrics: false,
            error: Some("no syscribe daemon pod on this node".to_owned()),
        });
    }
    Ok(Report::new(
        options.assumptions,
        namespaces,
        nodes.into_values().collect(),
        matrix.into_values().collect(),
    ))
}
