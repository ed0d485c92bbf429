//! The CPU backend: executes kernel IR with the interpreter, lane by lane in lockstep at
//! the target's wavefront size, with bounds checks and optional NaN traps.

mod interp;
mod memory;

use crate::args::{Arg, Grid};
use crate::buffer::RawBuffer;
use crate::device::{Backend, BackendEvent, BackendGraph};
use crate::error::{Error, Result};
use greta_codegen::ir::Kernel;
use greta_codegen::{Target, GFX942, SM90};
use memory::HostMemory;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Options of the CPU backend.
#[derive(Clone, Copy, Debug)]
pub struct CpuOptions {
    /// Wavefront size to execute at: 64 (as gfx942) or 32 (as sm_90).
    pub wave: u32,
    /// Stop at the first non-finite float stored by a kernel.
    pub trap_non_finite: bool,
}

impl Default for CpuOptions {
    fn default() -> Self {
        CpuOptions {
            wave: 64,
            trap_non_finite: false,
        }
    }
}

/// The CPU interpreter backend.
pub struct CpuBackend {
    options: CpuOptions,
    target: Target,
    capture: Mutex<Option<Vec<RecordedLaunch>>>,
    /// Compiled code by kernel; the key is the `Arc<Kernel>`'s address, kept valid by
    /// holding the `Arc` beside the code.
    compiled: Mutex<HashMap<usize, Compiled>>,
}

/// A kernel and its compiled code.
type Compiled = (Arc<Kernel>, Arc<interp::Code>);

/// A launch recorded during capture: the graph of the CPU backend is this list.
struct RecordedLaunch {
    kernel: Arc<Kernel>,
    grid: Grid,
    args: Vec<OwnedArg>,
}

/// A launch argument that outlives the capture call.
#[derive(Clone)]
enum OwnedArg {
    Buffer {
        buffer: RawBuffer,
        elem: greta_codegen::Scalar,
        mutable: bool,
    },
    Scalar(crate::args::ScalarArg),
}

struct CpuGraph {
    launches: Vec<RecordedLaunch>,
}

impl BackendGraph for CpuGraph {
    fn launches(&self) -> usize {
        self.launches.len()
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

struct CpuEvent(Instant);

impl BackendEvent for CpuEvent {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl CpuBackend {
    /// A CPU backend with the given options.
    pub fn new(options: CpuOptions) -> Result<CpuBackend> {
        let target = match options.wave {
            64 => GFX942,
            32 => SM90,
            w => {
                return Err(Error::Unavailable(format!(
                    "the CPU backend runs at wave 64 (as gfx942) or 32 (as sm_90), not {w}"
                )))
            }
        };
        Ok(CpuBackend {
            options,
            target,
            capture: Mutex::new(None),
            compiled: Mutex::new(HashMap::new()),
        })
    }

    fn memory<'a>(&self, b: &'a RawBuffer) -> Result<&'a HostMemory> {
        b.downcast::<HostMemory>().ok_or(Error::ForeignBuffer)
    }

    /// The kernel's compiled code, compiling it on first use.
    fn code(&self, kernel: &Arc<Kernel>) -> Result<Arc<interp::Code>> {
        let key = Arc::as_ptr(kernel) as usize;
        let lock = || self.compiled.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, code)) = lock().get(&key) {
            return Ok(code.clone());
        }
        let code = Arc::new(interp::compile(kernel, &self.target)?);
        lock().insert(key, (kernel.clone(), code.clone()));
        Ok(code)
    }

    fn run(&self, kernel: &Arc<Kernel>, grid: Grid, args: &[Arg]) -> Result<()> {
        let code = self.code(kernel)?;
        let mut bound = Vec::with_capacity(args.len());
        for a in args {
            bound.push(match a {
                Arg::Buffer { buffer, .. } => interp::ArgValue::Memory(self.memory(buffer)?),
                Arg::Scalar(s) => interp::ArgValue::Scalar(s.bits),
            });
        }
        interp::execute(kernel, &code, grid, &bound, &self.options)
    }
}

impl Backend for CpuBackend {
    fn target(&self) -> Target {
        self.target
    }

