//! The targets GRETA generates code for, and the facts about each that codegen and
//! validation rely on.

use std::fmt;

/// Source dialect printed for a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// HIP C++ for AMD GPUs, compiled by hiprtc or clang.
    Hip,
    /// The same HIP source under a CUDA prelude, compiled by NVRTC.
    Cuda,
}

/// A code-generation target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    /// Short name used on the command line (`gfx942`).
    pub name: &'static str,
    /// Human description.
    pub description: &'static str,
    pub dialect: Dialect,
    /// Wavefront (warp) width: a compile-time fact of the target.
    pub wave: u32,
    /// Shared memory (LDS) a block may use, in bytes.
    pub shared_bytes: u32,
    /// Shared memory a block may declare statically; beyond it (CUDA: 48 KiB) the arrays
    /// are carved from one dynamic allocation that the launch requests.
    pub static_shared_bytes: u32,
    /// Whether a wave can copy global memory into shared memory asynchronously, without
    /// registers (Hopper's bulk copies): `copy_async` / `wait_async`, `BULK_COPY` in kernels.
    pub bulk_copy: bool,
    /// Largest block the target runs.
    pub max_block: u32,
    /// Vector registers per SIMD lane (AMD) used to state occupancy; 0 where not applicable.
    pub vgprs_per_simd: u32,
    /// SIMDs (AMD) or warp schedulers (NVIDIA) per compute unit.
    pub simds_per_unit: u32,
}

/// CDNA3 (MI300X): the primary target.
pub const GFX942: Target = Target {
    name: "gfx942",
    description: "AMD CDNA3 (MI300X), wave 64",
    dialect: Dialect::Hip,
    wave: 64,
    shared_bytes: 64 * 1024,
    static_shared_bytes: 64 * 1024,
    bulk_copy: false,
    max_block: 1024,
    vgprs_per_simd: 512,
    simds_per_unit: 4,
};

/// CDNA2 (MI200).
pub const GFX90A: Target = Target {
    name: "gfx90a",
    description: "AMD CDNA2 (MI200), wave 64",
    dialect: Dialect::Hip,
    wave: 64,
    shared_bytes: 64 * 1024,
    static_shared_bytes: 64 * 1024,
    bulk_copy: false,
    max_block: 1024,
    vgprs_per_simd: 512,
    simds_per_unit: 4,
};

/// Hopper (H100), through the CUDA prelude.
pub const SM90: Target = Target {
    name: "sm_90",
    description: "NVIDIA Hopper (H100), warp 32",
    dialect: Dialect::Cuda,
    wave: 32,
    // 227 KiB with the dynamic opt-in.
    shared_bytes: 227 * 1024,
    static_shared_bytes: 48 * 1024,
    bulk_copy: true,
    max_block: 1024,
    vgprs_per_simd: 0,
    simds_per_unit: 4,
};

/// Ampere (A100), through the CUDA prelude: `mma.sync`, `ldmatrix` and `cp.async`, but no
/// bulk copies or dependent launch.
pub const SM80: Target = Target {
    name: "sm_80",
    description: "NVIDIA Ampere (A100), warp 32",
    dialect: Dialect::Cuda,
    wave: 32,
    // 163 KiB with the dynamic opt-in.
    shared_bytes: 163 * 1024,
    static_shared_bytes: 48 * 1024,
    bulk_copy: false,
    max_block: 1024,
    vgprs_per_simd: 0,
    simds_per_unit: 4,
};

/// Ampere consumer and embedded parts (RTX 30, A10, A40, Orin): sm_80's code in 99 KiB of
/// shared memory per block.
pub const SM86: Target = Target {
    name: "sm_86",
    description: "NVIDIA Ampere (RTX 30, A10, A40), warp 32",
    shared_bytes: 99 * 1024,
    ..SM80
};

/// Ada (L4, L40S, RTX 40): as sm_86.
pub const SM89: Target = Target {
    name: "sm_89",
    description: "NVIDIA Ada (L4, L40S, RTX 40), warp 32",
    shared_bytes: 99 * 1024,
    ..SM80
};

/// Every target the snapshots and the tools cover, primary first. sm_86 and sm_89 print the
/// same source as sm_80 and differ only in the tiles that fit their shared memory.
pub const TARGETS: [Target; 4] = [GFX942, GFX90A, SM90, SM80];

/// Every NVIDIA target, newest first.
pub const NVIDIA_TARGETS: [Target; 4] = [SM90, SM89, SM86, SM80];

impl Target {
    /// Looks a target up by its short name.
    pub fn by_name(name: &str) -> Option<Target> {
        TARGETS
            .into_iter()
            .chain(NVIDIA_TARGETS)
            .find(|t| t.name == name)
    }

    /// Names of all targets, for error messages.
    pub fn names() -> String {
        let mut names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
        for t in NVIDIA_TARGETS {
            if !names.contains(&t.name) {
                names.push(t.name);
            }
        }
        names.join(", ")
    }

