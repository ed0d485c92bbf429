//! Token sampling on the host: temperature, top-k, top-p and a repetition penalty, with a
//! seeded generator. Greedy decoding never comes here: the argmax runs on the device.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Sampling parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature; 0 means greedy.
    pub temperature: f32,
    /// Keep only the k most likely tokens (at least 1; the vocabulary size keeps all).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p (1: all).
    pub top_p: f32,
    /// Divide positive logits (multiply negative ones) of recent tokens by this (1: off).
    pub repetition_penalty: f32,
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: 40,
            top_p: 0.95,
            repetition_penalty: 1.0,
            seed: 0,
        }
    }
}

/// A sampling parameter outside its range; the message names the flag.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("--{flag} {value}: {expected}")]
pub struct SamplingError {
    pub flag: &'static str,
    pub value: String,
    pub expected: &'static str,
}

/// What `--temperature` accepts.
pub const TEMPERATURE_RANGE: &str = "must be a finite number, 0 (greedy) or more";
/// What `--top-p` accepts.
pub const TOP_P_RANGE: &str = "must be a finite number above 0 and at most 1";
/// What `--top-k` accepts.
pub const TOP_K_RANGE: &str = "must be at least 1 (the vocabulary size keeps every token)";
/// What `--repetition-penalty` accepts.
pub const PENALTY_RANGE: &str = "must be a finite number above 0 (1 turns it off)";

/// Whether a temperature is usable: a NaN would make every comparison false and pick the
/// least likely token.
pub fn temperature_ok(t: f32) -> bool {
    t.is_finite() && t >= 0.0
}

pub fn top_p_ok(p: f32) -> bool {
    p.is_finite() && p > 0.0 && p <= 1.0
}

pub fn top_k_ok(k: usize) -> bool {
    k >= 1
}

pub fn penalty_ok(r: f32) -> bool {
    r.is_finite() && r > 0.0
}

impl SamplingParams {
    /// Checks every parameter against its range.
    pub fn validate(&self) -> Result<(), SamplingError> {
        let bad = |flag, value: String, expected| {
            Err(SamplingError {
                flag,
                value,
                expected,
            })
        };
        if !temperature_ok(self.temperature) {
            return bad(
                "temperature",
                self.temperature.to_string(),
                TEMPERATURE_RANGE,
            );
        }
        if !top_p_ok(self.top_p) {
            return bad("top-p", self.top_p.to_string(), TOP_P_RANGE);
        }
        if !top_k_ok(self.top_k) {
            return bad("top-k", self.top_k.to_string(), TOP_K_RANGE);
        }
        if !penalty_ok(self.repetition_penalty) {
            return bad(
                "repetition-penalty",
                self.repetition_penalty.to_string(),
                PENALTY_RANGE,
            );
        }
        Ok(())
    }

    /// True when the device's argmax decides.
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0 && self.repetition_penalty == 1.0
    }
}

/// A sampler with its random state.
pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
}

impl Sampler {
    /// A sampler seeded from the parameters.
    pub fn new(params: SamplingParams) -> Sampler {
        Sampler {
            rng: StdRng::seed_from_u64(params.seed),
            params,
        }
    }

    /// Picks the next token from `logits`, penalising tokens in `recent`.
    pub fn sample(&mut self, logits: &[f32], recent: &[u32]) -> u32 {
        let p = self.params;
        let mut scored: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, l)| (i as u32, *l))
            .collect();
        if p.repetition_penalty != 1.0 {
            for &t in recent {
                if let Some(s) = scored.get_mut(t as usize) {
                    s.1 = if s.1 > 0.0 {
                        s.1 / p.repetition_penalty
                    } else {
                        s.1 * p.repetition_penalty
                    };
                }
            }
        }
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if p.temperature <= 0.0 {
            return scored[0].0;
        }
        scored.truncate(p.top_k.max(1));
        let max = scored[0].1;
        let mut probs: Vec<f64> = scored
            .iter()
            .map(|(_, l)| (((l - max) / p.temperature) as f64).exp())
            .collect();
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|q| *q /= total);
        let mut keep = probs.len();
        let mut acc = 0.0;
        for (i, q) in probs.iter().enumerate() {
            acc += q;
            if acc >= p.top_p as f64 {
                keep = i + 1;
                break;
            }
        }
        let kept: f64 = probs[..keep].iter().sum();
        let mut u = self.rng.gen::<f64>() * kept;
        for (i, q) in probs[..keep].iter().enumerate() {
            if u < *q {
                return scored[i].0;
            }
            u -= q;
        }
        scored[keep - 1].0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_temperature_is_argmax_and_penalty_applies() {
        let logits = [0.1, 2.0, 1.9, -3.0];
        let mut s = Sampler::new(SamplingParams::default());
        assert_eq!(s.sample(&logits, &[]), 1);
        let mut s = Sampler::new(SamplingParams {
            repetition_penalty: 1.5,
            ..SamplingParams::default()
        });
        assert_eq!(s.sample(&logits, &[1]), 2, "2.0 / 1.5 falls below 1.9");
    }

    #[test]
    fn top_k_one_is_greedy_and_sampling_is_seeded() {
        let logits: Vec<f32> = (0..100).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut s = Sampler::new(SamplingParams {
            temperature: 1.0,
            top_k: 1,
            ..SamplingParams::default()
        });
        let best = logits
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i as u32);
        assert_eq!(Some(s.sample(&logits, &[])), best);
        let draw = |seed| {
            let mut s = Sampler::new(SamplingParams {
                temperature: 1.0,
                top_k: logits.len(),
                top_p: 1.0,
                seed,
                ..SamplingParams::default()
            });
            (0..20).map(|_| s.sample(&logits, &[])).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn out_of_range_parameters_are_refused_naming_the_flag() {
        let ok = SamplingParams::default();
        assert_eq!(ok.validate(), Ok(()));
        let cases = [
            (
                SamplingParams {
                    temperature: f32::NAN,
                    ..ok
                },
                "--temperature NaN",
            ),
            (
                SamplingParams {
                    temperature: -1.0,
                    ..ok
                },
                "--temperature -1",
            ),
            (
                SamplingParams {
                    temperature: f32::INFINITY,
                    ..ok
                },
                "--temperature inf",
            ),
            (SamplingParams { top_p: 2.0, ..ok }, "--top-p 2"),
            (
                SamplingParams {
                    top_p: f32::NAN,
                    ..ok
                },
                "--top-p NaN",
            ),
            (SamplingParams { top_p: -0.5, ..ok }, "--top-p -0.5"),
            (SamplingParams { top_p: 0.0, ..ok }, "--top-p 0"),
            (SamplingParams { top_k: 0, ..ok }, "--top-k 0"),
            (
                SamplingParams {
                    repetition_penalty: 0.0,
                    ..ok
                },
                "--repetition-penalty 0",
            ),
            (
                SamplingParams {
                    repetition_penalty: f32::NAN,
                    ..ok
                },
                "--repetition-penalty NaN",
            ),
        ];
        for (params, message) in cases {
            let err = params.validate().expect_err(message).to_string();
            assert!(
                err.starts_with(message),
                "{err} should start with {message}"
            );
        }
    }
}
