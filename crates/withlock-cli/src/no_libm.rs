//! `pow`, defined here so that the dynamic linker never loads libm.
//!
//! The only function of libm that withlock uses is `pow` (the waiting
//! display's time estimate, in indicatif). Linked with `--as-needed`, the
//! binary needs libm.so only for that symbol; defining it in the binary
//! itself (the pure-Rust port of musl's, from the `libm` crate) resolves it
//! at link time, so libm is not in the binary's `DT_NEEDED` list and every
//! run saves loading, mapping and relocating it (about 0.2 ms of CPU and
//! 250 KB of resident memory per run, measured with `perf stat` and
//! `/usr/bin/time -f %M`; see docs/benchmarks.md). A static libm cannot
//! stand in: glibc's libm.a refers to the dynamic loader's private CPU
//! feature table.

/// `pow(3)`: `x` raised to the power `y`.
#[unsafe(no_mangle)]
extern "C" fn pow(x: f64, y: f64) -> f64 {
    libm::pow(x, y)
}
