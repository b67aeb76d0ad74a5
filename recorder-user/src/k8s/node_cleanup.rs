//! What a node that is gone leaves behind, removed by the daemons that survive it: its
//! finalizer (`syscribe.dev/installed-<node>`) on every SeccompProfile, which would keep a
//! deleted profile Terminating forever, and its SecurityProfileNodeStatuses, which would keep
//! the profiles' summaries saying what a node that no longer exists did (upstream's issues
//! #1152 and #2067 are this bug).
//!
//! Every daemon watches the Node objects (names only). A node whose object is deleted — or that
//! a re-list no longer shows, or, once after each list, a node named by a node status or a
//! finalizer that no Node object has — is cleaned up by every daemon that sees it: each step is
//! idempotent, so several daemons doing it at once is harmless. The finalizer is removed by a
//! merge patch that carries the profile's resourceVersion: a concurrent change makes it fail
//! with a conflict, and it is read again and retried, never writing over another node's entry.
//!
//! A daemon whose own Node object is deleted and comes back (a kubelet registers its node again)
//! is told so by [`NodeCleanup::event`]: its finalizers and statuses were removed meanwhile,
//! and it states them again.

use std::collections::{BTreeMap, BTreeSet};

use futures::{StreamExt as _, stream::BoxStream};
use k8s_openapi::api::core::v1::Node;
use kube::{
    Api, Client, ResourceExt as _,
    api::{DeleteParams, ListParams, Patch, PatchParams},
    core::PartialObjectMeta,
    runtime::{
        WatchStreamExt as _,
        watcher::{self, Event, watcher},
    },
};
use tokio::time::{Duration, Instant};

use super::{
    crd::{LABEL_NODE_NAME, SeccompProfile, SecurityProfileNodeStatus},
    install::{NodeProfiles, node_finalizer},
    node_status::shorten,
    publish::{PublishError, api_err},
};

/// The prefix of every node's finalizer on a SeccompProfile.
const FINALIZER_PREFIX: &str = "syscribe.dev/installed-";
/// How often a conflicting finalizer removal is read and tried again before it waits for the
/// next attempt.
const MAX_CONFLICTS: usize = 5;
/// After a list, how long before the node statuses and finalizers are looked over for nodes
/// that no Node object names (a node added meanwhile shows up in the watch first).
const SWEEP_AFTER: Duration = Duration::from_secs(10);
/// Nodes waiting to be cleaned up, at most (a re-list that lost every node is not a reason
/// to grow without bound).
const MAX_DUE: usize = 10_000;

/// The Node objects' names, watched (metadata only).
pub fn watch(
    client: &Client,
) -> BoxStream<'static, Result<Event<PartialObjectMeta<Node>>, watcher::Error>> {
    watcher(
        Api::<PartialObjectMeta<Node>>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .boxed()
}

/// The nodes that exist and the ones to clean up.
#[derive(Debug)]
pub struct NodeCleanup {
    /// This daemon's node (never cleaned up by itself).
    me: String,
    known: BTreeSet<String>,
    /// Names seen since the re-list began.
    relist: Option<BTreeSet<String>>,
    /// Whether this node's own object was deleted (it comes back when the kubelet registers
    /// it again).
    me_deleted: bool,
    /// Nodes to clean up: attempts so far and when to try next.
    due: BTreeMap<String, (u32, Instant)>,
    /// When to look the node statuses and finalizers over for unknown nodes.
    sweep_at: Option<Instant>,
}

impl NodeCleanup {
    pub fn new(me: String) -> Self {
        Self {
            me,
            known: BTreeSet::new(),
            relist: None,
            me_deleted: false,
            due: BTreeMap::new(),
            sweep_at: None,
        }
    }

    /// The nodes waiting to be cleaned up.
    pub fn due(&self) -> impl Iterator<Item = &String> {
        self.due.keys()
    }

