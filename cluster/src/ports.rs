//! The port formula: the node of ordinal `n` listens on base + n x step, so
//! a StatefulSet's stable ordinals give stable ports (and stable registry
//! fields and queue names). The node, the operator's builders and its
//! collection all use this one definition.

use serde::{Deserialize, Serialize};

/// How ports map to ordinals: port = base + ordinal x step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortFormula {
    pub base: u16,
    pub step: u16,
}

impl PortFormula {
    /// The port of `ordinal`; `None` when it would be past 65535.
    pub fn port(&self, ordinal: u32) -> Option<u16> {
        let p = u64::from(self.base) + u64::from(ordinal) * u64::from(self.step);
        u16::try_from(p).ok()
    }

    /// The ordinal whose port is `port`, if any.
    pub fn ordinal(&self, port: u16) -> Option<u32> {
        let off = port.checked_sub(self.base)?;
        if self.step == 0 {
            return (off == 0).then_some(0);
        }
        (off % self.step == 0).then(|| u32::from(off / self.step))
    }

    /// Checks that every ordinal below `replicas` has a port, and that no
    /// two of them share one; the error says which rule failed.
    pub fn check(&self, replicas: u32) -> Result<(), String> {
        if replicas > 1 && self.step == 0 {
            return Err("port step 0 gives every node the same port".into());
        }
        let last = replicas.saturating_sub(1);
        if self.port(last).is_none() {
            return Err(format!(
                "base port {} + ordinal {last} x step {} is past 65535",
                self.base, self.step
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: PortFormula = PortFormula {
        base: 8750,
        step: 10,
    };

    #[test]
    fn port_is_base_plus_ordinal_times_step() {
        assert_eq!(F.port(0), Some(8750));
        assert_eq!(F.port(2), Some(8770));
        assert_eq!(F.port(10_000), None);
        assert_eq!(F.port(u32::MAX), None);
    }

    #[test]
    fn ordinal_inverts_port() {
        assert_eq!(F.ordinal(8770), Some(2));
        assert_eq!(F.ordinal(8775), None);
        assert_eq!(F.ordinal(8000), None);
        let one = PortFormula {
            base: 9000,
            step: 0,
        };
        assert_eq!(one.ordinal(9000), Some(0));
        assert_eq!(one.ordinal(9001), None);
    }

    #[test]
    fn check_refuses_ports_past_the_range() {
        assert!(F.check(3).is_ok());
        assert!(F.check(0).is_ok());
        let err = PortFormula {
            base: 65000,
            step: 100,
        }
        .check(7)
        .unwrap_err();
        assert!(err.contains("65535"), "{err}");
        assert!(
            PortFormula {
                base: 9000,
                step: 0
            }
            .check(2)
            .is_err()
        );
    }
}
