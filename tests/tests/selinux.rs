//! SELinux modules built with the real tools (semodule, libsemanage, libsepol's CIL compiler)
//! into an offline copy of this machine's policy store — Debian's reference policy; SELinux is
//! compiled into this kernel but not enabled, so nothing is loaded — and read back from the
//! binary policy they produced with sesearch (setools).

use std::{path::Path, process::Command};

use syscribe::{
    profile::cil::{AllowRules, Inherit, to_cil, wrap_raw},
    selinux::{PolicyStore, StoreError},
};
use syscribe_tests::*;

/// A copy of the host's policy store below a temporary root.
fn offline_store(tag: &str) -> (TempDir, PolicyStore) {
    require_root();
    for needed in ["/var/lib/selinux/default", "/etc/selinux/default"] {
        assert!(
            Path::new(needed).is_dir(),
            "{needed} is missing: install selinux-policy-default (cargo xtask test does)"
        );
    }
    let dir = TempDir::new(tag);
    for (from, to) in [
        ("/var/lib/selinux", "var/lib"),
        ("/etc/selinux/default", "etc/selinux"),
        ("/etc/selinux/semanage.conf", "etc/selinux"),
        ("/etc/selinux/config", "etc/selinux"),
    ] {
        let to = dir.join(to);
        std::fs::create_dir_all(&to).unwrap();
        let status = Command::new("cp")
            .arg("-a")
            .arg(from)
            .arg(&to)
            .status()
            .unwrap();
        assert!(status.success(), "copying {from}");
    }
    let store = PolicyStore::offline(dir.path());
    (dir, store)
}

/// What the built policy allows `source` on `target` (sesearch's lines).
fn allowed(root: &Path, source: &str, target: &str) -> String {
    let policy = root.join("etc/selinux/default/policy/policy.33");
    let out = Command::new("sesearch")
        .args(["-A", "-s", source, "-t", target])
        .arg(&policy)
        .output()
        .expect("sesearch (setools) runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn profiles_are_built_into_the_policy_and_removed_from_it() {
    let (root, store) = offline_store("selinux-store");
    assert!(
        store.ensure_template().unwrap(),
        "the container template went in"
    );
    assert!(
        !store.ensure_template().unwrap(),
        "and is not installed twice"
    );

    // A SelinuxProfile, as upstream translates it.
    let mut allow = AllowRules::new();
    allow.entry("var_log_t".into()).or_default().insert(
        "file".into(),
        vec!["read".into(), "append".into(), "open".into()],
    );
    let cil = to_cil(
        "errorlogger",
        &[Inherit::System("container".into())],
        &allow,
        false,
    );
    store.install("errorlogger", &cil).unwrap();
    let rules = allowed(root.path(), "errorlogger.process", "var_log_t");
    assert_eq!(
        rules.trim(),
        "allow errorlogger.process var_log_t:file { append open read };",
        "{cil}"
    );

    // A RawSelinuxProfile in upstream's example's shape, wrapped in its block.
    let raw = wrap_raw(
        "rawlogger",
        "(blockinherit container)\n(allow process var_log_t ( dir ( open read search )))\n",
    );
    store.install("rawlogger", &raw).unwrap();
    assert_eq!(
        allowed(root.path(), "rawlogger.process", "var_log_t").trim(),
        "allow rawlogger.process var_log_t:dir { open read search };"
    );

    // What the compiler refuses leaves the store as it was, and says which line.
    let policy = root.join("etc/selinux/default/policy/policy.33");
    let before = (store.modules().unwrap(), std::fs::read(&policy).unwrap());
    let mut bad = AllowRules::new();
    bad.entry("no_such_t".into())
        .or_default()
        .insert("file".into(), vec!["read".into()]);
    let cil = to_cil(
        "broken",
        &[Inherit::System("container".into())],
        &bad,
        false,
    );
    match store.install("broken", &cil) {
        Err(StoreError::Refused { complaints, .. }) => {
            assert!(
                complaints.iter().any(|c| c.line == Some(3)),
                "no complaint about line 3 (the allow rule) of\n{cil}{complaints:#?}"
            );
        }
        other => panic!("not refused: {other:?}"),
    }
    let after = (store.modules().unwrap(), std::fs::read(&policy).unwrap());
    assert!(before == after, "a refused module changed the store");

    // Removal takes the rules out.
    assert!(store.remove("errorlogger").unwrap());
    assert!(!store.remove("errorlogger").unwrap());
    // The type itself is gone from the built policy.
    let gone = allowed(root.path(), "errorlogger.process", "var_log_t");
    assert!(
        !gone.contains("allow ") && gone.contains("errorlogger.process is not a valid type"),
        "{gone}"
    );
    assert!(!store.modules().unwrap().contains("errorlogger"));
    assert!(store.modules().unwrap().contains("rawlogger"));
}

/// The DaemonSet's container (deploy/daemonset.yaml).
fn daemonset_container() -> serde_yaml::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/daemonset.yaml");
    let ds: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    ds["spec"]["template"]["spec"]["containers"][0].clone()
}

