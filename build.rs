//! Makes the binaries find libtorch without LD_LIBRARY_PATH (rpath to the wheel's `torch/lib`)
//! and keeps libtorch_cuda linked so `tch::Cuda::is_available()` works on GPU machines.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-changed=build.rs");
    let Some(libtorch) = std::env::var_os("LIBTORCH").map(PathBuf::from) else {
        panic!("LIBTORCH is not set: run `bash scripts/setup.sh` (it installs libtorch and links .libtorch)");
    };
    let lib = libtorch.join("lib");
    let lib = match lib.canonicalize() {
        Ok(p) => p,
        Err(_) => panic!(
            "libtorch not found at {}: run `bash scripts/setup.sh` first (it installs torch 2.13.0 into the per-user cache)",
            lib.display()
        ),
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    if lib.join("libtorch_cuda.so").exists() {
        // The linker drops libraries whose symbols are unused; CUDA kernels register themselves at load time.
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
