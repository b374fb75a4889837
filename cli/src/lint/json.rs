//! `--format json`: one document with each file's report in the npm package's `lint()` shape (the
//! same serializer, `twiml::report::lint_value`), plus totals.

use std::io::{self, Write};

use serde_json::{json, Value};
use twiml::lint::Severity;

use super::Outcome;

pub fn write(out: &mut impl Write, outcomes: &[Outcome]) -> io::Result<()> {
    let mut errors = 0;
    let mut warnings = 0;
    let files: Vec<Value> = outcomes
        .iter()
        .map(|o| match o {
            Outcome::Checked(c) => {
                for d in &c.report.diagnostics {
                    match d.severity() {
                        Severity::Error => errors += 1,
                        Severity::Warning => warnings += 1,
                    }
                }
                let mut v = twiml::report::lint_value(&c.input.bytes, &c.report);
                if let Value::Object(map) = &mut v {
                    map.insert("file".into(), json!(c.input.name));
                    map.insert("fixed".into(), json!(c.fixed));
                }
                v
            }
            Outcome::Failed { name, error } => json!({"file": name, "error": error.to_string()}),
        })
        .collect();
    let doc = json!({
        "files": files,
        "errors": errors,
        "warnings": warnings,
        "exit_code": super::exit_code(outcomes),
    });
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)
}
