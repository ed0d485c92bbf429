//! Reading kernel resource usage from compiler output: the AMDGPU code object's metadata
//! notes (via llvm-readelf) and ptxas's verbose report in the NVRTC log.

/// Registers, spills, scratch and shared memory of one compiled kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// Wavefront size the code was compiled for (AMD; NVIDIA is always 32).
    pub wave: u32,
    /// Vector registers (AMD) or registers per thread (NVIDIA).
    pub vgprs: u32,
    /// Scalar registers (AMD only).
    pub sgprs: u32,
    /// Accumulation registers (AMD only).
    pub agprs: u32,
    /// Registers spilled (AMD: VGPR + SGPR spill count; NVIDIA: spill store bytes).
    pub spills: u32,
    /// Private (scratch / local) memory per thread, in bytes.
    pub scratch_bytes: u32,
    /// Static shared memory (LDS), in bytes.
    pub lds_bytes: u32,
}

/// Parses `llvm-readelf --notes` output: one entry per kernel in `amdhsa.kernels`.
pub fn parse_amdgpu_notes(text: &str) -> Vec<(String, Resources)> {
    let mut kernels = Vec::new();
    let mut current: Option<(String, Resources)> = None;
    let mut in_kernels = false;
    for line in text.lines() {
        if line.starts_with("amdhsa.kernels:") {
            in_kernels = true;
            continue;
        }
        if in_kernels && !line.starts_with(' ') && !line.is_empty() {
            in_kernels = false;
        }
        if !in_kernels {
            continue;
        }
        // Kernel entries start with "  - "; their keys sit at four spaces.
        if let Some(rest) = line.strip_prefix("  - ") {
            if let Some(k) = current.take() {
                kernels.push(k);
            }
            current = Some((String::new(), Resources::default()));
            apply_key(rest, current.as_mut().expect("just set"));
        } else if let Some(rest) = line.strip_prefix("    ") {
            if !rest.starts_with(' ') && !rest.starts_with('-') {
                if let Some(k) = current.as_mut() {
                    apply_key(rest, k);
                }
            }
        }
    }
    if let Some(k) = current {
        kernels.push(k);
    }
    kernels
}

fn apply_key(entry: &str, (name, r): &mut (String, Resources)) {
    let Some((key, value)) = entry.split_once(':') else {
        return;
    };
    let value = value.trim();
    let n = || value.parse::<u32>().unwrap_or(0);
    match key.trim() {
        ".name" => *name = value.to_string(),
        ".wavefront_size" => r.wave = n(),
        ".vgpr_count" => r.vgprs = n(),
        ".sgpr_count" => r.sgprs = n(),
        ".agpr_count" => r.agprs = n(),
        ".vgpr_spill_count" | ".sgpr_spill_count" => r.spills += n(),
        ".private_segment_fixed_size" => r.scratch_bytes = n(),
        ".group_segment_fixed_size" => r.lds_bytes = n(),
        _ => {}
    }
}

/// Parses ptxas's `-v` report for `kernel` from an NVRTC log.
pub fn parse_ptxas_log(log: &str, kernel: &str) -> Option<Resources> {
    let mut r = Resources {
        wave: 32,
        ..Resources::default()
    };
    let mut in_kernel = false;
    let mut found = false;
    for line in log.lines() {
        if line.contains("Compiling entry function") {
            in_kernel = line.contains(&format!("'{kernel}'"));
            continue;
        }
        if line.contains("Function properties for") {
            in_kernel = line.trim_end().ends_with(kernel);
            continue;
        }
        if !in_kernel {
            continue;
        }
        let number_before = |unit: &str| -> Option<u32> {
            let idx = line.find(unit)?;
            line[..idx].split_whitespace().last()?.parse().ok()
        };
        if line.contains("stack frame") {
            r.scratch_bytes = number_before("bytes stack frame").unwrap_or(0);
            r.spills = number_before("bytes spill stores").unwrap_or(0);
        }
        if line.contains("Used") && line.contains("registers") {
            found = true;
            r.vgprs = number_before("registers").unwrap_or(0);
            r.lds_bytes = number_before("bytes smem").unwrap_or(0);
        }
    }
    found.then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_amdgpu_notes() {
        let text = "\
Displaying notes found in: .note
    AMDGPU Metadata:
        ---
amdhsa.kernels:
  - .agpr_count:     0
    .args:
      - .address_space:  global
        .offset:         0
        .size:           8
    .group_segment_fixed_size: 1024
    .name:           k1
    .private_segment_fixed_size: 0
    .sgpr_count:     19
    .sgpr_spill_count: 0
    .vgpr_count:     11
    .vgpr_spill_count: 2
    .wavefront_size: 64
  - .name:           k2
    .vgpr_count:     3
    .wavefront_size: 64
amdhsa.target:   amdgcn-amd-amdhsa--gfx942
";
        let k = parse_amdgpu_notes(text);
        assert_eq!(k.len(), 2);
        assert_eq!(k[0].0, "k1");
        assert_eq!(
            k[0].1,
            Resources {
                wave: 64,
                vgprs: 11,
                sgprs: 19,
                agprs: 0,
                spills: 2,
                scratch_bytes: 0,
                lds_bytes: 1024
            }
        );
        assert_eq!((k[1].0.as_str(), k[1].1.vgprs), ("k2", 3));
    }

    #[test]
    fn reads_ptxas_report() {
        let log = "\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'other' for 'sm_90'
ptxas info    : Used 99 registers, used 0 barriers
ptxas info    : Compiling entry function 'big' for 'sm_90'
ptxas info    : Function properties for big
ptxas         .     2080 bytes stack frame, 1632 bytes spill stores, 2120 bytes spill loads
ptxas info    : Used 32 registers, used 1 barriers, 2080 bytes cumulative stack size, 2048 bytes smem
";
        let r = parse_ptxas_log(log, "big").expect("report for big");
        assert_eq!(
            (r.vgprs, r.spills, r.scratch_bytes, r.lds_bytes),
            (32, 1632, 2080, 2048)
        );
        assert_eq!(parse_ptxas_log(log, "other").map(|r| r.vgprs), Some(99));
        assert!(parse_ptxas_log(log, "missing").is_none());
    }
}
