//! `llama2 serve` as a client sees it, on the CPU backend with a small random model: every
//! kind of bad input answered with a 4xx naming the problem while the server keeps
//! serving, seeded and greedy replies that do not depend on what else runs, a client that
//! disconnects mid-stream freeing its slot, a bounded load of 32 concurrent streaming
//! clients (every request completes or gets 429), and a graceful shutdown that finishes
//! the stream in flight.

mod common;

use llama2::genmodel::{Preset, Recipe};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Positions per sequence of the test servers.
const CTX: usize = 64;

/// A running server process, killed when dropped.
struct Server {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts `llama2 serve` on a random Q4_K_M model of the tiny preset.
    fn start(parallel: usize, queue: usize) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let model = dir.path().join("tiny.gguf");
        std::fs::write(
            &model,
            common::generated(Preset::Tiny.config(), Recipe::Q4KM, 3),
        )
        .expect("model written");
        let (parallel, queue) = (parallel.to_string(), queue.to_string());
        let ctx = CTX.to_string();
        let (child, base) = common::serve(&[
            "--grace".as_ref(),
            "20".as_ref(),
            "--ctx".as_ref(),
            ctx.as_ref(),
            "--chunk".as_ref(),
            "16".as_ref(),
            "--parallel".as_ref(),
            parallel.as_ref(),
            "--queue".as_ref(),
            queue.as_ref(),
            "--model".as_ref(),
            model.as_os_str(),
        ]);
        Server {
            child,
            base,
            _dir: dir,
        }
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into()
    }

    /// POSTs `body` (raw text) to `path`: the status and the body.
    fn post(&self, path: &str, body: &str) -> (u16, String) {
        let mut r = Self::agent()
            .post(&format!("{}{path}", self.base))
            .header("Content-Type", "application/json")
            .send(body)
            .expect("request sent");
        let status = r.status().as_u16();
        (status, r.body_mut().read_to_string().expect("body"))
    }

    fn get(&self, path: &str) -> (u16, String) {
        let mut r = Self::agent()
            .get(&format!("{}{path}", self.base))
            .call()
            .expect("request sent");
        let status = r.status().as_u16();
        (status, r.body_mut().read_to_string().expect("body"))
    }

    /// A completion's text (greedy unless `extra` says otherwise).
    fn complete(&self, prompt: &str, extra: Value) -> Value {
        let mut body =
            json!({"model": "tiny", "prompt": prompt, "max_tokens": 8, "temperature": 0});
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        let (status, text) = self.post("/v1/completions", &body.to_string());
        assert_eq!(status, 200, "{text}");
        serde_json::from_str(&text).expect("JSON reply")
    }

    /// The value of the first metric line starting with `name`.
    fn metric(&self, name: &str) -> f64 {
        let (_, text) = self.get("/metrics");
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a streaming completion request: the status and the body as it arrives.
fn open_stream(base: &str, body: &Value) -> (u16, BufReader<impl Read>) {
    let r = Server::agent()
        .post(&format!("{base}/v1/completions"))
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .expect("request sent");
    let status = r.status().as_u16();
    (status, BufReader::new(r.into_body().into_reader()))
}

/// A streamed reply: its data payloads, in order, until `[DONE]` or the end of the body.
fn stream(server: &Server, body: Value) -> (u16, Vec<String>) {
    let (status, reader) = open_stream(&server.base, &body);
    let data = reader
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| l.strip_prefix("data: ").map(str::to_string))
        .collect();
    (status, data)
}

