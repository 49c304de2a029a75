//! A per-client budget of userspace work: every pod can reach hsdns, and
//! one that floods must not take the server's time from the others. A token
//! bucket per source address (`qps` tokens a second, a second's worth of
//! burst); a query over budget is dropped before any parsing, which costs
//! less than the receive that brought it in.
//!
//! The table of clients is bounded: when full, it is cleared (every client
//! starts with a full bucket again), so its memory is too.

use std::{collections::HashMap, net::IpAddr, sync::Mutex, time::Instant};

/// Clients tracked at most (about 48 bytes each).
const MAX_CLIENTS: usize = 65_536;

struct Bucket {
    tokens: f64,
    at: Instant,
}

pub struct Limiter {
    qps: f64,
    clients: Mutex<HashMap<IpAddr, Bucket>>,
}

impl Limiter {
    /// `qps` 0: no limit.
    pub fn new(qps: u32) -> Self {
        Self {
            qps: f64::from(qps),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one query's token from `client`'s bucket; false when empty.
    pub fn allow(&self, client: IpAddr, now: Instant) -> bool {
        if self.qps == 0.0 {
            return true;
        }
        let mut map = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= MAX_CLIENTS && !map.contains_key(&client) {
            map.clear();
        }
        let b = map.entry(client).or_insert(Bucket {
            tokens: self.qps,
            at: now,
        });
        let refill = now.saturating_duration_since(b.at).as_secs_f64() * self.qps;
        b.tokens = (b.tokens + refill).min(self.qps);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_flooding_client_is_held_to_its_rate_and_others_are_not() {
        let l = Limiter::new(100);
        let (a, b): (IpAddr, IpAddr) = ("169.254.0.1".parse().unwrap(), "fd00::1".parse().unwrap());
        let t0 = Instant::now();
        let allowed = (0..1000).filter(|_| l.allow(a, t0)).count();
        assert_eq!(allowed, 100, "one second's burst");
        assert!(l.allow(b, t0), "another client has its own budget");
        // Half a second later, half a second's worth again.
        let t1 = t0 + Duration::from_millis(500);
        let allowed = (0..1000).filter(|_| l.allow(a, t1)).count();
        assert_eq!(allowed, 50);
        assert!(Limiter::new(0).allow(a, t1), "0 means no limit");
    }

    #[test]
    fn the_client_table_is_bounded() {
        let l = Limiter::new(10);
        let t = Instant::now();
        for i in 0..(MAX_CLIENTS as u32 + 10) {
            l.allow(IpAddr::from(i.to_be_bytes()), t);
        }
        assert!(l.clients.lock().unwrap().len() <= MAX_CLIENTS);
    }
}
