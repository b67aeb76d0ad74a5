//! `syscribe validate FILE…`: every problem of every profile, one line each.

use std::path::PathBuf;

use serde::Deserialize as _;

use super::CliError;
use crate::profile::validate::{Severity, Validator};

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Profiles: OCI seccomp JSON, or SeccompProfile YAML/JSON (one or many documents).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// Exit status 0 only when no file has an error (warnings are printed, not fatal).
pub fn run(args: ValidateArgs) -> Result<i32, CliError> {
    let mut validator = Validator::default();
    let (mut errors, mut warnings) = (0usize, 0usize);
    for path in &args.files {
        let text = std::fs::read_to_string(path).map_err(|source| CliError::Read {
            path: path.clone(),
            source,
        })?;
        let many = text.lines().filter(|l| l.trim_end() == "---").count() > 1
            || (text.contains("\n---") && !text.trim_start().starts_with("---"));
        // Lazily: after a syntax error the stream yields that error forever.
        for (i, document) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            let at = if many {
                format!("{} (document {})", path.display(), i + 1)
            } else {
                path.display().to_string()
            };
            let value = match serde_yaml::Value::deserialize(document) {
                Ok(value) => value,
                Err(err) => {
                    errors += 1;
                    let position = err
                        .location()
                        .map(|l| format!(":{}:{}", l.line(), l.column()))
                        .unwrap_or_default();
                    let message = err.to_string();
                    let message = message.split(" at line ").next().unwrap_or(&message);
                    println!("{}{position}: error: {message}", path.display());
                    // A syntax error ends the document stream.
                    break;
                }
            };
            for problem in validator.validate(&value) {
                let label = match problem.severity {
                    Severity::Error => {
                        errors += 1;
                        "error"
                    }
                    Severity::Warning => {
                        warnings += 1;
                        "warning"
                    }
                };
                let field = if problem.path.is_empty() {
                    String::new()
                } else {
                    format!(" {}:", problem.path)
                };
                println!("{at}:{field} {label}: {}", problem.message);
            }
        }
    }
    eprintln!(
        "syscribe: {} file(s), {errors} error(s), {warnings} warning(s)",
        args.files.len()
    );
    Ok(if errors == 0 { 0 } else { 1 })
}
