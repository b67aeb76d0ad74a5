//! `syscribe pull NAME`: a SeccompProfile from the cluster (kubeconfig) or from a YAML file,
//! written as the OCI JSON that runc, crun and podman load. A `baseProfileName` is resolved the
//! same way and its rules come first (upstream's union).

use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use kube::{Api, Client, ResourceExt as _, api::ListParams};
use serde::Deserialize as _;

use super::CliError;
use crate::{
    k8s::crd::SeccompProfile,
    profile::merge::{BaseError, resolve_bases},
};

#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// The SeccompProfile's name.
    pub name: String,
    /// Read the profile (and its base profiles) from this YAML file (one or many documents)
    /// instead of the cluster.
    #[arg(short = 'f', long = "file", value_name = "YAML")]
    pub file: Option<PathBuf>,
    /// Where to write the OCI JSON (default: stdout).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("{path}: document {document}: {source}", path = .path.display())]
    Yaml {
        path: PathBuf,
        document: usize,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("{path}:{source}", path = .path.display())]
    Limit {
        path: PathBuf,
        #[source]
        source: crate::profile::guard::GuardError,
    },
    #[error(transparent)]
    Base(#[from] BaseError),
    #[error("cannot list SeccompProfiles in the cluster (for {name}): {source}")]
    Api {
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// Where profiles come from.
pub enum ProfileSource {
    File(PathBuf, Vec<SeccompProfile>),
    Cluster(Client),
}

impl ProfileSource {
    pub fn from_file(path: &Path) -> Result<Self, CliError> {
        let text = crate::files::read_regular_text(path, crate::profile::guard::MAX_PROFILE_BYTES)
            .map_err(|source| CliError::Read {
                path: path.to_owned(),
                source,
            })?;
        crate::profile::guard::check(&text).map_err(|source| PullError::Limit {
            path: path.to_owned(),
            source,
        })?;
        let mut profiles = Vec::new();
        for (i, document) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            let value =
                serde_yaml::Value::deserialize(document).map_err(|source| PullError::Yaml {
                    path: path.to_owned(),
                    document: i + 1,
                    source,
                })?;
            if value.get("kind").and_then(|k| k.as_str()) != Some("SeccompProfile") {
                continue;
            }
            let profile: SeccompProfile =
                serde_yaml::from_value(value).map_err(|source| PullError::Yaml {
                    path: path.to_owned(),
                    document: i + 1,
                    source,
                })?;
            profiles.push(profile);
        }
        Ok(Self::File(path.to_owned(), profiles))
    }

    /// The profile as OCI JSON, its base profiles' rules first. From the cluster: one list of
    /// every SeccompProfile, then the same resolution as the daemon's.
    pub async fn oci(&self, name: &str) -> Result<crate::profile::seccomp::Seccomp, PullError> {
        let (profiles, from): (Vec<SeccompProfile>, String) = match self {
            Self::File(path, profiles) => (profiles.clone(), path.display().to_string()),
            Self::Cluster(client) => {
                let listed = Api::<SeccompProfile>::all(client.clone())
                    .list(&ListParams::default())
                    .await
                    .map_err(|source| PullError::Api {
                        name: name.to_owned(),
                        source,
                    })?;
                (listed.items, "the cluster".to_owned())
            }
        };
        let profiles: BTreeMap<String, SeccompProfile> =
            profiles.into_iter().map(|p| (p.name_any(), p)).collect();
        let (seccomp, conflicts) = resolve_bases(name, &profiles, &from)?;
        for conflict in conflicts {
            eprintln!("syscribe: warning: {name}: {conflict}");
        }
        Ok(seccomp)
    }
}

pub fn run(args: PullArgs) -> Result<i32, CliError> {
    let runtime = super::runtime()?;
    let out = super::record::Output::open(args.output.as_deref().unwrap_or("-".as_ref()))?;
    let seccomp = runtime.block_on(async {
        let source = match &args.file {
            Some(path) => ProfileSource::from_file(path)?,
            None => ProfileSource::Cluster(Client::try_default().await.map_err(|source| {
                PullError::Api {
                    name: args.name.clone(),
                    source,
                }
            })?),
        };
        Ok::<_, CliError>(source.oci(&args.name).await?)
    })?;
    let mut text = serde_json::to_string_pretty(&seccomp).expect("profiles serialize");
    text.push('\n');
    out.write(&text)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
apiVersion: security-profiles-operator.x-k8s.io/v1
kind: SeccompProfile
metadata: {name: runc-base}
spec:
  defaultAction: SCMP_ACT_ERRNO
  syscalls: [{action: SCMP_ACT_ALLOW, names: [futex, execve]}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: ignored}
---
apiVersion: security-profiles-operator.x-k8s.io/v1
kind: SeccompProfile
metadata: {name: app}
spec:
  defaultAction: SCMP_ACT_ERRNO
  baseProfileName: runc-base
  architectures: [SCMP_ARCH_X86_64]
  syscalls: [{action: SCMP_ACT_ALLOW, names: [read, write]}]
"#;

    fn from_yaml(yaml: &str) -> ProfileSource {
        let path = std::env::temp_dir().join(format!(
            "syscribe-pull-{}-{}.yaml",
            std::process::id(),
            yaml.len()
        ));
        std::fs::write(&path, yaml).unwrap();
        let source = ProfileSource::from_file(&path);
        std::fs::remove_file(&path).unwrap();
        source.unwrap()
    }

    #[tokio::test]
    async fn pulls_from_a_file_with_its_base_profile() {
        let source = from_yaml(YAML);
        let oci = source.oci("app").await.unwrap();
        let json = serde_json::to_value(&oci).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "defaultAction": "SCMP_ACT_ERRNO",
                "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": [
                    {"names": ["futex", "execve", "read", "write"], "action": "SCMP_ACT_ALLOW"}
                ]
            })
        );
        let err = source.oci("nope").await.unwrap_err().to_string();
        assert!(err.starts_with("no SeccompProfile named nope in "), "{err}");
        let looped = from_yaml(&YAML.replace("metadata: {name: runc-base}", "metadata: {name: runc-base}\n  # loop").replace("  defaultAction: SCMP_ACT_ERRNO\n  syscalls: [{action: SCMP_ACT_ALLOW, names: [futex, execve]}]", "  defaultAction: SCMP_ACT_ERRNO\n  baseProfileName: app\n  syscalls: [{action: SCMP_ACT_ALLOW, names: [futex, execve]}]"));
        let err = looped.oci("app").await.unwrap_err().to_string();
        assert!(err.contains("cycle"), "{err}");
    }

    #[tokio::test]
    async fn pulls_from_the_cluster() {
        use http::{Request, Response};
        use kube::client::Body;
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let source = ProfileSource::Cluster(Client::new(service, "default"));
        let server = tokio::spawn(async move {
            let (request, send) = handle.next_request().await.unwrap();
            assert_eq!(request.method(), http::Method::GET);
            assert_eq!(
                request.uri().to_string(),
                "/apis/security-profiles-operator.x-k8s.io/v1/seccompprofiles?"
            );
            let body = serde_json::json!({
                "apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "SeccompProfileList",
                "metadata": {},
                "items": [{
                    "apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "SeccompProfile",
                    "metadata": {"name": "app"},
                    "spec": {"defaultAction": "SCMP_ACT_LOG"}
                }]
            });
            send.send_response(Response::new(Body::from(
                serde_json::to_vec(&body).unwrap(),
            )));
        });
        let oci = tokio::time::timeout(std::time::Duration::from_secs(1), source.oci("app"))
            .await
            .unwrap()
            .unwrap();
        server.await.unwrap();
        assert_eq!(
            serde_json::to_value(&oci).unwrap(),
            serde_json::json!({"defaultAction": "SCMP_ACT_LOG", "syscalls": []})
        );
    }

    #[test]
    fn bad_yaml_names_the_document() {
        let path =
            std::env::temp_dir().join(format!("syscribe-pull-bad-{}.yaml", std::process::id()));
        std::fs::write(
            &path,
            "kind: SeccompProfile\nmetadata: {name: a}\nspec: {}\n",
        )
        .unwrap();
        let err = ProfileSource::from_file(&path).err().unwrap().to_string();
        std::fs::remove_file(&path).unwrap();
        assert!(
            err.contains("document 1") && err.contains("defaultAction"),
            "{err}"
        );
    }
}
