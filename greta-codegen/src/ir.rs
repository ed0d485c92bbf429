//! Typed, validated intermediate representation of a specialised kernel: structured control
//! flow, every node typed and carrying its DSL source position. The HIP printer and the CPU
//! interpreter both consume this form.

use crate::diag::Span;
use crate::ops::{BinOp, UnOp};
use crate::types::{Scalar, Type};

/// Index of a local variable within its function.
pub type LocalId = u32;
/// Index of a kernel parameter.
pub type ParamId = u32;
/// Index of a kernel-level shared array.
pub type SharedId = u32;
/// Index of a device function within the kernel's function list.
pub type FuncId = u32;

/// A kernel specialised for one target and one set of compile-time parameters.
#[derive(Clone, Debug)]
pub struct Kernel {
    /// The DSL name (`rmsnorm`).
    pub name: String,
    /// The stable specialised symbol (`rmsnorm__BLOCK256`), used for the C++ entry point.
    pub symbol: String,
    /// The DSL source file the kernel came from (for `#line` and error messages).
    pub file: String,
    /// Threads per block.
    pub block: u32,
    /// Waves per SIMD (AMD) or scheduler (NVIDIA) that must fit at once: the compiler keeps
    /// register use low enough for it. `None` leaves occupancy to the compiler.
    pub min_waves: Option<u32>,
    /// Named compile-time constants the body refers to (`BLOCK`, const generics).
    pub consts: Vec<NamedConst>,
    pub params: Vec<Param>,
    pub shared: Vec<SharedArray>,
    /// Device functions called (transitively), callees before callers.
    pub funcs: Vec<Function>,
    /// The kernel body.
    pub entry: Function,
    /// Where its shared memory goes on the target it was specialised for.
    pub layout: SharedLayout,
}

/// A kernel's shared memory on one target (computed by [`SharedLayout::of`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SharedLayout {
    /// Byte offset of each shared array (as indexed in `Kernel::shared`).
    pub offsets: Vec<u32>,
    /// The arrays' allocation, alignment padding included.
    pub arrays_bytes: u32,
    /// The arrays' own bytes, without padding.
    pub declared_bytes: u32,
    /// The block-reduction helpers' slots: one per wave for each reduction type used.
    pub reduction_bytes: u32,
    /// The waves' completion barriers of asynchronous copies (8 bytes each), or 0.
    pub barrier_bytes: u32,
    /// Bytes the launch requests dynamically: the arrays' allocation when the kernel's
    /// total is beyond the target's static limit (every array then is a view of it), else
    /// 0 (static declarations).
    pub dynamic_bytes: u32,
}

/// A named compile-time constant (specialisation parameter or built-in constant).
#[derive(Clone, Debug, PartialEq)]
pub struct NamedConst {
    pub name: String,
    pub ty: Scalar,
    pub value: i128,
}

/// A kernel parameter.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub name: String,
    pub kind: ParamKind,
    pub span: Span,
}

/// Buffer or by-value scalar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// A global-memory buffer; read-only buffers become `const T* __restrict__`.
    Buffer {
        elem: Scalar,
        mutable: bool,
    },
    Scalar(Scalar),
}

/// A block-shared (LDS) array.
#[derive(Clone, Debug, PartialEq)]
pub struct SharedArray {
    pub name: String,
    pub elem: Type,
    pub len: u32,
    pub span: Span,
}

impl SharedArray {
    /// Bytes of LDS it occupies.
    pub fn bytes(&self) -> u32 {
        self.elem.size().unwrap_or(0) * self.len
    }
}

/// A function body with its locals: the kernel entry or a device function.
#[derive(Clone, Debug)]
pub struct Function {
    pub name: String,
    /// The DSL source file the function was written in.
    pub file: String,
    /// Parameters of a device function (empty for the kernel entry, whose parameters are
    /// kernel parameters).
    pub params: Vec<FnParam>,
    pub ret: Type,
    pub locals: Vec<Local>,
    pub body: Vec<Stmt>,
    pub span: Span,
}

/// A device-function parameter: a value bound to a local, or a memory reference.
#[derive(Clone, Debug, PartialEq)]
pub enum FnParam {
    Value(LocalId),
    Memory {
        name: String,
        elem: Type,
        mutable: bool,
    },
}

/// A local variable.
#[derive(Clone, Debug, PartialEq)]
pub struct Local {
    pub name: String,
    pub ty: Type,
    pub mutable: bool,
}

/// A memory object that loads and stores address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemRef {
    /// A kernel buffer parameter.
    Global(ParamId),
    /// A kernel shared array.
    Shared(SharedId),
    /// The `i`-th memory parameter of the enclosing device function.
    FnArg(u32),
}

/// A statement with its source position.
#[derive(Clone, Debug)]
pub struct Stmt {
    pub kind: StmtKind,
    pub span: Span,
}

