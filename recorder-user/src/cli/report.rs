//! `syscribe report`: which containers run under which seccomp profile, per namespace and for
//! the cluster, as a table, JSON or one HTML page (kubeconfig, the user's credentials).

use std::path::PathBuf;

use clap::ValueEnum;
use kube::Client;

use super::CliError;
use crate::k8s::report::{Assumptions, fetch, html, render};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Table,
    Json,
    Html,
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Only this namespace (default: every namespace).
    #[arg(short, long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
    /// Where to write the report (default: stdout).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The kubelets run with `seccompDefault: true`: a container with no seccomp profile
    /// runs RuntimeDefault (default: Unconfined, the kubelet's own default).
    #[arg(long)]
    pub seccomp_default: bool,
    /// The namespace of syscribe's DaemonSet, whose pods' /metrics give the denials.
    #[arg(long, default_value = "syscribe", value_name = "NAMESPACE")]
    pub daemon_namespace: String,
    /// The label selector of the DaemonSet's pods.
    #[arg(
        long,
        default_value = "app.kubernetes.io/name=syscribe",
        value_name = "SELECTOR"
    )]
    pub daemon_selector: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportCliError {
    #[error("cannot reach the Kubernetes API (kubeconfig): {source}")]
    Client {
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Fetch(#[from] fetch::ReportError),
}

pub fn run(args: ReportArgs) -> Result<i32, CliError> {
    let runtime = super::runtime()?;
    let out = super::record::Output::open(args.output.as_deref().unwrap_or("-".as_ref()))?;
    let options = fetch::Options {
        namespace: args.namespace.clone(),
        daemon_namespace: args.daemon_namespace.clone(),
        daemon_selector: args.daemon_selector.clone(),
        assumptions: Assumptions {
            seccomp_default: args.seccomp_default,
        },
    };
    let report = runtime.block_on(async {
        let client = Client::try_default()
            .await
            .map_err(|source| ReportCliError::Client { source })?;
        Ok::<_, ReportCliError>(fetch::report(&client, &options).await?)
    })?;
    let text = match args.format {
        ReportFormat::Table => render::table(&report),
        ReportFormat::Json => render::json(&report),
        ReportFormat::Html => html::html(&report),
    };
    out.write(&text)?;
    Ok(0)
}
