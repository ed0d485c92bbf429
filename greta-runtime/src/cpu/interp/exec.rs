//! Execution of compiled code: waves in lockstep under an exec mask, the waves of a block
//! interleaved between barriers, memory accesses bounds-checked.

use super::code::{Access, Code, Init, LocId, Mem, Op, Pc, Slot};
use super::value::{self, lanes, Reducer};
use crate::buffer::BackendMemory;
use crate::cpu::memory::HostMemory;
use greta_codegen::ir::Kernel;
use std::sync::{Mutex, MutexGuard};

/// What went wrong, where: turned into an error message by the launch.
#[derive(Debug)]
pub struct Fault {
    pub at: LocId,
    /// Thread index within the block, where one thread is to blame.
    pub thread: Option<u32>,
    pub message: String,
}

/// Everything a block needs from its launch.
pub struct Launch<'a> {
    pub kernel: &'a Kernel,
    pub code: &'a Code,
    /// Memory of each buffer parameter (by parameter index).
    pub globals: Vec<Option<&'a HostMemory>>,
    /// Bits of each scalar parameter (by parameter index).
    pub params: Vec<u64>,
    pub grid: [u32; 3],
    pub trap_non_finite: bool,
}

/// One wavefront's state.
struct Wave {
    pc: usize,
    exec: u64,
    regs: Vec<u64>,
    masks: Vec<u64>,
    done: bool,
    /// This wave's contribution to a block reduction in progress.
    partial: u64,
    /// The shared bytes (offset, length) of this wave's copy in flight.
    copying: Option<(usize, usize)>,
    /// Shared bytes of this wave's vector copies not yet committed, then of each committed
    /// group in flight, oldest first.
    open_copies: Vec<(usize, usize)>,
    copy_groups: std::collections::VecDeque<Vec<(usize, usize)>>,
}

/// Why a wave stopped running.
enum Step {
    Done,
    /// Waiting at the barrier or block reduction at this pc.
    Sync(Pc),
}

/// The per-block state, reused across the blocks a worker runs.
pub struct Block {
    waves: Vec<Wave>,
    shared: Vec<u8>,
    written: Vec<bool>,
}

fn full_mask(w: usize) -> u64 {
    if w == 64 {
        u64::MAX
    } else {
        (1u64 << w) - 1
    }
}

/// The slot `d` writable, every other slot readable.
struct Regs<'r> {
    lo: &'r [u64],
    hi: &'r [u64],
    d: usize,
    w: usize,
}

impl Regs<'_> {
    fn get(&self, s: Slot) -> &[u64] {
        let s = s as usize;
        if s < self.d {
            &self.lo[s * self.w..][..self.w]
        } else {
            assert!(s > self.d, "an operation reads the slot it writes");
            &self.hi[(s - self.d - 1) * self.w..][..self.w]
        }
    }
}

fn split(regs: &mut [u64], w: usize, d: Slot) -> (&mut [u64], Regs<'_>) {
    let d = d as usize;
    let (lo, rest) = regs.split_at_mut(d * w);
    let (dst, hi) = rest.split_at_mut(w);
    (dst, Regs { lo, hi, d, w })
}

/// Copies one slot to another on the lanes of `exec`.
fn copy_slot(regs: &mut [u64], w: usize, dst: Slot, src: Slot, exec: u64) {
    let (d, r) = split(regs, w, dst);
    let s = r.get(src);
    if exec == full_mask(w) {
        d.copy_from_slice(s);
    } else {
        for l in lanes(exec) {
            d[l] = s[l];
        }
    }
}

/// Locks guarding global atomics, striped by address: blocks run on several threads.
static ATOMIC_LOCKS: [Mutex<()>; 64] = [const { Mutex::new(()) }; 64];

fn atomic_lock(memory: &HostMemory, offset: usize) -> MutexGuard<'static, ()> {
    let addr = memory.address(offset);
    ATOMIC_LOCKS[(addr >> 3) % ATOMIC_LOCKS.len()]
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// The little-endian value of 1, 2, 4 or 8 bytes.
fn le(b: &[u8]) -> u64 {
    match *b {
        [a] => a as u64,
        [a, b] => u16::from_le_bytes([a, b]) as u64,
        [a, b, c, d] => u32::from_le_bytes([a, b, c, d]) as u64,
        _ => u64::from_le_bytes(b.try_into().expect("scalars are 1, 2, 4 or 8 bytes")),
    }
}

