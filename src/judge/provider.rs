//! The OpenAI-compatible provider: the only importer of async-openai and reqwest.
//!
//! Requests are built with async-openai's wire types. Transport is reqwest because
//! async-openai's client hides the HTTP status and the `Retry-After` /
//! `retry-after-ms` headers that the retry policy must honour. Responses are decoded
//! leniently (only `choices[0].message.{content,refusal}` and `usage`), because local
//! servers (vLLM, llama.cpp, Ollama, LiteLLM) deviate from the strict schema in fields
//! we do not need, and a strict decode would turn a usable verdict into an abstention.

use std::time::Duration;

use async_openai::types::chat::{
    ChatCompletionRequestAssistantMessage, ChatCompletionRequestAssistantMessageContent,
    ChatCompletionRequestMessage, ChatCompletionRequestSystemMessage,
    ChatCompletionRequestUserMessage, CreateChatCompletionRequest, ResponseFormat,
    ResponseFormatJsonSchema,
};
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::batch::{BatchApi, Entry, EntryError, ProviderBatch, ProviderBatchState};
use super::{ChatRequest, ChatRole, Completion, Expect, Provider, ProviderError, Scale, Usage};
use crate::config::{JudgeConfig, OpenAiConfig, Sampling};

pub struct OpenAiProvider {
    http: reqwest::Client,
    url: String,
    /// `url` without userinfo, query or fragment: what errors and logs show.
    shown_url: String,
    /// Base URL up to `/v1`, for the Batch API's `/files` and `/batches`.
    base: String,
    model: String,
    sampling: Sampling,
    structured_output: bool,
}

impl OpenAiProvider {
    pub fn new(judge: &JudgeConfig, cfg: &OpenAiConfig) -> Result<Self, String> {
        let mut headers = reqwest::header::HeaderMap::new();
        for (k, v) in &cfg.headers {
            let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| format!("judges.{}.headers: \"{k}\": {e}", judge.name))?;
            let value = reqwest::header::HeaderValue::from_str(v)
                .map_err(|e| format!("judges.{}.headers.{k}: {e}", judge.name))?;
            headers.insert(name, value);
        }
        if let Some(key) = &cfg.api_key {
            let mut value =
                reqwest::header::HeaderValue::from_str(&format!("Bearer {}", key.expose_secret()))
                    .map_err(|e| format!("judges.{}.api_key_env: unusable key: {e}", judge.name))?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(judge.timeout)
            .connect_timeout(judge.timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(judge.limits.max_concurrency.max(1))
            .build()
            .map_err(|e| format!("judges.{}: cannot build HTTP client: {e}", judge.name))?;
        Ok(Self {
            http,
            url: format!("{}/chat/completions", cfg.base_url),
            shown_url: redact_url(&format!("{}/chat/completions", cfg.base_url)),
            base: cfg.base_url.clone(),
            model: judge.model.clone(),
            sampling: judge.sampling.clone(),
            structured_output: cfg.structured_output,
        })
    }

    fn body(&self, req: &ChatRequest) -> CreateChatCompletionRequest {
        let messages = req
            .messages
            .iter()
            .map(|(role, text)| -> ChatCompletionRequestMessage {
                match role {
                    ChatRole::System => ChatCompletionRequestSystemMessage {
                        content: text.as_str().into(),
                        name: None,
                    }
                    .into(),
                    ChatRole::User => ChatCompletionRequestUserMessage {
                        content: text.as_str().into(),
                        name: None,
                    }
                    .into(),
                    ChatRole::Assistant => ChatCompletionRequestAssistantMessage {
                        content: Some(ChatCompletionRequestAssistantMessageContent::from(
                            text.as_str(),
                        )),
                        ..Default::default()
                    }
                    .into(),
                }
            })
            .collect();
        // `max_tokens` and `seed` are deprecated by OpenAI but are what vLLM, llama.cpp,
        // Ollama and LiteLLM read, so they are sent as is.
        #[expect(
            clippy::cast_possible_truncation,
            reason = "sampling parameters are small"
        )]
        #[expect(
            deprecated,
            reason = "local OpenAI-compatible servers read these fields"
        )]
        CreateChatCompletionRequest {
            messages,
            model: self.model.clone(),
            temperature: self.sampling.temperature.map(|t| t as f32),
            top_p: self.sampling.top_p.map(|t| t as f32),
            max_tokens: self.sampling.max_tokens,
            seed: self.sampling.seed,
            response_format: self
                .structured_output
                .then(|| response_format(&req.expect, req.explain)),
            ..Default::default()
        }
    }
}

