//! Links GCC's unwinder into the binary, so that the dynamic loader does
//! not load libgcc_s.so on every run.
//!
//! withlock runs once per locked command: each shared library the loader
//! maps, relocates and initialises is paid on every run (docs/benchmarks.md
//! gives the figures). Rust's standard library takes only its unwinder
//! (`_Unwind_*`, for panics and backtraces) from libgcc_s, and GCC ships
//! the same unwinder as a static archive, libgcc_eh.a, for programs linked
//! with `-static-libgcc`. Named here, the archive comes before the
//! standard library's `-lgcc_s` on the link line; with the whole program
//! in one object (the release profile's LTO), the linker takes the
//! unwinder from it and, linking with `--as-needed`, then leaves libgcc_s
//! out of the binary's needed libraries. Without LTO (debug builds) the
//! standard library's references come after the archive, and the binary
//! keeps libgcc_s, as before.
//!
//! Only where the C compiler has the archive: other linkers (zig's, for
//! the portable build of scripts/dist) bring unwinders of their own.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let gnu_linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    // A linker set for the target (cargo-zigbuild sets zig's) may not be
    // GCC: ask only the default one.
    if !gnu_linux || std::env::var_os("RUSTC_LINKER").is_some() {
        return;
    }
    if let Some(dir) = gcc_eh_directory() {
        println!("cargo:rustc-link-search=native={}", dir.display());
        println!("cargo:rustc-link-lib=static:-bundle=gcc_eh");
    }
}

/// The directory of GCC's libgcc_eh.a, if the C compiler has one.
fn gcc_eh_directory() -> Option<PathBuf> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let output = Command::new(cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8(output.stdout).ok()?.trim());
    // A compiler without the file prints its bare name back.
    match path.is_absolute() && path.is_file() {
        true => path.parent().map(PathBuf::from),
        false => None,
    }
}
