//! The finishing pass over the OpenAPI document generated from the handlers: every
//! operation lists every status it can return, with the JSON error body; query
//! parameters are plain (not nullable) types, as a query string cannot carry null;
//! the bearer security scheme is declared when the server has API keys. Must not
//! describe bodies (the handlers' types do that).

use serde_json::{Value, json};

/// Statuses every `/v1` operation can answer, whatever its inputs.
const ALWAYS: &[(&str, &str)] = &[
    (
        "401",
        "missing or unknown API key (`Authorization: Bearer <key>`)",
    ),
    ("403", "the key's role may not call this operation"),
    (
        "429",
        "a quota was exceeded; `Retry-After` says when to retry",
    ),
    (
        "500",
        "internal error (a bug, or stored data that cannot be read)",
    ),
    ("503", "the store or the judges are unavailable"),
];

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    })
}

/// Adds the error responses and the security scheme; `auth` is whether keys exist.
pub fn finish(mut doc: Value, auth: bool) -> Value {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return doc;
    };
    for (path, item) in paths.iter_mut() {
        let Some(ops) = item.as_object_mut() else {
            continue;
        };
        let guarded = path.starts_with("/v1/");
        let templated: Vec<String> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(str::to_owned)
            .collect();
        for (method, op) in ops.iter_mut() {
            add_path_params(op, &templated);
            let params = op
                .get("parameters")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let has_path = params.iter().any(|p| p["in"] == "path");
            let has_query = params.iter().any(|p| p["in"] == "query");
            let has_body = op.get("requestBody").is_some();
            if let Some(list) = op.get_mut("parameters").and_then(Value::as_array_mut) {
                for p in list.iter_mut() {
                    if p["in"] == "query" {
                        denull(&mut p["schema"]);
                    }
                }
            }
            let mut add: Vec<(&str, &str)> = Vec::new();
            if guarded {
                add.extend_from_slice(ALWAYS);
            }
            if has_query || has_body || has_path {
                add.push((
                    "400",
                    "invalid input: a malformed query string, path or body; `field` names it",
                ));
            }
            if has_path {
                add.push(("404", "no such resource (or one the caller may not see)"));
            }
            if guarded && method == "post" {
                add.push((
                    "415",
                    "the body's Content-Type is not one this operation takes (a server without API keys takes JSON, NDJSON or CSV bodies only: README \"Security\")",
                ));
            }
            if has_body {
                add.push((
                    "413",
                    "over a configured size limit (body, items per job, criteria per rubric)",
                ));
            }
            let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
                continue;
            };
            for (code, description) in add {
                responses
                    .entry(code.to_owned())
                    .or_insert_with(|| error_response(description));
            }
            // A response documented by a handler without a body gets the error body
            // when it is an error.
            for (code, r) in responses.iter_mut() {
                if (code.starts_with('4') || code.starts_with('5')) && r.get("content").is_none() {
                    let d = r["description"].as_str().unwrap_or("error").to_owned();
                    *r = error_response(&d);
                }
            }
            if guarded && auth {
                op["security"] = json!([{"bearer": []}]);
            }
        }
    }
    if auth {
        doc["components"]["securitySchemes"] = json!({
            "bearer": {"type": "http", "scheme": "bearer", "description": "an API key from [[server.api_keys]]"}
        });
    }
    doc
}

/// Declares the route template's parameters the handler did not (its extractors
/// wrap axum's `Path`, which utoipa does not see through): ids are strings, rubric
/// versions integers from 1.
fn add_path_params(op: &mut Value, names: &[String]) {
    if names.is_empty() {
        return;
    }
    if !op.get("parameters").is_some_and(Value::is_array) {
        op["parameters"] = json!([]);
    }
    let Some(list) = op.get_mut("parameters").and_then(Value::as_array_mut) else {
        return;
    };
    for name in names {
        if list
            .iter()
            .any(|p| p["in"] == "path" && p["name"] == name.as_str())
        {
            continue;
        }
        let schema = if name == "version" {
            json!({"type": "integer", "minimum": 1, "maximum": u32::MAX})
        } else {
            json!({"type": "string"})
        };
        list.push(json!({"name": name, "in": "path", "required": true, "schema": schema}));
    }
}

/// `{"type": ["integer", "null"]}` -> `{"type": "integer"}`.
fn denull(schema: &mut Value) {
    if let Some(types) = schema.get("type").and_then(Value::as_array) {
        let kept: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
        if kept.len() == 1 {
            schema["type"] = kept[0].clone();
        }
    }
}
