//! The `syscribe` command line. Doc comments are the help text.

pub mod enrich;
mod pull;
mod record;
mod report;
mod run;
mod validate;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

pub use enrich::EnrichArgs;
pub use record::RecordArgs;
pub use run::RunArgs;

/// Records what a command or container really does as a minimal seccomp profile, and runs
/// commands under such profiles.
#[derive(Debug, Parser)]
#[command(name = "syscribe", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Args)]
pub struct GlobalArgs {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Kernel BTF, used to load the eBPF recorder.
    #[arg(
        long,
        env = "SYSCRIBE_BTF",
        default_value = "/sys/kernel/btf/vmlinux",
        global = true
    )]
    pub btf: PathBuf,
    /// mountinfo file in which to find the cgroup2 mount.
    #[arg(
        long,
        env = "SYSCRIBE_MOUNTINFO",
        default_value = "/proc/self/mountinfo",
        global = true,
        hide = true
    )]
    pub mountinfo: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command and record every syscall it and its descendants make, from its first
    /// instruction until it exits, as a minimal seccomp profile. Exits with the command's status.
    Record(RecordArgs),
    /// Run a command under a seccomp profile (OCI JSON, or a SeccompProfile in YAML or JSON).
    Run(RunArgs),
    /// Print one line per seccomp, SELinux or AppArmor denial in the audit records, with the
    /// syscall's name, the action, the executable, and the container and pod of the process.
    Enrich(EnrichArgs),
    /// Run on a Kubernetes node: record the pods ProfileRecordings select (in namespaces
    /// labelled spo.x-k8s.io/enable-recording), publish their SeccompProfiles, install every
    /// enabled SeccompProfile on the node (with a per-node status), stream enriched denials as
    /// JSON lines, serve /metrics, /healthz and /readyz.
    Daemon(crate::k8s::daemon::DaemonArgs),
    /// Write a SeccompProfile — from the cluster (kubeconfig) or a YAML file — as the OCI
    /// seccomp JSON that runc, crun and podman load.
    Pull(pull::PullArgs),
    /// Which containers run without a seccomp profile, under RuntimeDefault or a Localhost
    /// profile (installed on their node or not), privileged, with added capabilities or the
    /// host's namespaces, which recorded profile they leave unused and what was denied to
    /// them — per namespace with its coverage, and for the cluster (kubeconfig). As a table,
    /// JSON or one self-contained HTML page.
    Report(report::ReportArgs),
    /// Check profiles (OCI seccomp JSON, SeccompProfile, SelinuxProfile; YAML or JSON) and
    /// report every problem with its line:column and field path: syntax, unknown fields, wrong
    /// types, unknown actions, architectures, flags, comparisons, syscall names unknown on every
    /// listed architecture (with "did you mean"), duplicates, dead rules, errnoRet misuse, bad
    /// arguments, SELinux types, classes and permissions. Exit status 0 when no errors.
    Validate(validate::ValidateArgs),
    /// Serve a validating admission webhook (HTTPS, AdmissionReview v1): SeccompProfile and
    /// SelinuxProfile creates and updates are checked as `validate` checks them; invalid ones
    /// are refused with every problem.
    Webhook(crate::k8s::webhook::WebhookArgs),
    /// Print the CustomResourceDefinitions syscribe serves (the upstream Security Profiles
    /// Operator's v1 kinds), as YAML.
    Crds,
    /// Attach the empty eBPF program to sys_enter until stdin closes (the benchmark's floor).
    #[command(hide = true)]
    BenchFloor,
}

impl Cli {
    /// Runs the command; returns the process exit code.
    pub fn run(self) -> i32 {
        let paths = crate::record::HostPaths {
            btf: self.global.btf,
            mountinfo: self.global.mountinfo,
        };
        let result = match self.command {
            Command::Record(args) => record::record(&paths, args),
            Command::Run(args) => run::run(args),
            Command::Enrich(args) => enrich::run(&paths, args),
            Command::Daemon(args) => daemon(paths, args),
            Command::Pull(args) => pull::run(args),
            Command::Report(args) => report::run(args),
            Command::Validate(args) => validate::run(args),
            Command::Webhook(args) => webhook(args),
            Command::Crds => {
                print!("{}", crate::k8s::crd::crds_yaml());
                Ok(0)
            }
            Command::BenchFloor => record::bench_floor(&paths),
        };
        match result {
            Ok(code) => code,
            Err(err) => {
                eprintln!("syscribe: error: {err}");
                err.exit_code()
            }
        }
    }
}

