//! Lowering of calls: built-in functions, methods on values and buffers, and device
//! functions.

use super::{Binding, DeviceCall, FnCtx, Lowerer};
use crate::ast::{ExprAst, ExprKindAst, FnAst, GenericArgAst};
use crate::diag::Span;
use crate::ir::{AtomicOp, Axis, Builtin, CallArg, Expr, ExprKind, FnParam, ReduceOp, StmtKind};
use crate::types::{Scalar, Type};

/// How a built-in checks its arguments and types its result.
#[derive(Clone, Copy)]
enum Sig {
    /// No arguments, `u32` result (indices).
    Index,
    /// One `f32`, same result.
    FloatUnary,
    /// One `f32`, `bool` result.
    FloatPredicate,
    /// One f32 or signed integer, same result.
    Abs,
    /// Two operands of one numeric type.
    NumericBinary,
    /// Three `f32`.
    Fma,
    /// A 32/64-bit value and a `u32` lane or mask.
    Shuffle,
    /// One `f32`, `i32` or `u32`.
    Reduce,
    /// One `bool`, `u64` result.
    Ballot,
    /// Three `i32`.
    Dp4a,
    /// Three `u32` words, each two packed f16.
    Hfma2,
}

/// The built-in a free-function name refers to.
fn builtin_by_name(name: &str) -> Option<(Builtin, Sig)> {
    use Builtin::*;
    Some(match name {
        "thread_idx" => (ThreadIdx, Sig::Index),
        "block_idx" | "block_idx_x" => (BlockIdx(Axis::X), Sig::Index),
        "block_idx_y" => (BlockIdx(Axis::Y), Sig::Index),
        "block_idx_z" => (BlockIdx(Axis::Z), Sig::Index),
        "grid_dim" | "grid_dim_x" => (GridDim(Axis::X), Sig::Index),
        "grid_dim_y" => (GridDim(Axis::Y), Sig::Index),
        "grid_dim_z" => (GridDim(Axis::Z), Sig::Index),
        "lane_id" => (LaneId, Sig::Index),
        "wave_id" => (WaveId, Sig::Index),
        "exp" => (Exp, Sig::FloatUnary),
        "exp2" => (Exp2, Sig::FloatUnary),
        "log" | "ln" => (Log, Sig::FloatUnary),
        "log2" => (Log2, Sig::FloatUnary),
        "sqrt" => (Sqrt, Sig::FloatUnary),
        "rsqrt" => (Rsqrt, Sig::FloatUnary),
        "rcp" => (Rcp, Sig::FloatUnary),
        "tanh" => (Tanh, Sig::FloatUnary),
        "sin" => (Sin, Sig::FloatUnary),
        "cos" => (Cos, Sig::FloatUnary),
        "sinpi" => (SinPi, Sig::FloatUnary),
        "cospi" => (CosPi, Sig::FloatUnary),
        "floor" => (Floor, Sig::FloatUnary),
        "is_nan" => (IsNan, Sig::FloatPredicate),
        "is_finite" => (IsFinite, Sig::FloatPredicate),
        "abs" => (Abs, Sig::Abs),
        "min" => (Min, Sig::NumericBinary),
        "max" => (Max, Sig::NumericBinary),
        "fma" | "mul_add" => (Fma, Sig::Fma),
        "shfl_xor" => (ShflXor, Sig::Shuffle),
        "shfl" => (Shfl, Sig::Shuffle),
        "wave_sum" => (WaveReduce(ReduceOp::Sum), Sig::Reduce),
        "wave_max" => (WaveReduce(ReduceOp::Max), Sig::Reduce),
        "wave_min" => (WaveReduce(ReduceOp::Min), Sig::Reduce),
        "block_sum" => (BlockReduce(ReduceOp::Sum), Sig::Reduce),
        "block_max" => (BlockReduce(ReduceOp::Max), Sig::Reduce),
        "block_min" => (BlockReduce(ReduceOp::Min), Sig::Reduce),
        "ballot" => (Ballot, Sig::Ballot),
        "dp4a" => (Dp4a, Sig::Dp4a),
        "hfma2" => (Hfma2, Sig::Hfma2),
        _ => return None,
    })
}

