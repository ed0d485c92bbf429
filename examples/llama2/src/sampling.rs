//! Token sampling on the host: temperature, top-k, top-p and a repetition penalty, with a
//! seeded generator. Greedy decoding never comes here: the argmax runs on the device.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Sampling parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature; 0 means greedy.
    pub temperature: f32,
    /// Keep only the k most likely tokens (0: all).
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

impl SamplingParams {
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
        if p.top_k > 0 {
            scored.truncate(p.top_k);
        }
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
                top_k: 0,
                top_p: 1.0,
                seed,
                ..SamplingParams::default()
            });
            (0..20).map(|_| s.sample(&logits, &[])).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }
}
