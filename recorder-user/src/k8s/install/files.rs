//! The profile files of one node: `<kubelet dir>/seccomp/operator/<name>.json`, written
//! atomically, never through a link.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::{
    keyed_store::{KeyedStore, StoreError},
    profile::seccomp::Seccomp,
};

/// Where, under the kubelet's directory, profiles are installed.
pub const OPERATOR_DIR: &str = "seccomp/operator";
#[derive(Debug, Error)]
pub enum InstallError {
    #[error(
        "{name:?} cannot be a profile file name: a DNS subdomain of at most 250 characters is needed (no '/', no leading '.')"
    )]
    Name { name: String },
    #[error("{op} {path}: {source}", path = .path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl From<StoreError> for InstallError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Key { key, .. } => Self::Name { name: key },
            StoreError::Io { op, path, source } => Self::Io { op, path, source },
        }
    }
}

/// The profile files of one node: `<name>.json` in the kubelet's [`OPERATOR_DIR`].
#[derive(Debug, Clone)]
pub struct Installer {
    files: KeyedStore,
}

/// The most read back of an installed file (to compare it with what would be written).
const MAX_INSTALLED: u64 = 16 << 20;

impl Installer {
    /// The operator directory is opened below the kubelet's without following a link: a
    /// `seccomp` or `operator` planted as a link is refused, never written through.
    pub fn new(kubelet_dir: &Path) -> Self {
        Self {
            files: KeyedStore::below(kubelet_dir, Path::new(OPERATOR_DIR), ""),
        }
    }

    pub fn dir(&self) -> PathBuf {
        self.files.dir()
    }

    /// `<dir>/<name>.json`; refuses names that are not plain file names.
    pub fn path_of(&self, name: &str) -> Result<PathBuf, InstallError> {
        Ok(self.files.path_of(name)?)
    }

    /// Writes the profile atomically (a temporary file in the same directory, synced, renamed
    /// over the old one): a pod starting meanwhile reads the old or the new file, never half
    /// of one. Returns false when the file already held exactly this.
    pub fn install(&self, name: &str, seccomp: &Seccomp) -> Result<bool, InstallError> {
        let mut text = serde_json::to_string_pretty(seccomp).expect("profiles serialize");
        text.push('\n');
        if self
            .files
            .read(name, MAX_INSTALLED)
            .is_ok_and(|old| old.is_some_and(|old| old == text.as_bytes()))
        {
            return Ok(false);
        }
        self.files.write(name, text.as_bytes(), true)?;
        Ok(true)
    }

    /// Removes the profile's file; false when there was none.
    pub fn remove(&self, name: &str) -> Result<bool, InstallError> {
        Ok(self.files.remove(name)?)
    }
}
