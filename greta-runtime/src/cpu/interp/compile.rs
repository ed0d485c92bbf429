//! Compilation of kernel IR to [`Code`]: device functions are inlined, every value gets
//! numbered slots (locals for their scope, temporaries for their statement), and
//! structured control flow becomes exec-mask operations with jumps.

use super::code::{Access, Code, Init, Loc, LocId, MaskReg, Mem, Op, Pc, Slot};
use super::value;
use greta_codegen::diag::Span;
use greta_codegen::ir::{
    Builtin, CallArg, Expr, ExprKind, FnParam, Function, Kernel, Lit, MemRef, Stmt, StmtKind,
};
use greta_codegen::ops::BinOp;
use greta_codegen::{Scalar, Type};
use std::collections::HashMap;

/// A value: `n` consecutive slots (one per scalar component).
#[derive(Clone, Copy, Debug)]
struct V {
    slot: Slot,
    n: u32,
}

/// Why a kernel cannot be compiled (an IR form the interpreter does not handle).
#[derive(Debug)]
pub struct Unsupported {
    pub place: String,
    pub message: String,
}

type R<T> = Result<T, Unsupported>;

/// The scalar type of each component and the number of components of a value type at
/// wavefront size `wave` (a fragment's length depends on it).
fn shape(t: &Type, wave: u32) -> (Scalar, u32) {
    match t {
        Type::Scalar(s) => (*s, 1),
        Type::Vector(s, n) => (*s, *n as u32),
        Type::Array(inner, m) => {
            let (s, n) = shape(inner, wave);
            (s, n * m)
        }
        Type::Frag(f) => (f.elem, f.len(wave)),
        _ => (Scalar::Bool, 0),
    }
}

/// A device function being compiled (inlined) or the kernel body.
struct Frame<'k> {
    func: &'k Function,
    file: u32,
    locals: Vec<Option<V>>,
    /// The memory each of the function's memory parameters refers to.
    mems: Vec<Mem>,
    /// Where `return` puts its value.
    ret: V,
    /// Lanes that have returned.
    ret_mask: MaskReg,
    /// Mask registers of the enclosing loops (exit/break, then continue).
    loops: Vec<MaskReg>,
}

struct Compiler<'k> {
    k: &'k Kernel,
    target: &'k greta_codegen::Target,
    ops: Vec<Op>,
    locs: Vec<Loc>,
    files: Vec<String>,
    inits: Vec<(Slot, Init)>,
    init_slots: HashMap<Init, Slot>,
    next: Slot,
    max: Slot,
    masks: u32,
    /// Label positions (labels are patched into jump targets at the end).
    labels: Vec<Option<Pc>>,
    /// The label ending each enclosing region: where code jumps once no lane is active.
    skips: Vec<u32>,
    frames: Vec<Frame<'k>>,
}

/// Compiles `k` for `target`: waves of its width, its constants.
pub fn compile<'k>(k: &'k Kernel, target: &'k greta_codegen::Target) -> Result<Code, Unsupported> {
    let wave = target.wave;
    let mut c = Compiler {
        k,
        target,
        ops: Vec::new(),
        locs: Vec::new(),
        files: Vec::new(),
        inits: Vec::new(),
        init_slots: HashMap::new(),
        next: 0,
        max: 0,
        masks: 0,
        labels: Vec::new(),
        skips: Vec::new(),
        frames: Vec::new(),
    };
    c.prescan();
    let exited = c.mask(1);
    let end = c.label();
    let file = c.file(&k.entry.file);
    c.frames.push(Frame {
        func: &k.entry,
        file,
        locals: vec![None; k.entry.locals.len()],
        mems: Vec::new(),
        ret: V { slot: 0, n: 0 },
        ret_mask: exited,
        loops: Vec::new(),
    });
    c.region(end, |c| c.stmts(&k.entry.body))?;
    c.place(end);
    c.ops.push(Op::End);
    c.resolve_labels();
    Ok(Code {
        ops: c.ops,
        locs: c.locs,
        files: c.files,
        inits: c.inits,
        slots: c.max,
        masks: c.masks,
        exited,
        wave,
    })
}