/// Statement forms.
#[derive(Clone, Debug)]
pub enum StmtKind {
    /// Declares a local, optionally initialised.
    Let {
        local: LocalId,
        init: Option<Expr>,
    },
    Assign {
        local: LocalId,
        value: Expr,
    },
    /// Writes one element of a register array or one lane of a vector local.
    SetElement {
        local: LocalId,
        index: Expr,
        value: Expr,
    },
    /// Writes `value` at `index` (in units of the value's type: a vector store writes lanes
    /// `index*N .. index*N+N` of the element array).
    Store {
        mem: MemRef,
        index: Expr,
        value: Expr,
    },
    If {
        cond: Expr,
        then: Vec<Stmt>,
        els: Vec<Stmt>,
    },
    /// `for local in (start..end).step_by(step)`; `step` is positive.
    For {
        local: LocalId,
        start: Expr,
        end: Expr,
        step: Expr,
        body: Vec<Stmt>,
        unroll: bool,
    },
    While {
        cond: Expr,
        body: Vec<Stmt>,
    },
    Break,
    Continue,
    Return(Option<Expr>),
    /// Block-wide barrier (`__syncthreads`).
    Barrier,
    /// Device-wide memory fence (`__threadfence`): this thread's earlier writes are
    /// visible to every block before its later ones.
    Fence,
    /// Waits until the launch before this one in the stream has finished and its writes are
    /// visible. A kernel that contains it may be started while that launch still runs
    /// (dependent launch): only what comes before it overlaps the previous kernel, so it
    /// must read nothing that kernel writes and write nothing it reads.
    WaitPriorLaunch,
    /// Lets the next launch in the stream start before this kernel has finished (it still
    /// waits for this one's completion at its own `WaitPriorLaunch`).
    AllowNextLaunch,
    /// The calling wave starts copying `count` 16-byte vectors of buffer `src` from vector
    /// `from` into shared array `dst` at vector `to`, without registers; the bytes are
    /// there after the wave's next `WaitAsync`. Every lane reaches it with the same
    /// values, and a wave has one copy in flight at a time (targets with `bulk_copy`).
    CopyAsync {
        dst: MemRef,
        to: Expr,
        src: MemRef,
        from: Expr,
        count: Expr,
    },
    /// Waits until the calling wave's copy has landed (a wave without one goes on).
    WaitAsync,
    /// The calling lane starts copying 16-byte vector `from` of buffer `src` into vector
    /// `to` of shared array `dst` without holding it in registers (`cp.async` on NVIDIA; a
    /// plain copy on AMD). The copy joins the lane's open group (`CommitCopies`); its bytes
    /// are there after a `WaitCopies` retires the group.
    CopyVecAsync {
        dst: MemRef,
        to: Expr,
        src: MemRef,
        from: Expr,
    },
    /// Closes the lane's open group of vector copies (an empty group counts too).
    CommitCopies,
    /// Waits until at most this many of the lane's committed groups are still in flight.
    WaitCopies(u32),
    /// Writes fragment `value` into `mem` as a tile at element `offset` with rows `ld`
    /// elements apart: each lane its own elements, at the positions of the target's layout.
    FragStore {
        mem: MemRef,
        offset: Expr,
        ld: Expr,
        value: Expr,
    },
    /// A nested scope (one copy of an unrolled loop body, or a branch kept by folding).
    Scope(Vec<Stmt>),
    /// An expression evaluated for its effect (a call or an atomic).
    Eval(Expr),
}

/// A typed expression with its source position.
#[derive(Clone, Debug)]
pub struct Expr {
    pub kind: ExprKind,
    pub ty: Type,
    pub span: Span,
}

/// A literal value; its type is the expression's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Lit {
    Bool(bool),
    Int(i128),
    Float(f64),
}