/// Runs `args` in a runc container of the image's files (`SYSCRIBE_ROOTFS`), shaped as the
/// DaemonSet runs it: read-only root, uid 0, exactly its capabilities, no new privileges, and
/// `mounts` (container path → host directory, read-only?). Returns (success, stdout+stderr).
fn run_in_image(rootfs: &Path, mounts: &[(&str, &Path, bool)], args: &[&str]) -> (bool, String) {
    let id = format!("syscribe-selinux-{}", std::process::id());
    let bundle = TempDir::new("selinux-bundle");
    let status = Command::new("runc")
        .arg("spec")
        .arg("--bundle")
        .arg(bundle.path())
        .status()
        .expect("runc (Debian's runc) runs");
    assert!(status.success(), "runc spec failed");
    let config_path = bundle.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["root"] = serde_json::json!({ "path": rootfs, "readonly": true });
    config["process"]["terminal"] = false.into();
    config["process"]["args"] = args.iter().map(|a| serde_json::Value::from(*a)).collect();
    config["process"]["user"] = serde_json::json!({ "uid": 0, "gid": 0 });
    config["process"]["noNewPrivileges"] = true.into();
    let sc = &daemonset_container()["securityContext"];
    assert_eq!(sc["capabilities"]["drop"][0], "ALL");
    let caps: Vec<serde_json::Value> = sc["capabilities"]["add"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|c| format!("CAP_{}", c.as_str().unwrap()).into())
        .collect();
    config["process"]["capabilities"] = serde_json::json!({
        "bounding": caps, "effective": caps, "permitted": caps,
    });
    let list = config["mounts"].as_array_mut().unwrap();
    for (target, source, read_only) in mounts {
        let mut options = vec!["rbind", "rprivate"];
        if *read_only {
            options.push("ro");
        }
        list.push(serde_json::json!({
            "destination": target, "type": "bind", "source": source, "options": options,
        }));
    }
    std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    let out = Command::new("runc")
        .arg("run")
        .arg("--bundle")
        .arg(bundle.path())
        .arg(&id)
        .output()
        .expect("runc run");
    let _ = Command::new("runc")
        .args(["delete", "--force", &id])
        .output();
    let text = format!("{}{}", stdout(&out), stderr(&out));
    (out.status.success(), text)
}

