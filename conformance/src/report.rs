//! What the runner prints and writes: one line per case (with the reason,
//! the last messages exchanged and the worker's last output under a
//! failure), a summary ending with `N passed, M failed`, and a JSON or
//! JUnit XML file for CI systems.

use std::fmt::Write as _;

use serde_json::{json, Value as Json};

use crate::case::Level;
use crate::session::{CaseOutcome, Status};

/// Transcript lines printed under a failure.
pub const FAILURE_TRANSCRIPT_LINES: usize = 14;

/// Lines of the worker's output printed under a failure.
pub const FAILURE_OUTPUT_LINES: usize = 12;

/// The totals of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Cases that passed.
    pub passed: usize,
    /// Cases that failed, MUST and SHOULD.
    pub failed: usize,
    /// MUST cases that failed.
    pub must_failed: usize,
    /// SHOULD cases that failed.
    pub should_failed: usize,
    /// Cases not run.
    pub skipped: usize,
}

impl Totals {
    /// Counts outcomes.
    pub fn of(outcomes: &[CaseOutcome]) -> Totals {
        let mut t = Totals::default();
        for o in outcomes {
            match (o.status, o.level) {
                (Status::Pass, _) => t.passed += 1,
                (Status::Skip, _) => t.skipped += 1,
                (Status::Fail, Level::Must) => {
                    t.failed += 1;
                    t.must_failed += 1
                }
                (Status::Fail, Level::Should) => {
                    t.failed += 1;
                    t.should_failed += 1
                }
            }
        }
        t
    }

    /// Whether the run fails: a MUST case failed, or with `strict` any case.
    pub fn run_fails(&self, strict: bool) -> bool {
        self.must_failed > 0 || (strict && self.should_failed > 0)
    }

    /// The last line of the text output.
    pub fn last_line(&self) -> String {
        format!("{} passed, {} failed", self.passed, self.failed)
    }
}

