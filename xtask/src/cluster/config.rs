//! What each component is told: command lines and configuration files, as plain functions of
//! the node's facts, so they can be read (and tested) in one place.

use std::{net::IpAddr, path::Path};

/// The node this machine is, and where things live.
pub struct Node<'a> {
    pub name: &'a str,
    pub ip: IpAddr,
    /// The cluster's state directory (PKI, configs, etcd data).
    pub dir: &'a Path,
    /// Where the built binaries are (the shim and CNI plugins are found there too).
    pub bin: &'a Path,
    /// The pinned sandbox (pause) image.
    pub pause_image: &'a str,
}

/// Pods get addresses from this range on the node's bridge; services from the next.
pub const POD_CIDR: &str = "10.88.0.0/16";
pub const NODE_POD_SUBNET: &str = "10.88.0.0/24";
pub const SERVICE_CIDR: &str = "10.96.0.0/16";
/// The `kubernetes` Service's address (first of SERVICE_CIDR): in the API server's certificate.
pub const KUBERNETES_SERVICE_IP: &str = "10.96.0.1";
pub const BRIDGE: &str = "syscribe0";
pub const CNI_NETWORK: &str = "syscribe-cluster";
pub const API_PORT: u16 = 6443;
pub const CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";
/// The kubelet's root: the DaemonSet mounts `<this>/seccomp` to install profiles.
pub const KUBELET_DIR: &str = "/var/lib/kubelet";

impl Node<'_> {
    fn pki(&self, file: &str) -> String {
        self.dir.join("pki").join(file).display().to_string()
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }

    pub fn etcd_args(&self) -> Vec<String> {
        vec![
            "--name=syscribe".into(),
            format!("--data-dir={}", self.path("etcd")),
            "--listen-client-urls=https://127.0.0.1:2379".into(),
            "--advertise-client-urls=https://127.0.0.1:2379".into(),
            "--listen-peer-urls=http://127.0.0.1:2380".into(),
            "--initial-advertise-peer-urls=http://127.0.0.1:2380".into(),
            "--initial-cluster=syscribe=http://127.0.0.1:2380".into(),
            "--listen-metrics-urls=http://127.0.0.1:2381".into(),
            format!("--cert-file={}", self.pki("etcd-server.crt")),
            format!("--key-file={}", self.pki("etcd-server.key")),
            "--client-cert-auth=true".into(),
            format!("--trusted-ca-file={}", self.pki("ca.crt")),
            // One node, a test's worth of data: keep the disk small.
            "--quota-backend-bytes=1073741824".into(),
            "--snapshot-count=10000".into(),
        ]
    }

    pub fn apiserver_args(&self) -> Vec<String> {
        vec![
            format!("--advertise-address={}", self.ip),
            format!("--secure-port={API_PORT}"),
            "--etcd-servers=https://127.0.0.1:2379".into(),
            format!("--etcd-cafile={}", self.pki("ca.crt")),
            format!("--etcd-certfile={}", self.pki("apiserver-etcd-client.crt")),
            format!("--etcd-keyfile={}", self.pki("apiserver-etcd-client.key")),
            format!("--client-ca-file={}", self.pki("ca.crt")),
            format!("--tls-cert-file={}", self.pki("apiserver.crt")),
            format!("--tls-private-key-file={}", self.pki("apiserver.key")),
            format!(
                "--kubelet-client-certificate={}",
                self.pki("apiserver-kubelet-client.crt")
            ),
            format!(
                "--kubelet-client-key={}",
                self.pki("apiserver-kubelet-client.key")
            ),
            format!("--kubelet-certificate-authority={}", self.pki("ca.crt")),
            "--kubelet-preferred-address-types=InternalIP".into(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", self.pki("sa.pub")),
            format!("--service-account-signing-key-file={}", self.pki("sa.key")),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            "--authorization-mode=Node,RBAC".into(),
            "--anonymous-auth=false".into(),
            // The defaults (MutatingAdmissionWebhook and ValidatingAdmissionWebhook among them)
            // plus these two (OpenShift turns the second on).
            "--enable-admission-plugins=NodeRestriction,OwnerReferencesPermissionEnforcement"
                .into(),
            "--allow-privileged=true".into(),
            "--profiling=false".into(),
            "--event-ttl=1h".into(),
        ]
    }

    pub fn controller_manager_args(&self) -> Vec<String> {
        let mut args = self.control_plane_kubeconfig("kube-controller-manager");
        args.extend([
            "--bind-address=127.0.0.1".into(),
            "--leader-elect=false".into(),
            "--use-service-account-credentials=true".into(),
            format!("--root-ca-file={}", self.pki("ca.crt")),
            format!("--service-account-private-key-file={}", self.pki("sa.key")),
            format!("--cluster-signing-cert-file={}", self.pki("ca.crt")),
            format!("--cluster-signing-key-file={}", self.pki("ca.key")),
            "--allocate-node-cidrs=true".into(),
            format!("--cluster-cidr={POD_CIDR}"),
            "--node-cidr-mask-size=24".into(),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            "--profiling=false".into(),
        ]);
        args
    }

    pub fn scheduler_args(&self) -> Vec<String> {
        let mut args = self.control_plane_kubeconfig("kube-scheduler");
        args.extend::<[String; 3]>([
            "--bind-address=127.0.0.1".into(),
            "--leader-elect=false".into(),
            "--profiling=false".into(),
        ]);
        args
    }

    /// A control-plane component talks to the API server, and checks who calls it, with its
    /// own kubeconfig.
    fn control_plane_kubeconfig(&self, component: &str) -> Vec<String> {
        let kubeconfig = self.pki(&format!("{component}.kubeconfig"));
        [
            "--kubeconfig",
            "--authentication-kubeconfig",
            "--authorization-kubeconfig",
        ]
        .map(|flag| format!("{flag}={kubeconfig}"))
        .to_vec()
    }

    pub fn kubelet_args(&self) -> Vec<String> {
        vec![
            format!("--config={}", self.path("kubelet.yaml")),
            format!("--kubeconfig={}", self.pki("kubelet.kubeconfig")),
            format!("--hostname-override={}", self.name),
            format!("--node-ip={}", self.ip),
            format!("--root-dir={KUBELET_DIR}"),
        ]
    }

    /// cgroupfs driver with cgroup v1 allowed: this machine's cgroups are a hybrid (v1
    /// controllers, the machine's own init in the v1 memory hierarchy), see docs/kubernetes.md.
    pub fn kubelet_config(&self) -> String {
        format!(
            r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {ip}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: true}}
  x509: {{clientCAFile: {ca}}}
authorization: {{mode: Webhook}}
tlsCertFile: {crt}
tlsPrivateKeyFile: {key}
containerRuntimeEndpoint: unix://{CONTAINERD_SOCKET}
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
logging: {{format: text}}
"#,
            ip = self.ip,
            ca = self.pki("ca.crt"),
            crt = self.pki("kubelet-server.crt"),
            key = self.pki("kubelet-server.key"),
        )
    }

    pub fn kube_proxy_config(&self) -> String {
        format!(
            r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {{kubeconfig: {kubeconfig}}}
hostnameOverride: {name}
clusterCIDR: {POD_CIDR}
bindAddress: {ip}
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
"#,
            kubeconfig = self.pki("kube-proxy.kubeconfig"),
            name = self.name,
            ip = self.ip,
        )
    }

    pub fn containerd_config(&self) -> String {
        format!(
            r#"version = 3
root = "/var/lib/containerd"
state = "/run/containerd"

[grpc]
  address = "{CONTAINERD_SOCKET}"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{pause}"

[plugins.'io.containerd.cri.v1.runtime']
  # This machine's root lacks CAP_SYS_RESOURCE (its bounding set), so no process may lower its
  # oom_score_adj: sandboxes (-998) and Guaranteed pods (-997) would fail to start. Clamp them
  # to containerd's own score instead, as rootless setups do.
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.crun]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.crun.options]
        BinaryName = "{crun}"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["{bin}"]
    conf_dir = "{conf}"
