//! CPU time over a run, from `/proc`: this process split into the load
//! driver's threads and everything else (the five services and their
//! librdkafka threads), and each backend process by name.

use std::collections::BTreeMap;

/// Ticks of `/proc/*/stat` per second (`USER_HZ`, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// Backends whose CPU is reported, by process name.
pub const BACKENDS: [&str; 3] = ["tansu", "redis-server", "postgres"];

/// user + system ticks from a `stat` line (fields 14 and 15, counted
/// after the parenthesised name, which may hold spaces).
fn ticks_of(stat: &str) -> Option<u64> {
    let after_name = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) is index 11.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn read_ticks(path: &str) -> Option<u64> {
    ticks_of(&std::fs::read_to_string(path).ok()?)
}

/// CPU seconds by account at one instant.
#[derive(Debug, Clone, Default)]
pub struct CpuSample {
    pub accounts: BTreeMap<String, f64>,
}

/// Samples: `services` (this process minus the driver's threads),
/// `driver` (threads whose name starts with `driver_prefix`, and the main
/// thread) and each backend in [`BACKENDS`] (all its processes).
pub fn sample(driver_prefix: &str) -> CpuSample {
    let mut accounts = BTreeMap::new();
    let process = read_ticks("/proc/self/stat").unwrap_or(0);
    let own_pid = std::process::id().to_string();
    let mut driver = 0;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            let path = task.path();
            let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
            let is_main = path.file_name().is_some_and(|id| id.to_string_lossy() == own_pid);
            if is_main || name.trim().starts_with(driver_prefix) {
                driver += read_ticks(&path.join("stat").to_string_lossy()).unwrap_or(0);
            }
        }
    }
    accounts.insert("driver".to_owned(), driver as f64 / TICKS_PER_SECOND);
    accounts.insert("services".to_owned(), process.saturating_sub(driver) as f64 / TICKS_PER_SECOND);
    for backend in BACKENDS {
        accounts.insert(backend.to_owned(), 0.0);
    }
    if let Ok(processes) = std::fs::read_dir("/proc") {
        for process in processes.flatten() {
            let path = process.path();
            let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
            if let Some(backend) = BACKENDS.iter().find(|backend| name.trim() == **backend) {
                let ticks = read_ticks(&path.join("stat").to_string_lossy()).unwrap_or(0);
                if let Some(total) = accounts.get_mut(*backend) {
                    *total += ticks as f64 / TICKS_PER_SECOND;
                }
            }
        }
    }
    CpuSample { accounts }
}

/// CPU milliseconds per contact between two samples, by account, and in
/// total (services + backends, the driver left out).
pub fn report(before: &CpuSample, after: &CpuSample, contacts: usize, elapsed_seconds: f64) {
    let contacts = contacts.max(1) as f64;
    let mut total = 0.0;
    let mut cells = Vec::new();
    for (account, seconds) in &after.accounts {
        let used = seconds - before.accounts.get(account).copied().unwrap_or(0.0);
        if account != "driver" {
            total += used;
        }
        cells.push(format!(
            "{account} {:.2}ms ({:.0}% of a core)",
            used * 1_000.0 / contacts,
            used * 100.0 / elapsed_seconds
        ));
    }
    println!("cpu per contact over {elapsed_seconds:.1} s: {}", cells.join(", "));
    println!("  services + backends: {:.2} ms per contact", total * 1_000.0 / contacts);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_spaces_in_the_name_parse() {
        let line = "42 (rdk:broker 1) S 1 2 3 4 5 6 7 8 9 10 250 40 0 0 20 0";
        assert_eq!(ticks_of(line), Some(290));
    }
}
