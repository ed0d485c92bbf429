//! Lowering of matrix-core fragments: the constructors `frag_a/b/c::<T>()`, the product
//! `mma(a, b, c)`, the shared-array methods `load_a`, `load_b`, `load_b_trans` and
//! `store_frag`, and the fragment methods `row(i)`, `col(i)`, `len()` and `depth()`. A lane's
//! coordinates become ordinary integer arithmetic on `lane_id()` derived from the target's
//! layout table, so both back ends compute them the same way.

use super::Lowerer;
use crate::ast::{ExprAst, GenericArgAst};
use crate::diag::Span;
use crate::frag::{carrying_bits, lane_terms};
use crate::ir::{Builtin, Expr, ExprKind, Lit, MemRef, StmtKind};
use crate::ops::BinOp;
use crate::types::{Frag, FragRole};
use crate::types::{Scalar, Type};

const U32: Type = Type::Scalar(Scalar::U32);

/// The fragment role a constructor name makes.
pub(super) fn constructor_role(name: &str) -> Option<FragRole> {
    match name {
        "frag_a" => Some(FragRole::A),
        "frag_b" => Some(FragRole::B),
        "frag_c" => Some(FragRole::C),
        _ => None,
    }
}

/// The methods of fragment values.
pub(super) fn is_frag_method(name: &str) -> bool {
    matches!(
        name,
        "row" | "col" | "len" | "depth" | "part" | "slot" | "line"
    )
}

/// Parses a fragment type name written `FragA<f16>` (the parser's spelling of the generic).
pub(super) fn parse_type_name(name: &str) -> Option<(FragRole, &str)> {
    let inner = name.strip_suffix('>')?;
    let (role, elem) = inner.split_once('<')?;
    let role = match role {
        "FragA" => FragRole::A,
        "FragB" => FragRole::B,
        "FragC" => FragRole::C,
        _ => return None,
    };
    Some((role, elem))
}

fn u32_lit(v: u32, span: Span) -> Expr {
    Expr::lit(Lit::Int(v as i128), Scalar::U32, span)
}

fn bin(op: BinOp, l: Expr, r: Expr, span: Span) -> Expr {
    Expr {
        kind: ExprKind::Binary {
            op,
            lhs: Box::new(l),
            rhs: Box::new(r),
        },
        ty: U32,
        span,
    }
}

