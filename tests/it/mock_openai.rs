//! An in-process OpenAI-compatible chat-completions server for tests and benches.
//! Replies come from a script (one per call, in order) and then a default; every call
//! is counted and timestamped. With `bill_prefixes` it also bills like OpenAI's prompt
//! caching: a prompt's leading part seen before (from 1,024 tokens, in 128-token blocks)
//! is reported as `prompt_tokens_details.cached_tokens` and billed at the cached price.
//! It also serves the Batch API (`/v1/files`, `/v1/batches`, `/v1/files/{id}/content`):
//! a batch goes validating -> in_progress -> completed over `BatchMock::delay`, answers
//! each entry from the same script, can fail or expire entries and whole batches on
//! request, and bills batch entries at `BATCH_PRICE_FACTOR` of the prefix-caching bill.
//! A structured-output schema is billed as the head of the prompt, and with
//! `constrain_to_schema` replies keep only the keys a strict schema allows.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

#[derive(Clone, Debug)]
pub enum Reply {
    /// 200 with this assistant content.
    Content(String),
    /// 200 with `message.refusal` set.
    Refusal(String),
    /// A status with headers and a body.
    Status(u16, Vec<(&'static str, String)>, String),
    /// Waits, then answers.
    Delay(Duration, Box<Reply>),
}

pub struct Mock {
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Reply>,
    pub calls: AtomicUsize,
    pub times: Mutex<Vec<Instant>>,
    pub bodies: Mutex<Vec<Value>>,
    /// Replaces the fixed usage of every reply when set (tests of usage decoding).
    pub usage: Mutex<Option<Value>>,
    billing: Mutex<Option<PrefixBilling>>,
    /// Keeps request bodies for `bodies` (benches turn it off to save memory).
    pub keep_bodies: std::sync::atomic::AtomicBool,
    /// Batch API state and fault injection.
    pub batch: Mutex<BatchMock>,
    /// Answers as a provider that enforces a strict structured-output schema does: a
    /// JSON object reply keeps only the keys the request's schema allows (so a schema
    /// without `explanation` gets the verdict alone, as constrained decoding writes it).
    pub constrain_to_schema: std::sync::atomic::AtomicBool,
}

/// OpenAI bills Batch API requests at half the live price.
pub const BATCH_PRICE_FACTOR: f64 = 0.5;

/// The mock's Batch API: uploaded files, created batches, and what to inject.
#[derive(Default)]
pub struct BatchMock {
    files: std::collections::HashMap<String, Vec<u8>>,
    batches: std::collections::HashMap<String, MockBatch>,
    next_id: u64,
    /// Time from creation to `completed` (a third of it `validating`).
    pub delay: Duration,
    /// The next this many entries fail with a 500 in the error file.
    pub fail_entries: usize,
    /// The next this many entries expire (`batch_expired` in the error file).
    pub expire_entries: usize,
    /// The next this many batches end `failed`, with no output.
    pub fail_batches: usize,
    /// Custom ids of every batch created, in creation order.
    pub created: Vec<Vec<String>>,
    /// Status polls answered.
    pub polls: usize,
    /// Entries answered with a completion.
    pub answered: usize,
    /// Ids of the batches a client asked to cancel, in order.
    pub cancelled: Vec<String>,
}

struct MockBatch {
    input_file_id: String,
    created: Instant,
    status: &'static str,
    output_file_id: Option<String>,
    error_file_id: Option<String>,
}

impl Mock {
    /// Sets the Batch API's completion delay.
    pub fn batch_delay(&self, d: Duration) {
        self.batch.lock().unwrap().delay = d;
    }

    /// Custom ids of every batch created so far.
    pub fn batches_created(&self) -> Vec<Vec<String>> {
        self.batch.lock().unwrap().created.clone()
    }
}

/// Prices of the prefix-caching bill, USD per million tokens.
#[derive(Clone, Copy, Debug)]
pub struct Prices {
    pub input: f64,
    pub cached_input: f64,
    pub output: f64,
}

/// What the mock billed so far.
#[derive(Clone, Copy, Debug, Default)]
pub struct Bill {
    pub calls: u64,
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub output_tokens: u64,
    pub usd: f64,
}

struct PrefixBilling {
    prices: Prices,
    /// Hashes of (model, prompt prefix) at each cacheable length seen so far.
    seen: std::collections::HashSet<[u8; 32]>,
    bill: Bill,
}

/// OpenAI caches prompts from this many tokens on ...
pub const CACHE_MIN_TOKENS: usize = 1024;
/// ... in blocks of this many tokens.
pub const CACHE_BLOCK_TOKENS: usize = 128;

/// Letters in one word piece: BPE vocabularies hold most common English words whole.
const WORD_PIECE: usize = 8;

/// Byte offsets where each token of `text` ends, by a rule that approximates a BPE
/// tokenizer on English: a word piece of up to `WORD_PIECE` letters with its leading
/// space, a digit group of up to three, a run of whitespace, or any other single
/// character. It is deliberately not tribunal's
/// characters / 4 estimate, so the bench's estimate-vs-bill check is not circular.
pub fn token_ends(text: &str) -> Vec<usize> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let end_of = |i: usize| chars.get(i).map_or(text.len(), |(b, _)| *b);
    let mut ends = Vec::with_capacity(text.len() / 4 + 1);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i].1;
        let next_alpha = chars.get(i + 1).is_some_and(|(_, n)| n.is_alphabetic());
        if c.is_alphabetic() || (c == ' ' && next_alpha) {
            if c == ' ' {
                i += 1;
            }
            let mut n = 0;
            while i < chars.len() && chars[i].1.is_alphabetic() && n < WORD_PIECE {
                i += 1;
                n += 1;
            }
        } else if c.is_ascii_digit() {
            let mut n = 0;
            while i < chars.len() && chars[i].1.is_ascii_digit() && n < 3 {
                i += 1;
                n += 1;
            }
        } else if c.is_whitespace() {
            // Entered only when `c` is not a space before a letter, so at least one
            // character is consumed.
            while i < chars.len()
                && chars[i].1.is_whitespace()
                && !next_is_alpha_after_space(&chars, i)
            {
                i += 1;
            }
        } else {
            i += 1;
        }
        ends.push(end_of(i));
    }
    ends
}

