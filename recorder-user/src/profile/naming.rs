//! Names of recorded profiles, as upstream builds them: `<recording>-<container>`, plus the
//! pod's replica suffix (what the API server appended to its `generateName`) for pods of a
//! workload, so replicas do not overwrite each other. Pure: no kube types.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    #[error("recording name {name:?} is not a DNS-1123 label: {reason}")]
    Recording { name: String, reason: &'static str },
    #[error("profile name {name:?} would not be a valid object name: {reason}")]
    Profile { name: String, reason: &'static str },
}

/// Why `name` is not a DNS-1123 label (lowercase alphanumerics and '-', starting and ending
/// alphanumeric, at most 63 characters), or `None` if it is one.
pub fn dns1123_label_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("it is empty");
    }
    if name.len() > 63 {
        return Some("it is longer than 63 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Some("only lowercase letters, digits and '-' are allowed");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Some("it must start and end with a letter or digit");
    }
    None
}

/// Why `name` is not a DNS-1123 subdomain (labels joined by '.', at most 253 characters).
pub fn dns1123_subdomain_problem(name: &str) -> Option<&'static str> {
    if name.len() > 253 {
        return Some("it is longer than 253 characters");
    }
    name.split('.').find_map(|label| {
        dns1123_label_problem(label).map(|_| "each dot-separated part must be a DNS-1123 label")
    })
}

/// The replica suffix of a pod created from `generate_name` (`nginx-` + `gmbrj`), if any.
pub fn replica_suffix<'a>(pod_name: &'a str, generate_name: Option<&str>) -> Option<&'a str> {
    let prefix = generate_name.filter(|p| !p.is_empty())?;
    pod_name
        .strip_prefix(prefix)
        .filter(|suffix| !suffix.is_empty())
}

/// `<recording>-<container>[-<replica suffix>]`.
pub fn recorded_profile_name(
    recording: &str,
    container: &str,
    replica: Option<&str>,
) -> Result<String, NameError> {
    if let Some(reason) = dns1123_label_problem(recording) {
        return Err(NameError::Recording {
            name: recording.to_owned(),
            reason,
        });
    }
    let name = match replica {
        Some(suffix) => format!("{recording}-{container}-{suffix}"),
        None => format!("{recording}-{container}"),
    };
    match dns1123_subdomain_problem(&name) {
        Some(reason) => Err(NameError::Profile { name, reason }),
        None => Ok(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_upstream() {
        assert_eq!(
            recorded_profile_name("test-recording", "nginx", None).unwrap(),
            "test-recording-nginx"
        );
        let suffix = replica_suffix("nginx-gmbrj", Some("nginx-"));
        assert_eq!(suffix, Some("gmbrj"));
        assert_eq!(
            recorded_profile_name("test-recording", "nginx", suffix).unwrap(),
            "test-recording-nginx-gmbrj"
        );
        assert_eq!(replica_suffix("standalone", None), None);
        assert_eq!(replica_suffix("other", Some("nginx-")), None);
    }

    #[test]
    fn invalid_names_say_why() {
        for (recording, reason) in [
            ("Test", "only lowercase"),
            ("-x", "start and end"),
            ("", "empty"),
            ("a_b", "only lowercase"),
        ] {
            let err = recorded_profile_name(recording, "c", None).unwrap_err();
            assert!(err.to_string().contains(reason), "{recording}: {err}");
        }
        let long = "a".repeat(63);
        let err = recorded_profile_name(&long, &"b".repeat(200), None).unwrap_err();
        assert!(matches!(err, NameError::Profile { .. }), "{err}");
        assert!(dns1123_subdomain_problem("a.b-c.d").is_none());
        assert!(dns1123_subdomain_problem("a..b").is_some());
    }
}
