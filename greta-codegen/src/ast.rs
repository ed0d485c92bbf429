//! The surface syntax of a kernel as the `#[greta::kernel]` macro hands it over: a small
//! mirror of the Rust subset the DSL accepts, untyped, with a source position on every node.
//! It is serialised into the user's crate and lowered to typed IR when a kernel is
//! specialised.

use crate::diag::Span;
use crate::ops::{BinOp, UnOp};
use serde::{Deserialize, Serialize};

/// A kernel or device function definition.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FnAst {
    pub name: String,
    /// The DSL source file, filled in by the expanded code (`file!()`).
    #[serde(default)]
    pub file: String,
    pub kind: FnKind,
    /// Targets named in the attribute, checked at compile time (e.g. block size vs wave).
    pub targets: Vec<(String, Span)>,
    pub generics: Vec<GenericAst>,
    pub params: Vec<ParamAst>,
    pub ret: Option<TypeAst>,
    pub body: BlockAst,
    pub span: Span,
    /// Values of the host constants the body names, filled in by the expanded code.
    #[serde(skip)]
    pub externs: Vec<(String, ExternConst)>,
}

/// The value of a host `const` item a kernel refers to by name.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ExternConst {
    Int(crate::types::Scalar, i128),
    Float(f64),
    Bool(bool),
}

/// Host types whose `const` items kernels may use.
pub trait ExternValue: Copy {
    /// The value as a kernel constant.
    fn extern_const(self) -> ExternConst;
}

macro_rules! extern_ints {
    ($($t:ty => $s:ident),*) => {
        $(impl ExternValue for $t {
            fn extern_const(self) -> ExternConst {
                ExternConst::Int(crate::types::Scalar::$s, self as i128)
            }
        })*
    };
}
extern_ints!(u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32, u64 => U64, i64 => I64);

impl ExternValue for f32 {
    fn extern_const(self) -> ExternConst {
        ExternConst::Float(self as f64)
    }
}

impl ExternValue for bool {
    fn extern_const(self) -> ExternConst {
        ExternConst::Bool(self)
    }
}

/// True for names written like constants (`SCREAMING_CASE`): an unresolved one in a
/// kernel refers to a host `const` item.
pub fn is_constant_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Kernel entry point or device helper.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum FnKind {
    /// A `__global__` kernel; `block` is the threads per block expression, `min_waves` the
    /// waves per SIMD the compiler must leave room for (`#[kernel(min_waves = 4)]`).
    Kernel {
        block: Option<ExprAst>,
        #[serde(default)]
        min_waves: Option<u32>,
    },
    /// A `__device__` helper callable from kernels.
    Device,
}

/// A generic parameter: a compile-time constant or an element type.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum GenericAst {
    Const {
        name: String,
        ty: String,
        span: Span,
    },
    Type {
        name: String,
        span: Span,
    },
}

impl GenericAst {
    /// The parameter's name.
    pub fn name(&self) -> &str {
        match self {
            GenericAst::Const { name, .. } | GenericAst::Type { name, .. } => name,
        }
    }
}

/// A function parameter.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ParamAst {
    pub name: String,
    pub ty: TypeAst,
    pub span: Span,
}

/// A type as written.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum TypeAst {
    /// `f32`, `u32x4`, `T`.
    Path { name: String, span: Span },
    /// `&[T]` or `&mut [T]`.
    Slice {
        elem: Box<TypeAst>,
        mutable: bool,
        span: Span,
    },
    /// `[T; N]`.
    Array {
        elem: Box<TypeAst>,
        len: Box<ExprAst>,
        span: Span,
    },
}

impl TypeAst {
    /// Where the type was written.
    pub fn span(&self) -> Span {
        match self {
            TypeAst::Path { span, .. }
            | TypeAst::Slice { span, .. }
            | TypeAst::Array { span, .. } => *span,
        }
    }
}

/// A `{ ... }` block; `tail` is a final expression without semicolon.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BlockAst {
    pub stmts: Vec<StmtAst>,
    pub tail: Option<Box<ExprAst>>,
    pub span: Span,
}

/// A statement.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum StmtAst {
    Let {
        name: String,
        mutable: bool,
        ty: Option<TypeAst>,
        init: Option<ExprAst>,
        span: Span,
    },
    /// `const NAME: T = value;`: a compile-time constant of the kernel, written once and
    /// named wherever it is used (and in the generated source).
    Const {
        name: String,
        ty: TypeAst,
        value: ExprAst,
        span: Span,
    },
    Expr(ExprAst),
}

/// An expression with its position.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExprAst {
    pub kind: ExprKindAst,
    pub span: Span,
}

/// A generic argument at a call site (`load_vec::<4>(..)`, `bitcast::<f16x8>(..)`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum GenericArgAst {
    Type(TypeAst),
    Const(ExprAst),
}

/// Expression forms.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ExprKindAst {
    Int {
        value: u64,
        suffix: Option<String>,
    },
    Float {
        value: f64,
        suffix: Option<String>,
    },
    Bool(bool),
    /// A name or path: `x`, `WAVE`, `f32::INFINITY`.
    Path(Vec<String>),
    Unary {
        op: UnOp,
        expr: Box<ExprAst>,
    },
    Binary {
        op: BinOp,
        lhs: Box<ExprAst>,
        rhs: Box<ExprAst>,
    },
    Assign {
        target: Box<ExprAst>,
        value: Box<ExprAst>,
    },
    CompoundAssign {
        op: BinOp,
        target: Box<ExprAst>,
        value: Box<ExprAst>,
    },
    Cast {
        expr: Box<ExprAst>,
        ty: TypeAst,
    },
    Index {
        base: Box<ExprAst>,
        index: Box<ExprAst>,
    },
    Call {
        path: Vec<String>,
        generics: Vec<GenericArgAst>,
        args: Vec<ExprAst>,
    },
    MethodCall {
        recv: Box<ExprAst>,
        method: String,
        method_span: Span,
        generics: Vec<GenericArgAst>,
        args: Vec<ExprAst>,
    },
    If {
        cond: Box<ExprAst>,
        then: BlockAst,
        els: Option<Box<ExprAst>>,
    },
    Block(BlockAst),
    For {
        var: String,
        var_span: Span,
        start: Box<ExprAst>,
        end: Box<ExprAst>,
        inclusive: bool,
        step: Option<Box<ExprAst>>,
        body: BlockAst,
    },
    While {
        cond: Box<ExprAst>,
        body: BlockAst,
    },
    Loop {
        body: BlockAst,
    },
    Break,
    Continue,
    Return(Option<Box<ExprAst>>),
    /// `[value; len]`.
    ArrayRepeat {
        value: Box<ExprAst>,
        len: Box<ExprAst>,
    },
    /// `[a, b, c]`.
    ArrayList(Vec<ExprAst>),
    /// `shared!([T; N])`: a block-shared array.
    Shared {
        elem: TypeAst,
        len: Box<ExprAst>,
    },
}

/// Serialises a function for embedding in generated Rust code.
pub fn to_json(f: &FnAst) -> String {
    serde_json::to_string(f).expect("the AST contains only serialisable data")
}

/// Reads a function embedded by the macro.
pub fn from_json(s: &str) -> Result<FnAst, serde_json::Error> {
    serde_json::from_str(s)
}