/// The `response_format` a structured-output call sends, as JSON text: providers bill it
/// as prompt tokens, so the cost estimate counts it.
pub fn response_format_text(expect: &Expect, explain: bool) -> String {
    serde_json::to_string(&response_format(expect, explain)).unwrap_or_default()
}

/// A JSON schema for the expected answer, for servers that support structured output.
/// Without `explain` the schema holds the verdict field alone, so a provider that
/// enforces it (strict mode) writes a few tokens per answer instead of a paragraph.
fn response_format(expect: &Expect, explain: bool) -> ResponseFormat {
    fn field(scale: Scale) -> serde_json::Value {
        match scale {
            Scale::Binary => serde_json::json!({"type": "boolean"}),
            Scale::Credit => serde_json::json!({"type": "number", "enum": [0, 0.5, 1]}),
            Scale::Severity => {
                serde_json::json!({"type": "string", "enum": ["none", "minor", "major"]})
            }
        }
    }
    let schema = match expect {
        Expect::One(scale) => {
            let mut properties = serde_json::Map::new();
            let mut required = Vec::new();
            if explain {
                properties.insert("explanation".into(), serde_json::json!({"type": "string"}));
                required.push("explanation");
            }
            properties.insert(scale.field().into(), field(*scale));
            required.push(scale.field());
            serde_json::json!({
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": false
            })
        }
        Expect::Batch(items) => {
            let mut properties = serde_json::Map::new();
            properties.insert(
                "id".into(),
                serde_json::json!({"type": "string", "enum": items.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>()}),
            );
            let mut required = vec!["id"];
            if explain {
                properties.insert("explanation".into(), serde_json::json!({"type": "string"}));
                required.push("explanation");
            }
            properties.insert("criteria_met".into(), field(Scale::Binary));
            properties.insert("credit".into(), field(Scale::Credit));
            properties.insert("severity".into(), field(Scale::Severity));
            serde_json::json!({
                "type": "object",
                "properties": {"results": {"type": "array", "items": {
                    "type": "object",
                    "properties": properties,
                    "required": required
                }}},
                "required": ["results"]
            })
        }
    };
    ResponseFormat::JsonSchema {
        json_schema: ResponseFormatJsonSchema {
            description: None,
            name: "verdict".to_owned(),
            schema,
            strict: Some(matches!(expect, Expect::One(_))),
        },
    }
}

#[derive(Deserialize)]
struct LenientResponse {
    #[serde(default)]
    choices: Vec<LenientChoice>,
    #[serde(default)]
    usage: Option<LenientUsage>,
}

#[derive(Deserialize)]
struct LenientChoice {
    message: LenientMessage,
}

#[derive(Deserialize)]
struct LenientMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
}

#[derive(Deserialize)]
struct LenientUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    /// Absent or null on servers without a prefix cache (vLLM without
    /// `--enable-prompt-tokens-details`, llama.cpp, Ollama): then nothing was cached.
    #[serde(default)]
    prompt_tokens_details: Option<LenientPromptDetails>,
    #[serde(default)]
    completion_tokens_details: Option<LenientCompletionDetails>,
}

#[derive(Deserialize)]
struct LenientPromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct LenientCompletionDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

impl LenientUsage {
    /// The provider's usage; cached and reasoning counts are clamped to the totals they
    /// are part of, so a server that misreports them cannot make a cost negative.
    fn usage(&self) -> Usage {
        let cached = self
            .prompt_tokens_details
            .as_ref()
            .and_then(|d| d.cached_tokens)
            .unwrap_or(0);
        let reasoning = self
            .completion_tokens_details
            .as_ref()
            .and_then(|d| d.reasoning_tokens)
            .unwrap_or(0);
        Usage {
            input_tokens: self.prompt_tokens,
            output_tokens: self.completion_tokens,
            cached_input_tokens: cached.min(self.prompt_tokens),
            reasoning_tokens: reasoning.min(self.completion_tokens),
        }
    }
}

/// The first choice of a decoded chat completion (live or from a batch output file).
fn completion_of(body: LenientResponse) -> Result<Completion, ProviderError> {
    let Some(choice) = body.choices.into_iter().next() else {
        return Err(ProviderError::Decode(
            "no choices in the response".to_owned(),
        ));
    };
    Ok(Completion {
        text: choice.message.content.unwrap_or_default(),
        refusal: choice.message.refusal.filter(|r| !r.trim().is_empty()),
        usage: body.usage.as_ref().map(LenientUsage::usage),
    })
}

