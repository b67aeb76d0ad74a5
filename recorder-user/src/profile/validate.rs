//! Validating profiles — OCI seccomp JSON, a SeccompProfile, a SelinuxProfile — beyond a
//! schema: every problem, each with the JSON path of its field and a reason a person
//! understands. Syscall names are checked with libseccomp for every listed architecture, with a
//! "did you mean"; SELinux classes and permissions against the loaded policy when there is one
//! (else their syntax). Works on the parsed document tree, so unknown fields and wrong types are
//! reported together with everything else, not one at a time.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use libseccomp::{ScmpArch, ScmpSyscall};
use serde_yaml::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    /// `spec.syscalls[2].names[4]`, or `` for the document itself.
    pub path: String,
    pub message: String,
    /// Where in the field's string value (a RawSelinuxProfile's policy) the problem is.
    pub within: Option<super::cil::Pos>,
}

/// `path: message`, or the message alone for the document itself (as refusals and statuses
/// say it; `syscribe validate` adds line and column of its own).
impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

const ACTIONS: [&str; 9] = [
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
];
const FLAGS: [&str; 4] = [
    "SECCOMP_FILTER_FLAG_TSYNC",
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
];
const OPS: [&str; 7] = [
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
];
/// SCMP_ARCH_* names libseccomp knows, with its architecture.
const ARCHES: [(&str, ScmpArch); 20] = [
    ("SCMP_ARCH_NATIVE", ScmpArch::Native),
    ("SCMP_ARCH_X86", ScmpArch::X86),
    ("SCMP_ARCH_X86_64", ScmpArch::X8664),
    ("SCMP_ARCH_X32", ScmpArch::X32),
    ("SCMP_ARCH_ARM", ScmpArch::Arm),
    ("SCMP_ARCH_AARCH64", ScmpArch::Aarch64),
    ("SCMP_ARCH_MIPS", ScmpArch::Mips),
    ("SCMP_ARCH_MIPS64", ScmpArch::Mips64),
    ("SCMP_ARCH_MIPS64N32", ScmpArch::Mips64N32),
    ("SCMP_ARCH_MIPSEL", ScmpArch::Mipsel),
    ("SCMP_ARCH_MIPSEL64", ScmpArch::Mipsel64),
    ("SCMP_ARCH_MIPSEL64N32", ScmpArch::Mipsel64N32),
    ("SCMP_ARCH_PPC", ScmpArch::Ppc),
    ("SCMP_ARCH_PPC64", ScmpArch::Ppc64),
    ("SCMP_ARCH_PPC64LE", ScmpArch::Ppc64Le),
    ("SCMP_ARCH_S390", ScmpArch::S390),
    ("SCMP_ARCH_S390X", ScmpArch::S390X),
    ("SCMP_ARCH_PARISC", ScmpArch::Parisc),
    ("SCMP_ARCH_PARISC64", ScmpArch::Parisc64),
    ("SCMP_ARCH_RISCV64", ScmpArch::Riscv64),
];

/// Top-level fields of an OCI seccomp document / a SeccompProfile spec.
const OCI_FIELDS: [&str; 7] = [
    "defaultAction",
    "defaultErrnoRet",
    "architectures",
    "flags",
    "listenerPath",
    "listenerMetadata",
    "syscalls",
];
const SPEC_ONLY_FIELDS: [&str; 2] = ["baseProfileName", "state"];
/// syscribe's recording metadata in OCI documents it wrote (runtimes ignore it).
const OCI_ONLY_FIELDS: [&str; 1] = ["syscribe"];
/// The OCI runtime-spec's (and SeccompProfile's) rule fields; nothing else is read by runc.
const RULE_FIELDS: [&str; 4] = ["names", "action", "errnoRet", "args"];
const ARG_FIELDS: [&str; 4] = ["index", "value", "valueTwo", "op"];

/// Top-level fields of a SeccompProfile or SelinuxProfile object.
const OBJECT_FIELDS: [&str; 5] = ["apiVersion", "kind", "metadata", "spec", "status"];
const STATES: [&str; 2] = ["Enabled", "Disabled"];
const SELINUX_FIELDS: [&str; 5] = ["inherit", "allow", "mode", "permissive", "state"];
const INHERIT_FIELDS: [&str; 2] = ["kind", "name"];
const INHERIT_KINDS: [&str; 2] = ["System", "SelinuxProfile"];
const SELINUX_MODES: [&str; 2] = ["Enforcing", "Permissive"];

/// The object classes of an SELinux policy with their permissions (common ones included), as
/// selinuxfs lists them: `<dir>/class/<class>/perms/<permission>`.
#[derive(Debug, Default, Clone)]
pub struct SelinuxPolicy {
    pub classes: BTreeMap<String, BTreeSet<String>>,
}

impl SelinuxPolicy {
    /// The kernel's loaded policy, when SELinux is on.
    pub const SELINUXFS: &str = "/sys/fs/selinux";

    pub fn load(dir: &Path) -> std::io::Result<Self> {
        let mut classes = BTreeMap::new();
        for class in std::fs::read_dir(dir.join("class"))? {
            let class = class?;
            let mut perms = BTreeSet::new();
            for perm in std::fs::read_dir(class.path().join("perms"))? {
                perms.insert(perm?.file_name().to_string_lossy().into_owned());
            }
            classes.insert(class.file_name().to_string_lossy().into_owned(), perms);
        }
        Ok(Self { classes })
    }
}

/// The semantic check of an SELinux profile: its module compiled against a real policy by the
/// CIL compiler (see `crate::selinux::PolicyBase`).
pub trait ModuleCheck: Send + Sync {
    /// The compiler's complaints about `module` as (module line, message) — none when it
    /// compiled — or why it could not be compiled at all.
    fn check(&self, module: &str) -> Result<Vec<(Option<usize>, String)>, String>;
}

/// Syscall names per architecture, from libseccomp (built once per validator), and the SELinux
/// policy to check allow rules against, if any.
#[derive(Default)]
pub struct Validator {
    /// Compiles SELinux profiles that passed every other check, when set.
    compiler: Option<std::sync::Arc<dyn ModuleCheck>>,
    names: HashMap<String, Vec<String>>,
    /// The same names as sets, for membership (a review may hold 100k names).
    name_sets: HashMap<String, std::collections::HashSet<String>>,
    /// Every syscall name of every architecture → the first architecture that has it.
    anywhere: Option<HashMap<String, &'static str>>,
    selinux: Option<SelinuxPolicy>,
    /// Syscall-name suggestions left for the document being validated: each compares the
    /// name with every known one, so a document of thousands of bad names (the webhook takes
    /// what anyone sends) gets suggestions for the first ones only.
    suggestions_left: usize,
}

/// Words longer than this get no "did you mean" (every name it could suggest is far shorter).
const MAX_SUGGESTED_LEN: usize = 64;

/// Syscall-name suggestions per document.
const MAX_SUGGESTIONS: usize = 64;

struct Report<'a> {
    problems: &'a mut Vec<Problem>,
    /// Problems beyond MAX_LISTED of their severity: counted, not listed.
    dropped: [usize; 2],
    listed: [usize; 2],
}

/// Problems listed per document and severity; the rest are counted ("and N more"): a
/// document the webhook or a file hands over may hold a problem per value.
pub const MAX_LISTED: usize = 1000;

