//! The compiled form of a kernel: a flat list of operations over numbered value slots
//! (each slot holds one scalar per lane of a wave) and mask registers (one bit per lane).
//! Structured control flow becomes explicit exec-mask manipulation, as on a GPU.

use super::value::{BinFn, CheckedFn, CombineFn, Reducer, TernFn, UnFn};
use greta_codegen::{Frag, Scalar};

/// A value slot.
pub type Slot = u32;
/// A mask register.
pub type MaskReg = u32;
/// An index into [`Code::ops`].
pub type Pc = u32;
/// An index into [`Code::locs`].
pub type LocId = u32;

/// Where an operation came from in the DSL source.
#[derive(Clone, Copy, Debug)]
pub struct Loc {
    /// Index into [`Code::files`].
    pub file: u32,
    pub line: u32,
}

/// A memory object an access addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mem {
    /// The kernel's buffer parameter with this index.
    Global(u32),
    /// The kernel's shared array with this index.
    Shared(u32),
}

/// The shape of a memory access: `lanes` consecutive elements of scalar type `elem`,
/// addressed by an index of type `index` in units of the whole access.
#[derive(Clone, Copy, Debug)]
pub struct Access {
    pub mem: Mem,
    pub elem: Scalar,
    pub lanes: u8,
    pub index: Scalar,
}

impl Access {
    /// Bytes of one access.
    pub fn bytes(&self) -> usize {
        self.elem.size() as usize * self.lanes as usize
    }
}

/// A value a slot holds from the start of a wave.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Init {
    /// The same bits in every lane.
    Bits(u64),
    /// A scalar kernel argument.
    Param(u32),
    ThreadIdx,
    LaneId,
    WaveId,
    /// Block index along an axis (0, 1, 2).
    BlockIdx(u8),
    /// Grid size along an axis.
    GridDim(u8),
}