/// The wave-uniform `offset` and `ld` of a fragment access, checked: every lane passes
/// the same, the whole wave is here, and the tile's rows start at 16-byte boundaries (as
/// the wide loads and `ldmatrix` of the GPUs need).
#[allow(clippy::too_many_arguments)]
fn frag_operands(
    regs: &[u64],
    w: usize,
    exec: u64,
    full: u64,
    offset: Slot,
    ld: Slot,
    acc: Access,
    name: &str,
) -> Result<(u64, u64), (usize, String)> {
    if exec != full {
        let lane = (!exec & full).trailing_zeros() as usize;
        return Err((
            lane,
            format!("`{name}` needs the whole wave: this lane is inactive here"),
        ));
    }
    let mut out = [0u64; 2];
    for (v, slot) in out.iter_mut().zip([offset, ld]) {
        let lane_values = &regs[slot as usize * w..][..w];
        *v = lane_values[0];
        if let Some(lane) = (0..w).find(|&l| lane_values[l] != *v) {
            return Err((lane, format!("`{name}` operands differ across the wave; every lane passes the same offset and row stride")));
        }
    }
    let es = acc.bytes() as u64;
    let [offset, ld] = out;
    if !(offset * es).is_multiple_of(16) || !(ld * es).is_multiple_of(16) {
        return Err((0, format!(
            "`{name}` at offset {offset} with rows {ld} apart: a fragment's rows must start at 16-byte boundaries (offset and row stride multiples of {} {} elements)",
            16 / es,
            acc.elem
        )));
    }
    Ok((offset, ld))
}

/// The kinds of memory access, for messages.
#[derive(Clone, Copy)]
enum AccessKind {
    Load,
    Store,
    Atomic,
}

/// The memory an access addresses, resolved once per operation.
struct Region<'m> {
    /// The buffer's bytes; `None` for shared memory.
    global: Option<&'m HostMemory>,
    /// Byte offset of a shared array in the block's shared memory.
    base: usize,
    /// Number of whole accesses that fit.
    count: u64,
    /// Shift that sign-extends a signed index from its width (0 for unsigned).
    sign_shift: u32,
}

impl<'m> Region<'m> {
    fn new(l: &Launch<'m>, acc: Access) -> Region<'m> {
        match acc.mem {
            Mem::Global(p) => {
                let memory = l.globals[p as usize].expect("buffer parameters are bound to memory");
                Region {
                    global: Some(memory),
                    base: 0,
                    count: (memory.bytes() / acc.bytes()) as u64,
                    sign_shift: sign_shift(acc),
                }
            }
            Mem::Shared(s) => Region {
                global: None,
                base: l.kernel.layout.offsets[s as usize] as usize,
                count: (l.kernel.shared[s as usize].bytes() as usize / acc.bytes()) as u64,
                sign_shift: sign_shift(acc),
            },
        }
    }

    /// The byte offset of access `ix`, or the out-of-bounds message.
    #[inline(always)]
    fn offset(&self, l: &Launch, acc: Access, ix: u64, kind: AccessKind) -> Result<usize, String> {
        // A negative index sign-extends to a huge unsigned one and fails the same test.
        let i = if self.sign_shift == 0 {
            ix
        } else {
            ((ix << self.sign_shift) as i64 >> self.sign_shift) as u64
        };
        if i >= self.count {
            return Err(out_of_bounds(l, acc, ix, self.count, kind));
        }
        Ok(self.base + i as usize * acc.bytes())
    }
}

fn sign_shift(acc: Access) -> u32 {
    if acc.index.is_signed_int() {
        64 - acc.index.bits()
    } else {
        0
    }
}

#[cold]
fn out_of_bounds(l: &Launch, acc: Access, ix: u64, count: u64, kind: AccessKind) -> String {
    let what = match kind {
        AccessKind::Load => "load from",
        AccessKind::Store => "store to",
        AccessKind::Atomic => "atomic on",
    };
    let unit = if acc.lanes > 1 {
        format!(" {}x{}", acc.elem, acc.lanes)
    } else {
        String::new()
    };
    format!(
        "{what} {} out of bounds (length {count}{unit})",
        place_name(l, acc, ix, None)
    )
}

/// Splits the bytes of one access into its components' lane values.
type Unpack = fn(&[u8; 16], &mut [u64], usize, usize, usize, usize);

fn unpack<const ES: usize>(
    buf: &[u8; 16],
    regs: &mut [u64],
    n: usize,
    dst: usize,
    w: usize,
    lane: usize,
) {
    for c in 0..n {
        let mut b = [0u8; 8];
        b[..ES].copy_from_slice(&buf[c * ES..c * ES + ES]);
        regs[(dst + c) * w + lane] = u64::from_le_bytes(b);
    }
}

fn unpacker(es: usize) -> Unpack {
    match es {
        1 => unpack::<1>,
        2 => unpack::<2>,
        4 => unpack::<4>,
        _ => unpack::<8>,
    }
}

impl Block {
    /// Fresh state for blocks of `kernel`, compiled to `code`.
    pub fn new(code: &Code, kernel: &Kernel) -> Block {
        let shared_bytes = kernel.layout.arrays_bytes as usize;
        let w = code.wave as usize;
        let n = (kernel.block as usize).div_ceil(w);
        let waves = (0..n)
            .map(|_| Wave {
                pc: 0,
                exec: 0,
                regs: vec![0; code.slots as usize * w],
                masks: vec![0; code.masks as usize],
                done: false,
                partial: 0,
                copying: None,
                open_copies: Vec::new(),
                copy_groups: std::collections::VecDeque::new(),
            })
            .collect();
        Block {
            waves,
            shared: vec![0; shared_bytes],
            written: vec![false; shared_bytes],
        }
    }

