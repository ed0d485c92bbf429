//! The HTTP side: OpenAI's routes over the scheduler's queue. A request is checked and
//! tokenized here (errors answered at once, naming the field), queued without waiting (a
//! full queue answers 429), and answered from the scheduler's events, as one JSON body or
//! as server-sent events. A client that goes away drops its receiver, which the scheduler
//! notices before its next step.

use super::api::{self, ApiError, Input, Request};
use super::metrics::{Metrics, Outcome};
use super::scheduler::{Event, Job};
use crate::tokenizer::{EncodeOptions, Tokenizer};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream, StreamExt};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio_stream::wrappers::UnboundedReceiverStream;

/// What every handler shares.
pub struct AppState {
    pub jobs: SyncSender<Job>,
    pub tokenizer: Arc<Tokenizer>,
    pub metrics: Arc<Metrics>,
    /// The model's id in requests and `/v1/models`.
    pub model: String,
    /// Positions per sequence.
    pub ctx: usize,
    /// Sequences at once, and requests that may wait for one.
    pub parallel: usize,
    pub queue: usize,
    pub next_id: AtomicU64,
    pub started: u64,
}

/// The routes.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/v1/models/{id}", get(model))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(state)
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn error(e: ApiError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    (status, Json(e.to_json())).into_response()
}

async fn not_found() -> Response {
    error(ApiError {
        status: 404,
        message: "no such route: the server answers POST /v1/chat/completions, POST \
                  /v1/completions, GET /v1/models, GET /health and GET /metrics"
            .into(),
        kind: "invalid_request_error",
        param: None,
    })
}

fn model_object(s: &AppState) -> Value {
    json!({"id": s.model, "object": "model", "created": s.started, "owned_by": "greta"})
}

async fn models(State(s): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({"object": "list", "data": [model_object(&s)]}))
}

async fn model(State(s): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    if id == s.model {
        Json(model_object(&s)).into_response()
    } else {
        error(ApiError {
            status: 404,
            message: format!(
                "the model `{id}` does not exist; this server serves `{}`",
                s.model
            ),
            kind: "invalid_request_error",
            param: Some("model".into()),
        })
    }
}

async fn health(State(s): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "model": s.model,
        "active_sequences": s.metrics.active_sequences.get(),
        "queued": s.metrics.queue_depth.get(),
        "parallel": s.parallel,
        "ctx": s.ctx,
    }))
}

async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

async fn chat(State(s): State<Arc<AppState>>, body: Bytes) -> Response {
    complete(s, body, true).await
}

async fn completions(State(s): State<Arc<AppState>>, body: Bytes) -> Response {
    complete(s, body, false).await
}

/// The prompt's tokens: a conversation through the model's chat template, or raw text
/// with the model's leading special tokens.
fn encode(tokenizer: &Tokenizer, input: &Input) -> Vec<u32> {
    match input {
        Input::Chat(messages) => tokenizer.encode(
            &tokenizer.chat_template().render(messages, true),
            EncodeOptions {
                add_special: false,
                parse_special: true,
            },
        ),
        Input::Text(text) => tokenizer.encode(
            text,
            EncodeOptions {
                add_special: true,
                parse_special: false,
            },
        ),
    }
}

/// The most tokens the reply may have after `prompt` tokens in a context of `ctx`, or why
/// the request cannot fit.
pub fn reply_budget(
    prompt: usize,
    max_tokens: Option<usize>,
    ctx: usize,
    chat: bool,
) -> Result<usize, ApiError> {
    let param = if chat { "messages" } else { "prompt" };
    if prompt == 0 {
        return Err(ApiError::field(param, "encodes to no tokens"));
    }
    if prompt >= ctx {
        return Err(ApiError::field(
            param,
            format!(
                "is {prompt} tokens, and the context holds {ctx} per sequence: no room is \
                 left for a reply"
            ),
        ));
    }
    let room = ctx - prompt;
    match max_tokens {
        None => Ok(room),
        Some(n) if n <= room => Ok(n),
        Some(n) => Err(ApiError::field(
            "max_tokens",
            format!(
                "{n} tokens after a prompt of {prompt} exceed the context of {ctx} tokens \
                 per sequence (at most {room})"
            ),
        )),
    }
}

