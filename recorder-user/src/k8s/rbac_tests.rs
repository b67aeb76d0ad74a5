//! Least privilege, from the code: the requests the daemon's code makes, read from its source,
//! must be exactly what deploy/rbac.yaml's ClusterRole grants — a verb granted that no code
//! uses fails, and so does a call the role does not allow. (The real authorizer checks the
//! other half on the cluster: tests/tests/cluster.rs fails on any 403 in the daemon's logs.)

use std::collections::BTreeSet;

/// (resource, verb), `resource/status` for the status subresource.
type Access = (String, String);

/// The daemon's source files: every file the `daemon` command's code talks to the API from.
/// Not webhook.rs (the webhook has no API token) nor cli/pull.rs (it runs as the user).
const DAEMON_SOURCES: &[&str] = &[
    "daemon/mod.rs",
    "daemon/args.rs",
    "daemon/run.rs",
    "daemon/state.rs",
    "daemon/events.rs",
    "daemon/pending.rs",
    "install/mod.rs",
    "install/files.rs",
    "install/plan.rs",
    "install/node.rs",
    "node_status.rs",
    "publish.rs",
    "recordings.rs",
    "index.rs",
    "selinux_node.rs",
    "selinux_recordings.rs",
    "node_cleanup.rs",
];

/// The Rust types the daemon builds `Api<T>` of, and their resources.
const RESOURCES: &[(&str, &str)] = &[
    ("Pod", "pods"),
    ("Namespace", "namespaces"),
    ("PartialObjectMeta<Node>", "nodes"),
    ("ProfileRecording", "profilerecordings"),
    ("SeccompProfile", "seccompprofiles"),
    ("SelinuxProfile", "selinuxprofiles"),
    ("RawSelinuxProfile", "rawselinuxprofiles"),
    ("SecurityProfileNodeStatus", "securityprofilenodestatuses"),
    ("ProfileBinding", "profilebindings"),
    // Metadata-only watches (the webhook's profile caches).
    ("PartialObjectMeta<SeccompProfile>", "seccompprofiles"),
    ("PartialObjectMeta<SelinuxProfile>", "selinuxprofiles"),
];

/// The webhook's (`--bindings`) source files that talk to the API, and its ClusterRole.
const WEBHOOK_SOURCES: &[&str] = &["webhook/bound.rs"];

/// Reads `Api<T>` / `Api::<T>` and the calls that follow it (until the next `Api` of another
/// type) from one file's code, tests excluded; kube's events Recorder creates and patches
/// events.k8s.io Events.
fn accesses_in(source: &str) -> BTreeSet<Access> {
    // The test module is the last item of each file (a `#[cfg(test)]` at column 0).
    let code = source.split("\n#[cfg(test)]").next().unwrap_or(source);
    let mut found = BTreeSet::new();
    // The resources the calls that follow go to: one for `Api<T>`; for a generic `Api<K>`,
    // the kinds its line names after `// kinds:` (publish.rs: the recorded kinds), else none.
    let mut current: Vec<&str> = Vec::new();
    let mut last_call: Option<&str> = None;
    let mut previous = "";
    for line in code.lines().map(str::trim).filter(|l| !l.starts_with("//")) {
        // A generic `Api<K>` (node_status.rs): its calls are counted through the kinds that
        // implement NodeProfile, below, not as the previous type's — or as the kinds it names.
        if (line.contains("Api<") || line.contains("Api::<"))
            && !RESOURCES.iter().any(|(rust, _)| {
                line.contains(&format!("Api<{rust}>")) || line.contains(&format!("Api::<{rust}>"))
            })
        {
            current = match line.split_once("// kinds:") {
                Some((_, kinds)) => kinds
                    .split(|c: char| c == ',' || c.is_whitespace())
                    .filter_map(|kind| {
                        RESOURCES
                            .iter()
                            .find(|(rust, _)| *rust == kind)
                            .map(|(_, resource)| *resource)
                    })
                    .collect(),
                None => Vec::new(),
            };
        }
        // A kind nodes report on: node_status::summarize patches its status.
        for (rust, resource) in RESOURCES {
            if line.starts_with(&format!("impl node_status::NodeProfile for {rust} "))
                || line.starts_with(&format!("impl NodeProfile for {rust} "))
            {
                found.insert((format!("{resource}/status"), "patch".into()));
            }
        }
        for (rust, resource) in RESOURCES {
            if line.contains(&format!("Api<{rust}>")) || line.contains(&format!("Api::<{rust}>")) {
                current = vec![resource];
                // `watcher(` with its Api on the next line.
                if previous.ends_with("watcher(") {
                    found.insert((resource.to_string(), "list".into()));
                    found.insert((resource.to_string(), "watch".into()));
                }
            }
        }
        previous = line;
        if line.contains("Recorder::new(") {
            found.insert(("events".into(), "create".into()));
            found.insert(("events".into(), "patch".into()));
        }
        for resource in &current {
            calls(line, resource, &mut last_call, &mut found);
        }
    }
    found
}

