//! Continuous batching: one thread owns the batched engine. Between steps it admits queued
//! requests into free cache slots and drops those whose client has gone; each step then
//! advances every running sequence at once: one row per decoding sequence, plus up to a
//! chunk of prompt rows of the sequences still reading their prompts, so a long prompt
//! holds running streams up for one chunk at most.

use super::metrics::{Metrics, Outcome};
use super::text::ReplyText;
use crate::engine::batch::{BatchEngine, Row};
use crate::sampling::{Sampler, SamplingParams};
use crate::tokenizer::Tokenizer;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// Why a reply ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// A stop sequence or the end-of-sequence token.
    Stop,
    /// `max_tokens`, or the end of the context.
    Length,
}

impl Finish {
    /// OpenAI's `finish_reason`.
    pub fn reason(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
        }
    }
}

/// What a request hears from the scheduler, in order: text, then one `Done` or `Failed`.
#[derive(Debug, PartialEq)]
pub enum Event {
    /// Text to append to the reply.
    Text(String),
    Done {
        finish: Finish,
        prompt_tokens: usize,
        completion_tokens: usize,
    },
    /// The request could not be finished; the message says why.
    Failed(String),
}

/// A request on its way to the engine.
pub struct Job {
    pub id: u64,
    /// Checked against the context: at least one token, and room for `max_tokens` after.
    pub prompt: Vec<u32>,
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    pub stop: Vec<String>,
    /// Generate past the end-of-sequence token.
    pub ignore_eos: bool,
    pub events: UnboundedSender<Event>,
    pub arrived: Instant,
}

/// A sequence in a cache slot.
struct Sequence {
    job: Job,
    slot: u32,
    /// Prompt tokens in the cache so far.
    fed: usize,
    /// The position of the next row.
    pos: u32,
    /// The token the next decode row takes.
    next: u32,
    generated: usize,
    sampler: Sampler,
    text: ReplyText,
    recent: Vec<u32>,
    first_token: Option<Instant>,
}

impl Sequence {
    fn decoding(&self) -> bool {
        self.fed == self.job.prompt.len()
    }
}

/// The scheduler's settings.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Prompt rows per step, over all sequences reading their prompts.
    pub chunk: usize,
    pub eos: Option<u32>,
}

/// The engine's owner and its queue.
pub struct Scheduler {
    engine: BatchEngine,
    tokenizer: Arc<Tokenizer>,
    metrics: Arc<Metrics>,
    jobs: Receiver<Job>,
    /// Set when shutdown's grace period is over: every request still open fails.
    abort: Arc<AtomicBool>,
    settings: Settings,
    free: Vec<u32>,
    running: Vec<Sequence>,
}

/// Tokens of a sequence's recent history the sampler's repetition penalty looks at.
const RECENT: usize = 64;

impl Scheduler {
    pub fn new(
        engine: BatchEngine,
        tokenizer: Arc<Tokenizer>,
        metrics: Arc<Metrics>,
        jobs: Receiver<Job>,
        abort: Arc<AtomicBool>,
        settings: Settings,
    ) -> Scheduler {
        let free = (0..engine.slots() as u32).rev().collect();
        Scheduler {
            engine,
            tokenizer,
            metrics,
            jobs,
            abort,
            settings,
            free,
            running: Vec::new(),
        }
    }

    /// Runs until the queue's senders are gone and every admitted request has finished.
    pub fn run(mut self) {
        while self.admit() {
            if self.abort.load(Ordering::Relaxed) {
                self.fail_all("the server is shutting down");
                continue;
            }
            self.drop_cancelled();
            if self.running.is_empty() {
                continue;
            }
            if let Err(e) = self.step() {
                tracing::error!(error = %e, "batched step failed");
                self.fail_all(&format!("the engine failed: {e}"));
            }
        }
    }

