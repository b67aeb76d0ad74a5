//! `syscribe run`.

use std::{ffi::CString, os::unix::ffi::OsStrExt as _, path::PathBuf};

use super::CliError;
use crate::{
    profile::{
        enforce::{allows_unconditionally, compile},
        load::load_profile,
    },
    record::resolve_command,
};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The profile: OCI seccomp JSON, or a SeccompProfile (YAML or JSON).
    #[arg(short, long)]
    pub profile: PathBuf,
    /// The command to run under it, and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// Loads the filter into this process, then execs the command: the command's exit status is
/// syscribe's. Only returns on error.
pub fn run(args: RunArgs) -> Result<i32, CliError> {
    let profile = load_profile(&args.profile)?;
    let program = &args.command[0];
    let path = resolve_command(program)?;
    if !allows_unconditionally(&profile, "execve") {
        return Err(CliError::NoExec {
            path: args.profile,
            command: program.clone(),
        });
    }
    let filter = compile(&profile).map_err(|source| CliError::Profile {
        path: args.profile.clone(),
        source,
    })?;

    // Everything exec needs is prepared before the filter is loaded: between the seccomp(2)
    // call and execve(2) this process makes no other syscall.
    let nul_err = |_| CliError::Exec {
        command: program.clone(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "argument contains a NUL byte",
        ),
    };
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(nul_err)?;
    let c_args = args
        .command
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(nul_err)?;
    let mut argv: Vec<*const libc::c_char> = c_args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());

    filter
        .load()
        .map_err(|source| CliError::LoadFilter { source })?;
    // SAFETY: c_path and argv are NUL-terminated and outlive the call; execv only returns on error.
    unsafe { libc::execv(c_path.as_ptr(), argv.as_ptr()) };
    let err = std::io::Error::last_os_error();
    Err(CliError::Exec {
        command: program.clone(),
        source: std::io::Error::new(err.kind(), crate::record::exec_failure(&path, &err)),
    })
}