/// Expression forms.
#[derive(Clone, Debug)]
pub enum ExprKind {
    Lit(Lit),
    /// A named compile-time constant, by index into `Kernel::consts`, or the target's
    /// wavefront size (`WAVE`).
    Const(ConstRef),
    Local(LocalId),
    /// A scalar kernel parameter.
    Param(ParamId),
    Unary {
        op: UnOp,
        arg: Box<Expr>,
    },
    Binary {
        op: BinOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    /// Numeric conversion to the expression's type (round to nearest even for floats).
    Cast(Box<Expr>),
    /// Reinterprets the bits as the expression's type (same size).
    Bitcast(Box<Expr>),
    Select {
        cond: Box<Expr>,
        a: Box<Expr>,
        b: Box<Expr>,
    },
    /// Reads the expression's type at `index` (vector loads index in vector units).
    Load {
        mem: MemRef,
        index: Box<Expr>,
    },
    /// Element of a register array or lane of a vector.
    Element {
        base: Box<Expr>,
        index: Box<Expr>,
    },
    /// Builds a vector or register array from its elements.
    Make(Vec<Expr>),
    /// A register array with every element equal to the operand.
    Splat(Box<Expr>),
    Builtin {
        op: Builtin,
        args: Vec<Expr>,
    },
    /// Atomic read-modify-write; yields the old value.
    Atomic {
        op: AtomicOp,
        mem: MemRef,
        index: Box<Expr>,
        value: Box<Expr>,
    },
    Call {
        func: FuncId,
        args: Vec<CallArg>,
    },
    /// A fragment (the expression's type) read from shared array `mem` as a tile at element
    /// `offset` with rows `ld` elements apart; `trans` reads a B fragment stored with one
    /// row per step of K (element (n, k) at `offset + k * ld + n`). Reached by the whole
    /// wave, with the same operands in every lane.
    FragLoad {
        mem: MemRef,
        offset: Box<Expr>,
        ld: Box<Expr>,
        trans: bool,
    },
}

/// A reference to a compile-time constant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConstRef {
    /// `Kernel::consts[i]`.
    Named(u32),
    /// The target's wavefront size.
    Wave,
    /// 1 where the target has bulk copies (`copy_async`), else 0.
    BulkCopy,
}

/// An argument of a device-function call.
#[derive(Clone, Debug)]
pub enum CallArg {
    Value(Expr),
    Memory(MemRef),
}

/// Grid axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Axis {
    X,
    Y,
    Z,
}

/// Reduction operator of wave- and block-wide reductions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    Sum,
    Max,
    Min,
}

/// Atomic read-modify-write operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AtomicOp {
    Add,
    Max,
}

/// Built-in operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Builtin {
    /// Thread index within the (one-dimensional) block.
    ThreadIdx,
    BlockIdx(Axis),
    GridDim(Axis),
    /// Lane within the wavefront.
    LaneId,
    /// Wavefront index within the block.
    WaveId,
    /// Value of lane `lane ^ mask`.
    ShflXor,
    /// Value of lane `src`.
    Shfl,
    /// Reduction over the active lanes of the wavefront.
    WaveReduce(ReduceOp),
    /// Reduction over every thread of the block (all threads must reach it).
    BlockReduce(ReduceOp),
    /// Bit `i` set when lane `i` is active and its predicate true.
    Ballot,
    Exp,
    Exp2,
    Log,
    Log2,
    Sqrt,
    Rsqrt,
    /// Reciprocal to within a unit in the last place, without a division's exact rounding
    /// (one hardware instruction).
    Rcp,
    Tanh,
    Sin,
    Cos,
    /// sin(pi * x): exact argument reduction, no large-argument slow path.
    SinPi,
    /// cos(pi * x).
    CosPi,
    Fma,
    Min,
    Max,
    Abs,
    Floor,
    IsNan,
    IsFinite,
    /// Dot product of four signed bytes packed in each i32, plus an accumulator.
    Dp4a,
    /// Two f16 packed in each u32 word (low half, high half): `a · b + c` per half, each
    /// rounded once to f16 (one packed instruction).
    Hfma2,
    /// Matrix-core product of fragments `c + a · bᵀ`, by the whole wave.
    Mma,
}

impl Builtin {
    /// True if the operation exchanges data between lanes (it must see the whole wave).
    pub fn is_cross_lane(self) -> bool {
        matches!(
            self,
            Builtin::ShflXor
                | Builtin::Shfl
                | Builtin::WaveReduce(_)
                | Builtin::BlockReduce(_)
                | Builtin::Ballot
                | Builtin::Mma
        )
    }
}

impl Kernel {
    /// The value of a constant reference on `target`.
    pub fn const_value(&self, c: ConstRef, target: &crate::Target) -> i128 {
        match c {
            ConstRef::Named(i) => self.consts[i as usize].value,
            ConstRef::Wave => target.wave as i128,
            ConstRef::BulkCopy => target.bulk_copy as i128,
        }
    }

    /// The function a call refers to.
    pub fn func(&self, id: FuncId) -> &Function {
        &self.funcs[id as usize]
    }
}

impl Expr {
    /// A literal of scalar type `ty`.
    pub fn lit(lit: Lit, ty: Scalar, span: Span) -> Expr {
        Expr {
            kind: ExprKind::Lit(lit),
            ty: Type::Scalar(ty),
            span,
        }
    }

    /// The integer value if this is an integer literal.
    pub fn as_int_lit(&self) -> Option<i128> {
        match self.kind {
            ExprKind::Lit(Lit::Int(v)) => Some(v),
            _ => None,
        }
    }
}

