//! Watch errors, logged without flooding while the API server is away. kube's watcher retries
//! with its own backoff (0.8 s doubling to 30 s, jittered) and yields each failure; logged one
//! line each, a restarting API server made a few dozen warnings. Here each watch warns at most
//! once per [`QUIET`] — the next warning says how many failures it did not print — and an
//! expired watch (410 Gone: the API server no longer has the resource version it resumed from,
//! as after its restart) is routine: one info line, the watcher lists again by itself.

use std::{
    collections::BTreeMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use kube::runtime::watcher;

/// At most one warning per watch in this time.
pub const QUIET: Duration = Duration::from_secs(60);

/// The watches that failed lately: when each last warned, and the failures not printed since.
/// Keyed by the watches' names (a handful of literals).
static LAST: Mutex<BTreeMap<String, (Instant, u64)>> = Mutex::new(BTreeMap::new());

/// What to say about one failure of the watch `what`.
#[derive(Debug, PartialEq, Eq)]
pub enum Say {
    /// 410 Gone: listing again.
    Expired,
    /// A warning, with the failures not printed since the last one.
    Warn { suppressed: u64 },
    /// Already warned within [`QUIET`]: only a debug line.
    Quiet,
}

/// Decides, and remembers, what to say about a failure of `what` at `now`.
pub fn decide(what: &str, expired: bool, now: Instant) -> Say {
    if expired {
        return Say::Expired;
    }
    let Ok(mut last) = LAST.lock() else {
        return Say::Warn { suppressed: 0 };
    };
    match last.get_mut(what) {
        Some((since, suppressed)) if now.saturating_duration_since(*since) < QUIET => {
            *suppressed += 1;
            Say::Quiet
        }
        Some(entry) => {
            let suppressed = std::mem::take(&mut entry.1);
            entry.0 = now;
            Say::Warn { suppressed }
        }
        None => {
            last.insert(what.to_owned(), (now, 0));
            Say::Warn { suppressed: 0 }
        }
    }
}

/// Logs a failure of the watch `what`.
pub fn report(what: &str, err: &watcher::Error) {
    let expired = matches!(err, watcher::Error::WatchError(status) if status.code == 410);
    match decide(what, expired, Instant::now()) {
        Say::Expired => tracing::info!(error = %err, "{what} expired (410 Gone); listing again"),
        Say::Warn { suppressed } => tracing::warn!(
            error = %err,
            suppressed,
            "{what} failed; retrying with backoff (further failures within {}s are not logged)",
            QUIET.as_secs()
        ),
        Say::Quiet => tracing::debug!(error = %err, "{what} failed again"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_watch_warns_once_per_quiet_period_and_counts_the_rest() {
        let t0 = Instant::now();
        let what = "test watch (quiet period)";
        assert_eq!(decide(what, false, t0), Say::Warn { suppressed: 0 });
        for s in 1..30 {
            assert_eq!(decide(what, false, t0 + Duration::from_secs(s)), Say::Quiet);
        }
        // Another watch warns on its own.
        assert_eq!(
            decide("another test watch", false, t0 + Duration::from_secs(1)),
            Say::Warn { suppressed: 0 }
        );
        assert_eq!(
            decide(what, false, t0 + QUIET + Duration::from_secs(1)),
            Say::Warn { suppressed: 29 }
        );
        assert_eq!(decide(what, true, t0), Say::Expired);
    }
}
