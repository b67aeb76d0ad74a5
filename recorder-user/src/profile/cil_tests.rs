use super::*;

fn problems(text: &str) -> Vec<(String, String)> {
    let (exprs, mut found) = parse(text);
    found.extend(check_statements(&exprs, RESTRICTED));
    found.sort_by_key(|p| p.at);
    found
        .into_iter()
        .map(|p| (p.at.to_string(), p.message))
        .collect()
}

/// Upstream's own RawSelinuxProfile example.
const UPSTREAM: &str = "(blockinherit container)
(allow process var_log_t ( dir ( open read getattr lock search ioctl add_name remove_name write ))) 
(allow process var_log_t ( file ( getattr read write append ioctl lock map open create  ))) 
(allow process var_log_t ( sock_file ( getattr read write append open  ))) 
";

#[test]
fn upstreams_example_has_nothing_to_say() {
    assert_eq!(problems(UPSTREAM), []);
}

#[test]
fn a_missing_parenthesis_is_pointed_at_with_where_it_belongs() {
    // Line 2 lacks its last ')': the '(' at 2:1 is never closed, and line 3 starts inside it.
    let text = "(blockinherit container)
(allow process var_log_t (dir (open read))
(allow process var_log_t (file (read)))
";
    assert_eq!(
        problems(text),
        [(
            "2:1".to_owned(),
            "this '(' is never closed; the statement at 3:1 starts inside it — a ')' is probably \
             missing before it"
                .to_owned()
        )]
    );
}

#[test]
fn a_parenthesis_too_many_closes_nothing() {
    let text = "(allow process var_log_t (file (read))))\n(blockinherit container)\n";
    assert_eq!(
        problems(text),
        [(
            "1:40".to_owned(),
            "this ')' closes nothing: there is no '(' open before it".to_owned()
        )]
    );
}

#[test]
fn unterminated_strings_unknown_and_restricted_statements() {
    let text = "(alow process var_log_t (file (read)))
(typepermissive process)
; a comment (with a parenthesis
(filecon \"/var/log(/.*)? file ())
";
    let found = problems(text);
    assert_eq!(
        found,
        [
            (
                "1:2".to_owned(),
                "unknown statement \"alow\" (did you mean \"allow\"?)".to_owned()
            ),
            (
                "2:2".to_owned(),
                "typepermissive is not allowed here: it changes the node's whole policy, not \
                 this profile's container type"
                    .to_owned()
            ),
            ("4:1".to_owned(), "this '(' is never closed".to_owned()),
            (
                "4:2".to_owned(),
                "filecon is not allowed here: it changes the node's whole policy, not this \
                 profile's container type"
                    .to_owned()
            ),
            (
                "4:10".to_owned(),
                "this string is never closed: a '\"' is missing".to_owned()
            ),
        ],
        "{found:#?}"
    );
}

#[test]
fn allow_rules_of_the_wrong_shape() {
    let text = "(allow process var_log_t)
(allow process var_log_t file (read))
(allow process var_log_t (file read))
(allow process var_log_t (file ()))
(allow process var_log_t (file (read)) extra)
";
    let found = problems(text);
    let at: Vec<&str> = found.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(at, ["1:1", "2:31", "3:32", "4:32", "5:40"], "{found:#?}");
    assert!(
        found[0].1.contains("allow takes 3 parts, not 2"),
        "{found:?}"
    );
    assert!(
        found[2].1.contains("the permissions go in parentheses"),
        "{found:?}"
    );
    assert!(found[3].1.contains("no permissions"), "{found:?}");
}

#[test]
fn problems_are_bounded_and_the_rest_counted() {
    let text = ")".repeat(500);
    let found = problems(&text);
    assert_eq!(found.len(), MAX_PROBLEMS + 1);
    assert!(
        found[MAX_PROBLEMS].1.starts_with("and 450 more problems"),
        "{found:?}"
    );
    let deep = "(".repeat(100_000);
    let (_, found) = parse(&deep);
    assert!(
        found
            .iter()
            .any(|p| p.message.contains("nested more than 64"))
    );
    assert!(found.len() <= MAX_PROBLEMS + 1);
}

#[test]
fn a_selinux_profile_becomes_upstreams_module() {
    let mut allow = AllowRules::new();
    allow.entry("var_log_t".into()).or_default().insert(
        "file".into(),
        vec!["write".into(), "read".into(), "open".into(), "read".into()],
    );
    allow
        .entry("@self".into())
        .or_default()
        .insert("tcp_socket".into(), vec!["listen".into()]);
    assert_eq!(
        to_cil(
            "errorlogger",
            &[
                Inherit::System("container".into()),
                Inherit::System("net_container".into())
            ],
            &allow,
            true
        ),
        "(block errorlogger
    (blockinherit container)
    (blockinherit net_container)
    (typepermissive process)
    (allow process errorlogger.process (tcp_socket (listen)))
    (allow process var_log_t (file (open read write)))
)
"
    );
    assert_eq!(
        to_cil(
            "child",
            &[Inherit::Profile("errorlogger".into())],
            &AllowRules::new(),
            false
        ),
        "(block child\n    (blockinherit errorlogger)\n)\n"
    );
    assert_eq!(usage("errorlogger"), "errorlogger.process");
    let wrapped = wrap_raw("errorlogger", UPSTREAM);
    assert!(wrapped.starts_with("(block errorlogger\n    (blockinherit container)\n"));
    let (exprs, found) = parse(&wrapped);
    assert_eq!(found, []);
    assert_eq!(exprs.len(), 1);
}

#[test]
fn module_lines_lead_back_to_the_profile() {
    let mut allow = AllowRules::new();
    allow
        .entry("var_log_t".into())
        .or_default()
        .insert("file".into(), vec!["read".into()]);
    let lines = to_cil_lines("p", &[Inherit::System("container".into())], &allow, true);
    let origins: Vec<&str> = lines.iter().map(|(_, o)| o.as_str()).collect();
    assert_eq!(
        origins,
        [
            "metadata.name",
            "spec.inherit",
            "spec.mode",
            "spec.allow.var_log_t.file",
            ""
        ]
    );
    let policy = "\n\n(blockinherit container)\n(allow process x (file (read)))\n";
    assert_eq!(raw_origin(policy, 1), "metadata.name");
    assert_eq!(raw_origin(policy, 2), "spec.policy line 3");
    assert_eq!(raw_origin(policy, 3), "spec.policy line 4");
    assert_eq!(raw_origin(policy, 4), "spec.policy");
}

/// Found by the fuzzer: the count of problems not listed was placed at column 0 of the line
/// after the last newline.
#[test]
fn every_position_is_in_the_text_even_the_count_of_the_rest() {
    let text = "(aollw process var_log_t (dir (open read))\n(alow natr (open read\u{6}))\n(alow process x (file (ss x (file (readined\nad))\n(alow natr (open read\u{6}))\n(alow process((((((((((((((((aollir (open read))\n(alow na/tr (open read))\n(alow process x ((((((((((((((((((((file (re((((((((((((((((((((((asrmine((((((((src_info(((((((( dx\n";
    let found = problems(text);
    assert!(
        found.iter().any(|(_, m)| m.starts_with("and ")),
        "{found:?}"
    );
    for (at, message) in &found {
        let (line, column) = at.split_once(':').unwrap();
        let (line, column): (usize, usize) = (line.parse().unwrap(), column.parse().unwrap());
        assert!(
            line >= 1 && line <= text.lines().count() && column >= 1,
            "{at} {message}"
        );
    }
}

#[test]
fn a_documents_module_says_where_each_line_comes_from() {
    let raw: serde_yaml::Value = serde_yaml::from_str(
        "kind: RawSelinuxProfile\nmetadata: {name: r}\nspec:\n  policy: \"\\n  (blockinherit container)\\n    (allow process x (file (read)))\\n\"\n",
    )
    .unwrap();
    let module = module_of(&raw).unwrap();
    assert_eq!(module.name, "r");
    assert_eq!(
        module.cil,
        wrap_raw(
            "r",
            "\n  (blockinherit container)\n    (allow process x (file (read)))\n"
        )
    );
    let at = |line| module.origin(line).cloned();
    assert_eq!(at(1).unwrap().path, "metadata.name");
    // The policy's own numbering (a blank first line), at the statement's first character.
    assert_eq!(at(2).unwrap().within, Some(Pos { line: 2, column: 3 }));
    assert_eq!(at(3).unwrap().within, Some(Pos { line: 3, column: 5 }));
    assert_eq!(at(3).unwrap().to_string(), "spec.policy line 3");
    assert_eq!(
        at(4).unwrap().within,
        None,
        "the closing parenthesis: the policy as a whole"
    );
    assert_eq!(at(0), None);

    let profile: serde_yaml::Value = serde_yaml::from_str(
        "kind: SelinuxProfile\nmetadata: {name: p}\nspec:\n  inherit: [{kind: SelinuxProfile, name: base}, {name: net_container}]\n  mode: Permissive\n  allow: {var_log_t: {file: [read, open, read]}}\n",
    )
    .unwrap();
    let module = module_of(&profile).unwrap();
    assert_eq!(module.inherits_profiles, ["base"]);
    assert_eq!(
        module.cil,
        "(block p\n    (blockinherit base)\n    (blockinherit net_container)\n    (typepermissive process)\n    (allow process var_log_t (file (open read)))\n)\n"
    );
    assert_eq!(module.origin(2).unwrap().path, "spec.inherit[0]");
    assert_eq!(module.origin(5).unwrap().path, "spec.allow.var_log_t.file");

    let seccomp: serde_yaml::Value =
        serde_yaml::from_str("kind: SeccompProfile\nmetadata: {name: s}\nspec: {}\n").unwrap();
    assert_eq!(module_of(&seccomp), None);
}
