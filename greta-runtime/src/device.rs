//! The backend-neutral device API: buffers, copies, launches, synchronisation, graphs and
//! timing. Backends (CPU interpreter, CUDA, HIP) implement [`Backend`].

use crate::args::{Arg, Grid};
use crate::buffer::{Buffer, RawBuffer};
use crate::element::Element;
use crate::error::{Error, Result};
use greta_codegen::ir::{Kernel, ParamKind};
use greta_codegen::{KernelDef, SpecValue, Target};
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};

/// Which backend to open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// The best available: CUDA, then HIP, then CPU.
    Auto,
    Cpu,
    Cuda,
    Hip,
}

impl FromStr for BackendKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<BackendKind> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(BackendKind::Auto),
            "cpu" => Ok(BackendKind::Cpu),
            "cuda" => Ok(BackendKind::Cuda),
            "hip" => Ok(BackendKind::Hip),
            other => Err(Error::Unavailable(format!(
                "unknown backend `{other}`; choose auto, cpu, cuda or hip"
            ))),
        }
    }
}

/// A captured sequence of launches that can be replayed.
pub trait BackendGraph: Send + Sync {
    /// Number of kernel launches recorded.
    fn launches(&self) -> usize;
    /// For downcasting by the backend that made it.
    fn as_any(&self) -> &dyn std::any::Any;
    /// For updating in place by the backend that made it.
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any;
}

/// A recorded point in a device's stream of work, for timing.
pub trait BackendEvent: Send + Sync {
    /// For downcasting by the backend that made it.
    fn as_any(&self) -> &dyn std::any::Any;
}

/// What every execution backend provides.
pub trait Backend: Send + Sync {
    /// The code-generation target kernels are specialised for.
    fn target(&self) -> Target;
    /// A one-line description (device name, architecture).
    fn describe(&self) -> String;
    /// Compute units that run blocks concurrently (SMs, CUs, CPU threads), for sizing grids.
    fn compute_units(&self) -> u32;
    /// Which backend this is.
    fn kind(&self) -> BackendKind;
    fn alloc(&self, bytes: usize) -> Result<RawBuffer>;
    fn write(&self, dst: &RawBuffer, offset: usize, src: &[u8]) -> Result<()>;
    /// Several writes (destination, byte offset, bytes) finished together: where each
    /// copy waits for the device, one wait for all of them.
    fn write_many(&self, writes: &[(&RawBuffer, usize, &[u8])]) -> Result<()> {
        writes
            .iter()
            .try_for_each(|(dst, offset, src)| self.write(dst, *offset, src))
    }
    fn read(&self, src: &RawBuffer, offset: usize, dst: &mut [u8]) -> Result<()>;
    /// Device-to-device copy of `bytes` bytes.
    fn copy(&self, src: &RawBuffer, dst: &RawBuffer, bytes: usize) -> Result<()>;
    /// Compiles (or loads from the cache) and loads a kernel ahead of its first launch.
    fn prepare(&self, kernel: &Arc<Kernel>) -> Result<()>;
    /// Blocks of `kernel` one compute unit holds at once, as its register and shared-memory
    /// use allow (loading it first); `u32::MAX` where blocks do not compete for them.
    fn resident_blocks(&self, kernel: &Arc<Kernel>) -> Result<u32>;
    /// Launches a specialised kernel; arguments are already checked against its parameters.
    fn launch(&self, kernel: &Arc<Kernel>, grid: Grid, args: &[Arg]) -> Result<()>;
    fn synchronize(&self) -> Result<()>;
    /// Starts recording launches instead of running them.
    fn begin_capture(&self) -> Result<()>;
    /// Stops recording and returns the graph.
    fn end_capture(&self) -> Result<Box<dyn BackendGraph>>;
    fn replay(&self, graph: &dyn BackendGraph) -> Result<()>;
    /// Brings `graph` up to date with `fresh`, a new capture of the same launches with
    /// changed parameters. Backends that can patch an instantiated graph do so; the
    /// default replaces it.
    fn update(
        &self,
        graph: &mut Box<dyn BackendGraph>,
        fresh: Box<dyn BackendGraph>,
    ) -> Result<()> {
        *graph = fresh;
        Ok(())
    }
    /// `c = a · bᵀ` by the vendor's matrix library, as a reference rate for the generated
    /// products: `a` is `m x k` and `b` `n x k` f16, row-major, `c` `m x n` f32. Backends
    /// without one say so.
    fn vendor_gemm_f16(
        &self,
        _a: &RawBuffer,
        _b: &RawBuffer,
        _c: &RawBuffer,
        _shape: (usize, usize, usize),
    ) -> Result<()> {
        Err(Error::Unavailable(format!(
            "{:?} has no vendor matrix library",
            self.kind()
        )))
    }
    fn record_event(&self) -> Result<Box<dyn BackendEvent>>;
    /// Milliseconds between two recorded events (waits for the second).
    fn elapsed_ms(&self, start: &dyn BackendEvent, end: &dyn BackendEvent) -> Result<f64>;
}

