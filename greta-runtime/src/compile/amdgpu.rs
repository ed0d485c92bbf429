//! Offline compilation for AMDGPU with clang (the AMDGPU backend of LLVM 19) and reading of
//! the code object's resource notes with llvm-readelf. This is how AMD kernels are checked
//! on machines without an AMD GPU (and for gfx942, which Debian's hiprtc cannot target).

use super::resources::{parse_amdgpu_notes, Resources};
use super::tools::{executable, tool_path, INSTALL_HINT};
use super::CodeObject;
use crate::error::{Error, Result};
use std::path::PathBuf;
use std::process::Command;

/// clang + device libraries + llvm-readelf (+ llvm-objdump for the disassembly).
pub struct ClangAmdgpu {
    clang: PathBuf,
    readelf: PathBuf,
    objdump: PathBuf,
    device_libs: PathBuf,
    version: String,
}

impl ClangAmdgpu {
    /// Finds the toolchain, or explains how to install it.
    pub fn locate() -> Result<ClangAmdgpu> {
        let clang = executable("GRETA_CLANG", "clang++-19");
        let readelf = executable("GRETA_READELF", "llvm-readelf-19");
        let missing = |what: &str| Error::Unavailable(format!("{what} not found; {INSTALL_HINT}"));
        let out = Command::new(&clang)
            .arg("--version")
            .output()
            .map_err(|_| {
                missing(&format!(
                    "{} (clang with the AMDGPU backend)",
                    clang.display()
                ))
            })?;
        let version = String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("clang")
            .trim()
            .to_string();
        Command::new(&readelf)
            .arg("--version")
            .output()
            .map_err(|_| missing(&readelf.display().to_string()))?;
        let device_libs = tool_path("GRETA_AMDGPU_DEVICE_LIBS", "amdgpu-device-libs")
            .ok_or_else(|| missing("the AMDGPU device-library folder"))?;
        Ok(ClangAmdgpu {
            clang,
            readelf,
            objdump: executable("GRETA_OBJDUMP", "llvm-objdump-19"),
            device_libs,
            version,
        })
    }

    /// Compiler identity for reports.
    pub fn id(&self) -> &str {
        &self.version
    }

    /// Compiles one translation unit for `arch` (e.g. `gfx942`) to a raw code object.
    pub fn compile(&self, source: &str, name: &str, arch: &str) -> Result<CodeObject> {
        let dir = temp_dir()?;
        let src = dir.path().join(format!("{name}.hip"));
        let obj = dir.path().join(format!("{name}.co"));
        write(&src, source.as_bytes())?;
        let out = Command::new(&self.clang)
            .args(["-x", "hip", "-std=c++17", "-O3", "-munsafe-fp-atomics"])
            .arg(format!("--offload-arch={arch}"))
            .arg("--rocm-path=/usr")
            .arg(format!(
                "--rocm-device-lib-path={}",
                self.device_libs.display()
            ))
            .args(["--cuda-device-only", "--no-gpu-bundle-output", "-c"])
            .arg(&src)
            .arg("-o")
            .arg(&obj)
            .output()
            .map_err(|e| Error::Backend(format!("running {}: {e}", self.clang.display())))?;
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            return Err(Error::Compile {
                kernel: name.to_string(),
                target: arch.to_string(),
                log,
            });
        }
        let bytes = std::fs::read(&obj).map_err(|source| Error::Io {
            path: obj.display().to_string(),
            source,
        })?;
        Ok(CodeObject { bytes, log })
    }

    /// Resource usage of every kernel in a code object.
    pub fn resources(&self, code: &CodeObject) -> Result<Vec<(String, Resources)>> {
        let dir = temp_dir()?;
        let obj = dir.path().join("k.co");
        write(&obj, &code.bytes)?;
        let out = Command::new(&self.readelf)
            .arg("--notes")
            .arg(&obj)
            .output()
            .map_err(|e| Error::Backend(format!("running {}: {e}", self.readelf.display())))?;
        if !out.status.success() {
            return Err(Error::Backend(format!(
                "llvm-readelf could not read the code object: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(parse_amdgpu_notes(&String::from_utf8_lossy(&out.stdout)))
    }
}

impl ClangAmdgpu {
    /// The matrix-core instructions (`v_mfma_*`) in each kernel of a code object for
    /// `arch`, counted in its disassembly.
    pub fn matrix_instructions(&self, code: &CodeObject, arch: &str) -> Result<Vec<(String, u32)>> {
        let dir = temp_dir()?;
        let obj = dir.path().join("k.co");
        write(&obj, &code.bytes)?;
        let out = Command::new(&self.objdump)
            .arg("-d")
            .arg(format!("--mcpu={arch}"))
            .arg(&obj)
            .output()
            .map_err(|e| {
                Error::Backend(format!(
                    "running {}: {e}; {INSTALL_HINT}",
                    self.objdump.display()
                ))
            })?;
        if !out.status.success() {
            return Err(Error::Backend(format!(
                "llvm-objdump could not disassemble the code object: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(count_mfma(&String::from_utf8_lossy(&out.stdout)))
    }
}

/// `v_mfma` instructions per function of an `llvm-objdump -d` listing.
fn count_mfma(listing: &str) -> Vec<(String, u32)> {
    let mut out: Vec<(String, u32)> = Vec::new();
    for line in listing.lines() {
        let t = line.trim();
        if let Some(name) = t
            .strip_suffix(">:")
            .and_then(|l| l.split_once('<'))
            .map(|(_, n)| n)
        {
            out.push((name.to_string(), 0));
        } else if t.contains("v_mfma") {
            if let Some(last) = out.last_mut() {
                last.1 += 1;
            }
        }
    }
    out
}

fn temp_dir() -> Result<tempfile::TempDir> {
    tempfile::tempdir().map_err(|source| Error::Io {
        path: "temporary directory".into(),
        source,
    })
}

fn write(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn mfma_instructions_are_counted_per_function() {
        let listing = "0000000000001900 <gemm__A>:\n\tv_mfma_f32_16x16x16_f16 a[0:3], v[0:1], v[2:3], a[0:3]\n\ts_endpgm\n\n0000000000002000 <add>:\n\tv_add_f32 v0, v1, v2\n0000000000003000 <gemm__B>:\n\tv_mfma_i32_16x16x32_i8 v[0:3], v[4:5], v[6:7], v[0:3]\n\tv_mfma_i32_16x16x32_i8 v[0:3], v[4:5], v[6:7], v[0:3]\n";
        assert_eq!(
            super::count_mfma(listing),
            vec![
                ("gemm__A".into(), 1),
                ("add".into(), 0),
                ("gemm__B".into(), 2)
            ]
        );
    }
}
