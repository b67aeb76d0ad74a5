//! The enricher's tap for SELinux recordings: every enriched AVC attributed to a pod's
//! container goes, as a [`SelinuxDenial`], over a bounded channel to whoever records (the
//! daemon's loop). The enricher never waits for it: when the channel is full the denial is
//! dropped and counted (`syscribe_enricher_avc_tap_dropped_total`), and a burst of drops is
//! said once, when it starts and when it ends. What the enricher prints is unchanged.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use tokio::sync::mpsc::{self, error::TrySendError};

use super::enrich::Enriched;

/// One SELinux denial of a pod's container, as a recording takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelinuxDenial {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub scontext: String,
    pub tcontext: String,
    pub tclass: String,
    pub perms: Vec<String>,
}

impl SelinuxDenial {
    /// The denial of an enriched line: an AVC with every field known, else None.
    pub fn of(line: &Enriched) -> Option<Self> {
        if line.kind != "selinux" {
            return None;
        }
        Some(Self {
            namespace: line.namespace.clone()?,
            pod: line.pod.clone()?,
            container: line.container.clone()?,
            scontext: line.scontext.clone()?,
            tcontext: line.tcontext.clone()?,
            tclass: line.tclass.clone()?,
            perms: line
                .perm
                .as_deref()?
                .split_ascii_whitespace()
                .map(str::to_owned)
                .collect(),
        })
    }
}

/// The sending side, owned by the enricher's pipeline.
#[derive(Debug)]
pub struct AvcTap {
    tx: mpsc::Sender<SelinuxDenial>,
    /// Denials sent.
    pub sent: u64,
    /// Denials dropped: the channel was full or its receiver gone (shared by the taps of one
    /// channel, so /metrics has every source's).
    dropped: Arc<AtomicU64>,
    /// Drops of the burst going on (said when it ends).
    burst: u64,
}

impl AvcTap {
    /// Denials that may wait in the channel.
    pub const CAPACITY: usize = 4096;

    /// A tap and the receiver of what it sends, with room for `capacity` denials.
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<SelinuxDenial>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            Self {
                tx,
                sent: 0,
                dropped: Arc::default(),
                burst: 0,
            },
            rx,
        )
    }

    /// A tap into the same channel for another source (its drops counted with this one's).
    pub fn another(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            sent: 0,
            dropped: self.dropped.clone(),
            burst: 0,
        }
    }

    /// Denials dropped by every tap of this channel.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Sends the line's denial if it is a pod's AVC; never waits.
    pub fn offer(&mut self, line: &Enriched) {
        let Some(denial) = SelinuxDenial::of(line) else {
            return;
        };
        match self.tx.try_send(denial) {
            Ok(()) => {
                self.sent += 1;
                self.end_burst();
            }
            Err(TrySendError::Full(_) | TrySendError::Closed(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                if self.burst == 0 {
                    tracing::warn!(
                        capacity = self.tx.max_capacity(),
                        "SELinux denials for recordings are dropped: the daemon does not take them as fast as they come (counted in syscribe_enricher_avc_tap_dropped_total)"
                    );
                }
                self.burst += 1;
            }
        }
    }

    /// Says how many the burst going on dropped, if any (call it when the input is idle).
    pub fn end_burst(&mut self) {
        if self.burst > 0 {
            tracing::warn!(
                dropped = self.burst,
                total = self.dropped(),
                "SELinux denials for recordings were dropped"
            );
            self.burst = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::parse::EventId;

    fn avc(pod: Option<&str>) -> Enriched {
        Enriched {
            kind: "selinux",
            timestamp: EventId::default(),
            namespace: Some("shop".into()),
            pod: pod.map(str::to_owned),
            container: Some("web".into()),
            perm: Some("read open".into()),
            scontext: Some("system_u:system_r:selinuxrecording.process:s0:c1,c2".into()),
            tcontext: Some("system_u:object_r:etc_t:s0".into()),
            tclass: Some("file".into()),
            ..Enriched::default()
        }
    }

    #[test]
    fn only_attributed_avcs_go_and_a_full_channel_drops_and_counts() {
        let (mut tap, mut rx) = AvcTap::channel(2);
        tap.offer(&avc(None)); // not attributed to a pod: not for a recording
        let seccomp = Enriched {
            kind: "seccomp",
            ..avc(Some("web-1"))
        };
        tap.offer(&seccomp);
        for _ in 0..5 {
            tap.offer(&avc(Some("web-1")));
        }
        assert_eq!((tap.sent, tap.dropped(), tap.burst), (2, 3, 3));
        let got = rx.try_recv().unwrap();
        assert_eq!(got.perms, ["read", "open"]);
        assert_eq!(got.pod, "web-1");
        assert_eq!(got.tclass, "file");
        // Room again: the burst is over (said once), the count stays.
        tap.offer(&avc(Some("web-1")));
        assert_eq!((tap.sent, tap.dropped(), tap.burst), (3, 3, 0));
        // Another source's tap: same channel, drops counted together.
        assert_eq!(rx.try_recv().unwrap().pod, "web-1");
        assert_eq!(rx.try_recv().unwrap().pod, "web-1");
        let mut other = tap.another();
        other.offer(&avc(Some("web-2")));
        assert_eq!(rx.try_recv().unwrap().pod, "web-2");
        drop(rx);
        tap.offer(&avc(Some("web-1")));
        other.offer(&avc(Some("web-2")));
        assert_eq!(tap.dropped(), 5, "a gone receiver drops too");
        assert_eq!(other.dropped(), 5);
    }
}
