//! Builds the small supervisor (`crates/baton-shim`, standard library only) with `rustc` alone, so
//! `baton` can carry it inside its one binary (`shim::embedded`). If it cannot be built here, an
//! empty file is embedded and Baton launches `baton shim` instead, as it always can.

// A build script is where a compiler is started.
#![allow(clippy::disallowed_methods)]

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let source = manifest.join("../baton-shim/src/main.rs");
    println!("cargo:rerun-if-changed=../baton-shim/src");
    println!("cargo:rerun-if-changed=../baton-domain/src/redact/masking.rs");
    println!("cargo:rerun-if-changed=build.rs");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    let program = out_dir.join("baton-shim");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = std::env::var("TARGET").unwrap_or_default();
    let common = [
        "--edition=2024",
        "--crate-name=baton_shim",
        "--crate-type=bin",
        "-Copt-level=3",
        "-Cpanic=abort",
        "-Ccodegen-units=1",
        "-Cstrip=symbols",
    ];
    // Statically linked first (nothing for the loader to do at each start), then dynamically.
    let mut built = false;
    for extra in [&["-Ctarget-feature=+crt-static"][..], &[][..]] {
        let status = Command::new(&rustc)
            .args(common)
            .args(extra)
            .args(if target.is_empty() { vec![] } else { vec!["--target".to_string(), target.clone()] })
            .arg("-o")
            .arg(&program)
            .arg(&source)
            .status();
        if status.is_ok_and(|s| s.success()) {
            built = true;
            break;
        }
    }
    if !built {
        println!("cargo:warning=the embedded shim could not be built; Baton will launch `baton shim` instead");
        let _ = std::fs::write(&program, b"");
    }
}