impl Report<'_> {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push(Severity::Error, path, message);
    }
    fn warning(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push(Severity::Warning, path, message);
    }
    fn push(&mut self, severity: Severity, path: impl Into<String>, message: impl Into<String>) {
        if !self.room(severity) {
            return;
        }
        self.problems.push(Problem {
            severity,
            path: path.into(),
            message: message.into(),
            within: None,
        });
    }
    /// Whether one more problem of `severity` is listed (else it is counted).
    fn room(&mut self, severity: Severity) -> bool {
        let i = severity as usize;
        if self.listed[i] >= MAX_LISTED {
            self.dropped[i] += 1;
            return false;
        }
        self.listed[i] += 1;
        true
    }
    /// A problem of `severity` at `path`, and at `within` inside its string value if given.
    fn push_at(
        &mut self,
        severity: Severity,
        path: &str,
        within: Option<super::cil::Pos>,
        message: String,
    ) {
        if self.room(severity) {
            self.problems.push(Problem {
                severity,
                path: path.to_owned(),
                message,
                within,
            });
        }
    }
    /// A problem at `at` inside the string value of `path`.
    fn error_within(&mut self, path: &str, at: super::cil::Pos, message: &str) {
        if !self.room(Severity::Error) {
            return;
        }
        self.problems.push(Problem {
            severity: Severity::Error,
            path: path.to_owned(),
            message: format!("policy line {at}: {message}"),
            within: Some(at),
        });
    }
}

fn join(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_owned()
    } else {
        format!("{prefix}.{field}")
    }
}

/// Levenshtein distance, for suggestions.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = (row[j] + 1)
                .min(current + 1)
                .min(previous + usize::from(ca != *cb));
            previous = current;
        }
    }
    row[b.len()]
}

/// ` (did you mean "x"?)` for the closest candidate: at most a third of the part of the word
/// that differs from it (after their common prefix — `SCMP_ARCH_` says nothing) may change,
/// and at least 2 edits (a swapped pair of letters is two); or one is the other cut short. Ties go to the longer common
/// prefix (`open` → `openat`, not `fsopen`).
pub(crate) fn suggestion<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    // The edit distance costs length × length: a word far longer than any candidate (the
    // longest syscall name has 22 characters) gets none, so hostile 16 KB names cost nothing.
    if word.len() > MAX_SUGGESTED_LEN {
        return String::new();
    }
    let word = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .filter_map(|c| {
            let lower = c.to_ascii_lowercase();
            let common = word
                .bytes()
                .zip(lower.bytes())
                .take_while(|(a, b)| a == b)
                .count();
            let d = distance(&word, &lower);
            let limit = ((word.len() - common) / 3).max(2);
            // One is the other cut short (`SCMP_CMP_EQUAL`, `SCMP_CMP_MASKED`).
            let (short, long) = (word.len().min(lower.len()), word.len().max(lower.len()));
            let cut_short = common == short && short * 3 >= long * 2;
            (d <= limit || cut_short).then_some((d, std::cmp::Reverse(common), c))
        })
        .min()
        .map(|(_, _, c)| format!(" (did you mean {c:?}?)"))
        .unwrap_or_default()
}

/// Other names people give architectures.
const ARCH_ALIASES: [(&str, &str); 7] = [
    ("x86_32", "SCMP_ARCH_X86"),
    ("amd64", "SCMP_ARCH_X86_64"),
    ("x86_64", "SCMP_ARCH_X86_64"),
    ("arm64", "SCMP_ARCH_AARCH64"),
    ("i386", "SCMP_ARCH_X86"),
    ("i686", "SCMP_ARCH_X86"),
    ("x86", "SCMP_ARCH_X86"),
];

/// The suggestion for an unknown architecture: aliases (`amd64`, `SCMP_ARCH_ARM64`) and names
/// without the `SCMP_ARCH_` prefix first, then spelling.
fn arch_suggestion(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    let bare = lower.strip_prefix("scmp_arch_").unwrap_or(&lower);
    if let Some((_, arch)) = ARCH_ALIASES.iter().find(|(alias, _)| *alias == bare) {
        return format!(" (did you mean {arch:?}?)");
    }
    let prefixed = format!("SCMP_ARCH_{}", bare.to_ascii_uppercase());
    if let Some((arch, _)) = ARCHES.iter().find(|(n, _)| *n == prefixed) {
        return format!(" (did you mean {arch:?}?)");
    }
    suggestion(name, ARCHES.iter().map(|(n, _)| *n))
}

/// Fields of Docker's seccomp format, which OCI runtimes ignore (so its conditions would not
/// apply): named as such rather than as typos.
const DOCKER_FIELDS: [&str; 3] = ["archMap", "includes", "excludes"];

/// Each key of `map` that is not in `allowed`, with the closest allowed one.
fn unknown_fields(
    map: &serde_yaml::Mapping,
    prefix: &str,
    allowed: &[&str],
    report: &mut Report<'_>,
) {
    for key in map.keys() {
        let key = key.as_str().unwrap_or("?");
        if allowed.contains(&key) {
            continue;
        }
        let top = allowed.contains(&"apiVersion");
        if key == "comment" && !top {
            report.warning(
                join(prefix, key),
                "ignored: OCI runtimes and SeccompProfile have no comments (syscribe run refuses it)",
            );
            continue;
        }
        let message = if DOCKER_FIELDS.contains(&key) && !top {
            "unknown field: Docker's seccomp format, which OCI runtimes (runc, crun) ignore"
                .to_owned()
        } else if top && (OCI_FIELDS.contains(&key) || SELINUX_FIELDS.contains(&key)) {
            "unknown field here: it belongs in spec".to_owned()
        } else {
            format!("unknown field{}", suggestion(key, allowed.iter().copied()))
        };
        report.error(join(prefix, key), message);
    }
}

/// A string field with a fixed set of values.
fn one_of(value: &Value, path: &str, what: &str, allowed: &[&str], report: &mut Report<'_>) {
    match value.as_str() {
        Some(v) if allowed.contains(&v) => {}
        Some(v) => report.error(
            path,
            format!("unknown {what} {v:?} (expected {})", allowed.join(" or ")),
        ),
        None => report.error(
            path,
            format!(
                "must be a string ({}), not {}",
                allowed.join(" or "),
                type_name(value)
            ),
        ),
    }
}

/// `spec.state`: Enabled or Disabled.
fn state(spec: &Value, report: &mut Report<'_>) {
    if let Some(state) = spec.get("state") {
        one_of(state, "spec.state", "state", &STATES, report);
    }
}

/// Compiler lines that only say that compiling stopped (the line before says why).
const COMPILER_TRAILERS: [&str; 5] = [
    "Failed to resolve AST",
    "Failed to build AST",
    "Failed to compile cildb",
    "Failed to copy block contents into blockinherit",
    "Bad block declaration",
];

