use super::{
    fields::{ACTIONS, ARCHES, OPS},
    suggest::arch_suggestion,
    *,
};

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
            within: Some(crate::profile::cil::Pos { line: 2, column: 1 }),
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