/// A URL as errors and logs may show it: without userinfo (credentials), query
/// (`?api-key=` and the like) or fragment. Text that is not a URL is shown up to its
/// first `?` or `#`, and without anything before an `@`.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => {
            let cut = url.find(['?', '#']).unwrap_or(url.len());
            let head = &url[..cut];
            match (head.find("://"), head.rfind('@')) {
                (Some(s), Some(at)) if at > s => format!("{}{}", &head[..s + 3], &head[at + 1..]),
                _ => head.to_owned(),
            }
        }
    }
}

/// Bytes of a provider's error body kept in an abstention's detail.
pub const BODY_EXCERPT: usize = 300;

/// The start of an error body as text (at most `BODY_EXCERPT` bytes, on a character
/// boundary), whitespace runs collapsed; `(empty body)` when there is none.
pub fn body_excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        return "(empty body)".to_owned();
    }
    if text.len() <= BODY_EXCERPT {
        return text;
    }
    let mut end = BODY_EXCERPT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// A transport failure with its whole cause chain (reqwest's own message only says
/// "error sending request"; the cause says "Connection refused", a DNS failure or a
/// TLS problem) and the redacted URL, never the URL reqwest would print.
fn transport_error(e: &reqwest::Error, shown_url: &str) -> ProviderError {
    if e.is_timeout() {
        return ProviderError::Timeout;
    }
    let mut parts: Vec<String> = Vec::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    let what = if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "reading the answer failed"
    } else {
        "request failed"
    };
    let cause = if parts.is_empty() {
        e.to_string()
    } else {
        parts.join(": ")
    };
    ProviderError::Connect(format!("{what} to {shown_url}: {cause}"))
}

/// `retry-after-ms` (milliseconds, OpenAI/Azure) wins over `Retry-After` (seconds or
/// an HTTP date, which we do not parse: it falls back to backoff).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        if ms.is_finite() && ms >= 0.0 {
            return Some(Duration::from_secs_f64(ms / 1000.0));
        }
    }
    get("retry-after")
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

#[async_trait::async_trait]
impl Provider for OpenAiProvider {
    async fn complete(&self, req: &ChatRequest) -> Result<Completion, ProviderError> {
        let resp = self
            .http
            .post(&self.url)
            .json(&self.body(req))
            .send()
            .await
            .map_err(|e| transport_error(&e, &self.shown_url))?;
        let status = resp.status().as_u16();
        let after = retry_after(resp.headers());
        if status == 429 {
            return Err(ProviderError::RateLimited { retry_after: after });
        }
        if status >= 500 {
            return Err(ProviderError::Server {
                status,
                retry_after: after,
            });
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| transport_error(&e, &self.shown_url))?;
        if !(200..300).contains(&status) {
            return Err(ProviderError::Client {
                status,
                message: format!("from {}: {}", self.shown_url, body_excerpt(&bytes)),
            });
        }
        let body: LenientResponse =
            serde_json::from_slice(&bytes).map_err(|e| ProviderError::Decode(e.to_string()))?;
        completion_of(body)
    }

    fn simulated(&self) -> bool {
        false
    }

    fn endpoint(&self) -> Option<&str> {
        Some(&self.shown_url)
    }

    fn batch_api(self: std::sync::Arc<Self>) -> Option<std::sync::Arc<dyn BatchApi>> {
        Some(self)
    }
}

/// A batch as `GET /v1/batches/{id}` describes it (only the fields used).
#[derive(Deserialize)]
struct LenientBatch {
    #[serde(default)]
    id: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    output_file_id: Option<String>,
    #[serde(default)]
    error_file_id: Option<String>,
}

/// One line of a batch output or error file.
#[derive(Deserialize)]
struct LenientBatchLine {
    custom_id: String,
    #[serde(default)]
    response: Option<LenientBatchResponse>,
    #[serde(default)]
    error: Option<LenientBatchError>,
}

