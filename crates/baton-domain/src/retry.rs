//! Retry backoff: 10 s · 2^(attempt−1), capped at 5 min, with ±10 % jitter from a caller-given random value.

/// Base delay of the first retry.
pub const RETRY_BASE_MS: u64 = 10_000;
/// Upper bound of any retry delay.
pub const RETRY_CAP_MS: u64 = 300_000;

/// Delay before retry number `attempt` (1 = first retry). `random` is any u64 from a seeded source.
pub fn backoff_ms(attempt: u32, base_ms: u64, random: u64) -> u64 {
    let exponent = attempt.saturating_sub(1).min(20);
    let raw = base_ms.saturating_mul(1u64 << exponent).min(RETRY_CAP_MS);
    // Jitter in [-10 %, +10 %]: spread retries of many tasks so they do not arrive together.
    let span = raw / 5;
    if span == 0 {
        return raw;
    }
    raw - raw / 10 + random % (span + 1)
}

/// Base delay of a quota pause when the provider gave no reset time.
pub const QUOTA_BASE_MS: u64 = 60_000;
/// Upper bound of a quota pause without a reset time.
pub const QUOTA_CAP_MS: u64 = 1_800_000;

/// Delay of the `pauses`-th consecutive quota pause (1 = first): 1 min · 2^(n−1), capped at 30 min.
pub fn quota_backoff_ms(pauses: u32) -> u64 {
    let exponent = pauses.saturating_sub(1).min(20);
    QUOTA_BASE_MS.saturating_mul(1u64 << exponent).min(QUOTA_CAP_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The schedule doubles from 10 s and stops growing at 5 min, jitter staying within ±10 %.
    #[test]
    fn schedule_doubles_then_caps() {
        for (attempt, expected) in [(1, 10_000), (2, 20_000), (3, 40_000), (6, 300_000), (30, 300_000)] {
            for random in [0, 7, u64::MAX / 3, u64::MAX] {
                let delay = backoff_ms(attempt, RETRY_BASE_MS, random);
                assert!(delay >= expected - expected / 10 && delay <= expected + expected / 10, "{attempt} {delay}");
            }
        }
    }
}
