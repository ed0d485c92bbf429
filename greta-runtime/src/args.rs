//! Launch geometry and kernel arguments.

use crate::buffer::{Buffer, RawBuffer};
use crate::element::Element;
use greta_codegen::Scalar;

/// Number of blocks in each grid dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Grid {
    pub x: u32,
    pub y: u32,
    pub z: u32,
}

impl Grid {
    /// Total number of blocks.
    pub fn blocks(&self) -> u64 {
        self.x as u64 * self.y as u64 * self.z as u64
    }
}

impl From<u32> for Grid {
    fn from(x: u32) -> Grid {
        Grid { x, y: 1, z: 1 }
    }
}

impl From<(u32, u32)> for Grid {
    fn from((x, y): (u32, u32)) -> Grid {
        Grid { x, y, z: 1 }
    }
}

impl From<(u32, u32, u32)> for Grid {
    fn from((x, y, z): (u32, u32, u32)) -> Grid {
        Grid { x, y, z }
    }
}

/// A scalar argument: its kernel type and its bits (little-endian, zero-extended).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScalarArg {
    pub ty: Scalar,
    pub bits: u64,
}

/// One kernel argument.
#[derive(Clone, Copy, Debug)]
pub enum Arg<'a> {
    Buffer {
        buffer: &'a RawBuffer,
        elem: Scalar,
        mutable: bool,
    },
    Scalar(ScalarArg),
}

impl<'a, T: Element> From<&'a Buffer<T>> for Arg<'a> {
    fn from(b: &'a Buffer<T>) -> Arg<'a> {
        Arg::Buffer {
            buffer: b.raw(),
            elem: T::SCALAR,
            mutable: false,
        }
    }
}

impl<'a, T: Element> From<&'a mut Buffer<T>> for Arg<'a> {
    fn from(b: &'a mut Buffer<T>) -> Arg<'a> {
        Arg::Buffer {
            buffer: b.raw(),
            elem: T::SCALAR,
            mutable: true,
        }
    }
}

impl<T: Element> From<T> for Arg<'_> {
    fn from(v: T) -> Self {
        let bytes = bytemuck::bytes_of(&v);
        let mut word = [0u8; 8];
        word[..bytes.len()].copy_from_slice(bytes);
        Arg::Scalar(ScalarArg {
            ty: T::SCALAR,
            bits: u64::from_le_bytes(word),
        })
    }
}

impl From<bool> for Arg<'_> {
    fn from(v: bool) -> Self {
        Arg::Scalar(ScalarArg {
            ty: Scalar::Bool,
            bits: v as u64,
        })
    }
}
