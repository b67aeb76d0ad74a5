//! Reading a profile file: OCI seccomp JSON, or an upstream SeccompProfile in YAML or JSON.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use thiserror::Error;

use super::{
    crd::{API_GROUP, KIND, SeccompProfileDoc},
    seccomp::Seccomp,
};

#[derive(Debug, Error)]
pub enum LoadError {
    #[error("cannot read profile {path}: {source}", path = .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}{at}: {message}", path = .path.display(), at = location(*.line, *.column))]
    Syntax {
        path: PathBuf,
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },
    #[error("{path}: kind {kind:?} is not a seccomp profile (expected {KIND} of {API_GROUP}, or OCI seccomp JSON)", path = .path.display())]
    WrongKind { path: PathBuf, kind: String },
}

fn location(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!(":{line}:{column}"),
        (Some(line), None) => format!(":{line}"),
        _ => String::new(),
    }
}

/// Reads and parses the profile at `path`.
pub fn load_profile(path: &Path) -> Result<Seccomp, LoadError> {
    let text = crate::files::read_regular_text(path, super::guard::MAX_PROFILE_BYTES).map_err(
        |source| LoadError::Read {
            path: path.to_owned(),
            source,
        },
    )?;
    parse_profile(path, &text)
}

/// Parses a profile; `path` only names the source in errors.
pub fn parse_profile(path: &Path, text: &str) -> Result<Seccomp, LoadError> {
    super::guard::check(text).map_err(|err| LoadError::Syntax {
        path: path.to_owned(),
        line: err.position().map(|p| p.0),
        column: err.position().map(|p| p.1),
        message: err.reason(),
    })?;
    // First look at the shape (is there a `kind`?), then parse again into the right type so
    // that errors keep their line and column.
    let value: serde_yaml::Value = parse(path, text)?;
    let kind = value.get("kind").map(|kind| match kind.as_str() {
        Some(kind) => kind.to_owned(),
        None => format!("{kind:?}"),
    });
    match kind {
        None => parse::<Seccomp>(path, text),
        Some(kind) if kind == KIND => {
            let doc: SeccompProfileDoc = parse(path, text)?;
            let api_group = doc.api_version.split('/').next().unwrap_or_default();
            if api_group != API_GROUP {
                return Err(LoadError::WrongKind {
                    path: path.to_owned(),
                    kind: format!("{} of {}", doc.kind, doc.api_version),
                });
            }
            let spec = doc.spec;
            if let Some(base) = spec.base_profile_name {
                return Err(LoadError::Syntax {
                    path: path.to_owned(),
                    line: None,
                    column: None,
                    message: format!(
                        "spec.baseProfileName: {base:?} names another profile, which a file cannot \
                         resolve; merge it into this one first"
                    ),
                });
            }
            Ok(Seccomp {
                default_action: spec.default_action,
                default_errno_ret: None,
                architectures: spec.architectures,
                flags: spec.flags,
                listener_path: spec.listener_path,
                listener_metadata: spec.listener_metadata,
                syscalls: spec.syscalls,
                syscribe: None,
            })
        }
        Some(kind) => Err(LoadError::WrongKind {
            path: path.to_owned(),
            kind,
        }),
    }
}

fn parse<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, LoadError> {
    serde_yaml::from_str(text).map_err(|err| {
        let loc = err.location();
        LoadError::Syntax {
            path: path.to_owned(),
            line: loc.as_ref().map(|l| l.line()),
            column: loc.as_ref().map(|l| l.column()),
            message: strip_location(&err.to_string()),
        }
    })
}

/// serde_yaml appends " at line L column C" to its messages; the error prints it in front.
fn strip_location(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::seccomp::Action;

    fn p() -> &'static Path {
        Path::new("p.yaml")
    }

    #[test]
    fn oci_json_parses() {
        let text = r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64"],
            "syscalls":[{"names":["read","write"],"action":"SCMP_ACT_ALLOW"}]}"#;
        let profile = parse_profile(p(), text).unwrap();
        assert_eq!(profile.default_action, Action::Errno);
        assert_eq!(profile.syscalls[0].names, ["read", "write"]);
    }

    #[test]
    fn seccomp_profile_yaml_parses() {
        let text = "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SeccompProfile\n\
                    metadata:\n  name: ls\n  uid: abc\nspec:\n  defaultAction: SCMP_ACT_LOG\n";
        let profile = parse_profile(p(), text).unwrap();
        assert_eq!(profile.default_action, Action::Log);
        assert!(profile.syscalls.is_empty());
    }

    #[test]
    fn errors_name_line_column_and_field() {
        let text = "{\"defaultAction\": \"SCMP_ACT_ERRNO\",\n \"syscalls\": [{\"names\": [\"read\"], \"action\": \"SCMP_ACT_ALOW\"}]}";
        let err = parse_profile(p(), text).unwrap_err().to_string();
        assert!(err.starts_with("p.yaml:2:"), "{err}");
        assert!(err.contains("SCMP_ACT_ALOW"), "{err}");

        let err = parse_profile(
            p(),
            "{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"sycalls\": []}",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown field `sycalls`"), "{err}");

        let err = parse_profile(p(), "{ not: [json").unwrap_err().to_string();
        assert!(err.starts_with("p.yaml:"), "{err}");
    }

    #[test]
    fn other_kinds_are_refused() {
        let text = "apiVersion: v1\nkind: Pod\nspec: {}\n";
        let err = parse_profile(p(), text).unwrap_err().to_string();
        assert!(
            err.contains("kind \"Pod\" is not a seccomp profile"),
            "{err}"
        );
        let text = "apiVersion: example.com/v1\nkind: SeccompProfile\nspec: {defaultAction: SCMP_ACT_LOG}\n";
        let err = parse_profile(p(), text).unwrap_err().to_string();
        assert!(err.contains("example.com/v1"), "{err}");
    }

    #[test]
    fn base_profiles_are_refused_by_name() {
        let text = "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SeccompProfile\n\
                    spec: {defaultAction: SCMP_ACT_ERRNO, baseProfileName: runc-v1.1.5}\n";
        let err = parse_profile(p(), text).unwrap_err().to_string();
        assert!(err.contains("spec.baseProfileName"), "{err}");
    }

    #[test]
    fn unreadable_file_names_the_path() {
        let err = load_profile(Path::new("/nonexistent/p.json"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("cannot read profile /nonexistent/p.json:"),
            "{err}"
        );
    }
}