/// One operation. Pure operations compute every lane (inactive lanes hold values nobody
/// reads); operations with effects or failure modes run on the active lanes only.
#[derive(Clone, Copy, Debug)]
pub enum Op {
    Bin {
        f: BinFn,
        dst: Slot,
        a: Slot,
        b: Slot,
    },
    Un {
        f: UnFn,
        dst: Slot,
        a: Slot,
    },
    Tern {
        f: TernFn,
        dst: Slot,
        a: Slot,
        b: Slot,
        c: Slot,
    },
    /// Integer division, remainder and shifts: active lanes only, may fail.
    Checked {
        f: CheckedFn,
        ty: Scalar,
        dst: Slot,
        a: Slot,
        b: Slot,
        at: LocId,
    },
    /// Copies `n` slots on the active lanes.
    Copy {
        dst: Slot,
        src: Slot,
        n: u32,
    },
    /// Copies one slot into `n` slots on the active lanes.
    Splat {
        dst: Slot,
        src: Slot,
        n: u32,
    },
    /// `dst = cond ? a : b` over `n` slots, every lane.
    Blend {
        dst: Slot,
        cond: Slot,
        a: Slot,
        b: Slot,
        n: u32,
    },
    /// Reinterprets the bytes of `from` (component type, count) as `to`, lane by lane.
    Repack {
        dst: Slot,
        src: Slot,
        from: (Scalar, u8),
        to: (Scalar, u8),
    },
    Load {
        acc: Access,
        dst: Slot,
        index: Slot,
        at: LocId,
    },
    Store {
        acc: Access,
        src: Slot,
        index: Slot,
        at: LocId,
    },
    /// The wave's asynchronous copy of `count` 16-byte vectors from `src` at vector `from`
    /// into `dst` at vector `to` (wave-uniform operands); the bytes count as unwritten
    /// until the wave's `WaitAsync`.
    CopyAsync {
        dst: Access,
        src: Access,
        to: Slot,
        from: Slot,
        count: Slot,
        at: LocId,
    },
    /// Completes the wave's copy in flight.
    WaitAsync,
    /// Each active lane's asynchronous copy of vector `from` of `src` into vector `to` of
    /// `dst`: done at once, but the bytes stay unreadable until a `WaitCopies` retires the
    /// group the copy joins.
    CopyVecAsync {
        dst: Access,
        src: Access,
        to: Slot,
        from: Slot,
        at: LocId,
    },
    /// Closes the wave's open group of vector copies.
    CommitCopies,
    /// Retires the wave's oldest groups until at most this many remain in flight.
    WaitCopies(u32),
    /// The wave loads fragment `frag` from shared memory: each lane's element `i` from
    /// `offset + row * ld + col` (for a transposed B, `offset + col * ld + row`) at the
    /// position the layout gives it; wave-uniform operands, rows 16-byte aligned.
    FragLoad {
        acc: Access,
        frag: Frag,
        trans: bool,
        dst: Slot,
        offset: Slot,
        ld: Slot,
        at: LocId,
    },
    /// The wave stores fragment `frag` as a tile at `offset` with rows `ld` apart.
    FragStore {
        acc: Access,
        frag: Frag,
        src: Slot,
        offset: Slot,
        ld: Slot,
        at: LocId,
    },
    /// The whole wave's matrix product `c + a · bᵀ` of fragments of `input` elements.
    Mma {
        input: Scalar,
        dst: Slot,
        a: Slot,
        b: Slot,
        c: Slot,
        at: LocId,
    },
    Atomic {
        acc: Access,
        f: CombineFn,
        dst: Slot,
        index: Slot,
        value: Slot,
        at: LocId,
    },
    Shfl {
        xor: bool,
        dst: Slot,
        v: Slot,
        lane: Slot,
        at: LocId,
    },
    Ballot {
        dst: Slot,
        p: Slot,
    },
    WaveReduce {
        r: Reducer,
        dst: Slot,
        v: Slot,
    },
    /// A block-wide reduction: each wave reduces, then all waves meet (like a barrier).
    BlockReduce {
        r: Reducer,
        dst: Slot,
        v: Slot,
        at: LocId,
    },
    Barrier {
        at: LocId,
    },
    /// Starts an `if`: lanes whose `cond` (xor `negate`) is false are parked in `m`; with
    /// no lane left, jumps to `to` (the `Else` or `Join`).
    If {
        cond: Slot,
        negate: bool,
        m: MaskReg,
        to: Pc,
    },
    /// Swaps the lanes finishing the `then` branch with those parked for `else`.
    Else {
        m: MaskReg,
        to: Pc,
    },
    /// Reunites the parked lanes with the active ones; with none left, jumps to `skip`
    /// (the end of the enclosing region).
    Join {
        m: MaskReg,
        skip: Pc,
    },
    /// Clears `n` mask registers from `m`.
    ClearMasks {
        m: MaskReg,
        n: u32,
    },
    /// Loop test: lanes whose `cond` is false leave the loop into `m`; with no lane left,
    /// jumps to `exit`.
    LoopTest {
        cond: Slot,
        m: MaskReg,
        exit: Pc,
    },
    /// End of a loop body: lanes that `continue`d (in `m + 1`) rejoin.
    LoopCont {
        m: MaskReg,
        exit: Pc,
    },
    Jump {
        to: Pc,
    },
    /// `break`, `continue` or `return`: the active lanes move to `m`, then the code jumps
    /// to the end of the innermost region.
    Leave {
        m: MaskReg,
        to: Pc,
    },
    /// The end of the kernel.
    End,
}

/// A kernel compiled for one wave size.
pub struct Code {
    pub ops: Vec<Op>,
    pub locs: Vec<Loc>,
    pub files: Vec<String>,
    /// Slots filled when a wave starts.
    pub inits: Vec<(Slot, Init)>,
    pub slots: u32,
    pub masks: u32,
    /// The mask register of lanes that returned from the kernel.
    pub exited: MaskReg,
    pub wave: u32,
}

impl Code {
    /// The source position of an operation, as `file:line`.
    pub fn place(&self, at: LocId) -> String {
        let loc = self.locs[at as usize];
        format!("{}:{}", self.files[loc.file as usize], loc.line)
    }
}
