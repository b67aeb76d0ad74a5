//! JSON files named by a key in one directory, `<prefix><key>.json`: the daemon's state (its
//! profiles waiting to be published, its pods' finished containers) and the seccomp profiles
//! it installs for the kubelet. Keys come from the API server (object names, pod UIDs), so
//! which key may name a file is decided once, here ([`KeyedStore::file_name`]); every file is
//! read and written through [`crate::files::Dir`] (no link followed, atomic replacement).

use std::{
    io,
    path::{Path, PathBuf},
};

use thiserror::Error;

use crate::files::Dir;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error(
        "{key:?} cannot name a file: a DNS subdomain is needed (lowercase letters, digits, '-' and '.'; no '/', no leading '.'), short enough for {file:?}"
    )]
    Key { key: String, file: String },
    #[error("{op} {path}: {source}", path = .path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The files `<prefix><key>.json` of one directory.
#[derive(Debug, Clone)]
pub struct KeyedStore {
    /// Trusted (links in it are followed); created, with `below`, when a file is written.
    base: PathBuf,
    /// Opened below `base` without following a link (empty: `base` itself).
    below: PathBuf,
    prefix: &'static str,
}

/// The longest file name (NAME_MAX).
const MAX_FILE_NAME: usize = 255;

impl KeyedStore {
    /// The files in `dir` (trusted, created when needed).
    pub fn new(dir: PathBuf, prefix: &'static str) -> Self {
        Self {
            base: dir,
            below: PathBuf::new(),
            prefix,
        }
    }

    /// The files in `base/below`, opened without following a link below `base`: a component
    /// of `below` planted as a link is refused, never written through.
    pub fn below(base: &Path, below: &Path, prefix: &'static str) -> Self {
        Self {
            base: base.to_owned(),
            below: below.to_owned(),
            prefix,
        }
    }

    /// The directory.
    pub fn dir(&self) -> PathBuf {
        self.base.join(&self.below)
    }

