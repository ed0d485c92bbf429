//! Lane values and the per-type operations over a wave's lanes. Every lane of a value slot
//! holds one scalar's bits, zero-extended to `u64`; operations are monomorphised per
//! scalar type and picked once, when a kernel is compiled, so the executor never matches
//! on types.

use greta_codegen::ir::{AtomicOp, Builtin, Lit, ReduceOp};
use greta_codegen::ops::{BinOp, UnOp};
use greta_codegen::Scalar;
use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

/// A pure lane-wise operation with two operands.
pub type BinFn = fn(&mut [u64], &[u64], &[u64]);
/// A pure lane-wise operation with one operand.
pub type UnFn = fn(&mut [u64], &[u64]);
/// A pure lane-wise operation with three operands.
pub type TernFn = fn(&mut [u64], &[u64], &[u64], &[u64]);
/// A lane-wise operation that can fail; it runs on the active lanes only and reports the
/// first failing lane.
pub type CheckedFn = fn(&mut [u64], &[u64], &[u64], u64) -> Result<(), (u32, Failure)>;
/// Combines two values of a reduction or an atomic (bits in, bits out).
pub type CombineFn = fn(u64, u64) -> u64;

/// Why a checked operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    DivisionByZero,
    RemainderByZero,
    ShiftOutOfRange(i64),
}

impl Failure {
    /// The message for an error report.
    pub fn message(self, ty: Scalar) -> String {
        match self {
            Failure::DivisionByZero => format!("integer division by zero ({ty})"),
            Failure::RemainderByZero => format!("integer remainder by zero ({ty})"),
            Failure::ShiftOutOfRange(n) => format!(
                "shift of a {ty} by {n} (GPUs disagree on shifts by a negative amount or by the bit width or more)"
            ),
        }
    }
}

/// A scalar as it lives in a lane.
pub trait Val: Copy {
    fn get(bits: u64) -> Self;
    fn put(self) -> u64;
}

/// An f16 value; arithmetic is done in f32 and rounded back.
#[derive(Clone, Copy, PartialEq, PartialOrd)]
pub struct H(f16);
/// A bf16 value; arithmetic is done in f32 and rounded back.
#[derive(Clone, Copy, PartialEq, PartialOrd)]
pub struct B(bf16);

macro_rules! int_val {
    ($($t:ty => $u:ty),*) => {$(
        impl Val for $t {
            #[inline(always)]
            fn get(bits: u64) -> Self { bits as $u as $t }
            #[inline(always)]
            fn put(self) -> u64 { self as $u as u64 }
        }
    )*};
}
int_val!(i8 => u8, u8 => u8, i16 => u16, u16 => u16, i32 => u32, u32 => u32, i64 => u64, u64 => u64);

impl Val for bool {
    #[inline(always)]
    fn get(bits: u64) -> Self {
        bits != 0
    }
    #[inline(always)]
    fn put(self) -> u64 {
        self as u64
    }
}

impl Val for f32 {
    #[inline(always)]
    fn get(bits: u64) -> Self {
        f32::from_bits(bits as u32)
    }
    #[inline(always)]
    fn put(self) -> u64 {
        self.to_bits() as u64
    }
}

impl Val for H {
    #[inline(always)]
    fn get(bits: u64) -> Self {
        H(f16::from_bits(bits as u16))
    }
    #[inline(always)]
    fn put(self) -> u64 {
        self.0.to_bits() as u64
    }
}

impl Val for B {
    #[inline(always)]
    fn get(bits: u64) -> Self {
        B(bf16::from_bits(bits as u16))
    }
    #[inline(always)]
    fn put(self) -> u64 {
        self.0.to_bits() as u64
    }
}

/// Numeric types: arithmetic, ordering, conversions.
pub trait Num: Val + PartialOrd {
    const FLOAT: bool;
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    fn neg(self) -> Self;
    fn zero() -> Self;
    /// `greta_min`: `fminf` for f32, `b < a ? b : a` otherwise.
    fn min_(self, o: Self) -> Self {
        if o < self {
            o
        } else {
            self
        }
    }
    /// `greta_max`: `fmaxf` for f32, `a < b ? b : a` otherwise.
    fn max_(self, o: Self) -> Self {
        if self < o {
            o
        } else {
            self
        }
    }
    fn abs_(self) -> Self {
        if self < Self::zero() {
            self.neg()
        } else {
            self
        }
    }
    fn to_f64(self) -> f64;
    fn to_i128(self) -> i128;
    /// Conversion from a float value (saturating, NaN to zero, for integers).
    fn from_f64(v: f64) -> Self;
    /// Conversion from an integer value (wrapping for integers, rounding for floats).
    fn from_i128(v: i128) -> Self;
}