/// A device: one backend plus the typed API over it. Cheap to clone.
#[derive(Clone)]
pub struct Device {
    backend: Arc<dyn Backend>,
    /// While a capture runs, every buffer its launches and copies touch.
    captured: Arc<Mutex<Option<Vec<RawBuffer>>>>,
}

/// A captured graph bound to the device that recorded it. It holds a reference to every
/// buffer its launches use, so their memory outlives the graph: a driver graph stores bare
/// device addresses, and replaying one after its buffers were freed would write freed memory.
pub struct Graph {
    inner: Box<dyn BackendGraph>,
    buffers: Vec<RawBuffer>,
}

impl Graph {
    /// Number of kernel launches the graph replays.
    pub fn launches(&self) -> usize {
        self.inner.launches()
    }

    /// Number of distinct buffers the graph keeps alive.
    pub fn buffers(&self) -> usize {
        self.buffers.len()
    }
}

impl Device {
    /// Wraps a backend.
    pub fn from_backend(backend: Arc<dyn Backend>) -> Device {
        Device {
            backend,
            captured: Arc::default(),
        }
    }

    /// Notes `buffers` as used by the capture in progress, if any.
    fn note_use<'b>(&self, buffers: impl IntoIterator<Item = &'b RawBuffer>) {
        let mut captured = self.captured.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(list) = captured.as_mut() {
            for b in buffers {
                if !list.iter().any(|kept| kept.same(b)) {
                    list.push(b.clone());
                }
            }
        }
    }

    /// Runs `f` as a capture, returning what it recorded and the buffers it used.
    fn record(
        &self,
        f: impl FnOnce(&Device) -> Result<()>,
    ) -> Result<(Box<dyn BackendGraph>, Vec<RawBuffer>)> {
        let slot = || self.captured.lock().unwrap_or_else(PoisonError::into_inner);
        if slot().is_some() {
            return Err(Error::Backend("a capture is already in progress".into()));
        }
        self.backend.begin_capture()?;
        *slot() = Some(Vec::new());
        let recorded = f(self);
        let buffers = slot().take().unwrap_or_default();
        let graph = self.backend.end_capture();
        recorded?;
        Ok((graph?, buffers))
    }

    /// The code-generation target of this device.
    pub fn target(&self) -> Target {
        self.backend.target()
    }

    /// One-line description.
    pub fn describe(&self) -> String {
        self.backend.describe()
    }

    /// Compute units that run blocks concurrently (SMs, CUs, CPU threads).
    pub fn compute_units(&self) -> u32 {
        self.backend.compute_units()
    }

    /// Which backend runs this device.
    pub fn kind(&self) -> BackendKind {
        self.backend.kind()
    }

    /// The backend, for backend-specific operations.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Allocates `len` elements (contents unspecified).
    pub fn alloc<T: Element>(&self, len: usize) -> Result<Buffer<T>> {
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .ok_or_else(|| Error::Backend(format!("allocation of {len} elements overflows")))?;
        Ok(Buffer::from_raw(self.backend.alloc(bytes)?, len))
    }

    /// Allocates a buffer holding a copy of `data`.
    pub fn upload<T: Element>(&self, data: &[T]) -> Result<Buffer<T>> {
        let buf = self.alloc::<T>(data.len())?;
        self.note_use([buf.raw()]);
        self.backend
            .write(buf.raw(), 0, bytemuck::cast_slice(data))?;
        Ok(buf)
    }

    /// Overwrites `buf` starting at element `offset` with `data`.
    pub fn write<T: Element>(&self, buf: &mut Buffer<T>, offset: usize, data: &[T]) -> Result<()> {
        check_write(buf, offset, data)?;
        self.note_use([buf.raw()]);
        self.backend.write(
            buf.raw(),
            offset * std::mem::size_of::<T>(),
            bytemuck::cast_slice(data),
        )
    }

    /// Overwrites each buffer of `writes` from its element offset with its data, in one
    /// round trip to the device (a small copy costs a wait for the device each).
    pub fn write_all<T: Element>(
        &self,
        writes: &mut [(&mut Buffer<T>, usize, &[T])],
    ) -> Result<()> {
        for (buf, offset, data) in writes.iter() {
            check_write(buf, *offset, data)?;
        }
        self.note_use(writes.iter().map(|(buf, _, _)| buf.raw()));
        let raw: Vec<(&RawBuffer, usize, &[u8])> = writes
            .iter()
            .map(|(buf, offset, data)| {
                (
                    buf.raw(),
                    offset * std::mem::size_of::<T>(),
                    bytemuck::cast_slice(data),
                )
            })
            .collect();
        self.backend.write_many(&raw)
    }

    /// Copies the whole buffer to the host.
    pub fn download<T: Element>(&self, buf: &Buffer<T>) -> Result<Vec<T>> {
        self.read(buf, 0, buf.len())
    }

    /// Copies `len` elements of `buf` from element `offset` to the host.
    pub fn read<T: Element>(&self, buf: &Buffer<T>, offset: usize, len: usize) -> Result<Vec<T>> {
        if offset.checked_add(len).is_none_or(|end| end > buf.len()) {
            return Err(Error::OutOfBounds {
                offset: offset * std::mem::size_of::<T>(),
                len: len * std::mem::size_of::<T>(),
                bytes: buf.bytes(),
            });
        }
        let mut out = vec![T::zeroed(); len];
        self.backend.read(
            buf.raw(),
            offset * std::mem::size_of::<T>(),
            bytemuck::cast_slice_mut(&mut out),
        )?;
        Ok(out)
    }

    /// Copies `src` into `dst` (equal lengths) on the device.
    pub fn copy<T: Element>(&self, src: &Buffer<T>, dst: &mut Buffer<T>) -> Result<()> {
        if src.len() != dst.len() {
            return Err(Error::Backend(format!(
                "copy between buffers of {} and {} elements",
                src.len(),
                dst.len()
            )));
        }
        self.note_use([src.raw(), dst.raw()]);
        self.backend.copy(src.raw(), dst.raw(), src.bytes())
    }

    /// Specialises `def` for this device and launches it. Called by the macro-generated
    /// `launch` functions, whose signatures already guarantee the argument types.
    pub fn launch(
        &self,
        def: &KernelDef,
        spec: &[SpecValue],
        grid: Grid,
        args: &[Arg],
    ) -> Result<()> {
        let kernel = def.specialise(&self.target(), spec)?;
        check_args(&kernel, grid, args)?;
        self.note_use(args.iter().filter_map(|a| match a {
            Arg::Buffer { buffer, .. } => Some(*buffer),
            Arg::Scalar(_) => None,
        }));
        self.backend.launch(&kernel, grid, args)
    }

    /// `y = x · wᵀ` (`x` `m x k`, `w` `n x k` f16, `y` `m x n` f32) by the vendor's matrix
    /// library (cuBLAS), the reference rate the generated products are measured against.
    pub fn vendor_gemm_f16(
        &self,
        x: &Buffer<half::f16>,
        w: &Buffer<half::f16>,
        y: &mut Buffer<f32>,
        (m, n, k): (usize, usize, usize),
    ) -> Result<()> {
        if x.len() < m * k || w.len() < n * k || y.len() < m * n {
            return Err(Error::Backend(format!(
                "vendor product {m}x{n}x{k} over buffers of {}, {} and {} elements",
                x.len(),
                w.len(),
                y.len()
            )));
        }
        self.note_use([x.raw(), w.raw(), y.raw()]);
        self.backend
            .vendor_gemm_f16(x.raw(), w.raw(), y.raw(), (m, n, k))
    }

    /// Specialises `def` for this device and compiles (or loads from the cache) its code
    /// ahead of the first launch.
    pub fn prepare(&self, def: &KernelDef, spec: &[SpecValue]) -> Result<()> {
        let kernel = def.specialise(&self.target(), spec)?;
        self.backend.prepare(&kernel)
    }

    /// Blocks of the specialised kernel one compute unit holds at once (`u32::MAX` where
    /// there is no such limit), for sizing grids that stay resident.
    pub fn resident_blocks(&self, def: &KernelDef, spec: &[SpecValue]) -> Result<u32> {
        let kernel = def.specialise(&self.target(), spec)?;
        self.backend.resident_blocks(&kernel)
    }

    /// Waits for all submitted work.
    pub fn synchronize(&self) -> Result<()> {
        self.backend.synchronize()
    }

    /// Records the launches `f` makes into a graph instead of running them.
    pub fn capture(&self, f: impl FnOnce(&Device) -> Result<()>) -> Result<Graph> {
        let (inner, buffers) = self.record(f)?;
        Ok(Graph { inner, buffers })
    }

    /// Replays a captured graph.
    pub fn replay(&self, graph: &Graph) -> Result<()> {
        self.backend.replay(graph.inner.as_ref())
    }

    /// Re-records the launches `f` makes (the same kernels, with new parameters) and
    /// updates `graph` to them; the graph then keeps the new launches' buffers alive.
    pub fn update(&self, graph: &mut Graph, f: impl FnOnce(&Device) -> Result<()>) -> Result<()> {
        let (fresh, buffers) = self.record(f)?;
        self.backend.update(&mut graph.inner, fresh)?;
        graph.buffers = buffers;
        Ok(())
    }

    /// Runs `f` between two events and returns the device time it took, in milliseconds.
    pub fn time(&self, f: impl FnOnce(&Device) -> Result<()>) -> Result<f64> {
        let start = self.backend.record_event()?;
        f(self)?;
        let end = self.backend.record_event()?;
        self.backend.elapsed_ms(start.as_ref(), end.as_ref())
    }
}

