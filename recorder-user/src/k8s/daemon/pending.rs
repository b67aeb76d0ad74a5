//! Recorded profiles not published yet: retried with backoff, each kept in the state
//! directory (`pending-<name>.json`) until published, so a killed daemon's successor
//! publishes them.

use std::time::Duration;

use kube::{Client, ResourceExt as _};

use crate::k8s::{
    crd::{SeccompProfile, SelinuxProfile},
    publish::{self, PublishError},
};
use crate::keyed_store::KeyedStore;

/// The most read back of a file in the state directory (written by a previous daemon).
pub const MAX_STATE_FILE: u64 = 64 << 20;
/// Profiles that could not be published yet are retried; at most this many wait.
const MAX_RETRIES: usize = 1000;

/// Backoff before attempt `attempts + 1`: 50 ms doubling, at most a minute.
pub(crate) fn backoff(attempts: u32) -> Duration {
    Duration::from_millis(50u64.saturating_mul(1 << attempts.min(11))).min(Duration::from_secs(60))
}

/// Whether an API error can go away by itself (a 4xx other than a conflict or throttling
/// will not: the object is refused, e.g. by the validating webhook).
fn retryable(err: &PublishError) -> bool {
    let PublishError::Api { source, .. } = err;
    match source {
        kube::Error::Api(status) => {
            !(400..500).contains(&status.code) || matches!(status.code, 408 | 409 | 429)
        }
        _ => true,
    }
}

/// A recorded profile to publish, of either kind.
#[derive(Debug, Clone)]
pub enum Recorded {
    Seccomp(SeccompProfile),
    Selinux(SelinuxProfile),
}

impl From<SeccompProfile> for Recorded {
    fn from(profile: SeccompProfile) -> Self {
        Self::Seccomp(profile)
    }
}

impl From<SelinuxProfile> for Recorded {
    fn from(profile: SelinuxProfile) -> Self {
        Self::Selinux(profile)
    }
}

impl Recorded {
    pub(super) fn name_any(&self) -> String {
        match self {
            Self::Seccomp(p) => p.name_any(),
            Self::Selinux(p) => p.name_any(),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Seccomp(_) => "SeccompProfile",
            Self::Selinux(_) => "SelinuxProfile",
        }
    }

    /// Its key in the state directory's store: `selinux.<name>` for a SelinuxProfile (which
    /// may share a SeccompProfile's name), the name of a SeccompProfile not starting so.
    fn key(&self) -> Option<String> {
        match self {
            Self::Seccomp(p) => Some(p.name_any()).filter(|n| !n.starts_with("selinux.")),
            Self::Selinux(p) => Some(format!("selinux.{}", p.name_any())),
        }
    }

    fn to_json(&self) -> Vec<u8> {
        match self {
            Self::Seccomp(p) => serde_json::to_vec(p),
            Self::Selinux(p) => serde_json::to_vec(p),
        }
        .expect("profiles serialize")
    }

    /// The profile kept under `key` (see [`Recorded::key`]).
    fn from_key(key: &str, text: &[u8]) -> Option<Self> {
        if key.starts_with("selinux.") {
            serde_json::from_slice(text).ok().map(Self::Selinux)
        } else {
            serde_json::from_slice(text).ok().map(Self::Seccomp)
        }
    }

    async fn apply(&self, client: &Client) -> Result<(), PublishError> {
        match self {
            Self::Seccomp(p) => publish::apply_profile(client, p).await,
            Self::Selinux(p) => publish::apply_profile(client, p).await,
        }
    }
}

pub(super) struct Waiting {
    pub(super) profile: Recorded,
    attempts: u32,
    next: tokio::time::Instant,
}

/// Profiles not published yet: retried with backoff (at most MAX_RETRIES wait), each kept in
/// the state directory (`pending-<key>.json`) until published, so a killed daemon's successor
/// publishes them.
#[derive(Default)]
pub(super) struct Pending {
    files: Option<KeyedStore>,
    pub(super) waiting: Vec<Waiting>,
}

impl Pending {
    pub(super) fn load(dir: std::path::PathBuf) -> Self {
        let files = KeyedStore::new(dir, "pending-");
        let now = tokio::time::Instant::now();
        let mut waiting = Vec::new();
        for key in files.keys().unwrap_or_default() {
            match files
                .read(&key, MAX_STATE_FILE)
                .map(|t| t.and_then(|t| Recorded::from_key(&key, &t)))
            {
                Ok(Some(profile)) if waiting.len() < MAX_RETRIES => {
                    tracing::info!(profile = %profile.name_any(), kind = profile.kind(), "a profile a previous daemon could not publish is published now");
                    waiting.push(Waiting {
                        profile,
                        attempts: 0,
                        next: now,
                    });
                }
                _ => {
                    tracing::warn!(file = %files.path_of(&key).unwrap_or_default().display(), "unreadable pending profile; removed");
                    let _ = files.remove(&key);
                }
            }
        }
        Self {
            files: Some(files),
            waiting,
        }
    }

    fn keep(&self, profile: &Recorded) {
        let (Some(files), Some(key)) = (&self.files, profile.key()) else {
            return;
        };
        if let Err(err) = files.write(&key, &profile.to_json(), false) {
            tracing::warn!(error = %err, "keeping a profile to publish later");
        }
    }

