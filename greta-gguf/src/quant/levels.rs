//! Integer levels <-> values: the arithmetic shared by the block formats.

/// Writes `(level - zero) * d`, subtracting in integers first as ggml does.
pub(super) fn offset_values<L: Copy + Into<i32>>(levels: &[L], zero: i32, d: f32, out: &mut [f32]) {
    for (o, &l) in out.iter_mut().zip(levels) {
        *o = (l.into() - zero) as f32 * d;
    }
}

/// Writes `level * d + m`.
pub(super) fn affine_values(levels: &[u8], d: f32, m: f32, out: &mut [f32]) {
    for (o, &l) in out.iter_mut().zip(levels) {
        *o = f32::from(l) * d + m;
    }
}

/// The value of largest magnitude with its sign (0 for an empty or all-zero slice).
pub(super) fn signed_absmax(x: &[f32]) -> f32 {
    x.iter().fold(
        0.0,
        |best: f32, &v| if v.abs() > best.abs() { v } else { best },
    )
}

/// `1 / d`, or 0 for a zero scale so that an all-zero block encodes as zeros.
pub(super) fn inverse(d: f32) -> f32 {
    if d == 0.0 {
        0.0
    } else {
        1.0 / d
    }
}

/// `x * inv + zero` rounded half up and clamped to `0..=max`; adding `zero + 0.5` before
/// truncating is ggml's own rounding for the 32-element formats.
pub(super) fn level(x: f32, inv: f32, zero: f32, max: u8) -> u8 {
    (x * inv + (zero + 0.5)).floor().clamp(0.0, f32::from(max)) as u8
}

/// Quantises `x` to signed 8-bit levels with scale `amax / 127`; returns the scale.
pub(super) fn quantize_i8(x: &[f32], qs: &mut [i8]) -> f32 {
    let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let inv = inverse(d);
    for (q, &v) in qs.iter_mut().zip(x) {
        *q = (v * inv).round() as i8;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_rounds_half_up_and_clamps() {
        assert_eq!(level(-8.0, 1.0, 8.0, 15), 0);
        assert_eq!(level(-0.5, 1.0, 8.0, 15), 8);
        assert_eq!(level(-0.51, 1.0, 8.0, 15), 7);
        assert_eq!(level(8.0, 1.0, 8.0, 15), 15);
        assert_eq!(level(-100.0, 1.0, 0.0, 15), 0);
    }

    #[test]
    fn signed_absmax_keeps_the_sign() {
        assert_eq!(signed_absmax(&[0.5, -2.0, 1.5]), -2.0);
        assert_eq!(signed_absmax(&[0.0, 0.0]), 0.0);
    }
}
