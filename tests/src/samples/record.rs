//! Recording a sample server, and the profile file it becomes.

use std::path::Path;

use syscribe::profile::{crd::SeccompProfileDoc, seccomp::Seccomp};

use super::{ANNOTATION_PACKAGE, RUNTIME_SETUP_ONLY, Sample, Served, Server};
use crate::{
    TempDir, allowed_names,
    containers::{PodCgroup, PodRecording, profile_of},
};

/// Records `server` under the load, Unconfined as a pod runs by default (in a pod's cgroup,
/// from runc's last setup step after its root switch on: the boundary `exec`), with containerd's default
/// capabilities; returns the container's profile as syscribe wrote it (OCI JSON, with the
/// capabilities it used).
pub fn record(server: Server, rootfs: &Path) -> Result<(serde_json::Value, Served), String> {
    let pod = PodCgroup::new();
    let out = TempDir::new(&format!("sample-record-{}", server.name()));
    let recording = PodRecording::start(&pod, out.path());
    let sample = Sample::new(server, rootfs, &pod, None);
    let served = sample.serve();
    let profile = served
        .is_ok()
        .then(|| profile_of(out.path(), sample.bundle()));
    drop(sample);
    let log = recording.stop();
    let served = served?;
    let profile = profile.expect("a profile when the load succeeded");
    let problems: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("\"level\":\"WARN\"") || l.contains("\"level\":\"ERROR\""))
        .collect();
    if !problems.is_empty() {
        return Err(format!("syscribe warned while recording: {problems:#?}"));
    }
    let container = &profile["syscribe"]["container"];
    if container["boundary"]["kind"] != "exec" {
        return Err(format!(
            "the recording did not start at the container's exec: {}",
            profile["syscribe"]
        ));
    }
    if !profile["syscribe"]["capabilities"].is_array() {
        return Err(format!(
            "the recording has no capability set (does this kernel have the cap_capable \
             tracepoint?): {}",
            profile["syscribe"]
        ));
    }
    let names = allowed_names(&profile);
    if let Some(setup) = RUNTIME_SETUP_ONLY.iter().find(|s| names.contains(**s)) {
        return Err(format!(
            "runtime setup syscall {setup} in the profile: {names:?}"
        ));
    }
    Ok((profile, served))
}

/// What the profile's header says about where it came from.
pub struct Provenance<'a> {
    pub package_version: &'a str,
    /// The Debian release (`bookworm`).
    pub suite: &'a str,
    /// The day of the recording (`2026-11-30`).
    pub date: &'a str,
}

/// The committed form of a recorded profile: an upstream SeccompProfile named after the
/// server, with a header saying where it came from and how to make it again.
pub fn profile_document(
    server: Server,
    recorded: &serde_json::Value,
    provenance: &Provenance<'_>,
) -> Result<String, String> {
    let seccomp: Seccomp = serde_json::from_value(recorded.clone())
        .map_err(|e| format!("syscribe's profile does not read back: {e}"))?;
    let mut doc = SeccompProfileDoc::from_recorded(server.name().to_owned(), &seccomp);
    doc.metadata.annotations.insert(
        ANNOTATION_PACKAGE.to_owned(),
        format!("{}={}", server.package(), provenance.package_version),
    );
    let yaml = serde_yaml::to_string(&doc).map_err(|e| format!("YAML: {e}"))?;
    let count = seccomp
        .syscalls
        .iter()
        .map(|r| r.names.len())
        .sum::<usize>();
    let handoff = recorded["syscribe"]["container"]["runtimeHandoff"]
        .as_array()
        .map(|names| {
            names
                .iter()
                .filter_map(|n| n.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let not_seen = if handoff.is_empty() {
        String::new()
    } else {
        format!(" (not made this time: {handoff})")
    };
    let name = server.name();
    let header = [
        format!(
            "{} {} from Debian {} (amd64): {count} syscalls. Recorded {}.",
            server.package(),
            provenance.package_version,
            provenance.suite,
            provenance.date
        ),
        String::new(),
        format!(
            "How: `syscribe record --cgroup` on a runc container whose root filesystem is Debian's (debootstrap --variant=minbase, then apt-get install {}), running `{}` with Debian's configuration plus the site in tests/samples/, as root, Unconfined, with containerd's default capabilities and no_new_privs off (a pod's defaults), on the host's network.",
            server.package(),
            server.args().join(" ")
        ),
        format!("Load: {}.", server.load_description()),
        format!(
            "Boundary: exec. The container ran Unconfined, so the recording starts at runc's last root or namespace setup step after it switched the container's root (no later than where runc installs a filter), and the profile holds none of runc's setup; what runc does after that step is (a confined start needs it), and so is runc's Go hand-off set whether seen or not{not_seen}. Capabilities count from the server's exec."
        ),
        String::new(),
        capabilities_line(recorded),
        String::new(),
        format!(
            "Re-record (as root): cargo xtask samples {name}  (--rebuild: the release's newest package; --suite: another Debian release). Replayed by tests/samples.rs in cargo xtask test."
        ),
        format!(
            "Use: kubectl apply -f deploy/profiles/{name}.yaml; pods name it as securityContext.seccompProfile {{type: Localhost, localhostProfile: operator/{name}.json}}."
        ),
    ];
    let mut text = String::new();
    for line in header {
        for wrapped in wrap(&line, 96) {
            text.push_str("# ");
            text.push_str(&wrapped);
            text.push('\n');
        }
        if line.is_empty() {
            text.push_str("#\n");
        }
    }
    text.push_str(&yaml);
    Ok(text)
}

/// The header's line on the capabilities the server used, with the `securityContext` that
/// grants exactly those.
fn capabilities_line(recorded: &serde_json::Value) -> String {
    let names: Vec<&str> = recorded["syscribe"]["capabilities"]
        .as_array()
        .map(|names| names.iter().filter_map(|n| n.as_str()).collect())
        .unwrap_or_default();
    let short: Vec<&str> = names
        .iter()
        .map(|n| n.strip_prefix("CAP_").unwrap_or(n))
        .collect();
    if short.is_empty() {
        return "Capabilities: none used (of containerd's defaults). securityContext: {capabilities: {drop: [ALL]}}.".to_owned();
    }
    format!(
        "Capabilities: of containerd's defaults it used {} (annotation syscribe.dev/capabilities); tests/samples.rs replays it with only these. securityContext: {{capabilities: {{drop: [ALL], add: [{}]}}}}.",
        short.join(", "),
        short.join(", ")
    )
}

/// `line` cut at spaces into lines of at most `width` characters (a longer word stays whole).
fn wrap(line: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for word in line.split(' ').filter(|w| !w.is_empty()) {
        if !current.is_empty() && current.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(word);
    }
    if !current.is_empty() {
        lines.push(current);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_wrapped_at_spaces() {
        assert_eq!(wrap("aa bb cc", 5), ["aa bb", "cc"]);
        assert_eq!(wrap("a-very-long-word x", 4), ["a-very-long-word", "x"]);
        assert!(wrap("", 10).is_empty());
    }
}
