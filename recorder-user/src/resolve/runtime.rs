//! Container id → Kubernetes names, from what the OCI runtime keeps on the node: the runtime's
//! state (runc `state.json` with its `bundle=` label, crun `status` with `bundle`) points at the
//! bundle, whose `config.json` carries the CRI's annotations (containerd:
//! `io.kubernetes.cri.sandbox-namespace` / `sandbox-name` / `container-name`; CRI-O:
//! `io.kubernetes.pod.namespace` / `pod.name` / `container.name`). Works without the API server.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

/// The Kubernetes names of a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodNames {
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub container: Option<String>,
}

/// Container id → names known from elsewhere (the daemon's pod index), consulted first.
pub type KnownNames = std::sync::Arc<std::sync::RwLock<HashMap<String, PodNames>>>;

pub struct RuntimeNames {
    known: Option<KnownNames>,
    /// Runtime state roots: runc-style directories holding `<id>/state.json` or `<id>/status`;
    /// a root ending in `/*` holds one such directory per namespace (containerd's).
    roots: Vec<PathBuf>,
    cache: HashMap<String, (Instant, Option<PodNames>)>,
    /// How many times the cache was full and started over.
    pub resets: u64,
}

impl Default for RuntimeNames {
    fn default() -> Self {
        Self::new(
            [
                "/run/runc",
                "/run/crun",
                "/run/containerd/runc/*",
                "/run/user/0/crun",
            ]
            .map(PathBuf::from)
            .to_vec(),
        )
    }
}

impl RuntimeNames {
    const MAX: usize = 4096;
    /// A found answer does not change while the container lives; a missing one may (the runtime
    /// may not have written its state yet).
    const FOUND_TTL: Duration = Duration::from_secs(300);
    const MISSING_TTL: Duration = Duration::from_secs(2);

    pub fn new(roots: Vec<PathBuf>) -> Self {
        Self {
            known: None,
            roots,
            cache: HashMap::new(),
            resets: 0,
        }
    }

    /// Consults `known` before the runtime's state.
    pub fn with_known(mut self, known: KnownNames) -> Self {
        self.known = Some(known);
        self
    }

    pub fn names_of(&mut self, container_id: &str) -> Option<PodNames> {
        if let Some(names) = self
            .known
            .as_ref()
            .and_then(|known| known.read().ok()?.get(container_id).cloned())
        {
            return Some(names);
        }
        if let Some((at, names)) = self.cache.get(container_id) {
            let ttl = if names.is_some() {
                Self::FOUND_TTL
            } else {
                Self::MISSING_TTL
            };
            if at.elapsed() < ttl {
                return names.clone();
            }
        }
        if self.cache.len() >= Self::MAX {
            self.cache.clear();
            self.resets += 1;
        }
        let names = self.lookup(container_id);
        self.cache
            .insert(container_id.to_owned(), (Instant::now(), names.clone()));
        names
    }

    fn lookup(&self, container_id: &str) -> Option<PodNames> {
        // Ids come from cgroup paths: never let one walk out of the state roots.
        if container_id.is_empty() || container_id.contains(['/', '.']) {
            return None;
        }
        let bundle = self.state_dirs().find_map(|root| {
            let dir = root.join(container_id);
            bundle_of(&dir)
        })?;
        let config =
            crate::files::read_regular(&bundle.join("config.json"), MAX_RUNTIME_FILE).ok()?;
        names_from_config(&config)
    }

    fn state_dirs(&self) -> impl Iterator<Item = PathBuf> + '_ {
        self.roots.iter().flat_map(
            |root| match root.to_str().and_then(|r| r.strip_suffix("/*")) {
                Some(parent) => std::fs::read_dir(parent)
                    .map(|entries| entries.flatten().map(|e| e.path()).collect())
                    .unwrap_or_default(),
                None => vec![root.clone()],
            },
        )
    }
}

/// The most read of a runtime's state or bundle config (they are a few KiB; a container's
/// annotations count towards the config).
const MAX_RUNTIME_FILE: u64 = 16 << 20;

