//! A captured graph keeps every buffer it uses alive. The backend here behaves as a driver
//! graph does: it records bare addresses, not references, and a replay touches whatever
//! memory those addresses name. Replaying after the program dropped its buffer handles must
//! find the memory still allocated.

use std::any::Any;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use greta::codegen::ir::Kernel;
use greta::codegen::{Target, GFX942};
use greta::kernels::elementwise;
use greta::runtime::{
    Arg, Backend, BackendEvent, BackendGraph, BackendKind, BackendMemory, Device, Error, Grid,
    RawBuffer, Result,
};

/// An allocation that reports when it is freed.
struct Tracked {
    bytes: usize,
    freed: Arc<AtomicBool>,
}

impl BackendMemory for Tracked {
    fn bytes(&self) -> usize {
        self.bytes
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.freed.store(true, Ordering::SeqCst);
    }
}

/// A recorded launch: for each buffer argument, only whether its memory has been freed,
/// which is what a device address alone cannot tell a driver.
struct AddressGraph {
    launches: Vec<Vec<Arc<AtomicBool>>>,
}

impl BackendGraph for AddressGraph {
    fn launches(&self) -> usize {
        self.launches.len()
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

#[derive(Default)]
struct AddressBackend {
    capturing: Mutex<Option<Vec<Vec<Arc<AtomicBool>>>>>,
}

impl Backend for AddressBackend {
    fn target(&self) -> Target {
        GFX942
    }
    fn describe(&self) -> String {
        "address-only graphs".into()
    }
    fn compute_units(&self) -> u32 {
        1
    }
    fn kind(&self) -> BackendKind {
        BackendKind::Cpu
    }
    fn alloc(&self, bytes: usize) -> Result<RawBuffer> {
        Ok(RawBuffer::new(Arc::new(Tracked {
            bytes,
            freed: Arc::default(),
        })))
    }
    fn write(&self, _: &RawBuffer, _: usize, _: &[u8]) -> Result<()> {
        Ok(())
    }
    fn read(&self, _: &RawBuffer, _: usize, _: &mut [u8]) -> Result<()> {
        Ok(())
    }
    fn copy(&self, _: &RawBuffer, _: &RawBuffer, _: usize) -> Result<()> {
        Ok(())
    }
    fn prepare(&self, _: &Arc<Kernel>) -> Result<()> {
        Ok(())
    }
    fn resident_blocks(&self, _: &Arc<Kernel>) -> Result<u32> {
        Ok(u32::MAX)
    }
    fn launch(&self, _: &Arc<Kernel>, _: Grid, args: &[Arg]) -> Result<()> {
        let flags = args
            .iter()
            .filter_map(|a| match a {
                Arg::Buffer { buffer, .. } => buffer.downcast::<Tracked>().map(|t| t.freed.clone()),
                Arg::Scalar(_) => None,
            })
            .collect();
        if let Some(list) = self.capturing.lock().unwrap().as_mut() {
            list.push(flags);
        }
        Ok(())
    }
    fn synchronize(&self) -> Result<()> {
        Ok(())
    }
    fn begin_capture(&self) -> Result<()> {
        *self.capturing.lock().unwrap() = Some(Vec::new());
        Ok(())
    }
    fn end_capture(&self) -> Result<Box<dyn BackendGraph>> {
        let launches = self.capturing.lock().unwrap().take().unwrap_or_default();
        Ok(Box::new(AddressGraph { launches }))
    }
    fn replay(&self, graph: &dyn BackendGraph) -> Result<()> {
        let g = graph
            .as_any()
            .downcast_ref::<AddressGraph>()
            .ok_or(Error::ForeignGraph)?;
        if g.launches
            .iter()
            .flatten()
            .any(|f| f.load(Ordering::SeqCst))
        {
            return Err(Error::Backend("replay wrote freed memory".into()));
        }
        Ok(())
    }
    fn record_event(&self) -> Result<Box<dyn BackendEvent>> {
        Err(Error::Unavailable("no events".into()))
    }
    fn elapsed_ms(&self, _: &dyn BackendEvent, _: &dyn BackendEvent) -> Result<f64> {
        Err(Error::Unavailable("no events".into()))
    }
}

#[test]
fn a_graph_keeps_its_buffers_alive_after_the_program_drops_them() {
    let dev = Device::from_backend(Arc::new(AddressBackend::default()));
    let n = 64;
    let a = dev.upload(&vec![1.0f32; n]).unwrap();
    let b = dev.upload(&vec![2.0f32; n]).unwrap();
    let mut out = dev.alloc::<f32>(n).unwrap();
    let freed = out.raw().downcast::<Tracked>().unwrap().freed.clone();
    let graph = dev
        .capture(|d| elementwise::add::launch::<f32>(d, 1, &a, &b, &mut out, n as u32))
        .unwrap();
    assert_eq!((graph.launches(), graph.buffers()), (1, 3));
    drop((a, b, out));
    assert!(
        !freed.load(Ordering::SeqCst),
        "the graph still holds the output"
    );
    dev.replay(&graph)
        .expect("replay after the handles are gone");
    drop(graph);
    assert!(
        freed.load(Ordering::SeqCst),
        "the memory goes with the graph"
    );
}

#[test]
fn an_updated_graph_holds_the_new_buffers_and_releases_the_old() {
    let dev = Device::from_backend(Arc::new(AddressBackend::default()));
    let n = 16;
    let a = dev.upload(&vec![1.0f32; n]).unwrap();
    let mut old = dev.alloc::<f32>(n).unwrap();
    let old_freed = old.raw().downcast::<Tracked>().unwrap().freed.clone();
    let mut graph = dev
        .capture(|d| elementwise::add::launch::<f32>(d, 1, &a, &a, &mut old, n as u32))
        .unwrap();
    let mut new = dev.alloc::<f32>(n).unwrap();
    let new_freed = new.raw().downcast::<Tracked>().unwrap().freed.clone();
    dev.update(&mut graph, |d| {
        elementwise::add::launch::<f32>(d, 1, &a, &a, &mut new, n as u32)
    })
    .unwrap();
    drop((old, new, a));
    assert!(
        old_freed.load(Ordering::SeqCst),
        "the old output is no longer referenced"
    );
    assert!(!new_freed.load(Ordering::SeqCst));
    assert_eq!(graph.buffers(), 2);
    dev.replay(&graph).expect("replay after update");
}