    fn forget(&self, profile: &Recorded) {
        if let (Some(files), Some(key)) = (&self.files, profile.key()) {
            let _ = files.remove(&key);
        }
    }

    /// Publishes now; on failure the profile waits (kept on disk) unless it can never succeed.
    pub(super) async fn publish(&mut self, client: &Client, profile: impl Into<Recorded>) {
        self.attempt(client, profile.into(), 0).await;
    }

    async fn attempt(&mut self, client: &Client, profile: Recorded, attempts: u32) {
        match profile.apply(client).await {
            Ok(()) => self.forget(&profile),
            Err(err) if !retryable(&err) => {
                tracing::error!(error = %err, profile = %profile.name_any(), kind = profile.kind(), "the API server refuses this profile; not retried");
                self.forget(&profile);
            }
            Err(err) if self.waiting.len() < MAX_RETRIES => {
                tracing::warn!(error = %err, attempts = attempts + 1, "publishing a profile; will retry");
                if attempts == 0 {
                    self.keep(&profile);
                }
                self.waiting.push(Waiting {
                    profile,
                    attempts: attempts + 1,
                    next: tokio::time::Instant::now() + backoff(attempts + 1),
                });
            }
            Err(err) => {
                tracing::error!(error = %err, profile = %profile.name_any(), kind = profile.kind(), "too many profiles waiting to be published; kept on disk for the next daemon");
                self.keep(&profile);
            }
        }
    }

    pub(super) async fn retry_due(&mut self, client: &Client) {
        let now = tokio::time::Instant::now();
        let (due, later): (Vec<Waiting>, Vec<Waiting>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|w| w.next <= now);
        self.waiting = later;
        for w in due {
            self.attempt(client, w.profile, w.attempts).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(name: &str) -> SeccompProfile {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "SeccompProfile",
            "metadata": {"name": name}, "spec": {"defaultAction": "SCMP_ACT_ERRNO"}
        }))
        .unwrap()
    }

    /// Answers the next request with an API error `code`.
    async fn fail(handle: &mut crate::k8s::testing::Handle, code: u16) {
        let (_, send) = handle.next_request().await.expect("a request");
        let status = serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": "no", "reason": "Test", "code": code});
        send.send_response(
            http::Response::builder()
                .status(code)
                .body(kube::client::Body::from(
                    serde_json::to_vec(&status).unwrap(),
                ))
                .unwrap(),
        );
    }

    /// A profile the API server could not take waits on disk for the next daemon; one it
    /// refuses (a 4xx such as the webhook's 422) is not retried.
    #[tokio::test]
    async fn unpublished_profiles_wait_on_disk_and_refused_ones_do_not() {
        let dir = std::env::temp_dir().join(format!("syscribe-pending-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (client, mut handle) = crate::k8s::testing::mock();
        let mut pending = Pending::load(dir.clone());
        let server = tokio::spawn(async move {
            fail(&mut handle, 503).await;
            fail(&mut handle, 422).await;
        });
        pending.publish(&client, profile("down")).await;
        pending.publish(&client, profile("refused")).await;
        server.await.unwrap();
        assert_eq!(pending.waiting.len(), 1);
        assert!(dir.join("pending-down.json").exists());
        assert!(!dir.join("pending-refused.json").exists());
        assert!(
            pending.waiting[0].next > tokio::time::Instant::now(),
            "backs off"
        );
        // The next daemon takes it over.
        let next = Pending::load(dir.clone());
        assert_eq!(next.waiting.len(), 1);
        assert_eq!(next.waiting[0].profile.name_any(), "down");
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(30), Duration::from_secs(60));
    }

    /// A SelinuxProfile waits on disk beside a SeccompProfile of the same name, and each comes
    /// back as its kind.
    #[tokio::test]
    async fn unpublished_selinux_profiles_wait_on_disk_as_their_kind() {
        let dir = std::env::temp_dir().join(format!("syscribe-pending-se-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (client, mut handle) = crate::k8s::testing::mock();
        let mut pending = Pending::load(dir.clone());
        let server = tokio::spawn(async move {
            fail(&mut handle, 503).await;
            fail(&mut handle, 503).await;
        });
        let selinux: SelinuxProfile = serde_json::from_value(serde_json::json!({
            "apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "SelinuxProfile",
            "metadata": {"name": "rec-app"}, "spec": {"allow": {"etc_t": {"file": ["read"]}}}
        }))
        .unwrap();
        pending.publish(&client, selinux).await;
        pending.publish(&client, profile("rec-app")).await;
        server.await.unwrap();
        assert!(dir.join("pending-selinux.rec-app.json").exists());
        assert!(dir.join("pending-rec-app.json").exists());
        let next = Pending::load(dir.clone());
        let mut kinds: Vec<(&str, String)> = next
            .waiting
            .iter()
            .map(|w| (w.profile.kind(), w.profile.name_any()))
            .collect();
        kinds.sort();
        assert_eq!(
            kinds,
            [
                ("SeccompProfile", "rec-app".to_owned()),
                ("SelinuxProfile", "rec-app".to_owned())
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
