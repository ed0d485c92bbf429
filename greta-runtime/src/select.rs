//! Choosing a backend: CUDA when an NVIDIA GPU is present, HIP when an AMD GPU is present
//! (with the `hip` feature), else the CPU interpreter; `GRETA_BACKEND` or an explicit
//! choice overrides.

use crate::cpu::{CpuBackend, CpuOptions};
use crate::device::{BackendKind, Device};
use crate::error::{Error, Result};
use std::sync::Arc;

/// CPU options from the environment: `GRETA_WAVE` (64 or 32) and `GRETA_TRAP_NAN=1`.
pub fn cpu_options_from_env() -> Result<CpuOptions> {
    let mut o = CpuOptions::default();
    if let Ok(w) = std::env::var("GRETA_WAVE") {
        o.wave = w
            .parse()
            .map_err(|_| Error::Unavailable(format!("GRETA_WAVE must be 64 or 32, not `{w}`")))?;
    }
    o.trap_non_finite = std::env::var("GRETA_TRAP_NAN").is_ok_and(|v| v == "1");
    Ok(o)
}

impl Device {
    /// Opens a device of the given kind; `Auto` honours `GRETA_BACKEND` first.
    pub fn open(kind: BackendKind) -> Result<Device> {
        let kind = match (kind, std::env::var("GRETA_BACKEND")) {
            (BackendKind::Auto, Ok(v)) => v.parse()?,
            (k, _) => k,
        };
        match kind {
            BackendKind::Cpu => Ok(Device::from_backend(Arc::new(CpuBackend::new(
                cpu_options_from_env()?,
            )?))),
            BackendKind::Cuda => Ok(Device::from_backend(Arc::new(crate::cuda::open(0)?))),
            BackendKind::Hip => open_hip(),
            BackendKind::Auto => {
                if crate::cuda::available() {
                    return Device::open(BackendKind::Cuda);
                }
                if hip_available() {
                    return open_hip();
                }
                Device::open(BackendKind::Cpu)
            }
        }
    }

    /// The best available device (see [`BackendKind::Auto`]).
    pub fn open_default() -> Result<Device> {
        Device::open(BackendKind::Auto)
    }
}

#[cfg(feature = "hip")]
fn hip_available() -> bool {
    crate::hip::available()
}

#[cfg(not(feature = "hip"))]
fn hip_available() -> bool {
    false
}

#[cfg(feature = "hip")]
fn open_hip() -> Result<Device> {
    Ok(Device::from_backend(Arc::new(crate::hip::open(0)?)))
}

#[cfg(not(feature = "hip"))]
fn open_hip() -> Result<Device> {
    Err(Error::Unavailable(
        "this build has no HIP backend; rebuild with `--features hip`".into(),
    ))
}

/// One line per backend: what was found, or why it is unavailable.
pub fn describe_devices() -> Vec<String> {
    let mut out = Vec::new();
    for kind in [BackendKind::Cuda, BackendKind::Hip, BackendKind::Cpu] {
        let line = match Device::open(kind) {
            Ok(d) => format!("{kind:?}: {}", d.describe()),
            Err(e) => format!("{kind:?}: unavailable ({e})"),
        };
        out.push(line);
    }
    out
}