/// A space directly before a letter belongs to the next word piece, not to the
/// whitespace run before it.
fn next_is_alpha_after_space(chars: &[(usize, char)], i: usize) -> bool {
    chars[i].1 == ' ' && chars.get(i + 1).is_some_and(|(_, n)| n.is_alphabetic())
}

/// The prompt text a provider would tokenise: a structured-output schema first (OpenAI
/// bills it as prompt tokens and caches it as a prefix of the system message), then
/// every message with its role, in order.
fn prompt_text(body: &Value) -> String {
    let mut text = String::new();
    if let Some(format) = body.get("response_format").filter(|f| !f.is_null()) {
        text.push_str(&format.to_string());
        text.push('\n');
    }
    for m in body["messages"].as_array().into_iter().flatten() {
        text.push_str("<|");
        text.push_str(m["role"].as_str().unwrap_or(""));
        text.push_str("|>\n");
        text.push_str(m["content"].as_str().unwrap_or(""));
        text.push('\n');
    }
    text
}

impl PrefixBilling {
    /// (prompt tokens, cached tokens) of one request, remembering its prefixes.
    fn admit(&mut self, body: &Value) -> (u64, u64) {
        let text = prompt_text(body);
        let ends = token_ends(&text);
        let mut h = blake3::Hasher::new();
        h.update(body["model"].as_str().unwrap_or("").as_bytes());
        h.update(&[0]);
        let mut cached = 0;
        let mut at = 0;
        let mut len = CACHE_MIN_TOKENS;
        while len <= ends.len() {
            let end = ends[len - 1];
            h.update(&text.as_bytes()[at..end]);
            at = end;
            let key: [u8; 32] = h.clone().finalize().into();
            // Every request inserts all its cacheable lengths, so a prefix seen at
            // `len` was seen at every shorter length too: the last hit is the cached part.
            if !self.seen.insert(key) {
                cached = len;
            }
            len += CACHE_BLOCK_TOKENS;
        }
        (ends.len() as u64, cached as u64)
    }
}

