//! The profile files of one node: `<kubelet dir>/seccomp/operator/<name>.json`, written
//! atomically, never through a link.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::profile::seccomp::Seccomp;

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

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> InstallError {
    let path = path.to_owned();
    move |source| InstallError::Io { op, path, source }
}

/// The profile files of one node.
#[derive(Debug, Clone)]
pub struct Installer {
    kubelet: PathBuf,
    dir: PathBuf,
}

/// The most read back of an installed file (to compare it with what would be written).
const MAX_INSTALLED: u64 = 16 << 20;

/// A DNS-1123 subdomain (what the API server allows as a name) short enough for `<name>.json`
/// to be a file name: nothing that could leave the directory.
fn valid_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 250
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

impl Installer {
    pub fn new(kubelet_dir: &Path) -> Self {
        Self {
            kubelet: kubelet_dir.to_owned(),
            dir: kubelet_dir.join(OPERATOR_DIR),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<dir>/<name>.json`; refuses names that are not plain file names.
    pub fn path_of(&self, name: &str) -> Result<PathBuf, InstallError> {
        Ok(self.dir.join(Self::file_name(name)?))
    }

    fn file_name(name: &str) -> Result<String, InstallError> {
        if !valid_file_name(name) {
            return Err(InstallError::Name {
                name: name.to_owned(),
            });
        }
        Ok(format!("{name}.json"))
    }

    /// The operator directory, opened below the kubelet's without following a link: a
    /// `seccomp` or `operator` planted as a link is refused, never written through.
    fn open(&self, create: bool) -> Result<crate::files::Dir, std::io::Error> {
        crate::files::Dir::open_below(&self.kubelet, Path::new(OPERATOR_DIR), create)
    }

    /// Writes the profile atomically (a temporary file in the same directory, synced, renamed
    /// over the old one): a pod starting meanwhile reads the old or the new file, never half
    /// of one. Returns false when the file already held exactly this.
    pub fn install(&self, name: &str, seccomp: &Seccomp) -> Result<bool, InstallError> {
        let file = Self::file_name(name)?;
        let path = self.dir.join(&file);
        let mut text = serde_json::to_string_pretty(seccomp).expect("profiles serialize");
        text.push('\n');
        let dir = self.open(true).map_err(io("open", &self.dir))?;
        if dir
            .read(&file, MAX_INSTALLED)
            .is_ok_and(|old| old.is_some_and(|old| old == text.as_bytes()))
        {
            return Ok(false);
        }
        dir.write_atomically(&file, text.as_bytes(), true)
            .map_err(io("write", &path))?;
        Ok(true)
    }

    /// Removes the profile's file; false when there was none.
    pub fn remove(&self, name: &str) -> Result<bool, InstallError> {
        let file = Self::file_name(name)?;
        let path = self.dir.join(&file);
        let dir = match self.open(false) {
            Ok(dir) => dir,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(source) => return Err(io("open", &self.dir)(source)),
        };
        dir.remove(&file).map_err(io("remove", &path))
    }
}