impl<'k> Compiler<'k> {
    /// Gives every literal, constant, scalar parameter and index built-in a slot filled
    /// when a wave starts, below all locals and temporaries.
    fn prescan(&mut self) {
        let k = self.k;
        self.init(Init::Bits(0));
        for f in k.funcs.iter().chain(std::iter::once(&k.entry)) {
            greta_codegen::ir::walk_stmts(&f.body, &mut |e| {
                if let Some(init) = self.init_of(e) {
                    self.init(init);
                }
            });
        }
    }

    /// The wave-start value of an expression that has one.
    fn init_of(&self, e: &Expr) -> Option<Init> {
        let s = e.ty.as_scalar()?;
        let axis = |a: greta_codegen::ir::Axis| a as u8;
        Some(match &e.kind {
            ExprKind::Lit(l) => Init::Bits(value::literal(*l, s)),
            ExprKind::Const(c) => Init::Bits(value::literal(
                Lit::Int(self.k.const_value(*c, self.target)),
                s,
            )),
            ExprKind::Param(p) => Init::Param(*p),
            ExprKind::Builtin { op, .. } => match op {
                Builtin::ThreadIdx => Init::ThreadIdx,
                Builtin::LaneId => Init::LaneId,
                Builtin::WaveId => Init::WaveId,
                Builtin::BlockIdx(a) => Init::BlockIdx(axis(*a)),
                Builtin::GridDim(a) => Init::GridDim(axis(*a)),
                _ => return None,
            },
            _ => return None,
        })
    }

    fn init(&mut self, init: Init) -> Slot {
        if let Some(&s) = self.init_slots.get(&init) {
            return s;
        }
        let s = self.alloc(1).slot;
        self.inits.push((s, init));
        self.init_slots.insert(init, s);
        s
    }

    fn init_slot(&self, init: Init) -> Slot {
        *self
            .init_slots
            .get(&init)
            .expect("prescan gives every constant a slot")
    }

    fn alloc(&mut self, n: u32) -> V {
        let v = V { slot: self.next, n };
        self.next += n;
        self.max = self.max.max(self.next);
        v
    }

    fn mask(&mut self, n: u32) -> MaskReg {
        let m = self.masks;
        self.masks += n;
        m
    }

    fn label(&mut self) -> u32 {
        self.labels.push(None);
        self.labels.len() as u32 - 1
    }

    fn place(&mut self, label: u32) {
        self.labels[label as usize] = Some(self.ops.len() as Pc);
    }

    fn skip(&self) -> u32 {
        *self.skips.last().expect("code is always inside a region")
    }

    /// Compiles `f` as a region whose end is `end`.
    fn region(&mut self, end: u32, f: impl FnOnce(&mut Self) -> R<()>) -> R<()> {
        self.skips.push(end);
        let r = f(self);
        self.skips.pop();
        r
    }

    fn resolve_labels(&mut self) {
        let labels = &self.labels;
        let at = |l: &mut Pc| {
            *l = labels[*l as usize].expect("every label is placed");
        };
        for op in &mut self.ops {
            match op {
                Op::If { to, .. }
                | Op::Else { to, .. }
                | Op::Jump { to }
                | Op::Leave { to, .. } => at(to),
                Op::Join { skip, .. } => at(skip),
                Op::LoopTest { exit, .. } | Op::LoopCont { exit, .. } => at(exit),
                _ => {}
            }
        }
    }

    fn file(&mut self, name: &str) -> u32 {
        match self.files.iter().position(|f| f == name) {
            Some(i) => i as u32,
            None => {
                self.files.push(name.to_string());
                self.files.len() as u32 - 1
            }
        }
    }

