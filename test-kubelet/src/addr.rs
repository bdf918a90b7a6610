//! Pod addresses: one loopback address per pod, from 127.B.0.1 upwards,
//! B being the kubelet's block (`--address-block`, so two kubelets on one
//! host hand out different addresses).
//!
//! Linux routes all of 127.0.0.0/8 to `lo`, so a process can bind any of
//! them without set-up. Each pod binding its own address keeps the fixed
//! health port (the same in every pod of a StatefulSet) from colliding.
//! 127.0.0.x is left to the host (the API server listens on 127.0.0.1).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// Addresses in use; the lowest free one is handed out next.
#[derive(Debug)]
pub struct Pool {
    block: u8,
    used: BTreeSet<u32>,
}

impl Pool {
    /// Block 0 is refused: 127.0.0.x is left to the host.
    pub fn new(block: u8) -> Option<Self> {
        (block != 0).then(|| Self {
            block,
            used: BTreeSet::new(),
        })
    }

    pub fn take(&mut self) -> Option<Ipv4Addr> {
        let first = u32::from_be_bytes([127, self.block, 0, 1]);
        let last = u32::from_be_bytes([127, self.block, 255, 254]);
        let free = (first..=last).find(|a| !self.used.contains(a))?;
        self.used.insert(free);
        Some(Ipv4Addr::from(free))
    }

    /// `wanted` if it is in this block and free (a pod keeps the address
    /// it was reported with across a kubelet restart), else [`Self::take`].
    pub fn take_preferring(&mut self, wanted: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
        match wanted {
            Some(a)
                if a.octets()[..2] == [127, self.block]
                    && a.octets()[3] != 0
                    && a.octets()[3] != 255 =>
            {
                self.used
                    .insert(u32::from(a))
                    .then_some(a)
                    .or_else(|| self.take())
            }
            _ => self.take(),
        }
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
        assert!(Pool::new(0).is_none());
        let mut pool = Pool::new(1).unwrap();
        let a = pool.take().unwrap();
        let b = pool.take().unwrap();
        assert_eq!(a, Ipv4Addr::new(127, 1, 0, 1));
        assert_eq!(b, Ipv4Addr::new(127, 1, 0, 2));
        pool.give_back(a);
        assert_eq!(pool.take(), Some(a));
        assert_eq!(
            Pool::new(2).unwrap().take(),
            Some(Ipv4Addr::new(127, 2, 0, 1))
        );
    }

    #[test]
    fn a_pod_keeps_its_address_when_it_is_free_and_ours() {
        let mut pool = Pool::new(1).unwrap();
        let kept = Ipv4Addr::new(127, 1, 0, 9);
        assert_eq!(pool.take_preferring(Some(kept)), Some(kept));
        let again = pool.take_preferring(Some(kept));
        assert_eq!(again, Some(Ipv4Addr::new(127, 1, 0, 1)), "in use");
        let foreign = pool.take_preferring(Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(foreign, Some(Ipv4Addr::new(127, 1, 0, 2)));
    }
}
