//! Loop unrolling for WGSL sources, done before compilation.
//!
//! WGSL has no unroll directive, and CPU Vulkan drivers keep loops rolled: there, a register tile
//! indexed by a loop counter lives in memory, and a subgroup broadcast needs a constant lane. A
//! kernel that wants a loop unrolled writes its body once, between
//!
//! ```text
//! // unroll NAME in START..END
//! ... lines using {NAME} ...
//! // end unroll
//! ```
//!
//! and [`unroll_with`] repeats those lines for NAME = START, …, END − 1, replacing `{NAME}` with
//! the number. Blocks nest; an inner line sees every enclosing block's name. It also fills in
//! named constants, `{NAME}` anywhere in the source, block ranges included (a tile size chosen
//! when the kernel is compiled).

use anyhow::{anyhow, bail, Result};

const BEGIN: &str = "// unroll ";
const END: &str = "// end unroll";

/// `source` with `{NAME}` replaced by its value for each `(NAME, value)` of `constants`, and
/// every `// unroll` block expanded.
pub fn unroll_with(source: &str, constants: &[(&str, usize)]) -> Result<String> {
    let lines: Vec<&str> = source.lines().collect();
    let mut out = String::with_capacity(source.len() * 4);
    let mut names = constants.iter().map(|&(name, value)| (name.to_string(), value)).collect();
    expand(&lines, 0, &mut names, &mut out)?;
    Ok(out)
}

/// `line` with `{NAME}` replaced by its value for every name bound in `names`.
fn substitute(line: &str, names: &[(String, usize)]) -> String {
    let mut line = line.to_string();
    for (name, value) in names {
        line = line.replace(&format!("{{{name}}}"), &value.to_string());
    }
    line
}

/// Expands `lines` (which start at line `first` of the source, counted from 0) into `out`, with
/// the enclosing blocks' names bound in `names`.
fn expand(lines: &[&str], first: usize, names: &mut Vec<(String, usize)>, out: &mut String) -> Result<()> {
    let mut i = 0;
    while i < lines.len() {
        let trimmed = lines[i].trim();
        if let Some(spec) = trimmed.strip_prefix(BEGIN) {
            let spec = substitute(spec, names);
            let (name, range) = parse_spec(&spec).map_err(|e| anyhow!("line {}: {e}", first + i + 1))?;
            let end = matching_end(lines, i)
                .ok_or_else(|| anyhow!("line {}: `{trimmed}` has no matching `{END}`", first + i + 1))?;
            for value in range {
                names.push((name.clone(), value));
                expand(&lines[i + 1..end], first + i + 1, names, out)?;
                names.pop();
            }
            i = end + 1;
        } else if trimmed == END {
            bail!("line {}: `{END}` without an `{BEGIN}` block", first + i + 1);
        } else {
            out.push_str(&substitute(lines[i], names));
            out.push('\n');
            i += 1;
        }
    }
    Ok(())
}

/// `NAME in START..END` → (NAME, START..END).
fn parse_spec(spec: &str) -> Result<(String, std::ops::Range<usize>)> {
    let malformed = || anyhow!("expected `{BEGIN}NAME in START..END`, found `{BEGIN}{spec}`");
    let (name, range) = spec.split_once(" in ").ok_or_else(malformed)?;
    let (start, end) = range.trim().split_once("..").ok_or_else(malformed)?;
    let name = name.trim();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(malformed());
    }
    let start: usize = start.trim().parse().map_err(|_| malformed())?;
    let end: usize = end.trim().parse().map_err(|_| malformed())?;
    Ok((name.to_string(), start..end))
}

/// The index of the `// end unroll` closing the block opened at `lines[open]`.
fn matching_end(lines: &[&str], open: usize) -> Option<usize> {
    let mut depth = 0;
    for (i, line) in lines.iter().enumerate().skip(open) {
        let trimmed = line.trim();
        if trimmed.starts_with(BEGIN) {
            depth += 1;
        } else if trimmed == END {
            depth -= 1;
            if depth == 0 {
                return Some(i);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::unroll_with;
    use anyhow::Result;

    fn unroll(source: &str) -> Result<String> {
        unroll_with(source, &[])
    }

    #[test]
    fn repeats_a_block_with_its_index() {
        let source = "a\n  // unroll r in 0..3\n  x_{r} = {r}u;\n  // end unroll\nb\n";
        assert_eq!(unroll(source).unwrap(), "a\n  x_0 = 0u;\n  x_1 = 1u;\n  x_2 = 2u;\nb\n");
    }

    #[test]
    fn nested_blocks_see_both_names() {
        let source =
            "// unroll j in 1..3\n{\n// unroll r in 0..2\ns{r}_{j}\n// end unroll\n}\n// end unroll\n";
        assert_eq!(unroll(source).unwrap(), "{\ns0_1\ns1_1\n}\n{\ns0_2\ns1_2\n}\n");
    }

    #[test]
    fn leaves_other_braces_and_plain_sources_alone() {
        let source = "fn f() { let a = vec2<f32>(0.0); }\n";
        assert_eq!(unroll(source).unwrap(), source);
    }

    #[test]
    fn constants_fill_in_ranges_and_lines_anywhere() {
        let source = "let t = {PAIRS}u;\n// unroll p in 0..{PAIRS}\nacc_{p} of {PAIRS}\n// end unroll\n";
        assert_eq!(unroll_with(source, &[("PAIRS", 2)]).unwrap(), "let t = 2u;\nacc_0 of 2\nacc_1 of 2\n");
        // Without the constant the range is malformed, not silently empty.
        assert!(unroll(source).unwrap_err().to_string().contains("expected"));
    }

    #[test]
    fn an_empty_range_drops_the_block() {
        assert_eq!(unroll("// unroll r in 2..2\nx{r}\n// end unroll\ny\n").unwrap(), "y\n");
    }

    #[test]
    fn unbalanced_or_malformed_blocks_are_errors_naming_the_line() {
        let err = unroll("a\n// unroll r in 0..2\nx\n").unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("no matching"), "{err}");
        let err = unroll("x\n// end unroll\n").unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("without"), "{err}");
        let err = unroll("// unroll r from 0 to 2\nx\n// end unroll\n").unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("expected"), "{err}");
        let err = unroll("// unroll r in 0..n\nx\n// end unroll\n").unwrap_err().to_string();
        assert!(err.contains("expected"), "{err}");
    }
}