impl Lowerer<'_> {
    /// A fragment type, or an error at `span` naming what matrix cores accept.
    pub(super) fn frag_type(&mut self, role: FragRole, elem: &Type, span: Span) -> Type {
        match self.infer.resolve(elem) {
            Type::Scalar(s) => match Frag::new(role, s) {
                Ok(f) => Type::Frag(f),
                Err(e) => {
                    self.error(span, e.to_string());
                    Type::Unknown
                }
            },
            Type::Generic(_) | Type::Unknown => Type::Unknown,
            other => {
                self.error(span, format!("fragments hold scalars, not `{other}`"));
                Type::Unknown
            }
        }
    }

    /// `frag_a::<f16>()`, `frag_b::<i8>()`, `frag_c::<f32>()`: a fragment of zeros.
    pub(super) fn lower_frag_constructor(
        &mut self,
        role: FragRole,
        name: &str,
        generics: &[GenericArgAst],
        args: &[ExprAst],
        span: Span,
    ) -> Expr {
        let [GenericArgAst::Type(t)] = generics else {
            return self.poison(
                span,
                format!(
                    "write the element type: `{name}::<{}>()`",
                    if role == FragRole::C { "f32" } else { "f16" }
                ),
            );
        };
        if !args.is_empty() {
            return self.poison(
                span,
                format!("`{name}` takes no arguments; it makes a fragment of zeros"),
            );
        }
        let elem = self.lower_type(t);
        let ty = self.frag_type(role, &elem, t.span());
        let zero = match ty {
            Type::Frag(f) if f.elem.is_float() => Expr::lit(Lit::Float(0.0), f.elem, span),
            Type::Frag(f) => Expr::lit(Lit::Int(0), f.elem, span),
            // Reported above, or a type parameter not known yet (macro time).
            _ => {
                return Expr {
                    kind: ExprKind::Lit(Lit::Int(0)),
                    ty: Type::Unknown,
                    span,
                }
            }
        };
        Expr {
            kind: ExprKind::Splat(Box::new(zero)),
            ty,
            span,
        }
    }

    /// `mma(a, b, c)`: `c + a · bᵀ` on the matrix cores.
    pub(super) fn lower_mma(&mut self, args: &[ExprAst], span: Span) -> Expr {
        let [a, b, c] = self.exact_args::<3>(args, span, "mma");
        let (a, b, c) = (
            self.lower_expr(a, None),
            self.lower_expr(b, None),
            self.lower_expr(c, None),
        );
        let types = [&a, &b, &c].map(|x| self.infer.resolve(&x.ty));
        let (Type::Frag(fa), Type::Frag(fb), Type::Frag(fc)) = (&types[0], &types[1], &types[2])
        else {
            if types
                .iter()
                .any(|t| matches!(t, Type::Unknown | Type::Generic(_)))
            {
                return Expr {
                    kind: ExprKind::Builtin {
                        op: Builtin::Mma,
                        args: vec![a, b, c],
                    },
                    ty: Type::Unknown,
                    span,
                };
            }
            return self.poison(
                span,
                format!(
                    "`mma` takes an A, a B and a C fragment, found `{}`, `{}` and `{}`",
                    types[0], types[1], types[2]
                ),
            );
        };
        let acc = Frag::accumulator_of(fa.elem);
        if fa.role != FragRole::A
            || fb.role != FragRole::B
            || fc.role != FragRole::C
            || fb.elem != fa.elem
            || fc.elem != acc
        {
            return self.poison(
                span,
                format!(
                    "`mma` takes `FragA<T>`, `FragB<T>` and `FragC<{acc}>` (f16/bf16 into f32, i8 into i32), found `{fa}`, `{fb}` and `{fc}`"
                ),
            );
        }
        let ty = Type::Frag(*fc);
        Expr {
            kind: ExprKind::Builtin {
                op: Builtin::Mma,
                args: vec![a, b, c],
            },
            ty,
            span,
        }
    }

    /// `tile.load_a(offset, ld)`, `tile.load_b(..)`, `tile.load_b_trans(..)` on a shared
    /// array of f16, bf16 or i8.
    pub(super) fn lower_frag_load(
        &mut self,
        mem: MemRef,
        elem: &Type,
        name: &str,
        method: &str,
        args: &[ExprAst],
        span: Span,
    ) -> Expr {
        if matches!(mem, MemRef::Global(_)) {
            return self.poison(
                span,
                format!("`{method}` reads a shared array; `{name}` is a buffer: stage the tile in a `shared!` array first"),
            );
        }
        let (role, trans) = match method {
            "load_a" => (FragRole::A, false),
            "load_b" => (FragRole::B, false),
            _ => (FragRole::B, true),
        };
        let [offset, ld] = self.exact_args::<2>(args, span, method);
        let offset = self.lower_index(offset);
        let ld = self.lower_index(ld);
        let ty = self.frag_type(role, elem, span);
        if let (true, Type::Frag(f)) = (trans, &ty) {
            if f.elem.size() != 2 {
                return self.poison(span, "`load_b_trans` reads 16-bit fragments (f16, bf16)");
            }
        }
        Expr {
            kind: ExprKind::FragLoad {
                mem,
                offset: Box::new(offset),
                ld: Box::new(ld),
                trans,
            },
            ty,
            span,
        }
    }

    /// `tile.store_frag(offset, ld, f)` in statement position.
    pub(super) fn lower_frag_store(
        &mut self,
        mem: MemRef,
        elem: &Type,
        mutable: bool,
        name: &str,
        args: &[ExprAst],
        span: Span,
    ) -> Option<StmtKind> {
        if !mutable {
            self.error(span, format!("cannot store into read-only buffer `{name}`; declare the parameter as `{name}: &mut [{elem}]`"));
        }
        let [offset, ld, value] = self.exact_args::<3>(args, span, "store_frag");
        let offset = self.lower_index(offset);
        let ld = self.lower_index(ld);
        let v = self.lower_expr(value, None);
        match (self.infer.resolve(&v.ty), self.infer.resolve(elem)) {
            (Type::Frag(f), Type::Scalar(e)) if f.elem == e => {}
            (Type::Unknown, _) | (_, Type::Unknown | Type::Generic(_)) => {}
            (t, e) => {
                self.error(
                    value.span,
                    format!("`store_frag` into `[{e}]` needs a fragment of `{e}`, found `{t}`"),
                );
                return None;
            }
        }
        Some(StmtKind::FragStore {
            mem,
            offset,
            ld,
            value: v,
        })
    }

    /// `f.row(i)`, `f.col(i)` (this lane's coordinates of element `i`) and `f.len()`.
    pub(super) fn lower_frag_method(
        &mut self,
        frag: Frag,
        method: &str,
        method_span: Span,
        args: &[ExprAst],
        span: Span,
    ) -> Expr {
        match method {
            "len" => {
                self.exact_args::<0>(args, span, "len");
                // rows * cols / WAVE: folds to the target's per-lane count.
                let wave = Expr {
                    kind: ExprKind::Const(crate::ir::ConstRef::Wave),
                    ty: U32,
                    span,
                };
                bin(BinOp::Div, u32_lit(frag.rows() * frag.cols(), span), wave, span)
            }
            "depth" => {
                self.exact_args::<0>(args, span, "depth");
                if frag.role == FragRole::C {
                    return self.poison(method_span, "`depth()` is the K of an operand fragment (A or B); an accumulator is 16 x 16");
                }
                u32_lit(Frag::depth_of(frag.elem), span)
            }
            "row" | "col" => {
                let [i] = self.exact_args::<1>(args, span, method);
                let index = self.lower_index(i);
                let t = self.infer.finish(&index.ty);
                self.infer.unify(&index.ty, &U32);
                if t != U32 && t != Type::Unknown {
                    self.error(i.span, format!("a fragment element index is `u32`, found `{t}`"));
                }
                let len = self.wave().map(|w| frag.len(w)).unwrap_or(0);
                self.check_static_index(&index, len);
                match self.wave() {
                    Some(w) => self.frag_coord(frag, w, index, method == "col", span),
                    None => u32_lit(0, span),
                }
            }
            "part" | "slot" | "line" => {
                if frag.role == FragRole::C {
                    return self.poison(method_span, format!("`{method}` numbers an operand fragment's (A or B) values of K; an accumulator has `row(i)` and `col(i)`"));
                }
                let index = if method == "part" {
                    self.exact_args::<0>(args, span, method);
                    None
                } else {
                    let [i] = self.exact_args::<1>(args, span, method);
                    let index = self.lower_index(i);
                    let len = self.wave().map(|w| frag.len(w)).unwrap_or(0);
                    self.check_static_index(&index, len);
                    Some(index)
                };
                match self.wave() {
                    Some(w) => self.frag_rank(frag, w, index, method == "line", span),
                    None => u32_lit(0, span),
                }
            }
            _ => self.poison(
                method_span,
                format!("unknown method `{method}` on `{frag}`; fragments have `row(i)`, `col(i)`, `len()`, `depth()`, `part()`, `slot(i)`, `line(i)` (operands) and indexing `f[i]`"),
            ),
        }
    }

    /// A fragment method on a value whose type is not known yet (macro time: a type
    /// parameter's fragment, a device function's result): a `u32` that is a constant of
    /// unknown value (`len`, `depth`, `slot`, `line`) or a run-time value (`row`, `col`,
    /// `part`).
    pub(super) fn lower_unresolved_frag_method(
        &mut self,
        method: &str,
        args: &[ExprAst],
        span: Span,
    ) -> Expr {
        for a in args {
            self.lower_index(a);
        }
        let kind = if matches!(method, "len" | "depth" | "slot" | "line") {
            ExprKind::Const(crate::ir::ConstRef::Wave)
        } else {
            ExprKind::Builtin {
                op: Builtin::LaneId,
                args: Vec::new(),
            }
        };
        Expr {
            kind,
            ty: U32,
            span,
        }
    }

    /// This lane's row (or column) of element `index`: the lane's part as shift-mask terms
    /// of `lane_id()`, the element's as one term per element-index bit.
    fn frag_coord(&mut self, frag: Frag, wave: u32, index: Expr, col: bool, span: Span) -> Expr {
        let layout = frag.layout(wave);
        let lane = Expr {
            kind: ExprKind::Builtin {
                op: Builtin::LaneId,
                args: Vec::new(),
            },
            ty: U32,
            span,
        };
        let mut terms: Vec<Expr> = lane_terms(&layout, col)
            .into_iter()
            .map(|t| {
                let shifted = if t.shift == 0 {
                    lane.clone()
                } else {
                    bin(BinOp::Shr, lane.clone(), u32_lit(t.shift, span), span)
                };
                let masked = bin(BinOp::BitAnd, shifted, u32_lit(t.mask, span), span);
                if t.scale == 1 {
                    masked
                } else {
                    bin(BinOp::Mul, masked, u32_lit(t.scale, span), span)
                }
            })
            .collect();
        for (b, &(dr, dc)) in layout.elem.iter().enumerate() {
            let off = if col { dc } else { dr };
            if off == 0 {
                continue;
            }
            let bit = bin(
                BinOp::BitAnd,
                bin(BinOp::Shr, index.clone(), u32_lit(b as u32, span), span),
                u32_lit(1, span),
                span,
            );
            terms.push(bin(BinOp::Mul, bit, u32_lit(off, span), span));
        }
        terms
            .into_iter()
            .reduce(|a, b| bin(BinOp::Add, a, b, span))
            .unwrap_or_else(|| u32_lit(0, span))
    }
    /// This lane's part of K (`index` None), element `index`'s slot in the lane's run of K,
    /// or (`line`) which of the lane's rows it is on: the bits of the lane or element index
    /// that carry those offsets, compressed (`crate::frag::carrying_bits`). With K permuted
    /// by `part() * run + slot(i)`, each lane's values of a row are one contiguous run.
    fn frag_rank(
        &mut self,
        frag: Frag,
        wave: u32,
        index: Option<Expr>,
        line: bool,
        span: Span,
    ) -> Expr {
        let layout = frag.layout(wave);
        let (source, bits) = match index {
            None => (
                Expr {
                    kind: ExprKind::Builtin {
                        op: Builtin::LaneId,
                        args: Vec::new(),
                    },
                    ty: U32,
                    span,
                },
                carrying_bits(layout.lane, true),
            ),
            Some(i) => (i, carrying_bits(layout.elem, !line)),
        };
        bits.iter()
            .enumerate()
            .map(|(r, &b)| {
                let bit = bin(
                    BinOp::BitAnd,
                    bin(BinOp::Shr, source.clone(), u32_lit(b, span), span),
                    u32_lit(1, span),
                    span,
                );
                bin(BinOp::Mul, bit, u32_lit(1 << r, span), span)
            })
            .reduce(|a, b| bin(BinOp::Add, a, b, span))
            .unwrap_or_else(|| u32_lit(0, span))
    }
}
