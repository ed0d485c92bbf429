//! The OpenAI request bodies the server accepts, checked field by field: a request gets
//! either a complete [`Request`] or an [`ApiError`] that names the offending field, in
//! OpenAI's error format. Fields the API defines but this server does not honour are
//! refused when they ask for something other than their default, never ignored.

use crate::sampling::{self, SamplingParams};
use crate::tokenizer::ChatMessage;
use serde_json::{json, Map, Value};

/// An error answered to the client: HTTP status and OpenAI's `error` object.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    /// `invalid_request_error`, `rate_limit_error`, `server_error`, ...
    pub kind: &'static str,
    /// The request field the error is about.
    pub param: Option<String>,
}

impl ApiError {
    /// A 400 about `field`.
    pub fn field(field: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: 400,
            message: format!("`{field}`: {}", message.into()),
            kind: "invalid_request_error",
            param: Some(field.to_string()),
        }
    }

    /// A 400 about the body as a whole.
    pub fn body(message: impl Into<String>) -> ApiError {
        ApiError {
            status: 400,
            message: message.into(),
            kind: "invalid_request_error",
            param: None,
        }
    }

    /// The JSON body of the answer.
    pub fn to_json(&self) -> Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": Value::Null,
            }
        })
    }
}

/// What the request asks the model to continue.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// `/v1/completions`: raw text.
    Text(String),
    /// `/v1/chat/completions`: a conversation, rendered with the model's chat template.
    Chat(Vec<ChatMessage>),
}

/// A checked request.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub input: Input,
    /// Most tokens to generate; `None`: until the context or end of sequence.
    pub max_tokens: Option<usize>,
    pub sampling: SamplingParams,
    /// Generation ends before the first occurrence of any of these.
    pub stop: Vec<String>,
    pub stream: bool,
    /// `stream_options.include_usage`: a last chunk with the token counts.
    pub include_usage: bool,
    /// `ignore_eos` (an extension, as llama.cpp's and vLLM's servers have): generate past
    /// the end-of-sequence token, for benchmarks.
    pub ignore_eos: bool,
}

/// The most stop sequences a request may give (as OpenAI's API).
const MAX_STOPS: usize = 4;

/// Reads the body of a completion (`chat` false) or chat completion request for the model
/// named `model`.
pub fn parse(body: &[u8], chat: bool, model: &str) -> Result<Request, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::body(format!("the body is not valid JSON: {e}")))?;
    let Value::Object(o) = value else {
        return Err(ApiError::body("the body must be a JSON object"));
    };
    match o.get("model") {
        None => return Err(ApiError::field("model", "is required")),
        Some(Value::String(m)) if m == model => {}
        Some(Value::String(m)) => {
            return Err(ApiError {
                status: 404,
                message: format!("the model `{m}` does not exist; this server serves `{model}`"),
                kind: "invalid_request_error",
                param: Some("model".into()),
            })
        }
        Some(_) => return Err(ApiError::field("model", "must be a string")),
    }
    let input = if chat { messages(&o)? } else { prompt(&o)? };
    refuse_unsupported(&o)?;
    let defaults = SamplingParams::default();
    let temperature = number(&o, "temperature")?.unwrap_or(1.0) as f32;
    let sampling = SamplingParams {
        temperature,
        top_p: number(&o, "top_p")?.map_or(1.0, |v| v as f32),
        top_k: match integer(&o, "top_k")? {
            None => usize::MAX,
            Some(k) if k >= 1 => k as usize,
            Some(_) => return Err(ApiError::field("top_k", "must be at least 1")),
        },
        repetition_penalty: defaults.repetition_penalty,
        seed: integer(&o, "seed")?.unwrap_or(defaults.seed),
    };
    if !sampling::temperature_ok(sampling.temperature) || sampling.temperature > 2.0 {
        return Err(ApiError::field("temperature", "must be between 0 and 2"));
    }
    if !sampling::top_p_ok(sampling.top_p) {
        return Err(ApiError::field("top_p", sampling::TOP_P_RANGE));
    }
    let max_tokens = match integer(&o, "max_tokens")?.or(integer(&o, "max_completion_tokens")?) {
        None => None,
        Some(n) if n >= 1 => Some(n as usize),
        Some(_) => return Err(ApiError::field("max_tokens", "must be at least 1")),
    };
    Ok(Request {
        input,
        max_tokens,
        sampling,
        stop: stops(&o)?,
        stream: boolean(&o, "stream")?.unwrap_or(false),
        include_usage: match o.get("stream_options") {
            None | Some(Value::Null) => false,
            Some(Value::Object(opts)) => boolean(opts, "include_usage")?.unwrap_or(false),
            Some(_) => return Err(ApiError::field("stream_options", "must be an object")),
        },
        ignore_eos: boolean(&o, "ignore_eos")?.unwrap_or(false),
    })
}