/// The semantic check: the profile's module compiled against a real policy, each complaint
/// said at the field or policy line its module line comes from.
fn compile(compiler: &dyn ModuleCheck, doc: &Value, report: &mut Report<'_>) {
    let Some(module) = super::cil::module_of(doc) else {
        return;
    };
    if let Some(other) = module.inherits_profiles.first() {
        report.warning(
            "spec.inherit",
            format!(
                "not compiled here: it inherits SelinuxProfile {other}, whose module is on the nodes (each node compiles this one when installing it)"
            ),
        );
        return;
    }
    let complaints = match compiler.check(&module.cil) {
        Ok(complaints) => complaints,
        Err(why) => {
            report.warning("", format!("not compiled against a policy: {why}"));
            return;
        }
    };
    let mut said = 0;
    // A line that names no place explains the next one that does ("Failed to resolve
    // permission reed", then "Failed to resolve allow statement at …:2").
    let mut pending: Vec<&str> = Vec::new();
    for (i, (line, message)) in complaints.iter().enumerate() {
        let trailer = |m: &str| COMPILER_TRAILERS.iter().any(|t| m.starts_with(t));
        let next_placed = complaints[i + 1..]
            .iter()
            .any(|(l, m)| l.is_some() && !trailer(m));
        if trailer(message) {
            continue;
        }
        if line.is_none() && next_placed {
            pending.push(message);
            continue;
        }
        let origin = line.and_then(|l| module.origin(l));
        let message = if !pending.is_empty() {
            let message = if message.starts_with("Previous declaration") {
                format!("{}: {message}", pending.join("; "))
            } else {
                format!("{message}: {}", pending.join("; "))
            };
            pending.clear();
            message
        } else if message.contains(": ") {
            message.clone() // the compiler's line, with what it could not resolve named
        } else {
            format!("{message}{}", hint(message))
        };
        let message = format!("the CIL compiler refused it: {message}");
        match origin {
            Some(origin) => {
                let message = match origin.within {
                    Some(at) => format!("policy line {at}: {message}"),
                    None => message,
                };
                report.push_at(Severity::Error, &origin.path, origin.within, message);
            }
            None => report.error("", message),
        }
        said += 1;
    }
    if said == 0 && !complaints.is_empty() {
        let all: Vec<&str> = complaints.iter().map(|(_, m)| m.as_str()).collect();
        report.error(
            "",
            format!("the CIL compiler refused it: {}", all.join("; ")),
        );
    }
}

/// What a compiler complaint usually means, for people who did not write the compiler.
fn hint(message: &str) -> &'static str {
    if message.starts_with("Failed to resolve allow") {
        " (a type, class or permission the policy does not have)"
    } else if message.starts_with("Failed to resolve blockinherit") {
        " (no template or profile of that name in the policy)"
    } else if message.starts_with("Failed to resolve") {
        " (a name the policy does not have)"
    } else if message.contains("Re-declaration") {
        " (the policy already declares that name)"
    } else {
        ""
    }
}

/// Fields of a RawSelinuxProfile's spec.
const RAW_SELINUX_FIELDS: [&str; 2] = ["policy", "state"];

/// A RawSelinuxProfile's spec: its CIL policy read with a position for every problem.
fn raw_selinux(spec: &Value, report: &mut Report<'_>) {
    let Some(map) = spec.as_mapping() else {
        report.error(
            "spec",
            format!("must be a mapping, not {}", type_name(spec)),
        );
        return;
    };
    unknown_fields(map, "spec", &RAW_SELINUX_FIELDS, report);
    state(spec, report);
    let policy = match spec.get("policy") {
        None => {
            report.error(
                "spec.policy",
                "missing: a RawSelinuxProfile needs its policy (CIL statements)",
            );
            return;
        }
        Some(Value::String(policy)) => policy,
        Some(other) => {
            report.error(
                "spec.policy",
                format!(
                    "must be a string of CIL statements, not {}",
                    type_name(other)
                ),
            );
            return;
        }
    };
    if policy.trim().is_empty() {
        report.error("spec.policy", "empty: no CIL statement in the policy");
        return;
    }
    let (statements, mut found) = super::cil::parse(policy);
    found.extend(super::cil::check_statements(
        &statements,
        super::cil::RESTRICTED,
    ));
    found.sort_by_key(|p| p.at);
    for problem in found {
        report.error_within("spec.policy", problem.at, &problem.message);
    }
}

