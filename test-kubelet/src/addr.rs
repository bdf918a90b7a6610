//! Pod addresses: one loopback address per pod, from 127.1.0.1 upwards.
//!
//! Linux routes all of 127.0.0.0/8 to `lo`, so a process can bind any of
//! them without set-up. Each pod binding its own address keeps the fixed
//! health port (the same in every pod of a StatefulSet) from colliding.
//! 127.0.0.x is left to the host (the API server listens on 127.0.0.1).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

const FIRST: u32 = u32::from_be_bytes([127, 1, 0, 1]);
const LAST: u32 = u32::from_be_bytes([127, 254, 255, 254]);

/// Addresses in use; the lowest free one is handed out next.
#[derive(Debug, Default)]
pub struct Pool {
    used: BTreeSet<u32>,
}

impl Pool {
    pub fn take(&mut self) -> Option<Ipv4Addr> {
        let free = (FIRST..=LAST).find(|a| !self.used.contains(a))?;
        self.used.insert(free);
        Some(Ipv4Addr::from(free))
    }

    pub fn give_back(&mut self, addr: Ipv4Addr) {
        self.used.remove(&u32::from(addr));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_distinct_addresses_and_reuses_returned_ones() {
        let mut pool = Pool::default();
        let a = pool.take().unwrap();
        let b = pool.take().unwrap();
        assert_eq!(a, Ipv4Addr::new(127, 1, 0, 1));
        assert_eq!(b, Ipv4Addr::new(127, 1, 0, 2));
        pool.give_back(a);
        assert_eq!(pool.take(), Some(a));
    }
}
