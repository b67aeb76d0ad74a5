//! `syscribe daemon`: one per node. Watches the node's pods, the namespaces enabled for
//! recording and the ProfileRecordings; records the selected pods' containers; publishes
//! their profiles; installs SeccompProfiles (files) and SelinuxProfiles and
//! RawSelinuxProfiles (policy modules) on the node; streams enriched denials as JSON lines on
//! stdout (with the pod index's names); serves /metrics, /healthz and /readyz.
//!
//! The seams: `args` (the command line), `run` (the loop: watches, the enricher threads,
//! signals), `state` (the [`Daemon`]: what each event does), `events` (watch events into the
//! caches and the pod index, re-lists included) and `pending` (recorded profiles not
//! published yet, kept in the state directory).

use std::net::SocketAddr;

use kube::runtime::watcher;
use thiserror::Error;

use crate::record::RecordError;

mod args;
mod events;
mod pending;
mod run;
mod state;

pub use args::DaemonArgs;
pub(crate) use pending::backoff;
pub use pending::{MAX_STATE_FILE, Recorded};
pub use run::run;
pub(crate) use run::watch_error;
pub use state::{Daemon, SelinuxEvent};

#[derive(Debug, Error)]
pub enum DaemonError {
    #[error("cannot reach the Kubernetes API (in-cluster config or kubeconfig): {source}")]
    Client {
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("cannot serve /metrics and /healthz on {addr}: {source}")]
    Serve {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start a thread: {source}")]
    Thread {
        #[source]
        source: std::io::Error,
    },
    #[error("watching {what}: {source}")]
    Watch {
        what: &'static str,
        #[source]
        source: watcher::Error,
    },
}
