//! Text helpers shared by every command's output: numbers rounded for people ([`sig`]) and text
//! made safe for a Markdown table cell ([`md`]).

/// `x` rounded to `digits` significant digits, in plain notation for magnitudes from 1e-4 to
/// below 1e6 and in scientific notation (`3.24e-32`) otherwise; `0`, `inf`, `-inf`, `NaN` as such.
/// Used for every number a person reads (report, terminal, figure labels), so that output does
/// not change with last-digit differences between GPU adapters.
pub fn sig(x: f64, digits: usize) -> String {
    let digits = digits.max(1);
    if x == 0.0 {
        return "0".to_string();
    }
    if !x.is_finite() {
        return format!("{x}");
    }
    // Round first, then decide the notation from the rounded value (0.9996 → 1.00, not 0.9996).
    let rounded: f64 = format!("{:.*e}", digits - 1, x).parse().expect("formatted float parses");
    let exponent = rounded.abs().log10().floor() as i32;
    if (-4..6).contains(&exponent) {
        let decimals = (digits as i32 - 1 - exponent).max(0) as usize;
        format!("{rounded:.decimals$}")
    } else {
        format!("{:.*e}", digits - 1, rounded)
    }
}

/// Escapes text for a Markdown table cell.
pub fn md(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        if matches!(ch, '\\' | '|' | '*' | '_' | '`' | '[' | ']' | '<' | '>' | '#') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{md, sig};

    #[test]
    fn sig_rounds_to_significant_digits() {
        assert_eq!(sig(0.0, 3), "0");
        assert_eq!(sig(-0.0, 3), "0");
        assert_eq!(sig(1234.567, 3), "1230");
        assert_eq!(sig(12.345, 3), "12.3");
        assert_eq!(sig(-0.012345, 3), "-0.0123");
        assert_eq!(sig(0.9996, 3), "1.00");
        assert_eq!(sig(3.242321e-32, 3), "3.24e-32");
        assert_eq!(sig(2.5e7, 3), "2.50e7");
        assert_eq!(sig(f64::INFINITY, 3), "inf");
        assert_eq!(sig(f64::NEG_INFINITY, 3), "-inf");
        assert_eq!(sig(0.5, 1), "0.5");
    }

    #[test]
    fn markdown_cells_are_escaped() {
        assert_eq!(md("a|b*c_d"), "a\\|b\\*c\\_d");
    }
}
