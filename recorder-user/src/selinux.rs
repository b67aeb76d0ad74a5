//! SELinux policy modules on a node: installed and removed with the real tools (semodule, which
//! compiles CIL with libsepol through libsemanage), in the node's policy store or in an offline
//! store below another root (`semodule -p ROOT -n`: built, not loaded — how the tests use it on
//! machines where SELinux is off).
//!
//! A module that fails to build leaves the store as it was (libsemanage commits a transaction
//! or nothing); the compiler's complaints come back with the module's line numbers, which
//! callers map to their profile's fields or policy lines.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

/// The template every profile inherits (`(blockinherit container)`), shipped with Syscribe for
/// policies that have none (see deploy/selinux/container.cil).
pub const CONTAINER_TEMPLATE: &str = include_str!("../../deploy/selinux/container.cil");
/// The module name the template is installed as.
pub const TEMPLATE_MODULE: &str = "container";
/// The permissive recording type's module (deploy/selinux/selinuxrecording.cil): pods recorded
/// by a SelinuxProfile recording run as [`RECORDING_TYPE`].
pub const RECORDING_POLICY: &str = include_str!("../../deploy/selinux/selinuxrecording.cil");
/// The module name it is installed as (upstream's).
pub const RECORDING_MODULE: &str = "selinuxrecording";
/// The SELinux type a recorded pod's containers run as: `seLinuxOptions.type`.
pub const RECORDING_TYPE: &str = "selinuxrecording.process";
/// Where SELinux is on: the kernel's selinuxfs.
pub const SELINUXFS: &str = "/sys/fs/selinux";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{name:?} cannot be a module name: {reason}")]
    Name { name: String, reason: &'static str },
    #[error("cannot run {tool}: {source} (install policycoreutils and semodule-utils)")]
    Tool {
        tool: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the module: {0}")]
    Io(#[from] std::io::Error),
    /// The compiler refused the module; the store is unchanged.
    #[error("the policy compiler refused module {name}: {}", .complaints.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Refused {
        name: String,
        complaints: Vec<Complaint>,
    },
}

/// One line of the compiler's, with the line of the module it names (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Complaint {
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for Complaint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "module line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Whether this node enforces or at least runs SELinux.
pub fn enabled() -> bool {
    Path::new(SELINUXFS).join("enforce").exists()
}

/// A module name: what CIL takes as a block name (no '.', which is its namespace separator).
pub fn module_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.len() > 200 {
        return Some("it must have 1 to 200 characters");
    }
    if name.contains('.') {
        return Some("CIL reads '.' as a namespace separator; use '-' or '_'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Some("only letters, digits, '-' and '_' are allowed");
    }
    if !name.as_bytes()[0].is_ascii_alphabetic() {
        return Some("it must start with a letter");
    }
    None
}

/// A policy store: the node's (`root` None), or an offline one below `root`.
#[derive(Debug, Clone)]
pub struct PolicyStore {
    root: Option<PathBuf>,
}

impl PolicyStore {
    pub fn host() -> Self {
        Self { root: None }
    }

    pub fn offline(root: &Path) -> Self {
        Self {
            root: Some(root.to_owned()),
        }
    }

    fn semodule(&self) -> Command {
        let mut cmd = Command::new("semodule");
        if let Some(root) = &self.root {
            // Build the policy below ROOT, do not load it into a kernel.
            cmd.arg("-p").arg(root).arg("-n");
        }
        cmd
    }

    /// Runs semodule with `args`; its stdout, or its complaints about module `name`.
    fn run(&self, args: &[&std::ffi::OsStr], name: &str) -> Result<String, StoreError> {
        let out = self
            .semodule()
            .args(args)
            .output()
            .map_err(|source| StoreError::Tool {
                tool: "semodule",
                source,
            })?;
        if !out.status.success() {
            return Err(StoreError::Refused {
                name: name.to_owned(),
                complaints: complaints(&String::from_utf8_lossy(&out.stderr), name),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The modules in the store.
    pub fn modules(&self) -> Result<BTreeSet<String>, StoreError> {
        Ok(self
            .run(&["-l".as_ref()], "")?
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect())
    }

    /// Installs the template unless the store already has a module of its name. Returns
    /// whether it was installed now.
    pub fn ensure_template(&self) -> Result<bool, StoreError> {
        if self.modules()?.contains(TEMPLATE_MODULE) {
            return Ok(false);
        }
        self.install(TEMPLATE_MODULE, CONTAINER_TEMPLATE)?;
        Ok(true)
    }

    /// Installs the template and the permissive recording module unless the store has them.
    /// Returns whether the recording module was installed now.
    pub fn ensure_recording_module(&self) -> Result<bool, StoreError> {
        self.ensure_template()?;
        if self.modules()?.contains(RECORDING_MODULE) {
            return Ok(false);
        }
        self.install(RECORDING_MODULE, RECORDING_POLICY)?;
        Ok(true)
    }

    /// Compiles and installs `cil` as module `name` (replacing one of the same name). On a
    /// refusal the store is as it was and the complaints name the module's lines.
    pub fn install(&self, name: &str, cil: &str) -> Result<(), StoreError> {
        if let Some(reason) = module_name_problem(name) {
            return Err(StoreError::Name {
                name: name.to_owned(),
                reason,
            });
        }
        // semodule names the module after the file: <private dir>/<name>.cil.
        let dir = private_dir()?;
        let file = dir.join(format!("{name}.cil"));
        let installed = crate::files::Dir::open(&dir)
            .and_then(|d| d.write_atomically(&format!("{name}.cil"), cil.as_bytes(), false))
            .map_err(StoreError::from)
            .and_then(|()| self.run(&["-i".as_ref(), file.as_os_str()], name));
        // Whatever happened, the private directory goes.
        let _ = std::fs::remove_dir_all(&dir);
        installed.map(drop)
    }

    /// Removes module `name`; false when there was none.
    pub fn remove(&self, name: &str) -> Result<bool, StoreError> {
        if !self.modules()?.contains(name) {
            return Ok(false);
        }
        self.run(&["-r".as_ref(), name.as_ref()], name)?;
        Ok(true)
    }
}

/// A fresh directory only root can write (the module file semodule reads).
fn private_dir() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt as _;
    let base = std::env::temp_dir();
    for _ in 0..16 {
        let dir = base.join(format!(
            "syscribe-module-{}",
            crate::files::random_suffix()?
        ));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(err),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        "no fresh temporary directory",
    ))
}

/// The compiler's lines that say something, each with the module line it names
/// (`… at /var/lib/selinux/…/<name>/cil:4`). Noise about the host's users is dropped.
pub fn complaints(stderr: &str, name: &str) -> Vec<Complaint> {
    stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .filter(|l| !l.starts_with("libsemanage.add_user:"))
        .filter(|l| *l != "semodule:  Failed!")
        .map(|l| {
            let (message, line) = match l.rfind(" at ") {
                Some(i) => {
                    let place = &l[i + 4..];
                    let line = place
                        .rsplit_once(':')
                        .filter(|(path, _)| name.is_empty() || path.contains(name))
                        .and_then(|(_, n)| n.parse().ok());
                    match line {
                        Some(line) => (l[..i].to_owned(), Some(line)),
                        None => (l.to_owned(), None),
                    }
                }
                None => (l.to_owned(), None),
            };
            Complaint { line, message }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_are_cil_block_names() {
        assert_eq!(module_name_problem("errorlogger"), None);
        assert_eq!(module_name_problem("web-app_2"), None);
        assert!(
            module_name_problem("web.app")
                .unwrap()
                .contains("namespace")
        );
        assert!(module_name_problem("1app").is_some());
        assert!(module_name_problem("a/b").is_some());
        assert!(module_name_problem("").is_some());
    }

    #[test]
    fn complaints_keep_their_module_line() {
        let stderr = "Failed to resolve blockinherit statement at /tmp/root/var/lib/selinux/default/tmp/modules/400/web/cil:2\nFailed to resolve AST\nsemodule:  Failed!\nlibsemanage.add_user: user sddm not in password file\n";
        assert_eq!(
            complaints(stderr, "web"),
            [
                Complaint {
                    line: Some(2),
                    message: "Failed to resolve blockinherit statement".into()
                },
                Complaint {
                    line: None,
                    message: "Failed to resolve AST".into()
                }
            ]
        );
    }
}
