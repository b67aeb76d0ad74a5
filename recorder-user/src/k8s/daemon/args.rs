//! What `syscribe daemon` takes on its command line.

use std::net::SocketAddr;

#[derive(Debug, clap::Args)]
pub struct DaemonArgs {
    /// This node's name (the pods recorded are the ones scheduled here).
    #[arg(long, env = "NODE_NAME")]
    pub node: String,
    /// Where /metrics, /healthz and /readyz are served.
    #[arg(long, default_value = "0.0.0.0:9890")]
    pub metrics_addr: SocketAddr,
    /// Do not stream enriched denials.
    #[arg(long)]
    pub no_enrich: bool,
    /// Where the recorder's kernel state is pinned (bpffs) so recordings survive a restart of
    /// the daemon; without a bpf filesystem there, recordings end with the daemon.
    #[arg(long, default_value = "/sys/fs/bpf/syscribe")]
    pub pin_dir: std::path::PathBuf,
    /// The kubelet's root directory: SeccompProfiles are installed in its
    /// `seccomp/operator/` for pods' `localhostProfile: operator/<name>.json`.
    #[arg(long, env = "KUBELET_DIR", default_value = "/var/lib/kubelet")]
    pub kubelet_dir: std::path::PathBuf,
    /// Where the recordings of containers that finished in still-running pods are kept, so a
    /// restarted daemon has them (the kernel holds only running containers' sets).
    #[arg(long, default_value = "/var/lib/syscribe")]
    pub state_dir: std::path::PathBuf,
    /// Do not install SeccompProfiles on this node (record only).
    #[arg(long)]
    pub no_install: bool,
    /// Also follow this file of audit lines (e.g. auditd's /var/log/audit/audit.log) beside
    /// the kernel source: from its end, or from its start if it appears later (waited for).
    /// Its denials are enriched, printed and recorded as the kernel source's are.
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<std::path::PathBuf>,
}
