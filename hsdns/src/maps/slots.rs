//! Answer slots of one class: handed out fresh, and reused only after
//! [`QUARANTINE`].

use std::{collections::VecDeque, time::Instant};

use super::QUARANTINE;

pub(super) struct SlotPool {
    pub(super) next: u32,
    pub(super) cap: u32,
    pub(super) free: Vec<u32>,
    pub(super) quarantine: VecDeque<(Instant, u32)>,
}

impl SlotPool {
    pub(super) fn new(cap: u32) -> Self {
        Self {
            next: 0,
            cap,
            free: Vec::new(),
            quarantine: VecDeque::new(),
        }
    }

    pub(super) fn alloc(&mut self) -> Option<u32> {
        if let Some(s) = self.free.pop() {
            return Some(s);
        }
        (self.next < self.cap).then(|| {
            self.next += 1;
            self.next - 1
        })
    }

    pub(super) fn release(&mut self, slot: u32, now: Instant) {
        self.quarantine.push_back((now, slot));
    }

    pub(super) fn mature(&mut self, now: Instant) {
        while let Some(&(t, s)) = self.quarantine.front() {
            if now.duration_since(t) < QUARANTINE {
                break;
            }
            self.quarantine.pop_front();
            self.free.push(s);
        }
    }

    pub(super) fn in_use(&self) -> u32 {
        self.next - self.free.len() as u32 - self.quarantine.len() as u32
    }
}
