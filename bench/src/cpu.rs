//! CPU time of the processes that take part in a run (nodes, Redis,
//! RabbitMQ, the generator itself), read from `/proc/<pid>/stat` at the start
//! and the end of the measuring window: what share of the machine each one
//! used while the numbers were taken.

use serde::Serialize;

/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ: 100 on Linux for
/// every mainstream architecture).
const TICKS_PER_S: f64 = 100.0;

/// A process to watch: a name for the report and its pid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    pub name: String,
    pub pid: u32,
}

impl std::str::FromStr for Watched {
    type Err = String;

    /// `name=pid`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, pid) = s
            .split_once('=')
            .ok_or_else(|| format!("expected name=pid, got {s:?}"))?;
        let pid = pid
            .parse()
            .map_err(|_| format!("{pid:?} is not a process id"))?;
        Ok(Watched {
            name: name.to_owned(),
            pid,
        })
    }
}

/// CPU one process used over the window, in percent of one core: in all,
/// and the part spent in the kernel (system time: on loopback that includes
/// the TCP receive work of every peer the process writes to).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CpuUse {
    pub name: String,
    pub pid: u32,
    pub percent_of_one_core: f64,
    pub system_percent_of_one_core: f64,
}

/// User and system time of a process so far, in ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticks {
    pub user: u64,
    pub system: u64,
}

/// CPU time of a process so far; `None` if it is gone.
pub fn cpu_ticks(pid: u32) -> Option<Ticks> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// utime and stime from the text of `/proc/<pid>/stat`. The command name
/// (2nd field) is in parentheses and may hold spaces, so fields are counted
/// from the last `)`.
fn parse_stat(stat: &str) -> Option<Ticks> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 of the file, utime 14, stime 15.
    Some(Ticks {
        user: fields.get(11)?.parse().ok()?,
        system: fields.get(12)?.parse().ok()?,
    })
}

/// A snapshot of every watched process's CPU ticks.
pub struct Snapshot {
    at: std::time::Instant,
    ticks: Vec<(Watched, Option<Ticks>)>,
}

impl Snapshot {
    pub fn take(watched: &[Watched]) -> Snapshot {
        Snapshot {
            at: std::time::Instant::now(),
            ticks: watched
                .iter()
                .map(|w| (w.clone(), cpu_ticks(w.pid)))
                .collect(),
        }
    }

    /// CPU used by each process since `self` (processes that vanished are
    /// left out).
    pub fn since(&self) -> Vec<CpuUse> {
        let elapsed = self.at.elapsed().as_secs_f64().max(1e-9);
        let percent = |ticks: u64| ticks as f64 / TICKS_PER_S / elapsed * 100.0;
        self.ticks
            .iter()
            .filter_map(|(w, before)| {
                let (now, before) = (cpu_ticks(w.pid)?, (*before)?);
                let user = now.user.checked_sub(before.user)?;
                let system = now.system.checked_sub(before.system)?;
                Some(CpuUse {
                    name: w.name.clone(),
                    pid: w.pid,
                    percent_of_one_core: percent(user + system),
                    system_percent_of_one_core: percent(system),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_name() {
        let stat =
            "4242 (chat (node) x) S 1 4242 4242 0 -1 4194560 12 0 0 0 250 75 0 0 20 0 3 0 1 2 3";
        assert_eq!(
            parse_stat(stat),
            Some(Ticks {
                user: 250,
                system: 75
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_is_watchable() {
        let me: Watched = format!("me={}", std::process::id()).parse().unwrap();
        assert!(cpu_ticks(me.pid).is_some());
        assert!("nopid".parse::<Watched>().is_err());
        assert!("x=abc".parse::<Watched>().is_err());
    }
}