    /// Applies a watch event. True when this node's own Node object came back after it was
    /// deleted: its finalizers and node statuses were removed meanwhile (by the daemons that
    /// saw it go) and must be stated again.
    pub fn event(&mut self, event: Event<PartialObjectMeta<Node>>) -> bool {
        match event {
            Event::Apply(node) => self.seen(node.name_any()),
            Event::Delete(node) => {
                self.gone(node.name_any());
                false
            }
            Event::Init => {
                self.relist = Some(BTreeSet::new());
                false
            }
            Event::InitApply(node) => {
                let name = node.name_any();
                if let Some(seen) = self.relist.as_mut() {
                    seen.insert(name.clone());
                }
                self.seen(name)
            }
            Event::InitDone => {
                if let Some(seen) = self.relist.take() {
                    let missing: Vec<String> = self.known.difference(&seen).cloned().collect();
                    for name in missing {
                        self.gone(name);
                    }
                }
                self.sweep_at = Some(Instant::now() + SWEEP_AFTER);
                false
            }
        }
    }

    fn seen(&mut self, name: String) -> bool {
        self.due.remove(&name);
        let back = name == self.me && std::mem::take(&mut self.me_deleted);
        self.known.insert(name);
        back
    }

    fn gone(&mut self, name: String) {
        self.known.remove(&name);
        if name == self.me {
            self.me_deleted = true;
        } else if self.due.len() < MAX_DUE {
            tracing::info!(node = %name, "node deleted; removing its finalizers and node statuses");
            self.due.insert(name, (0, Instant::now()));
        }
    }

    /// Cleans up the nodes whose time came; looks the statuses and finalizers over once after
    /// each list. Failures are retried with backoff.
    pub async fn run_due(&mut self, client: &Client, installed: &mut NodeProfiles) {
        let now = Instant::now();
        if self.sweep_at.is_some_and(|at| at <= now) {
            self.sweep_at = None;
            match self.unknown_nodes(client, installed).await {
                Ok(unknown) => {
                    for name in unknown {
                        tracing::info!(node = %name, "no such node; removing its finalizers and node statuses");
                        self.due.entry(name).or_insert((0, now));
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "looking for nodes that are gone; will retry");
                    self.sweep_at = Some(now + SWEEP_AFTER);
                }
            }
        }
        let due: Vec<(String, u32)> = self
            .due
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(name, (attempts, _))| (name.clone(), *attempts))
            .collect();
        for (name, attempts) in due {
            match clean_up(client, &name, installed).await {
                Ok(touched) => {
                    self.due.remove(&name);
                    tracing::info!(node = %name, profiles = touched.len(), "cleaned up after a node that is gone");
                    for profile in touched {
                        installed.summarize_soon(&profile);
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, node = %name, attempts = attempts + 1, "cleaning up after a node that is gone; will retry");
                    self.due.insert(
                        name,
                        (attempts + 1, now + super::daemon::backoff(attempts + 1)),
                    );
                }
            }
        }
    }

    /// Nodes named by a node status or a finalizer that no Node object has (they went while no
    /// daemon watched).
    async fn unknown_nodes(
        &self,
        client: &Client,
        installed: &NodeProfiles,
    ) -> Result<BTreeSet<String>, PublishError> {
        let statuses: Api<SecurityProfileNodeStatus> = Api::all(client.clone());
        let listed = statuses
            .list(&ListParams::default())
            .await
            .map_err(api_err("list", "SecurityProfileNodeStatus", ""))?;
        let mut named: BTreeSet<String> = listed
            .items
            .into_iter()
            .map(|s| s.node_name)
            .filter(|n| !n.is_empty())
            .collect();
        // A finalizer names its node unless the name was too long (then hashed: its status
        // names it instead).
        for profile in installed.profiles.values() {
            for finalizer in profile.finalizers() {
                if let Some(node) = finalizer.strip_prefix(FINALIZER_PREFIX) {
                    named.insert(node.to_owned());
                }
            }
        }
        Ok(named
            .into_iter()
            .filter(|n| *n != self.me && !self.known.contains(n))
            .collect())
    }
}

/// Removes `node`'s finalizer from every cached profile that has it and deletes its node
/// statuses. Returns the profiles whose summary changes.
pub async fn clean_up(
    client: &Client,
    node: &str,
    installed: &NodeProfiles,
) -> Result<BTreeSet<String>, PublishError> {
    let finalizer = node_finalizer(node);
    let mut touched = BTreeSet::new();
    let holding: Vec<SeccompProfile> = installed
        .profiles
        .values()
        .filter(|p| p.finalizers().contains(&finalizer))
        .cloned()
        .collect();
    for profile in holding {
        if remove_finalizer(client, &profile, node).await? {
            touched.insert(profile.name_any());
        }
    }
    let statuses: Api<SecurityProfileNodeStatus> = Api::all(client.clone());
    let selector = format!("{LABEL_NODE_NAME}={}", shorten(node, 63));
    let deleted = statuses
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels(&selector),
        )
        .await
        .map_err(api_err("delete the node statuses of", "Node", node))?;
    // The statuses deleted (the API server may answer with a bare Status instead).
    if let Some(list) = deleted.left() {
        for status in list.items {
            for owner in status.owner_references() {
                if owner.kind == "SeccompProfile" {
                    touched.insert(owner.name.clone());
                }
            }
        }
    }
    Ok(touched)
}