/// Methods on values that are built-ins with the receiver as first argument.
fn method_builtin(name: &str) -> Option<(Builtin, Sig)> {
    match name {
        "log" => None,
        "exp" | "exp2" | "ln" | "log2" | "sqrt" | "rsqrt" | "rcp" | "tanh" | "sin" | "cos"
        | "floor" | "is_nan" | "is_finite" | "abs" | "min" | "max" | "mul_add" => {
            builtin_by_name(name)
        }
        _ => None,
    }
}

const F32: Type = Type::Scalar(Scalar::F32);
const U32: Type = Type::Scalar(Scalar::U32);
const I32: Type = Type::Scalar(Scalar::I32);

impl<'a> Lowerer<'a> {
    pub(super) fn lower_call(
        &mut self,
        path: &[String],
        generics: &[GenericArgAst],
        args: &[ExprAst],
        expected: Option<&Type>,
        span: Span,
    ) -> Expr {
        match path {
            [name] if super::stmt::ordering_statement(name).is_some() => self.poison(
                span,
                format!("`{name}()` is a statement: write `{name}();` on its own line"),
            ),
            [name] if name == "bitcast" => self.lower_bitcast(generics, args, span),
            [name] if name == "mma" => self.lower_mma(args, span),
            [name] if super::frag::constructor_role(name).is_some() => {
                let role = super::frag::constructor_role(name).expect("matched above");
                self.lower_frag_constructor(role, name, generics, args, span)
            }
            [name] => {
                if let Some((op, sig)) = builtin_by_name(name) {
                    let lowered = self.lower_args(args, sig, expected);
                    return self.builtin(op, sig, name, lowered, span);
                }
                self.lower_device_call(name, args, span)
            }
            [ty, item] => self.lower_type_path_call(ty, item, args, expected, span),
            _ => self.poison(span, format!("unknown function `{}`", path.join("::"))),
        }
    }

    /// `f32::from_bits(x)`, `f32x4::new(..)`, `u32x4::splat(x)`, `f32::max(a, b)`.
    fn lower_type_path_call(
        &mut self,
        ty: &str,
        item: &str,
        args: &[ExprAst],
        expected: Option<&Type>,
        span: Span,
    ) -> Expr {
        if let Some(s) = Scalar::from_name(ty) {
            if item == "from_bits" {
                let bits = match s.size() {
                    2 => Scalar::U16,
                    4 => Scalar::U32,
                    8 => Scalar::U64,
                    _ => return self.poison(span, format!("`{ty}::from_bits` is not available")),
                };
                let [arg] = self.exact_args::<1>(args, span, &format!("{ty}::from_bits"));
                let a = self.lower_expr(arg, Some(&Type::Scalar(bits)));
                self.expect_type(&a, &Type::Scalar(bits), &format!("`{ty}::from_bits`"));
                return Expr {
                    kind: ExprKind::Bitcast(Box::new(a)),
                    ty: Type::Scalar(s),
                    span,
                };
            }
            if let Some((op, sig)) = method_builtin(item) {
                let lowered = self.lower_args(args, sig, Some(&Type::Scalar(s)));
                return self.builtin(op, sig, item, lowered, span);
            }
        }
        if let Some(vt @ Type::Vector(elem, lanes)) = Type::vector_from_name(ty) {
            let elem_ty = Type::Scalar(elem);
            match item {
                "new" => {
                    if args.len() != lanes as usize {
                        return self.poison(
                            span,
                            format!("`{ty}::new` takes {lanes} arguments, found {}", args.len()),
                        );
                    }
                    let items: Vec<Expr> = args
                        .iter()
                        .map(|a| {
                            let e = self.lower_expr(a, Some(&elem_ty));
                            self.expect_type(&e, &elem_ty, &format!("a `{ty}` lane"));
                            e
                        })
                        .collect();
                    return Expr {
                        kind: ExprKind::Make(items),
                        ty: vt,
                        span,
                    };
                }
                "splat" => {
                    let [arg] = self.exact_args::<1>(args, span, &format!("{ty}::splat"));
                    let e = self.lower_expr(arg, Some(&elem_ty));
                    self.expect_type(&e, &elem_ty, &format!("a `{ty}` lane"));
                    return Expr {
                        kind: ExprKind::Make(vec![e; lanes as usize]),
                        ty: vt,
                        span,
                    };
                }
                _ => {}
            }
        }
        let _ = expected;
        self.poison(
            span,
            format!("unknown function `{ty}::{item}`; available are `T::from_bits`, `T::min/max/...`, `{{vector}}::new`, `{{vector}}::splat`"),
        )
    }

