//! pid → container, from `/proc/<pid>/cgroup`, with a short-lived bounded cache (a burst of
//! denials from one process reads /proc once).

use std::{
    collections::HashMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use super::container::{ContainerRef, container_of_proc_cgroup};

#[derive(Debug)]
pub struct ProcResolver {
    proc: PathBuf,
    cache: HashMap<u32, (Instant, Option<ContainerRef>)>,
    /// How many times the cache was full and started over.
    pub resets: u64,
}

impl ProcResolver {
    /// How long an answer is reused. Short: a pid can be reused by another process.
    const TTL: Duration = Duration::from_secs(1);
    const MAX: usize = 16384;

    pub fn new(proc: PathBuf) -> Self {
        Self {
            proc,
            cache: HashMap::new(),
            resets: 0,
        }
    }

    /// The container of a live process; `None` for a host process or one that is gone.
    pub fn container_of(&mut self, pid: u32) -> Option<ContainerRef> {
        let now = Instant::now();
        if let Some((at, found)) = self.cache.get(&pid)
            && now.duration_since(*at) < Self::TTL
        {
            return found.clone();
        }
        if self.cache.len() >= Self::MAX {
            self.cache.clear();
            self.resets += 1;
        }
        let found = std::fs::File::open(self.proc.join(pid.to_string()).join("cgroup"))
            .ok()
            .and_then(|file| {
                container_of_proc_cgroup(std::io::BufReader::new(file))
                    .ok()
                    .flatten()
            });
        self.cache.insert(pid, (now, found.clone()));
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_from_a_proc_tree_and_caches() {
        let root = std::env::temp_dir().join(format!("syscribe-proc-{}", std::process::id()));
        let id = "4c3a4d5ca0d4b62dd1d0b1cb24ea3f9ba8e23f1e3ea4e6b9e6f6a0a3c5e8c2d1";
        let uid = "0f6e5a2b-8b1c-4b7e-9d3a-1c2b3d4e5f60";
        std::fs::create_dir_all(root.join("42")).unwrap();
        std::fs::write(
            root.join("42/cgroup"),
            format!("0::/kubepods/besteffort/pod{uid}/{id}\n"),
        )
        .unwrap();
        let mut resolver = ProcResolver::new(root.clone());
        let found = resolver.container_of(42).expect("container");
        assert_eq!(found.container_id, id);
        assert_eq!(found.pod_uid.as_deref(), Some(uid));
        assert_eq!(resolver.container_of(43), None, "no such process");
        std::fs::remove_dir_all(&root).unwrap();
        assert!(resolver.container_of(42).is_some(), "cached within the TTL");
    }
}