/// Defines a walker calling an expression visitor on every expression of a statement list
/// (each expression tree bottom-up), over `&[Stmt]` or `&mut [Stmt]`.
macro_rules! stmt_walker {
    ($(#[$doc:meta])* $name:ident, $expr:ident, $($m:tt)?) => {
        $(#[$doc])*
        pub fn $name(stmts: & $($m)? [Stmt], f: &mut dyn FnMut(& $($m)? Expr)) {
            for s in stmts {
                match & $($m)? s.kind {
                    StmtKind::Let { init, .. } => {
                        if let Some(e) = init {
                            $expr(e, f)
                        }
                    }
                    StmtKind::Assign { value, .. } | StmtKind::Eval(value) => $expr(value, f),
                    StmtKind::SetElement { index, value, .. } | StmtKind::Store { index, value, .. } => {
                        $expr(index, f);
                        $expr(value, f);
                    }
                    StmtKind::CopyAsync { to, from, count, .. } => {
                        $expr(to, f);
                        $expr(from, f);
                        $expr(count, f);
                    }
                    StmtKind::CopyVecAsync { to, from, .. } => {
                        $expr(to, f);
                        $expr(from, f);
                    }
                    StmtKind::FragStore { offset, ld, value, .. } => {
                        $expr(offset, f);
                        $expr(ld, f);
                        $expr(value, f);
                    }
                    StmtKind::If { cond, then, els } => {
                        $expr(cond, f);
                        $name(then, f);
                        $name(els, f);
                    }
                    StmtKind::For { start, end, step, body, .. } => {
                        $expr(start, f);
                        $expr(end, f);
                        $expr(step, f);
                        $name(body, f);
                    }
                    StmtKind::While { cond, body } => {
                        $expr(cond, f);
                        $name(body, f);
                    }
                    StmtKind::Scope(body) => $name(body, f),
                    StmtKind::Return(Some(e)) => $expr(e, f),
                    StmtKind::Return(None)
                    | StmtKind::Break
                    | StmtKind::Continue
                    | StmtKind::Barrier
                    | StmtKind::Fence
                    | StmtKind::WaitPriorLaunch
                    | StmtKind::AllowNextLaunch
                    | StmtKind::WaitAsync
                    | StmtKind::CommitCopies
                    | StmtKind::WaitCopies(_) => {}
                }
            }
        }
    };
}

stmt_walker!(
    /// Visits every expression of a statement list, mutably.
    walk_stmts_mut, walk_expr_mut, mut
);
stmt_walker!(
    /// Visits every expression of a statement list.
    walk_stmts, walk_expr,
);

/// Defines a bottom-up expression walker over `&Expr` or `&mut Expr`.
macro_rules! expr_walker {
    ($(#[$doc:meta])* $name:ident, $($m:tt)?) => {
        $(#[$doc])*
        pub fn $name(e: & $($m)? Expr, f: &mut dyn FnMut(& $($m)? Expr)) {
            match & $($m)? e.kind {
                ExprKind::Lit(_) | ExprKind::Const(_) | ExprKind::Local(_) | ExprKind::Param(_) => {}
                ExprKind::Unary { arg, .. }
                | ExprKind::Cast(arg)
                | ExprKind::Bitcast(arg)
                | ExprKind::Splat(arg) => $name(arg, f),
                ExprKind::Binary { lhs, rhs, .. } => {
                    $name(lhs, f);
                    $name(rhs, f);
                }
                ExprKind::Select { cond, a, b } => {
                    $name(cond, f);
                    $name(a, f);
                    $name(b, f);
                }
                ExprKind::Load { index, .. } => $name(index, f),
                ExprKind::Element { base, index } => {
                    $name(base, f);
                    $name(index, f);
                }
                ExprKind::Make(items) | ExprKind::Builtin { args: items, .. } => {
                    for x in items {
                        $name(x, f)
                    }
                }
                ExprKind::Atomic { index, value, .. } => {
                    $name(index, f);
                    $name(value, f);
                }
                ExprKind::FragLoad { offset, ld, .. } => {
                    $name(offset, f);
                    $name(ld, f);
                }
                ExprKind::Call { args, .. } => {
                    for a in args {
                        if let CallArg::Value(x) = a {
                            $name(x, f)
                        }
                    }
                }
            }
            f(e)
        }
    };
}

expr_walker!(
    /// Visits an expression tree bottom-up (children before the node), mutably.
    walk_expr_mut, mut
);
expr_walker!(
    /// Visits an expression tree bottom-up (children before the node).
    walk_expr,
);

impl Expr {
    /// True if the expression reads local `l` anywhere.
    pub fn mentions_local(&self, l: LocalId) -> bool {
        let mut found = false;
        walk_expr(self, &mut |x| {
            if matches!(x.kind, ExprKind::Local(y) if y == l) {
                found = true;
            }
        });
        found
    }
}