    fn describe(&self) -> String {
        format!(
            "CPU interpreter, wave {} (as {}), {} threads",
            self.options.wave,
            self.target.name,
            rayon::current_num_threads()
        )
    }

    fn kind(&self) -> crate::device::BackendKind {
        crate::device::BackendKind::Cpu
    }

    fn compute_units(&self) -> u32 {
        rayon::current_num_threads() as u32
    }

    fn alloc(&self, bytes: usize) -> Result<RawBuffer> {
        Ok(RawBuffer::new(Arc::new(HostMemory::new(bytes))))
    }

    fn write(&self, dst: &RawBuffer, offset: usize, src: &[u8]) -> Result<()> {
        self.memory(dst)?.write(offset, src)
    }

    fn read(&self, src: &RawBuffer, offset: usize, dst: &mut [u8]) -> Result<()> {
        self.memory(src)?.read(offset, dst)
    }

    fn copy(&self, src: &RawBuffer, dst: &RawBuffer, bytes: usize) -> Result<()> {
        let mut tmp = vec![0u8; bytes];
        self.memory(src)?.read(0, &mut tmp)?;
        self.memory(dst)?.write(0, &tmp)
    }

    fn prepare(&self, kernel: &Arc<Kernel>) -> Result<()> {
        self.code(kernel).map(|_| ())
    }

    fn resident_blocks(&self, _kernel: &Arc<Kernel>) -> Result<u32> {
        Ok(u32::MAX)
    }

    fn launch(&self, kernel: &Arc<Kernel>, grid: Grid, args: &[Arg]) -> Result<()> {
        let mut capture = self.capture.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = capture.as_mut() {
            list.push(RecordedLaunch {
                kernel: kernel.clone(),
                grid,
                args: args
                    .iter()
                    .map(|a| match a {
                        Arg::Buffer {
                            buffer,
                            elem,
                            mutable,
                        } => OwnedArg::Buffer {
                            buffer: (*buffer).clone(),
                            elem: *elem,
                            mutable: *mutable,
                        },
                        Arg::Scalar(s) => OwnedArg::Scalar(*s),
                    })
                    .collect(),
            });
            return Ok(());
        }
        drop(capture);
        self.run(kernel, grid, args)
    }

    fn synchronize(&self) -> Result<()> {
        Ok(())
    }

    fn begin_capture(&self) -> Result<()> {
        let mut capture = self.capture.lock().unwrap_or_else(|p| p.into_inner());
        if capture.is_some() {
            return Err(Error::Backend("a capture is already in progress".into()));
        }
        *capture = Some(Vec::new());
        Ok(())
    }

    fn end_capture(&self) -> Result<Box<dyn BackendGraph>> {
        let launches = self
            .capture
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| Error::Backend("no capture in progress".into()))?;
        Ok(Box::new(CpuGraph { launches }))
    }

    fn replay(&self, graph: &dyn BackendGraph) -> Result<()> {
        let graph = graph
            .as_any()
            .downcast_ref::<CpuGraph>()
            .ok_or(Error::ForeignGraph)?;
        for l in &graph.launches {
            let args: Vec<Arg> = l
                .args
                .iter()
                .map(|a| match a {
                    OwnedArg::Buffer {
                        buffer,
                        elem,
                        mutable,
                    } => Arg::Buffer {
                        buffer,
                        elem: *elem,
                        mutable: *mutable,
                    },
                    OwnedArg::Scalar(s) => Arg::Scalar(*s),
                })
                .collect();
            self.run(&l.kernel, l.grid, &args)?;
        }
        Ok(())
    }

    fn record_event(&self) -> Result<Box<dyn BackendEvent>> {
        Ok(Box::new(CpuEvent(Instant::now())))
    }

    fn elapsed_ms(&self, start: &dyn BackendEvent, end: &dyn BackendEvent) -> Result<f64> {
        let get = |e: &dyn BackendEvent| {
            e.as_any()
                .downcast_ref::<CpuEvent>()
                .map(|c| c.0)
                .ok_or_else(|| Error::Backend("event from another backend".into()))
        };
        Ok((get(end)? - get(start)?).as_secs_f64() * 1e3)
    }
}
