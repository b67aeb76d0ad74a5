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
        build::build_profile,
        crd::{SeccompProfileDoc, name_for_command},
    },
    record::{HostPaths, RecordError, record_command, require_root},
};

#[derive(Debug, clap::Args)]
pub struct RecordArgs {
    /// Where to write the profile; `-` is stdout (written after the command exits).
    #[arg(short, long, default_value = "-")]
    pub output: PathBuf,
    /// Profile format: OCI seccomp JSON (runc, crun, podman, `syscribe run`) or an upstream
    /// SeccompProfile resource (YAML) for the Security Profiles Operator.
    #[arg(long, value_enum, default_value_t = Format::Oci)]
    pub format: Format,
    /// Resource name for `--format crd` (default: derived from the command's name).
    #[arg(long)]
    pub name: Option<String>,
    /// The command to record, and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
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
    let recording = runtime.block_on(record_command(paths, &args.command))?;

    let built = build_profile(&recording.syscalls, args.command.clone());
    for nr in &built.unnamed {
        tracing::warn!(
            syscall = nr,
            "libseccomp has no name for this syscall number; it is not in the profile"
        );
    }
    let dropped = built
        .seccomp
        .syscribe
        .as_ref()
        .map(|m| m.dropped)
        .unwrap_or_default();
    let text = match args.format {
        Format::Oci => {
            let mut json =
                serde_json::to_string_pretty(&built.seccomp).expect("profile serializes");
            json.push('\n');
            json
        }
        Format::Crd => {
            let name = args
                .name
                .clone()
                .unwrap_or_else(|| name_for_command(&args.command[0]));
            let doc = SeccompProfileDoc::from_recorded(name, &built.seccomp);
            serde_yaml::to_string(&doc).expect("profile serializes")
        }
    };
    write_output(&args.output, &text)?;
    let allowed = built
        .seccomp
        .syscalls
        .first()
        .map_or(0, |rule| rule.names.len());
    let target = if args.output == Path::new("-") {
        "stdout".to_owned()
    } else {
        args.output.display().to_string()
    };
    eprintln!(
        "syscribe: recorded {allowed} syscalls from {:?} (exit status {}, {} dropped) -> {target}",
        args.command.join(" "),
        recording.exit_code(),
        dropped.total(),
    );
    if dropped.total() > 0 {
        tracing::warn!(
            out_of_range = dropped.out_of_range,
            unnamed = dropped.unnamed,
            "some recorded syscalls are not in the profile (see `syscribe.dropped` in it)"
        );
    }
    Ok(recording.exit_code())
}

/// Writes the whole text to stdout, or to a file: atomically (temporary file + rename) for a
/// regular file or a new path; directly for anything else (`/dev/null`, a FIFO), which a rename
/// would replace.
fn write_output(path: &Path, text: &str) -> Result<(), CliError> {
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
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.syscribe-tmp"));
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|err| {
            let _ = std::fs::remove_file(&tmp);
            write_err(err)
        })
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
