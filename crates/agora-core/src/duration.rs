//! Durations in the text forms buyers sign (verification windows, auction windows and
//! clocks): a whole number followed by a unit, `500ms`, `30s`, `5m`, `1h`, `2d`. A unit is
//! required, because a bare `30` is as likely meant as seconds as milliseconds. Callers
//! bound the value and name their own error.

const UNITS: [(&str, u64); 5] = [
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
];

/// Reads `text` as milliseconds, or `None` when it has no digits, no unit or an unknown
/// one, or overflows.
pub fn parse_ms(text: &str) -> Option<u64> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let scale = UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, scale)| *scale)?;
    number.parse::<u64>().ok()?.checked_mul(scale)
}

/// Prints milliseconds in the largest unit that divides them exactly: `30s`, `5m`,
/// `1500ms`; what it prints, [`parse_ms`] reads back to the same value.
pub fn format_ms(ms: u64) -> String {
    let (name, scale) = UNITS
        .iter()
        .rev()
        .find(|(_, scale)| ms != 0 && ms.is_multiple_of(*scale))
        .copied()
        .unwrap_or(("ms", 1));
    format!("{}{name}", ms / scale)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{format_ms, parse_ms};

    #[test]
    fn units_are_required_and_known() {
        assert_eq!(parse_ms("500ms"), Some(500));
        assert_eq!(parse_ms("30s"), Some(30_000));
        assert_eq!(parse_ms("2d"), Some(172_800_000));
        for bad in ["30", "s", "", "5 s", "5sec", "-5s", "99999999999999999999d"] {
            assert_eq!(parse_ms(bad), None, "{bad:?}");
        }
        assert_eq!(format_ms(90_000), "90s");
        assert_eq!(format_ms(3_600_000), "1h");
        assert_eq!(format_ms(0), "0ms");
    }

    proptest! {
        #[test]
        fn what_is_printed_reads_back(ms in any::<u64>()) {
            prop_assert_eq!(parse_ms(&format_ms(ms)), Some(ms));
        }
    }
}
