//! The eBPF side's aya-log diagnostics, forwarded into tracing.

use aya_log::EbpfLogger;
use tokio::io::unix::AsyncFd;
use tracing::Instrument as _;

use super::BpfError;

/// Reads the eBPF side's aya-log records (see [`LogForwarder`]).
pub type EbpfLog = EbpfLogger<&'static dyn log::Log>;

/// Forwards the eBPF side's aya-log records into tracing (through `log`) until stopped.
pub struct LogForwarder {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl LogForwarder {
    /// Spawns the forwarding task (needs a tokio runtime).
    pub fn spawn(logger: EbpfLog) -> Result<Self, BpfError> {
        // SAFETY: the logger owns its ring buffer's fd, which stays open and unchanged until
        // the AsyncFd (which owns the logger) drops.
        let mut fd =
            unsafe { AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE) }
                .map_err(|err| BpfError::Log { source: err.into() })?;
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(
            async move {
                loop {
                    tokio::select! {
                        ready = fd.readable_mut() => match ready {
                            Ok(mut guard) => {
                                guard.get_inner_mut().flush();
                                guard.clear_ready();
                            }
                            Err(err) => {
                                tracing::warn!(error = %err, "eBPF diagnostics stopped");
                                return;
                            }
                        },
                        _ = &mut stopped => {
                            // Whatever the programs logged before they were detached.
                            fd.get_mut().flush();
                            return;
                        }
                    }
                }
            }
            .instrument(tracing::info_span!("ebpf_log")),
        );
        Ok(Self {
            stop: Some(stop),
            task,
        })
    }

    /// Forwards what is left, then stops.
    pub async fn finish(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}