macro_rules! int_num {
    ($($t:ty),*) => {$(
        impl Num for $t {
            const FLOAT: bool = false;
            #[inline(always)] fn add(self, o: Self) -> Self { self.wrapping_add(o) }
            #[inline(always)] fn sub(self, o: Self) -> Self { self.wrapping_sub(o) }
            #[inline(always)] fn mul(self, o: Self) -> Self { self.wrapping_mul(o) }
            #[inline(always)] fn neg(self) -> Self { (0 as $t).wrapping_sub(self) }
            #[inline(always)] fn zero() -> Self { 0 }
            #[inline(always)] fn to_f64(self) -> f64 { self as f64 }
            #[inline(always)] fn to_i128(self) -> i128 { self as i128 }
            #[inline(always)] fn from_f64(v: f64) -> Self { v as $t }
            #[inline(always)] fn from_i128(v: i128) -> Self { v as $t }
        }
    )*};
}
int_num!(i8, u8, i16, u16, i32, u32, i64, u64);

impl Num for f32 {
    const FLOAT: bool = true;
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        self + o
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        self - o
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        self * o
    }
    #[inline(always)]
    fn neg(self) -> Self {
        -self
    }
    fn zero() -> Self {
        0.0
    }
    #[inline(always)]
    fn min_(self, o: Self) -> Self {
        self.min(o)
    }
    #[inline(always)]
    fn max_(self, o: Self) -> Self {
        self.max(o)
    }
    #[inline(always)]
    fn abs_(self) -> Self {
        self.abs()
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn to_i128(self) -> i128 {
        self as i128
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    #[inline(always)]
    fn from_i128(v: i128) -> Self {
        v as f32
    }
}

/// The half-precision types: computed in f32, rounded to nearest even on every result.
/// `$int` converts an integer: HIP converts to `_Float16` directly, while bf16 goes through
/// f32 (`greta_to_bf16`).
macro_rules! half_num {
    ($($w:ident($t:ty), |$v:ident| $int:expr);* $(;)?) => {$(
        impl $w {
            #[inline(always)]
            fn f(self) -> f32 { self.0.to_f32() }
            #[inline(always)]
            fn r(v: f32) -> Self { $w(<$t>::from_f32(v)) }
        }
        impl Num for $w {
            const FLOAT: bool = true;
            #[inline(always)] fn add(self, o: Self) -> Self { Self::r(self.f() + o.f()) }
            #[inline(always)] fn sub(self, o: Self) -> Self { Self::r(self.f() - o.f()) }
            #[inline(always)] fn mul(self, o: Self) -> Self { Self::r(self.f() * o.f()) }
            #[inline(always)] fn neg(self) -> Self { $w(-self.0) }
            fn zero() -> Self { $w(<$t>::ZERO) }
            #[inline(always)] fn to_f64(self) -> f64 { self.0.to_f64() }
            fn to_i128(self) -> i128 { self.f() as i128 }
            #[inline(always)] fn from_f64(v: f64) -> Self { $w(<$t>::from_f64(v)) }
            fn from_i128($v: i128) -> Self { $w($int) }
        }
    )*};
}
half_num!(
    H(f16), |v| f16::from_f64(v as f64);
    B(bf16), |v| bf16::from_f32(v as f32);
);

/// Integer types: division, shifts and bit operations.
pub trait Int: Num {
    fn div_(self, o: Self) -> Self;
    fn rem_(self, o: Self) -> Self;
    fn is_zero(self) -> bool;
    /// Width after C++ integer promotion (small types shift as `int`).
    const SHIFT_BITS: i64;
    fn and(self, o: Self) -> Self;
    fn or(self, o: Self) -> Self;
    fn xor(self, o: Self) -> Self;
    fn not(self) -> Self;
}

macro_rules! int_ops {
    ($($t:ty),*) => {$(
        impl Int for $t {
            #[inline(always)] fn div_(self, o: Self) -> Self { self.wrapping_div(o) }
            #[inline(always)] fn rem_(self, o: Self) -> Self { self.wrapping_rem(o) }
            #[inline(always)] fn is_zero(self) -> bool { self == 0 }
            const SHIFT_BITS: i64 = if <$t>::BITS < 32 { 32 } else { <$t>::BITS as i64 };
            #[inline(always)] fn and(self, o: Self) -> Self { self & o }
            #[inline(always)] fn or(self, o: Self) -> Self { self | o }
            #[inline(always)] fn xor(self, o: Self) -> Self { self ^ o }
            #[inline(always)] fn not(self) -> Self { !self }
        }
    )*};
}
int_ops!(i8, u8, i16, u16, i32, u32, i64, u64);

/// Binds `$T` to the host type of a numeric scalar and evaluates `$e`; `None` for bool.
macro_rules! with_num {
    ($s:expr, $T:ident => $e:expr) => {
        match $s {
            Scalar::F32 => {
                type $T = f32;
                Some($e)
            }
            Scalar::F16 => {
                type $T = H;
                Some($e)
            }
            Scalar::BF16 => {
                type $T = B;
                Some($e)
            }
            Scalar::Bool => None,
            int => with_int!(int, $T => $e),
        }
    };
}

/// Binds `$T` to the host type of an integer scalar and evaluates `$e`; `None` otherwise.
macro_rules! with_int {
    ($s:expr, $T:ident => $e:expr) => {
        match $s {
            Scalar::I8 => {
                type $T = i8;
                Some($e)
            }
            Scalar::U8 => {
                type $T = u8;
                Some($e)
            }
            Scalar::I16 => {
                type $T = i16;
                Some($e)
            }
            Scalar::U16 => {
                type $T = u16;
                Some($e)
            }
            Scalar::I32 => {
                type $T = i32;
                Some($e)
            }
            Scalar::U32 => {
                type $T = u32;
                Some($e)
            }
            Scalar::I64 => {
                type $T = i64;
                Some($e)
            }
            Scalar::U64 => {
                type $T = u64;
                Some($e)
            }
            _ => None,
        }
    };
}

/// A binary operation on values of one type.
pub trait BinK<T> {
    type Out: Val;
    fn f(a: T, b: T) -> Self::Out;
}

/// A unary operation.
pub trait UnK<T> {
    type Out: Val;
    fn f(a: T) -> Self::Out;
}

macro_rules! bin_kinds {
    ($($name:ident: $bound:ident => |$a:ident, $b:ident| -> $out:ty { $e:expr }),* $(,)?) => {$(
        struct $name;
        impl<T: $bound> BinK<T> for $name {
            type Out = $out;
            #[inline(always)]
            fn f($a: T, $b: T) -> $out { $e }
        }
    )*};
}

/// Values comparable with `==`.
pub trait Eqv: Val + PartialEq {}
impl<T: Val + PartialEq> Eqv for T {}

bin_kinds! {
    Add: Num => |a, b| -> T { a.add(b) },
    Sub: Num => |a, b| -> T { a.sub(b) },
    Mul: Num => |a, b| -> T { a.mul(b) },
    Min: Num => |a, b| -> T { a.min_(b) },
    Max: Num => |a, b| -> T { a.max_(b) },
    And: Int => |a, b| -> T { a.and(b) },
    Or: Int => |a, b| -> T { a.or(b) },
    Xor: Int => |a, b| -> T { a.xor(b) },
    Eq: Eqv => |a, b| -> bool { a == b },
    Ne: Eqv => |a, b| -> bool { a != b },
    Lt: Num => |a, b| -> bool { a < b },
    Le: Num => |a, b| -> bool { a <= b },
    Gt: Num => |a, b| -> bool { a > b },
    Ge: Num => |a, b| -> bool { a >= b },
}

/// Float division (integer division is checked).
struct FDiv;
impl BinK<f32> for FDiv {
    type Out = f32;
    fn f(a: f32, b: f32) -> f32 {
        a / b
    }
}
impl BinK<H> for FDiv {
    type Out = H;
    fn f(a: H, b: H) -> H {
        H::r(a.f() / b.f())
    }
}
impl BinK<B> for FDiv {
    type Out = B;
    fn f(a: B, b: B) -> B {
        B::r(a.f() / b.f())
    }
}

/// Boolean `&`, `|`, `^` (also the eager forms of `&&` and `||`).
struct BoolAnd;
struct BoolOr;
struct BoolXor;
impl BinK<bool> for BoolAnd {
    type Out = bool;
    fn f(a: bool, b: bool) -> bool {
        a & b
    }
}
impl BinK<bool> for BoolOr {
    type Out = bool;
    fn f(a: bool, b: bool) -> bool {
        a | b
    }
}
impl BinK<bool> for BoolXor {
    type Out = bool;
    fn f(a: bool, b: bool) -> bool {
        a ^ b
    }
}

fn bin<T: Val, K: BinK<T>>(d: &mut [u64], a: &[u64], b: &[u64]) {
    for ((d, &a), &b) in d.iter_mut().zip(a).zip(b) {
        *d = K::f(T::get(a), T::get(b)).put();
    }
}

fn un<T: Val, K: UnK<T>>(d: &mut [u64], a: &[u64]) {
    for (d, &a) in d.iter_mut().zip(a) {
        *d = K::f(T::get(a)).put();
    }
}

/// The pure lane-wise function for `a op b` with operands of type `s`, or `None` if the
/// operation is checked (integer division) or not defined for the type.
pub fn binary(op: BinOp, s: Scalar) -> Option<BinFn> {
    macro_rules! num {
        ($k:ty) => {
            with_num!(s, T => bin::<T, $k> as BinFn)
        };
    }
    match (op, s) {
        (BinOp::BitAnd | BinOp::And, Scalar::Bool) => Some(bin::<bool, BoolAnd>),
        (BinOp::BitOr | BinOp::Or, Scalar::Bool) => Some(bin::<bool, BoolOr>),
        (BinOp::BitXor | BinOp::Ne, Scalar::Bool) => Some(bin::<bool, BoolXor>),
        (BinOp::Eq, Scalar::Bool) => Some(bin::<bool, Eq>),
        (BinOp::Add, _) => num!(Add),
        (BinOp::Sub, _) => num!(Sub),
        (BinOp::Mul, _) => num!(Mul),
        (BinOp::Div, Scalar::F32) => Some(bin::<f32, FDiv>),
        (BinOp::Div, Scalar::F16) => Some(bin::<H, FDiv>),
        (BinOp::Div, Scalar::BF16) => Some(bin::<B, FDiv>),
        (BinOp::BitAnd, _) => with_int!(s, T => bin::<T, And> as BinFn),
        (BinOp::BitOr, _) => with_int!(s, T => bin::<T, Or> as BinFn),
        (BinOp::BitXor, _) => with_int!(s, T => bin::<T, Xor> as BinFn),
        (BinOp::Eq, _) => num!(Eq),
        (BinOp::Ne, _) => num!(Ne),
        (BinOp::Lt, _) => num!(Lt),
        (BinOp::Le, _) => num!(Le),
        (BinOp::Gt, _) => num!(Gt),
        (BinOp::Ge, _) => num!(Ge),
        _ => None,
    }
}

/// `min`/`max` built-ins.
pub fn min_max(max: bool, s: Scalar) -> Option<BinFn> {
    if max {
        with_num!(s, T => bin::<T, Max> as BinFn)
    } else {
        with_num!(s, T => bin::<T, Min> as BinFn)
    }
}

fn div_checked<T: Int, const REM: bool>(
    d: &mut [u64],
    a: &[u64],
    b: &[u64],
    exec: u64,
) -> Result<(), (u32, Failure)> {
    for l in lanes(exec) {
        let (x, y) = (T::get(a[l]), T::get(b[l]));
        if y.is_zero() {
            let f = if REM {
                Failure::RemainderByZero
            } else {
                Failure::DivisionByZero
            };
            return Err((l as u32, f));
        }
        d[l] = if REM { x.rem_(y) } else { x.div_(y) }.put();
    }
    Ok(())
}

/// Shifts; the amount arrives converted to i64.
fn shift_checked<T: Int, const RIGHT: bool>(
    d: &mut [u64],
    a: &[u64],
    n: &[u64],
    exec: u64,
) -> Result<(), (u32, Failure)> {
    for l in lanes(exec) {
        let amount = n[l] as i64;
        if !(0..T::SHIFT_BITS).contains(&amount) {
            return Err((l as u32, Failure::ShiftOutOfRange(amount)));
        }
        let x = T::get(a[l]).to_i128();
        let r = if RIGHT { x >> amount } else { x << amount };
        d[l] = T::from_i128(r).put();
    }
    Ok(())
}

/// The checked lane-wise function for integer `/`, `%`, `<<`, `>>` on type `s` (the shift
/// amount is an i64).
pub fn checked(op: BinOp, s: Scalar) -> Option<CheckedFn> {
    match op {
        BinOp::Div => with_int!(s, T => div_checked::<T, false> as CheckedFn),
        BinOp::Rem => with_int!(s, T => div_checked::<T, true> as CheckedFn),
        BinOp::Shl => with_int!(s, T => shift_checked::<T, false> as CheckedFn),
        BinOp::Shr => with_int!(s, T => shift_checked::<T, true> as CheckedFn),
        _ => None,
    }
}

struct Neg;
impl<T: Num> UnK<T> for Neg {
    type Out = T;
    fn f(a: T) -> T {
        a.neg()
    }
}
struct Not;
impl<T: Int> UnK<T> for Not {
    type Out = T;
    fn f(a: T) -> T {
        a.not()
    }
}
struct BoolNot;
impl UnK<bool> for BoolNot {
    type Out = bool;
    fn f(a: bool) -> bool {
        !a
    }
}
struct Abs;
impl<T: Num> UnK<T> for Abs {
    type Out = T;
    fn f(a: T) -> T {
        a.abs_()
    }
}

/// Unary `-` and `!` on type `s`.
pub fn unary(op: UnOp, s: Scalar) -> Option<UnFn> {
    match (op, s) {
        (UnOp::Not, Scalar::Bool) => Some(un::<bool, BoolNot>),
        (UnOp::Not, _) => with_int!(s, T => un::<T, Not> as UnFn),
        (UnOp::Neg, _) => with_num!(s, T => un::<T, Neg> as UnFn),
    }
}

/// A conversion between two scalar types.
struct Conv<To>(std::marker::PhantomData<To>);
impl<F: Num, T: Num> UnK<F> for Conv<T> {
    type Out = T;
    #[inline(always)]
    fn f(a: F) -> T {
        if F::FLOAT {
            T::from_f64(a.to_f64())
        } else {
            T::from_i128(a.to_i128())
        }
    }
}

fn from_bool<T: Num>(d: &mut [u64], a: &[u64]) {
    for (d, &a) in d.iter_mut().zip(a) {
        *d = T::from_i128((a != 0) as i128).put();
    }
}

/// f16 to f32 over a wave: the slice conversion uses the CPU's F16C instructions.
fn f16_to_f32(d: &mut [u64], a: &[u64]) {
    let mut h = [f16::ZERO; 64];
    let mut f = [0f32; 64];
    for (h, &a) in h.iter_mut().zip(a) {
        *h = f16::from_bits(a as u16);
    }
    let n = a.len();
    h[..n].convert_to_f32_slice(&mut f[..n]);
    for (d, &f) in d.iter_mut().zip(&f[..n]) {
        *d = f.put();
    }
}

/// f32 to f16 over a wave (rounding to nearest even), batched like [`f16_to_f32`].
fn f32_to_f16(d: &mut [u64], a: &[u64]) {
    let mut h = [f16::ZERO; 64];
    let mut f = [0f32; 64];
    for (f, &a) in f.iter_mut().zip(a) {
        *f = f32::get(a);
    }
    let n = a.len();
    h[..n].convert_from_f32_slice(&f[..n]);
    for (d, h) in d.iter_mut().zip(&h[..n]) {
        *d = h.to_bits() as u64;
    }
}

/// Numeric conversion `from as to` (`None` where the DSL has no such cast).
pub fn cast(from: Scalar, to: Scalar) -> Option<UnFn> {
    match (from, to) {
        (Scalar::F16, Scalar::F32) => return Some(f16_to_f32),
        (Scalar::F32, Scalar::F16) => return Some(f32_to_f16),
        _ => {}
    }
    if from == Scalar::Bool {
        return with_num!(to, T => from_bool::<T> as UnFn);
    }
    with_num!(from, F => with_num!(to, T => un::<F, Conv<T>> as UnFn))?
}

macro_rules! f32_un {
    ($($name:ident => |$a:ident| -> $out:ty { $e:expr }),* $(,)?) => {$(
        struct $name;
        impl UnK<f32> for $name {
            type Out = $out;
            #[inline(always)]
            fn f($a: f32) -> $out { $e }
        }
    )*};
}

f32_un! {
    Exp => |a| -> f32 { a.exp() },
    Exp2 => |a| -> f32 { a.exp2() },
    Ln => |a| -> f32 { a.ln() },
    Log2 => |a| -> f32 { a.log2() },
    Sqrt => |a| -> f32 { a.sqrt() },
    Rsqrt => |a| -> f32 { 1.0 / a.sqrt() },
    Rcp => |a| -> f32 { 1.0 / a },
    Tanh => |a| -> f32 { a.tanh() },
    Sin => |a| -> f32 { a.sin() },
    Cos => |a| -> f32 { a.cos() },
    SinPi => |a| -> f32 { ((a as f64) * std::f64::consts::PI).sin() as f32 },
    CosPi => |a| -> f32 { ((a as f64) * std::f64::consts::PI).cos() as f32 },
    Floor => |a| -> f32 { a.floor() },
    IsNan => |a| -> bool { a.is_nan() },
    IsFinite => |a| -> bool { a.is_finite() },
}

/// One-operand built-ins (`abs` on type `s`, the rest on f32).
pub fn builtin_unary(op: Builtin, s: Scalar) -> Option<UnFn> {
    Some(match op {
        Builtin::Exp => un::<f32, Exp>,
        Builtin::Exp2 => un::<f32, Exp2>,
        Builtin::Log => un::<f32, Ln>,
        Builtin::Log2 => un::<f32, Log2>,
        Builtin::Sqrt => un::<f32, Sqrt>,
        Builtin::Rsqrt => un::<f32, Rsqrt>,
        Builtin::Rcp => un::<f32, Rcp>,
        Builtin::Tanh => un::<f32, Tanh>,
        Builtin::Sin => un::<f32, Sin>,
        Builtin::Cos => un::<f32, Cos>,
        Builtin::SinPi => un::<f32, SinPi>,
        Builtin::CosPi => un::<f32, CosPi>,

        Builtin::Floor => un::<f32, Floor>,
        Builtin::IsNan => un::<f32, IsNan>,
        Builtin::IsFinite => un::<f32, IsFinite>,
        Builtin::Abs => return with_num!(s, T => un::<T, Abs> as UnFn),
        _ => return None,
    })
}

fn fma(d: &mut [u64], a: &[u64], b: &[u64], c: &[u64]) {
    for (((d, &a), &b), &c) in d.iter_mut().zip(a).zip(b).zip(c) {
        *d = f32::get(a).mul_add(f32::get(b), f32::get(c)).put();
    }
}

/// Sum of the four signed-byte products of `a` and `b`, plus `c` (wrapping).
pub fn dp4a_lane(a: i32, b: i32, c: i32) -> i32 {
    let (x, y) = (a.to_le_bytes(), b.to_le_bytes());
    x.iter().zip(&y).fold(c, |acc, (&p, &q)| {
        acc.wrapping_add(p as i8 as i32 * q as i8 as i32)
    })
}

fn dp4a(d: &mut [u64], a: &[u64], b: &[u64], c: &[u64]) {
    for (((d, &a), &b), &c) in d.iter_mut().zip(a).zip(b).zip(c) {
        *d = dp4a_lane(i32::get(a), i32::get(b), i32::get(c)).put();
    }
}

/// `a · b + c` for each f16 of the words (low half, high half), rounded once: the product
/// of two f16 is exact in f64 and the sum rounds there before the rounding to f16, which
/// differs from a single rounding only in ties a tiny product would break.
pub fn hfma2_lane(a: u32, b: u32, c: u32) -> u32 {
    let half = |w: u32, i: u32| half::f16::from_bits((w >> (16 * i)) as u16).to_f64();
    (0..2).fold(0, |out, i| {
        let r = half::f16::from_f64(half(a, i) * half(b, i) + half(c, i));
        out | (r.to_bits() as u32) << (16 * i)
    })
}

fn hfma2(d: &mut [u64], a: &[u64], b: &[u64], c: &[u64]) {
    for (((d, &a), &b), &c) in d.iter_mut().zip(a).zip(b).zip(c) {
        *d = hfma2_lane(u32::get(a), u32::get(b), u32::get(c)).put();
    }
}

/// Three-operand built-ins.
pub fn builtin_ternary(op: Builtin) -> Option<TernFn> {
    match op {
        Builtin::Fma => Some(fma),
        Builtin::Dp4a => Some(dp4a),
        Builtin::Hfma2 => Some(hfma2),
        _ => None,
    }
}

fn combine<T: Val, K: BinK<T, Out = T>>(a: u64, b: u64) -> u64 {
    K::f(T::get(a), T::get(b)).put()
}

/// A reduction operator: how to combine two values and the value of an empty reduction
/// (`greta_sum`, `greta_maximum`, `greta_minimum`).
#[derive(Clone, Copy, Debug)]
pub struct Reducer {
    pub apply: CombineFn,
    pub identity: u64,
}

/// The reducer of `op` over type `s` (f32, i32 or u32).
pub fn reducer(op: ReduceOp, s: Scalar) -> Option<Reducer> {
    let apply: CombineFn = match op {
        ReduceOp::Sum => with_num!(s, T => combine::<T, Add> as CombineFn)?,
        ReduceOp::Max => with_num!(s, T => combine::<T, Max> as CombineFn)?,
        ReduceOp::Min => with_num!(s, T => combine::<T, Min> as CombineFn)?,
    };
    let identity = match (op, s) {
        (ReduceOp::Sum, _) => 0,
        (ReduceOp::Max, Scalar::F32) => f32::NEG_INFINITY.put(),
        (ReduceOp::Min, Scalar::F32) => f32::INFINITY.put(),
        (ReduceOp::Max, Scalar::I32) => i32::MIN.put(),
        (ReduceOp::Min, Scalar::I32) => i32::MAX.put(),
        (ReduceOp::Max, Scalar::U32) => 0,
        (ReduceOp::Min, Scalar::U32) => u32::MAX.put(),
        _ => return None,
    };
    Some(Reducer { apply, identity })
}

/// `greta_atomic_max` on f32: an integer max for non-negative values, an unsigned min
/// for negative ones (the bit patterns order that way).
fn atomic_max_f32(old: u64, v: u64) -> u64 {
    if f32::get(v) >= 0.0 {
        combine::<i32, Max>(old, v)
    } else {
        combine::<u32, Min>(old, v)
    }
}

/// The new value of an atomic read-modify-write on elements of type `s`.
pub fn atomic(op: AtomicOp, s: Scalar) -> Option<CombineFn> {
    match (op, s) {
        (AtomicOp::Add, Scalar::F32 | Scalar::I32 | Scalar::U32 | Scalar::U64) => {
            with_num!(s, T => combine::<T, Add> as CombineFn)
        }
        (AtomicOp::Max, Scalar::F32) => Some(atomic_max_f32),
        (AtomicOp::Max, Scalar::I32 | Scalar::U32) => {
            with_num!(s, T => combine::<T, Max> as CombineFn)
        }
        _ => None,
    }
}

/// The lane bits of a literal of type `s`; f16 and bf16 literals round through f32 as the
/// generated C++ does.
pub fn literal(lit: Lit, s: Scalar) -> u64 {
    let float = |v: f64| match s {
        Scalar::F16 => H(f16::from_f32(v as f32)).put(),
        Scalar::BF16 => B(bf16::from_f32(v as f32)).put(),
        _ => (v as f32).put(),
    };
    match lit {
        Lit::Bool(b) => b as u64,
        Lit::Int(v) if s.is_float() => float(v as f64),
        Lit::Int(v) if s == Scalar::Bool => (v != 0) as u64,
        Lit::Int(v) => int_bits(v, s),
        Lit::Float(v) if s.is_float() => float(v),
        Lit::Float(v) => int_bits(v as i128, s),
    }
}

/// An integer value truncated to type `s`, zero-extended to lane bits.
pub fn int_bits(v: i128, s: Scalar) -> u64 {
    let bits = s.bits();
    if bits >= 64 {
        v as u64
    } else {
        (v as u64) & ((1u64 << bits) - 1)
    }
}

/// The value of lane bits of integer type `s`, sign-extended where signed.
pub fn int_value(bits: u64, s: Scalar) -> i128 {
    let width = s.bits();
    if s.is_signed_int() && width < 128 {
        let shift = 64 - width.min(64);
        ((bits << shift) as i64 >> shift) as i128
    } else {
        bits as i128
    }
}

/// The value of float lane bits of type `s` as f32 (for traps and messages).
pub fn float_value(bits: u64, s: Scalar) -> f32 {
    match s {
        Scalar::F16 => H::get(bits).f(),
        Scalar::BF16 => B::get(bits).f(),
        _ => f32::get(bits),
    }
}

/// Iterates the set bits of a lane mask, lowest first.
pub fn lanes(mut mask: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if mask == 0 {
            None
        } else {
            let l = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            Some(l)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_bin(f: BinFn, a: u64, b: u64) -> u64 {
        let mut d = [0u64; 1];
        f(&mut d, &[a], &[b]);
        d[0]
    }

    #[test]
    fn ints_wrap_and_small_types_stay_in_range() {
        let add = binary(BinOp::Add, Scalar::U32).unwrap();
        assert_eq!(run_bin(add, u32::MAX as u64, 2), 1);
        let add8 = binary(BinOp::Add, Scalar::I8).unwrap();
        assert_eq!(run_bin(add8, 127, 1), 0x80);
        assert_eq!(int_value(0x80, Scalar::I8), -128);
        let lt = binary(BinOp::Lt, Scalar::I32).unwrap();
        assert_eq!(run_bin(lt, (-1i32).put(), 0), 1);
    }

    #[test]
    fn checked_ops_report_the_failing_lane() {
        let div = checked(BinOp::Div, Scalar::I32).unwrap();
        let mut d = [0u64; 3];
        let r = div(&mut d, &[6, 6, 6], &[2, 0, 3], 0b101);
        assert_eq!(r, Ok(()));
        assert_eq!(d, [3, 0, 2]);
        let r = div(&mut d, &[6, 6, 6], &[2, 0, 3], 0b111);
        assert_eq!(r, Err((1, Failure::DivisionByZero)));
        let shl = checked(BinOp::Shl, Scalar::U8).unwrap();
        assert_eq!(shl(&mut d, &[1], &[31], 1), Ok(()));
        assert_eq!(d[0], 0, "u8 shifts as int, then truncates");
        assert_eq!(
            shl(&mut d, &[1], &[32], 1),
            Err((0, Failure::ShiftOutOfRange(32)))
        );
    }

    #[test]
    fn casts_round_and_saturate() {
        let run = |f: UnFn, a: u64| {
            let mut d = [0u64; 1];
            f(&mut d, &[a]);
            d[0]
        };
        let f2i = cast(Scalar::F32, Scalar::I32).unwrap();
        assert_eq!(run(f2i, f32::NAN.put()), 0);
        assert_eq!(run(f2i, 3e10f32.put()), i32::MAX.put());
        let f2h = cast(Scalar::F32, Scalar::F16).unwrap();
        // 1 + 2^-11 is halfway between two f16 values: ties go to even.
        assert_eq!(run(f2h, (1.0f32 + 2f32.powi(-11)).put()), 0x3c00);
        let h2f = cast(Scalar::F16, Scalar::F32).unwrap();
        assert_eq!(run(h2f, 0x3c00), 1.0f32.put());
        let generic_h2f = with_num!(Scalar::F16, T => un::<T, Conv<f32>> as UnFn).unwrap();
        let generic_f2h = with_num!(Scalar::F32, T => un::<T, Conv<H>> as UnFn).unwrap();
        for bits in (0..=u16::MAX as u64).step_by(7) {
            assert_eq!(run(h2f, bits), run(generic_h2f, bits));
            let x = (bits as u32).wrapping_mul(0x9e37_79b9) as u64;
            assert_eq!(run(f2h, x), run(generic_f2h, x));
        }
        let i2u8 = cast(Scalar::I32, Scalar::U8).unwrap();
        assert_eq!(run(i2u8, 300i32.put()), 44);
    }

    #[test]
    fn dp4a_multiplies_signed_bytes() {
        let a = i32::from_le_bytes([1, 2, 0xff, 4]);
        let b = i32::from_le_bytes([5, 6, 7, 0x80]);
        assert_eq!(dp4a_lane(a, b, 10), 10 + 5 + 12 - 7 - 512);
    }

    #[test]
    fn hfma2_rounds_each_half_once() {
        let w = |lo: f32, hi: f32| {
            half::f16::from_f32(lo).to_bits() as u32
                | (half::f16::from_f32(hi).to_bits() as u32) << 16
        };
        // 1024 + 7 - 1024 is exact; 3 * 0.1 + 1 rounds once to f16.
        assert_eq!(
            hfma2_lane(w(1031.0, 3.0), w(1.0, 0.1), w(-1024.0, 1.0)),
            w(7.0, 1.3)
        );
        // The halves do not carry into each other.
        assert_eq!(
            hfma2_lane(w(-1.0, 65504.0), w(1.0, 1.0), w(0.0, -65504.0)),
            w(-1.0, 0.0)
        );
    }

    #[test]
    fn float_atomic_max_orders_negative_values() {
        let m = atomic(AtomicOp::Max, Scalar::F32).unwrap();
        let r = |a: f32, b: f32| f32::get(m(a.put(), b.put()));
        assert_eq!(r(-2.0, -1.0), -1.0);
        assert_eq!(r(-1.0, -2.0), -1.0);
        assert_eq!(r(1.0, 2.0), 2.0);
        assert_eq!(r(-1.0, 0.5), 0.5);
    }
}