async fn complete(s: Arc<AppState>, body: Bytes, chat: bool) -> Response {
    let arrived = Instant::now();
    let req = match api::parse(&body, chat, &s.model) {
        Ok(r) => r,
        Err(e) => {
            s.metrics.count(Outcome::Invalid);
            return error(e);
        }
    };
    let prompt = encode(&s.tokenizer, &req.input);
    let max_tokens = match reply_budget(prompt.len(), req.max_tokens, s.ctx, chat) {
        Ok(n) => n,
        Err(e) => {
            s.metrics.count(Outcome::Invalid);
            return error(e);
        }
    };
    let id = s.next_id.fetch_add(1, Ordering::Relaxed);
    let (events, rx) = unbounded_channel();
    let job = Job {
        id,
        prompt,
        max_tokens,
        sampling: req.sampling,
        stop: req.stop.clone(),
        ignore_eos: req.ignore_eos,
        events,
        arrived,
    };
    let prompt_tokens = job.prompt.len();
    s.metrics.queue_depth.inc();
    match s.jobs.try_send(job) {
        Ok(()) => {}
        Err(e) => {
            s.metrics.queue_depth.dec();
            let (status, message, kind) = match e {
                TrySendError::Full(_) => {
                    s.metrics.count(Outcome::Rejected);
                    (
                        429,
                        format!(
                            "the server is busy: {} sequences run and {} requests wait; \
                             retry later",
                            s.parallel, s.queue
                        ),
                        "rate_limit_error",
                    )
                }
                TrySendError::Disconnected(_) => {
                    s.metrics.count(Outcome::Failed);
                    (
                        503,
                        "the server is shutting down".to_string(),
                        "server_error",
                    )
                }
            };
            return error(ApiError {
                status,
                message,
                kind,
                param: None,
            });
        }
    }
    tracing::info!(
        id,
        endpoint = if chat { "chat" } else { "completions" },
        prompt_tokens,
        max_tokens,
        stream = req.stream,
        "request queued"
    );
    let reply = Reply {
        id: format!("{}-{id}", if chat { "chatcmpl" } else { "cmpl" }),
        chat,
        model: s.model.clone(),
        created: now(),
    };
    if req.stream {
        stream(reply, req, rx).into_response()
    } else {
        whole(reply, rx).await
    }
}

/// What every chunk or body of one reply repeats.
struct Reply {
    id: String,
    chat: bool,
    model: String,
    created: u64,
}

impl Reply {
    /// One choice with `text` (chat: as `delta` when streaming, `message` otherwise).
    fn body(&self, text: &str, finish: Option<&str>, streaming: bool) -> Value {
        let choice = match (self.chat, streaming) {
            (true, true) => {
                json!({"index": 0, "delta": {"content": text}, "finish_reason": finish})
            }
            (true, false) => json!({
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish,
            }),
            (false, _) => {
                json!({"index": 0, "text": text, "logprobs": null, "finish_reason": finish})
            }
        };
        let object = match (self.chat, streaming) {
            (true, true) => "chat.completion.chunk",
            (true, false) => "chat.completion",
            (false, _) => "text_completion",
        };
        json!({
            "id": self.id,
            "object": object,
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        })
    }
}

fn usage(prompt: usize, completion: usize) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    })
}

fn failure(message: String) -> ApiError {
    ApiError {
        status: 503,
        message,
        kind: "server_error",
        param: None,
    }
}

/// The reply as one body once generation ends.
async fn whole(reply: Reply, mut rx: UnboundedReceiver<Event>) -> Response {
    let mut text = String::new();
    while let Some(event) = rx.recv().await {
        match event {
            Event::Text(t) => text.push_str(&t),
            Event::Done {
                finish,
                prompt_tokens,
                completion_tokens,
            } => {
                let mut body = reply.body(&text, Some(finish.reason()), false);
                body["usage"] = usage(prompt_tokens, completion_tokens);
                return Json(body).into_response();
            }
            Event::Failed(why) => return error(failure(why)),
        }
    }
    error(failure("the scheduler stopped".into()))
}

/// The reply as server-sent events: a chunk per piece of text, one with the finish
/// reason (and one with the usage when asked), then `[DONE]`.
fn stream(
    reply: Reply,
    req: Request,
    rx: UnboundedReceiver<Event>,
) -> Sse<impl Stream<Item = Result<SseEvent, std::convert::Infallible>>> {
    let data = |v: Value| Ok(SseEvent::default().data(v.to_string()));
    let mut opening = Vec::new();
    if reply.chat {
        let mut first = reply.body("", None, true);
        first["choices"][0]["delta"] = json!({"role": "assistant", "content": ""});
        opening.push(data(first));
    }
    let include_usage = req.include_usage;
    let events = UnboundedReceiverStream::new(rx).map(move |event| -> Vec<Result<SseEvent, _>> {
        match event {
            Event::Text(t) => vec![data(reply.body(&t, None, true))],
            Event::Done {
                finish,
                prompt_tokens,
                completion_tokens,
            } => {
                let mut out = vec![data(reply.body("", Some(finish.reason()), true))];
                if include_usage {
                    let mut last = reply.body("", None, true);
                    last["choices"] = json!([]);
                    last["usage"] = usage(prompt_tokens, completion_tokens);
                    out.push(data(last));
                }
                out.push(Ok(SseEvent::default().data("[DONE]")));
                out
            }
            Event::Failed(why) => vec![
                data(failure(why).to_json()),
                Ok(SseEvent::default().data("[DONE]")),
            ],
        }
    });
    let all = stream::iter(opening).chain(events.flat_map(stream::iter));
    Sse::new(all).keep_alive(KeepAlive::default())
}
