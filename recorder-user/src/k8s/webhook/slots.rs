//! Which connections the webhook holds: at most `max` at once and `per_peer` from one IP
//! address. When a limit is reached, the new connection is not the one refused: a connection
//! that is not in the middle of a request gives way — one that never sent a request first
//! (a slowloris holds those), then the one idle longest. Only a limit full of connections
//! that are all serving a request refuses. Pure: no I/O, time passed in.

use std::{collections::HashMap, net::IpAddr, sync::Arc, time::Instant};

use tokio::sync::Notify;

/// Where a connection is: between requests (handshaking, or waiting for a request's first
/// byte: it may be closed to make room), or in a request (from its first byte to the last
/// byte of the response: never closed to make room).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Waiting,
    Busy,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Every slot serves a request.
    Full,
    /// Every slot this peer may hold serves one of its requests.
    Peer,
}

struct Slot {
    peer: IpAddr,
    phase: Phase,
    /// Since when it is in its phase (accepted, or its last response written).
    since: Instant,
    /// It has been answered at least once (the API server's kept-alive connections).
    served: bool,
    /// Told when it must close.
    close: Arc<Notify>,
}

/// A connection let in.
pub(super) struct Admitted {
    pub id: u64,
    /// Notified when the connection must close to make room for another.
    pub close: Arc<Notify>,
    /// Another connection was closed to make room for this one.
    pub evicted: bool,
}

pub(super) struct Slots {
    max: usize,
    per_peer: usize,
    next: u64,
    open: HashMap<u64, Slot>,
}

impl Slots {
    pub fn new(max: usize, per_peer: usize) -> Self {
        Self {
            max,
            per_peer,
            next: 0,
            open: HashMap::new(),
        }
    }

    /// Lets a new connection from `peer` in, closing another to make room if a limit is
    /// reached: one of the peer's own when the peer is at its limit, else anyone's.
    pub fn admit(&mut self, peer: IpAddr, now: Instant) -> Result<Admitted, Refusal> {
        let from_peer = self.open.values().filter(|s| s.peer == peer).count();
        let mut evicted = false;
        if from_peer >= self.per_peer {
            evicted = self.evict(Some(peer)).ok_or(Refusal::Peer)?;
        } else if self.open.len() >= self.max {
            evicted = self.evict(None).ok_or(Refusal::Full)?;
        }
        let id = self.next;
        self.next += 1;
        let close = Arc::new(Notify::new());
        self.open.insert(
            id,
            Slot {
                peer,
                phase: Phase::Waiting,
                since: now,
                served: false,
                close: close.clone(),
            },
        );
        Ok(Admitted { id, close, evicted })
    }

    /// Closes the connection that gives way (within `peer`'s if given): `Some(true)` when one
    /// did, `None` when every one is busy.
    fn evict(&mut self, peer: Option<IpAddr>) -> Option<bool> {
        let victim = self
            .open
            .iter()
            .filter(|(_, s)| s.phase == Phase::Waiting && peer.is_none_or(|p| s.peer == p))
            .min_by_key(|(id, s)| (s.served, s.since, **id))
            .map(|(id, _)| *id)?;
        let slot = self.open.remove(&victim)?;
        // Stored if its task is not waiting yet: it closes at its next wait.
        slot.close.notify_one();
        Some(true)
    }

    /// Records the connection's phase; false if it was closed to make room meanwhile (it
    /// must not start a request then).
    pub fn set_phase(&mut self, id: u64, phase: Phase, now: Instant) -> bool {
        let Some(slot) = self.open.get_mut(&id) else {
            return false;
        };
        if slot.phase == Phase::Busy && phase == Phase::Waiting {
            slot.served = true;
        }
        slot.phase = phase;
        slot.since = now;
        true
    }

    pub fn remove(&mut self, id: u64) {
        self.open.remove(&id);
    }

