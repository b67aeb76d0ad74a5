//! The cgroup v2 hierarchy: where it is mounted and what a cgroup's id is.

use std::{
    io::{self, BufRead},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum CgroupError {
    #[error("cannot read {path}: {source}", path = .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no cgroup2 filesystem is mounted (looked in {path}); syscribe records by cgroup v2 id", path = .path.display())]
    NoCgroup2 { path: PathBuf },
    #[error("{path} is not a cgroup2 directory: {source}", path = .path.display())]
    NotACgroup {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Finds the mount point of the cgroup2 filesystem in a mountinfo file
/// (`/proc/self/mountinfo`): `/sys/fs/cgroup` on unified hosts, `/sys/fs/cgroup/unified` on
/// hybrid ones.
// By hand, not procfs's MountInfo: it leaves mount points escaped (`\040`), which this decodes.
pub fn find_cgroup2_mount(mountinfo: impl BufRead) -> io::Result<Option<PathBuf>> {
    for line in mountinfo.lines() {
        let line = line?;
        // `36 35 0:30 / /sys/fs/cgroup/unified rw,relatime shared:8 - cgroup2 cgroup2 rw`
        let Some((before, after)) = line.split_once(" - ") else {
            continue;
        };
        if after.split(' ').next() != Some("cgroup2") {
            continue;
        }
        if let Some(mount_point) = before.split(' ').nth(4) {
            return Ok(Some(PathBuf::from(unescape_octal(mount_point))));
        }
    }
    Ok(None)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The cgroup2 mount of this host, from `mountinfo_path`.
pub fn cgroup2_mount(mountinfo_path: &Path) -> Result<PathBuf, CgroupError> {
    let read_err = |source| CgroupError::Read {
        path: mountinfo_path.to_owned(),
        source,
    };
    let file = std::fs::File::open(mountinfo_path).map_err(read_err)?;
    find_cgroup2_mount(io::BufReader::new(file))
        .map_err(read_err)?
        .ok_or_else(|| CgroupError::NoCgroup2 {
            path: mountinfo_path.to_owned(),
        })
}

/// The cgroup v2 id of a cgroup directory: the kernfs inode number, which is what
/// `bpf_get_current_cgroup_id()` returns for tasks inside it.
pub fn cgroup_id(dir: &Path) -> Result<u64, CgroupError> {
    std::fs::metadata(dir)
        .map(|meta| meta.ino())
        .map_err(|source| CgroupError::NotACgroup {
            path: dir.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_hybrid_and_unified_mounts() {
        let hybrid = "\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
35 25 0:29 / /sys/fs/cgroup rw,relatime shared:9 - tmpfs tmpfs rw,mode=755
36 35 0:30 / /sys/fs/cgroup/unified rw,relatime shared:10 - cgroup2 cgroup2 rw
37 35 0:31 / /sys/fs/cgroup/cpu rw,relatime shared:11 - cgroup cgroup rw,cpu
";
        assert_eq!(
            find_cgroup2_mount(hybrid.as_bytes()).unwrap(),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let unified = "29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";
        assert_eq!(
            find_cgroup2_mount(unified.as_bytes()).unwrap(),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
    }

    #[test]
    fn v1_only_hosts_have_none_and_escapes_are_decoded() {
        let v1 = "37 35 0:31 / /sys/fs/cgroup/cpu rw,relatime shared:11 - cgroup cgroup rw,cpu\n";
        assert_eq!(find_cgroup2_mount(v1.as_bytes()).unwrap(), None);
        let spaced = "36 35 0:30 / /mnt/cg\\040two rw - cgroup2 none rw\n";
        assert_eq!(
            find_cgroup2_mount(spaced.as_bytes()).unwrap(),
            Some(PathBuf::from("/mnt/cg two"))
        );
    }

    #[test]
    fn missing_mountinfo_names_the_path() {
        let err = cgroup2_mount(Path::new("/nonexistent/mountinfo")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot read /nonexistent/mountinfo:"),
            "{err}"
        );
    }
}
