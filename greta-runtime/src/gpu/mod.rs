//! The GPU backends. [`GpuBackend`] implements [`Backend`](crate::Backend) once over a
//! small [`Driver`] trait, which the CUDA and HIP modules implement as thin shims. This
//! module also holds the pieces under it: range checks for copies, packing of kernel
//! arguments into launch slots, the table of loaded kernels, and the start-up checks that
//! tie a device to a code-generation target.

mod backend;
mod driver;

pub(crate) use backend::DeviceInfo;
pub(crate) use backend::GpuBackend;
pub(crate) use driver::{Driver, Launch};

use crate::args::Arg;
use crate::buffer::RawBuffer;
use crate::error::{Error, Result};
use greta_codegen::Target;
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Mutex;

/// Fails unless `offset..offset + len` lies inside `b`.
pub(crate) fn check_range(b: &RawBuffer, offset: usize, len: usize) -> Result<()> {
    if offset.checked_add(len).is_none_or(|end| end > b.bytes()) {
        return Err(Error::OutOfBounds {
            offset,
            len,
            bytes: b.bytes(),
        });
    }
    Ok(())
}

/// Kernel arguments as the driver APIs take them: one 8-byte slot per argument and an
/// array of pointers to the slots (`kernelParams` of cuLaunchKernel / hipModuleLaunchKernel).
pub(crate) struct ArgSlots {
    slots: Vec<u64>,
}

impl ArgSlots {
    /// Packs `args`; `address` gives a buffer's device address. The kernel reads only its
    /// parameter's own size from a slot (little-endian), so scalars of any width fit.
    pub(crate) fn pack(
        args: &[Arg],
        address: impl Fn(&RawBuffer) -> Result<u64>,
    ) -> Result<ArgSlots> {
        let slots = args
            .iter()
            .map(|a| match a {
                Arg::Buffer { buffer, .. } => address(buffer),
                Arg::Scalar(s) => Ok(s.bits),
            })
            .collect::<Result<_>>()?;
        Ok(ArgSlots { slots })
    }

    /// One pointer per argument into the slots, valid while `self` stays borrowed.
    pub(crate) fn params(&mut self) -> Vec<*mut c_void> {
        self.slots
            .iter_mut()
            .map(|s| s as *mut u64 as *mut c_void)
            .collect()
    }
}

/// Loaded modules and their entry points, by kernel symbol. Modules stay loaded for the
/// backend's lifetime: a kernel is compiled and loaded once, then launched many times.
pub(crate) struct LoadedKernels<M, F> {
    loaded: Mutex<HashMap<String, (M, F)>>,
}

impl<M, F: Copy> LoadedKernels<M, F> {
    /// An empty table.
    pub(crate) fn new() -> Self {
        LoadedKernels {
            loaded: Mutex::new(HashMap::new()),
        }
    }

    /// The entry point of `symbol`, running `load` (compile or read the cache, then load
    /// the module) on first use. The lock is held while loading so that concurrent first
    /// launches compile once.
    pub(crate) fn get_or_load(
        &self,
        symbol: &str,
        load: impl FnOnce() -> Result<(M, F)>,
    ) -> Result<F> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, function)) = loaded.get(symbol) {
            return Ok(*function);
        }
        let (module, function) = load()?;
        loaded.insert(symbol.to_string(), (module, function));
        Ok(function)
    }
}

/// Fails unless the wavefront (warp) width the device reports is the target's: code is
/// generated for the target's width, and a mismatch silently breaks every cross-lane op.
pub(crate) fn check_wave(reported: i32, target: &Target) -> Result<()> {
    if u32::try_from(reported).ok() != Some(target.wave) {
        return Err(Error::Unavailable(format!(
            "device reports a wavefront of {reported} lanes, but the {} target table says {}",
            target.name, target.wave
        )));
    }
    Ok(())
}

