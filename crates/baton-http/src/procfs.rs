//! What `/api/metrics` reads from Linux's `/proc`: the clock-tick rate (`AT_CLKTCK` from this
//! process's auxiliary vector, read once, 100 when unreadable) and the CPU time of process groups
//! (utime + stime, plus the reaped children's cutime + cstime, of every live member). Elsewhere
//! than Linux every answer is "unknown".

use std::collections::HashMap;
use std::sync::OnceLock;

/// Linux's `USER_HZ` on every mainstream architecture; the fallback when the auxiliary vector
/// cannot be read.
pub const CLK_TCK_DEFAULT: u64 = 100;

/// `AT_CLKTCK` in the auxiliary vector (`<elf.h>`).
const AT_CLKTCK: u64 = 17;

/// The unit of `/proc/<pid>/stat` CPU times, in ticks per second.
pub fn clk_tck() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::fs::read("/proc/self/auxv").ok().and_then(|v| auxv_value(&v, AT_CLKTCK)).unwrap_or(CLK_TCK_DEFAULT)
    })
}

/// The value of `key` in an auxiliary vector of native-endian 64-bit (type, value) pairs.
fn auxv_value(auxv: &[u8], key: u64) -> Option<u64> {
    let word = |chunk: &[u8]| chunk.try_into().ok().map(u64::from_ne_bytes);
    auxv.chunks_exact(16)
        .filter_map(|pair| Some((word(&pair[..8])?, word(&pair[8..])?)))
        .take_while(|(kind, _)| *kind != 0)
        .find(|(kind, _)| *kind == key)
        .map(|(_, value)| value)
        .filter(|value| *value > 0)
}

/// The CPU ticks (utime + stime + cutime + cstime) of one `/proc/<pid>/stat` line, with its group.
fn stat_ticks(stat: &str) -> Option<(u32, u64)> {
    // The command name (field 2) may hold spaces and parentheses: fields are counted after its end.
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split(' ').collect();
    if matches!(fields.first()?.chars().next()?, 'Z' | 'X') {
        return None;
    }
    let pgid = fields.get(2)?.parse().ok()?;
    let ticks = (11..=14).map(|i| fields.get(i)?.parse::<u64>().ok()).sum::<Option<u64>>()?;
    Some((pgid, ticks))
}

/// CPU ticks of each of `groups` summed over its live processes (one scan of `/proc`); a group
/// with no live process is absent.
pub fn group_cpu_ticks(groups: &[u32]) -> HashMap<u32, u64> {
    let mut ticks = HashMap::new();
    if groups.is_empty() {
        return ticks;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return ticks;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_str().is_none_or(|name| name.parse::<u32>().is_err()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some((pgid, used)) = stat_ticks(&stat).filter(|(pgid, _)| groups.contains(pgid)) {
            *ticks.entry(pgid).or_insert(0) += used;
        }
    }
    ticks
}

#[cfg(test)]
mod tests {
    use super::*;

    // Fields are counted after the command name's closing parenthesis, whatever it holds.
    #[test]
    fn stat_ticks_reads_the_times_after_an_odd_command_name() {
        let stat = "42 (a) b (c) S 1 42 42 0 -1 0 0 0 0 0 7 3 2 1 20 0 1 0 100 0 0";
        assert_eq!(stat_ticks(stat), Some((42, 13)));
        assert_eq!(stat_ticks("42 (z) Z 1 42 42 0 -1 0 0 0 0 0 7 3 2 1"), None);
    }

    #[test]
    fn auxv_value_finds_the_key_before_the_end() {
        let mut auxv = Vec::new();
        for (k, v) in [(6u64, 4096u64), (17, 250), (0, 0), (17, 999)] {
            auxv.extend(k.to_ne_bytes());
            auxv.extend(v.to_ne_bytes());
        }
        assert_eq!(auxv_value(&auxv, 17), Some(250));
        assert_eq!(auxv_value(&auxv, 3), None);
    }

    // This test process is alive and in its own group: its group has ticks.
    #[test]
    fn clk_tck_is_positive_and_own_group_is_found() {
        assert!(clk_tck() > 0);
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let (pgid, _) = stat_ticks(&stat).unwrap();
        assert!(group_cpu_ticks(&[pgid]).contains_key(&pgid));
    }
}