    /// Runs one block to completion.
    pub fn run(&mut self, l: &Launch, block: [u32; 3]) -> Result<(), Fault> {
        let code = l.code;
        let w = code.wave as usize;
        // Shared memory starts poisoned: reading a byte no thread wrote is an error.
        self.written.fill(false);
        for (wi, wave) in self.waves.iter_mut().enumerate() {
            wave.pc = 0;
            wave.exec = full_mask(w);
            wave.done = false;
            wave.copying = None;
            wave.open_copies.clear();
            wave.copy_groups.clear();
            wave.masks.fill(0);
            for &(slot, init) in &code.inits {
                let lanes = &mut wave.regs[slot as usize * w..][..w];
                for (lane, v) in lanes.iter_mut().enumerate() {
                    *v = match init {
                        Init::Bits(b) => b,
                        Init::Param(p) => l.params[p as usize],
                        Init::ThreadIdx => (wi * w + lane) as u64,
                        Init::LaneId => lane as u64,
                        Init::WaveId => wi as u64,
                        Init::BlockIdx(a) => block[a as usize] as u64,
                        Init::GridDim(a) => l.grid[a as usize] as u64,
                    };
                }
            }
        }
        loop {
            let mut sync: Option<(usize, Pc)> = None;
            for wi in 0..self.waves.len() {
                if self.waves[wi].done {
                    continue;
                }
                match self.run_wave(l, wi)? {
                    Step::Done => self.waves[wi].done = true,
                    Step::Sync(pc) => match sync {
                        None => sync = Some((wi, pc)),
                        Some((first, at)) if at != pc => {
                            return Err(Fault {
                                at: sync_loc(code, pc),
                                thread: None,
                                message: format!(
                                    "wave {wi} waits at this barrier while wave {first} waits at the one at {}; every wave of a block must reach the same barrier",
                                    code.place(sync_loc(code, at))
                                ),
                            });
                        }
                        Some(_) => {}
                    },
                }
            }
            let Some((_, pc)) = sync else {
                return Ok(());
            };
            if let Op::BlockReduce { r, dst, at, .. } = code.ops[pc as usize] {
                self.finish_block_reduce(w, r, dst, at)?;
            }
        }
    }

    /// Combines the waves' partial results in wave order and hands every thread the total.
    fn finish_block_reduce(
        &mut self,
        w: usize,
        r: Reducer,
        dst: Slot,
        at: LocId,
    ) -> Result<(), Fault> {
        if let Some(wi) = self.waves.iter().position(|x| x.done) {
            return Err(Fault {
                at,
                thread: None,
                message: format!(
                    "wave {wi} has exited, so its part of this block reduction is never written; every thread of the block must reach it"
                ),
            });
        }
        let total = self.waves[1..]
            .iter()
            .fold(self.waves[0].partial, |acc, x| (r.apply)(acc, x.partial));
        for wave in &mut self.waves {
            wave.regs[dst as usize * w..][..w].fill(total);
        }
        Ok(())
    }

