//! `syscribe validate FILE…`: every problem of every profile, one line each, compiler style:
//! `FILE:LINE:COLUMN: error: PATH: reason`.

use std::path::PathBuf;

use super::CliError;
use crate::profile::validate::{SelinuxPolicy, Severity, Validator, validate_documents};

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Profiles: OCI seccomp JSON, SeccompProfile or SelinuxProfile YAML/JSON (one or many
    /// documents per file).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// An SELinux policy to check classes and permissions against, laid out as selinuxfs
    /// (`DIR/class/<class>/perms/<permission>`). Default: /sys/fs/selinux when SELinux is on,
    /// else only the syntax of types, classes and permissions is checked.
    #[arg(long, value_name = "DIR")]
    pub selinux_policy: Option<PathBuf>,
    /// Compile every SELinux profile that passes the other checks with the CIL compiler
    /// (secilc) against the modules of this policy store (e.g. /var/lib/selinux/default), plus
    /// Syscribe's container template if the store has none. Default: the host's store when
    /// SELinux is on.
    #[arg(long, value_name = "DIR")]
    pub policy_store: Option<PathBuf>,
    /// Do not compile, even when SELinux is on.
    #[arg(long, conflicts_with = "policy_store")]
    pub no_compile: bool,
    /// `text`: one line per problem, compiler style. `json`: one JSON object per line
    /// (file, document, line, column, severity, path, message) for tools.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Exit status 0 only when no file has an error (warnings are printed, not fatal).
pub fn run(args: ValidateArgs) -> Result<i32, CliError> {
    let mut validator = match &args.selinux_policy {
        Some(dir) => {
            Validator::with_selinux_policy(SelinuxPolicy::load(dir).map_err(|source| {
                CliError::Read {
                    path: dir.join("class"),
                    source,
                }
            })?)
        }
        None => Validator::for_this_host(),
    };
    let store = match &args.policy_store {
        Some(store) => Some(store.clone()),
        None if !args.no_compile && crate::selinux::enabled() => {
            crate::selinux::PolicyBase::host_store()
        }
        None => None,
    };
    if let Some(store) = store {
        let base = crate::selinux::PolicyBase::load(&store)?;
        eprintln!(
            "syscribe: compiling SELinux profiles against {}",
            base.describe()
        );
        validator = validator.with_compiler(std::sync::Arc::new(base));
    }
    let (mut errors, mut warnings) = (0usize, 0usize);
    for path in &args.files {
        let text = crate::files::read_regular_text(path, crate::profile::guard::MAX_PROFILE_BYTES)
            .map_err(|source| CliError::Read {
                path: path.clone(),
                source,
            })?;
        let json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let (documents, found) = validate_documents(&mut validator, &text, json);
        let many = documents > 1;
        for located in found {
            let label = match located.problem.severity {
                Severity::Error => {
                    errors += 1;
                    "error"
                }
                Severity::Warning => {
                    warnings += 1;
                    "warning"
                }
            };
            if args.format == Format::Json {
                let line = serde_json::json!({
                    "file": path,
                    "document": located.document,
                    "line": located.position.map(|p| p.line),
                    "column": located.position.map(|p| p.column),
                    "severity": label,
                    "path": located.problem.path,
                    "message": located.problem.message,
                });
                println!("{line}");
                continue;
            }
            let position = located
                .position
                .map(|p| format!(":{}:{}", p.line, p.column))
                .unwrap_or_default();
            let document = if many {
                format!(" document {}:", located.document)
            } else {
                String::new()
            };
            let field = if located.problem.path.is_empty() {
                String::new()
            } else {
                format!(" {}:", located.problem.path)
            };
            println!(
                "{}{position}:{document} {label}:{field} {}",
                path.display(),
                located.problem.message
            );
        }
    }
    eprintln!(
        "syscribe: {} file(s), {errors} error(s), {warnings} warning(s)",
        args.files.len()
    );
    Ok(if errors == 0 { 0 } else { 1 })
}
