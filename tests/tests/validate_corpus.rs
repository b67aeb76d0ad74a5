//! `syscribe validate` against the corpus in tests/corpus/validate: every valid profile passes
//! with nothing to say; every invalid one reports exactly the problems its `.expect` lists
//! (severity, path, position where given, document, a part of the message), and exits 1 when
//! one of them is an error. See tests/corpus/validate/README.md for the format.

use std::path::{Path, PathBuf};

use syscribe_tests::*;

fn corpus(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("json" | "yaml")
            )
        })
        .collect();
    files.sort();
    files
}

#[derive(Debug, PartialEq)]
struct Reported {
    severity: String,
    position: Option<String>,
    path: String,
    document: u64,
    message: String,
}

fn validate(file: &Path) -> (Option<i32>, Vec<Reported>) {
    validate_with(file, &[])
}

fn validate_with(file: &Path, args: &[&str]) -> (Option<i32>, Vec<Reported>) {
    let output = syscribe()
        .args(["validate", "--format", "json"])
        .args(args)
        .arg(file)
        .output()
        .expect("spawn syscribe");
    let reported = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {line}", file.display()));
            Reported {
                severity: v["severity"].as_str().unwrap().to_owned(),
                position: v["line"]
                    .as_u64()
                    .map(|l| format!("{l}:{}", v["column"].as_u64().unwrap())),
                path: v["path"].as_str().unwrap().to_owned(),
                document: v["document"].as_u64().unwrap(),
                message: v["message"].as_str().unwrap().to_owned(),
            }
        })
        .collect();
    (output.status.code(), reported)
}

#[test]
fn valid_profiles_pass_with_nothing_to_say() {
    let files = corpus("validate/valid");
    assert!(files.len() >= 12, "{} valid profiles", files.len());
    let mut failures = Vec::new();
    for file in &files {
        let (status, reported) = validate(file);
        if status != Some(0) || !reported.is_empty() {
            failures.push(format!(
                "{}: exit {status:?}: {reported:#?}",
                file.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn invalid_profiles_report_exactly_their_problems() {
    let files = corpus("validate/invalid");
    assert!(files.len() >= 50, "{} invalid profiles", files.len());
    expect_exactly(&files, &[]);
}

/// Debian's reference policy store (selinux-policy-default; readable by root only).
const STORE: &str = "/var/lib/selinux/default";

fn require_store() {
    require_root();
    assert!(
        Path::new(STORE).join("active/modules").is_dir(),
        "{STORE} is missing: install selinux-policy-default (cargo xtask test does)"
    );
}

#[test]
fn the_cil_compiler_refuses_what_only_a_policy_can_tell_at_the_profiles_field_or_line() {
    require_store();
    let files = corpus("compile");
    assert!(files.len() >= 15, "{} profiles", files.len());
    expect_exactly(&files, &["--policy-store", STORE]);
}

#[test]
fn valid_selinux_profiles_compile_against_a_real_policy() {
    require_store();
    // The valid corpus's SELinux profiles that name only what Debian's policy has: nothing to
    // say. 09 uses container_file_t (container-selinux's, Fedora's), which Debian's policy
    // lacks — the compiler says so, as it must on such a node; 10 inherits another profile.
    for name in [
        "07-multidoc-two-profiles.yaml",
        "08-selinux-inherit-system.yaml",
        "15-raw-selinux-logger.yaml",
    ] {
        let file = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("corpus/validate/valid")
            .join(name);
        let (status, reported) = validate_with(&file, &["--policy-store", STORE]);
        assert_eq!(
            (status, reported),
            (Some(0), Vec::new()),
            "{name} compiles with nothing to say"
        );
    }
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus/validate/valid/09-selinux-permissive-mode.yaml");
    let (status, reported) = validate_with(&file, &["--policy-store", STORE]);
    assert_eq!(status, Some(1));
    assert!(
        reported.iter().any(|r| r.severity == "error"
            && r.path == "spec.allow.container_file_t.file"
            && r.message
                .contains("\"container_file_t\" is not a type or attribute of the policy")),
        "{reported:#?}"
    );
}

/// Every file reports exactly what its `.expect` lists (see corpus/validate/README.md).
fn expect_exactly(files: &[PathBuf], args: &[&str]) {
    let mut failures = Vec::new();
    for file in files {
        let expect_file = file.with_extension("expect");
        let expected = std::fs::read_to_string(&expect_file)
            .unwrap_or_else(|e| panic!("{}: {e}", expect_file.display()));
        let (status, reported) = validate_with(file, args);
        let mut problems = Vec::new();
        let expected: Vec<Vec<&str>> = expected
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.split('\t').collect())
            .collect();
        for (i, fields) in expected.iter().enumerate() {
            let [severity, position, path, message, rest @ ..] = fields.as_slice() else {
                panic!(
                    "{}: line {}: 4 or 5 tab-separated columns",
                    expect_file.display(),
                    i + 1
                );
            };
            let document: u64 = rest
                .first()
                .and_then(|d| d.strip_prefix("document "))
                .map_or(1, |n| n.parse().unwrap());
            let path = if *path == "-" { "" } else { path };
            let found = reported.iter().any(|r| {
                r.severity == *severity
                    && r.path == path
                    && r.document == document
                    && (*position == "-" || r.position.as_deref() == Some(*position))
                    && (*message == "-" || r.message.contains(message))
            });
            if !found {
                problems.push(format!("  missing: {}", fields.join(" | ")));
            }
        }
        if reported.len() != expected.len() {
            problems.push(format!(
                "  {} reported, {} expected: {reported:#?}",
                reported.len(),
                expected.len()
            ));
        }
        let errors = expected.iter().any(|f| f[0] == "error");
        let want_status = if errors { 1 } else { 0 };
        if status != Some(want_status) {
            problems.push(format!("  exit {status:?}, expected {want_status}"));
        }
        if !problems.is_empty() {
            failures.push(format!("{}:\n{}", file.display(), problems.join("\n")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} files:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}
