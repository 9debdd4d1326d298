//! The findings on stdout: one block per finding and a count (control characters escaped: see
//! [`terminal_safe`]), or `{"findings": [...]}` as JSON (where serde escapes them).

use anyhow::Result;
use castellan_core::doctor::{Finding, Severity, terminal_safe};

/// Prints the findings.
pub(super) fn render(findings: &[Finding], json: bool) -> Result<()> {
    use std::io::Write;
    let stdout = std::io::stdout();
    let mut w = stdout.lock();
    if json {
        #[derive(serde::Serialize)]
        struct Doc<'a> {
            findings: &'a [Finding],
        }
        writeln!(w, "{}", serde_json::to_string_pretty(&Doc { findings })?)?;
        return Ok(());
    }
    for f in findings {
        writeln!(
            w,
            "{:<7} {}  {}: {}",
            f.severity.as_str(),
            f.code,
            terminal_safe(&f.subject),
            terminal_safe(&f.message)
        )?;
        writeln!(w, "        fix: {}", terminal_safe(&f.fix))?;
    }
    let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    let (e, wn) = (count(Severity::Error), count(Severity::Warning));
    if e == 0 && wn == 0 {
        writeln!(w, "no problems found")?;
    } else {
        writeln!(w, "{e} error(s), {wn} warning(s)")?;
    }
    Ok(())
}
