//! `greta check`: compile kernels with the real toolchains (clang's AMDGPU backend for gfx*,
//! NVRTC for sm_90) and report the resources each uses.

use crate::codegen::{hip, Dialect, SpecValue, Target};
use crate::kernels::KernelVariants;
use crate::runtime::compile::amdgpu::ClangAmdgpu;
use crate::runtime::compile::nvrtc::Nvrtc;
use crate::runtime::compile::resources::{parse_ptxas_log, Resources};
use crate::runtime::compile::JitCompiler;
use rayon::prelude::*;

/// The result of compiling one specialisation.
#[derive(Debug)]
pub struct CheckRow {
    pub symbol: String,
    pub outcome: Result<Resources, String>,
    /// Matrix-core instructions in the kernel's disassembly (AMD: `v_mfma_*`).
    pub matrix_ops: Option<u32>,
}

impl CheckRow {
    /// Problems that make the check fail: a compile error, spills, scratch, or a wavefront
    /// size that is not the target's.
    pub fn problems(&self, target: &Target) -> Vec<String> {
        match &self.outcome {
            Err(_) => vec!["compile error".to_string()],
            Ok(r) => {
                let mut p = Vec::new();
                if r.wave != target.wave {
                    p.push(format!("wave {} (target's is {})", r.wave, target.wave));
                }
                if r.spills > 0 {
                    p.push(format!("{} spills", r.spills));
                }
                if r.scratch_bytes > 0 {
                    p.push(format!("{} bytes of scratch", r.scratch_bytes));
                }
                p
            }
        }
    }
}

enum Compiler {
    Amd(ClangAmdgpu),
    Nvidia(Nvrtc),
}

/// Compiles every specialisation of `kernels` for `target`.
pub fn check(
    kernels: &[KernelVariants],
    target: &Target,
) -> Result<Vec<CheckRow>, crate::runtime::Error> {
    let compiler = match target.dialect {
        Dialect::Hip => Compiler::Amd(ClangAmdgpu::locate()?),
        Dialect::Cuda => Compiler::Nvidia(Nvrtc::load()?),
    };
    let jobs: Vec<(&KernelVariants, Vec<SpecValue>)> = kernels
        .iter()
        .flat_map(|k| k.specs(target).into_iter().map(move |v| (k, v)))
        .collect();
    Ok(jobs
        .par_iter()
        .map(|(k, spec)| compile_one(&compiler, k, spec, target))
        .collect())
}

fn compile_one(
    compiler: &Compiler,
    k: &KernelVariants,
    spec: &[SpecValue],
    target: &Target,
) -> CheckRow {
    let def = (k.def)();
    let ir = match def.specialise(target, spec) {
        Ok(ir) => ir,
        Err(e) => {
            return CheckRow {
                symbol: def.name().to_string(),
                outcome: Err(e.to_string()),
                matrix_ops: None,
            }
        }
    };
    let symbol = ir.symbol.clone();
    let mut matrix_ops = None;
    let outcome = (|| -> Result<Resources, String> {
        let src = hip::emit(&ir, target).map_err(|e| e.to_string())?;
        match compiler {
            Compiler::Amd(c) => {
                let obj = c
                    .compile(&src, &symbol, target.name)
                    .map_err(|e| e.to_string())?;
                matrix_ops = c
                    .matrix_instructions(&obj, target.name)
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .find(|(n, _)| *n == symbol)
                    .map(|(_, count)| count);
                c.resources(&obj)
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .find(|(n, _)| *n == symbol)
                    .map(|(_, r)| r)
                    .ok_or_else(|| format!("no metadata for `{symbol}` in the code object"))
            }
            Compiler::Nvidia(c) => {
                let obj = c
                    .compile(&src, &symbol, target.name, &[])
                    .map_err(|e| e.to_string())?;
                // ptxas reports the static part; the launch requests the rest.
                let dynamic = ir.layout.dynamic_bytes;
                parse_ptxas_log(&obj.log, &symbol)
                    .map(|r| Resources {
                        lds_bytes: r.lds_bytes + dynamic,
                        ..r
                    })
                    .ok_or_else(|| format!("no ptxas report for `{symbol}`"))
            }
        }
    })();
    CheckRow {
        symbol,
        outcome,
        matrix_ops,
    }
}

/// Formats the check table; AMD rows state the occupancy their VGPR count allows.
pub fn table(rows: &[CheckRow], target: &Target) -> String {
    let mut out = String::new();
    let amd = target.is_amd();
    out.push_str(&format!(
        "{:<52} {:>4} {:>6} {:>5} {:>6} {:>7} {:>6} {:>9} {:>5}  {}\n",
        "kernel",
        "wave",
        if amd { "VGPRs" } else { "regs" },
        if amd { "SGPRs" } else { "" },
        "spills",
        "scratch",
        "LDS",
        if amd { "waves/SIMD" } else { "" },
        if amd { "mfma" } else { "" },
        "status"
    ));
    for row in rows {
        let problems = row.problems(target);
        let status = if problems.is_empty() {
            "ok".to_string()
        } else {
            problems.join("; ")
        };
        match &row.outcome {
            Ok(r) => {
                let occupancy = target
                    .waves_per_simd(r.vgprs + r.agprs)
                    .map(|w| w.to_string())
                    .unwrap_or_default();
                out.push_str(&format!(
                    "{:<52} {:>4} {:>6} {:>5} {:>6} {:>7} {:>6} {:>9} {:>5}  {}\n",
                    row.symbol,
                    r.wave,
                    r.vgprs,
                    if amd {
                        r.sgprs.to_string()
                    } else {
                        String::new()
                    },
                    r.spills,
                    r.scratch_bytes,
                    r.lds_bytes,
                    occupancy,
                    row.matrix_ops.map(|n| n.to_string()).unwrap_or_default(),
                    status
                ));
            }
            Err(_) => out.push_str(&format!("{:<52} {status}\n", row.symbol)),
        }
    }
    out
}