/// The async runtime a command's work runs on: one thread (the daemon's and the webhook's
/// loops, a recording's wait, the API calls of `pull` and `report`).
fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| CliError::Runtime { source })
}

fn daemon(
    paths: crate::record::HostPaths,
    args: crate::k8s::daemon::DaemonArgs,
) -> Result<i32, CliError> {
    let runtime = runtime()?;
    runtime.block_on(crate::k8s::daemon::run(paths, args))?;
    Ok(0)
}

fn webhook(args: crate::k8s::webhook::WebhookArgs) -> Result<i32, CliError> {
    let runtime = runtime()?;
    runtime.block_on(crate::k8s::webhook::run(args))?;
    Ok(0)
}

/// Any command's failure: one line for the user, and an exit status.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Record(#[from] crate::record::RecordError),
    #[error(transparent)]
    Load(#[from] crate::profile::load::LoadError),
    #[error("{path}: {source}", path = .path.display())]
    Profile {
        path: PathBuf,
        #[source]
        source: crate::profile::enforce::EnforceError,
    },
    #[error("{path}: the profile does not allow execve, so {command} could never start", path = .path.display())]
    NoExec { path: PathBuf, command: String },
    #[error("cannot load the seccomp filter: {source}")]
    LoadFilter {
        #[source]
        source: libseccomp::error::SeccompError,
    },
    #[error("cannot exec {command}: {source}")]
    Exec {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}", path = .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}", path = .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--name {name:?} cannot be a resource name: {problem}")]
    Name { name: String, problem: &'static str },
    #[error("--cgroup writes one profile per container: -o must name a directory, not {path}", path = .path.display())]
    OutputNotADirectory { path: PathBuf },
    #[error(transparent)]
    Daemon(#[from] crate::k8s::daemon::DaemonError),
    #[error(transparent)]
    Webhook(#[from] crate::k8s::webhook::WebhookError),
    #[error(transparent)]
    Pull(#[from] pull::PullError),
    #[error(transparent)]
    Report(#[from] report::ReportCliError),
    #[error("--policy-store: {0}")]
    PolicyBase(#[from] crate::selinux::BaseError),
    #[error(transparent)]
    Enrich(#[from] crate::audit::enricher::EnrichError),
    #[error("cannot start the async runtime: {source}")]
    Runtime {
        #[source]
        source: std::io::Error,
    },
}

impl CliError {
    /// 127 for a command that does not exist, 126 for one that cannot run (as shells do), 1 else.
    pub fn exit_code(&self) -> i32 {
        use crate::record::RecordError;
        match self {
            Self::Record(RecordError::CommandNotFound { .. }) => 127,
            Self::Record(RecordError::CommandNotExecutable { .. })
            | Self::Exec { .. }
            | Self::NoExec { .. } => 126,
            _ => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn record_takes_the_command_after_double_dash() {
        let cli =
            Cli::try_parse_from(["syscribe", "record", "-o", "p.json", "--", "ls", "-l", "/"])
                .unwrap();
        let Command::Record(args) = cli.command else {
            panic!("not record")
        };
        assert_eq!(args.command, ["ls", "-l", "/"]);
        assert_eq!(args.output, Some(PathBuf::from("p.json")));
    }

    #[test]
    fn record_takes_a_cgroup_or_a_command_not_both() {
        let cli = Cli::try_parse_from([
            "syscribe",
            "record",
            "--cgroup",
            "/kubepods/pod1",
            "-o",
            "out",
        ])
        .unwrap();
        let Command::Record(args) = cli.command else {
            panic!("not record")
        };
        assert_eq!(args.cgroup, [PathBuf::from("/kubepods/pod1")]);
        let cli = Cli::try_parse_from([
            "syscribe",
            "record",
            "--cgroup",
            "/kubepods/pod1",
            "--cgroup",
            "/kubepods/pod2",
        ])
        .unwrap();
        let Command::Record(args) = cli.command else {
            panic!("not record")
        };
        assert_eq!(args.cgroup.len(), 2, "several pods at once");
        assert!(Cli::try_parse_from(["syscribe", "record", "--cgroup", "/x", "--", "ls"]).is_err());
        assert!(Cli::try_parse_from(["syscribe", "record"]).is_err());
    }
}
