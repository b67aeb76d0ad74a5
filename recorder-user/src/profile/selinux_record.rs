//! Recording an SELinux profile from AVC denials: a container running under a permissive
//! recording type is denied nothing, but every access its policy lacks is logged as an AVC;
//! the union of those, per container, is the SelinuxProfile that allows exactly them — the
//! target type (`@self` for the container's own type), its class, the permissions. Replicas
//! of one workload merge by union, as seccomp recordings do.
//!
//! Records come from the kernel on behalf of untrusted processes: every name is checked to be
//! an SELinux identifier, and what is refused or over a bound is counted, never silently lost.

use std::collections::BTreeSet;

use super::cil::AllowRules;

/// Distinct (type, class) pairs one profile may collect; more are counted as dropped.
pub const MAX_RULES: usize = 4096;

/// What a recording kept and what it could not.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SelinuxRecording {
    pub allow: AllowRules,
    /// Denials of another source type than the recorded one (not this container's).
    pub other_source: u64,
    /// Denials whose type, class or permissions a SelinuxProfile cannot hold: not SELinux
    /// identifiers, no permission at all, or a namespaced type (`other.process`: another
    /// profile's, which a profile's allow rules cannot name).
    pub malformed: u64,
    /// Denials dropped because the profile had MAX_RULES (type, class) pairs already.
    pub over_limit: u64,
}

/// An SELinux identifier as a SelinuxProfile may hold it (what `syscribe validate` accepts):
/// letters, digits and '_', not starting with a digit; classes and permissions in lowercase.
fn identifier(s: &str, lowercase: bool) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes().all(|b| {
            b.is_ascii_digit()
                || b == b'_'
                || b.is_ascii_lowercase()
                || (!lowercase && b.is_ascii_uppercase())
        })
        && !s.as_bytes()[0].is_ascii_digit()
}

/// The type of a context `user:role:type[:level]`.
pub fn context_type(context: &str) -> Option<&str> {
    context.split(':').nth(2)
}

impl SelinuxRecording {
    /// Adds one AVC for a process of `source_type` (the recording type the container runs as).
    pub fn add(
        &mut self,
        source_type: &str,
        scontext: &str,
        tcontext: &str,
        tclass: &str,
        perms: &[String],
    ) {
        if context_type(scontext) != Some(source_type) {
            self.other_source += 1;
            return;
        }
        let Some(target) = context_type(tcontext) else {
            self.malformed += 1;
            return;
        };
        let label = if target == source_type {
            "@self"
        } else {
            target
        };
        if !(label == "@self" || identifier(label, false))
            || !identifier(tclass, true)
            || perms.is_empty()
            || perms.iter().any(|p| !identifier(p, true))
        {
            self.malformed += 1;
            return;
        }
        let label = label.to_owned();
        let rules: usize = self.allow.values().map(|c| c.len()).sum();
        let known = self
            .allow
            .get(&label)
            .is_some_and(|classes| classes.contains_key(tclass));
        if !known && rules >= MAX_RULES {
            self.over_limit += 1;
            return;
        }
        let permissions = self
            .allow
            .entry(label)
            .or_default()
            .entry(tclass.to_owned())
            .or_default();
        for perm in perms {
            if !permissions.contains(perm) {
                permissions.push(perm.clone());
            }
        }
        permissions.sort();
    }

    /// The union with another replica's recording.
    pub fn merge(&mut self, other: &SelinuxRecording) {
        for (label, classes) in &other.allow {
            for (class, perms) in classes {
                let mine = self
                    .allow
                    .entry(label.clone())
                    .or_default()
                    .entry(class.clone())
                    .or_default();
                let all: BTreeSet<String> = mine.iter().chain(perms).cloned().collect();
                *mine = all.into_iter().collect();
            }
        }
        self.other_source += other.other_source;
        self.malformed += other.malformed;
        self.over_limit += other.over_limit;
    }

