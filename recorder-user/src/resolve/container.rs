//! Container identity from a cgroup path: which container (runtime id) and which pod (UID).
//!
//! Layouts real nodes use:
//! - kubelet, cgroupfs driver: `/kubepods/<qos>/pod<uid>/<id>`, guaranteed pods without the qos
//!   level: `/kubepods/pod<uid>/<id>`;
//! - kubelet, systemd driver: `/kubepods.slice/kubepods-<qos>.slice/
//!   kubepods-<qos>-pod<uid with _>.slice/<runtime>-<id>.scope` with runtime `cri-containerd`,
//!   `crio` or `docker` (`crio-conmon-<id>.scope` is CRI-O's monitor, not a container);
//! - podman: `…/libpod-<id>.scope` (and its `container` child with `--cgroups=split`).
//!
//! Pure string work: the callers read `/proc/<pid>/cgroup` or walk the cgroup tree.

use std::io::{self, BufRead};

use procfs_core::{FromBufRead as _, ProcError, ProcessCGroups};

/// Who a cgroup belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRef {
    /// The runtime's container id (64 hex digits).
    pub container_id: String,
    /// The pod's UID (with dashes), when the path is a kubelet one.
    pub pod_uid: Option<String>,
    pub runtime: Runtime,
}

/// Which runtime's naming the path follows (`Unknown` for cgroupfs paths, which do not say).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    Containerd,
    CriO,
    Docker,
    Podman,
    Unknown,
}

/// The container (and pod) a cgroup path belongs to; `None` for host, pod-level, monitor or
/// unrecognised cgroups.
pub fn container_of_path(path: &str) -> Option<ContainerRef> {
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    // The innermost component naming a container wins: a process may sit in a sub-cgroup of its
    // container (podman's `…/libpod-<id>.scope/container`, or cgroups the workload made).
    let (index, container_id, runtime) = components
        .iter()
        .enumerate()
        .rev()
        .find_map(|(i, c)| container_component(c).map(|(id, runtime)| (i, id, runtime)))?;
    let pod_uid = components[..index]
        .iter()
        .rev()
        .find_map(|c| pod_component(c));
    Some(ContainerRef {
        container_id,
        pod_uid,
        runtime,
    })
}

/// The container of a process from its `/proc/<pid>/cgroup` (read by procfs): the cgroup v2
/// line (`0::/path`) if it names one, else the first v1 line that does (`4:memory:/path`). A
/// file that is not one names no container.
pub fn container_of_proc_cgroup(reader: impl BufRead) -> io::Result<Option<ContainerRef>> {
    let cgroups = match ProcessCGroups::from_buf_read(reader) {
        Ok(cgroups) => cgroups,
        Err(ProcError::Io(err, _)) => return Err(err),
        Err(_) => return Ok(None),
    };
    let mut v1 = None;
    for cgroup in &cgroups {
        let Some(found) = container_of_path(&cgroup.pathname) else {
            continue;
        };
        if cgroup.hierarchy == 0 {
            return Ok(Some(found));
        }
        v1.get_or_insert(found);
    }
    Ok(v1)
}