/// Checks a launch against the kernel's parameters: a last line of defence for callers
/// that build argument lists by hand.
fn check_args(k: &Kernel, grid: Grid, args: &[Arg]) -> Result<()> {
    let fail = |message: String| {
        Err(Error::Launch {
            kernel: k.symbol.clone(),
            message,
        })
    };
    if grid.blocks() == 0 {
        return fail(format!("empty grid {grid:?}"));
    }
    if args.len() != k.params.len() {
        return fail(format!(
            "{} arguments given, the kernel takes {}",
            args.len(),
            k.params.len()
        ));
    }
    for (p, a) in k.params.iter().zip(args) {
        match (p.kind, a) {
            (
                ParamKind::Buffer { elem, mutable },
                Arg::Buffer {
                    elem: e,
                    mutable: m,
                    ..
                },
            ) => {
                if elem != *e {
                    return fail(format!("`{}` is a buffer of {elem}, got {e}", p.name));
                }
                if mutable && !m {
                    return fail(format!(
                        "`{}` is written by the kernel; pass the buffer mutably",
                        p.name
                    ));
                }
            }
            (ParamKind::Scalar(s), Arg::Scalar(v)) if s == v.ty => {}
            (kind, _) => return fail(format!("argument `{}` does not match {kind:?}", p.name)),
        }
    }
    Ok(())
}

/// Refuses a write of `data` at element `offset` that does not fit `buf`.
fn check_write<T: Element>(buf: &Buffer<T>, offset: usize, data: &[T]) -> Result<()> {
    if offset
        .checked_add(data.len())
        .is_none_or(|end| end > buf.len())
    {
        return Err(Error::OutOfBounds {
            offset: offset * std::mem::size_of::<T>(),
            len: std::mem::size_of_val(data),
            bytes: buf.bytes(),
        });
    }
    Ok(())
}
