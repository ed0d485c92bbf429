//! Printing of IR functions as C++ statements and expressions, with `#line` directives that
//! map each statement back to its DSL source line.

use crate::ir::{
    AtomicOp, Axis, Builtin, CallArg, ConstRef, Expr, ExprKind, FnParam, Function, Kernel, Lit,
    MemRef, ParamKind, ReduceOp, Stmt, StmtKind,
};
use crate::ops::{BinOp, UnOp};
use crate::target::Target;
use crate::types::{Scalar, Type};
use std::collections::{BTreeSet, HashSet};
use std::fmt::Write;

/// The pieces of a kernel's translation unit that the file template assembles.
pub struct KernelParts {
    /// Vector types used: (name, element C++ type, lanes).
    pub vectors: Vec<(String, String, u8)>,
    /// The library of the matrix-core fragments used (empty if none).
    pub fragments: String,
    pub functions: Vec<String>,
    pub params: Vec<String>,
    pub shared: Vec<String>,
    pub body: String,
}

impl KernelParts {
    /// Prints every function of `k`.
    pub fn new(k: &Kernel, target: &Target) -> KernelParts {
        let mut vectors = BTreeSet::new();
        let mut frags = BTreeSet::new();
        let mut packs = false;
        let mut vector_copies = false;
        for f in k.funcs.iter().chain(std::iter::once(&k.entry)) {
            collect_vectors(f, &mut vectors);
            collect_frags(f, &mut frags);
            crate::ir::walk_stmts(&f.body, &mut |e| packs |= is_packed_halves(e, target));
            vector_copies |= copies_vectors(&f.body);
        }
        for s in &k.shared {
            if let Type::Vector(e, n) = s.elem {
                vectors.insert((e, n));
            }
        }
        let functions = k
            .funcs
            .iter()
            .map(|f| FnPrinter::new(k, f, target).device_function())
            .collect();
        // The compiler may move loads through a `__restrict__` pointer (read-only ones
        // become invariant loads) ahead of the dependent-launch wait, which is only an asm
        // statement. Where launches overlap, a buffer first named after the wait may hold
        // the previous launch's results, so it is not declared `__restrict__`.
        let overlaps = target.dialect == crate::target::Dialect::Cuda && k.waits_prior_launch();
        let named_before_wait = k.named_before_wait();
        let params = k
            .params
            .iter()
            .zip(named_before_wait)
            .map(|(p, early)| match p.kind {
                ParamKind::Buffer { elem, mutable } => format!(
                    "{}{}*{} {}",
                    if mutable { "" } else { "const " },
                    elem.name(),
                    if overlaps && !early {
                        ""
                    } else {
                        " __restrict__"
                    },
                    p.name
                ),
                ParamKind::Scalar(s) => format!("{} {}", s.name(), p.name),
            })
            .collect();
        let mut shared: Vec<String> = if k.layout.dynamic_bytes > 0 {
            // Beyond the static limit every array is a view of the launch's dynamic
            // allocation.
            let offsets = k.layout.offsets.iter();
            std::iter::once(
                "extern __shared__ __align__(16) unsigned char greta_dynamic_shared[];".to_string(),
            )
            .chain(k.shared.iter().zip(offsets).map(|(s, at)| {
                let t = type_name(&s.elem);
                format!(
                    "{t}* const {} = reinterpret_cast<{t}*>(greta_dynamic_shared + {at});",
                    s.name
                )
            }))
            .collect()
        } else {
            k.shared
                .iter()
                .map(|s| {
                    format!(
                        "__shared__ __align__(16) {} {}[{}];",
                        type_name(&s.elem),
                        s.name,
                        s.len
                    )
                })
                .collect()
        };
        let mut body = FnPrinter::new(k, &k.entry, target);
        body.indent = 1;
        if k.uses_async_copy() {
            // One completion barrier per wave, armed once; each wait flips the phase.
            shared.push(format!(
                "__shared__ __align__(8) u64 greta_async_bar[{}];",
                k.layout.barrier_bytes / 8
            ));
            body.line("u32 greta_async_phase = 0u;");
            // Arming is a fence: where the kernel waits for its predecessor first, it goes
            // just before that wait, behind the loads issued ahead of it, so that they are
            // not held up by it.
            if k.waits_before_copying() {
                body.arm_async_at_wait = true;
            } else {
                body.line("greta_async_init(greta_async_bar);");
            }
        }
        body.stmts(&k.entry.body);
        KernelParts {
            vectors: vectors
                .into_iter()
                .map(|(e, n)| (format!("{}x{}", e.name(), n), e.name().to_string(), n))
                .collect(),
            fragments: super::frag::helpers(&frags, target)
                + if packs { PACKED_HALVES } else { "" }
                + match (vector_copies, target.dialect) {
                    (false, _) => "",
                    (true, crate::target::Dialect::Cuda) => VECTOR_COPIES_CUDA,
                    (true, crate::target::Dialect::Hip) => VECTOR_COPIES_HIP,
                },
            functions,
            params,
            shared,
            body: body.out,
        }
    }
}