    fn run_wave(&mut self, l: &Launch, wi: usize) -> Result<Step, Fault> {
        let code = l.code;
        let w = code.wave as usize;
        let full = full_mask(w);
        let wave = &mut self.waves[wi];
        let regs = &mut wave.regs[..];
        let masks = &mut wave.masks[..];
        let mut pc = wave.pc;
        let mut exec = wave.exec;
        let fault = |at: LocId, lane: usize, message: String| Fault {
            at,
            thread: Some((wi * w + lane) as u32),
            message,
        };
        let cond_mask = |regs: &[u64], c: Slot| {
            regs[c as usize * w..][..w]
                .iter()
                .enumerate()
                .fold(0u64, |m, (i, &v)| m | ((v != 0) as u64) << i)
        };
        loop {
            let op = code.ops[pc];
            pc += 1;
            match op {
                Op::Bin { f, dst, a, b } => {
                    let (d, r) = split(regs, w, dst);
                    f(d, r.get(a), r.get(b));
                }
                Op::Un { f, dst, a } => {
                    let (d, r) = split(regs, w, dst);
                    f(d, r.get(a));
                }
                Op::Tern { f, dst, a, b, c } => {
                    let (d, r) = split(regs, w, dst);
                    f(d, r.get(a), r.get(b), r.get(c));
                }
                Op::Checked {
                    f,
                    ty,
                    dst,
                    a,
                    b,
                    at,
                } => {
                    let (d, r) = split(regs, w, dst);
                    if let Err((lane, why)) = f(d, r.get(a), r.get(b), exec) {
                        return Err(fault(at, lane as usize, why.message(ty)));
                    }
                }
                Op::Copy { dst, src, n } => {
                    // Copy in the direction that survives overlapping ranges.
                    if dst < src {
                        for c in 0..n {
                            copy_slot(regs, w, dst + c, src + c, exec);
                        }
                    } else {
                        for c in (0..n).rev() {
                            copy_slot(regs, w, dst + c, src + c, exec);
                        }
                    }
                }
                Op::Splat { dst, src, n } => {
                    for c in 0..n {
                        copy_slot(regs, w, dst + c, src, exec);
                    }
                }
                Op::Blend { dst, cond, a, b, n } => {
                    let m = cond_mask(regs, cond);
                    for c in 0..n {
                        copy_slot(regs, w, dst + c, b + c, full);
                        copy_slot(regs, w, dst + c, a + c, m);
                    }
                }
                Op::Repack { dst, src, from, to } => {
                    let (fs, ts) = (from.0.size() as usize, to.0.size() as usize);
                    for lane in 0..w {
                        let mut bytes = [0u8; 16];
                        for c in 0..from.1 as usize {
                            let v = regs[(src as usize + c) * w + lane];
                            bytes[c * fs..][..fs].copy_from_slice(&v.to_le_bytes()[..fs]);
                        }
                        for c in 0..to.1 as usize {
                            regs[(dst as usize + c) * w + lane] = le(&bytes[c * ts..][..ts]);
                        }
                    }
                }
                Op::Load {
                    acc,
                    dst,
                    index,
                    at,
                } => {
                    let region = Region::new(l, acc);
                    let bytes = acc.bytes();
                    let unpack = unpacker(acc.elem.size() as usize);
                    for lane in lanes(exec) {
                        let ix = regs[index as usize * w + lane];
                        let off = region
                            .offset(l, acc, ix, AccessKind::Load)
                            .map_err(|m| fault(at, lane, m))?;
                        let mut buf = [0u8; 16];
                        match region.global {
                            Some(memory) => memory.load(off, &mut buf[..bytes]),
                            None => {
                                if self.written[off..off + bytes].contains(&false) {
                                    let overlaps =
                                        |&(c, n): &(usize, usize)| off < c + n && c < off + bytes;
                                    let copying = wave.copying.as_ref().is_some_and(overlaps);
                                    let vector_copy = wave.open_copies.iter().any(overlaps)
                                        || wave.copy_groups.iter().flatten().any(overlaps);
                                    let message = if copying {
                                        format!(
                                            "read of {} while this wave's `copy_async` into it is in flight; `wait_async()` first",
                                            place_name(l, acc, ix, None)
                                        )
                                    } else if vector_copy {
                                        format!(
                                            "read of {} while this wave's `copy_vec_async` into it is in flight; `commit_copies()` and `wait_copies(n)` first",
                                            place_name(l, acc, ix, None)
                                        )
                                    } else {
                                        uninitialised(l, acc, ix)
                                    };
                                    return Err(fault(at, lane, message));
                                }
                                buf[..bytes].copy_from_slice(&self.shared[off..off + bytes]);
                            }
                        }
                        unpack(&buf, regs, acc.lanes as usize, dst as usize, w, lane);
                    }
                }
                Op::Store {
                    acc,
                    src,
                    index,
                    at,
                } => {
                    let region = Region::new(l, acc);
                    let (es, bytes) = (acc.elem.size() as usize, acc.bytes());
                    let trap = l.trap_non_finite && acc.elem.is_float() && region.global.is_some();
                    for lane in lanes(exec) {
                        let ix = regs[index as usize * w + lane];
                        let off = region
                            .offset(l, acc, ix, AccessKind::Store)
                            .map_err(|m| fault(at, lane, m))?;
                        let mut buf = [0u8; 16];
                        for c in 0..acc.lanes as usize {
                            let v = regs[(src as usize + c) * w + lane];
                            if trap && !value::float_value(v, acc.elem).is_finite() {
                                return Err(fault(
                                    at,
                                    lane,
                                    format!(
                                        "stored the non-finite value {} to {}",
                                        value::float_value(v, acc.elem),
                                        place_name(l, acc, ix, Some(c))
                                    ),
                                ));
                            }
                            buf[c * es..][..es].copy_from_slice(&v.to_le_bytes()[..es]);
                        }
                        match region.global {
                            Some(memory) => memory.store(off, &buf[..bytes]),
                            None => {
                                self.shared[off..off + bytes].copy_from_slice(&buf[..bytes]);
                                self.written[off..off + bytes].fill(true);
                            }
                        }
                    }
                }
                Op::Atomic {
                    acc,
                    f,
                    dst,
                    index,
                    value,
                    at,
                } => {
                    let region = Region::new(l, acc);
                    let es = acc.bytes();
                    let trap = l.trap_non_finite && acc.elem.is_float() && region.global.is_some();
                    for lane in lanes(exec) {
                        let ix = regs[index as usize * w + lane];
                        let v = regs[value as usize * w + lane];
                        let off = region
                            .offset(l, acc, ix, AccessKind::Atomic)
                            .map_err(|m| fault(at, lane, m))?;
                        let old = match region.global {
                            Some(memory) => {
                                let _guard = atomic_lock(memory, off);
                                let mut buf = [0u8; 8];
                                memory.load(off, &mut buf[..es]);
                                let old = le(&buf[..es]);
                                let new = f(old, v);
                                if trap && !value::float_value(new, acc.elem).is_finite() {
                                    return Err(fault(
                                        at,
                                        lane,
                                        format!(
                                            "an atomic stored the non-finite value {} to {}",
                                            value::float_value(new, acc.elem),
                                            place_name(l, acc, ix, None)
                                        ),
                                    ));
                                }
                                memory.store(off, &new.to_le_bytes()[..es]);
                                old
                            }
                            None => {
                                if self.written[off..off + es].contains(&false) {
                                    return Err(fault(at, lane, uninitialised(l, acc, ix)));
                                }
                                let old = le(&self.shared[off..off + es]);
                                self.shared[off..off + es]
                                    .copy_from_slice(&f(old, v).to_le_bytes()[..es]);
                                old
                            }
                        };
                        regs[dst as usize * w + lane] = old;
                    }
                }
                Op::Shfl {
                    xor,
                    dst,
                    v,
                    lane: src_slot,
                    at,
                } => {
                    let name = if xor { "shfl_xor" } else { "shfl" };
                    for lane in lanes(exec) {
                        let arg = regs[src_slot as usize * w + lane] as u32 as usize;
                        let src = if xor { lane ^ arg } else { arg };
                        if src >= w {
                            return Err(fault(
                                at,
                                lane,
                                format!("{name} reads lane {src}, outside the {w}-lane wave"),
                            ));
                        }
                        if exec >> src & 1 == 0 {
                            return Err(fault(at, lane, format!(
                                "{name} reads lane {src}, which is inactive here (its value is undefined on a GPU)"
                            )));
                        }
                        regs[dst as usize * w + lane] = regs[v as usize * w + src];
                    }
                }
                Op::Ballot { dst, p } => {
                    let bits = cond_mask(regs, p) & exec;
                    regs[dst as usize * w..][..w].fill(bits);
                }
                Op::WaveReduce { r, dst, v } => {
                    let (d, rr) = split(regs, w, dst);
                    wave_reduce(r, rr.get(v), d, exec, full);
                }
                Op::BlockReduce { r, dst, v, at } => {
                    check_converged(masks, code, exec, full)
                        .map_err(|lane| fault(at, lane, "block reduction reached under divergent control flow (not every live thread of the wave is here)".into()))?;
                    if exec & 1 == 0 {
                        return Err(fault(at, 0, "block reduction with lane 0 of the wave inactive: lane 0 writes the wave's partial result".into()));
                    }
                    let (d, rr) = split(regs, w, dst);
                    wave_reduce(r, rr.get(v), d, exec, full);
                    wave.partial = d[0];
                    wave.pc = pc;
                    wave.exec = exec;
                    return Ok(Step::Sync(pc as Pc - 1));
                }
                Op::CopyAsync {
                    dst,
                    src,
                    to,
                    from,
                    count,
                    at,
                } => {
                    check_converged(masks, code, exec, full)
                        .map_err(|lane| fault(at, lane, "`copy_async` reached under divergent control flow: the whole wave issues it".into()))?;
                    let first = exec.trailing_zeros() as usize;
                    let mut operands = [0u64; 3];
                    for (v, slot) in operands.iter_mut().zip([to, from, count]) {
                        let lane_values = &regs[slot as usize * w..][..w];
                        *v = lane_values[first];
                        if let Some(lane) = lanes(exec).find(|&l| lane_values[l] != *v) {
                            return Err(fault(at, lane, "`copy_async` operands differ across the wave; every lane passes the same".into()));
                        }
                    }
                    let [to, from, count] = operands;
                    if wave.copying.is_some() {
                        return Err(fault(at, first, "a second `copy_async` before `wait_async`: a wave has one copy in flight at a time".into()));
                    }
                    let (d, sr) = (Region::new(l, dst), Region::new(l, src));
                    // The first vector's offset, once both ends are checked.
                    let span = |r: &Region, start: u64, acc, kind| {
                        if count > 0 {
                            r.offset(l, acc, start + count - 1, kind)?;
                        }
                        r.offset(l, acc, start, kind)
                    };
                    let bytes = count as usize * 16;
                    if bytes > 0 {
                        let d_off = span(&d, to, dst, AccessKind::Store)
                            .map_err(|m| fault(at, first, m))?;
                        let s_off = span(&sr, from, src, AccessKind::Load)
                            .map_err(|m| fault(at, first, m))?;
                        let memory = sr.global.expect("validated: copies read a buffer");
                        memory.load(s_off, &mut self.shared[d_off..d_off + bytes]);
                        // Undefined until the wait: a read before it is caught as uninitialised.
                        self.written[d_off..d_off + bytes].fill(false);
                        wave.copying = Some((d_off, bytes));
                    } else {
                        wave.copying = Some((0, 0));
                    }
                }
                Op::WaitAsync => {
                    if let Some((off, bytes)) = wave.copying.take() {
                        self.written[off..off + bytes].fill(true);
                    }
                }
                Op::CopyVecAsync {
                    dst,
                    src,
                    to,
                    from,
                    at,
                } => {
                    let (d, sr) = (Region::new(l, dst), Region::new(l, src));
                    for lane in lanes(exec) {
                        let t = regs[to as usize * w + lane];
                        let f = regs[from as usize * w + lane];
                        let d_off = d
                            .offset(l, dst, t, AccessKind::Store)
                            .map_err(|m| fault(at, lane, m))?;
                        let s_off = sr
                            .offset(l, src, f, AccessKind::Load)
                            .map_err(|m| fault(at, lane, m))?;
                        let memory = sr.global.expect("validated: vector copies read a buffer");
                        memory.load(s_off, &mut self.shared[d_off..d_off + 16]);
                        self.written[d_off..d_off + 16].fill(false);
                        wave.open_copies.push((d_off, 16));
                    }
                }
                Op::CommitCopies => {
                    let group = std::mem::take(&mut wave.open_copies);
                    wave.copy_groups.push_back(group);
                }
                Op::WaitCopies(n) => {
                    while wave.copy_groups.len() > n as usize {
                        for (off, bytes) in wave.copy_groups.pop_front().expect("a group") {
                            self.written[off..off + bytes].fill(true);
                        }
                    }
                }
                Op::FragLoad {
                    acc,
                    frag,
                    trans,
                    dst,
                    offset,
                    ld,
                    at,
                } => {
                    let name = match (frag.role, trans) {
                        (greta_codegen::FragRole::A, _) => "load_a",
                        (_, false) => "load_b",
                        (_, true) => "load_b_trans",
                    };
                    let (offset, ld) = frag_operands(regs, w, exec, full, offset, ld, acc, name)
                        .map_err(|(lane, m)| fault(at, lane, m))?;
                    let region = Region::new(l, acc);
                    let positions = super::mma::positions(frag, w as u32);
                    let es = acc.bytes();
                    for lane in 0..w {
                        for i in 0..positions.len() / w {
                            let (r, c) = positions[i * w + lane];
                            let (r, c) = (r as u64, c as u64);
                            let ix =
                                offset.wrapping_add(if trans { c * ld + r } else { r * ld + c });
                            let off = region
                                .offset(l, acc, ix, AccessKind::Load)
                                .map_err(|m| fault(at, lane, m))?;
                            if self.written[off..off + es].contains(&false) {
                                return Err(fault(at, lane, uninitialised(l, acc, ix)));
                            }
                            regs[(dst as usize + i) * w + lane] = le(&self.shared[off..off + es]);
                        }
                    }
                }
                Op::FragStore {
                    acc,
                    frag,
                    src,
                    offset,
                    ld,
                    at,
                } => {
                    let (offset, ld) =
                        frag_operands(regs, w, exec, full, offset, ld, acc, "store_frag")
                            .map_err(|(lane, m)| fault(at, lane, m))?;
                    let region = Region::new(l, acc);
                    let positions = super::mma::positions(frag, w as u32);
                    let es = acc.bytes();
                    let trap = l.trap_non_finite && acc.elem.is_float() && region.global.is_some();
                    for lane in 0..w {
                        for i in 0..positions.len() / w {
                            let (r, c) = positions[i * w + lane];
                            let ix = offset.wrapping_add(r as u64 * ld + c as u64);
                            let off = region
                                .offset(l, acc, ix, AccessKind::Store)
                                .map_err(|m| fault(at, lane, m))?;
                            let v = regs[(src as usize + i) * w + lane];
                            if trap && !value::float_value(v, acc.elem).is_finite() {
                                return Err(fault(
                                    at,
                                    lane,
                                    format!(
                                        "stored the non-finite value {} to {}",
                                        value::float_value(v, acc.elem),
                                        place_name(l, acc, ix, None)
                                    ),
                                ));
                            }
                            let bytes = &v.to_le_bytes()[..es];
                            match region.global {
                                Some(memory) => memory.store(off, bytes),
                                None => {
                                    self.shared[off..off + es].copy_from_slice(bytes);
                                    self.written[off..off + es].fill(true);
                                }
                            }
                        }
                    }
                }
                Op::Mma {
                    input,
                    dst,
                    a,
                    b,
                    c,
                    at,
                } => {
                    if exec != full {
                        let lane = (!exec & full).trailing_zeros() as usize;
                        return Err(fault(at, lane, "`mma` needs the whole wave: this lane is inactive here (matrix instructions read every lane's registers)".into()));
                    }
                    super::mma::run(input, w as u32, regs, dst, a, b, c);
                }
                Op::Barrier { at } => {
                    check_converged(masks, code, exec, full)
                        .map_err(|lane| fault(at, lane, "barrier reached under divergent control flow: this thread is live but not here (a GPU would hang or race)".into()))?;
                    wave.pc = pc;
                    wave.exec = exec;
                    return Ok(Step::Sync(pc as Pc - 1));
                }
                Op::If {
                    cond,
                    negate,
                    m,
                    to,
                } => {
                    let mut c = cond_mask(regs, cond);
                    if negate {
                        c = !c;
                    }
                    masks[m as usize] = exec & !c;
                    exec &= c;
                    if exec == 0 {
                        pc = to as usize;
                    }
                }
                Op::Else { m, to } => {
                    std::mem::swap(&mut exec, &mut masks[m as usize]);
                    if exec == 0 {
                        pc = to as usize;
                    }
                }
                Op::Join { m, skip } => {
                    exec |= masks[m as usize];
                    if exec == 0 {
                        pc = skip as usize;
                    }
                }
                Op::ClearMasks { m, n } => masks[m as usize..][..n as usize].fill(0),
                Op::LoopTest { cond, m, exit } => {
                    let c = cond_mask(regs, cond);
                    masks[m as usize] |= exec & !c;
                    exec &= c;
                    if exec == 0 {
                        pc = exit as usize;
                    }
                }
                Op::LoopCont { m, exit } => {
                    exec |= masks[m as usize + 1];
                    masks[m as usize + 1] = 0;
                    if exec == 0 {
                        pc = exit as usize;
                    }
                }
                Op::Jump { to } => pc = to as usize,
                Op::Leave { m, to } => {
                    masks[m as usize] |= exec;
                    exec = 0;
                    pc = to as usize;
                }
                Op::End => return Ok(Step::Done),
            }
        }
    }
}

/// Checks that every live (not returned) lane of the wave is active; returns the first
/// live lane that is not.
fn check_converged(masks: &[u64], code: &Code, exec: u64, full: u64) -> Result<(), usize> {
    let live = full & !masks[code.exited as usize];
    match live & !exec {
        0 => Ok(()),
        missing => Err(missing.trailing_zeros() as usize),
    }
}

/// `greta_wave_reduce`: a butterfly when the whole wave is active, otherwise the active
/// lanes combined in ascending order.
fn wave_reduce(r: Reducer, v: &[u64], out: &mut [u64], exec: u64, full: u64) {
    let w = v.len();
    if exec == full {
        let mut cur = [0u64; 64];
        cur[..w].copy_from_slice(v);
        let mut o = w / 2;
        while o > 0 {
            let prev = cur;
            for lane in 0..w {
                cur[lane] = (r.apply)(prev[lane], prev[lane ^ o]);
            }
            o /= 2;
        }
        out.copy_from_slice(&cur[..w]);
    } else {
        let acc = lanes(exec).fold(r.identity, |acc, lane| (r.apply)(acc, v[lane]));
        out.fill(acc);
    }
}

/// The pc's source position for a sync point.
fn sync_loc(code: &Code, pc: Pc) -> LocId {
    match code.ops[pc as usize] {
        Op::Barrier { at } | Op::BlockReduce { at, .. } => at,
        _ => unreachable!("waves only wait at barriers and block reductions"),
    }
}

/// `` `name`[index] ``, with the element for vector accesses.
fn place_name(l: &Launch, acc: Access, ix: u64, component: Option<usize>) -> String {
    let name = match acc.mem {
        Mem::Global(p) => format!("`{}`", l.kernel.params[p as usize].name),
        Mem::Shared(s) => format!("shared `{}`", l.kernel.shared[s as usize].name),
    };
    let i = value::int_value(ix, acc.index);
    match (acc.lanes, component) {
        (1, _) => format!("{name}[{i}]"),
        (n, Some(c)) => format!(
            "{name}[{}] (lane {c} of the {}x{n} at index {i})",
            i * n as i128 + c as i128,
            acc.elem
        ),
        (n, None) => format!("{name}[{i}] (as {}x{n})", acc.elem),
    }
}

fn uninitialised(l: &Launch, acc: Access, ix: u64) -> String {
    format!(
        "read of {} before any thread wrote it (shared memory starts undefined)",
        place_name(l, acc, ix, None)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use greta_codegen::ir::ReduceOp;
    use greta_codegen::Scalar;

    /// Values whose f32 sum depends on the order of additions.
    fn order_sensitive(w: usize) -> Vec<u64> {
        (0..w)
            .map(|i| {
                let x: f32 = if i % 3 == 0 { 1e8 } else { 1.0 + i as f32 };
                (if i % 2 == 0 { x } else { -x }).to_bits() as u64
            })
            .collect()
    }

    #[test]
    fn wave_reduce_follows_the_gpu_helper_order() {
        let r = value::reducer(ReduceOp::Sum, Scalar::F32).unwrap();
        for w in [32usize, 64] {
            let v = order_sensitive(w);
            let f = |b: u64| f32::from_bits(b as u32);
            let full = full_mask(w);
            let mut out = vec![0u64; w];
            wave_reduce(r, &v, &mut out, full, full);
            let mut cur: Vec<f32> = v.iter().map(|&b| f(b)).collect();
            let mut o = w / 2;
            while o > 0 {
                cur = (0..w).map(|l| cur[l] + cur[l ^ o]).collect();
                o /= 2;
            }
            for l in 0..w {
                assert_eq!(f(out[l]).to_bits(), cur[l].to_bits(), "butterfly, wave {w}");
            }
            let exec = full & !0b1010_0110;
            wave_reduce(r, &v, &mut out, exec, full);
            let ascending = lanes(exec).fold(0.0f32, |acc, l| acc + f(v[l]));
            assert!(out.iter().all(|&b| f(b).to_bits() == ascending.to_bits()));
            let butterfly_order_matters = lanes(full).fold(0.0f32, |acc, l| acc + f(v[l]));
            assert_ne!(butterfly_order_matters.to_bits(), cur[0].to_bits());
        }
    }

    #[test]
    fn convergence_ignores_returned_lanes_only() {
        let code = Code {
            ops: Vec::new(),
            locs: Vec::new(),
            files: Vec::new(),
            inits: Vec::new(),
            slots: 0,
            masks: 1,
            exited: 0,
            wave: 32,
        };
        let full = full_mask(32);
        assert_eq!(check_converged(&[0], &code, full, full), Ok(()));
        assert_eq!(
            check_converged(&[0b1111], &code, full & !0b1111, full),
            Ok(())
        );
        assert_eq!(
            check_converged(&[0b1111], &code, full & !0b11111, full),
            Err(4)
        );
        assert_eq!(check_converged(&[0], &code, 0b1, full), Err(1));
    }
}