    /// The SelinuxProfile (upstream's v1) that allows what was recorded.
    pub fn to_profile(&self, name: &str) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "security-profiles-operator.x-k8s.io/v1",
            "kind": "SelinuxProfile",
            "metadata": {"name": name},
            "spec": {
                "inherit": [{"kind": "System", "name": "container"}],
                "allow": self.allow,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SELF: &str = "system_u:system_r:selinuxrecording.process:s0:c1,c2";

    /// The AVCs of a container recorded as selinuxrecording.process, as the audit parser reads
    /// them from audit.log (`scontext`, `tcontext`, `tclass`, `{ perms }`), e.g.
    /// `type=AVC msg=audit(1795703105.044:31): avc:  denied  { read } for  pid=4242
    /// comm="nginx" name="nginx.conf" dev="vda" ino=1 scontext=… tcontext=… tclass=file
    /// permissive=1`.
    const AVCS: &[(&str, &str, &str, &str)] = &[
        (SELF, "system_u:object_r:etc_t:s0", "file", "read"),
        (SELF, "system_u:object_r:etc_t:s0", "file", "open"),
        (
            SELF,
            "system_u:object_r:http_port_t:s0",
            "tcp_socket",
            "name_bind",
        ),
        (SELF, SELF, "tcp_socket", "listen"),
        // Another container's denial on the node: not this recording's.
        (
            "system_u:system_r:container_t:s0:c3,c4",
            "system_u:object_r:var_t:s0",
            "dir",
            "write",
        ),
    ];

    fn recorded(avcs: &[(&str, &str, &str, &str)]) -> SelinuxRecording {
        let mut recording = SelinuxRecording::default();
        for (scontext, tcontext, tclass, perm) in avcs {
            recording.add(
                "selinuxrecording.process",
                scontext,
                tcontext,
                tclass,
                &[(*perm).to_owned()],
            );
        }
        recording
    }

    #[test]
    fn avcs_become_the_minimal_allow_rules() {
        let recording = recorded(AVCS);
        let profile = recording.to_profile("nginx-web");
        assert_eq!(
            profile["spec"]["allow"],
            serde_json::json!({
                "@self": {"tcp_socket": ["listen"]},
                "etc_t": {"file": ["open", "read"]},
                "http_port_t": {"tcp_socket": ["name_bind"]},
            })
        );
        assert_eq!(recording.other_source, 1);
        // What was recorded is a profile the validator accepts.
        let value: serde_yaml::Value = serde_yaml::to_value(&profile).unwrap();
        let problems = crate::profile::validate::Validator::default().validate(&value);
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn replicas_merge_and_hostile_names_are_counted_not_kept() {
        let mut one = recorded(&AVCS[..2]);
        let two = recorded(&AVCS[1..4]);
        one.merge(&two);
        assert_eq!(one.allow, recorded(&AVCS[..4]).allow);
        let mut hostile = SelinuxRecording::default();
        hostile.add(
            "r.process",
            "u:r:r.process:s0",
            "u:r:evil)(allow:s0",
            "file",
            &["read".into()],
        );
        hostile.add(
            "r.process",
            "u:r:r.process:s0",
            "u:r:etc_t:s0",
            "file",
            &["re ad".into()],
        );
        // What `syscribe validate` would refuse is not kept either: another profile's
        // namespaced type, an uppercase class, no permission, a quote in a permission.
        for (tcontext, class, perms) in [
            ("u:r:other.process:s0", "file", vec!["read".to_owned()]),
            ("u:r:etc_t:s0", "FILE", vec!["read".to_owned()]),
            ("u:r:etc_t:s0", "file", vec![]),
            ("u:r:etc_t:s0", "file", vec!["re\"ad".to_owned()]),
            ("u:r:1etc_t:s0", "file", vec!["read".to_owned()]),
            ("u:r", "file", vec!["read".to_owned()]),
        ] {
            hostile.add("r.process", "u:r:r.process:s0", tcontext, class, &perms);
        }
        assert_eq!(hostile.malformed, 8);
        assert!(hostile.allow.is_empty());
        let mut full = SelinuxRecording::default();
        for i in 0..MAX_RULES + 3 {
            full.add(
                "r.process",
                "u:r:r.process:s0",
                &format!("u:r:t{i}_t:s0"),
                "file",
                &["read".into()],
            );
        }
        assert_eq!(full.over_limit, 3);
        assert_eq!(full.allow.len(), MAX_RULES);
    }
}
