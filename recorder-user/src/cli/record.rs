//! `syscribe record`.

use std::{
    io::{Read as _, Write as _},
    path::{Path, PathBuf},
};

use clap::ValueEnum;

use super::CliError;
use crate::{
    bpf::Recorder,
    profile::{
        build::{BuiltProfile, add_runtime_handoff, build_profile},
        capabilities::security_context,
        crd::{SeccompProfileDoc, name_for_command},
        seccomp::{Boundary, ContainerMetadata, Dropped},
    },
    record::{HostPaths, RecordError, record_command, require_root, subtree::record_subtree},
};

#[derive(Debug, clap::Args)]
pub struct RecordArgs {
    /// Where to write the profile; `-` is stdout (written after the command exits). With
    /// `--cgroup`: the directory for the containers' profiles (default: the current one).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Profile format: OCI seccomp JSON (runc, crun, podman, `syscribe run`), an upstream
    /// SeccompProfile resource (YAML) for the Security Profiles Operator, or the container's
    /// Kubernetes `securityContext` (YAML): the capabilities it used, all others dropped, and
    /// the SeccompProfile of that name.
    #[arg(long, value_enum, default_value_t = Format::Oci)]
    pub format: Format,
    /// Resource name for `--format crd` (default: derived from the command's name).
    #[arg(long)]
    pub name: Option<String>,
    /// Record every container that appears directly below this cgroup (a pod's, say:
    /// `/kubepods/besteffort/pod<uid>`, relative to the cgroup2 mount or under it), each from its
    /// first syscall, one profile per container, written when the container's cgroup goes away.
    /// Runs until SIGINT/SIGTERM or until the cgroup is removed; SIGUSR1 writes the profiles of
    /// the running containers as they are so far. Repeat it to record several pods at once (up
    /// to 512): each is recorded until it is removed, the recording ends when all are.
    #[arg(long, value_name = "PATH", conflicts_with = "command")]
    pub cgroup: Vec<PathBuf>,
    /// With --cgroup: keep the recorder's kernel state pinned in DIR (on a bpf filesystem,
    /// e.g. /sys/fs/bpf/syscribe), so the recording goes on if syscribe is killed, and a
    /// syscribe started again with the same DIR and cgroup takes it over.
    #[arg(long, value_name = "DIR", requires = "cgroup")]
    pub pin: Option<PathBuf>,
    /// The command to record, and its arguments.
    #[arg(last = true, required_unless_present = "cgroup", value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// OCI seccomp JSON (`linux.seccomp` of a runtime config).
    Oci,
    /// SeccompProfile (security-profiles-operator.x-k8s.io/v1) as YAML.
    Crd,
    /// A container's `securityContext` (YAML, ready to paste): `capabilities` with
    /// `drop: [ALL]` and `add:` what was used, and `seccompProfile` naming the SeccompProfile
    /// `--format crd` makes under the same `--name`.
    #[value(name = "securitycontext")]
    SecurityContext,
}

pub fn record(paths: &HostPaths, args: RecordArgs) -> Result<i32, CliError> {
    let runtime = super::runtime()?;
    if !args.cgroup.is_empty() {
        return record_cgroup(&runtime, paths, &args.cgroup, &args);
    }
    // Everything that can be known wrong is found before the command runs.
    if let Some(name) = &args.name {
        check_name(name)?;
    }
    let output = args.output.clone().unwrap_or_else(|| PathBuf::from("-"));
    let out = Output::open(&output)?;
    let recording = runtime.block_on(record_command(paths, &args.command))?;
    let built = build_profile(&recording.syscalls, args.command.clone());
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| name_for_command(&args.command[0]));
    out.write(&render(&built, args.format, name))?;
    let target = if output == Path::new("-") {
        "stdout".to_owned()
    } else {
        output.display().to_string()
    };
    eprintln!(
        "syscribe: recorded {} syscalls from {:?} (exit status {}, {} dropped) -> {target}",
        allowed(&built),
        args.command.join(" "),
        recording.exit_code(),
        dropped(&built).total(),
    );
    Ok(recording.exit_code())
}