#[test]
fn bad_input_gets_a_4xx_naming_the_problem_and_the_server_keeps_serving() {
    let s = Server::start(2, 4);
    let long = "word ".repeat(200);
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "/v1/completions",
            "{\"model\": ".into(),
            400,
            "not valid JSON",
        ),
        ("/v1/completions", "[1, 2]".into(), 400, "JSON object"),
        (
            "/v1/completions",
            json!({"model": "tiny", "prompt": "hi", "max_tokens": "ten"}).to_string(),
            400,
            "max_tokens",
        ),
        (
            "/v1/completions",
            json!({"model": "tiny", "prompt": long}).to_string(),
            400,
            "context holds 64",
        ),
        (
            "/v1/completions",
            json!({"model": "tiny", "prompt": "hi", "max_tokens": 0}).to_string(),
            400,
            "max_tokens",
        ),
        (
            "/v1/completions",
            json!({"model": "tiny", "prompt": "hi", "max_tokens": 100000}).to_string(),
            400,
            "exceed the context",
        ),
        (
            "/v1/chat/completions",
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}).to_string(),
            404,
            "gpt-4o",
        ),
        (
            "/v1/chat/completions",
            json!({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "n": 2})
                .to_string(),
            400,
            "n = 1",
        ),
        (
            "/v1/chat/completions",
            json!({"model": "tiny", "messages": "hi"}).to_string(),
            400,
            "messages",
        ),
        ("/v1/embeddings", "{}".into(), 404, "no such route"),
    ];
    for (path, body, status, needle) in cases {
        let (got, text) = s.post(path, &body);
        assert_eq!(got, status, "{path} {body}: {text}");
        let error: Value = serde_json::from_str(&text).expect("an OpenAI error body");
        let message = error["error"]["message"].as_str().unwrap_or_default();
        let param = error["error"]["param"].as_str().unwrap_or_default();
        assert!(
            message.contains(needle) || param.contains(needle),
            "{path} {body}: {text}"
        );
        assert_eq!(s.get("/health").0, 200);
    }
    let reply = s.complete("Once upon a time", json!({}));
    assert_eq!(reply["object"], "text_completion");
    assert!(reply["usage"]["completion_tokens"].as_u64().unwrap_or(0) >= 1);
    let (status, models) = s.get("/v1/models");
    assert_eq!(status, 200);
    assert!(models.contains("\"tiny\""), "{models}");
    assert!(s.metric("greta_requests_total{outcome=\"invalid\"}") >= 9.0);
}