/// The bundle directory a runtime state directory points at.
fn bundle_of(dir: &Path) -> Option<PathBuf> {
    if let Ok(state) = crate::files::read_regular(&dir.join("state.json"), MAX_RUNTIME_FILE) {
        // runc: {"config": {"labels": ["bundle=/path", …]}, …}
        let state: serde_json::Value = serde_json::from_slice(&state).ok()?;
        return state["config"]["labels"]
            .as_array()?
            .iter()
            .filter_map(|l| l.as_str()?.strip_prefix("bundle="))
            .map(PathBuf::from)
            .next();
    }
    // crun: {"bundle": "/path", …}
    let status: serde_json::Value = serde_json::from_slice(
        &crate::files::read_regular(&dir.join("status"), MAX_RUNTIME_FILE).ok()?,
    )
    .ok()?;
    status["bundle"].as_str().map(PathBuf::from)
}

/// The Kubernetes names in an OCI config's annotations; `None` when it has none.
pub fn names_from_config(config: &[u8]) -> Option<PodNames> {
    let config: serde_json::Value = serde_json::from_slice(config).ok()?;
    let annotations = config["annotations"].as_object()?;
    let first = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| annotations.get(*k)?.as_str())
            .map(str::to_owned)
    };
    let names = PodNames {
        namespace: first(&[
            "io.kubernetes.cri.sandbox-namespace",
            "io.kubernetes.pod.namespace",
        ]),
        pod: first(&["io.kubernetes.cri.sandbox-name", "io.kubernetes.pod.name"]),
        container: first(&[
            "io.kubernetes.cri.container-name",
            "io.kubernetes.container.name",
        ]),
    };
    (names != PodNames::default()).then_some(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containerd_and_crio_annotations_name_the_pod() {
        let containerd = br#"{"annotations": {"io.kubernetes.cri.container-type": "container",
            "io.kubernetes.cri.container-name": "web", "io.kubernetes.cri.sandbox-name": "shop-7d9",
            "io.kubernetes.cri.sandbox-namespace": "shop"}}"#;
        let names = names_from_config(containerd).unwrap();
        assert_eq!(names.namespace.as_deref(), Some("shop"));
        assert_eq!(names.pod.as_deref(), Some("shop-7d9"));
        assert_eq!(names.container.as_deref(), Some("web"));
        let crio = br#"{"annotations": {"io.kubernetes.pod.namespace": "ns",
            "io.kubernetes.pod.name": "p", "io.kubernetes.container.name": "c"}}"#;
        assert_eq!(
            names_from_config(crio),
            Some(PodNames {
                namespace: Some("ns".into()),
                pod: Some("p".into()),
                container: Some("c".into())
            })
        );
        assert_eq!(names_from_config(br#"{"annotations": {}}"#), None);
        assert_eq!(names_from_config(b"not json"), None);
    }

    #[test]
    fn runc_and_crun_state_lead_to_the_bundle() {
        let root = std::env::temp_dir().join(format!("syscribe-rt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let bundle = root.join("bundle");
        std::fs::create_dir_all(&bundle).unwrap();
        std::fs::write(
            bundle.join("config.json"),
            br#"{"annotations": {"io.kubernetes.pod.name": "p"}}"#,
        )
        .unwrap();
        let runc = root.join("runc/aaaa");
        std::fs::create_dir_all(&runc).unwrap();
        std::fs::write(
            runc.join("state.json"),
            format!(
                r#"{{"config": {{"labels": ["bundle={}"]}}}}"#,
                bundle.display()
            ),
        )
        .unwrap();
        let crun = root.join("containerd/k8s.io/bbbb");
        std::fs::create_dir_all(&crun).unwrap();
        std::fs::write(
            crun.join("status"),
            format!(r#"{{"bundle": "{}"}}"#, bundle.display()),
        )
        .unwrap();
        let mut names = RuntimeNames::new(vec![
            root.join("runc"),
            PathBuf::from(format!("{}/containerd/*", root.display())),
        ]);
        for id in ["aaaa", "bbbb"] {
            assert_eq!(
                names.names_of(id).unwrap().pod.as_deref(),
                Some("p"),
                "{id}"
            );
        }
        assert_eq!(names.names_of("cccc"), None);
        assert_eq!(names.names_of("../runc/aaaa"), None, "no escape");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