    fn frame(&mut self) -> &mut Frame<'k> {
        self.frames
            .last_mut()
            .expect("a function is being compiled")
    }

    fn at(&mut self, span: Span) -> LocId {
        let file = self.frames.last().map_or(0, |f| f.file);
        let loc = Loc {
            file,
            line: span.line,
        };
        if let Some(last) = self.locs.last() {
            if last.file == loc.file && last.line == loc.line {
                return self.locs.len() as LocId - 1;
            }
        }
        self.locs.push(loc);
        self.locs.len() as LocId - 1
    }

    fn unsupported(&mut self, span: Span, message: impl Into<String>) -> Unsupported {
        let file = self.frames.last().map_or(0, |f| f.file);
        Unsupported {
            place: format!("{}:{}", self.files[file as usize], span.line),
            message: message.into(),
        }
    }

    fn copy(&mut self, dst: V, src: V) {
        if dst.slot != src.slot && dst.n > 0 {
            self.ops.push(Op::Copy {
                dst: dst.slot,
                src: src.slot,
                n: dst.n.min(src.n),
            });
        }
    }

    fn stmts(&mut self, stmts: &'k [Stmt]) -> R<()> {
        for s in stmts {
            self.stmt(s)?;
        }
        Ok(())
    }

    fn stmt(&mut self, s: &'k Stmt) -> R<()> {
        let mark = self.next;
        match &s.kind {
            StmtKind::Let { local, init } => {
                let ty = &self.frame().func.locals[*local as usize].ty;
                let v = self.alloc(shape(ty, self.target.wave).1);
                self.frame().locals[*local as usize] = Some(v);
                let keep = self.next;
                match init {
                    Some(e) => {
                        let x = self.expr(e)?;
                        self.copy(v, x);
                    }
                    None => self.ops.push(Op::Splat {
                        dst: v.slot,
                        src: self.init_slot(Init::Bits(0)),
                        n: v.n,
                    }),
                }
                // The local lives until the enclosing block ends.
                self.next = keep;
                return Ok(());
            }
            StmtKind::Assign { local, value } => {
                let dst = self.local(*local, s.span)?;
                let x = self.expr(value)?;
                self.copy(dst, x);
            }
            StmtKind::SetElement {
                local,
                index,
                value,
            } => {
                let base = self.local(*local, s.span)?;
                let x = self.expr(value)?;
                let Some(i) = index.as_int_lit() else {
                    return Err(
                        self.unsupported(index.span, "a register index that is not a constant")
                    );
                };
                let dst = V {
                    slot: base.slot + i as u32 * x.n,
                    n: x.n,
                };
                self.copy(dst, x);
            }
            StmtKind::Store { mem, index, value } => {
                let i = self.expr(index)?;
                let x = self.expr(value)?;
                let acc = self.access(*mem, &value.ty, &index.ty, s.span)?;
                let at = self.at(s.span);
                self.ops.push(Op::Store {
                    acc,
                    src: x.slot,
                    index: i.slot,
                    at,
                });
            }
            StmtKind::CopyAsync {
                dst,
                to,
                src,
                from,
                count,
            } => {
                let (to, from, count) = (self.expr(to)?, self.expr(from)?, self.expr(count)?);
                // Both sides are addressed in 16-byte vectors of their 4-byte elements.
                let elem = match dst {
                    MemRef::Shared(i) => self.k.shared[*i as usize].elem.as_scalar(),
                    _ => None,
                };
                let Some(elem) = elem else {
                    return Err(
                        self.unsupported(s.span, "`copy_async` into anything but a shared array")
                    );
                };
                let vector = Type::Vector(elem, 4);
                let index = Type::Scalar(Scalar::U32);
                let dst = self.access(*dst, &vector, &index, s.span)?;
                let src = self.access(*src, &vector, &index, s.span)?;
                let at = self.at(s.span);
                self.ops.push(Op::CopyAsync {
                    dst,
                    src,
                    to: to.slot,
                    from: from.slot,
                    count: count.slot,
                    at,
                });
            }
            StmtKind::WaitAsync => self.ops.push(Op::WaitAsync),
            StmtKind::CopyVecAsync { dst, to, src, from } => {
                let (to_v, from_v) = (self.expr(to)?, self.expr(from)?);
                let elem = match (self.mem(*dst, s.span)?, self.mem(*src, s.span)?) {
                    (Mem::Shared(i), Mem::Global(_)) => self.k.shared[i as usize].elem.as_scalar(),
                    _ => None,
                };
                let Some(elem) = elem else {
                    return Err(self.unsupported(
                        s.span,
                        "`copy_vec_async` other than from a buffer into a shared array",
                    ));
                };
                let vector = Type::Vector(elem, (16 / elem.size()) as u8);
                let dst = self.access(*dst, &vector, &to.ty, s.span)?;
                let src = self.access(*src, &vector, &from.ty, s.span)?;
                let at = self.at(s.span);
                self.ops.push(Op::CopyVecAsync {
                    dst,
                    src,
                    to: to_v.slot,
                    from: from_v.slot,
                    at,
                });
            }
            StmtKind::CommitCopies => self.ops.push(Op::CommitCopies),
            StmtKind::WaitCopies(n) => self.ops.push(Op::WaitCopies(*n)),
            StmtKind::FragStore {
                mem,
                offset,
                ld,
                value,
            } => {
                let Type::Frag(frag) = value.ty else {
                    return Err(self.unsupported(s.span, "`store_frag` of a non-fragment"));
                };
                let (o, l, x) = (self.expr(offset)?, self.expr(ld)?, self.expr(value)?);
                let acc = self.access(*mem, &Type::Scalar(frag.elem), &offset.ty, s.span)?;
                let at = self.at(s.span);
                self.ops.push(Op::FragStore {
                    acc,
                    frag,
                    src: x.slot,
                    offset: o.slot,
                    ld: l.slot,
                    at,
                });
            }
            StmtKind::If { cond, then, els } => {
                let c = self.expr(cond)?;
                self.if_else(
                    c,
                    false,
                    |c| c.stmts(then),
                    |c| c.stmts(els),
                    !els.is_empty(),
                )?;
            }
            StmtKind::For {
                local,
                start,
                end,
                step,
                body,
                ..
            } => self.for_loop(*local, start, end, step, body, s.span)?,
            StmtKind::While { cond, body } => {
                let m = self.mask(2);
                self.ops.push(Op::ClearMasks { m, n: 2 });
                let head = self.label();
                self.place(head);
                let c = self.expr(cond)?;
                self.loop_rest(m, c, head, |_| Ok(()), body)?;
            }
            StmtKind::Break | StmtKind::Continue => {
                let Some(&m) = self.frame().loops.last() else {
                    return Err(self.unsupported(s.span, "`break` outside a loop"));
                };
                let m = if matches!(s.kind, StmtKind::Break) {
                    m
                } else {
                    m + 1
                };
                let to = self.skip();
                self.ops.push(Op::Leave { m, to });
            }
            StmtKind::Return(value) => {
                if let Some(e) = value {
                    let x = self.expr(e)?;
                    let ret = self.frame().ret;
                    self.copy(ret, x);
                }
                let m = self.frame().ret_mask;
                let to = self.skip();
                self.ops.push(Op::Leave { m, to });
            }
            StmtKind::Barrier => {
                let at = self.at(s.span);
                self.ops.push(Op::Barrier { at });
            }
            // Blocks publish results through atomics, which take a lock here: the lock's
            // release and acquire already order the relaxed stores before them.
            // Launches run one after another here: there is nothing to overlap or wait for.
            StmtKind::Fence | StmtKind::WaitPriorLaunch | StmtKind::AllowNextLaunch => {}
            StmtKind::Scope(body) => self.stmts(body)?,

            StmtKind::Eval(e) => {
                self.expr(e)?;
            }
        }
        self.next = mark;
        Ok(())
    }

    fn local(&mut self, l: u32, span: Span) -> R<V> {
        match self.frame().locals[l as usize] {
            Some(v) => Ok(v),
            None => Err(self.unsupported(span, "a local used before its declaration")),
        }
    }

    /// `if cond { then } else { els }` on the lanes of the current exec mask (`negate`
    /// runs `then` where `cond` is false).
    fn if_else(
        &mut self,
        cond: V,
        negate: bool,
        then: impl FnOnce(&mut Self) -> R<()>,
        els: impl FnOnce(&mut Self) -> R<()>,
        has_else: bool,
    ) -> R<()> {
        let m = self.mask(1);
        let else_label = self.label();
        let join = self.label();
        let to = if has_else { else_label } else { join };
        self.ops.push(Op::If {
            cond: cond.slot,
            negate,
            m,
            to,
        });
        self.region(to, then)?;
        if has_else {
            self.place(else_label);
            self.ops.push(Op::Else { m, to: join });
            self.region(join, els)?;
        }
        self.place(join);
        let skip = self.skip();
        self.ops.push(Op::Join { m, skip });
        Ok(())
    }

    fn for_loop(
        &mut self,
        local: u32,
        start: &'k Expr,
        end: &'k Expr,
        step: &'k Expr,
        body: &'k [Stmt],
        span: Span,
    ) -> R<()> {
        let Some(s) = start.ty.as_scalar() else {
            return Err(self.unsupported(span, "a loop over a non-scalar range"));
        };
        let v = self.alloc(1);
        self.frame().locals[local as usize] = Some(v);
        let end_v = self.alloc(1);
        let step_v = self.alloc(1);
        let keep = self.next;
        for (dst, e) in [(v, start), (end_v, end), (step_v, step)] {
            let x = self.expr(e)?;
            self.copy(dst, x);
            self.next = keep;
        }
        let (Some(lt), Some(add)) = (value::binary(BinOp::Lt, s), value::binary(BinOp::Add, s))
        else {
            return Err(self.unsupported(span, format!("a loop over `{s}`")));
        };
        let m = self.mask(2);
        self.ops.push(Op::ClearMasks { m, n: 2 });
        let head = self.label();
        self.place(head);
        let c = self.alloc(1);
        self.ops.push(Op::Bin {
            f: lt,
            dst: c.slot,
            a: v.slot,
            b: end_v.slot,
        });
        self.loop_rest(
            m,
            c,
            head,
            move |cx| {
                let t = cx.alloc(1);
                cx.ops.push(Op::Bin {
                    f: add,
                    dst: t.slot,
                    a: v.slot,
                    b: step_v.slot,
                });
                cx.copy(v, t);
                Ok(())
            },
            body,
        )
    }

    /// The loop test on `cond`, the body, the continue point, `step`, and the exit.
    fn loop_rest(
        &mut self,
        m: MaskReg,
        cond: V,
        head: u32,
        step: impl FnOnce(&mut Self) -> R<()>,
        body: &'k [Stmt],
    ) -> R<()> {
        let cont = self.label();
        let exit = self.label();
        self.ops.push(Op::LoopTest {
            cond: cond.slot,
            m,
            exit,
        });
        let keep = self.next;
        self.frame().loops.push(m);
        let r = self.region(cont, |c| c.stmts(body));
        self.frame().loops.pop();
        r?;
        self.place(cont);
        self.ops.push(Op::LoopCont { m, exit });
        step(self)?;
        self.next = keep;
        self.ops.push(Op::Jump { to: head });
        self.place(exit);
        let skip = self.skip();
        self.ops.push(Op::Join { m, skip });
        Ok(())
    }

    /// Resolves a memory reference through the device functions being inlined.
    fn mem(&mut self, m: MemRef, span: Span) -> R<Mem> {
        match m {
            MemRef::Global(p) => Ok(Mem::Global(p)),
            MemRef::Shared(s) => Ok(Mem::Shared(s)),
            MemRef::FnArg(i) => match self.frame().mems.get(i as usize) {
                Some(m) => Ok(*m),
                None => Err(self.unsupported(span, "a missing memory argument")),
            },
        }
    }

    fn access(&mut self, m: MemRef, ty: &Type, index: &Type, span: Span) -> R<Access> {
        let mem = self.mem(m, span)?;
        let (elem, lanes) = match ty {
            Type::Scalar(s) => (*s, 1),
            Type::Vector(s, n) => (*s, *n),
            other => {
                return Err(self.unsupported(span, format!("a memory access of type `{other}`")))
            }
        };
        let Some(index) = index.as_scalar().filter(|s| s.is_int()) else {
            return Err(self.unsupported(span, format!("a memory index of type `{index}`")));
        };
        Ok(Access {
            mem,
            elem,
            lanes,
            index,
        })
    }

    fn scalar(&mut self, e: &Expr) -> R<Scalar> {
        match e.ty.as_scalar() {
            Some(s) => Ok(s),
            None => Err(self.unsupported(e.span, format!("an operand of type `{}`", e.ty))),
        }
    }

    fn none<T>(&mut self, f: Option<T>, span: Span, what: impl FnOnce() -> String) -> R<T> {
        match f {
            Some(f) => Ok(f),
            None => Err(self.unsupported(span, what())),
        }
    }

    fn un(&mut self, f: value::UnFn, a: V) -> V {
        let d = self.alloc(1);
        self.ops.push(Op::Un {
            f,
            dst: d.slot,
            a: a.slot,
        });
        d
    }

    fn expr(&mut self, e: &'k Expr) -> R<V> {
        if let Some(init) = self.init_of(e) {
            return Ok(V {
                slot: self.init_slot(init),
                n: 1,
            });
        }
        let span = e.span;
        match &e.kind {
            ExprKind::Lit(_) | ExprKind::Const(_) | ExprKind::Param(_) => {
                Err(self.unsupported(span, format!("a constant of type `{}`", e.ty)))
            }
            ExprKind::Local(l) => self.local(*l, span),
            ExprKind::Unary { op, arg } => {
                let s = self.scalar(arg)?;
                let a = self.expr(arg)?;
                let f = self.none(value::unary(*op, s), span, || format!("`{op:?}` on `{s}`"))?;
                Ok(self.un(f, a))
            }
            ExprKind::Binary { op, lhs, rhs } => self.binary(*op, lhs, rhs, span),
            ExprKind::Cast(arg) => {
                let (from, to) = (self.scalar(arg)?, self.scalar(e)?);
                let a = self.expr(arg)?;
                if from == to {
                    return Ok(a);
                }
                let f = self.none(value::cast(from, to), span, || {
                    format!("a cast from `{from}` to `{to}`")
                })?;
                Ok(self.un(f, a))
            }
            ExprKind::Bitcast(arg) => {
                let a = self.expr(arg)?;
                let (from, to) = (
                    shape(&arg.ty, self.target.wave),
                    shape(&e.ty, self.target.wave),
                );
                if from.0.size() == to.0.size() && from.1 == to.1 {
                    // Lanes hold zero-extended bits: same-width reinterpretation is free.
                    return Ok(a);
                }
                let d = self.alloc(to.1);
                self.ops.push(Op::Repack {
                    dst: d.slot,
                    src: a.slot,
                    from: (from.0, from.1 as u8),
                    to: (to.0, to.1 as u8),
                });
                Ok(d)
            }
            ExprKind::Select { cond, a, b } => {
                let n = shape(&e.ty, self.target.wave).1;
                let c = self.expr(cond)?;
                if is_safe(a) && is_safe(b) {
                    let (x, y) = (self.expr(a)?, self.expr(b)?);
                    let d = self.alloc(n);
                    self.ops.push(Op::Blend {
                        dst: d.slot,
                        cond: c.slot,
                        a: x.slot,
                        b: y.slot,
                        n,
                    });
                    return Ok(d);
                }
                let d = self.alloc(n);
                self.if_else(
                    c,
                    false,
                    |cx| {
                        let x = cx.expr(a)?;
                        cx.copy(d, x);
                        Ok(())
                    },
                    |cx| {
                        let y = cx.expr(b)?;
                        cx.copy(d, y);
                        Ok(())
                    },
                    true,
                )?;
                Ok(d)
            }
            ExprKind::Load { mem, index } => {
                let i = self.expr(index)?;
                let acc = self.access(*mem, &e.ty, &index.ty, span)?;
                let d = self.alloc(acc.lanes as u32);
                let at = self.at(span);
                self.ops.push(Op::Load {
                    acc,
                    dst: d.slot,
                    index: i.slot,
                    at,
                });
                Ok(d)
            }
            ExprKind::Element { base, index } => {
                let b = self.expr(base)?;
                let n = shape(&e.ty, self.target.wave).1;
                match index.as_int_lit() {
                    Some(i) if (i as u64 + 1) * n as u64 <= b.n as u64 && i >= 0 => Ok(V {
                        slot: b.slot + i as u32 * n,
                        n,
                    }),
                    _ => Err(self.unsupported(
                        index.span,
                        "a register index that is not a constant in range",
                    )),
                }
            }
            ExprKind::Make(items) => {
                let d = self.alloc(shape(&e.ty, self.target.wave).1);
                let mut off = 0;
                for it in items {
                    let x = self.expr(it)?;
                    self.copy(
                        V {
                            slot: d.slot + off,
                            n: x.n,
                        },
                        x,
                    );
                    off += x.n;
                }
                Ok(d)
            }
            ExprKind::Splat(x) => {
                let v = self.expr(x)?;
                let d = self.alloc(shape(&e.ty, self.target.wave).1);
                if v.n == 1 {
                    self.ops.push(Op::Splat {
                        dst: d.slot,
                        src: v.slot,
                        n: d.n,
                    });
                } else {
                    for i in 0..d.n / v.n.max(1) {
                        self.copy(
                            V {
                                slot: d.slot + i * v.n,
                                n: v.n,
                            },
                            v,
                        );
                    }
                }
                Ok(d)
            }
            ExprKind::Builtin {
                op: Builtin::Mma,
                args,
            } => {
                let Type::Frag(a) = args[0].ty else {
                    return Err(self.unsupported(span, "`mma` of non-fragments"));
                };
                let (x, y, z) = (
                    self.expr(&args[0])?,
                    self.expr(&args[1])?,
                    self.expr(&args[2])?,
                );
                let d = self.alloc(z.n);
                let at = self.at(span);
                self.ops.push(Op::Mma {
                    input: a.elem,
                    dst: d.slot,
                    a: x.slot,
                    b: y.slot,
                    c: z.slot,
                    at,
                });
                Ok(d)
            }
            ExprKind::Builtin { op, args } => self.builtin(*op, args, e),
            ExprKind::FragLoad {
                mem,
                offset,
                ld,
                trans,
            } => {
                let Type::Frag(frag) = e.ty else {
                    return Err(self.unsupported(span, "a fragment load of a non-fragment type"));
                };
                let (o, l) = (self.expr(offset)?, self.expr(ld)?);
                let acc = self.access(*mem, &Type::Scalar(frag.elem), &offset.ty, span)?;
                if !matches!(acc.mem, Mem::Shared(_)) {
                    return Err(self.unsupported(
                        span,
                        "a fragment load from a buffer (fragments load from shared arrays)",
                    ));
                }
                let d = self.alloc(frag.len(self.target.wave));
                let at = self.at(span);
                self.ops.push(Op::FragLoad {
                    acc,
                    frag,
                    trans: *trans,
                    dst: d.slot,
                    offset: o.slot,
                    ld: l.slot,
                    at,
                });
                Ok(d)
            }
            ExprKind::Atomic {
                op,
                mem,
                index,
                value,
            } => {
                let i = self.expr(index)?;
                let v = self.expr(value)?;
                let acc = self.access(*mem, &value.ty, &index.ty, span)?;
                let f = self.none(value::atomic(*op, acc.elem), span, || {
                    format!("atomic `{op:?}` on `{}`", acc.elem)
                })?;
                let d = self.alloc(1);
                let at = self.at(span);
                self.ops.push(Op::Atomic {
                    acc,
                    f,
                    dst: d.slot,
                    index: i.slot,
                    value: v.slot,
                    at,
                });
                Ok(d)
            }
            ExprKind::Call { func, args } => self.call(*func, args, span),
        }
    }

    fn binary(&mut self, op: BinOp, lhs: &'k Expr, rhs: &'k Expr, span: Span) -> R<V> {
        let s = self.scalar(lhs)?;
        if op.is_logic() && !is_safe(rhs) {
            // C++ evaluates the right operand only on lanes the left one does not decide.
            let a = self.expr(lhs)?;
            let r = self.alloc(1);
            self.copy(r, a);
            self.if_else(
                r,
                op == BinOp::Or,
                |c| {
                    let b = c.expr(rhs)?;
                    c.copy(r, b);
                    Ok(())
                },
                |_| Ok(()),
                false,
            )?;
            return Ok(r);
        }
        let a = self.expr(lhs)?;
        let mut b = self.expr(rhs)?;
        let shift = matches!(op, BinOp::Shl | BinOp::Shr);
        if shift || (matches!(op, BinOp::Div | BinOp::Rem) && s.is_int()) {
            if shift {
                let rs = self.scalar(rhs)?;
                if rs != Scalar::I64 {
                    let f = self.none(value::cast(rs, Scalar::I64), span, || {
                        format!("a shift amount of type `{rs}`")
                    })?;
                    b = self.un(f, b);
                }
            }
            let f = self.none(value::checked(op, s), span, || {
                format!("`{}` on `{s}`", op.symbol())
            })?;
            let d = self.alloc(1);
            let at = self.at(span);
            self.ops.push(Op::Checked {
                f,
                ty: s,
                dst: d.slot,
                a: a.slot,
                b: b.slot,
                at,
            });
            return Ok(d);
        }
        let f = self.none(value::binary(op, s), span, || {
            format!("`{}` on `{s}`", op.symbol())
        })?;
        let d = self.alloc(1);
        self.ops.push(Op::Bin {
            f,
            dst: d.slot,
            a: a.slot,
            b: b.slot,
        });
        Ok(d)
    }

    fn builtin(&mut self, op: Builtin, args: &'k [Expr], e: &'k Expr) -> R<V> {
        let span = e.span;
        let mut vals = Vec::with_capacity(args.len());
        for a in args {
            vals.push(self.expr(a)?);
        }
        let arg_ty = match args.first() {
            Some(a) => self.scalar(a)?,
            None => Scalar::U32,
        };
        let d = self.alloc(1);
        let what = || format!("`{op:?}` on `{arg_ty}`");
        let op_code = match (op, vals.as_slice()) {
            (Builtin::ShflXor | Builtin::Shfl, [v, lane]) => Op::Shfl {
                xor: op == Builtin::ShflXor,
                dst: d.slot,
                v: v.slot,
                lane: lane.slot,
                at: self.at(span),
            },
            (Builtin::WaveReduce(r), [v]) => Op::WaveReduce {
                r: self.none(value::reducer(r, arg_ty), span, what)?,
                dst: d.slot,
                v: v.slot,
            },
            (Builtin::BlockReduce(r), [v]) => Op::BlockReduce {
                r: self.none(value::reducer(r, arg_ty), span, what)?,
                dst: d.slot,
                v: v.slot,
                at: self.at(span),
            },
            (Builtin::Ballot, [p]) => Op::Ballot {
                dst: d.slot,
                p: p.slot,
            },
            (Builtin::Min | Builtin::Max, [a, b]) => Op::Bin {
                f: self.none(value::min_max(op == Builtin::Max, arg_ty), span, what)?,
                dst: d.slot,
                a: a.slot,
                b: b.slot,
            },
            (Builtin::Fma | Builtin::Dp4a | Builtin::Hfma2, [a, b, c]) => Op::Tern {
                f: self.none(value::builtin_ternary(op), span, what)?,
                dst: d.slot,
                a: a.slot,
                b: b.slot,
                c: c.slot,
            },
            (_, [a]) => Op::Un {
                f: self.none(value::builtin_unary(op, arg_ty), span, what)?,
                dst: d.slot,
                a: a.slot,
            },
            _ => return Err(self.unsupported(span, what())),
        };
        self.ops.push(op_code);
        Ok(d)
    }

    /// Inlines a device function call.
    fn call(&mut self, func: u32, args: &'k [CallArg], span: Span) -> R<V> {
        let Some(f) = self.k.funcs.get(func as usize) else {
            return Err(self.unsupported(span, "a call of an unknown function"));
        };
        let ret = self.alloc(shape(&f.ret, self.target.wave).1);
        let mut mems = Vec::new();
        let mut locals = vec![None; f.locals.len()];
        for (a, p) in args.iter().zip(&f.params) {
            match (a, p) {
                (CallArg::Memory(m), FnParam::Memory { .. }) => mems.push(self.mem(*m, span)?),
                (CallArg::Value(x), FnParam::Value(l)) => {
                    let v = self.expr(x)?;
                    let slot = self.alloc(v.n);
                    self.copy(slot, v);
                    locals[*l as usize] = Some(slot);
                }
                _ => return Err(self.unsupported(span, "a call whose arguments do not match")),
            }
        }
        let m = self.mask(1);
        self.ops.push(Op::ClearMasks { m, n: 1 });
        let end = self.label();
        let file = self.file(&f.file);
        self.frames.push(Frame {
            func: f,
            file,
            locals,
            mems,
            ret,
            ret_mask: m,
            loops: Vec::new(),
        });
        let r = self.region(end, |c| c.stmts(&f.body));
        self.frames.pop();
        r?;
        self.place(end);
        let skip = self.skip();
        self.ops.push(Op::Join { m, skip });
        Ok(ret)
    }
}

/// True if evaluating `e` on lanes that do not need it is harmless: no memory access, no
/// call, no cross-lane operation and nothing that can fail.
fn is_safe(e: &Expr) -> bool {
    let mut safe = true;
    greta_codegen::ir::walk_expr(e, &mut |x| match &x.kind {
        ExprKind::Load { .. } | ExprKind::Atomic { .. } | ExprKind::Call { .. } => safe = false,
        ExprKind::Builtin { op, .. } if op.is_cross_lane() => safe = false,
        ExprKind::Binary {
            op: BinOp::Shl | BinOp::Shr,
            ..
        } => safe = false,
        ExprKind::Binary {
            op: BinOp::Div | BinOp::Rem,
            ..
        } if x.ty.as_scalar().is_some_and(Scalar::is_int) => safe = false,
        _ => {}
    });
    safe
}