/// Removes `node`'s finalizer from `profile`: the list without it, written on the version
/// read (a merge patch carrying the resourceVersion), so a change made meanwhile — another
/// node adding or removing its own entry — fails with a conflict, and the finalizers are read
/// again and the removal tried again; nothing but that one entry is ever touched. (Not a
/// server-side apply as the node's field manager: that manager may own more than its entry —
/// `kubectl apply --server-side` over a client-side applied object hands it the spec — and an
/// apply without those fields would remove them.) Whether it was removed (false: the profile
/// is gone, was replaced, or has no such finalizer).
pub async fn remove_finalizer(
    client: &Client,
    profile: &SeccompProfile,
    node: &str,
) -> Result<bool, PublishError> {
    let name = profile.name_any();
    let finalizer = node_finalizer(node);
    let api: Api<SeccompProfile> = Api::all(client.clone());
    let mut current = Some(profile.clone());
    for _ in 0..MAX_CONFLICTS {
        let Some(read) = current.take() else {
            return Ok(false);
        };
        if read.uid() != profile.uid() || !read.finalizers().contains(&finalizer) {
            return Ok(false);
        }
        let kept: Vec<&String> = read
            .finalizers()
            .iter()
            .filter(|f| **f != finalizer)
            .collect();
        let patch = serde_json::json!({"metadata": {
            "resourceVersion": read.resource_version(),
            "finalizers": kept,
        }});
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return Ok(true),
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(false),
            Err(kube::Error::Api(status)) if status.code == 409 => {
                tracing::debug!(profile = %name, "finalizers changed meanwhile; reading them again");
                current =
                    api.get_opt(&name)
                        .await
                        .map_err(api_err("read", "SeccompProfile", &name))?;
            }
            Err(err) => {
                return Err(api_err(
                    "remove a node's finalizer from",
                    "SeccompProfile",
                    &name,
                )(err));
            }
        }
    }
    Err(api_err(
        "remove a node's finalizer from",
        "SeccompProfile",
        &name,
    )(kube::Error::Api(Box::new(kube::core::Status {
        code: 409,
        message: format!("the finalizers kept changing ({MAX_CONFLICTS} conflicts)"),
        reason: "Conflict".into(),
        ..kube::core::Status::default()
    }))))
}

#[cfg(test)]
mod tests {
    use http::Method;
    use serde_json::{Value, json};

    use super::*;
    use crate::k8s::{
        install::Installer,
        testing::{expect, mock, scenario},
    };

    const SP: &str = "/apis/security-profiles-operator.x-k8s.io/v1/seccompprofiles";
    const SPNS: &str = "/apis/security-profiles-operator.x-k8s.io/v1/securityprofilenodestatuses";

    fn node(name: &str) -> PartialObjectMeta<Node> {
        serde_json::from_value(json!({
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {"name": name}
        }))
        .unwrap()
    }

    fn profile(finalizers: &[&str], rv: &str) -> Value {
        json!({
            "apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "SeccompProfile",
            "metadata": {"name": "p", "uid": "uid-p", "resourceVersion": rv, "finalizers": finalizers},
            "spec": {"defaultAction": "SCMP_ACT_ERRNO"}
        })
    }

    fn installed_with(p: Value) -> NodeProfiles {
        let mut installed = NodeProfiles::new(
            "n1".into(),
            Installer::new(std::path::Path::new("/nonexistent")),
            crate::profile::validate::Validator::for_this_host(),
        );
        let p: SeccompProfile = serde_json::from_value(p).unwrap();
        installed.profiles.insert(p.name_any(), p);
        installed
    }