/// The AMD code-generation target for a device's architecture name, which may carry
/// target features (`gfx942:sramecc+:xnack-` selects gfx942).
#[cfg(any(feature = "hip", test))]
pub(crate) fn amd_target(arch: &str) -> Result<Target> {
    use greta_codegen::TARGETS;
    let base = arch.split(':').next().unwrap_or(arch);
    let amd = || TARGETS.into_iter().filter(|t| t.is_amd());
    amd().find(|t| t.name == base).ok_or_else(|| {
        let supported: Vec<&str> = amd().map(|t| t.name).collect();
        Error::Unavailable(format!(
            "AMD GPU architecture `{arch}` is not supported; supported: {}",
            supported.join(", ")
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::ScalarArg;
    use crate::buffer::BackendMemory;
    use greta_codegen::{Scalar, GFX90A, GFX942, SM90};
    use std::sync::Arc;

    struct Fake(usize);

    impl BackendMemory for Fake {
        fn bytes(&self) -> usize {
            self.0
        }
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
    }

    #[test]
    fn ranges_are_checked_without_overflow() {
        let b = RawBuffer::new(Arc::new(Fake(16)));
        assert!(check_range(&b, 0, 16).is_ok());
        assert!(check_range(&b, 16, 0).is_ok());
        assert!(matches!(
            check_range(&b, 8, 9),
            Err(Error::OutOfBounds {
                offset: 8,
                len: 9,
                bytes: 16
            })
        ));
        assert!(check_range(&b, usize::MAX, 2).is_err());
    }

    #[test]
    fn slots_hold_addresses_and_scalar_bits() {
        let b = RawBuffer::new(Arc::new(Fake(4)));
        let args = [
            Arg::Buffer {
                buffer: &b,
                elem: Scalar::F32,
                mutable: true,
            },
            Arg::Scalar(ScalarArg {
                ty: Scalar::U32,
                bits: 7,
            }),
        ];
        let mut slots = ArgSlots::pack(&args, |_| Ok(0xdead_beef_0000)).expect("pack");
        let params = slots.params();
        // SAFETY: each pointer points at a live u64 slot borrowed through `slots`.
        let values: Vec<u64> = params
            .iter()
            .map(|p| unsafe { *(*p as *const u64) })
            .collect();
        assert_eq!(values, [0xdead_beef_0000, 7]);
        assert!(ArgSlots::pack(&args, |_| Err(Error::ForeignBuffer)).is_err());
    }

    #[test]
    fn kernels_load_once() {
        let table: LoadedKernels<(), u32> = LoadedKernels::new();
        assert_eq!(table.get_or_load("k", || Ok(((), 1))).expect("load"), 1);
        let again = table.get_or_load("k", || panic!("loaded twice"));
        assert_eq!(again.expect("cached"), 1);
        assert!(table
            .get_or_load("bad", || Err(Error::Backend("no".into())))
            .is_err());
        assert_eq!(table.get_or_load("bad", || Ok(((), 2))).expect("retry"), 2);
    }

    #[test]
    fn wave_mismatch_is_an_error() {
        assert!(check_wave(64, &GFX942).is_ok());
        assert!(check_wave(32, &SM90).is_ok());
        let e = check_wave(32, &GFX90A).expect_err("wave 32 on gfx90a");
        assert!(e.to_string().contains("32") && e.to_string().contains("64"));
        assert!(check_wave(-1, &GFX942).is_err());
    }

    #[test]
    fn amd_targets_by_architecture_name() {
        assert_eq!(
            amd_target("gfx942:sramecc+:xnack-").map(|t| t.name).ok(),
            Some("gfx942")
        );
        assert_eq!(amd_target("gfx90a").map(|t| t.name).ok(), Some("gfx90a"));
        let e = amd_target("gfx1100").expect_err("RDNA3 is not a target");
        assert!(e.to_string().contains("gfx1100"));
        assert!(e.to_string().contains("gfx942, gfx90a"));
        assert!(
            amd_target("sm_90").is_err(),
            "NVIDIA targets are not AMD archs"
        );
    }
}
