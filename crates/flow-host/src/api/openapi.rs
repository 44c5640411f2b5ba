//! The OpenAPI document served at `/v1/openapi.json`.

use serde_json::{Value, json};

fn op(summary: &str, body: Option<&str>, response: &str) -> Value {
    let mut op = json!({
        "summary": summary,
        "responses": {
            "200": {"description": response},
            "400": {"description": "invalid input", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            "401": {"description": "missing or wrong bearer token"},
            "404": {"description": "no such collection, plugin or task"},
        }
    });
    if let Some(ct) = body {
        op["requestBody"] = json!({"required": true, "content": {ct: {}}});
    }
    op
}

fn name_param(what: &str) -> Value {
    json!([{"name": "name", "in": "path", "required": true, "schema": {"type": "string"},
            "description": format!("{what} name, percent-encoded (acme%2Forders)")}])
}

fn ingest_op() -> Value {
    let mut o = op(
        "Ingest NDJSON: all documents or none",
        Some("application/x-ndjson"),
        "offsets appended",
    );
    o["responses"]["503"] = json!({
        "description": "backpressure: the collection's unsealed head is over its bound because the fragment store fails (or its history could not be listed yet); retry later",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    });
    o
}

pub fn document() -> Value {
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Flow control API", "version": "0.1.0",
                 "description": "Every call but /v1/health requires `Authorization: Bearer TOKEN` when the host has a token."},
        "components": {
            "schemas": {"Error": {"type": "object", "properties": {"error": {"type": "object",
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}}, "required": ["code", "message"]}}}},
        },
        "paths": {
            "/v1/health": {"get": op("Liveness; needs no token", None, "ok")},
            "/metrics": {"get": op("Prometheus text metrics", None, "metrics")},
            "/v1/catalog": {
                "get": op("The current catalog", None, "catalog"),
                "post": op("Publish a catalog bundle {source, catalog, modules: {path: base64}}", Some("application/json"), "what was published"),
            },
            "/v1/collections": {"get": op("List collections: key, write head, and fragments {fragments, persistedThrough, firstOffset, unsealedBytes, failures, lastError, retryInMs, skipped}", None, "collections")},
            "/v1/collections/{name}/documents": {
                "parameters": name_param("Collection"),
                "get": {
                    "summary": "Read documents as NDJSON from an offset (default 0, or 'end'); follow=true keeps streaming",
                    "parameters": [
                        {"name": "offset", "in": "query", "schema": {"type": "string"}},
                        {"name": "follow", "in": "query", "schema": {"type": "boolean"}},
                    ],
                    "responses": {"200": {"description": "NDJSON documents", "content": {"application/x-ndjson": {}}}},
                },
                "post": ingest_op(),
            },
            "/v1/plugins": {"get": op("Live version of every plugin", None, "plugins")},
            "/v1/plugins/{name}": {"parameters": name_param("Plugin"), "post": op("Deploy a component as a new version", Some("application/wasm"), "the new version")},
            "/v1/plugins/{name}/rollback": {"parameters": name_param("Plugin"), "post": op("Make an earlier version live again: body {\"to\": SEQ} (optional)", Some("application/json"), "the new version")},
            "/v1/plugins/{name}/versions": {"parameters": name_param("Plugin"), "get": op("Every version of a plugin", None, "versions")},
            "/v1/plugins/{name}/logs": {"parameters": name_param("Plugin"), "get": op("Plugin log lines as NDJSON, oldest first, each with its task: after=SEQ, limit=N (a page: at most 1000 lines), follow=true (page after page as lines come)", None, "log lines")},
            "/v1/tasks": {"get": op("Status of every task: state, last error, lag, docs in/out", None, "tasks")},
            "/v1/tasks/{name}": {"parameters": name_param("Task"), "get": op("Status of one task", None, "task")},
        }
    })
}