    #[test]
    fn deleted_and_relisted_away_nodes_are_due_and_a_node_back_is_not() {
        let mut cleanup = NodeCleanup::new("n1".into());
        for name in ["n1", "n2", "n3", "n4"] {
            assert!(!cleanup.event(Event::Apply(node(name))));
        }
        cleanup.event(Event::Delete(node("n2")));
        assert_eq!(cleanup.due().collect::<Vec<_>>(), ["n2"]);
        // n2 registers again before it was cleaned up: nothing to do.
        cleanup.event(Event::Apply(node("n2")));
        assert!(cleanup.due().next().is_none());
        // A watch gap: n3 went meanwhile.
        cleanup.event(Event::Init);
        for name in ["n1", "n2", "n4"] {
            cleanup.event(Event::InitApply(node(name)));
        }
        cleanup.event(Event::InitDone);
        assert_eq!(cleanup.due().collect::<Vec<_>>(), ["n3"]);
        // This node's own object is never cleaned up by itself; when it comes back, it says so.
        cleanup.event(Event::Delete(node("n1")));
        assert_eq!(cleanup.due().collect::<Vec<_>>(), ["n3"]);
        assert!(cleanup.event(Event::Apply(node("n1"))));
        assert!(!cleanup.event(Event::Apply(node("n1"))));
    }

    /// The node's finalizer goes (on the version the daemon has), then its statuses; the
    /// profiles they belonged to are summarized again.
    #[tokio::test]
    async fn a_gone_nodes_finalizer_and_statuses_are_removed() {
        let ghost = node_finalizer("ghost");
        let mine = node_finalizer("n1");
        let installed = installed_with(profile(&[&mine, &ghost], "7"));
        let (client, mut handle) = mock();
        let m = mine.clone();
        let touched = scenario(clean_up(&client, "ghost", &installed), async move {
            let body = expect(
                &mut handle,
                Method::PATCH,
                &format!("{SP}/p?"),
                profile(&[&m], "8"),
            )
            .await;
            assert_eq!(
                body,
                json!({"metadata": {"resourceVersion": "7", "finalizers": [m]}})
            );
            expect(
                &mut handle,
                Method::DELETE,
                &format!("{SPNS}?&labelSelector=spo.x-k8s.io%2Fnode-name%3Dghost"),
                json!({"apiVersion": "v1", "kind": "SecurityProfileNodeStatusList", "metadata": {},
                       "items": [{"metadata": {"name": "q-ghost", "ownerReferences": [
                           {"apiVersion": "security-profiles-operator.x-k8s.io/v1",
                            "kind": "SeccompProfile", "name": "q", "uid": "uid-q"}]},
                          "nodeName": "ghost", "status": "Installed"}]}),
            )
            .await;
        })
        .await
        .unwrap();
        assert_eq!(touched.into_iter().collect::<Vec<_>>(), ["p", "q"]);
    }

    /// A conflict (the finalizers changed since the version the daemon has) reads them again;
    /// another node's entry added meanwhile is kept.
    #[tokio::test]
    async fn a_conflicting_removal_reads_the_finalizers_again() {
        let ghost = node_finalizer("ghost");
        let mine = node_finalizer("n1");
        let other = node_finalizer("n2");
        let p: SeccompProfile = serde_json::from_value(profile(&[&mine, &ghost], "7")).unwrap();
        let (client, mut handle) = mock();
        let (g, m, o) = (ghost.clone(), mine.clone(), other.clone());
        let removed = scenario(remove_finalizer(&client, &p, "ghost"), async move {
            let (request, send) = handle.next_request().await.unwrap();
            assert_eq!(request.method(), Method::PATCH);
            let body = request.into_body().collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(
                body,
                json!({"metadata": {"resourceVersion": "7", "finalizers": [m]}})
            );
            let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "message": "the object has been modified", "reason": "Conflict", "code": 409});
            send.send_response(
                http::Response::builder()
                    .status(409)
                    .body(kube::client::Body::from(serde_json::to_vec(&status).unwrap()))
                    .unwrap(),
            );
            // n2 added its finalizer meanwhile: kept.
            expect(&mut handle, Method::GET, &format!("{SP}/p"), profile(&[&m, &g, &o], "9")).await;
            let body = expect(
                &mut handle,
                Method::PATCH,
                &format!("{SP}/p?"),
                profile(&[&m, &o], "10"),
            )
            .await;
            assert_eq!(
                body,
                json!({"metadata": {"resourceVersion": "9", "finalizers": [m, o]}})
            );
        })
        .await
        .unwrap();
        assert!(removed);
    }
}