/// The requests `line` makes to `resource`.
fn calls(
    line: &str,
    resource: &str,
    last_call: &mut Option<&'static str>,
    found: &mut BTreeSet<Access>,
) {
    let mut add = |resource: &str, verb: &str| {
        found.insert((resource.to_owned(), verb.to_owned()));
    };
    let names_a_type = RESOURCES.iter().any(|(rust, _)| {
        line.contains(&format!("Api::<{rust}>")) || line.contains(&format!("Api<{rust}>"))
    });
    if line.contains("watcher(") && names_a_type {
        // A watcher lists, then watches.
        add(resource, "list");
        add(resource, "watch");
    }
    // `.get(` and `.delete(` are also map and label calls: only kube's unambiguous names.
    for (call, verb) in [
        (".list(", "list"),
        (".get_opt(", "get"),
        (".get_metadata(", "get"),
        (".patch(", "patch"),
        (".create(", "create"),
        (".replace(", "update"),
        (".delete_collection(", "deletecollection"),
    ] {
        if line.contains(call) || line.starts_with(&call[1..]) {
            add(resource, verb);
        }
    }
    if line.contains(".patch_status(") || line.starts_with("patch_status(") {
        add(&format!("{resource}/status"), "patch");
        *last_call = Some("patch_status");
    } else if line.contains(".patch(") || line.starts_with("patch(") {
        *last_call = Some("patch");
    }
    // Server-side apply makes the object when it is missing, and the API server then
    // authorizes `create` as well as `patch` (found on the real cluster: a 403).
    if line.contains("Patch::Apply") && *last_call == Some("patch") {
        add(resource, "create");
    }
}

fn granted(file: &str) -> BTreeSet<Access> {
    let path = format!("{}/../deploy/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let mut grants = BTreeSet::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        let doc: serde_yaml::Value = serde::Deserialize::deserialize(document).unwrap();
        if doc["kind"] != "ClusterRole" {
            continue;
        }
        for rule in doc["rules"].as_sequence().unwrap() {
            for resource in rule["resources"].as_sequence().unwrap() {
                for verb in rule["verbs"].as_sequence().unwrap() {
                    grants.insert((
                        resource.as_str().unwrap().to_owned(),
                        verb.as_str().unwrap().to_owned(),
                    ));
                }
            }
        }
    }
    grants
}

#[test]
fn the_cluster_role_grants_exactly_the_requests_the_daemons_code_makes() {
    let mut used = BTreeSet::new();
    for file in DAEMON_SOURCES {
        let path = format!("{}/src/k8s/{file}", env!("CARGO_MANIFEST_DIR"));
        used.extend(accesses_in(&std::fs::read_to_string(&path).unwrap()));
    }
    let granted = granted("rbac.yaml");
    let unused: Vec<_> = granted.difference(&used).collect();
    let missing: Vec<_> = used.difference(&granted).collect();
    assert!(
        unused.is_empty() && missing.is_empty(),
        "deploy/rbac.yaml grants what no code uses: {unused:?}\nthe code makes requests it does not grant: {missing:?}\n(used: {used:?})"
    );
}

#[test]
fn the_webhooks_cluster_role_grants_exactly_the_requests_its_binding_code_makes() {
    let mut used = BTreeSet::new();
    for file in WEBHOOK_SOURCES {
        let path = format!("{}/src/k8s/{file}", env!("CARGO_MANIFEST_DIR"));
        used.extend(accesses_in(&std::fs::read_to_string(&path).unwrap()));
    }
    let granted = granted("webhook/rbac.yaml");
    let unused: Vec<_> = granted.difference(&used).collect();
    let missing: Vec<_> = used.difference(&granted).collect();
    assert!(
        unused.is_empty() && missing.is_empty(),
        "deploy/webhook/rbac.yaml grants what no code uses: {unused:?}\nthe code makes requests it does not grant: {missing:?}\n(used: {used:?})"
    );
    // What it reads and writes, said plainly (a regression in the reader would pass above).
    let said: BTreeSet<Access> = [
        ("pods", "list"),
        ("pods", "watch"),
        ("profilebindings", "list"),
        ("profilebindings", "watch"),
        ("profilebindings/status", "patch"),
        ("seccompprofiles", "list"),
        ("seccompprofiles", "watch"),
        ("seccompprofiles", "patch"),
        ("selinuxprofiles", "list"),
        ("selinuxprofiles", "watch"),
        ("selinuxprofiles", "patch"),
    ]
    .into_iter()
    .map(|(r, v)| (r.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(used, said);
}

#[test]
fn calls_are_read_per_api_type() {
    let source = r#"
        let api: Api<SeccompProfile> = Api::all(client.clone());
        api.patch(&name, &params, &Patch::Apply(&body)).await?;
        // api.delete(&name) is only a comment
        let pods = watcher(
            Api::<Pod>::all(client.clone()), config);
        let statuses: Api<SecurityProfileNodeStatus> = Api::all(c);
        statuses
            .patch_status(&n, &p, &b)
        let recorder = Recorder::new(client.clone(), reporter);
        let generic: Api<K> = Api::all(client.clone());
        generic.list(&lp)
        let recorded: Api<K> = Api::all(client.clone()); // kinds: SeccompProfile, SelinuxProfile
        recorded.delete_collection(&dp, &lp)
#[cfg(test)]
        api.delete_collection(&dp, &lp)
    "#;
    let found: Vec<String> = accesses_in(source)
        .into_iter()
        .map(|(r, v)| format!("{v} {r}"))
        .collect();
    assert_eq!(
        found,
        [
            "create events",
            "patch events",
            "list pods",
            "watch pods",
            "create seccompprofiles",
            "deletecollection seccompprofiles",
            "patch seccompprofiles",
            "patch securityprofilenodestatuses/status",
            "deletecollection selinuxprofiles"
        ]
    );
}