/// `record --cgroup`: one profile per container, in the output directory.
fn record_cgroup(
    runtime: &tokio::runtime::Runtime,
    paths: &HostPaths,
    cgroups: &[PathBuf],
    args: &RecordArgs,
) -> Result<i32, CliError> {
    let dir = args.output.clone().unwrap_or_else(|| PathBuf::from("."));
    if dir == Path::new("-") {
        return Err(CliError::OutputNotADirectory { path: dir });
    }
    if let Some(name) = &args.name {
        check_name(name)?;
    }
    let write_err = |source| CliError::Write {
        path: dir.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(write_err)?;
    let out_dir = crate::files::Dir::open(&dir).map_err(write_err)?;
    // A directory that cannot be written is found now, not after the recording.
    drop(out_dir.stage("profile.json").map_err(write_err)?);
    let mut failed = None;
    let ended = runtime.block_on(record_subtree(paths, cgroups, args.pin.as_deref(), |recording| {
        let label = recording
            .container_id
            .as_deref()
            .map_or(recording.name.as_str(), |id| &id[..12]);
        let mut built = build_profile(&recording.syscalls, Vec::new());
        // Only when the recording starts at a boundary: else the runtime's whole setup is in
        // the profile anyway.
        let runtime_handoff = if recording.boundary.found() {
            add_runtime_handoff(&mut built.seccomp)
        } else {
            Vec::new()
        };
        if let Some(meta) = built.seccomp.syscribe.as_mut() {
            meta.container = Some(ContainerMetadata {
                cgroup: recording.name.clone(),
                id: recording.container_id.clone(),
                pod_uid: recording.pod_uid.clone(),
                boundary: recording.boundary,
                runtime_handoff,
            });
        }
        let extension = match args.format {
            Format::Oci => "json",
            Format::Crd | Format::SecurityContext => "yaml",
        };
        let file_stem = recording
            .container_id
            .clone()
            .unwrap_or_else(|| recording.name.clone());
        let file = format!("{file_stem}.{extension}");
        let path = dir.join(&file);
        let text = render(&built, args.format, name_for_command(label));
        if let Boundary::None { reason } = recording.boundary {
            tracing::warn!(
                container = %recording.name,
                reason = reason.code(),
                "where the container's own syscalls begin was not found ({reason}), so its profile \
                 holds everything recorded in it, the runtime's setup included, and the capabilities it \
                 used are unknown"
            );
        }
        if let Err(err) = out_dir
            .write_atomically(&file, text.as_bytes(), false)
            .map_err(|source| CliError::Write {
                path: path.clone(),
                source,
            })
        {
            tracing::error!(error = %err, "writing a container's profile");
            failed.get_or_insert(err);
            return;
        }
        eprintln!(
            "syscribe: container {} ({}): {} syscalls, {} dropped -> {}",
            recording.name,
            if recording.running {
                "running, snapshot"
            } else {
                "finished"
            },
            allowed(&built),
            dropped(&built).total(),
            path.display(),
        );
    }))?;
    if let Some(err) = failed {
        return Err(err);
    }
    tracing::info!(?ended, "recording ended");
    Ok(0)
}

/// The profile as text in the requested format; warns about what could not go into it.
fn render(built: &BuiltProfile, format: Format, name: String) -> String {
    for nr in &built.unnamed {
        tracing::warn!(
            syscall = nr,
            "libseccomp has no name for this syscall number; it is not in the profile"
        );
    }
    let dropped = dropped(built);
    if dropped.total() > 0 {
        tracing::warn!(
            out_of_range = dropped.out_of_range,
            unnamed = dropped.unnamed,
            "some recorded syscalls are not in the profile (see `syscribe.dropped` in it)"
        );
    }
    match format {
        Format::Oci => {
            let mut json =
                serde_json::to_string_pretty(&built.seccomp).expect("profile serializes");
            json.push('\n');
            json
        }
        Format::Crd => {
            let doc = SeccompProfileDoc::from_recorded(name, &built.seccomp);
            serde_yaml::to_string(&doc).expect("profile serializes")
        }
        Format::SecurityContext => {
            let capabilities = built
                .seccomp
                .syscribe
                .as_ref()
                .and_then(|meta| meta.capabilities.as_deref());
            security_context(capabilities, Some(&name))
        }
    }
}

fn allowed(built: &BuiltProfile) -> usize {
    built
        .seccomp
        .syscalls
        .first()
        .map_or(0, |rule| rule.names.len())
}

fn dropped(built: &BuiltProfile) -> Dropped {
    built
        .seccomp
        .syscribe
        .as_ref()
        .map(|m| m.dropped)
        .unwrap_or_default()
}

/// Where a command's one output goes: stdout (`-`), or a regular file replaced atomically. Opened
/// before the work starts, so that an output that cannot be written is said at once; anything
/// at the path that is not a regular file (a link, a device, a FIFO) is refused — except the
/// null device itself, named as `/dev/null`, which discards the profile.
pub(super) enum Output {
    Stdout,
    Discard,
    File {
        dir: crate::files::Dir,
        name: String,
        path: PathBuf,
    },
}

impl Output {
    pub(super) fn open(path: &Path) -> Result<Self, CliError> {
        if path == Path::new("-") {
            return Ok(Self::Stdout);
        }
        if path == Path::new("/dev/null") && is_null_device(path) {
            return Ok(Self::Discard);
        }
        let write_err = |source| CliError::Write {
            path: path.to_owned(),
            source,
        };
        let (dir, name) = crate::files::split(path).map_err(write_err)?;
        std::fs::create_dir_all(&dir).map_err(write_err)?;
        let dir = crate::files::Dir::open(&dir).map_err(write_err)?;
        // Creates (then removes) the temporary file: the directory takes files.
        drop(dir.stage(&name).map_err(write_err)?);
        Ok(Self::File {
            dir,
            name,
            path: path.to_owned(),
        })
    }

    pub(super) fn write(&self, text: &str) -> Result<(), CliError> {
        match self {
            Self::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(text.as_bytes())
                    .and_then(|()| out.flush())
                    .map_err(|source| CliError::Write {
                        path: "-".into(),
                        source,
                    })
            }
            Self::Discard => Ok(()),
            Self::File { dir, name, path } => dir
                .write_atomically(name, text.as_bytes(), false)
                .map_err(|source| CliError::Write {
                    path: path.clone(),
                    source,
                }),
        }
    }
}