fn prompt(o: &Map<String, Value>) -> Result<Input, ApiError> {
    match o.get("prompt") {
        None => Err(ApiError::field("prompt", "is required")),
        Some(Value::String(s)) => Ok(Input::Text(s.clone())),
        Some(Value::Array(a)) => match a.as_slice() {
            [Value::String(s)] => Ok(Input::Text(s.clone())),
            _ => Err(ApiError::field(
                "prompt",
                "one prompt per request: a string or a list of one string",
            )),
        },
        Some(_) => Err(ApiError::field("prompt", "must be a string")),
    }
}

fn messages(o: &Map<String, Value>) -> Result<Input, ApiError> {
    let Some(list) = o.get("messages") else {
        return Err(ApiError::field("messages", "is required"));
    };
    let Value::Array(list) = list else {
        return Err(ApiError::field("messages", "must be a list of messages"));
    };
    if list.is_empty() {
        return Err(ApiError::field(
            "messages",
            "must hold at least one message",
        ));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str);
        let role = match role {
            // The newer name of the system role.
            Some("developer") => "system",
            Some(r @ ("system" | "user" | "assistant")) => r,
            Some(r) => {
                return Err(ApiError::field(
                    &format!("messages[{i}].role"),
                    format!("`{r}` is not supported (system, user or assistant)"),
                ))
            }
            None => {
                return Err(ApiError::field(
                    &format!("messages[{i}].role"),
                    "is required and must be a string",
                ))
            }
        };
        let content = match m.get("content") {
            Some(Value::String(s)) => s.clone(),
            // Content parts: only text parts can be read.
            Some(Value::Array(parts)) => {
                let mut text = String::new();
                for (j, p) in parts.iter().enumerate() {
                    match (p.get("type").and_then(Value::as_str), p.get("text")) {
                        (Some("text"), Some(Value::String(t))) => text.push_str(t),
                        _ => return Err(ApiError::field(
                            &format!("messages[{i}].content[{j}]"),
                            "only text parts ({\"type\": \"text\", \"text\": ...}) are supported",
                        )),
                    }
                }
                text
            }
            _ => {
                return Err(ApiError::field(
                    &format!("messages[{i}].content"),
                    "is required and must be a string or a list of text parts",
                ))
            }
        };
        out.push(ChatMessage::new(role, content));
    }
    Ok(Input::Chat(out))
}

/// Fields of the API this server does not implement, refused unless they hold their
/// default (clients often send the defaults explicitly).
fn refuse_unsupported(o: &Map<String, Value>) -> Result<(), ApiError> {
    if let Some(n) = integer(o, "n")? {
        if n != 1 {
            return Err(ApiError::field("n", "only n = 1 is supported"));
        }
    }
    if let Some(b) = integer(o, "best_of")? {
        if b != 1 {
            return Err(ApiError::field("best_of", "only best_of = 1 is supported"));
        }
    }
    for f in ["logprobs", "echo"] {
        match o.get(f) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => {}
            Some(_) => return Err(ApiError::field(f, "is not supported")),
        }
    }
    for f in ["tools", "functions", "logit_bias", "top_logprobs", "suffix"] {
        match o.get(f) {
            None | Some(Value::Null) => {}
            Some(_) => return Err(ApiError::field(f, "is not supported")),
        }
    }
    for f in ["presence_penalty", "frequency_penalty"] {
        if let Some(v) = number(o, f)? {
            if v != 0.0 {
                return Err(ApiError::field(f, "is not supported (only 0)"));
            }
        }
    }
    if let Some(fmt) = o.get("response_format") {
        if fmt.get("type").and_then(Value::as_str) != Some("text") {
            return Err(ApiError::field(
                "response_format",
                "only {\"type\": \"text\"} is supported",
            ));
        }
    }
    Ok(())
}

