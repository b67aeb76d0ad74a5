//! Builds the eBPF recorder (recorder-ebpf's `recorder` binary) for the bpf target.
//! `AYA_BUILD_SKIP=1` skips it (for `cargo check`/clippy without bpf-linker); loading then fails
//! with a named error instead of a confusing one.

use std::{env, fs, path::PathBuf};

use anyhow::{Context as _, Result};
use aya_build::{Package, Toolchain};

fn main() -> Result<()> {
    let manifest_dir = env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR not set")?;
    let ebpf_dir = PathBuf::from(manifest_dir).join("../recorder-ebpf");
    let ebpf_dir = ebpf_dir
        .canonicalize()
        .with_context(|| format!("{}", ebpf_dir.display()))?;
    let out_dir = PathBuf::from(env::var("OUT_DIR").context("OUT_DIR not set")?);
    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip {
        // aya-build writes nothing when skipping: leave an empty object for include_bytes.
        fs::write(out_dir.join("recorder"), []).context("writing the empty eBPF object")?;
    }
    let root_dir = ebpf_dir
        .to_str()
        .context("recorder-ebpf path is not UTF-8")?;
    // The pinned nightly (same file `cargo xtask setup` installs from).
    let toolchain_file = ebpf_dir.join("rust-toolchain.toml");
    println!("cargo:rerun-if-changed={}", toolchain_file.display());
    let toolchain = fs::read_to_string(&toolchain_file)
        .with_context(|| format!("reading {}", toolchain_file.display()))?;
    let nightly = toolchain
        .lines()
        .find_map(|line| {
            let value = line
                .trim()
                .strip_prefix("channel")?
                .trim()
                .strip_prefix('=')?;
            Some(value.trim().trim_matches('"').to_owned())
        })
        .with_context(|| format!("no `channel = ...` in {}", toolchain_file.display()))?;
    aya_build::build_ebpf(
        [Package {
            name: "recorder-ebpf",
            root_dir,
            ..Default::default()
        }],
        Toolchain::Custom(&nightly),
    )
}