    /// `bitcast::<T>(v)`: same-size reinterpretation.
    fn lower_bitcast(&mut self, generics: &[GenericArgAst], args: &[ExprAst], span: Span) -> Expr {
        let [GenericArgAst::Type(t)] = generics else {
            return self.poison(span, "write the target type: `bitcast::<f16x8>(v)`");
        };
        let to = self.lower_type(t);
        let [arg] = self.exact_args::<1>(args, span, "bitcast");
        let v = self.lower_expr(arg, None);
        let from = self.infer.finish(&v.ty);
        if let (Some(a), Some(b)) = (from.size(), to.size()) {
            if a != b || matches!(from, Type::Array(..)) || matches!(to, Type::Array(..)) {
                return self.poison(
                    span,
                    format!(
                        "`bitcast` needs types of equal size: `{from}` is {a} bytes, `{to}` is {b}"
                    ),
                );
            }
            self.infer.unify(&v.ty, &from);
        }
        Expr {
            kind: ExprKind::Bitcast(Box::new(v)),
            ty: to,
            span,
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn lower_method(
        &mut self,
        recv: &ExprAst,
        method: &str,
        method_span: Span,
        generics: &[GenericArgAst],
        args: &[ExprAst],
        expected: Option<&Type>,
        span: Span,
    ) -> Expr {
        if let Some((mem, elem, mutable, name)) = self.mem_receiver(recv) {
            return match method {
                "load_vec" => self.lower_load_vec(mem, &elem, generics, args, span),
                "load_a" | "load_b" | "load_b_trans" => {
                    self.lower_frag_load(mem, &elem, &name, method, args, span)
                }
                "store_frag" => self.poison(span, "`store_frag` is a statement: write `tile.store_frag(offset, ld, f);`"),
                "atomic_add" | "atomic_max" => {
                    if !mutable {
                        return self.poison(
                            recv.span,
                            format!("`{name}` is read-only; atomics need `{name}: &mut [{elem}]`"),
                        );
                    }
                    let op = if method == "atomic_add" { AtomicOp::Add } else { AtomicOp::Max };
                    let [i, v] = self.exact_args::<2>(args, span, method);
                    let index = self.lower_index(i);
                    let value = self.lower_expr(v, Some(&elem));
                    self.expect_type(&value, &elem, &format!("`{method}` on `{name}`"));
                    let ok = matches!(
                        (op, self.infer.resolve(&elem)),
                        (_, Type::Scalar(Scalar::I32 | Scalar::U32 | Scalar::F32))
                            | (AtomicOp::Add, Type::Scalar(Scalar::U64))
                            | (_, Type::Generic(_) | Type::Unknown)
                    );
                    if !ok {
                        return self.poison(span, format!("`{method}` supports `f32`, `i32` and `u32` elements, not `{elem}`"));
                    }
                    Expr {
                        kind: ExprKind::Atomic {
                            op,
                            mem,
                            index: Box::new(index),
                            value: Box::new(value),
                        },
                        ty: elem,
                        span,
                    }
                }
                "store_vec" => self.poison(span, "`store_vec` is a statement: write `buf.store_vec(i, v);`"),
                _ => self.poison(
                    method_span,
                    format!("unknown method `{method}` on buffer `{name}`; buffers have `load_vec::<N>(i)`, `store_vec(i, v)`, `atomic_add(i, v)`, `atomic_max(i, v)`, `store_frag(offset, ld, f)`, shared arrays also `load_a/load_b/load_b_trans(offset, ld)`, and indexing `{name}[i]`"),
                ),
            };
        }
        let receiver = self.lower_expr(recv, expected);
        match self.infer.resolve(&receiver.ty) {
            Type::Frag(f) => return self.lower_frag_method(f, method, method_span, args, span),
            Type::Unknown | Type::Generic(_) if super::frag::is_frag_method(method) => {
                return self.lower_unresolved_frag_method(method, args, span)
            }
            _ => {}
        }
        if method == "to_bits" {
            self.exact_args::<0>(args, span, "to_bits");
            let t = self.infer.finish(&receiver.ty);
            self.infer.unify(&receiver.ty, &t);
            let bits = match t.size() {
                Some(2) => Scalar::U16,
                Some(4) => Scalar::U32,
                Some(8) => Scalar::U64,
                _ => {
                    return self.poison(
                        span,
                        format!("`to_bits` needs a 2-, 4- or 8-byte scalar, found `{t}`"),
                    )
                }
            };
            return Expr {
                kind: ExprKind::Bitcast(Box::new(receiver)),
                ty: Type::Scalar(bits),
                span,
            };
        }
        let Some((op, sig)) = method_builtin(method) else {
            return self.poison(
                method_span,
                format!("unknown method `{method}`; value methods are exp, exp2, ln, log2, sqrt, rsqrt, rcp, tanh, sin, cos, floor, abs, min, max, mul_add, is_nan, is_finite, to_bits"),
            );
        };
        let mut lowered = vec![receiver];
        let rest = self.lower_args(args, sig, Some(&lowered[0].ty.clone()));
        lowered.extend(rest);
        self.builtin(op, sig, method, lowered, span)
    }

    /// Lowers `buf.store_vec(i, v)` in statement position.
    pub(super) fn lower_store_vec(
        &mut self,
        recv: &ExprAst,
        args: &[ExprAst],
        span: Span,
    ) -> Option<StmtKind> {
        let Some((mem, elem, mutable, name)) = self.mem_receiver(recv) else {
            self.error(
                recv.span,
                "`store_vec` is a method of buffers and shared arrays",
            );
            return None;
        };
        if !mutable {
            self.error(
                recv.span,
                format!("cannot store into read-only buffer `{name}`; declare the parameter as `{name}: &mut [{elem}]`"),
            );
        }
        let [i, v] = self.exact_args::<2>(args, span, "store_vec");
        let index = self.lower_index(i);
        let value = self.lower_expr(v, None);
        match (self.infer.resolve(&value.ty), self.infer.resolve(&elem)) {
            (Type::Vector(s, _), Type::Scalar(e)) if s == e => {}
            (Type::Vector(..), Type::Generic(_) | Type::Unknown) | (Type::Unknown, _) => {}
            (t, e) => {
                self.error(
                    v.span,
                    format!("`store_vec` on a `{e}` buffer needs a `{e}xN` vector, found `{t}`"),
                );
            }
        }
        Some(StmtKind::Store { mem, index, value })
    }

    /// Lowers `tile.store_frag(offset, ld, f)` in statement position.
    pub(super) fn lower_store_frag(
        &mut self,
        recv: &ExprAst,
        args: &[ExprAst],
        span: Span,
    ) -> Option<StmtKind> {
        let Some((mem, elem, mutable, name)) = self.mem_receiver(recv) else {
            self.error(
                recv.span,
                "`store_frag` is a method of buffers and shared arrays",
            );
            return None;
        };
        self.lower_frag_store(mem, &elem, mutable, &name, args, span)
    }

    /// Lowers `dst.copy_async(to, src, from, count)` in statement position: `dst` a shared
    /// array of the kernel, `src` a buffer parameter of the same 4-byte element type, the
    /// positions and count in 16-byte vectors.
    pub(super) fn lower_copy_async(
        &mut self,
        recv: &ExprAst,
        args: &[ExprAst],
        span: Span,
    ) -> Option<StmtKind> {
        use crate::ir::MemRef;
        let [to, src, from, count] = self.exact_args::<4>(args, span, "copy_async");
        let dst = match self.mem_receiver(recv) {
            Some((mem @ MemRef::Shared(_), elem, _, _)) => Some((mem, elem)),
            _ => {
                self.error(
                    recv.span,
                    "`copy_async` copies into a shared array declared in this kernel",
                );
                None
            }
        };
        let source = match self.mem_receiver(src) {
            Some((mem @ MemRef::Global(_), elem, _, _)) => Some((mem, elem)),
            _ => {
                self.error(
                    src.span,
                    "`copy_async` copies from a buffer parameter of this kernel",
                );
                None
            }
        };
        let to = self.lower_index(to);
        let from = self.lower_index(from);
        let count = self.lower_index(count);
        let ((dst, de), (src_mem, se)) = (dst?, source?);
        let (de, se) = (self.infer.resolve(&de), self.infer.resolve(&se));
        let four_bytes = |t: &Type| {
            matches!(t, Type::Generic(_) | Type::Unknown)
                || matches!(t, Type::Scalar(s) if s.size() == 4)
        };
        if de != se || !four_bytes(&de) {
            self.error(
                span,
                format!("`copy_async` moves 16-byte vectors between arrays of one 4-byte element type; found `{de}` and `{se}`"),
            );
            return None;
        }
        Some(StmtKind::CopyAsync {
            dst,
            to,
            src: src_mem,
            from,
            count,
        })
    }

    /// Lowers `dst.copy_vec_async(to, src, from)` in statement position: one 16-byte vector
    /// per lane from buffer parameter `src` into shared array `dst` of the same element type,
    /// both indexed in vectors.
    pub(super) fn lower_copy_vec_async(
        &mut self,
        recv: &ExprAst,
        args: &[ExprAst],
        span: Span,
    ) -> Option<StmtKind> {
        use crate::ir::MemRef;
        let [to, src, from] = self.exact_args::<3>(args, span, "copy_vec_async");
        // A device function's memory parameters stand for either; the interpreter and the
        // GPU reject a copy whose ends turn out otherwise.
        let dst = match self.mem_receiver(recv) {
            Some((mem @ (MemRef::Shared(_) | MemRef::FnArg(_)), elem, _, _)) => Some((mem, elem)),
            _ => {
                self.error(recv.span, "`copy_vec_async` copies into a shared array");
                None
            }
        };
        let source = match self.mem_receiver(src) {
            Some((mem @ (MemRef::Global(_) | MemRef::FnArg(_)), elem, _, _)) => Some((mem, elem)),
            _ => {
                self.error(src.span, "`copy_vec_async` copies from a buffer");
                None
            }
        };
        let to = self.lower_index(to);
        let from = self.lower_index(from);
        let ((dst, de), (src_mem, se)) = (dst?, source?);
        let (de, se) = (self.infer.resolve(&de), self.infer.resolve(&se));
        let generic = |t: &Type| matches!(t, Type::Generic(_) | Type::Unknown);
        if de != se && !generic(&de) && !generic(&se) {
            self.error(
                span,
                format!("`copy_vec_async` moves 16-byte vectors between arrays of one element type; found `{de}` and `{se}`"),
            );
            return None;
        }
        Some(StmtKind::CopyVecAsync {
            dst,
            to,
            src: src_mem,
            from,
        })
    }

    /// If `recv` names a buffer or shared array: (memory, element type, mutable, name).
    fn mem_receiver(&self, recv: &ExprAst) -> Option<(crate::ir::MemRef, Type, bool, String)> {
        let ExprKindAst::Path(p) = &recv.kind else {
            return None;
        };
        let [name] = p.as_slice() else { return None };
        match self.fcx.lookup(name) {
            Some(Binding::Mem { mem, elem, mutable }) => {
                Some((*mem, elem.clone(), *mutable, name.clone()))
            }
            _ => None,
        }
    }

    /// `buf.load_vec::<N>(i)`: lanes `i*N .. i*N+N` as one wide load.
    fn lower_load_vec(
        &mut self,
        mem: crate::ir::MemRef,
        elem: &Type,
        generics: &[GenericArgAst],
        args: &[ExprAst],
        span: Span,
    ) -> Expr {
        let n = match generics {
            [GenericArgAst::Const(n)] => n.clone(),
            [GenericArgAst::Type(crate::ast::TypeAst::Path { name, span })] => ExprAst {
                kind: ExprKindAst::Path(vec![name.clone()]),
                span: *span,
            },
            _ => return self.poison(span, "write the lane count: `buf.load_vec::<4>(i)`"),
        };
        let lanes = self.const_len(&n, "the lane count");
        let [i] = self.exact_args::<1>(args, span, "load_vec");
        let index = self.lower_index(i);
        let ty = match self.infer.resolve(elem) {
            Type::Scalar(s) => match Type::vector_from_name(&format!("{s}x{lanes}")) {
                Some(t) => t,
                None => {
                    return self.poison(
                        n.span,
                        format!("`{s}x{lanes}` is not a vector type: vectors have 2, 4, 8 or 16 lanes and at most 16 bytes"),
                    )
                }
            },
            _ => Type::Unknown,
        };
        Expr {
            kind: ExprKind::Load {
                mem,
                index: Box::new(index),
            },
            ty,
            span,
        }
    }

    /// Takes exactly `N` arguments or reports the arity mismatch.
    pub(super) fn exact_args<'e, const N: usize>(
        &mut self,
        args: &'e [ExprAst],
        span: Span,
        name: &str,
    ) -> [&'e ExprAst; N] {
        if args.len() != N {
            self.error(
                span,
                format!(
                    "`{name}` takes {N} argument{}, found {}",
                    if N == 1 { "" } else { "s" },
                    args.len()
                ),
            );
        }
        std::array::from_fn(|i| args.get(i).unwrap_or(&PLACEHOLDER))
    }

    /// Lowers built-in arguments with the expectations their signature implies.
    fn lower_args(&mut self, args: &[ExprAst], sig: Sig, expected: Option<&Type>) -> Vec<Expr> {
        let mut out: Vec<Expr> = Vec::new();
        for (i, a) in args.iter().enumerate() {
            let exp = match sig {
                Sig::FloatUnary | Sig::FloatPredicate | Sig::Fma => Some(F32),
                Sig::Shuffle if i == 1 => Some(U32),
                Sig::Dp4a => Some(I32),
                Sig::Hfma2 => Some(U32),
                Sig::Ballot => Some(Type::Scalar(Scalar::Bool)),
                Sig::NumericBinary if i > 0 => Some(out[0].ty.clone()),
                _ => expected.cloned(),
            };
            out.push(self.lower_expr(a, exp.as_ref()));
        }
        out
    }

    /// Checks a built-in's arity and argument types, and types its result.
    fn builtin(&mut self, op: Builtin, sig: Sig, name: &str, args: Vec<Expr>, span: Span) -> Expr {
        let arity = match sig {
            Sig::Index => 0,
            Sig::FloatUnary | Sig::FloatPredicate | Sig::Abs | Sig::Reduce | Sig::Ballot => 1,
            Sig::NumericBinary | Sig::Shuffle => 2,
            Sig::Fma | Sig::Dp4a | Sig::Hfma2 => 3,
        };
        if args.len() != arity {
            return self.poison(
                span,
                format!(
                    "`{name}` takes {arity} argument{}, found {}",
                    if arity == 1 { "" } else { "s" },
                    args.len()
                ),
            );
        }
        let resolved: Vec<Type> = args.iter().map(|a| self.infer.resolve(&a.ty)).collect();
        let first = resolved.first().cloned().unwrap_or(Type::Void);
        let any = |t: &Type| matches!(t, Type::Generic(_) | Type::Unknown);
        let ty = match sig {
            Sig::Index => U32,
            Sig::FloatUnary | Sig::Fma => {
                for a in &args {
                    self.expect_float(a, name);
                }
                F32
            }
            Sig::FloatPredicate => {
                self.expect_float(&args[0], name);
                Type::Scalar(Scalar::Bool)
            }
            Sig::Abs => {
                let ok = any(&first)
                    || matches!(first, Type::Scalar(s) if s == Scalar::F32 || s.is_signed_int())
                    || matches!(first, Type::Infer(_));
                if !ok {
                    return self.poison(
                        args[0].span,
                        format!("`abs` takes `f32` or a signed integer, found `{first}`"),
                    );
                }
                self.infer.finish(&args[0].ty)
            }
            Sig::NumericBinary => {
                let Some(t) = self.infer.unify(&resolved[0], &resolved[1]) else {
                    return self.poison(
                        span,
                        format!(
                            "`{name}` needs two operands of one type, found `{}` and `{}`",
                            resolved[0], resolved[1]
                        ),
                    );
                };
                if matches!(t, Type::Scalar(s) if s == Scalar::Bool || s == Scalar::F16 || s == Scalar::BF16)
                {
                    return self.poison(
                        span,
                        format!(
                            "`{name}` takes `f32` or integers, found `{t}`; convert with `as f32`"
                        ),
                    );
                }
                t
            }
            Sig::Shuffle => {
                self.expect_type(&args[1], &U32, &format!("the lane argument of `{name}`"));
                let t = self.infer.finish(&args[0].ty);
                self.infer.unify(&args[0].ty, &t);
                let ok = any(&t)
                    || matches!(
                        t,
                        Type::Scalar(
                            Scalar::F32 | Scalar::I32 | Scalar::U32 | Scalar::I64 | Scalar::U64
                        )
                    );
                if !ok {
                    return self.poison(
                        args[0].span,
                        format!(
                            "`{name}` moves `f32`, `i32`, `u32`, `i64` or `u64` values, not `{t}`"
                        ),
                    );
                }
                t
            }
            Sig::Reduce => {
                let t = self.infer.finish(&args[0].ty);
                self.infer.unify(&args[0].ty, &t);
                let ok =
                    any(&t) || matches!(t, Type::Scalar(Scalar::F32 | Scalar::I32 | Scalar::U32));
                if !ok {
                    return self.poison(
                        args[0].span,
                        format!("`{name}` reduces `f32`, `i32` or `u32` values, not `{t}`"),
                    );
                }
                t
            }
            Sig::Ballot => {
                self.expect_type(&args[0], &Type::Scalar(Scalar::Bool), "`ballot`");
                Type::Scalar(Scalar::U64)
            }
            Sig::Dp4a => {
                for a in &args {
                    self.expect_type(
                        a,
                        &I32,
                        "`dp4a` (four packed i8 in an i32; cast with `as i32`)",
                    );
                }
                I32
            }
            Sig::Hfma2 => {
                for a in &args {
                    self.expect_type(
                        a,
                        &U32,
                        "`hfma2` (two f16 packed in a u32 word, low half first)",
                    );
                }
                U32
            }
        };
        Expr {
            kind: ExprKind::Builtin { op, args },
            ty,
            span,
        }
    }

    fn expect_float(&mut self, a: &Expr, name: &str) {
        let t = self.infer.resolve(&a.ty);
        if matches!(t, Type::Scalar(s) if s != Scalar::F32) {
            self.error(
                a.span,
                format!("`{name}` computes in `f32`, found `{t}`; convert with `as f32`"),
            );
        } else {
            self.infer.unify(&a.ty, &F32);
        }
    }

    /// A call to a `#[greta::device]` function.
    fn lower_device_call(&mut self, name: &str, args: &[ExprAst], span: Span) -> Expr {
        if self.call_stack.iter().any(|n| n == name) {
            return self.poison(
                span,
                format!("`{name}` calls itself; recursion is not supported on the GPU: rewrite it as a loop"),
            );
        }
        let Some(devices) = self.devices else {
            // Macro time: the callee's signature lives in another item; record the call and
            // check it when the kernel is specialised.
            self.callees.push(DeviceCall {
                name: name.to_string(),
                span,
                args: args.len(),
            });
            for a in args {
                if self.mem_receiver(a).is_none() {
                    self.lower_expr(a, None);
                }
            }
            return Expr {
                kind: ExprKind::Call {
                    func: 0,
                    args: Vec::new(),
                },
                ty: Type::Unknown,
                span,
            };
        };
        let Some(f) = devices.get(name) else {
            return self.poison(
                span,
                format!("unknown function `{name}`: not a built-in and not a `#[greta::device]` function in scope"),
            );
        };
        let Some(id) = self.lower_device_fn(f) else {
            return self.poison(span, format!("`{name}` could not be compiled"));
        };
        let callee = self.funcs[id as usize].clone();
        if args.len() != callee.params.len() {
            return self.poison(
                span,
                format!(
                    "`{name}` takes {} argument(s), found {}",
                    callee.params.len(),
                    args.len()
                ),
            );
        }
        let mut lowered = Vec::new();
        for (a, p) in args.iter().zip(&callee.params) {
            match p {
                FnParam::Value(l) => {
                    let ty = callee.locals[*l as usize].ty.clone();
                    let e = self.lower_expr(a, Some(&ty));
                    self.expect_type(&e, &ty, &format!("an argument of `{name}`"));
                    lowered.push(CallArg::Value(e));
                }
                FnParam::Memory {
                    name: pname,
                    elem,
                    mutable,
                } => {
                    match self.mem_receiver(a) {
                        Some((mem, e, m, arg_name)) => {
                            if self.infer.unify(&e, elem).is_none() {
                                self.error(a.span, format!("`{pname}` of `{name}` is `[{elem}]`, `{arg_name}` is `[{e}]`"));
                            }
                            if *mutable && !m {
                                self.error(a.span, format!("`{name}` writes to `{pname}`, but `{arg_name}` is read-only"));
                            }
                            lowered.push(CallArg::Memory(mem));
                        }
                        None => {
                            self.error(a.span, format!("`{pname}` of `{name}` is a buffer; pass a buffer or shared array by name"));
                        }
                    }
                }
            }
        }
        Expr {
            kind: ExprKind::Call {
                func: id,
                args: lowered,
            },
            ty: callee.ret.clone(),
            span,
        }
    }

    /// Lowers a device function once per kernel specialisation; callees are placed before
    /// their callers.
    fn lower_device_fn(&mut self, f: &'a FnAst) -> Option<u32> {
        if let Some(id) = self.func_ids.get(&f.name) {
            return Some(*id);
        }
        let before = self.diags.len();
        self.call_stack.push(f.name.clone());
        let ret = match &f.ret {
            Some(t) => self.lower_type(t),
            None => Type::Void,
        };
        let saved = std::mem::replace(
            &mut self.fcx,
            FnCtx::new(ret.clone(), false, f.externs.clone()),
        );
        let params = f.params.iter().map(|p| self.bind_device_param(p)).collect();
        let body = self.lower_fn_body(&f.body, &ret);
        let locals = std::mem::take(&mut self.fcx.locals);
        self.fcx = saved;
        self.call_stack.pop();
        let mut func = crate::ir::Function {
            name: f.name.clone(),
            file: f.file.clone(),
            params,
            ret,
            locals,
            body,
            span: f.span,
        };
        self.finish_types(&mut func);
        if self.diags.len() > before {
            return None;
        }
        self.funcs.push(func);
        let id = self.funcs.len() as u32 - 1;
        self.func_ids.insert(f.name.clone(), id);
        Some(id)
    }
}

/// Stands in for a missing argument after an arity error has been reported.
static PLACEHOLDER: ExprAst = ExprAst {
    kind: ExprKindAst::Bool(false),
    span: Span {
        line: 0,
        col: 0,
        id: 0,
    },
};
