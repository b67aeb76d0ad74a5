//! A profile document → a libseccomp filter, ready to load into the current process.

use std::str::FromStr as _;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
    error::SeccompError,
};
use thiserror::Error;

use super::seccomp::{Action, ArgRule, CompareOp, Seccomp};

/// The errno a bare `SCMP_ACT_ERRNO` returns, as runc and crun do.
const DEFAULT_ERRNO: u32 = libc::EPERM as u32;
/// The largest errno libseccomp (so runc, crun and `syscribe run`) takes: 4095 and up it
/// refuses (measured with this machine's libseccomp); the kernel itself would keep only the low
/// 16 bits of a larger one, silently.
pub const MAX_ERRNO: u32 = 4094;

#[derive(Debug, Error)]
pub enum EnforceError {
    /// A field the filter cannot be built from; `field` is its JSON path.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("libseccomp refused {what}: {source}")]
    Seccomp {
        what: String,
        #[source]
        source: SeccompError,
    },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> EnforceError {
    EnforceError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

fn refused(what: impl Into<String>) -> impl FnOnce(SeccompError) -> EnforceError {
    let what = what.into();
    move |source| EnforceError::Seccomp { what, source }
}

/// Builds the libseccomp filter for `profile`. Nothing is loaded yet.
pub fn compile(profile: &Seccomp) -> Result<ScmpFilterContext, EnforceError> {
    // libseccomp keeps the first of two verdicts for one syscall: said, never silent.
    if let Some(conflict) = super::conflict::find(profile).first() {
        return Err(invalid(
            conflict.dropped.0.clone(),
            format!(
                "syscall {:?} is also in {} ({}), and this rule says {}: one syscall, one unconditional rule",
                conflict.name, conflict.kept.0, conflict.kept.1, conflict.dropped.1
            ),
        ));
    }
    let default = action(
        profile.default_action,
        profile.default_errno_ret,
        "defaultAction",
    )?;
    let mut ctx = ScmpFilterContext::new(default).map_err(refused("the default action"))?;

    for (i, name) in profile.architectures.iter().enumerate() {
        let field = format!("architectures[{i}]");
        if name == "SCMP_ARCH_NATIVE" {
            continue;
        }
        let arch = ScmpArch::from_str(name)
            .map_err(|_| invalid(&field, format!("unknown architecture {name:?}")))?;
        ctx.add_arch(arch).map_err(refused(field))?;
    }

    for (i, flag) in profile.flags.iter().enumerate() {
        let field = format!("flags[{i}]");
        let set = match flag.as_str() {
            "SECCOMP_FILTER_FLAG_TSYNC" => ctx.set_ctl_tsync(true),
            "SECCOMP_FILTER_FLAG_LOG" => ctx.set_ctl_log(true),
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => ctx.set_ctl_ssb(true),
            "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" => ctx.set_ctl_waitkill(true),
            other => return Err(invalid(field, format!("unknown flag {other:?}"))),
        };
        set.map_err(refused(field))?;
    }

    for (i, rule) in profile.syscalls.iter().enumerate() {
        let rule_action = action(rule.action, rule.errno_ret, &format!("syscalls[{i}]"))?;
        if rule.names.is_empty() {
            return Err(invalid(
                format!("syscalls[{i}].names"),
                "empty list: the rule matches nothing",
            ));
        }
        let conditions = rule
            .args
            .iter()
            .enumerate()
            .map(|(j, arg)| condition(arg, &format!("syscalls[{i}].args[{j}]")))
            .collect::<Result<Vec<_>, _>>()?;
        if rule_action == default {
            // libseccomp refuses a rule that repeats the default action; it changes nothing.
            tracing::debug!(rule = i, "rule repeats the default action; skipped");
            continue;
        }
        for (j, name) in rule.names.iter().enumerate() {
            let field = format!("syscalls[{i}].names[{j}]");
            // Resolves names of any architecture libseccomp knows (a pseudo number when the
            // name does not exist natively, e.g. socketcall on x86_64).
            let syscall = ScmpSyscall::from_name(name)
                .map_err(|_| invalid(&field, format!("unknown syscall {name:?}")))?;
            ctx.add_rule_conditional(rule_action, syscall, &conditions)
                .map_err(refused(field))?;
        }
    }
    Ok(ctx)
}

fn action(action: Action, errno_ret: Option<u32>, field: &str) -> Result<ScmpAction, EnforceError> {
    let ret = |default: u32| errno_ret.unwrap_or(default);
    if errno_ret.is_some() && !matches!(action, Action::Errno | Action::Trace) {
        return Err(invalid(
            format!("{field}.errnoRet"),
            format!("only SCMP_ACT_ERRNO and SCMP_ACT_TRACE return a value, not {action:?}"),
        ));
    }
    Ok(match action {
        Action::Kill | Action::KillThread => ScmpAction::KillThread,
        Action::KillProcess => ScmpAction::KillProcess,
        Action::Trap => ScmpAction::Trap,
        Action::Errno => {
            let errno = ret(DEFAULT_ERRNO);
            if errno > MAX_ERRNO {
                return Err(invalid(
                    format!("{field}.errnoRet"),
                    format!(
                        "{errno} is more than {MAX_ERRNO}, the largest errno libseccomp (runc, crun) accepts"
                    ),
                ));
            }
            ScmpAction::Errno(errno as i32)
        }
        Action::Trace => ScmpAction::Trace(u16::try_from(ret(DEFAULT_ERRNO)).map_err(|_| {
            invalid(
                format!("{field}.errnoRet"),
                "out of range for SCMP_ACT_TRACE",
            )
        })?),
        Action::Allow => ScmpAction::Allow,
        Action::Log => ScmpAction::Log,
        Action::Notify => {
            return Err(invalid(
                format!("{field}.action"),
                "SCMP_ACT_NOTIFY needs a seccomp agent on listenerPath; syscribe run has none",
            ));
        }
    })
}

fn condition(arg: &ArgRule, field: &str) -> Result<ScmpArgCompare, EnforceError> {
    if arg.index > 5 {
        return Err(invalid(
            format!("{field}.index"),
            format!("{} is not an argument index (0..=5)", arg.index),
        ));
    }
    let (op, datum) = match arg.op {
        CompareOp::NotEqual => (ScmpCompareOp::NotEqual, arg.value),
        CompareOp::Less => (ScmpCompareOp::Less, arg.value),
        CompareOp::LessOrEqual => (ScmpCompareOp::LessOrEqual, arg.value),
        CompareOp::Equal => (ScmpCompareOp::Equal, arg.value),
        CompareOp::GreaterOrEqual => (ScmpCompareOp::GreaterEqual, arg.value),
        CompareOp::Greater => (ScmpCompareOp::Greater, arg.value),
        // OCI: `value` is the mask, `valueTwo` the value compared after masking.
        CompareOp::MaskedEqual => (ScmpCompareOp::MaskedEqual(arg.value), arg.value_two),
    };
    Ok(ScmpArgCompare::new(arg.index, op, datum))
}

/// Whether `name` is allowed to run under `profile` (rules without argument conditions only):
/// used to refuse, before anything is loaded, a profile that could never exec its command.
pub fn allows_unconditionally(profile: &Seccomp, name: &str) -> bool {
    let rule = profile
        .syscalls
        .iter()
        .find(|rule| rule.args.is_empty() && rule.names.iter().any(|n| n == name));
    let action = rule.map_or(profile.default_action, |rule| rule.action);
    matches!(action, Action::Allow | Action::Log)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::seccomp::SyscallRule;

    fn profile(names: &[&str]) -> Seccomp {
        Seccomp {
            default_action: Action::Errno,
            default_errno_ret: None,
            architectures: vec!["SCMP_ARCH_X86_64".into(), "SCMP_ARCH_X86".into()],
            flags: Vec::new(),
            listener_path: None,
            listener_metadata: None,
            syscalls: vec![SyscallRule {
                names: names.iter().map(|s| (*s).to_owned()).collect(),
                action: Action::Allow,
                errno_ret: None,
                args: Vec::new(),
            }],
            syscribe: None,
        }
    }

    #[test]
    fn compiles_known_names_including_other_arch_ones() {
        let ctx = compile(&profile(&["read", "write", "socketcall"])).unwrap();
        assert!(ctx.is_arch_present(ScmpArch::X86).unwrap());
        let path =
            std::env::temp_dir().join(format!("syscribe-enforce-{}.bpf", std::process::id()));
        let file = std::fs::File::create(&path).unwrap();
        ctx.export_bpf(&file).unwrap();
        let size = std::fs::metadata(&path).unwrap().len();
        std::fs::remove_file(&path).unwrap();
        // 8 bytes per classic BPF instruction: at least the arch checks and three rules.
        assert!(size >= 8 * 8, "filter of {size} bytes");
    }

    #[test]
    fn conflicting_rules_and_cut_errnos_are_refused_naming_both() {
        let mut p = profile(&["read", "mkdir"]);
        p.syscalls.push(SyscallRule {
            names: vec!["mkdir".into()],
            action: Action::KillProcess,
            errno_ret: None,
            args: Vec::new(),
        });
        assert_eq!(
            compile(&p).unwrap_err().to_string(),
            "syscalls[0]: syscall \"mkdir\" is also in syscalls[1] (SCMP_ACT_KILL_PROCESS), and \
             this rule says SCMP_ACT_ALLOW: one syscall, one unconditional rule"
        );
        let mut p = profile(&["read"]);
        p.syscalls[0].action = Action::Errno;
        p.syscalls[0].errno_ret = Some(65537);
        p.default_action = Action::Allow;
        assert_eq!(
            compile(&p).unwrap_err().to_string(),
            "syscalls[0].errnoRet: 65537 is more than 4094, the largest errno libseccomp (runc, crun) accepts"
        );
        p.syscalls[0].errno_ret = Some(MAX_ERRNO);
        compile(&p).unwrap();
    }

    #[test]
    fn unknown_syscall_names_its_field() {
        let err = compile(&profile(&["read", "raed"]))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "syscalls[0].names[1]: unknown syscall \"raed\"");
    }

    #[test]
    fn unknown_arch_and_bad_errno_ret_are_refused() {
        let mut p = profile(&["read"]);
        p.architectures.push("SCMP_ARCH_Z80".into());
        assert_eq!(
            compile(&p).unwrap_err().to_string(),
            "architectures[2]: unknown architecture \"SCMP_ARCH_Z80\""
        );
        let mut p = profile(&["read"]);
        p.syscalls[0].errno_ret = Some(1);
        assert!(
            compile(&p)
                .unwrap_err()
                .to_string()
                .starts_with("syscalls[0].errnoRet:")
        );
    }

    #[test]
    fn exec_check_follows_rules_and_default() {
        assert!(allows_unconditionally(&profile(&["execve"]), "execve"));
        assert!(!allows_unconditionally(&profile(&["read"]), "execve"));
    }
}