#[derive(Deserialize)]
struct LenientBatchResponse {
    #[serde(default)]
    status_code: u16,
    #[serde(default)]
    body: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct LenientBatchError {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

impl LenientBatchLine {
    /// An entry's completion, or why there is none. Expired entries (`batch_expired`),
    /// throttled and server-failed ones are retried in a later batch; a 4xx answer to
    /// the request itself would fail again and is not.
    fn entry(self) -> (String, Entry) {
        let LenientBatchLine {
            custom_id,
            response,
            error,
        } = self;
        let status = response.as_ref().map_or(0, |r| r.status_code);
        if let (Some(r), None) = (response, &error) {
            if (200..300).contains(&r.status_code) {
                let decoded = r
                    .body
                    .ok_or_else(|| ProviderError::Decode("no body".to_owned()))
                    .and_then(|b| {
                        serde_json::from_value::<LenientResponse>(b)
                            .map_err(|e| ProviderError::Decode(e.to_string()))
                    })
                    .and_then(completion_of);
                return (
                    custom_id,
                    decoded.map_err(|e| EntryError {
                        retryable: false,
                        message: e.to_string(),
                    }),
                );
            }
        }
        let code = error
            .as_ref()
            .and_then(|e| e.code.clone())
            .unwrap_or_default();
        let message = error.and_then(|e| e.message).unwrap_or_default();
        let retryable = status == 0 || status == 429 || status >= 500 || code == "batch_expired";
        (
            custom_id,
            Err(EntryError {
                retryable,
                message: format!("batch entry failed (status {status}, {code}): {message}"),
            }),
        )
    }
}

impl OpenAiProvider {
    /// Sends a Batch API request and returns the body of a 2xx answer.
    async fn batch_request(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<bytes::Bytes, ProviderError> {
        let resp = req.send().await.map_err(|e| {
            if e.is_timeout() {
                ProviderError::Timeout
            } else {
                ProviderError::Connect(e.to_string())
            }
        })?;
        let status = resp.status().as_u16();
        let after = retry_after(resp.headers());
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ProviderError::Connect(e.to_string()))?;
        match status {
            200..=299 => Ok(bytes),
            429 => Err(ProviderError::RateLimited { retry_after: after }),
            500.. => Err(ProviderError::Server {
                status,
                retry_after: after,
            }),
            _ => Err(ProviderError::Client {
                status,
                message: format!("from the Batch API: {}", body_excerpt(&bytes)),
            }),
        }
    }
}

#[async_trait::async_trait]
impl BatchApi for OpenAiProvider {
    fn request_body(&self, req: &ChatRequest) -> serde_json::Value {
        serde_json::to_value(self.body(req)).unwrap_or_default()
    }

    async fn upload(&self, jsonl: Vec<u8>) -> Result<String, ProviderError> {
        // multipart/form-data written by hand (two parts), so reqwest needs no extra
        // feature; the boundary is random, so no line of the file can contain it.
        let boundary = format!("tribunal-{}", uuid::Uuid::now_v7().simple());
        let mut body = Vec::with_capacity(jsonl.len() + 512);
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"batch.jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(&jsonl);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let bytes = self
            .batch_request(
                self.http
                    .post(format!("{}/files", self.base))
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        format!("multipart/form-data; boundary={boundary}"),
                    )
                    .body(body),
            )
            .await?;
        #[derive(Deserialize)]
        struct FileObject {
            id: String,
        }
        serde_json::from_slice::<FileObject>(&bytes)
            .map(|f| f.id)
            .map_err(|e| ProviderError::Decode(format!("file upload answer: {e}")))
    }

    async fn create(&self, input_file_id: &str, window: &str) -> Result<String, ProviderError> {
        let bytes = self
            .batch_request(self.http.post(format!("{}/batches", self.base)).json(
                &serde_json::json!({
                    "input_file_id": input_file_id,
                    "endpoint": "/v1/chat/completions",
                    "completion_window": window,
                }),
            ))
            .await?;
        let b: LenientBatch = serde_json::from_slice(&bytes)
            .map_err(|e| ProviderError::Decode(format!("batch create answer: {e}")))?;
        if b.id.is_empty() {
            return Err(ProviderError::Decode(
                "batch create answer has no id".to_owned(),
            ));
        }
        Ok(b.id)
    }

    async fn cancel(&self, batch_id: &str) -> Result<(), ProviderError> {
        // The answer is the batch object (now `cancelling`); polling reads the rest.
        self.batch_request(
            self.http
                .post(format!("{}/batches/{batch_id}/cancel", self.base)),
        )
        .await
        .map(|_| ())
    }

    async fn status(&self, batch_id: &str) -> Result<ProviderBatch, ProviderError> {
        let bytes = self
            .batch_request(self.http.get(format!("{}/batches/{batch_id}", self.base)))
            .await?;
        let b: LenientBatch = serde_json::from_slice(&bytes)
            .map_err(|e| ProviderError::Decode(format!("batch status: {e}")))?;
        let state = match b.status.as_str() {
            "completed" => ProviderBatchState::Completed,
            "failed" => ProviderBatchState::Failed,
            "expired" => ProviderBatchState::Expired,
            "cancelled" => ProviderBatchState::Cancelled,
            // validating, in_progress, finalizing, cancelling, and anything new.
            _ => ProviderBatchState::Running,
        };
        Ok(ProviderBatch {
            state,
            output_file_id: b.output_file_id.filter(|f| !f.is_empty()),
            error_file_id: b.error_file_id.filter(|f| !f.is_empty()),
        })
    }

    async fn entries(&self, file_id: &str) -> Result<Vec<(String, Entry)>, ProviderError> {
        let bytes = self
            .batch_request(
                self.http
                    .get(format!("{}/files/{file_id}/content", self.base)),
            )
            .await?;
        Ok(batch_entries(&bytes))
    }
}

/// The entries of an output or error file; undecodable lines are skipped (their
/// requests then count as missing and are retried).
fn batch_entries(bytes: &[u8]) -> Vec<(String, Entry)> {
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .filter_map(|l| serde_json::from_slice::<LenientBatchLine>(l).ok())
        .map(LenientBatchLine::entry)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_lines_map_to_entries() {
        let file = concat!(
            r#"{"id":"r1","custom_id":"a","response":{"status_code":200,"body":{"choices":[{"message":{"content":"{}"}}],"usage":{"prompt_tokens":10,"completion_tokens":2}}},"error":null}"#,
            "\n",
            r#"{"id":"r2","custom_id":"b","response":null,"error":{"code":"batch_expired","message":"not done"}}"#,
            "\n\n",
            r#"{"id":"r3","custom_id":"c","response":{"status_code":400,"body":{"error":{"message":"bad"}}},"error":null}"#,
            "\n",
            r#"{"id":"r4","custom_id":"d","response":{"status_code":500,"body":{}},"error":null}"#,
            "\nnot json\n",
        );
        let got = batch_entries(file.as_bytes());
        let ids: Vec<&str> = got.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c", "d"]);
        let ok = got[0].1.as_ref().unwrap();
        assert_eq!(ok.text, "{}");
        assert_eq!(ok.usage.unwrap().input_tokens, 10);
        assert!(got[1].1.as_ref().unwrap_err().retryable, "expired");
        assert!(!got[2].1.as_ref().unwrap_err().retryable, "400");
        assert!(got[3].1.as_ref().unwrap_err().retryable, "500");
    }

    #[test]
    fn usage_details_are_read_leniently() {
        let rows = [
            (
                r#"{"prompt_tokens": 2000, "completion_tokens": 50}"#,
                (2000, 50, 0, 0),
            ),
            (
                r#"{"prompt_tokens": 2000, "completion_tokens": 50, "prompt_tokens_details": null, "completion_tokens_details": null}"#,
                (2000, 50, 0, 0),
            ),
            (
                r#"{"prompt_tokens": 2000, "completion_tokens": 50, "prompt_tokens_details": {"cached_tokens": 1792, "audio_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 30}}"#,
                (2000, 50, 1792, 30),
            ),
            (
                r#"{"prompt_tokens": 100, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 999}, "completion_tokens_details": {"reasoning_tokens": null}}"#,
                (100, 5, 100, 0),
            ),
        ];
        for (json, (i, o, c, r)) in rows {
            let u: LenientUsage = serde_json::from_str(json).unwrap();
            assert_eq!(
                u.usage(),
                Usage {
                    input_tokens: i,
                    output_tokens: o,
                    cached_input_tokens: c,
                    reasoning_tokens: r,
                },
                "{json}"
            );
        }
    }

    #[test]
    fn urls_lose_their_secrets() {
        let rows = [
            (
                "https://user:pw@api.example.com/v1/chat/completions?api-key=s3cret#x",
                "https://api.example.com/v1/chat/completions",
            ),
            (
                "http://127.0.0.1:9/chat/completions",
                "http://127.0.0.1:9/chat/completions",
            ),
            ("not a url?key=1", "not a url"),
        ];
        for (url, want) in rows {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }

    #[test]
    fn error_bodies_are_cut_short() {
        assert_eq!(body_excerpt(b""), "(empty body)");
        assert_eq!(
            body_excerpt(b"{\"error\":\n  {\"message\": \"bad key\"}}"),
            "{\"error\": {\"message\": \"bad key\"}}"
        );
        let long = "\u{e9}".repeat(400);
        let cut = body_excerpt(long.as_bytes());
        assert!(
            cut.len() <= BODY_EXCERPT + 3 && cut.ends_with("..."),
            "{cut}"
        );
    }

    #[test]
    fn retry_after_headers() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", "150".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(150)));
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
    }
}
