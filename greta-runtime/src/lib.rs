//! GRETA runtime: devices and execution. Generated source is compiled at run time (NVRTC,
//! hiprtc) and cached on disk; launches, events and graphs go through one backend-neutral
//! API; the CPU backend interprets the IR lane by lane at the target's wavefront size.

pub mod args;
pub mod buffer;
pub mod cache;
pub mod compile;
pub mod cpu;
pub mod cuda;
pub mod device;
pub mod element;
pub mod error;
mod gpu;
#[cfg(feature = "hip")]
pub mod hip;
pub mod jit;
pub mod select;

pub use args::{Arg, Grid, ScalarArg};
pub use buffer::{BackendMemory, Buffer, RawBuffer};
pub use device::{Backend, BackendEvent, BackendGraph, BackendKind, Device, Graph};
pub use element::Element;
pub use error::{Error, Result};