fn collect_vectors(f: &Function, out: &mut BTreeSet<(Scalar, u8)>) {
    let mut add = |t: &Type| {
        let mut t = t;
        while let Type::Array(inner, _) = t {
            t = inner;
        }
        if let Type::Vector(e, n) = t {
            out.insert((*e, *n));
        }
    };
    for l in &f.locals {
        add(&l.ty);
    }
    if let Type::Vector(..) = f.ret {
        add(&f.ret);
    }
    crate::ir::walk_stmts(&f.body, &mut |e| add(&e.ty));
}

/// Pairs of f32 rounded to f16 in one instruction (`cvt.rn.f16x2.f32`) and the words that
/// carry them into a vector: on sm_90 a conversion of one value runs at a quarter of the
/// rate of the packed one.
const PACKED_HALVES: &str = "__device__ __forceinline__ u32 greta_pack_f16x2(f32 lo, f32 hi) { u32 r; asm(\"cvt.rn.f16x2.f32 %0, %1, %2;\" : \"=r\"(r) : \"f\"(hi), \"f\"(lo)); return r; }
struct greta_words1 { u32 w[1]; };
struct greta_words2 { u32 w[2]; };
struct greta_words4 { u32 w[4]; };
";

/// Per-lane 16-byte copies into shared memory that bypass the registers, in groups
/// (`cp.async`, sm_80 and later).
const VECTOR_COPIES_CUDA: &str = "__device__ __forceinline__ void greta_copy_vec_async(void* dst, const void* src) { asm volatile(\"cp.async.cg.shared.global [%0], [%1], 16;\" :: \"r\"(greta_smem_addr(dst)), \"l\"(src) : \"memory\"); }
__device__ __forceinline__ void greta_commit_copies() { asm volatile(\"cp.async.commit_group;\" ::: \"memory\"); }
template <int N> __device__ __forceinline__ void greta_wait_copies() { asm volatile(\"cp.async.wait_group %0;\" :: \"n\"(N) : \"memory\"); }
";

/// AMD has no register-free copy into LDS here: the copy is a plain one, done when issued.
const VECTOR_COPIES_HIP: &str = "__device__ __forceinline__ void greta_copy_vec_async(void* dst, const void* src) { *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(src); }
__device__ __forceinline__ void greta_commit_copies() {}
template <int N> __device__ __forceinline__ void greta_wait_copies() {}
";

/// Whether `stmts` copy vectors asynchronously (at any depth).
fn copies_vectors(stmts: &[Stmt]) -> bool {
    stmts.iter().any(|s| match &s.kind {
        StmtKind::CopyVecAsync { .. } | StmtKind::CommitCopies | StmtKind::WaitCopies(_) => true,
        StmtKind::If { then, els, .. } => copies_vectors(then) || copies_vectors(els),
        StmtKind::For { body, .. } | StmtKind::While { body, .. } | StmtKind::Scope(body) => {
            copies_vectors(body)
        }
        _ => false,
    })
}

/// Whether `e` builds an f16 vector from f32 values, which NVIDIA targets convert in pairs.
fn is_packed_halves(e: &Expr, target: &Target) -> bool {
    target.dialect == crate::target::Dialect::Cuda
        && matches!(e.ty, Type::Vector(Scalar::F16, n) if n % 2 == 0)
        && matches!(&e.kind, ExprKind::Make(items) if items.iter().all(|x| matches!(&x.kind, ExprKind::Cast(a) if a.ty == Type::Scalar(Scalar::F32))))
}

/// The fragment types a function's values have (also as array elements).
fn collect_frags(f: &Function, out: &mut BTreeSet<crate::types::Frag>) {
    let mut add = |t: &Type| {
        let mut t = t;
        while let Type::Array(inner, _) = t {
            t = inner;
        }
        if let Type::Frag(frag) = t {
            out.insert(*frag);
        }
    };
    for l in &f.locals {
        add(&l.ty);
    }
    add(&f.ret);
    crate::ir::walk_stmts(&f.body, &mut |e| add(&e.ty));
}

/// C++ spelling of a scalar, vector or fragment type.
pub fn type_name(t: &Type) -> String {
    match t {
        Type::Scalar(s) => s.name().to_string(),
        Type::Vector(s, n) => format!("{}x{}", s.name(), n),
        Type::Frag(f) => super::frag::type_name(*f),
        Type::Void => "void".to_string(),
        other => format!("/* {other} */"),
    }
}

/// C++ integer literal of type `s`.
pub fn int_literal(v: i128, s: Scalar) -> String {
    let digits = if v < 0 && v == -(1i128 << (s.bits() - 1)) {
        format!("({} - 1)", v + 1)
    } else if v < 0 {
        format!("({v})")
    } else {
        v.to_string()
    };
    match s {
        Scalar::U32 => format!("{digits}u"),
        Scalar::I32 => digits,
        Scalar::U64 => format!("{digits}ull"),
        Scalar::I64 => format!("{digits}ll"),
        Scalar::Bool => (v != 0).to_string(),
        other => format!("({}){digits}", other.name()),
    }
}

/// C++ float literal for `v` as `f32` (shortest form that round-trips).
fn f32_literal(v: f64) -> String {
    let x = v as f32;
    if x.is_nan() {
        return "greta_nan()".into();
    }
    if x.is_infinite() {
        return if x > 0.0 {
            "greta_inf()"
        } else {
            "(-greta_inf())"
        }
        .into();
    }
    let mut s = format!("{x:?}");
    if !s.contains('.') && !s.contains('e') && !s.contains("inf") {
        s.push_str(".0");
    }
    if s.starts_with('-') {
        format!("({s}f)")
    } else {
        format!("{s}f")
    }
}

/// C++ keywords and prelude names a DSL identifier must not take.
const RESERVED: &[&str] = &[
    "auto",
    "break",
    "case",
    "char",
    "class",
    "const",
    "continue",
    "default",
    "delete",
    "do",
    "double",
    "else",
    "enum",
    "extern",
    "float",
    "for",
    "friend",
    "goto",
    "if",
    "inline",
    "int",
    "long",
    "namespace",
    "new",
    "operator",
    "private",
    "protected",
    "public",
    "register",
    "return",
    "short",
    "signed",
    "sizeof",
    "static",
    "struct",
    "switch",
    "template",
    "this",
    "throw",
    "try",
    "typedef",
    "typename",
    "union",
    "unsigned",
    "virtual",
    "void",
    "volatile",
    "while",
    "bool",
    "true",
    "false",
    "i8",
    "u8",
    "i16",
    "u16",
    "i32",
    "u32",
    "i64",
    "u64",
    "f16",
    "bf16",
    "f32",
    "WAVE",
    "threadIdx",
    "blockIdx",
    "blockDim",
    "gridDim",
    "warpSize",
];

/// Binding strength of C++ operators (higher binds tighter).
fn precedence(op: BinOp) -> u8 {
    match op {
        BinOp::Mul | BinOp::Div | BinOp::Rem => 13,
        BinOp::Add | BinOp::Sub => 12,
        BinOp::Shl | BinOp::Shr => 11,
        BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => 9,
        BinOp::Eq | BinOp::Ne => 8,
        BinOp::BitAnd => 7,
        BinOp::BitXor => 6,
        BinOp::BitOr => 5,
        BinOp::And => 4,
        BinOp::Or => 3,
    }
}
const PREC_TERNARY: u8 = 2;
const PREC_UNARY: u8 = 14;
const PREC_ATOM: u8 = 16;

/// Prints one function.
struct FnPrinter<'k> {
    kernel: &'k Kernel,
    func: &'k Function,
    target: &'k Target,
    names: Vec<String>,
    out: String,
    indent: usize,
    /// The DSL line of the last `#line` and the output offset just after it.
    last_line: Option<(u32, usize)>,
    temp: u32,
    /// Arm the kernel's copy barriers just before its first `WaitPriorLaunch`.
    arm_async_at_wait: bool,
}

impl<'k> FnPrinter<'k> {
    fn new(kernel: &'k Kernel, func: &'k Function, target: &'k Target) -> FnPrinter<'k> {
        let mut taken: HashSet<String> = RESERVED.iter().map(|s| s.to_string()).collect();
        taken.extend(kernel.params.iter().map(|p| p.name.clone()));
        taken.extend(kernel.shared.iter().map(|s| s.name.clone()));
        taken.extend(kernel.consts.iter().map(|c| c.name.clone()));
        taken.extend(kernel.funcs.iter().map(|f| f.name.clone()));
        for p in &func.params {
            if let FnParam::Memory { name, .. } = p {
                taken.insert(name.clone());
            }
        }
        let names = func
            .locals
            .iter()
            .map(|l| {
                let mut name = l.name.clone();
                let mut n = 1;
                while taken.contains(&name) || name.starts_with("greta_") {
                    name = format!("{}_{}", l.name, n);
                    n += 1;
                }
                taken.insert(name.clone());
                name
            })
            .collect();
        FnPrinter {
            kernel,
            func,
            target,
            names,
            out: String::new(),
            indent: 0,
            last_line: None,
            temp: 0,
            arm_async_at_wait: false,
        }
    }

    fn device_function(mut self) -> String {
        let params: Vec<String> = self
            .func
            .params
            .iter()
            .map(|p| match p {
                FnParam::Value(l) => format!(
                    "{} {}",
                    type_name(&self.func.locals[*l as usize].ty),
                    self.names[*l as usize]
                ),
                FnParam::Memory {
                    name,
                    elem,
                    mutable: false,
                } => format!("const {}* {}", type_name(elem), name),
                FnParam::Memory { name, elem, .. } => format!("{}* {}", type_name(elem), name),
            })
            .collect();
        let header = format!(
            "__device__ __forceinline__ {} {}({}) {{\n",
            type_name(&self.func.ret),
            self.func.name,
            params.join(", ")
        );
        self.indent = 1;
        self.stmts(&self.func.body);
        format!("{header}{}}}", self.out)
    }

    fn line(&mut self, text: &str) {
        for _ in 0..self.indent {
            self.out.push_str("    ");
        }
        self.out.push_str(text);
        self.out.push('\n');
    }

    /// Emits `#line` unless the compiler's running line count already points at the
    /// statement's DSL line (consecutive statements on consecutive lines need none).
    fn mark(&mut self, s: &Stmt) {
        if s.span.line == 0 {
            return;
        }
        if let Some((line, at)) = self.last_line {
            let since = self.out[at..].matches('\n').count() as u32;
            if line + since == s.span.line {
                return;
            }
        }
        let _ = writeln!(self.out, "#line {} \"{}\"", s.span.line, self.func.file);
        self.last_line = Some((s.span.line, self.out.len()));
    }

    fn stmts(&mut self, stmts: &'k [Stmt]) {
        for s in stmts {
            self.stmt(s);
        }
    }

    fn block(&mut self, head: &str, body: &'k [Stmt]) {
        self.line(&if head.is_empty() {
            "{".to_string()
        } else {
            format!("{head} {{")
        });
        self.indent += 1;
        self.stmts(body);
        self.indent -= 1;
        self.line("}");
    }

    fn stmt(&mut self, s: &'k Stmt) {
        self.mark(s);
        match &s.kind {
            StmtKind::Let { local, init } => self.let_stmt(*local, init.as_ref()),
            StmtKind::Assign { local, value } => {
                let v = self.expr(value);
                self.line(&format!("{} = {v};", self.names[*local as usize]));
            }
            StmtKind::SetElement {
                local,
                index,
                value,
            } => {
                let (i, v) = (self.expr(index), self.expr(value));
                self.line(&format!("{}[{i}] = {v};", self.names[*local as usize]));
            }
            StmtKind::Store { mem, index, value } => {
                let place = self.mem_access(*mem, index, &value.ty);
                let v = self.expr(value);
                self.line(&format!("{place} = {v};"));
            }
            StmtKind::If { cond, then, els } => {
                let c = self.expr(cond);
                self.line(&format!("if ({c}) {{"));
                self.indent += 1;
                self.stmts(then);
                self.indent -= 1;
                if els.is_empty() {
                    self.line("}");
                } else {
                    self.line("} else {");
                    self.indent += 1;
                    self.stmts(els);
                    self.indent -= 1;
                    self.line("}");
                }
            }
            StmtKind::For {
                local,
                start,
                end,
                step,
                body,
                unroll,
            } => self.for_stmt(*local, start, end, step, body, *unroll),
            StmtKind::While { cond, body } => {
                let c = self.expr(cond);
                self.block(&format!("while ({c})"), body);
            }
            StmtKind::Break => self.line("break;"),
            StmtKind::Continue => self.line("continue;"),
            StmtKind::Return(None) => self.line("return;"),
            StmtKind::Return(Some(e)) => {
                let v = self.expr(e);
                self.line(&format!("return {v};"));
            }
            StmtKind::Barrier => self.line("__syncthreads();"),
            StmtKind::Fence => self.line("__threadfence();"),
            StmtKind::WaitPriorLaunch => {
                if std::mem::take(&mut self.arm_async_at_wait) {
                    self.line("greta_async_init(greta_async_bar);");
                }
                self.line("greta_wait_prior_launch();")
            }
            StmtKind::AllowNextLaunch => self.line("greta_allow_next_launch();"),
            StmtKind::CopyAsync {
                dst,
                to,
                src,
                from,
                count,
            } => {
                let (d, t) = (self.mem_name(*dst), self.expr(to));
                let (s, f) = (self.mem_name(*src), self.expr(from));
                let n = self.expr(count);
                self.line(&format!(
                    "greta_copy_async(greta_async_bar, {d} + 4u * ({t}), {s} + 4u * ({f}), {n});"
                ));
            }
            StmtKind::WaitAsync => {
                self.line("greta_wait_async(greta_async_bar, greta_async_phase);")
            }
            StmtKind::CopyVecAsync { dst, to, src, from } => {
                let lanes = |m: MemRef, p: &Self| match m {
                    MemRef::Shared(i) => 16 / p.kernel.shared[i as usize].elem.size().unwrap_or(4),
                    MemRef::Global(i) => match p.kernel.params[i as usize].kind {
                        ParamKind::Buffer { elem, .. } => 16 / elem.size(),
                        ParamKind::Scalar(_) => 4,
                    },
                    MemRef::FnArg(a) => p
                        .func
                        .params
                        .iter()
                        .filter_map(|q| match q {
                            FnParam::Memory { elem, .. } => Some(16 / elem.size().unwrap_or(4)),
                            FnParam::Value(_) => None,
                        })
                        .nth(a as usize)
                        .unwrap_or(4),
                };
                let (nd, ns) = (lanes(*dst, self), lanes(*src, self));
                let (d, t) = (self.mem_name(*dst), self.expr(to));
                let (sname, f) = (self.mem_name(*src), self.expr(from));
                self.line(&format!(
                    "greta_copy_vec_async({d} + {nd}u * ({t}), {sname} + {ns}u * ({f}));"
                ));
            }
            StmtKind::CommitCopies => self.line("greta_commit_copies();"),
            StmtKind::WaitCopies(n) => self.line(&format!("greta_wait_copies<{n}>();")),
            StmtKind::FragStore {
                mem,
                offset,
                ld,
                value,
            } => {
                let m = self.mem_name(*mem);
                let (o, l, v) = (self.expr(offset), self.expr(ld), self.expr(value));
                self.line(&format!("greta_store_frag({m} + ({o}), {l}, {v});"));
            }
            StmtKind::Scope(body) => self.block("", body),
            StmtKind::Eval(e) => {
                let v = self.expr(e);
                self.line(&format!("{v};"));
            }
        }
    }

    fn let_stmt(&mut self, local: u32, init: Option<&'k Expr>) {
        let l = &self.func.locals[local as usize];
        let name = self.names[local as usize].clone();
        let decl = match &l.ty {
            Type::Array(elem, n) => format!("{} {name}[{n}]", type_name(elem)),
            t => format!("{} {name}", type_name(t)),
        };
        match init {
            None => self.line(&format!("{decl};")),
            Some(Expr {
                kind: ExprKind::Splat(v),
                ty: Type::Array(_, n),
                ..
            }) => {
                let value = if matches!(
                    v.kind,
                    ExprKind::Lit(_) | ExprKind::Local(_) | ExprKind::Param(_) | ExprKind::Const(_)
                ) {
                    self.expr(v)
                } else {
                    let tmp = self.fresh("fill");
                    let e = self.expr(v);
                    self.line(&format!("const {} {tmp} = {e};", type_name(&v.ty)));
                    tmp
                };
                let items = vec![value; *n as usize].join(", ");
                self.line(&format!("{decl} = {{{items}}};"));
            }
            Some(Expr {
                kind: ExprKind::Make(items),
                ty: Type::Array(..),
                ..
            }) => {
                let items: Vec<String> = items.iter().map(|x| self.expr(x)).collect();
                self.line(&format!("{decl} = {{{}}};", items.join(", ")));
            }
            Some(e) => {
                let v = self.expr(e);
                self.line(&format!("{decl} = {v};"));
            }
        }
    }

    fn fresh(&mut self, base: &str) -> String {
        self.temp += 1;
        format!("greta_{base}{}", self.temp)
    }

    fn for_stmt(
        &mut self,
        local: u32,
        start: &'k Expr,
        end: &'k Expr,
        step: &'k Expr,
        body: &'k [Stmt],
        unroll: bool,
    ) {
        let name = self.names[local as usize].clone();
        let ty = type_name(&self.func.locals[local as usize].ty);
        let invariant = match &end.kind {
            ExprKind::Lit(_) | ExprKind::Const(_) | ExprKind::Param(_) => true,
            ExprKind::Local(l) => !assigns(body, *l),
            _ => false,
        };
        let end_s = if invariant {
            self.expr(end)
        } else {
            // Rust evaluates a range's end once; C++ would re-evaluate it every iteration.
            let tmp = self.fresh("end");
            let e = self.expr(end);
            self.line(&format!("const {ty} {tmp} = {e};"));
            tmp
        };
        let trips = match (start.as_int_lit(), end.as_int_lit(), step.as_int_lit()) {
            (Some(a), Some(b), Some(c)) if c > 0 => Some((b - a).max(0) / c),
            _ => None,
        };
        if unroll && trips.is_some_and(|t| t <= 16) {
            self.line("#pragma unroll");
        }
        let s = self.expr(start);
        let inc = match step.as_int_lit() {
            Some(1) => format!("++{name}"),
            _ => format!("{name} += {}", self.expr(step)),
        };
        self.block(
            &format!("for ({ty} {name} = {s}; {name} < {end_s}; {inc})"),
            body,
        );
    }

    /// An lvalue/rvalue for `mem[index]` of type `ty` (vectors index in vector units).
    fn mem_access(&mut self, mem: MemRef, index: &'k Expr, ty: &Type) -> String {
        let i = self.expr(index);
        let (name, elem, readonly) = match mem {
            MemRef::Global(p) => {
                let p = &self.kernel.params[p as usize];
                match p.kind {
                    ParamKind::Buffer { elem, mutable } => {
                        (p.name.clone(), Type::Scalar(elem), !mutable)
                    }
                    ParamKind::Scalar(_) => unreachable!("validated: loads address buffers"),
                }
            }
            MemRef::Shared(s) => {
                let s = &self.kernel.shared[s as usize];
                (s.name.clone(), s.elem.clone(), false)
            }
            MemRef::FnArg(a) => {
                let (name, elem, mutable) = self
                    .func
                    .params
                    .iter()
                    .filter_map(|p| match p {
                        FnParam::Memory {
                            name,
                            elem,
                            mutable,
                        } => Some((name.clone(), elem.clone(), *mutable)),
                        FnParam::Value(_) => None,
                    })
                    .nth(a as usize)
                    .expect("validated: memory argument exists");
                (name, elem, !mutable)
            }
        };
        if *ty == elem || !matches!(ty, Type::Vector(..)) {
            format!("{name}[{i}]")
        } else {
            let cv = if readonly { "const " } else { "" };
            format!("reinterpret_cast<{cv}{}*>({name})[{i}]", type_name(ty))
        }
    }

    fn expr(&mut self, e: &'k Expr) -> String {
        self.expr_prec(e).0
    }

    /// Prints `e` in a context of binding strength `min`, adding parentheses if needed.
    fn operand(&mut self, e: &'k Expr, min: u8) -> String {
        let (s, p) = self.expr_prec(e);
        if p < min {
            format!("({s})")
        } else {
            s
        }
    }

    fn expr_prec(&mut self, e: &'k Expr) -> (String, u8) {
        let atom = |s: String| (s, PREC_ATOM);
        match &e.kind {
            ExprKind::Lit(l) => atom(self.literal(*l, &e.ty)),
            ExprKind::Const(ConstRef::Named(i)) => {
                atom(self.kernel.consts[*i as usize].name.clone())
            }
            ExprKind::Const(ConstRef::Wave) => atom("WAVE".into()),
            ExprKind::Const(ConstRef::BulkCopy) => {
                atom(format!("{}u", self.target.bulk_copy as u32))
            }
            ExprKind::Local(l) => atom(self.names[*l as usize].clone()),
            ExprKind::Param(p) => atom(self.kernel.params[*p as usize].name.clone()),
            ExprKind::Unary { op, arg } => {
                let sym = match (op, &arg.ty) {
                    (UnOp::Neg, _) => "-",
                    (UnOp::Not, Type::Scalar(Scalar::Bool)) => "!",
                    (UnOp::Not, _) => "~",
                };
                let a = self.operand(arg, PREC_UNARY);
                (format!("{sym}{a}"), PREC_UNARY)
            }
            ExprKind::Binary { op, lhs, rhs } => {
                let p = precedence(*op);
                let l = self.operand(lhs, p);
                let r = self.operand(rhs, p + 1);
                (format!("{l} {} {r}", op.symbol()), p)
            }
            ExprKind::Cast(arg) => atom(self.cast(arg, &e.ty)),
            ExprKind::Bitcast(arg) => {
                let a = self.expr(arg);
                atom(format!("greta_bitcast<{}>({a})", type_name(&e.ty)))
            }
            ExprKind::Select { cond, a, b } => {
                let c = self.operand(cond, PREC_TERNARY + 1);
                let x = self.operand(a, PREC_TERNARY + 1);
                let y = self.operand(b, PREC_TERNARY);
                (format!("{c} ? {x} : {y}"), PREC_TERNARY)
            }
            ExprKind::Load { mem, index } => atom(self.mem_access(*mem, index, &e.ty)),
            ExprKind::Element { base, index } => {
                let b = self.operand(base, PREC_ATOM);
                let i = self.expr(index);
                atom(format!("{b}[{i}]"))
            }
            ExprKind::Make(items) if is_packed_halves(e, self.target) => {
                let words: Vec<String> = items
                    .chunks(2)
                    .map(|p| {
                        let arg = |x: &'k Expr| match &x.kind {
                            ExprKind::Cast(a) => a.as_ref(),
                            _ => x,
                        };
                        let (lo, hi) = (self.expr(arg(&p[0])), self.expr(arg(&p[1])));
                        format!("greta_pack_f16x2({lo}, {hi})")
                    })
                    .collect();
                atom(format!(
                    "greta_bitcast<{}>(greta_words{}{{{{{}}}}})",
                    type_name(&e.ty),
                    words.len(),
                    words.join(", ")
                ))
            }
            ExprKind::Make(items) => {
                let items: Vec<String> = items.iter().map(|x| self.expr(x)).collect();
                atom(format!("{}{{{{{}}}}}", type_name(&e.ty), items.join(", ")))
            }
            ExprKind::Splat(v) if matches!(e.ty, Type::Frag(_)) => {
                let x = self.expr(v);
                atom(format!("{}::splat({x})", type_name(&e.ty)))
            }
            ExprKind::Splat(_) => atom("/* array splat outside an initialiser */".into()),
            ExprKind::FragLoad {
                mem,
                offset,
                ld,
                trans,
            } => {
                let f = match (&e.ty, trans) {
                    (Type::Frag(f), _) if f.role == crate::types::FragRole::A => "greta_load_a",
                    (_, false) => "greta_load_b",
                    (_, true) => "greta_load_b_trans",
                };
                let m = self.mem_name(*mem);
                let (o, l) = (self.expr(offset), self.expr(ld));
                atom(format!("{f}({m} + ({o}), {l})"))
            }
            ExprKind::Builtin { op, args } => atom(self.builtin(*op, args, &e.ty)),
            ExprKind::Atomic {
                op,
                mem,
                index,
                value,
            } => {
                let place = self.mem_access(*mem, index, &value.ty);
                let v = self.expr(value);
                let f = match op {
                    AtomicOp::Add => "atomicAdd",
                    AtomicOp::Max => "greta_atomic_max",
                };
                atom(format!("{f}(&{place}, {v})"))
            }
            ExprKind::Call { func, args } => {
                let callee = &self.kernel.funcs[*func as usize];
                let args: Vec<String> = args
                    .iter()
                    .map(|a| match a {
                        CallArg::Value(x) => self.expr(x),
                        CallArg::Memory(m) => self.mem_name(*m),
                    })
                    .collect();
                atom(format!("{}({})", callee.name, args.join(", ")))
            }
        }
    }

    fn mem_name(&self, m: MemRef) -> String {
        match m {
            MemRef::Global(p) => self.kernel.params[p as usize].name.clone(),
            MemRef::Shared(s) => self.kernel.shared[s as usize].name.clone(),
            MemRef::FnArg(a) => self
                .func
                .params
                .iter()
                .filter_map(|p| match p {
                    FnParam::Memory { name, .. } => Some(name.clone()),
                    FnParam::Value(_) => None,
                })
                .nth(a as usize)
                .expect("validated: memory argument exists"),
        }
    }

    fn literal(&self, l: Lit, ty: &Type) -> String {
        let s = ty.as_scalar().unwrap_or(Scalar::F32);
        match (l, s) {
            (Lit::Bool(b), _) => b.to_string(),
            (Lit::Int(v), s) if s.is_int() || s == Scalar::Bool => int_literal(v, s),
            (Lit::Int(v), s) => self.float_literal(v as f64, s),
            (Lit::Float(v), s) => self.float_literal(v, s),
        }
    }

    fn float_literal(&self, v: f64, s: Scalar) -> String {
        let f = f32_literal(v);
        match s {
            Scalar::F32 => f,
            Scalar::F16 => format!("greta_convert<f16>({f})"),
            Scalar::BF16 => format!("greta_f32_to_bf16({f})"),
            other => format!("({}){f}", other.name()),
        }
    }

    fn cast(&mut self, arg: &'k Expr, to: &Type) -> String {
        let a = self.expr(arg);
        let from = &arg.ty;
        let to_name = type_name(to);
        match (from.as_scalar(), to.as_scalar()) {
            (Some(x), Some(y)) if x == y => a,
            (Some(Scalar::BF16), Some(_)) => format!("greta_from_bf16<{to_name}>({a})"),
            (Some(_), Some(Scalar::BF16)) => format!("greta_to_bf16({a})"),
            (Some(Scalar::F16), _) | (_, Some(Scalar::F16)) => {
                format!("greta_convert<{to_name}>({a})")
            }
            _ => format!("({to_name})({a})"),
        }
    }

    fn builtin(&mut self, op: Builtin, args: &'k [Expr], ty: &Type) -> String {
        let a: Vec<String> = args.iter().map(|x| self.expr(x)).collect();
        let axis = |ax: Axis| match ax {
            Axis::X => "x",
            Axis::Y => "y",
            Axis::Z => "z",
        };
        let reducer = |r: ReduceOp| match r {
            ReduceOp::Sum => "greta_sum",
            ReduceOp::Max => "greta_maximum",
            ReduceOp::Min => "greta_minimum",
        };
        let _ = self.target;
        match op {
            Builtin::ThreadIdx => "threadIdx.x".into(),
            Builtin::BlockIdx(ax) => format!("blockIdx.{}", axis(ax)),
            Builtin::GridDim(ax) => format!("gridDim.{}", axis(ax)),
            Builtin::LaneId => "greta_lane_id()".into(),
            Builtin::WaveId => "greta_wave_id()".into(),
            Builtin::ShflXor => format!("greta_shfl_xor({}, {})", a[0], a[1]),
            Builtin::Shfl => format!("greta_shfl({}, {})", a[0], a[1]),
            Builtin::WaveReduce(r) => format!("greta_wave_reduce<{}>({})", reducer(r), a[0]),
            Builtin::BlockReduce(r) => format!(
                "greta_block_reduce<{}u, {}, {}>({})",
                self.kernel.block,
                reducer(r),
                type_name(ty),
                a[0]
            ),
            Builtin::Ballot => format!("greta_ballot({})", a[0]),
            Builtin::Exp => format!("expf({})", a[0]),
            Builtin::Exp2 => format!("exp2f({})", a[0]),
            Builtin::Log => format!("logf({})", a[0]),
            Builtin::Log2 => format!("log2f({})", a[0]),
            Builtin::Sqrt => format!("sqrtf({})", a[0]),
            Builtin::Rsqrt => format!("rsqrtf({})", a[0]),
            Builtin::Rcp => format!("greta_rcp({})", a[0]),
            Builtin::Tanh => format!("tanhf({})", a[0]),
            Builtin::Sin => format!("sinf({})", a[0]),
            Builtin::Cos => format!("cosf({})", a[0]),
            Builtin::SinPi => format!("sinpif({})", a[0]),
            Builtin::CosPi => format!("cospif({})", a[0]),
            Builtin::Floor => format!("floorf({})", a[0]),
            Builtin::Fma => format!("fmaf({}, {}, {})", a[0], a[1], a[2]),
            Builtin::Min => format!("greta_min({}, {})", a[0], a[1]),
            Builtin::Max => format!("greta_max({}, {})", a[0], a[1]),
            Builtin::Abs => format!("greta_abs({})", a[0]),
            Builtin::IsNan => format!("greta_is_nan({})", a[0]),
            Builtin::IsFinite => format!("greta_is_finite({})", a[0]),
            Builtin::Dp4a => format!("greta_dp4a({}, {}, {})", a[0], a[1], a[2]),
            Builtin::Hfma2 => format!("greta_hfma2({}, {}, {})", a[0], a[1], a[2]),
            Builtin::Mma => format!("greta_mma({}, {}, {})", a[0], a[1], a[2]),
        }
    }
}

/// True if any statement in `stmts` assigns local `l`.
fn assigns(stmts: &[Stmt], l: u32) -> bool {
    stmts.iter().any(|s| match &s.kind {
        StmtKind::Assign { local, .. } | StmtKind::SetElement { local, .. } => *local == l,
        StmtKind::If { then, els, .. } => assigns(then, l) || assigns(els, l),
        StmtKind::For { body, .. } | StmtKind::While { body, .. } | StmtKind::Scope(body) => {
            assigns(body, l)
        }
        _ => false,
    })
}