"#,
            pause = self.pause_image,
            crun = self.path("crun"),
            bin = self.bin.display(),
            conf = self.path("cni"),
        )
    }

    /// What containerd runs as crun: Debian 12's crun 1.8.1 refuses any bundle whose
    /// `ociVersion` is not 1.0.x ("unknown version specified"), and containerd 2.3 writes 1.3.0.
    /// This declares 1.0.2 in the bundle (nothing else changes; crun ignores fields it does not
    /// know) and runs the real /usr/bin/crun.
    pub fn crun_wrapper() -> &'static str {
        r#"#!/bin/sh
# Written by `cargo xtask cluster up` (see xtask/src/cluster/config.rs: crun_wrapper).
prev=""
for arg in "$@"; do
  if [ "$prev" = "--bundle" ] || [ "$prev" = "-b" ]; then
    sed -i 's/"ociVersion":"[^"]*"/"ociVersion":"1.0.2"/' "$arg/config.json" || exit 1
  fi
  prev="$arg"
done
exec /usr/bin/crun "$@"
"#
    }

    /// A bridge with host-local addresses; no masquerading (nothing leaves the node).
    pub fn cni_config(&self) -> String {
        format!(
            r#"{{
  "cniVersion": "1.0.0",
  "name": "{CNI_NETWORK}",
  "plugins": [
    {{
      "type": "bridge",
      "bridge": "{BRIDGE}",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {{
        "type": "host-local",
        "dataDir": "{ipam}",
        "ranges": [[{{"subnet": "{NODE_POD_SUBNET}"}}]],
        "routes": [{{"dst": "0.0.0.0/0"}}]
      }}
    }},
    {{"type": "portmap", "capabilities": {{"portMappings": true}}}}
  ]
}}
"#,
            ipam = self.path("cni-ipam"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cni_config_is_json_and_names_the_bridge() {
        let node = Node {
            name: "n",
            ip: "192.0.2.2".parse().unwrap(),
            dir: Path::new("/var/lib/syscribe-cluster"),
            bin: Path::new("/cache/bin"),
            pause_image: "localhost/syscribe/pause:1",
        };
        let cni: serde_json::Value = serde_json::from_str(&node.cni_config()).unwrap();
        assert_eq!(cni["plugins"][0]["bridge"], BRIDGE);
        assert_eq!(cni["plugins"][0]["ipMasq"], false);
        assert!(
            node.containerd_config()
                .contains("sandbox = \"localhost/syscribe/pause:1\"")
        );
        assert!(node.kubelet_config().contains("failCgroupV1: false"));
        assert!(
            node.apiserver_args()
                .contains(&"--authorization-mode=Node,RBAC".to_owned())
        );
    }
}