/// The image's semodule (and the helpers libsemanage runs) install and remove a module in a
/// policy store mounted where the DaemonSet mounts the node's, in a container as confined as
/// the DaemonSet's. SELinux is off here: the store is a copy of Debian's reference policy, and
/// libsemanage does not load the policy into a kernel (where SELinux is on it runs the
/// image's load_policy); selinuxfs is not there to mount.
#[test]
fn the_images_semodule_installs_and_removes_a_module_in_the_mounted_store() {
    require_root();
    let rootfs = std::env::var_os("SYSCRIBE_ROOTFS")
        .map(std::path::PathBuf::from)
        .expect(
            "SYSCRIBE_ROOTFS is not set: run with `cargo xtask test` (or `cargo xtask rootfs DIR`)",
        );
    for tool in ["semodule", "setfiles", "sefcontext_compile", "load_policy"] {
        assert!(
            rootfs.join("usr/sbin").join(tool).is_file(),
            "the image has no {tool}"
        );
    }
    let (root, _) = offline_store("selinux-image");
    let tmp = TempDir::new("selinux-image-tmp");
    std::fs::write(
        tmp.join("syscribeprobe.cil"),
        "(type syscribeprobe_t)\n(allow syscribeprobe_t var_log_t (file (read open)))\n",
    )
    .unwrap();

    // Mount the store copy where the DaemonSet mounts the node's, read-only where it says so.
    let container = daemonset_container();
    let mounts_of = |path: &str| -> bool {
        let mount = container["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == path)
            .unwrap_or_else(|| panic!("the DaemonSet mounts nothing at {path}"));
        mount["readOnly"].as_bool().unwrap()
    };
    let etc = root.join("etc/selinux");
    let store = root.join("var/lib/selinux");
    let mounts = [
        ("/etc/selinux", etc.as_path(), mounts_of("/etc/selinux")),
        (
            "/var/lib/selinux",
            store.as_path(),
            mounts_of("/var/lib/selinux"),
        ),
        ("/tmp", tmp.path(), mounts_of("/tmp")),
    ];
    assert!(mounts_of("/sys/fs"), "selinuxfs comes read-only-parented");

    // As PolicyStore::host runs it: `semodule -i <dir>/<name>.cil`, found on PATH.
    let (ok, out) = run_in_image(
        &rootfs,
        &mounts,
        &["semodule", "-i", "/tmp/syscribeprobe.cil"],
    );
    assert!(ok, "semodule -i in the image failed: {out}");
    assert_eq!(
        allowed(root.path(), "syscribeprobe_t", "var_log_t").trim(),
        "allow syscribeprobe_t var_log_t:file { open read };",
        "{out}"
    );
    let (ok, listed) = run_in_image(&rootfs, &mounts, &["semodule", "-l"]);
    assert!(ok, "semodule -l: {listed}");
    assert!(
        listed.lines().any(|l| l.trim() == "syscribeprobe"),
        "{listed}"
    );

    let (ok, out) = run_in_image(&rootfs, &mounts, &["semodule", "-r", "syscribeprobe"]);
    assert!(ok, "semodule -r in the image failed: {out}");
    let gone = allowed(root.path(), "syscribeprobe_t", "var_log_t");
    assert!(
        !gone.contains("allow ") && gone.contains("syscribeprobe_t is not a valid type"),
        "{gone}"
    );
}

/// The recording type pods of a SelinuxProfile recording run as: built into the real policy as
/// a permissive domain (what it is denied is logged, not refused); and a recorded profile of
/// the shape `k8s::selinux_recordings` produces (`@self` included) builds on the template.
#[test]
fn the_recording_type_is_permissive_and_a_recorded_profile_builds() {
    let (root, store) = offline_store("selinux-recording");
    assert!(
        store.ensure_recording_module().unwrap(),
        "the recording module went in"
    );
    assert!(!store.ensure_recording_module().unwrap(), "once");
    let modules = store.modules().unwrap();
    assert!(modules.contains("container") && modules.contains("selinuxrecording"));
    // The type is in the built policy, a domain (the template's), ...
    let policy = root.join("etc/selinux/default/policy/policy.33");
    let out = Command::new("seinfo")
        .args(["-x", "-t", syscribe::selinux::RECORDING_TYPE])
        .arg(&policy)
        .output()
        .expect("seinfo (setools) runs");
    let info = String::from_utf8_lossy(&out.stdout);
    assert!(
        info.contains("type selinuxrecording.process, domain"),
        "{info}"
    );
    // ... and permissive in the module the store holds. (setools 4.4.1's `seinfo --permissive`
    // lists no permissive type in policies built here, not even for a top-level
    // `(typepermissive ifplugd_t)`: it cannot be the judge of this.)
    let extracted = TempDir::new("selinux-recording-extract");
    let status = Command::new("semodule")
        .arg("-p")
        .arg(root.path())
        .args(["-c", "-E", "selinuxrecording"])
        .current_dir(extracted.path())
        .status()
        .unwrap();
    assert!(status.success(), "semodule -E");
    let stored = std::fs::read_to_string(extracted.join("selinuxrecording.cil")).unwrap();
    assert!(stored.contains("(typepermissive process)"), "{stored}");

    let mut allow = AllowRules::new();
    allow
        .entry("@self".into())
        .or_default()
        .insert("tcp_socket".into(), vec!["listen".into()]);
    allow.entry("etc_t".into()).or_default().insert(
        "file".into(),
        vec!["getattr".into(), "open".into(), "read".into()],
    );
    let name = "test-selinux-recording-app";
    let cil = to_cil(name, &[Inherit::System("container".into())], &allow, false);
    store.install(name, &cil).unwrap();
    let process = format!("{name}.process");
    // (The base policy's own rules for every domain are listed too.)
    let rules = allowed(root.path(), &process, "etc_t");
    assert!(
        rules
            .lines()
            .any(|l| l == format!("allow {process} etc_t:file {{ getattr open read }};")),
        "{rules}"
    );
    assert!(
        allowed(root.path(), &process, &process).contains("tcp_socket listen"),
        "{}",
        allowed(root.path(), &process, &process)
    );
}
