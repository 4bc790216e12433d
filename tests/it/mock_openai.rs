//! An in-process OpenAI-compatible chat-completions server for tests and benches.
//! Replies come from a script (one per call, in order) and then a default; every call
//! is counted and timestamped.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
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
    mock.bodies.lock().unwrap().push(body.0);
    let reply = {
        let next = mock.script.lock().unwrap().pop_front();
        next.unwrap_or_else(|| mock.default.lock().unwrap().clone())
    };
    render(reply).await
}

fn completion(content: Value, refusal: Value) -> Value {
    json!({
        "id": "chatcmpl-mock", "object": "chat.completion", "created": 0, "model": "mock",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": content, "refusal": refusal}}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
    })
}

fn render(reply: Reply) -> std::pin::Pin<Box<dyn Future<Output = Response> + Send>> {
    Box::pin(async move {
        match reply {
            Reply::Content(text) => {
                axum::Json(completion(json!(text), Value::Null)).into_response()
            }
            Reply::Refusal(text) => {
                axum::Json(completion(Value::Null, json!(text))).into_response()
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
                render(*inner).await
            }
        }
    })
}

/// Starts the mock on 127.0.0.1:0; returns it and its base URL (ending in /v1).
pub async fn spawn(default: Reply) -> (Arc<Mock>, String) {
    let mock = Arc::new(Mock {
        script: Mutex::new(VecDeque::new()),
        default: Mutex::new(default),
        calls: AtomicUsize::new(0),
        times: Mutex::new(Vec::new()),
        bodies: Mutex::new(Vec::new()),
    });
    let app = axum::Router::new()
        .route("/v1/chat/completions", post(handler))
        .with_state(Arc::clone(&mock));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (mock, format!("http://{addr}/v1"))
}