impl Mock {
    /// Turns on OpenAI-style prefix caching and billing at `prices`.
    pub fn bill_prefixes(&self, prices: Prices) {
        *self.billing.lock().unwrap() = Some(PrefixBilling {
            prices,
            seen: std::collections::HashSet::new(),
            bill: Bill::default(),
        });
    }

    /// The bill so far (zero without `bill_prefixes`).
    pub fn bill(&self) -> Bill {
        self.billing
            .lock()
            .unwrap()
            .as_ref()
            .map(|b| b.bill)
            .unwrap_or_default()
    }
}

impl Mock {
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn push(&self, r: Reply) {
        self.script.lock().unwrap().push_back(r);
    }
}

pub fn met(b: bool) -> Reply {
    Reply::Content(format!(r#"{{"explanation": "mock", "criteria_met": {b}}}"#))
}

async fn handler(State(mock): State<Arc<Mock>>, body: axum::Json<Value>) -> Response {
    mock.calls.fetch_add(1, Ordering::SeqCst);
    mock.times.lock().unwrap().push(Instant::now());
    let reply = {
        let next = mock.script.lock().unwrap().pop_front();
        next.unwrap_or_else(|| mock.default.lock().unwrap().clone())
    };
    // The prefix is cached as the request is admitted (before any scripted delay), as a
    // provider caches a prompt while it processes it.
    let prompt = mock
        .billing
        .lock()
        .unwrap()
        .as_mut()
        .map(|b| b.admit(&body.0));
    let reply = match reply {
        Reply::Content(text) => Reply::Content(constrained(&mock, &body.0, text)),
        other => other,
    };
    if mock.keep_bodies.load(Ordering::Relaxed) {
        mock.bodies.lock().unwrap().push(body.0);
    }
    let usage = mock.usage.lock().unwrap().clone();
    render(reply, Arc::clone(&mock), prompt, usage).await
}

/// The reply a strict schema allows: a JSON object with keys the schema's properties do
/// not name keeps only the named ones, in the reply's order (written compactly);
/// anything else is left as it is.
fn constrained(mock: &Mock, body: &Value, text: String) -> String {
    if !mock.constrain_to_schema.load(Ordering::Relaxed) {
        return text;
    }
    let schema = &body["response_format"]["json_schema"];
    let (Some(true), Some(allowed)) = (
        schema["strict"].as_bool(),
        schema["schema"]["properties"].as_object(),
    ) else {
        return text;
    };
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(mut m)) if m.keys().any(|k| !allowed.contains_key(k)) => {
            m.retain(|k, _| allowed.contains_key(k));
            Value::Object(m).to_string()
        }
        _ => text,
    }
}

fn completion(content: Value, refusal: Value, usage: Value) -> Value {
    json!({
        "id": "chatcmpl-mock", "object": "chat.completion", "created": 0, "model": "mock",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": content, "refusal": refusal}}],
        "usage": usage
    })
}

/// The usage of a 200 reply: the override, the prefix bill (which it also books), or
/// the fixed 100 + 20.
fn usage_of(mock: &Mock, prompt: Option<(u64, u64)>, usage: Option<Value>, answer: &str) -> Value {
    usage_at(mock, prompt, usage, answer, 1.0)
}