fn stops(o: &Map<String, Value>) -> Result<Vec<String>, ApiError> {
    let list = match o.get("stop") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| ApiError::field("stop", "must be a string or a list of strings"))?,
        Some(_) => {
            return Err(ApiError::field(
                "stop",
                "must be a string or a list of strings",
            ))
        }
    };
    if list.len() > MAX_STOPS {
        return Err(ApiError::field(
            "stop",
            format!("at most {MAX_STOPS} sequences"),
        ));
    }
    if list.iter().any(String::is_empty) {
        return Err(ApiError::field("stop", "sequences must not be empty"));
    }
    Ok(list)
}

/// An optional number field; null counts as absent.
fn number(o: &Map<String, Value>, f: &str) -> Result<Option<f64>, ApiError> {
    match o.get(f) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(_) => Err(ApiError::field(f, "must be a number")),
    }
}

/// An optional non-negative integer field; null counts as absent.
fn integer(o: &Map<String, Value>, f: &str) -> Result<Option<u64>, ApiError> {
    match o.get(f) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| ApiError::field(f, "must be a non-negative integer")),
        Some(_) => Err(ApiError::field(f, "must be an integer")),
    }
}

fn boolean(o: &Map<String, Value>, f: &str) -> Result<Option<bool>, ApiError> {
    match o.get(f) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ApiError::field(f, "must be true or false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: &str) -> Result<Request, ApiError> {
        parse(body.as_bytes(), true, "m")
    }

    #[test]
    fn a_chat_request_reads_its_fields() {
        let r = chat(
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":5,
                "temperature":0,"seed":7,"stop":["\n"],"stream":true,"n":1}"#,
        )
        .unwrap();
        assert_eq!(r.input, Input::Chat(vec![ChatMessage::user("hi")]));
        assert_eq!(r.max_tokens, Some(5));
        assert_eq!(r.sampling.temperature, 0.0);
        assert_eq!(r.sampling.seed, 7);
        assert_eq!(r.stop, vec!["\n".to_string()]);
        assert!(r.stream);
    }

    #[test]
    fn bad_fields_are_named() {
        let cases = [
            ("{", None),
            ("[1]", None),
            (r#"{"messages":[]}"#, Some("model")),
            (r#"{"model":"m"}"#, Some("messages")),
            (r#"{"model":"m","messages":"hi"}"#, Some("messages")),
            (
                r#"{"model":"m","messages":[{"role":"tool","content":"x"}]}"#,
                Some("messages[0].role"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"user"}]}"#,
                Some("messages[0].content"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":0}"#,
                Some("max_tokens"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":"5"}"#,
                Some("max_tokens"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"n":2}"#,
                Some("n"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":3}"#,
                Some("temperature"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"top_p":0}"#,
                Some("top_p"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stop":[1]}"#,
                Some("stop"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"logprobs":true}"#,
                Some("logprobs"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":"yes"}"#,
                Some("stream"),
            ),
        ];
        for (body, param) in cases {
            let e = chat(body).expect_err(body);
            assert_eq!(e.status, 400, "{body}");
            assert_eq!(e.param.as_deref(), param, "{body}: {}", e.message);
        }
        let e =
            chat(r#"{"model":"other","messages":[{"role":"user","content":"x"}]}"#).unwrap_err();
        assert_eq!((e.status, e.param.as_deref()), (404, Some("model")));
        assert!(e.message.contains("`other`"), "{}", e.message);
    }

    #[test]
    fn a_completion_takes_one_prompt() {
        let r = parse(br#"{"model":"m","prompt":["abc"]}"#, false, "m").unwrap();
        assert_eq!(r.input, Input::Text("abc".into()));
        assert_eq!(r.max_tokens, None);
        let e = parse(br#"{"model":"m","prompt":["a","b"]}"#, false, "m").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("prompt"));
    }
}