fn last_lines(text: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

/// The text for one case: its line, and under a failure the details.
pub fn case_text(o: &CaseOutcome, verbose: bool) -> String {
    let mut out = format!(
        "{} {} [{}] {} ({:.2} s)",
        o.status.as_str(),
        o.id,
        o.level.as_str(),
        o.description,
        o.duration.as_secs_f64()
    );
    if o.status == Status::Skip {
        // Not applicable (the reason says why); `--skip` gives none.
        if let Some(reason) = &o.reason {
            let _ = write!(out, "\n    {reason}");
        }
        return out;
    }
    if o.status == Status::Fail || verbose {
        let indent = "    ";
        if let Some(reason) = &o.reason {
            for (i, line) in reason.lines().enumerate() {
                let _ = write!(
                    out,
                    "\n{indent}{}{line}",
                    if i == 0 { "reason: " } else { "" }
                );
            }
        }
        let _ = write!(out, "\n{indent}requirement: {} ({})", o.requirement, o.spec);
        let lines = if verbose {
            o.transcript.len()
        } else {
            FAILURE_TRANSCRIPT_LINES
        };
        let start = o.transcript.len().saturating_sub(lines);
        let _ = write!(out, "\n{indent}last messages:");
        for line in &o.transcript[start..] {
            let _ = write!(out, "\n{indent}  {line}");
        }
        for (name, text) in [("stderr", &o.worker_stderr), ("stdout", &o.worker_stdout)] {
            let tail = last_lines(text, FAILURE_OUTPUT_LINES);
            if !tail.is_empty() {
                let _ = write!(
                    out,
                    "\n{indent}{name} of the process under test (last lines):"
                );
                for line in tail {
                    let _ = write!(out, "\n{indent}  | {line}");
                }
            }
        }
    }
    out
}

/// The summary lines; the last one is `N passed, M failed`.
pub fn summary_text(outcomes: &[CaseOutcome], strict: bool) -> String {
    let t = Totals::of(outcomes);
    let count = |level: Level, status: Status| {
        outcomes
            .iter()
            .filter(|o| o.level == level && o.status == status)
            .count()
    };
    let mut out = format!(
        "MUST: {} passed, {} failed; SHOULD: {} passed, {} failed{}",
        count(Level::Must, Status::Pass),
        t.must_failed,
        count(Level::Should, Status::Pass),
        t.should_failed,
        if strict {
            " (--strict: SHOULD failures fail the run)"
        } else {
            ""
        }
    );
    if t.skipped > 0 {
        let _ = write!(out, "; {} skipped", t.skipped);
    }
    let _ = write!(out, "\n{}", t.last_line());
    out
}

/// The JSON report.
pub fn json_report(outcomes: &[CaseOutcome], command: &[String], strict: bool) -> String {
    let t = Totals::of(outcomes);
    let cases: Vec<Json> = outcomes
        .iter()
        .map(|o| {
            json!({
                "id": o.id,
                "description": o.description,
                "level": o.level.as_str(),
                "spec": o.spec,
                "requirement": o.requirement,
                "status": o.status.as_str().to_lowercase(),
                "duration_ms": o.duration.as_millis() as u64,
                "reason": o.reason,
                "transcript": o.transcript,
                "worker_stdout": o.worker_stdout,
                "worker_stderr": o.worker_stderr,
            })
        })
        .collect();
    let doc = json!({
        "runner": format!("dask-conformance {}", env!("CARGO_PKG_VERSION")),
        "protocol": "dask/1",
        "command": command,
        "strict": strict,
        "passed": t.passed,
        "failed": t.failed,
        "must_failed": t.must_failed,
        "should_failed": t.should_failed,
        "skipped": t.skipped,
        "ok": !t.run_fails(strict),
        "cases": cases,
    });
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_default();
    s.push('\n');
    s
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 forbids most control characters even escaped.
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t') => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// The JUnit XML report. A failed MUST case (any failed case with
/// `strict`) is a `<failure>`; a failed SHOULD case otherwise is
/// `<skipped>` with the reason, so CI turns red exactly when the exit
/// status says so.
pub fn junit_report(outcomes: &[CaseOutcome], strict: bool) -> String {
    let fails_run =
        |o: &CaseOutcome| o.status == Status::Fail && (o.level == Level::Must || strict);
    let failures = outcomes.iter().filter(|o| fails_run(o)).count();
    let skipped = outcomes
        .iter()
        .filter(|o| o.status != Status::Pass && !fails_run(o))
        .count();
    let time: f64 = outcomes.iter().map(|o| o.duration.as_secs_f64()).sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"dask-conformance\" tests=\"{}\" failures=\"{failures}\" time=\"{time:.3}\">",
        outcomes.len()
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"dask/1 worker\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\" time=\"{time:.3}\">",
        outcomes.len()
    );
    for o in outcomes {
        let classname =
            o.id.rsplit_once('/')
                .map(|(a, _)| a)
                .unwrap_or(&o.id)
                .replace('/', ".");
        let _ = write!(
            out,
            "    <testcase classname=\"{}\" name=\"{} [{}] {}\" time=\"{:.3}\"",
            xml_escape(&classname),
            xml_escape(&o.id),
            o.level.as_str(),
            xml_escape(&o.description),
            o.duration.as_secs_f64()
        );
        let body = case_text(o, false);
        match o.status {
            Status::Pass => out.push_str("/>\n"),
            Status::Skip => {
                let why = o.reason.as_deref().unwrap_or("not run (--skip)");
                let _ = writeln!(
                    out,
                    "><skipped message=\"{}\"/></testcase>",
                    xml_escape(why)
                );
            }
            Status::Fail => {
                let reason = o
                    .reason
                    .as_deref()
                    .unwrap_or("")
                    .lines()
                    .next()
                    .unwrap_or("");
                let tag = if fails_run(o) { "failure" } else { "skipped" };
                let message = if tag == "skipped" {
                    format!("SHOULD not met: {reason}")
                } else {
                    reason.to_owned()
                };
                let _ = write!(
                    out,
                    ">\n      <{tag} message=\"{}\">{}</{tag}>\n    </testcase>\n",
                    xml_escape(&message),
                    xml_escape(&body)
                );
            }
        }
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn outcome(id: &str, level: Level, status: Status) -> CaseOutcome {
        CaseOutcome {
            id: id.into(),
            description: "d <&>".into(),
            level,
            spec: "PROTOCOL.md#x".into(),
            requirement: "MUST x".into(),
            status,
            reason: (status == Status::Fail).then(|| "why\nmore".into()),
            duration: Duration::from_millis(5),
            transcript: vec!["    1 ms  worker -> scheduler  {\"op\": \"hello\"}".into()],
            worker_stdout: String::new(),
            worker_stderr: "boom\n".into(),
        }
    }

    #[test]
    fn summary_ends_with_the_totals_line_and_should_fails_only_strict_runs() {
        let os = vec![
            outcome("dask-1/a/1", Level::Must, Status::Pass),
            outcome("dask-1/a/2", Level::Should, Status::Fail),
            outcome("dask-1/a/3", Level::Must, Status::Skip),
        ];
        let s = summary_text(&os, false);
        assert!(s.ends_with("\n1 passed, 1 failed"), "{s}");
        let t = Totals::of(&os);
        assert!(!t.run_fails(false));
        assert!(t.run_fails(true));
    }

    #[test]
    fn failures_show_reason_transcript_and_worker_output() {
        let text = case_text(&outcome("dask-1/a/1", Level::Must, Status::Fail), false);
        assert!(text.starts_with("FAIL dask-1/a/1 [MUST]"));
        assert!(text.contains("reason: why\n    more"));
        assert!(text.contains("worker -> scheduler"));
        assert!(text.contains("| boom"));
    }

    #[test]
    fn a_case_not_applicable_says_why_and_a_skipped_one_does_not() {
        let mut o = outcome("dask-1/a/1", Level::Must, Status::Skip);
        assert_eq!(case_text(&o, false).lines().count(), 1);
        assert!(
            junit_report(&[o.clone()], false).contains("<skipped message=\"not run (--skip)\"/>")
        );
        o.reason = Some("not applicable: no `x` <here>".into());
        let text = case_text(&o, false);
        assert!(text.starts_with("SKIP dask-1/a/1 [MUST]"), "{text}");
        assert!(
            text.ends_with("\n    not applicable: no `x` <here>"),
            "{text}"
        );
        let x = junit_report(&[o], false);
        assert!(
            x.contains("<skipped message=\"not applicable: no `x` &lt;here&gt;\"/>"),
            "{x}"
        );
    }

    #[test]
    fn reports_parse_and_escape() {
        let os = vec![
            outcome("dask-1/a/1", Level::Must, Status::Fail),
            outcome("dask-1/a/2", Level::Should, Status::Fail),
        ];
        let j: Json = serde_json::from_str(&json_report(&os, &["w".into()], false)).unwrap();
        assert_eq!(j["failed"], 2);
        assert_eq!(j["must_failed"], 1);
        assert_eq!(j["cases"][0]["status"], "fail");
        let x = junit_report(&os, false);
        assert!(x.contains("failures=\"1\""));
        assert!(x.contains("<skipped message=\"SHOULD not met: why\">"));
        assert!(x.contains("d &lt;&amp;&gt;"));
    }
}
