//! `llama2 serve`: an OpenAI-compatible HTTP server over the batched engine. Requests are
//! checked and queued by the HTTP side (`http`), run by continuous batching on one thread
//! that owns the engine (`scheduler`), and answered as whole bodies or server-sent events;
//! `/metrics` exposes the counters of `metrics`.

pub mod api;
pub mod http;
pub mod metrics;
pub mod scheduler;
pub mod text;

use crate::engine::batch::BatchEngine;
use crate::tokenizer::Tokenizer;
use anyhow::Context;
use axum::serve::ListenerExt;
use metrics::Metrics;
use scheduler::{Scheduler, Settings};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How the server listens and queues.
#[derive(Clone, Debug)]
pub struct Options {
    pub host: String,
    /// 0 picks a free port (the address is printed).
    pub port: u16,
    /// The model's id in requests.
    pub model: String,
    /// Requests that may wait for a sequence slot; more get 429.
    pub queue: usize,
    /// Prompt rows per batched step.
    pub chunk: usize,
    /// How long shutdown waits for in-flight requests before failing them.
    pub grace: Duration,
}

/// Serves `engine` until SIGINT or SIGTERM, then finishes the requests in flight (failing
/// those still open after `grace`) and returns.
pub fn serve(engine: BatchEngine, tokenizer: Tokenizer, o: &Options) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let tokenizer = Arc::new(tokenizer);
    let (jobs, queue) = std::sync::mpsc::sync_channel(o.queue);
    let abort = Arc::new(AtomicBool::new(false));
    let (parallel, ctx) = (engine.slots(), engine.ctx());
    let settings = Settings {
        chunk: o.chunk,
        eos: tokenizer.eos(),
    };
    let scheduler = Scheduler::new(
        engine,
        tokenizer.clone(),
        metrics.clone(),
        queue,
        abort.clone(),
        settings,
    );
    let worker = std::thread::Builder::new()
        .name("scheduler".into())
        .spawn(move || scheduler.run())
        .context("starting the scheduler thread")?;
    let state = Arc::new(http::AppState {
        jobs,
        tokenizer,
        metrics,
        model: o.model.clone(),
        ctx,
        parallel,
        queue: o.queue,
        next_id: AtomicU64::new(1),
        started: http::now(),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let served = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind((o.host.as_str(), o.port))
            .await
            .with_context(|| format!("binding {}:{}", o.host, o.port))?;
        let address = listener.local_addr()?;
        eprintln!("listening on http://{address}");
        tracing::info!(%address, model = %o.model, parallel, ctx, "serving");
        // Every chunk of a stream is a small write: without TCP_NODELAY the next one waits
        // for the client's delayed acknowledgement of the last.
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::warn!(error = %e, "TCP_NODELAY not set");
            }
        });
        axum::serve(listener, http::router(state))
            .with_graceful_shutdown(shutdown(abort, o.grace))
            .await
            .context("serving HTTP")
    });
    // The router, and with it the queue's sender, is gone: the scheduler ends once the
    // requests it holds are done.
    if worker.join().is_err() {
        anyhow::bail!("the scheduler thread panicked");
    }
    served
}

/// Resolves at SIGINT or SIGTERM, and fails whatever is still open `grace` later.
async fn shutdown(abort: Arc<AtomicBool>, grace: Duration) {
    let interrupt = tokio::signal::ctrl_c();
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
    tracing::info!(
        grace_s = grace.as_secs_f64(),
        "shutting down: finishing the requests in flight"
    );
    tokio::spawn(async move {
        tokio::time::sleep(grace).await;
        abort.store(true, Ordering::Relaxed);
    });
}
