//! Money for people: `$0.0527`, never `0.052649999999999995`.

/// Dollars for people: `$0` for zero, 4 decimals under $1 (`$0.0527`), 2 from $1 (`$12.30`); an
/// amount too small for 4 decimals keeps 2 significant digits (`$0.000031`) rather than reading
/// as zero. JSON output keeps the plain numbers.
pub fn money(usd: f64) -> String {
    if !usd.is_finite() {
        return "unpriced".to_string();
    }
    let sign = if usd < 0.0 { "-" } else { "" };
    let abs = usd.abs();
    if abs == 0.0 {
        return "$0".to_string();
    }
    let decimals = if abs >= 1.0 {
        2
    } else if abs >= 0.000_05 {
        4
    } else {
        // Two significant digits: the first non-zero decimal is at position -floor(log10(abs)).
        (-abs.log10().floor()) as usize + 1
    };
    format!("{sign}${:.decimals$}", round_half_up(abs, decimals))
}

/// `value` rounded half up at `decimals` places, as the decimal it stands for: a cost of 0.05265
/// is stored as 0.052649999…, which plain rounding would take down to 0.0526.
fn round_half_up(value: f64, decimals: usize) -> f64 {
    let scale = 10f64.powi(decimals as i32);
    // A relative nudge far below a cent's fraction, far above the binary representation error.
    (value * scale * (1.0 + 1e-12)).round() / scale
}