    /// The NVIDIA target for a device of compute capability `major.minor` that allows
    /// `shared_optin` bytes of shared memory per block: sm_80 and newer (`mma.sync` and
    /// `cp.async` are the floor). A newer architecture than these takes sm_90's code where
    /// its shared memory holds sm_90's tiles and sm_89's otherwise.
    pub fn for_cuda_device(major: u32, minor: u32, shared_optin: u32) -> Option<Target> {
        match (major, minor) {
            (0..=7, _) => None,
            (8, 0) => Some(SM80),
            (8, 9) => Some(SM89),
            (8, _) => Some(SM86),
            (9, _) => Some(SM90),
            _ if shared_optin >= SM90.shared_bytes => Some(SM90),
            _ => Some(SM89),
        }
    }

    /// True for the AMD targets.
    pub fn is_amd(&self) -> bool {
        self.dialect == Dialect::Hip
    }

    /// The launch-bounds attributes of a kernel of `block` threads that must keep
    /// `min_waves` waves per SIMD resident. HIP spells it directly; CUDA's second bound is
    /// blocks per SM, so it becomes the blocks that many waves per scheduler take.
    pub fn launch_bounds(&self, block: u32, min_waves: Option<u32>) -> String {
        match (min_waves, self.dialect) {
            (None, _) => format!("__launch_bounds__({block})"),
            (Some(w), Dialect::Hip) => {
                format!("__launch_bounds__({block}) __attribute__((amdgpu_waves_per_eu({w})))")
            }
            (Some(w), Dialect::Cuda) => {
                let blocks = (w * self.simds_per_unit * self.wave).div_ceil(block).max(1);
                format!("__launch_bounds__({block}, {blocks})")
            }
        }
    }

    /// Waves per SIMD a kernel using `vgprs` vector registers can keep resident (AMD,
    /// CDNA: 512 VGPRs per lane per SIMD, at most 8 waves).
    pub fn waves_per_simd(&self, vgprs: u32) -> Option<u32> {
        if self.vgprs_per_simd == 0 || vgprs == 0 {
            return None;
        }
        // CDNA allocates VGPRs in granules of 8.
        let granted = vgprs.div_ceil(8) * 8;
        Some((self.vgprs_per_simd / granted).min(8))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_and_occupancy() {
        assert_eq!(Target::by_name("gfx942").map(|t| t.wave), Some(64));
        assert_eq!(Target::by_name("sm_90").map(|t| t.wave), Some(32));
        assert!(Target::by_name("gfx1100").is_none());
        assert_eq!(GFX942.waves_per_simd(128), Some(4));
        assert_eq!(GFX942.waves_per_simd(60), Some(8));
        assert_eq!(GFX942.waves_per_simd(130), Some(3));
        assert_eq!(SM90.waves_per_simd(64), None);
        assert_eq!(Target::by_name("sm_86"), Some(SM86));
        assert!(Target::names().contains("sm_89"));
    }

    #[test]
    fn nvidia_devices_get_the_target_of_their_capability() {
        let pick =
            |major, minor, optin| Target::for_cuda_device(major, minor, optin).map(|t| t.name);
        assert_eq!(
            pick(7, 5, 65536),
            None,
            "Turing has no bf16 mma.sync or cp.async"
        );
        assert_eq!(pick(8, 0, 166912), Some("sm_80"));
        assert_eq!(pick(8, 6, 101376), Some("sm_86"));
        assert_eq!(pick(8, 7, 166912), Some("sm_86"));
        assert_eq!(pick(8, 9, 101376), Some("sm_89"));
        assert_eq!(pick(9, 0, 232448), Some("sm_90"));
        assert_eq!(pick(10, 0, 232448), Some("sm_90"));
        assert_eq!(pick(12, 0, 101376), Some("sm_89"));
        assert!(NVIDIA_TARGETS
            .iter()
            .all(|t| t.bulk_copy == (t.name == "sm_90")));
    }

    #[test]
    fn occupancy_targets_become_each_vendors_launch_bounds() {
        assert_eq!(SM90.launch_bounds(256, None), "__launch_bounds__(256)");
        assert_eq!(GFX942.launch_bounds(512, None), "__launch_bounds__(512)");
        // Four warps per scheduler on four schedulers: 512 threads, two 256-thread blocks.
        assert_eq!(
            SM90.launch_bounds(256, Some(4)),
            "__launch_bounds__(256, 2)"
        );
        assert_eq!(
            SM90.launch_bounds(1024, Some(4)),
            "__launch_bounds__(1024, 1)"
        );
        assert_eq!(
            GFX942.launch_bounds(256, Some(4)),
            "__launch_bounds__(256) __attribute__((amdgpu_waves_per_eu(4)))"
        );
    }
}
