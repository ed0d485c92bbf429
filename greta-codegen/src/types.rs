//! Value types of the kernel language.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A scalar element type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Scalar {
    Bool,
    I8,
    U8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F16,
    BF16,
    F32,
}

impl Scalar {
    /// All scalar types, in the order the DSL documents them.
    pub const ALL: [Scalar; 12] = [
        Scalar::Bool,
        Scalar::I8,
        Scalar::U8,
        Scalar::I16,
        Scalar::U16,
        Scalar::I32,
        Scalar::U32,
        Scalar::I64,
        Scalar::U64,
        Scalar::F16,
        Scalar::BF16,
        Scalar::F32,
    ];

    /// The DSL (Rust) spelling, e.g. `f32`.
    pub fn name(self) -> &'static str {
        match self {
            Scalar::Bool => "bool",
            Scalar::I8 => "i8",
            Scalar::U8 => "u8",
            Scalar::I16 => "i16",
            Scalar::U16 => "u16",
            Scalar::I32 => "i32",
            Scalar::U32 => "u32",
            Scalar::I64 => "i64",
            Scalar::U64 => "u64",
            Scalar::F16 => "f16",
            Scalar::BF16 => "bf16",
            Scalar::F32 => "f32",
        }
    }

    /// Parses a DSL scalar type name.
    pub fn from_name(name: &str) -> Option<Scalar> {
        Scalar::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Size in bytes.
    pub fn size(self) -> u32 {
        match self {
            Scalar::Bool | Scalar::I8 | Scalar::U8 => 1,
            Scalar::I16 | Scalar::U16 | Scalar::F16 | Scalar::BF16 => 2,
            Scalar::I32 | Scalar::U32 | Scalar::F32 => 4,
            Scalar::I64 | Scalar::U64 => 8,
        }
    }

    /// True for f16, bf16 and f32.
    pub fn is_float(self) -> bool {
        matches!(self, Scalar::F16 | Scalar::BF16 | Scalar::F32)
    }

    /// True for the integer types (not bool).
    pub fn is_int(self) -> bool {
        !self.is_float() && self != Scalar::Bool
    }

    /// True for the signed integer types.
    pub fn is_signed_int(self) -> bool {
        matches!(self, Scalar::I8 | Scalar::I16 | Scalar::I32 | Scalar::I64)
    }

    /// Bit width.
    pub fn bits(self) -> u32 {
        self.size() * 8
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Vector lane counts the DSL accepts; a vector is at most 16 bytes (one wide memory access).
pub const VECTOR_LANES: [u8; 4] = [2, 4, 8, 16];

/// A value type. `Infer`, `Generic` and `Unknown` exist only while the front end checks a
/// kernel; validated IR contains none of them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Type {
    /// No value (statements, functions without a result).
    Void,
    Scalar(Scalar),
    /// A packed vector of `lanes` scalars (16 bytes at most), for wide loads and stores.
    Vector(Scalar, u8),
    /// A register array of compile-time length.
    Array(Box<Type>, u32),
    /// A matrix-core fragment: a wave-level tile whose elements are spread over the lanes
    /// (its per-lane length depends on the target's wave size).
    Frag(Frag),
    /// An unsuffixed literal whose type is not decided yet (front end only).
    Infer(InferVar),
    /// The `i`-th type parameter of a generic kernel before specialisation (front end only).
    Generic(u8),
    /// The result of a device function whose signature is not visible yet (front end only).
    Unknown,
}

/// An inference variable for an unsuffixed literal: integer or float kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InferVar {
    pub id: u32,
    pub float: bool,
}

impl Type {
    /// Shorthand for `Type::Scalar`.
    pub const fn scalar(s: Scalar) -> Type {
        Type::Scalar(s)
    }

    /// The scalar if this is one.
    pub fn as_scalar(&self) -> Option<Scalar> {
        match self {
            Type::Scalar(s) => Some(*s),
            _ => None,
        }
    }

    /// The element scalar of a scalar or vector type.
    pub fn elem_scalar(&self) -> Option<Scalar> {
        match self {
            Type::Scalar(s) | Type::Vector(s, _) => Some(*s),
            _ => None,
        }
    }

    /// Lanes of a vector, 1 for a scalar.
    pub fn lanes(&self) -> u8 {
        match self {
            Type::Vector(_, n) => *n,
            _ => 1,
        }
    }

    /// Size in bytes of a concrete scalar, vector or array type.
    pub fn size(&self) -> Option<u32> {
        match self {
            Type::Scalar(s) => Some(s.size()),
            Type::Vector(s, n) => Some(s.size() * *n as u32),
            Type::Array(t, n) => t.size().map(|s| s * n),
            _ => None,
        }
    }

    /// True if the type contains no front-end placeholders.
    pub fn is_concrete(&self) -> bool {
        match self {
            Type::Void | Type::Scalar(_) | Type::Vector(..) | Type::Frag(_) => true,
            Type::Array(t, _) => t.is_concrete(),
            Type::Infer(_) | Type::Generic(_) | Type::Unknown => false,
        }
    }

    /// Parses a vector type name such as `f16x8`.
    pub fn vector_from_name(name: &str) -> Option<Type> {
        let (elem, lanes) = name.rsplit_once('x')?;
        let elem = Scalar::from_name(elem)?;
        let lanes: u8 = lanes.parse().ok()?;
        if elem == Scalar::Bool || !VECTOR_LANES.contains(&lanes) || elem.size() * lanes as u32 > 16
        {
            return None;
        }
        Some(Type::Vector(elem, lanes))
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::Void => f.write_str("()"),
            Type::Scalar(s) => write!(f, "{s}"),
            Type::Vector(s, n) => write!(f, "{s}x{n}"),
            Type::Array(t, n) => write!(f, "[{t}; {n}]"),
            Type::Frag(frag) => write!(f, "{frag}"),
            Type::Infer(v) if v.float => f.write_str("{float}"),
            Type::Infer(_) => f.write_str("{integer}"),
            Type::Generic(i) => write!(f, "<type parameter {i}>"),
            Type::Unknown => f.write_str("_"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_names_parse_only_legal_shapes() {
        assert_eq!(
            Type::vector_from_name("f16x8"),
            Some(Type::Vector(Scalar::F16, 8))
        );
        assert_eq!(
            Type::vector_from_name("u32x4"),
            Some(Type::Vector(Scalar::U32, 4))
        );
        assert_eq!(
            Type::vector_from_name("f32x8"),
            None,
            "32 bytes is too wide"
        );
        assert_eq!(Type::vector_from_name("f32x3"), None);
        assert_eq!(Type::vector_from_name("boolx4"), None);
    }

    #[test]
    fn scalar_names_round_trip() {
        for s in Scalar::ALL {
            assert_eq!(Scalar::from_name(s.name()), Some(s));
        }
    }
}

/// Which operand of the product a fragment holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FragRole {
    /// The left operand: 16 rows of K values.
    A,
    /// The right operand: 16 output columns of K values each.
    B,
    /// The 16 x 16 accumulator.
    C,
}

/// A fragment type: its role and element type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Frag {
    pub role: FragRole,
    pub elem: Scalar,
}