#[test]
fn replies_do_not_depend_on_what_else_runs_and_seeds_reproduce() {
    let s = Server::start(4, 8);
    let greedy = s.complete("The quick brown fox", json!({}));
    let seeded = json!({"temperature": 0.9, "seed": 42, "top_p": 0.95});
    let sampled = s.complete("The quick brown fox", seeded.clone());
    assert_eq!(sampled, {
        let again = s.complete("The quick brown fox", seeded.clone());
        let mut a = again.clone();
        a["id"] = sampled["id"].clone();
        a["created"] = sampled["created"].clone();
        a
    });
    // The same two requests while three others run beside them.
    let s = Arc::new(s);
    let others: Vec<_> = (0..3)
        .map(|i| {
            let s = s.clone();
            std::thread::spawn(move || {
                s.complete(&format!("noise {i} "), json!({"max_tokens": 20}));
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let greedy_batched = s.complete("The quick brown fox", json!({}));
    let sampled_batched = s.complete("The quick brown fox", seeded);
    for t in others {
        t.join().expect("other request");
    }
    let text = |v: &Value| {
        v["choices"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(text(&greedy), text(&greedy_batched));
    assert_eq!(text(&sampled), text(&sampled_batched));
}

#[test]
fn a_client_that_disconnects_mid_stream_frees_its_slot() {
    let s = Server::start(1, 2);
    let body = json!({"model": "tiny", "prompt": "hello", "max_tokens": 50, "temperature": 0,
                      "stream": true, "stop": ["@@@@"]});
    let (_, mut reader) = open_stream(&s.base, &body);
    let mut first = String::new();
    reader.read_line(&mut first).expect("first line");
    assert!(first.starts_with("data: "), "{first}");
    drop(reader);
    let start = Instant::now();
    while s.metric("greta_requests_total{outcome=\"cancelled\"}") < 1.0 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the disconnect was not noticed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(s.metric("greta_active_sequences"), 0.0);
    // The only slot is free again.
    let reply = s.complete("hello again", json!({}));
    assert!(reply["choices"][0]["finish_reason"].is_string());
}

#[test]
fn thirty_two_streaming_clients_and_two_hundred_requests_all_complete() {
    // 8 sequences run and 16 requests wait: of 32 clients, some are refused with 429 at
    // times; they retry after a pause, as a client should.
    let s = Arc::new(Server::start(8, 16));
    let next = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let results = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..32)
        .map(|_| {
            let (s, next, refused, results) =
                (s.clone(), next.clone(), refused.clone(), results.clone());
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= 200 {
                    return;
                }
                let body = json!({"model": "tiny", "prompt": format!("request {i}"),
                                  "max_tokens": 6, "temperature": 0, "stream": true,
                                  "stream_options": {"include_usage": true}});
                let start = Instant::now();
                let (status, data) = loop {
                    match stream(&s, body.clone()) {
                        (429, _) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(100));
                        }
                        answer => break answer,
                    }
                };
                results
                    .lock()
                    .expect("results")
                    .push((i, status, data, start.elapsed()));
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client");
    }
    let results = results.lock().expect("results");
    assert_eq!(results.len(), 200, "every request has an answer");
    let mut latencies = Vec::new();
    for (i, status, data, took) in results.iter() {
        assert_eq!(*status, 200, "request {i}: {data:?}");
        assert_eq!(
            data.last().map(String::as_str),
            Some("[DONE]"),
            "request {i} cut short"
        );
        let chunks: Vec<Value> = data[..data.len() - 1]
            .iter()
            .map(|d| serde_json::from_str(d).expect("chunk JSON"))
            .collect();
        let finish = chunks
            .iter()
            .find_map(|c| c["choices"][0]["finish_reason"].as_str())
            .expect("a finish reason");
        let usage = &chunks.last().expect("usage chunk")["usage"];
        let tokens = usage["completion_tokens"].as_u64().expect("usage");
        assert!(
            (finish == "length" && tokens == 6) || (finish == "stop" && tokens < 6),
            "request {i}: {finish} after {tokens} tokens"
        );
        latencies.push(took.as_secs_f64());
    }
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    let refused = refused.load(Ordering::Relaxed);
    println!(
        "load: 200 completed, {refused} tries refused with 429 and retried; latency \
         (arrival to [DONE], retries included) p50 {:.2} s, p99 {:.2} s",
        at(0.5),
        at(0.99)
    );
    assert_eq!(
        s.metric("greta_requests_total{outcome=\"rejected\"}") as usize,
        refused
    );
    assert_eq!(s.metric("greta_queue_depth"), 0.0);
    assert_eq!(s.metric("greta_active_sequences"), 0.0);
}

#[test]
fn sigterm_finishes_the_stream_in_flight_then_exits() {
    let mut s = Server::start(2, 2);
    let base = s.base.clone();
    let body = json!({"model": "tiny", "prompt": "hello", "max_tokens": 40, "temperature": 0,
                      "stream": true, "stop": ["@@@@"]});
    let (_, mut reader) = open_stream(&base, &body);
    let mut first = String::new();
    reader.read_line(&mut first).expect("first line");
    let status = Command::new("kill")
        .args(["-TERM", &s.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let mut rest = String::new();
    reader
        .read_to_string(&mut rest)
        .expect("the rest of the stream");
    assert!(rest.trim_end().ends_with("data: [DONE]"), "{rest}");
    assert!(
        rest.contains("finish_reason\":\"length\"") || rest.contains("finish_reason\":\"stop\"")
    );
    let start = Instant::now();
    let exit = loop {
        if let Some(e) = s.child.try_wait().expect("wait") {
            break e;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the server did not exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
}
