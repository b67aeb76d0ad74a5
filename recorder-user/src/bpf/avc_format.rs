//! The `avc:selinux_audited` tracepoint's layout: the running kernel's format checked against
//! the offsets `syscribe_avc` reads (`recorder_ebpf::avc_format`) before it is attached.

use recorder_ebpf::avc_format;

/// Checks that the running kernel's `avc:selinux_audited` format (its tracefs `format` file)
/// has the fields where the eBPF program reads them. Names the first that differs.
pub fn check_format(format: &str) -> Result<(), String> {
    let expected = [
        ("u32 requested", avc_format::REQUESTED, 4),
        ("u32 denied", avc_format::DENIED, 4),
        ("u32 audited", avc_format::AUDITED, 4),
        ("int result", avc_format::RESULT, 4),
        ("__data_loc char[] scontext", avc_format::SCONTEXT, 4),
        ("__data_loc char[] tcontext", avc_format::TCONTEXT, 4),
        ("__data_loc char[] tclass", avc_format::TCLASS, 4),
    ];
    for (field, offset, size) in expected {
        let line = format!("field:{field};\toffset:{offset};\tsize:{size};");
        if !format.lines().any(|l| l.trim_start().starts_with(&line)) {
            return Err(format!("the tracepoint has no `{line}`"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMAT_6_18: &str = "name: selinux_audited\nID: 2080\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\tfield:u32 requested;\toffset:8;\tsize:4;\tsigned:0;\n\tfield:u32 denied;\toffset:12;\tsize:4;\tsigned:0;\n\tfield:u32 audited;\toffset:16;\tsize:4;\tsigned:0;\n\tfield:int result;\toffset:20;\tsize:4;\tsigned:1;\n\tfield:__data_loc char[] scontext;\toffset:24;\tsize:4;\tsigned:0;\n\tfield:__data_loc char[] tcontext;\toffset:28;\tsize:4;\tsigned:0;\n\tfield:__data_loc char[] tclass;\toffset:32;\tsize:4;\tsigned:0;\n";

    #[test]
    fn the_kernels_format_is_the_one_read() {
        assert_eq!(check_format(FORMAT_6_18), Ok(()));
        let moved = FORMAT_6_18.replace("tclass;\toffset:32", "tclass;\toffset:36");
        assert!(check_format(&moved).unwrap_err().contains("tclass"));
    }
}
