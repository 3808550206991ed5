//! Puts the partition linker script where the linker finds it. A partition binary
//! links with `-T septum-partition.ld` (the host tool passes that flag); this build
//! script adds the script's folder to the search path of every crate that depends
//! on the SDK.
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let script = "link.ld";
    fs::copy(script, out.join("septum-partition.ld")).expect("copy the linker script");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed={script}");
}