    #[cfg(test)]
    pub fn is_open(&self, id: u64) -> bool {
        self.open.contains_key(&id)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn a_peer_at_its_limit_gives_way_with_its_own_oldest_idle_connection() {
        let t = Instant::now();
        let mut slots = Slots::new(10, 3);
        let other = slots.admit(ip(2), t).unwrap();
        let first = slots.admit(ip(1), t + Duration::from_secs(1)).unwrap();
        let second = slots.admit(ip(1), t + Duration::from_secs(2)).unwrap();
        let third = slots.admit(ip(1), t + Duration::from_secs(3)).unwrap();
        assert!(!third.evicted);
        let fourth = slots.admit(ip(1), t + Duration::from_secs(4)).unwrap();
        assert!(fourth.evicted);
        assert!(!slots.is_open(first.id), "the peer's oldest gave way");
        assert!(
            slots.is_open(other.id),
            "not another peer's, though it is older"
        );
        assert!(slots.is_open(second.id) && slots.is_open(third.id));
        assert_eq!(slots.len(), 4);
    }

    #[test]
    fn connections_in_a_request_are_never_closed_and_a_busy_peer_is_refused() {
        let t = Instant::now();
        let mut slots = Slots::new(10, 2);
        let a = slots.admit(ip(1), t).unwrap();
        let b = slots.admit(ip(1), t).unwrap();
        assert!(slots.set_phase(a.id, Phase::Busy, t));
        assert!(slots.set_phase(b.id, Phase::Busy, t));
        assert_eq!(
            slots.admit(ip(1), t).err(),
            Some(Refusal::Peer),
            "the peer's two slots serve requests"
        );
        assert!(slots.is_open(a.id) && slots.is_open(b.id));
        // Another peer still gets in: one peer cannot take every slot.
        assert!(slots.admit(ip(2), t).is_ok());
    }

    #[test]
    fn a_full_table_closes_a_connection_that_never_sent_a_request_before_an_idle_served_one() {
        let t = Instant::now();
        let mut slots = Slots::new(3, 3);
        // The API server's kept-alive connection, answered once, idle since t+0.
        let apiserver = slots.admit(ip(1), t).unwrap();
        slots.set_phase(apiserver.id, Phase::Busy, t);
        slots.set_phase(apiserver.id, Phase::Waiting, t);
        // Two that never sent anything, newer than the API server's idle time.
        let silent = slots.admit(ip(2), t + Duration::from_secs(1)).unwrap();
        let busy = slots.admit(ip(3), t + Duration::from_secs(2)).unwrap();
        slots.set_phase(busy.id, Phase::Busy, t + Duration::from_secs(2));
        let new = slots.admit(ip(4), t + Duration::from_secs(3)).unwrap();
        assert!(new.evicted);
        assert!(!slots.is_open(silent.id), "the silent connection gave way");
        assert!(slots.is_open(apiserver.id) && slots.is_open(busy.id));
        // Then the idle served one; then nothing: all busy.
        slots.set_phase(new.id, Phase::Busy, t + Duration::from_secs(3));
        assert!(
            slots
                .admit(ip(5), t + Duration::from_secs(4))
                .unwrap()
                .evicted
        );
        assert!(!slots.is_open(apiserver.id));
    }

    #[test]
    fn a_full_table_of_requests_refuses_and_a_closed_connection_cannot_start_one() {
        let t = Instant::now();
        let mut slots = Slots::new(2, 2);
        let a = slots.admit(ip(1), t).unwrap();
        let b = slots.admit(ip(2), t).unwrap();
        slots.set_phase(a.id, Phase::Busy, t);
        let c = slots.admit(ip(3), t).unwrap();
        assert!(c.evicted && !slots.is_open(b.id));
        assert!(
            !slots.set_phase(b.id, Phase::Busy, t),
            "b was told to close: it starts no request"
        );
        slots.set_phase(c.id, Phase::Busy, t);
        assert_eq!(slots.admit(ip(4), t).err(), Some(Refusal::Full));
        slots.remove(a.id);
        assert!(!slots.admit(ip(4), t).unwrap().evicted, "a slot freed");
    }
}