/// `<64 hex>` (cgroupfs), `<runtime>-<64 hex>.scope` (systemd), `libpod-<64 hex>.scope`.
fn container_component(component: &str) -> Option<(String, Runtime)> {
    if is_container_id(component) {
        return Some((component.to_owned(), Runtime::Unknown));
    }
    let scope = component.strip_suffix(".scope")?;
    let (prefix, id) = scope.rsplit_once('-')?;
    let runtime = match prefix {
        "cri-containerd" => Runtime::Containerd,
        "crio" => Runtime::CriO,
        "docker" => Runtime::Docker,
        "libpod" => Runtime::Podman,
        // `crio-conmon-<id>.scope` (CRI-O's monitor) and anything else: not a container.
        _ => return None,
    };
    is_container_id(id).then(|| (id.to_owned(), runtime))
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `pod<uid>` (cgroupfs) or `kubepods[-<qos>]-pod<uid with _>.slice` (systemd).
fn pod_component(component: &str) -> Option<String> {
    let uid = match component.strip_suffix(".slice") {
        Some(slice) => slice.rsplit_once("-pod")?.1.replace('_', "-"),
        None => component.strip_prefix("pod")?.to_owned(),
    };
    is_uid(&uid).then_some(uid)
}

/// A UID as Kubernetes writes it: 8-4-4-4-12 hex digits.
fn is_uid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4c3a4d5ca0d4b62dd1d0b1cb24ea3f9ba8e23f1e3ea4e6b9e6f6a0a3c5e8c2d1";
    const UID: &str = "0f6e5a2b-8b1c-4b7e-9d3a-1c2b3d4e5f60";

    fn expect(path: &str, pod: Option<&str>, runtime: Runtime) {
        let found = container_of_path(path).unwrap_or_else(|| panic!("no container in {path}"));
        assert_eq!(found.container_id, ID, "{path}");
        assert_eq!(found.pod_uid.as_deref(), pod, "{path}");
        assert_eq!(found.runtime, runtime, "{path}");
    }

    #[test]
    fn kubelet_and_podman_layouts() {
        let uid_ = UID.replace('-', "_");
        let cases: Vec<(String, Option<&str>, Runtime)> = vec![
            (
                format!("/kubepods/besteffort/pod{UID}/{ID}"),
                Some(UID),
                Runtime::Unknown,
            ),
            (
                format!("/kubepods/burstable/pod{UID}/{ID}"),
                Some(UID),
                Runtime::Unknown,
            ),
            (
                format!("/kubepods/pod{UID}/{ID}"),
                Some(UID),
                Runtime::Unknown,
            ),
            (
                format!(
                    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/cri-containerd-{ID}.scope"
                ),
                Some(UID),
                Runtime::Containerd,
            ),
            (
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/crio-{ID}.scope"
                ),
                Some(UID),
                Runtime::CriO,
            ),
            (
                format!("/kubepods.slice/kubepods-pod{uid_}.slice/docker-{ID}.scope"),
                Some(UID),
                Runtime::Docker,
            ),
            (
                format!("/machine.slice/libpod-{ID}.scope"),
                None,
                Runtime::Podman,
            ),
            (
                format!("/machine.slice/libpod-{ID}.scope/container"),
                None,
                Runtime::Podman,
            ),
            (
                format!(
                    "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"
                ),
                None,
                Runtime::Podman,
            ),
            // A cgroup the workload made inside its container still belongs to it.
            (
                format!("/kubepods/besteffort/pod{UID}/{ID}/worker"),
                Some(UID),
                Runtime::Unknown,
            ),
        ];
        for (path, pod, runtime) in cases {
            expect(&path, pod, runtime);
        }
    }

    #[test]
    fn not_containers() {
        let uid_ = UID.replace('-', "_");
        for path in [
            "/".to_owned(),
            "/user.slice/user-0.slice/session-4.scope".to_owned(),
            "/system.slice/containerd.service".to_owned(),
            format!("/kubepods/besteffort/pod{UID}"),
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/crio-conmon-{ID}.scope"
            ),
            format!("/kubepods/besteffort/pod{UID}/{}", &ID[..63]),
            format!("/kubepods/besteffort/pod{UID}/{}g", &ID[..63]),
        ] {
            assert_eq!(container_of_path(&path), None, "{path}");
        }
    }

    #[test]
    fn bad_pod_uids_are_ignored_not_guessed() {
        let found = container_of_path(&format!("/kubepods/besteffort/podnot-a-uid/{ID}")).unwrap();
        assert_eq!(found.pod_uid, None);
    }

    #[test]
    fn proc_cgroup_prefers_the_v2_line() {
        let v2 = format!("0::/kubepods/besteffort/pod{UID}/{ID}\n");
        let hybrid = format!(
            "12:pids:/kubepods/besteffort/pod{UID}/{ID}\n11:memory:/kubepods/besteffort/pod{UID}/{ID}\n1:name=systemd:/\n0::/\n"
        );
        let v1_only = format!(
            "4:memory:/kubepods.slice/kubepods-pod{}.slice/docker-{ID}.scope\n",
            UID.replace('-', "_")
        );
        for text in [v2, hybrid, v1_only] {
            let found = container_of_proc_cgroup(text.as_bytes())
                .unwrap()
                .expect(&text);
            assert_eq!(found.container_id, ID);
            assert_eq!(found.pod_uid.as_deref(), Some(UID));
        }
        let host = "12:pids:/user.slice\n0::/user.slice/user-0.slice/session-4.scope\n";
        assert_eq!(container_of_proc_cgroup(host.as_bytes()).unwrap(), None);
        assert_eq!(
            container_of_proc_cgroup("garbage line\n\n".as_bytes()).unwrap(),
            None
        );
    }
}