/// `usage_of` with the bill multiplied by `factor` (batch entries).
fn usage_at(
    mock: &Mock,
    prompt: Option<(u64, u64)>,
    usage: Option<Value>,
    answer: &str,
    factor: f64,
) -> Value {
    if let Some(u) = usage {
        return u;
    }
    let Some((input, cached)) = prompt else {
        return json!({"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120});
    };
    let output = token_ends(answer).len() as u64;
    let mut billing = mock.billing.lock().unwrap();
    if let Some(b) = billing.as_mut() {
        let p = b.prices;
        b.bill.calls += 1;
        b.bill.input_tokens += input;
        b.bill.cached_input_tokens += cached;
        b.bill.output_tokens += output;
        b.bill.usd += factor
            * ((input - cached) as f64 * p.input
                + cached as f64 * p.cached_input
                + output as f64 * p.output)
            / 1e6;
    }
    json!({"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output,
           "prompt_tokens_details": {"cached_tokens": cached},
           "completion_tokens_details": {"reasoning_tokens": 0}})
}

fn render(
    reply: Reply,
    mock: Arc<Mock>,
    prompt: Option<(u64, u64)>,
    usage: Option<Value>,
) -> std::pin::Pin<Box<dyn Future<Output = Response> + Send>> {
    Box::pin(async move {
        match reply {
            Reply::Content(text) => {
                let u = usage_of(&mock, prompt, usage, &text);
                axum::Json(completion(json!(text), Value::Null, u)).into_response()
            }
            Reply::Refusal(text) => {
                let u = usage_of(&mock, prompt, usage, &text);
                axum::Json(completion(Value::Null, json!(text), u)).into_response()
            }
            Reply::Status(code, headers, body) => {
                let mut h = HeaderMap::new();
                for (k, v) in headers {
                    if let Ok(v) = HeaderValue::from_str(&v) {
                        h.insert(k, v);
                    }
                }
                (
                    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    h,
                    body,
                )
                    .into_response()
            }
            Reply::Delay(d, inner) => {
                tokio::time::sleep(d).await;
                render(*inner, mock, prompt, usage).await
            }
        }
    })
}

fn next_id(b: &mut BatchMock, prefix: &str) -> String {
    b.next_id += 1;
    format!("{prefix}-{}", b.next_id)
}

/// `POST /v1/files`: a multipart form with `purpose` and `file`, read by hand.
async fn upload_file(
    State(mock): State<Arc<Mock>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let ctype = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(boundary) = ctype.split("boundary=").nth(1) else {
        return (StatusCode::BAD_REQUEST, "no multipart boundary").into_response();
    };
    let text = String::from_utf8_lossy(&body).into_owned();
    let delim = format!("--{boundary}");
    let mut purpose = None;
    let mut file = None;
    for part in text.split(delim.as_str()) {
        let Some((head, content)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let content = content.strip_suffix("\r\n").unwrap_or(content);
        if head.contains("name=\"purpose\"") {
            purpose = Some(content.to_owned());
        } else if head.contains("name=\"file\"") {
            file = Some(content.as_bytes().to_vec());
        }
    }
    if purpose.as_deref() != Some("batch") {
        return (StatusCode::BAD_REQUEST, "purpose must be batch").into_response();
    }
    let Some(file) = file else {
        return (StatusCode::BAD_REQUEST, "no file part").into_response();
    };
    let mut b = mock.batch.lock().unwrap();
    let id = next_id(&mut b, "file");
    b.files.insert(id.clone(), file);
    axum::Json(json!({"id": id, "object": "file", "purpose": "batch"})).into_response()
}

/// `POST /v1/batches`.
async fn create_batch(State(mock): State<Arc<Mock>>, body: axum::Json<Value>) -> Response {
    let input = body["input_file_id"].as_str().unwrap_or("").to_owned();
    if body["completion_window"] != "24h" || body["endpoint"] != "/v1/chat/completions" {
        return (StatusCode::BAD_REQUEST, "bad window or endpoint").into_response();
    }
    let mut b = mock.batch.lock().unwrap();
    let Some(file) = b.files.get(&input) else {
        return (StatusCode::BAD_REQUEST, "no such file").into_response();
    };
    let ids: Vec<String> = String::from_utf8_lossy(file)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| v["custom_id"].as_str().unwrap_or("").to_owned())
        .collect();
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    if unique.len() != ids.len() {
        return (StatusCode::BAD_REQUEST, "duplicate custom_id").into_response();
    }
    b.created.push(ids);
    let id = next_id(&mut b, "batch");
    b.batches.insert(
        id.clone(),
        MockBatch {
            input_file_id: input,
            created: Instant::now(),
            status: "validating",
            output_file_id: None,
            error_file_id: None,
        },
    );
    axum::Json(json!({"id": id, "object": "batch", "status": "validating"})).into_response()
}

/// `GET /v1/batches/{id}`: advances the batch by its age; answers every entry when it
/// completes.
async fn get_batch(State(mock): State<Arc<Mock>>, Path(id): Path<String>) -> Response {
    let (status, input, age, delay, out, err) = {
        let mut b = mock.batch.lock().unwrap();
        b.polls += 1;
        let delay = b.delay;
        let Some(batch) = b.batches.get(&id) else {
            return (StatusCode::NOT_FOUND, "no such batch").into_response();
        };
        (
            batch.status,
            batch.input_file_id.clone(),
            batch.created.elapsed(),
            delay,
            batch.output_file_id.clone(),
            batch.error_file_id.clone(),
        )
    };
    let doc = |status: &str, out: Option<String>, err: Option<String>| {
        axum::Json(json!({"id": id, "object": "batch", "status": status,
                          "output_file_id": out, "error_file_id": err}))
        .into_response()
    };
    if matches!(status, "completed" | "failed" | "expired" | "cancelled") {
        return doc(status, out, err);
    }
    if status == "cancelling" {
        // Cancelled before any entry was answered: nothing is billed, no files.
        if let Some(batch) = mock.batch.lock().unwrap().batches.get_mut(&id) {
            batch.status = "cancelled";
        }
        return doc("cancelled", None, None);
    }
    if age < delay / 3 {
        return doc("validating", None, None);
    }
    if age < delay {
        return doc("in_progress", None, None);
    }
    let (status, out, err) = finish_batch(&mock, &input);
    let mut b = mock.batch.lock().unwrap();
    if let Some(batch) = b.batches.get_mut(&id) {
        batch.status = status;
        batch.output_file_id = out.clone();
        batch.error_file_id = err.clone();
    }
    doc(status, out, err)
}

/// `POST /v1/batches/{id}/cancel`: a batch not yet final goes `cancelling`, and
/// `cancelled` at the next poll.
async fn cancel_batch(State(mock): State<Arc<Mock>>, Path(id): Path<String>) -> Response {
    let mut b = mock.batch.lock().unwrap();
    b.cancelled.push(id.clone());
    let Some(batch) = b.batches.get_mut(&id) else {
        return (StatusCode::NOT_FOUND, "no such batch").into_response();
    };
    if matches!(batch.status, "validating" | "in_progress") {
        batch.status = "cancelling";
    }
    let status = batch.status;
    axum::Json(json!({"id": id, "object": "batch", "status": status})).into_response()
}

/// Answers a batch's entries: (status, output file, error file).
fn finish_batch(mock: &Mock, input: &str) -> (&'static str, Option<String>, Option<String>) {
    let lines: Vec<Value> = {
        let mut b = mock.batch.lock().unwrap();
        if b.fail_batches > 0 {
            b.fail_batches -= 1;
            return ("failed", None, None);
        }
        let file = b.files.get(input).cloned().unwrap_or_default();
        String::from_utf8_lossy(&file)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let mut output = String::new();
    let mut errors = String::new();
    for line in lines {
        let cid = line["custom_id"].clone();
        let inject = {
            let mut b = mock.batch.lock().unwrap();
            if b.expire_entries > 0 {
                b.expire_entries -= 1;
                Some(json!({"code": "batch_expired", "message": "not completed in the window"}))
            } else if b.fail_entries > 0 {
                b.fail_entries -= 1;
                Some(json!({"code": "server_error", "message": "injected failure"}))
            } else {
                None
            }
        };
        if let Some(e) = inject {
            let status = if e["code"] == "batch_expired" {
                Value::Null
            } else {
                json!({"status_code": 500, "body": {}})
            };
            errors.push_str(
                &json!({"id": "r", "custom_id": cid, "response": status, "error": e}).to_string(),
            );
            errors.push('\n');
            continue;
        }
        let body = &line["body"];
        let mut reply = {
            let next = mock.script.lock().unwrap().pop_front();
            next.unwrap_or_else(|| mock.default.lock().unwrap().clone())
        };
        while let Reply::Delay(_, inner) = reply {
            reply = *inner;
        }
        let prompt = mock.billing.lock().unwrap().as_mut().map(|b| b.admit(body));
        let usage = mock.usage.lock().unwrap().clone();
        let entry = match reply {
            Reply::Content(text) => {
                let text = constrained(mock, body, text);
                let u = usage_at(mock, prompt, usage, &text, BATCH_PRICE_FACTOR);
                json!({"status_code": 200, "body": completion(json!(text), Value::Null, u)})
            }
            Reply::Refusal(text) => {
                let u = usage_at(mock, prompt, usage, &text, BATCH_PRICE_FACTOR);
                json!({"status_code": 200, "body": completion(Value::Null, json!(text), u)})
            }
            Reply::Status(code, _, text) => {
                json!({"status_code": code, "body": {"error": {"message": text}}})
            }
            Reply::Delay(..) => unreachable!("delays are unwrapped above"),
        };
        let ok = entry["status_code"] == 200;
        mock.batch.lock().unwrap().answered += usize::from(ok);
        let doc = json!({"id": "r", "custom_id": cid, "response": entry, "error": Value::Null});
        let target = if ok { &mut output } else { &mut errors };
        target.push_str(&doc.to_string());
        target.push('\n');
    }
    let mut b = mock.batch.lock().unwrap();
    let mut put = |text: String| {
        (!text.is_empty()).then(|| {
            let id = next_id(&mut b, "file");
            b.files.insert(id.clone(), text.into_bytes());
            id
        })
    };
    let out = put(output);
    let err = put(errors);
    ("completed", out, err)
}

/// `GET /v1/files/{id}/content`.
async fn file_content(State(mock): State<Arc<Mock>>, Path(id): Path<String>) -> Response {
    match mock.batch.lock().unwrap().files.get(&id) {
        Some(bytes) => bytes.clone().into_response(),
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}

/// Starts the mock on 127.0.0.1:0; returns it and its base URL (ending in /v1).
pub async fn spawn(default: Reply) -> (Arc<Mock>, String) {
    let mock = Arc::new(Mock {
        script: Mutex::new(VecDeque::new()),
        default: Mutex::new(default),
        calls: AtomicUsize::new(0),
        times: Mutex::new(Vec::new()),
        bodies: Mutex::new(Vec::new()),
        usage: Mutex::new(None),
        billing: Mutex::new(None),
        keep_bodies: std::sync::atomic::AtomicBool::new(true),
        batch: Mutex::new(BatchMock::default()),
        constrain_to_schema: std::sync::atomic::AtomicBool::new(false),
    });
    let app = axum::Router::new()
        .route("/v1/chat/completions", post(handler))
        // Batch input files run to megabytes; axum's default 2 MB body limit would
        // reject them (OpenAI accepts up to 200 MB).
        .route(
            "/v1/files",
            post(upload_file).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/v1/files/{id}/content", get(file_content))
        .route("/v1/batches", post(create_batch))
        .route("/v1/batches/{id}", get(get_batch))
        .route("/v1/batches/{id}/cancel", post(cancel_batch))
        .with_state(Arc::clone(&mock));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (mock, format!("http://{addr}/v1"))
}