/// An errno a filter returns: a number libseccomp takes (see `enforce::MAX_ERRNO`).
fn errno_ret(v: &Value, path: &str, report: &mut Report<'_>) {
    match v.as_u64() {
        None => report.error(path, format!("must be a number ≥ 0, not {}", type_name(v))),
        Some(n) if n > u64::from(super::enforce::MAX_ERRNO) => report.error(
            path,
            format!(
                "{n} is more than {}, the largest errno libseccomp (runc, crun) accepts",
                super::enforce::MAX_ERRNO
            ),
        ),
        Some(_) => {}
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.as_i64().is_some_and(|n| n < 0) => "a negative number",
        Value::Number(n) if n.is_f64() => "a fraction",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`, with a lowercase-only variant for classes and permissions.
fn identifier(word: &str, lowercase: bool) -> bool {
    let mut chars = word.chars();
    chars.next().is_some_and(|c| {
        c == '_' || c.is_ascii_alphabetic() && (!lowercase || c.is_ascii_lowercase())
    }) && chars.all(|c| {
        c == '_'
            || c.is_ascii_digit()
            || c.is_ascii_alphabetic() && (!lowercase || c.is_ascii_lowercase())
    })
}

impl Validator {
    /// A validator that checks SELinux classes and permissions against `policy`.
    pub fn with_selinux_policy(policy: SelinuxPolicy) -> Self {
        Self {
            selinux: Some(policy),
            ..Self::default()
        }
    }

    /// Also compiles every SELinux profile that passed the other checks with `compiler`.
    pub fn with_compiler(mut self, compiler: std::sync::Arc<dyn ModuleCheck>) -> Self {
        self.compiler = Some(compiler);
        self
    }

    /// The loaded policy's classes when selinuxfs is mounted; else syntax checks only.
    pub fn for_this_host() -> Self {
        match SelinuxPolicy::load(Path::new(SelinuxPolicy::SELINUXFS)) {
            Ok(policy) if !policy.classes.is_empty() => Self::with_selinux_policy(policy),
            _ => Self::default(),
        }
    }

    /// Whether `name` is a syscall of `arch`.
    fn knows(&mut self, arch: ScmpArch, label: &str, name: &str) -> bool {
        if !self.name_sets.contains_key(label) {
            let set = self.names_of(arch, label).iter().cloned().collect();
            self.name_sets.insert(label.to_owned(), set);
        }
        self.name_sets[label].contains(name)
    }

    /// The first architecture libseccomp knows `name` on, if any.
    fn arch_of(&mut self, name: &str) -> Option<&'static str> {
        if self.anywhere.is_none() {
            let mut anywhere = HashMap::new();
            for (label, arch) in &ARCHES[1..] {
                for known in self.names_of(*arch, label).to_vec() {
                    anywhere.entry(known).or_insert(*label);
                }
            }
            self.anywhere = Some(anywhere);
        }
        self.anywhere.as_ref().and_then(|a| a.get(name).copied())
    }

    fn names_of(&mut self, arch: ScmpArch, label: &str) -> &[String] {
        self.names.entry(label.to_owned()).or_insert_with(|| {
            (0..2048)
                .filter_map(|nr| ScmpSyscall::from(nr).get_name_by_arch(arch).ok())
                .collect()
        })
    }

    /// Every problem of one document: an OCI seccomp document, a SeccompProfile or a
    /// SelinuxProfile. Errors first, then warnings, each in document order.
    pub fn validate(&mut self, doc: &Value) -> Vec<Problem> {
        let (mut problems, dropped) = self.validate_counted(doc);
        for (i, severity) in [Severity::Error, Severity::Warning].into_iter().enumerate() {
            if dropped[i] > 0 {
                let what = if i == 0 { "errors" } else { "warnings" };
                problems.push(Problem {
                    severity,
                    path: String::new(),
                    message: format!(
                        "and {} more {what} not listed (the first {MAX_LISTED} are)",
                        dropped[i]
                    ),
                    within: None,
                });
            }
        }
        problems.sort_by_key(|p| p.severity);
        problems
    }

    /// [`Self::validate`]'s problems without the "and N more" lines, and how many errors and
    /// warnings were not listed (beyond MAX_LISTED each).
    pub fn validate_counted(&mut self, doc: &Value) -> (Vec<Problem>, [usize; 2]) {
        self.suggestions_left = MAX_SUGGESTIONS;
        let mut problems = Vec::new();
        let mut report = Report {
            problems: &mut problems,
            dropped: [0; 2],
            listed: [0; 2],
        };
        if doc.is_null() {
            report.error("", "empty: no profile in this document (only comments?)");
            return (problems, [0; 2]);
        }
        if !doc.is_mapping() {
            report.error(
                "",
                format!("a profile must be a mapping, not {}", type_name(doc)),
            );
            return (problems, [0; 2]);
        }
        let kind = doc.get("kind").map(|k| (k, k.as_str()));
        match kind {
            None => self.seccomp(doc, "", false, &mut report),
            Some((_, Some(kind @ ("SeccompProfile" | "SelinuxProfile" | "RawSelinuxProfile")))) => {
                if let Some(map) = doc.as_mapping() {
                    unknown_fields(map, "", &OBJECT_FIELDS, &mut report);
                }
                // The versions upstream served, newest first.
                let versions: &[&str] = if kind == "SeccompProfile" {
                    &["v1", "v1beta1", "v1alpha1"]
                } else {
                    &["v1", "v1alpha2"]
                };
                let api_version = doc.get("apiVersion").and_then(Value::as_str);
                let known = api_version
                    .and_then(|v| v.strip_prefix("security-profiles-operator.x-k8s.io/"))
                    .is_some_and(|v| versions.contains(&v));
                if !known {
                    report.error(
                        "apiVersion",
                        format!(
                            "expected security-profiles-operator.x-k8s.io/v1 for a {kind} (older: {}), found {}",
                            versions[1..].join(", "),
                            api_version.map_or("nothing".to_owned(), |v| format!("{v:?}"))
                        ),
                    );
                }
                match doc.get("spec") {
                    Some(spec) if kind == "SeccompProfile" => {
                        self.seccomp(spec, "spec", true, &mut report)
                    }
                    Some(spec) if kind == "RawSelinuxProfile" => raw_selinux(spec, &mut report),
                    Some(spec) => self.selinux(spec, &mut report),
                    None => report.error("spec", format!("missing: a {kind} needs a spec")),
                }
            }
            Some((kind, _)) => report.error(
                "kind",
                format!(
                    "{} is not a seccomp or SELinux profile (expected SeccompProfile, SelinuxProfile, RawSelinuxProfile, or an OCI seccomp document without kind)",
                    serde_json::to_string(kind).unwrap_or_default()
                ),
            ),
        }
        let selinux = matches!(
            kind,
            Some((_, Some("SelinuxProfile" | "RawSelinuxProfile")))
        );
        if selinux
            && report.listed[Severity::Error as usize] == 0
            && let Some(compiler) = &self.compiler
        {
            compile(compiler.as_ref(), doc, &mut report);
        }
        let dropped = report.dropped;
        problems.sort_by_key(|p| p.severity);
        (problems, dropped)
    }

    fn selinux(&mut self, spec: &Value, report: &mut Report<'_>) {
        let Some(map) = spec.as_mapping() else {
            report.error(
                "spec",
                format!("must be a mapping, not {}", type_name(spec)),
            );
            return;
        };
        unknown_fields(map, "spec", &SELINUX_FIELDS, report);
        state(spec, report);
        if let Some(inherit) = spec.get("inherit") {
            match inherit.as_sequence() {
                None => report.error(
                    "spec.inherit",
                    format!("must be a list, not {}", type_name(inherit)),
                ),
                Some(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let path = format!("spec.inherit[{i}]");
                        let Some(item_map) = item.as_mapping() else {
                            report.error(
                                &path,
                                format!("must be a mapping, not {}", type_name(item)),
                            );
                            continue;
                        };
                        unknown_fields(item_map, &path, &INHERIT_FIELDS, report);
                        if let Some(kind) = item.get("kind") {
                            one_of(
                                kind,
                                &format!("{path}.kind"),
                                "kind",
                                &INHERIT_KINDS,
                                report,
                            );
                        }
                        match item.get("name") {
                            None => report.error(
                                format!("{path}.name"),
                                "missing: the policy to inherit from",
                            ),
                            Some(Value::String(name)) if name.is_empty() => report
                                .error(format!("{path}.name"), "empty: the policy to inherit from"),
                            Some(Value::String(_)) => {}
                            Some(other) => report.error(
                                format!("{path}.name"),
                                format!("must be a string, not {}", type_name(other)),
                            ),
                        }
                    }
                }
            }
        }
        if let Some(mode) = spec.get("mode") {
            one_of(mode, "spec.mode", "mode", &SELINUX_MODES, report);
        }
        if let Some(permissive) = spec.get("permissive")
            && !permissive.is_bool()
        {
            report.error(
                "spec.permissive",
                format!("must be a boolean, not {}", type_name(permissive)),
            );
        }
        let Some(allow) = spec.get("allow") else {
            return;
        };
        let Some(allow) = allow.as_mapping() else {
            report.error(
                "spec.allow",
                format!(
                    "must be a mapping of type → class → permissions, not {}",
                    type_name(allow)
                ),
            );
            return;
        };
        for (label, classes) in allow {
            let label = label.as_str().unwrap_or("?");
            let path = format!("spec.allow.{label}");
            if label != "@self" && !identifier(label, false) {
                report.error(
                    &path,
                    format!("{label:?} is not a valid SELinux type (letters, digits and _, not starting with a digit; or @self)"),
                );
            }
            let Some(classes) = classes.as_mapping() else {
                report.error(
                    &path,
                    format!(
                        "must be a mapping of class → permissions, not {}",
                        type_name(classes)
                    ),
                );
                continue;
            };
            for (class, perms) in classes {
                let class = class.as_str().unwrap_or("?");
                let class_path = format!("{path}.{class}");
                let known = self.selinux.as_ref().map(|p| p.classes.get(class));
                match known {
                    Some(None) => {
                        let classes = self.selinux.as_ref().map(|p| &p.classes);
                        report.error(
                            &class_path,
                            format!(
                                "unknown class {class:?} in the loaded policy{}",
                                suggestion(
                                    class,
                                    classes
                                        .into_iter()
                                        .flat_map(|c| c.keys().map(String::as_str))
                                )
                            ),
                        );
                    }
                    None if !identifier(class, true) => report.error(
                        &class_path,
                        format!(
                            "{class:?} is not a valid class name (lowercase letters, digits and _)"
                        ),
                    ),
                    _ => {}
                }
                let Some(list) = self.string_list(Some(perms), &class_path, report) else {
                    continue;
                };
                if perms.as_sequence().is_some_and(Vec::is_empty) {
                    report.error(&class_path, "empty: list the permissions to allow");
                }
                let mut seen = BTreeSet::new();
                for (k, perm) in &list {
                    let perm_path = format!("{class_path}[{k}]");
                    match known {
                        Some(Some(perms)) if !perms.contains(perm) => report.error(
                            &perm_path,
                            format!(
                                "unknown permission {perm:?} for class {class}{}",
                                suggestion(perm, perms.iter().map(String::as_str))
                            ),
                        ),
                        None if !identifier(perm, true) => report.error(
                            &perm_path,
                            format!("{perm:?} is not a valid permission name (lowercase letters, digits and _)"),
                        ),
                        _ => {}
                    }
                    if !seen.insert(perm.as_str()) {
                        report.warning(&perm_path, format!("{perm:?} is listed twice"));
                    }
                }
            }
        }
    }

    fn seccomp(&mut self, doc: &Value, prefix: &str, is_spec: bool, report: &mut Report<'_>) {
        let Some(map) = doc.as_mapping() else {
            report.error(prefix, format!("must be a mapping, not {}", type_name(doc)));
            return;
        };
        let allowed: Vec<&str> = OCI_FIELDS
            .iter()
            .chain(if is_spec {
                &SPEC_ONLY_FIELDS[..]
            } else {
                &OCI_ONLY_FIELDS[..]
            })
            .copied()
            .collect();
        unknown_fields(map, prefix, &allowed, report);
        if let Some(v) = doc.get("defaultErrnoRet") {
            errno_ret(v, &join(prefix, "defaultErrnoRet"), report);
        }
        for field in ["listenerPath", "listenerMetadata"] {
            if let Some(v) = doc.get(field)
                && !v.is_string()
            {
                report.error(
                    join(prefix, field),
                    format!("must be a string, not {}", type_name(v)),
                );
            }
        }
        if is_spec {
            state(doc, report);
            if let Some(base) = doc.get("baseProfileName")
                && !base.is_string()
            {
                report.error(
                    "spec.baseProfileName",
                    format!("must be a string, not {}", type_name(base)),
                );
            }
        }
        let default_action = match doc.get("defaultAction") {
            None => {
                report.error(
                    join(prefix, "defaultAction"),
                    "missing: every profile needs a default action",
                );
                None
            }
            Some(v) => self.action(v, &join(prefix, "defaultAction"), report),
        };
        // Architectures: their syscall tables are what names are checked against.
        let mut arches: Vec<(String, ScmpArch)> = Vec::new();
        if let Some(list) = self.string_list(
            doc.get("architectures"),
            &join(prefix, "architectures"),
            report,
        ) {
            for (i, name) in &list {
                match ARCHES.iter().find(|(n, _)| n == name) {
                    Some((n, arch)) => arches.push(((*n).to_owned(), *arch)),
                    None => report.error(
                        format!("{}[{i}]", join(prefix, "architectures")),
                        format!("unknown architecture {name:?}{}", arch_suggestion(name)),
                    ),
                }
            }
        }
        if arches.is_empty() {
            arches.push(("the native architecture".to_owned(), ScmpArch::Native));
        }
        if let Some(list) = self.string_list(doc.get("flags"), &join(prefix, "flags"), report) {
            for (i, name) in &list {
                if !FLAGS.contains(&name.as_str()) {
                    report.error(
                        format!("{}[{i}]", join(prefix, "flags")),
                        format!("unknown flag {name:?}{}", suggestion(name, FLAGS)),
                    );
                }
            }
        }
        let Some(rules) = doc.get("syscalls") else {
            return;
        };
        let rules_path = join(prefix, "syscalls");
        let Some(rules) = rules.as_sequence() else {
            report.error(
                &rules_path,
                format!("must be a list of rules, not {}", type_name(rules)),
            );
            return;
        };
        let mut first_seen: BTreeMap<String, String> = BTreeMap::new();
        let mut allow_rules = false;
        for (r, rule) in rules.iter().enumerate() {
            let path = format!("{rules_path}[{r}]");
            let Some(rule_map) = rule.as_mapping() else {
                report.error(&path, format!("must be a mapping, not {}", type_name(rule)));
                continue;
            };
            unknown_fields(rule_map, &path, &RULE_FIELDS, report);
            let action = match rule.get("action") {
                None => {
                    report.error(format!("{path}.action"), "missing: a rule needs an action");
                    None
                }
                Some(v) => self.action(v, &format!("{path}.action"), report),
            };
            allow_rules |= action == Some("SCMP_ACT_ALLOW");
            let conditional = rule
                .get("args")
                .and_then(Value::as_sequence)
                .is_some_and(|a| !a.is_empty());
            // Same action and same errno as the default: the rule changes nothing.
            // Without a number, SCMP_ACT_ERRNO returns EPERM (runc, crun).
            const EPERM: u64 = 1;
            let default_errno = doc
                .get("defaultErrnoRet")
                .and_then(Value::as_u64)
                .unwrap_or(EPERM);
            let same_errno = action != Some("SCMP_ACT_ERRNO")
                || rule
                    .get("errnoRet")
                    .and_then(Value::as_u64)
                    .unwrap_or(EPERM)
                    == default_errno;
            if let (Some(action), Some(default)) = (action, default_action)
                && action == default
                && same_errno
                && !conditional
            {
                report.warning(
                    format!("{path}.action"),
                    format!("{action} is the default action too: this rule changes nothing"),
                );
            }
            if rule.get("errnoRet").is_some() && action.is_some_and(|a| a != "SCMP_ACT_ERRNO") {
                report.error(
                    format!("{path}.errnoRet"),
                    format!(
                        "only SCMP_ACT_ERRNO returns an errno, not {}",
                        action.unwrap_or_default()
                    ),
                );
            }
            if let Some(v) = rule.get("errnoRet") {
                errno_ret(v, &format!("{path}.errnoRet"), report);
            }
            let names_value = rule.get("names");
            match self.string_list(names_value, &format!("{path}.names"), report) {
                None if names_value.is_none() => report.error(
                    format!("{path}.names"),
                    "missing: a rule needs the syscalls it is about",
                ),
                None => {}
                Some(_)
                    if names_value
                        .and_then(Value::as_sequence)
                        .is_some_and(Vec::is_empty) =>
                {
                    report.error(
                        format!("{path}.names"),
                        "empty: a rule needs at least one syscall",
                    )
                }
                Some(names) => {
                    for (n, name) in &names {
                        let name_path = format!("{path}.names[{n}]");
                        // Like libseccomp: a name only needs to exist on one of the listed
                        // architectures (x86_64 profiles list i386 and x32 too, whose tables
                        // differ); one that exists on none of them is a mistake.
                        let known_somewhere = arches
                            .iter()
                            .any(|(label, arch)| self.knows(*arch, label, name));
                        let elsewhere = if known_somewhere {
                            None
                        } else {
                            self.arch_of(name)
                        };
                        if let Some(other) = elsewhere {
                            // runc and crun skip a name the filter's architectures lack
                            // (upstream's own examples list umount, stime, vm86 for x86_64).
                            let listed: Vec<&str> =
                                arches.iter().map(|(l, _)| l.as_str()).collect();
                            let hint = if self.suggestions_left > 0 {
                                self.suggestions_left -= 1;
                                let (label, arch) = &arches[0];
                                let known = self.names_of(*arch, label);
                                suggestion(name, known.iter().map(String::as_str))
                            } else {
                                String::new()
                            };
                            report.warning(
                                &name_path,
                                format!(
                                    "{name:?} is no syscall on {} (it is one on {other}): runc and crun skip it{hint}",
                                    listed.join(", ")
                                ),
                            );
                        } else if !known_somewhere {
                            let (label, arch) = &arches[0];
                            let listed: Vec<&str> =
                                arches.iter().map(|(l, _)| l.as_str()).collect();
                            let hint = if self.suggestions_left > 0 {
                                self.suggestions_left -= 1;
                                let known = self.names_of(*arch, label);
                                suggestion(name, known.iter().map(String::as_str))
                            } else {
                                String::new()
                            };
                            report.error(
                                &name_path,
                                format!("unknown syscall {name:?} on {}{hint}", listed.join(", ")),
                            );
                        }
                        // Several rules for one syscall are fine when they compare
                        // arguments (Docker's default profile does this); two
                        // unconditional ones are a mistake (libseccomp refuses different
                        // actions, and the same one twice is noise).
                        if conditional {
                            continue;
                        }
                        if let Some(first) = first_seen.get(name) {
                            report.error(
                                &name_path,
                                format!("{name:?} is already in {first}: one syscall, one unconditional rule"),
                            );
                        } else {
                            first_seen.insert(name.clone(), name_path);
                        }
                    }
                }
            }
            if let Some(args) = rule.get("args") {
                self.args(args, &format!("{path}.args"), report);
            }
        }
        if default_action == Some("SCMP_ACT_ALLOW") && allow_rules {
            report.warning(
                join(prefix, "defaultAction"),
                "SCMP_ACT_ALLOW with ALLOW rules: this profile confines nothing",
            );
        }
    }

    fn args(&mut self, args: &Value, path: &str, report: &mut Report<'_>) {
        let Some(args) = args.as_sequence() else {
            report.error(path, format!("must be a list, not {}", type_name(args)));
            return;
        };
        if args.len() > 6 {
            report.error(
                path,
                format!("{} arguments: a syscall has at most 6", args.len()),
            );
        }
        for (a, arg) in args.iter().enumerate() {
            let arg_path = format!("{path}[{a}]");
            let Some(map) = arg.as_mapping() else {
                report.error(
                    &arg_path,
                    format!("must be a mapping, not {}", type_name(arg)),
                );
                continue;
            };
            unknown_fields(map, &arg_path, &ARG_FIELDS, report);
            match arg.get("index").map(|v| v.as_u64()) {
                None => report.error(
                    format!("{arg_path}.index"),
                    "missing: which argument (0 to 5)",
                ),
                Some(Some(i)) if i <= 5 => {}
                Some(_) => report.error(
                    format!("{arg_path}.index"),
                    "must be an argument index from 0 to 5",
                ),
            }
            for field in ["value", "valueTwo"] {
                if let Some(v) = arg.get(field)
                    && v.as_u64().is_none()
                {
                    report.error(
                        format!("{arg_path}.{field}"),
                        format!("must be a number ≥ 0, not {}", type_name(v)),
                    );
                }
            }
            match arg.get("op").map(|v| v.as_str()) {
                None => report.error(
                    format!("{arg_path}.op"),
                    "missing: a comparison (SCMP_CMP_EQ…)",
                ),
                Some(Some(op)) if OPS.contains(&op) => {}
                Some(Some(op)) => report.error(
                    format!("{arg_path}.op"),
                    format!("unknown comparison {op:?}{}", suggestion(op, OPS)),
                ),
                Some(None) => {
                    report.error(format!("{arg_path}.op"), "must be a string (SCMP_CMP_EQ…)")
                }
            }
        }
    }

    fn action<'v>(&self, value: &'v Value, path: &str, report: &mut Report<'_>) -> Option<&'v str> {
        match value.as_str() {
            Some(action) if ACTIONS.contains(&action) => Some(action),
            Some(action) => {
                report.error(
                    path,
                    format!("unknown action {action:?}{}", suggestion(action, ACTIONS)),
                );
                None
            }
            None => {
                report.error(
                    path,
                    format!("must be a string (SCMP_ACT_…), not {}", type_name(value)),
                );
                None
            }
        }
    }

    /// The strings of a list, each with its index in the list; `None` when absent or not a
    /// list (reported). Items that are not strings are reported and left out.
    fn string_list(
        &self,
        value: Option<&Value>,
        path: &str,
        report: &mut Report<'_>,
    ) -> Option<Vec<(usize, String)>> {
        let value = value?;
        let Some(items) = value.as_sequence() else {
            report.error(path, format!("must be a list, not {}", type_name(value)));
            return None;
        };
        Some(
            items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| match item.as_str() {
                    Some(s) => Some((i, s.to_owned())),
                    None => {
                        report.error(
                            format!("{path}[{i}]"),
                            format!("must be a string, not {}", type_name(item)),
                        );
                        None
                    }
                })
                .collect(),
        )
    }
}

/// A problem of one document of a text, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// 1-based index of the document in a multi-document text.
    pub document: usize,
    pub position: Option<super::position::Position>,
    pub problem: Problem,
}

/// Every problem of every document of a YAML text (or a JSON one, `json`: read strictly, as
/// runtimes read it — YAML would forgive a trailing comma). A syntax error is a problem too
/// (with the parser's position and no path) and ends the text: what follows it cannot be read.
pub fn validate_text(validator: &mut Validator, text: &str, json: bool) -> Vec<Located> {
    validate_documents(validator, text, json).1
}

/// [`validate_text`], with how many documents the text holds.
pub fn validate_documents(
    validator: &mut Validator,
    text: &str,
    json: bool,
) -> (usize, Vec<Located>) {
    use serde::Deserialize as _;
    let syntax_error = |line: usize, column: usize, message: String| Located {
        document: 1,
        position: Some(super::position::Position { line, column }),
        problem: Problem {
            severity: Severity::Error,
            path: String::new(),
            message,
            within: None,
        },
    };
    if text.trim().is_empty() {
        return (
            0,
            vec![Located {
                position: None,
                ..syntax_error(0, 0, "empty: no profile in this file".to_owned())
            }],
        );
    }
    // Before any parser builds anything: size, depth, alias expansion.
    if let Err(err) = super::guard::check(text) {
        let (line, column) = err.position().unwrap_or((0, 0));
        let mut found = syntax_error(line, column, err.reason());
        if err.position().is_none() {
            found.position = None;
        }
        return (1, vec![found]);
    }
    if json && let Err(err) = serde_json::from_str::<serde_json::Value>(text) {
        let message = err.to_string();
        let message = message.split(" at line ").next().unwrap_or(&message);
        return (
            1,
            vec![syntax_error(
                err.line(),
                err.column(),
                format!("not valid JSON: {message}"),
            )],
        );
    }
    let positions = super::position::index(text);
    let mut found = Vec::new();
    let mut documents = 0;
    // Lazily: after a syntax error serde_yaml's stream yields that error forever.
    for (i, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        documents += 1;
        match Value::deserialize(document) {
            Ok(value) => {
                let at = positions.get(i);
                found.extend(
                    validator
                        .validate(&value)
                        .into_iter()
                        .map(|problem| Located {
                            document: i + 1,
                            position: at.and_then(|a| {
                                problem
                                    .within
                                    .and_then(|w| a.inside(text, &problem.path, w.line, w.column))
                                    .or_else(|| a.find(&problem.path))
                            }),
                            problem,
                        }),
                );
            }
            Err(err) => {
                let message = err.to_string();
                let message = message.split(" at line ").next().unwrap_or(&message);
                found.push(Located {
                    document: i + 1,
                    position: err.location().map(|l| super::position::Position {
                        line: l.line(),
                        column: l.column(),
                    }),
                    problem: Problem {
                        severity: Severity::Error,
                        path: String::new(),
                        message: format!("not valid YAML/JSON: {message}"),
                        within: None,
                    },
                });
                break;
            }
        }
    }
    if documents == 0 {
        found.push(Located {
            position: None,
            ..syntax_error(0, 0, "empty: no profile in this file".to_owned())
        });
    }
    (documents, found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(yaml: &str) -> Vec<(Severity, String, String)> {
        let doc: Value = serde_yaml::from_str(yaml).unwrap();
        Validator::default()
            .validate(&doc)
            .into_iter()
            .map(|p| (p.severity, p.path, p.message))
            .collect()
    }

    #[test]
    fn a_recorded_profile_is_valid() {
        assert_eq!(
            problems(
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"], "syscalls": [{"names": ["read", "write", "futex"], "action": "SCMP_ACT_ALLOW"}]}"#
            ),
            []
        );
    }

    #[test]
    fn every_problem_with_its_path_and_a_suggestion() {
        let found = problems(
            r#"
apiVersion: security-profiles-operator.x-k8s.io/v1
kind: SeccompProfile
metadata: {name: p}
spec:
  defaultAction: SCMP_ACT_ERRNO
  architectures: [SCMP_ARCH_X86_64, SCMP_ARCH_X86_46]
  flags: [SECCOMP_FILTER_FLAG_TSYNK]
  syscals: []
  syscalls:
  - names: [read, raed, open]
    action: SCMP_ACT_ALLOW
  - names: [read]
    action: SCMP_ACT_ALOW
  - names: []
    action: SCMP_ACT_ERRNO
    errnoRet: 1
  - names: [mount]
    action: SCMP_ACT_LOG
    errnoRet: 1
    args: [{index: 6, value: 1, op: SCMP_CMP_EQQ}, {index: 0, op: SCMP_CMP_EQ}, {index: 0, op: SCMP_CMP_EQ}, {index: 0, op: SCMP_CMP_EQ}, {index: 0, op: SCMP_CMP_EQ}, {index: 0, op: SCMP_CMP_EQ}, {index: 0, op: SCMP_CMP_EQ}]
"#,
        );
        let expect = |path: &str, needle: &str| {
            assert!(
                found
                    .iter()
                    .any(|(_, p, m)| p == path && m.contains(needle)),
                "no {path}: {needle} in {found:#?}"
            );
        };
        expect(
            "spec.architectures[1]",
            "unknown architecture \"SCMP_ARCH_X86_46\" (did you mean \"SCMP_ARCH_X86_64\"?)",
        );
        expect(
            "spec.flags[0]",
            "did you mean \"SECCOMP_FILTER_FLAG_TSYNC\"",
        );
        expect("spec.syscals", "unknown field (did you mean \"syscalls\"?)");
        expect(
            "spec.syscalls[0].names[1]",
            "unknown syscall \"raed\" on SCMP_ARCH_X86_64 (did you mean \"read\"?)",
        );
        assert!(
            !found
                .iter()
                .any(|(_, p, _)| p == "spec.syscalls[0].names[2]"),
            "open exists"
        );
        expect(
            "spec.syscalls[1].names[0]",
            "already in spec.syscalls[0].names[0]",
        );
        expect("spec.syscalls[1].action", "did you mean \"SCMP_ACT_ALLOW\"");
        expect("spec.syscalls[2].names", "empty");
        expect("spec.syscalls[2].action", "changes nothing");
        expect("spec.syscalls[3].errnoRet", "only SCMP_ACT_ERRNO");
        expect("spec.syscalls[3].args", "7 arguments");
        expect("spec.syscalls[3].args[0].index", "0 to 5");
        expect(
            "spec.syscalls[3].args[0].op",
            "did you mean \"SCMP_CMP_EQ\"",
        );
        let warnings = found
            .iter()
            .filter(|(s, _, _)| *s == Severity::Warning)
            .count();
        assert_eq!(warnings, 1, "{found:#?}");
    }

    #[test]
    fn names_need_to_exist_on_one_listed_architecture() {
        // open: x86_64 yes, aarch64 no — fine for a two-architecture profile; for aarch64
        // alone a warning (runc and crun skip it), never an error: upstream's own examples
        // list such names.
        let both = problems(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"], "syscalls": [{"names": ["open"], "action": "SCMP_ACT_ALLOW"}]}"#,
        );
        assert_eq!(both, []);
        let arm = problems(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_AARCH64"], "syscalls": [{"names": ["open", "opne"], "action": "SCMP_ACT_ALLOW"}]}"#,
        );
        assert_eq!(arm.len(), 2, "{arm:?}");
        assert_eq!(arm[0].0, Severity::Error);
        assert!(
            arm[0]
                .2
                .contains("unknown syscall \"opne\" on SCMP_ARCH_AARCH64"),
            "{arm:?}"
        );
        assert_eq!(arm[1].0, Severity::Warning);
        assert_eq!(
            arm[1].2,
            "\"open\" is no syscall on SCMP_ARCH_AARCH64 (it is one on SCMP_ARCH_X86): runc and crun skip it (did you mean \"openat\"?)"
        );
        let x86_64 = problems(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"], "syscalls": [{"names": ["umount", "stime", "vm86"], "action": "SCMP_ACT_ALLOW"}]}"#,
        );
        assert!(
            x86_64.iter().all(|(s, _, _)| *s == Severity::Warning),
            "{x86_64:?}"
        );
        assert_eq!(x86_64.len(), 3, "{x86_64:?}");
    }

    #[test]
    fn wrong_types_and_allow_everything() {
        let found = problems(r#"{"defaultAction": 1, "syscalls": {"names": "read"}}"#);
        assert!(
            found
                .iter()
                .any(|(_, p, m)| p == "defaultAction" && m.contains("not a number")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|(_, p, m)| p == "syscalls" && m.contains("not a mapping")),
            "{found:?}"
        );
        let found = problems(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}"#,
        );
        assert!(
            found
                .iter()
                .any(|(s, _, m)| *s == Severity::Warning && m.contains("confines nothing")),
            "{found:?}"
        );
        let found = problems("{kind: ConfigMap}");
        assert!(
            found[0].2.contains("not a seccomp or SELinux profile"),
            "{found:?}"
        );
    }

    #[test]
    fn selinux_allow_rules_against_a_policy_or_their_syntax() {
        let doc = r#"
apiVersion: security-profiles-operator.x-k8s.io/v1alpha2
kind: SelinuxProfile
metadata: {name: errorlogger}
spec:
  inherit: [{kind: System, name: container}]
  allow:
    var_log_t:
      fiel: [read]
      dir: [open, raed, open]
"#;
        let value: Value = serde_yaml::from_str(doc).unwrap();
        // Syntax only: all of these are well-formed names.
        let syntax: Vec<_> = Validator::default().validate(&value);
        assert_eq!(
            syntax
                .iter()
                .map(|p| (p.severity, p.path.as_str()))
                .collect::<Vec<_>>(),
            [(Severity::Warning, "spec.allow.var_log_t.dir[2]")],
            "{syntax:?}"
        );
        // Against a policy laid out as selinuxfs.
        let dir = std::env::temp_dir().join(format!("syscribe-policy-{}", std::process::id()));
        for (class, perms) in [("file", ["read", "open"]), ("dir", ["read", "open"])] {
            for perm in perms {
                std::fs::create_dir_all(dir.join("class").join(class).join("perms")).unwrap();
                std::fs::write(dir.join("class").join(class).join("perms").join(perm), "").unwrap();
            }
        }
        let policy = SelinuxPolicy::load(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let found = Validator::with_selinux_policy(policy).validate(&value);
        let messages: Vec<(&str, &str)> = found
            .iter()
            .map(|p| (p.path.as_str(), p.message.as_str()))
            .collect();
        assert_eq!(
            messages,
            [
                (
                    "spec.allow.var_log_t.fiel",
                    "unknown class \"fiel\" in the loaded policy (did you mean \"file\"?)"
                ),
                (
                    "spec.allow.var_log_t.dir[1]",
                    "unknown permission \"raed\" for class dir (did you mean \"read\"?)"
                ),
                ("spec.allow.var_log_t.dir[2]", "\"open\" is listed twice"),
            ]
        );
    }

    #[test]
    fn positions_of_problems_and_syntax_errors() {
        let found = validate_text(
            &mut Validator::default(),
            "defaultAction: SCMP_ACT_ERRNO\nsyscalls:\n- names: [read, opne]\n  action: SCMP_ACT_ALLOW\n---\n{\"defaultAction\": [\n",
            false,
        );
        let summary: Vec<_> = found
            .iter()
            .map(|l| {
                (
                    l.document,
                    l.position.map(|p| (p.line, p.column)),
                    l.problem.path.as_str(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (1, Some((3, 17)), "syscalls[0].names[1]"),
                (2, Some((7, 1)), "")
            ],
            "{found:#?}"
        );
        assert!(found[1].problem.message.starts_with("not valid YAML/JSON"));
    }

    #[test]
    fn errnos_libseccomp_would_refuse_are_errors() {
        let found = problems(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000, "architectures": ["SCMP_ARCH_X86_64"], "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 65537},
                {"names": ["write"], "action": "SCMP_ACT_ERRNO", "errnoRet": 4094}]}"#,
        );
        let paths: Vec<&str> = found.iter().map(|(_, p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            ["defaultErrnoRet", "syscalls[0].errnoRet"],
            "{found:?}"
        );
        assert!(found[1].2.contains("65537 is more than 4094"), "{found:?}");
    }

    #[test]
    fn bombs_and_depth_are_refused_before_parsing_with_a_position() {
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let items = vec![format!("*a{}", i - 1); 10].join(", ");
            bomb.push_str(&format!("a{i}: &a{i} [{items}]\n"));
        }
        let found = validate_text(&mut Validator::default(), &bomb, false);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].problem.message.contains("excessive aliasing"),
            "{found:?}"
        );
        assert_eq!(found[0].position.map(|p| p.line), Some(6));
        let deep = format!("{}{}", "[".repeat(600_000), "]".repeat(600_000));
        let found = validate_text(&mut Validator::default(), &deep, true);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0]
                .problem
                .message
                .contains("nested more than 64 levels"),
            "{found:?}"
        );
    }

    #[test]
    fn rules_comparing_arguments_may_share_a_syscall() {
        // Docker's default profile: personality allowed for three argument values.
        let found = problems(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"], "syscalls": [
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
                {"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]}"#,
        );
        // ERRNO with another errno than the default's EPERM is not a dead rule.
        assert_eq!(found, [], "{found:?}");
    }

    #[test]
    fn a_problem_per_value_is_listed_up_to_a_bound_and_the_rest_counted() {
        let names: Vec<String> = (0..3000).map(|i| format!("x{i}")).collect();
        let doc = serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]});
        let value: Value = serde_yaml::to_value(&doc).unwrap();
        let mut validator = Validator::default();
        let (listed, not_listed) = validator.validate_counted(&value);
        assert_eq!((listed.len(), not_listed), (MAX_LISTED, [2000, 0]));
        let all = validator.validate(&value);
        assert_eq!(all.len(), MAX_LISTED + 1);
        assert_eq!(
            all[MAX_LISTED].message,
            "and 2000 more errors not listed (the first 1000 are)"
        );
        assert_eq!(all[MAX_LISTED].severity, Severity::Error);
    }

    #[test]
    fn very_long_names_cost_no_suggestion_search() {
        let long = format!("read{}", "x".repeat(16 * 1024));
        let names: Vec<String> = (0..64).map(|i| format!("{long}{i}")).collect();
        let doc = serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]});
        let found = problems(&doc.to_string());
        assert_eq!(found.len(), 64);
        assert!(
            found.iter().all(|(_, _, m)| !m.contains("did you mean")),
            "{:?}",
            found[0]
        );
        assert_eq!(suggestion("raed", ["read"]), " (did you mean \"read\"?)");
    }

    #[test]
    fn suggestions_look_past_shared_prefixes() {
        let arches = ARCHES.iter().map(|(n, _)| *n);
        assert_eq!(suggestion("SCMP_ARCH_AMD64", arches), "");
        assert_eq!(
            arch_suggestion("SCMP_ARCH_AMD64"),
            " (did you mean \"SCMP_ARCH_X86_64\"?)"
        );
        assert_eq!(
            arch_suggestion("aarch64"),
            " (did you mean \"SCMP_ARCH_AARCH64\"?)"
        );
        assert_eq!(
            suggestion("SCMP_CMP_EQUAL", OPS),
            " (did you mean \"SCMP_CMP_EQ\"?)"
        );
        assert_eq!(suggestion("SCMP_ACT_DENY", ACTIONS), "");
        assert_eq!(
            suggestion("open", ["fsopen", "openat", "close"]),
            " (did you mean \"openat\"?)"
        );
    }

    #[test]
    fn a_file_of_comments_is_no_profile() {
        let found = validate_text(&mut Validator::default(), "# nothing here\n", false);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].problem.message.contains("no profile"), "{found:?}");
    }

    #[test]
    fn thousands_of_bad_names_get_suggestions_for_the_first_only() {
        let names: Vec<String> = (0..2000).map(|i| format!("\"bad{i}\"")).collect();
        let doc = format!(
            r#"{{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"], "syscalls": [{{"names": [{}], "action": "SCMP_ACT_ALLOW"}}]}}"#,
            names.join(",")
        );
        let found = problems(&doc);
        // MAX_LISTED of them, and one line counting the rest.
        assert_eq!(found.len(), MAX_LISTED + 1);
        assert!(
            found[MAX_LISTED].2.starts_with("and 1000 more errors"),
            "{:?}",
            found[MAX_LISTED]
        );
        let suggested = found
            .iter()
            .filter(|(_, _, m)| m.contains("did you mean"))
            .count();
        assert!(suggested <= MAX_SUGGESTIONS, "{suggested}");
    }

    /// Answers as a compiler would, recording what it was given.
    struct Compiler(Vec<(Option<usize>, String)>, std::sync::Mutex<Vec<String>>);

    impl ModuleCheck for Compiler {
        fn check(&self, module: &str) -> Result<Vec<(Option<usize>, String)>, String> {
            self.1.lock().unwrap().push(module.to_owned());
            Ok(self.0.clone())
        }
    }

    #[test]
    fn compiler_complaints_land_on_the_line_they_are_about() {
        let raw: Value = serde_yaml::from_str(
            "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: RawSelinuxProfile\nmetadata: {name: r}\nspec:\n  policy: \"(blockinherit container)\\n(allow process x (file (reed)))\\n\"\n",
        )
        .unwrap();
        let compiler = std::sync::Arc::new(Compiler(
            vec![
                (None, "Failed to resolve permission reed".into()),
                (Some(3), "Failed to resolve allow statement".into()),
                (None, "Failed to resolve AST".into()),
            ],
            Default::default(),
        ));
        let found = Validator::default()
            .with_compiler(compiler.clone())
            .validate(&raw);
        assert_eq!(
            found,
            [Problem {
                severity: Severity::Error,
                path: "spec.policy".into(),
                message: "policy line 2:1: the CIL compiler refused it: Failed to resolve allow statement: Failed to resolve permission reed".into(),
                within: Some(super::super::cil::Pos { line: 2, column: 1 }),
            }]
        );
        assert_eq!(compiler.1.lock().unwrap().len(), 1);

        // A profile with an error is not compiled (the compiler would only repeat it).
        let mut broken = raw.clone();
        broken["spec"]["policy"] = Value::String("(allow process".into());
        let compiler = std::sync::Arc::new(Compiler(Vec::new(), Default::default()));
        let found = Validator::default()
            .with_compiler(compiler.clone())
            .validate(&broken);
        assert!(
            found.iter().all(|p| !p.message.contains("CIL compiler")),
            "{found:#?}"
        );
        assert!(compiler.1.lock().unwrap().is_empty());

        // A compiler that cannot run: a warning, never a pass in silence.
        struct Missing;
        impl ModuleCheck for Missing {
            fn check(&self, _: &str) -> Result<Vec<(Option<usize>, String)>, String> {
                Err("cannot run secilc: No such file or directory".into())
            }
        }
        let found = Validator::default()
            .with_compiler(std::sync::Arc::new(Missing))
            .validate(&raw);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].severity, Severity::Warning);
        assert!(
            found[0]
                .message
                .contains("not compiled against a policy: cannot run secilc")
        );
    }
}