/// The character device 1:3, not a link to it.
fn is_null_device(path: &Path) -> bool {
    use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
    std::fs::symlink_metadata(path).is_ok_and(|m| {
        m.file_type().is_char_device() && libc::major(m.rdev()) == 1 && libc::minor(m.rdev()) == 3
    })
}

/// `--name` becomes a resource name: what the API server would refuse is refused now.
fn check_name(name: &str) -> Result<(), CliError> {
    match crate::profile::naming::dns1123_subdomain_problem(name) {
        Some(problem) => Err(CliError::Name {
            name: name.to_owned(),
            problem,
        }),
        None => Ok(()),
    }
}

/// `syscribe bench-floor`: the empty program attached until stdin closes.
pub fn bench_floor(paths: &HostPaths) -> Result<i32, CliError> {
    require_root()?;
    let (mut recorder, _logger) = Recorder::load(&paths.btf).map_err(RecordError::from)?;
    recorder.attach_floor().map_err(RecordError::from)?;
    println!("attached");
    std::io::stdout()
        .flush()
        .map_err(|source| CliError::Write {
            path: "-".into(),
            source,
        })?;
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::{Output, check_name};

    #[test]
    fn devices_and_links_are_refused_before_anything_runs() {
        assert!(matches!(
            Output::open("/dev/null".as_ref()),
            Ok(Output::Discard)
        ));
        let err = Output::open("/dev/zero".as_ref())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("/dev/zero is a character device"), "{err}");
        let dir = std::env::temp_dir().join(format!("syscribe-output-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("victim"), "precious").unwrap();
        symlink(dir.join("victim"), dir.join("out.json")).unwrap();
        let err = Output::open(&dir.join("out.json"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("is a symbolic link"), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.join("victim")).unwrap(),
            "precious"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn files_are_replaced_atomically() {
        let path = std::env::temp_dir().join(format!("syscribe-write-{}.json", std::process::id()));
        std::fs::write(&path, "old").unwrap();
        let out = Output::open(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        out.write("new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn names_are_kubernetes_names() {
        assert!(check_name("web-app.v2").is_ok());
        let err = check_name("Web_App").unwrap_err().to_string();
        assert!(err.contains("--name \"Web_App\""), "{err}");
    }
}
