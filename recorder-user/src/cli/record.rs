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
        crd::{SeccompProfileDoc, name_for_command},
        seccomp::{ContainerMetadata, Dropped},
    },
    record::{HostPaths, RecordError, record_command, require_root, subtree::record_subtree},
};

#[derive(Debug, clap::Args)]
pub struct RecordArgs {
    /// Where to write the profile; `-` is stdout (written after the command exits). With
    /// `--cgroup`: the directory for the containers' profiles (default: the current one).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Profile format: OCI seccomp JSON (runc, crun, podman, `syscribe run`) or an upstream
    /// SeccompProfile resource (YAML) for the Security Profiles Operator.
    #[arg(long, value_enum, default_value_t = Format::Oci)]
    pub format: Format,
    /// Resource name for `--format crd` (default: derived from the command's name).
    #[arg(long)]
    pub name: Option<String>,
    /// Record every container that appears directly below this cgroup (a pod's, say:
    /// `/kubepods/besteffort/pod<uid>`, relative to the cgroup2 mount or under it), each from its
    /// first syscall, one profile per container, written when the container's cgroup goes away.
    /// Runs until SIGINT/SIGTERM or until the cgroup is removed; SIGUSR1 writes the profiles of
    /// the running containers as they are so far.
    #[arg(long, value_name = "PATH", conflicts_with = "command")]
    pub cgroup: Option<PathBuf>,
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
}

pub fn record(paths: &HostPaths, args: RecordArgs) -> Result<i32, CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| CliError::Runtime { source })?;
    if let Some(cgroup) = &args.cgroup {
        return record_cgroup(&runtime, paths, cgroup, &args);
    }
    let recording = runtime.block_on(record_command(paths, &args.command))?;
    let output = args.output.clone().unwrap_or_else(|| PathBuf::from("-"));
    let built = build_profile(&recording.syscalls, args.command.clone());
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| name_for_command(&args.command[0]));
    write_output(&output, &render(&built, args.format, name))?;
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
    cgroup: &Path,
    args: &RecordArgs,
) -> Result<i32, CliError> {
    let dir = args.output.clone().unwrap_or_else(|| PathBuf::from("."));
    if dir == Path::new("-") {
        return Err(CliError::OutputNotADirectory { path: dir });
    }
    std::fs::create_dir_all(&dir).map_err(|source| CliError::Write {
        path: dir.clone(),
        source,
    })?;
    let mut failed = None;
    let ended = runtime.block_on(record_subtree(paths, cgroup, args.pin.as_deref(), |recording| {
        let label = recording
            .container_id
            .as_deref()
            .map_or(recording.name.as_str(), |id| &id[..12]);
        let mut built = build_profile(&recording.syscalls, Vec::new());
        // Only when the recording starts at the runtime's filter: else the runtime's whole
        // setup is in the profile anyway.
        let runtime_handoff = if recording.filter_seen {
            add_runtime_handoff(&mut built.seccomp)
        } else {
            Vec::new()
        };
        if let Some(meta) = built.seccomp.syscribe.as_mut() {
            meta.container = Some(ContainerMetadata {
                cgroup: recording.name.clone(),
                id: recording.container_id.clone(),
                pod_uid: recording.pod_uid.clone(),
                filter_seen: recording.filter_seen,
                runtime_handoff,
            });
        }
        let extension = match args.format {
            Format::Oci => "json",
            Format::Crd => "yaml",
        };
        let file_stem = recording
            .container_id
            .clone()
            .unwrap_or_else(|| recording.name.clone());
        let path = dir.join(format!("{file_stem}.{extension}"));
        let text = render(&built, args.format, name_for_command(label));
        if !recording.filter_seen {
            tracing::warn!(
                container = %recording.name,
                "no seccomp filter was installed in this container while it was recorded, so its \
                 profile also holds the runtime's own setup; record containers under a seccomp \
                 profile (even defaultAction SCMP_ACT_ALLOW) to leave that out"
            );
        }
        if let Err(err) = write_output(&path, &text) {
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

/// Writes the whole text to stdout, or to a file: atomically (temporary file + rename) for a
/// regular file or a new path; directly for anything else (`/dev/null`, a FIFO), which a rename
/// would replace.
pub(super) fn write_output(path: &Path, text: &str) -> Result<(), CliError> {
    let write_err = |source| CliError::Write {
        path: path.to_owned(),
        source,
    };
    if path == Path::new("-") {
        let mut out = std::io::stdout().lock();
        return out
            .write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(write_err);
    }
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() => return std::fs::write(path, text).map_err(write_err),
        _ => {}
    }
    crate::files::write_atomically(path, text.as_bytes(), false).map_err(write_err)
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
    use std::os::unix::fs::FileTypeExt as _;

    use super::write_output;

    #[test]
    fn devices_are_written_not_replaced() {
        write_output("/dev/null".as_ref(), "{}\n").unwrap();
        let meta = std::fs::metadata("/dev/null").unwrap();
        assert!(meta.file_type().is_char_device(), "/dev/null was replaced");
    }

    #[test]
    fn files_are_replaced_atomically() {
        let path = std::env::temp_dir().join(format!("syscribe-write-{}.json", std::process::id()));
        std::fs::write(&path, "old").unwrap();
        write_output(&path, "new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        std::fs::remove_file(&path).unwrap();
    }
}
