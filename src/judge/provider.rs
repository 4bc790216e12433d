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

use super::{ChatRequest, ChatRole, Completion, Expect, Provider, ProviderError, Scale, Usage};
use crate::config::{JudgeConfig, OpenAiConfig, Sampling};

pub struct OpenAiProvider {
    http: reqwest::Client,
    url: String,
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
            response_format: self.structured_output.then(|| response_format(&req.expect)),
            ..Default::default()
        }
    }
}

/// A JSON schema for the expected answer, for servers that support structured output.
fn response_format(expect: &Expect) -> ResponseFormat {
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
        Expect::One(scale) => serde_json::json!({
            "type": "object",
            "properties": {"explanation": {"type": "string"}, scale.field(): field(*scale)},
            "required": ["explanation", scale.field()],
            "additionalProperties": false
        }),
        Expect::Batch(items) => serde_json::json!({
            "type": "object",
            "properties": {"results": {"type": "array", "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "string", "enum": items.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>()},
                    "explanation": {"type": "string"},
                    "criteria_met": field(Scale::Binary),
                    "credit": field(Scale::Credit),
                    "severity": field(Scale::Severity)
                },
                "required": ["id", "explanation"]
            }}},
            "required": ["results"]
        }),
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
            .map_err(|e| {
                if e.is_timeout() {
                    ProviderError::Timeout
                } else {
                    ProviderError::Connect(e.to_string())
                }
            })?;
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
        let bytes = resp.bytes().await.map_err(|e| {
            if e.is_timeout() {
                ProviderError::Timeout
            } else {
                ProviderError::Connect(e.to_string())
            }
        })?;
        if !(200..300).contains(&status) {
            let message = String::from_utf8_lossy(&bytes).chars().take(300).collect();
            return Err(ProviderError::Client { status, message });
        }
        let body: LenientResponse =
            serde_json::from_slice(&bytes).map_err(|e| ProviderError::Decode(e.to_string()))?;
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

    fn simulated(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