    /// `<prefix><key>.json`, when `key` is a DNS subdomain (what the API server takes as an
    /// object name; a pod UID is one too) and the name fits a file name: nothing that could
    /// leave the directory, hide (a leading '.') or be cut.
    pub fn file_name(&self, key: &str) -> Option<String> {
        let plain = !key.is_empty()
            && key.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            });
        let name = format!("{}{key}.json", self.prefix);
        (plain && name.len() <= MAX_FILE_NAME).then_some(name)
    }

    fn checked(&self, key: &str) -> Result<String, StoreError> {
        self.file_name(key).ok_or_else(|| StoreError::Key {
            key: key.to_owned(),
            file: format!("{}<key>.json", self.prefix),
        })
    }

    /// Where `key`'s file is.
    pub fn path_of(&self, key: &str) -> Result<PathBuf, StoreError> {
        Ok(self.dir().join(self.checked(key)?))
    }

    /// The directory, created when `create`; None when it is not there (and not created).
    fn open(&self, create: bool) -> Result<Option<Dir>, StoreError> {
        match Dir::open_below(&self.base, &self.below, create) {
            Ok(dir) => Ok(Some(dir)),
            Err(err) if !create && err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io {
                op: "open",
                path: self.dir(),
                source,
            }),
        }
    }

    /// `key`'s file, at most `cap` bytes; None when there is none.
    pub fn read(&self, key: &str, cap: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let file = self.checked(key)?;
        let Some(dir) = self.open(false)? else {
            return Ok(None);
        };
        dir.read(&file, cap).map_err(|source| StoreError::Io {
            op: "read",
            path: dir.path().join(&file),
            source,
        })
    }

    /// Replaces `key`'s file with `bytes` atomically (readers see the old or the new content);
    /// with `durable`, synced first.
    pub fn write(&self, key: &str, bytes: &[u8], durable: bool) -> Result<(), StoreError> {
        let file = self.checked(key)?;
        let dir = self.open(true)?.expect("created");
        dir.write_atomically(&file, bytes, durable)
            .map_err(|source| StoreError::Io {
                op: "write",
                path: dir.path().join(&file),
                source,
            })
    }

    /// Removes `key`'s file; false when there was none.
    pub fn remove(&self, key: &str) -> Result<bool, StoreError> {
        let file = self.checked(key)?;
        let Some(dir) = self.open(false)? else {
            return Ok(false);
        };
        dir.remove(&file).map_err(|source| StoreError::Io {
            op: "remove",
            path: dir.path().join(&file),
            source,
        })
    }

    /// The keys of the files there are (none when the directory is not there); files of
    /// other names are left alone.
    pub fn keys(&self) -> Result<Vec<String>, StoreError> {
        let Some(dir) = self.open(false)? else {
            return Ok(Vec::new());
        };
        let names = dir.names().map_err(|source| StoreError::Io {
            op: "list",
            path: dir.path().to_owned(),
            source,
        })?;
        Ok(names
            .into_iter()
            .filter_map(|name| {
                let key = name.strip_prefix(self.prefix)?.strip_suffix(".json")?;
                self.file_name(key).is_some().then(|| key.to_owned())
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("syscribe-keyed-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// A DNS subdomain of `len` characters (labels of 63).
    fn subdomain(len: usize) -> String {
        (0..len)
            .map(|i| if i % 64 == 63 { '.' } else { 'a' })
            .collect()
    }

    #[test]
    fn only_dns_subdomains_that_fit_a_file_name_are_keys() {
        let store = KeyedStore::new("/state".into(), "pending-");
        assert_eq!(
            store.file_name("web-app.v2").as_deref(),
            Some("pending-web-app.v2.json")
        );
        assert_eq!(
            store
                .path_of("6f1d2c3b-0a9e-4b8c-9d7e-123456789abc")
                .unwrap(),
            Path::new("/state/pending-6f1d2c3b-0a9e-4b8c-9d7e-123456789abc.json")
        );
        let fits = MAX_FILE_NAME - "pending-.json".len();
        let long = subdomain(fits + 1);
        for bad in [
            "../etc/passwd",
            "a/b",
            ".hidden",
            "..",
            "a..b",
            "Upper",
            "",
            "-x",
            "x-",
            "a\0b",
            &"a".repeat(64),
            long.as_str(),
        ] {
            assert!(store.file_name(bad).is_none(), "{bad:?}");
            let err = store.path_of(bad).unwrap_err().to_string();
            assert!(err.contains("cannot name a file"), "{bad:?}: {err}");
        }
        assert!(store.file_name(&subdomain(fits)).is_some());
    }

    #[test]
    fn files_are_written_read_listed_and_removed_by_key() {
        let dir = scratch("roundtrip");
        let store = KeyedStore::new(dir.clone(), "pod-");
        assert_eq!(
            store.keys().unwrap(),
            Vec::<String>::new(),
            "no directory yet"
        );
        assert_eq!(store.read("a", 10).unwrap(), None);
        assert!(!store.remove("a").unwrap());
        store.write("a", b"{}", false).unwrap();
        store.write("b.c", b"[1]", true).unwrap();
        // Not the store's: another prefix, another suffix, a name no key makes.
        for other in ["pending-a.json", "pod-a.tmp", "pod-UPPER.json"] {
            std::fs::write(dir.join(other), "x").unwrap();
        }
        let mut keys = store.keys().unwrap();
        keys.sort();
        assert_eq!(keys, ["a", "b.c"]);
        assert_eq!(store.read("b.c", 10).unwrap().as_deref(), Some(&b"[1]"[..]));
        let err = store.read("b.c", 2).unwrap_err().to_string();
        assert!(err.starts_with("read "), "{err}");
        assert!(store.remove("a").unwrap());
        assert_eq!(store.keys().unwrap(), ["b.c"]);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 4);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_link_is_never_followed() {
        let dir = scratch("link");
        let elsewhere = scratch("link-elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::fs::write(elsewhere.join("p.json"), "precious").unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.join("operator")).unwrap();
        let store = KeyedStore::below(&dir, Path::new("operator"), "");
        for err in [
            store.write("p", b"x", false).unwrap_err(),
            store.remove("p").unwrap_err(),
            store.read("p", 10).unwrap_err(),
        ] {
            assert!(
                err.to_string()
                    .contains("is a symbolic link, not a directory"),
                "{err}"
            );
        }
        std::fs::remove_file(dir.join("operator")).unwrap();
        std::fs::create_dir(dir.join("operator")).unwrap();
        std::os::unix::fs::symlink(elsewhere.join("p.json"), dir.join("operator/p.json")).unwrap();
        let err = store.read("p", 100).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        store.write("p", b"new", false).unwrap_err();
        assert_eq!(
            std::fs::read_to_string(elsewhere.join("p.json")).unwrap(),
            "precious"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::remove_dir_all(&elsewhere).unwrap();
    }
}