    /// Moves queued requests into free slots (waiting for one when nothing runs). False
    /// once the queue is closed and empty and nothing runs.
    fn admit(&mut self) -> bool {
        while !self.free.is_empty() {
            let job = if self.running.is_empty() {
                match self.jobs.recv_timeout(Duration::from_millis(100)) {
                    Ok(job) => job,
                    Err(RecvTimeoutError::Timeout) => return true,
                    Err(RecvTimeoutError::Disconnected) => return false,
                }
            } else {
                match self.jobs.try_recv() {
                    Ok(job) => job,
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            };
            self.metrics.queue_depth.dec();
            if job.events.is_closed() {
                self.metrics.count(Outcome::Cancelled);
                continue;
            }
            let slot = self.free.pop().expect("a free slot");
            let sampler = Sampler::new(job.sampling);
            let text = ReplyText::new(job.stop.clone());
            self.running.push(Sequence {
                recent: job.prompt[job.prompt.len().saturating_sub(RECENT)..].to_vec(),
                job,
                slot,
                fed: 0,
                pos: 0,
                next: 0,
                generated: 0,
                sampler,
                text,
                first_token: None,
            });
        }
        self.metrics.active_sequences.set(self.running.len() as i64);
        true
    }

    /// Frees the slots of requests whose client has gone.
    fn drop_cancelled(&mut self) {
        let (gone, kept): (Vec<Sequence>, Vec<Sequence>) = std::mem::take(&mut self.running)
            .into_iter()
            .partition(|s| s.job.events.is_closed());
        self.running = kept;
        for s in gone {
            tracing::info!(id = s.job.id, generated = s.generated, "client went away");
            self.metrics.count(Outcome::Cancelled);
            self.free.push(s.slot);
        }
        self.metrics.active_sequences.set(self.running.len() as i64);
    }

    /// One batched step: the rows of every sequence, then each finished row's token.
    fn step(&mut self) -> Result<(), crate::engine::EngineError> {
        let mut rows = Vec::new();
        // (sequence, row) pairs whose logits choose a token.
        let mut choosing = Vec::new();
        for (i, s) in self.running.iter_mut().enumerate() {
            if s.decoding() {
                rows.push(Row {
                    token: s.next,
                    pos: s.pos,
                    slot: s.slot,
                    prompt: false,
                });
                s.pos += 1;
                choosing.push((i, rows.len() - 1));
            }
        }
        let mut room = self.settings.chunk;
        for (i, s) in self.running.iter_mut().enumerate() {
            if s.decoding() || room == 0 {
                continue;
            }
            let n = (s.job.prompt.len() - s.fed).min(room);
            for (k, &token) in s.job.prompt[s.fed..s.fed + n].iter().enumerate() {
                rows.push(Row {
                    token,
                    pos: (s.fed + k) as u32,
                    slot: s.slot,
                    prompt: true,
                });
            }
            s.fed += n;
            s.pos = s.fed as u32;
            room -= n;
            self.metrics.prompt_tokens.inc_by(n as u64);
            if s.decoding() {
                choosing.push((i, rows.len() - 1));
            }
        }
        self.metrics.step_rows.observe(rows.len() as f64);
        self.engine.step(&rows)?;
        let greedy = self.engine.tokens()?;
        let ctx = self.engine.ctx() as u32;
        let mut ended = Vec::new();
        for &(i, r) in &choosing {
            let s = &mut self.running[i];
            let token = if s.job.sampling.is_greedy() {
                greedy[r]
            } else {
                // Only a sampled row's logits leave the device.
                let logits = self.engine.row_logits(r)?;
                let recent = &s.recent[s.recent.len().saturating_sub(RECENT)..];
                s.sampler.sample(&logits, recent)
            };
            if s.first_token.is_none() {
                s.first_token = Some(Instant::now());
                self.metrics
                    .time_to_first_token
                    .observe(s.job.arrived.elapsed().as_secs_f64());
            }
            if Some(token) == self.settings.eos && !s.job.ignore_eos {
                ended.push((i, Finish::Stop));
                continue;
            }
            s.generated += 1;
            self.metrics.generated(1);
            // A token without text (a control token) adds nothing.
            let bytes = self.tokenizer.piece(token).unwrap_or_default();
            let delta = s.text.push(&bytes);
            if !delta.is_empty() {
                let _ = s.job.events.send(Event::Text(delta));
            }
            if s.text.stopped() {
                ended.push((i, Finish::Stop));
            } else if s.generated >= s.job.max_tokens || s.pos >= ctx {
                ended.push((i, Finish::Length));
            } else {
                s.next = token;
                s.recent.push(token);
            }
        }
        // Highest index first, so that the indices left stay valid.
        ended.sort_by_key(|(i, _)| *i);
        for (i, finish) in ended.into_iter().rev() {
            let mut s = self.running.swap_remove(i);
            let rest = s.text.finish();
            if !rest.is_empty() {
                let _ = s.job.events.send(Event::Text(rest));
            }
            let _ = s.job.events.send(Event::Done {
                finish,
                prompt_tokens: s.job.prompt.len(),
                completion_tokens: s.generated,
            });
            let ttft = s
                .first_token
                .map(|t| (t - s.job.arrived).as_secs_f64() * 1e3);
            tracing::info!(
                id = s.job.id,
                prompt_tokens = s.job.prompt.len(),
                completion_tokens = s.generated,
                finish = finish.reason(),
                ttft_ms = ttft.unwrap_or(0.0),
                total_ms = s.job.arrived.elapsed().as_secs_f64() * 1e3,
                "request completed"
            );
            self.metrics.count(Outcome::Completed);
            self.free.push(s.slot);
        }
        self.metrics.active_sequences.set(self.running.len() as i64);
        Ok(())
    }

    /// Ends every running and queued request with `why`.
    fn fail_all(&mut self, why: &str) {
        for s in self.running.drain(..) {
            let _ = s.job.events.send(Event::Failed(why.to_string()));
            self.metrics.count(Outcome::Failed);
            self.free.push(s.slot);
        }
        while let Ok(job) = self.jobs.try_recv() {
            self.metrics.queue_depth.dec();
            let _ = job.events.send(Event::Failed(why.to_string()));
            self.metrics.count(Outcome::Failed);
        }
        self.metrics.active_sequences.set(0);
    }
}
