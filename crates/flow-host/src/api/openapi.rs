//! The OpenAPI document served at `/v1/openapi.json`. Request and response bodies are the
//! schemas of the Rust types the handlers read and write (derived with schemars), so the
//! document cannot drift from what the API does; schemathesis checks it against a running host
//! in the test command (`tests/api/schemathesis.sh`).

use crate::catalog::{Bundle, Catalog};
use crate::journal::fragment::FragmentStatus;
use crate::plugin::Version;
use crate::runtime::{CollectionInfo, Deleted, Ingested, Published, Reset, TaskStatus};
use schemars::generate::{Contract, SchemaSettings};
use serde_json::{Map, Value, json};

/// A JSON response (or body) of schema `name` in `components/schemas`.
fn body(name: &str) -> Value {
    json!({"application/json": {"schema": {"$ref": format!("#/components/schemas/{name}")}}})
}

fn error(description: &str) -> Value {
    json!({"description": description, "content": body("Error")})
}

/// The answers every authenticated route may give besides its own.
fn common(mut responses: Map<String, Value>) -> Value {
    responses.insert(
        "401".into(),
        error("missing or wrong bearer token (only when the host has a token)"),
    );
    responses.insert(
        "503".into(),
        error("the host's database cannot be written now (the reason says why); retry later"),
    );
    responses.insert(
        "507".into(),
        error("the host's disk is full: the reason names the path and the free bytes"),
    );
    Value::Object(responses)
}

fn op(summary: &str, ok: (&str, Value), more: &[(&str, &str)]) -> Value {
    let mut responses = Map::new();
    responses.insert("200".into(), json!({"description": ok.0, "content": ok.1}));
    for (status, why) in more {
        responses.insert((*status).into(), error(why));
    }
    json!({"summary": summary, "responses": common(responses)})
}

fn with_body(mut op: Value, content: Value) -> Value {
    op["requestBody"] = json!({"required": true, "content": content});
    op
}

fn name_param(what: &str) -> Value {
    // Examples name what the acme catalog has (README), but for deletes, which name what it
    // has not: an example is run as it is by clients and testers.
    let example = match what {
        "Collection" => "acme/orders",
        "Plugin" => "totals",
        "Task" => "acme/customer-totals",
        _ => "acme/nothing",
    };
    json!([{"name": "name", "in": "path", "required": true, "schema": {"type": "string"},
            "example": example,
            "description": format!("{what} name, percent-encoded (acme%2Forders)")}])
}

/// `content` with `example` set on its one media type.
fn with_example(mut content: Value, example: Value) -> Value {
    if let Some(media) = content.as_object_mut().and_then(|m| m.values_mut().next()) {
        media["example"] = example;
    }
    content
}

fn query(name: &str, schema: Value, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "schema": schema,
           "description": description})
}

fn list_of(property: &str, item: &str) -> Value {
    json!({"application/json": {"schema": {"type": "object", "required": [property],
        "properties": {property: {"type": "array", "items": {"$ref": format!("#/components/schemas/{item}")}}}}}})
}

const INVALID: (&str, &str) = (
    "400",
    "invalid input: the message names the thing and the reason",
);
const CONFLICT: (&str, &str) = (
    "409",
    "refused because something else uses it: the message names each user",
);
const TOO_LARGE: (&str, &str) = ("413", "the request body is over the host's limit");

/// Boolean schemas (an array of any JSON, `items: true`) become `{}` and `{"not": {}}`:
/// valid in OpenAPI 3.1, and what more clients and validators read.
fn no_bool_schemas(v: &mut Value) {
    let Value::Object(m) = v else { return };
    for (key, child) in m.iter_mut() {
        let schemas: Vec<&mut Value> = match (key.as_str(), child) {
            ("properties", Value::Object(p)) => p.values_mut().collect(),
            ("anyOf" | "allOf" | "oneOf", Value::Array(a)) => a.iter_mut().collect(),
            ("items" | "not" | "additionalProperties", c) => vec![c],
            _ => continue,
        };
        for s in schemas {
            match s {
                Value::Bool(true) if key != "additionalProperties" => *s = json!({}),
                Value::Bool(false) if key != "additionalProperties" => *s = json!({"not": {}}),
                _ => no_bool_schemas(s),
            }
        }
    }
}

/// OpenAPI 3.1's schemas are JSON Schema 2020-12, kept under `components/schemas`.
fn openapi31() -> SchemaSettings {
    SchemaSettings::draft2020_12().with(|s| {
        s.definitions_path = "/components/schemas".into();
        s.meta_schema = None;
    })
}

/// The schemas of the bodies, keyed by type name, plus `Error` and `Health`.
fn schemas() -> Map<String, Value> {
    // Responses as the host writes them (a field it skips when empty is not required)...
    let mut generator = openapi31()
        .with(|s| s.contract = Contract::Serialize)
        .into_generator();
    generator.subschema_for::<Catalog>();
    generator.subschema_for::<Published>();
    generator.subschema_for::<Ingested>();
    generator.subschema_for::<CollectionInfo>();
    generator.subschema_for::<FragmentStatus>();
    generator.subschema_for::<Version>();
    generator.subschema_for::<TaskStatus>();
    generator.subschema_for::<crate::plugin::LogLine>();
    generator.subschema_for::<Deleted>();
    generator.subschema_for::<Reset>();
    let mut schemas = generator.take_definitions(true);
    // ...and the one request body as the host reads it (defaults make fields optional),
    // inline so that its parts do not clash with the response schemas of the same names.
    let bundle = openapi31()
        .with(|s| {
            s.contract = Contract::Deserialize;
            s.inline_subschemas = true;
        })
        .into_generator()
        .into_root_schema_for::<Bundle>();
    let mut bundle = bundle.to_value();
    if let Some(m) = bundle.as_object_mut() {
        m.remove("$schema");
    }
    schemas.insert("Bundle".into(), bundle);
    for schema in schemas.values_mut() {
        no_bool_schemas(schema);
    }
    schemas.insert(
        "Error".into(),
        json!({"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["code", "message"], "properties": {
                "code": {"type": "string", "description": "stable: invalid, not_found, conflict, unauthorized, method_not_allowed, too_large, unavailable, insufficient_storage, internal"},
                "message": {"type": "string"}}}}}),
    );
    schemas.insert(
        "Health".into(),
        json!({"type": "object", "required": ["status"], "properties": {
            "status": {"type": "string", "enum": ["ok", "unhealthy"]},
            "reason": {"type": "string"},
            "diskFull": {"type": "boolean"}}}),
    );
    schemas
}

/// Each operation's id (for generated clients) and the links from lists to the items they
/// name (for clients and schemathesis's stateful phase).
fn name_operations(doc: &mut Value) {
    let ids = [
        ("/", "get", "dashboard"),
        ("/v1/health", "get", "health"),
        ("/v1/openapi.json", "get", "openapi"),
        ("/metrics", "get", "metrics"),
        ("/v1/catalog", "get", "getCatalog"),
        ("/v1/catalog", "post", "publish"),
        ("/v1/collections", "get", "listCollections"),
        ("/v1/collections/{name}/documents", "get", "readDocuments"),
        ("/v1/collections/{name}/documents", "post", "ingest"),
        ("/v1/plugins", "get", "listPlugins"),
        ("/v1/plugins/{name}", "post", "deployPlugin"),
        ("/v1/plugins/{name}/rollback", "post", "rollbackPlugin"),
        ("/v1/plugins/{name}/versions", "get", "pluginVersions"),
        ("/v1/plugins/{name}/logs", "get", "pluginLogs"),
        ("/v1/tasks", "get", "listTasks"),
        ("/v1/tasks/{name}", "get", "getTask"),
        ("/v1/catalog/delete", "post", "deleteEntries"),
        ("/v1/catalog/{name}", "delete", "deleteEntry"),
        (
            "/v1/plugins/{name}/versions/{seq}",
            "delete",
            "deletePluginVersion",
        ),
        ("/v1/tasks/{name}/pause", "post", "pauseTask"),
        ("/v1/tasks/{name}/resume", "post", "resumeTask"),
        ("/v1/tasks/{name}/reset", "post", "resetTask"),
    ];
    for (path, method, id) in ids {
        doc["paths"][path][method]["operationId"] = json!(id);
    }
    let links = [
        (
            "/v1/collections",
            "collections",
            &["readDocuments", "ingest"][..],
        ),
        (
            "/v1/plugins",
            "plugins",
            &["pluginVersions", "pluginLogs", "rollbackPlugin"][..],
        ),
        ("/v1/tasks", "tasks", &["getTask"][..]),
    ];
    for (path, list, targets) in links {
        let mut map = Map::new();
        for target in targets {
            map.insert(
                (*target).to_string(),
                json!({"operationId": target, "parameters": {"name": format!("$response.body#/{list}/0/name")}}),
            );
        }
        doc["paths"][path]["get"]["responses"]["200"]["links"] = Value::Object(map);
    }
}

pub fn document() -> Value {
    let mut doc = paths();
    name_operations(&mut doc);
    doc
}

fn paths() -> Value {
    let ndjson = |what: &str| json!({"application/x-ndjson": {"schema": {"type": "string", "description": what}}});
    let logs = op(
        "Plugin log lines as NDJSON (each a LogLine), oldest first, each with its task",
        ("log lines", ndjson("one LogLine per line")),
        &[INVALID, ("404", "no such plugin")],
    );
    let mut logs = logs;
    logs["parameters"] = json!([
        query(
            "after",
            json!({"type": "integer", "minimum": 0}),
            "only lines with a greater seq"
        ),
        query(
            "limit",
            json!({"type": "integer", "minimum": 0}),
            "a page: at most this many lines (at most 1000)"
        ),
        query(
            "follow",
            json!({"type": "boolean"}),
            "keep the response open, page after page as lines come"
        ),
    ]);
    let mut read = op(
        "Read documents as NDJSON from an offset",
        ("NDJSON documents", ndjson("one document per line")),
        &[INVALID, ("404", "no such collection")],
    );
    read["parameters"] = json!([
        query(
            "offset",
            json!({"type": "string"}),
            "a journal offset, or `end` (default 0)"
        ),
        query(
            "follow",
            json!({"type": "boolean"}),
            "keep the response open and send documents as they are appended"
        ),
        query(
            "journal",
            json!({"type": "string"}),
            "for a collection with logical partitions: the journal of one partition (`{collection}/{field}={value}...`, listed by GET /v1/collections), whose offsets `offset` is in; without it, every partition is read from its beginning, one after another (offset 0, no follow)"
        ),
    ]);
    let ingest = with_body(
        op(
            "Ingest NDJSON: all documents or none",
            ("offsets appended", body("Ingested")),
            &[INVALID, ("404", "no such collection"), TOO_LARGE],
        ),
        with_example(
            ndjson("one JSON document per line"),
            json!(
                "{\"id\": 1, \"customer\": \"alice\", \"amount\": 5}\n{\"id\": 2, \"customer\": \"bob\", \"amount\": 7.5}\n"
            ),
        ),
    );
    let mut health = json!({"summary": "Whether the host can take writes; needs no token", "security": [],
        "responses": {
            "200": {"description": "ok", "content": body("Health")},
            "503": {"description": "unhealthy: the reason says why", "content": body("Health")}}});
    health["responses"]["503"]["description"] = json!("unhealthy: its database cannot be written");
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Flow control API", "version": "0.1.0",
                 "description": "Every call but /v1/health requires `Authorization: Bearer TOKEN` when the host has a token."},
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": Value::Object(schemas()),
        },
        "paths": {
            "/": {"get": {"summary": "The web dashboard (an HTML page that uses this API; it needs no token, its API calls do)", "security": [],
                "responses": {"200": {"description": "the dashboard", "content": {"text/html": {"schema": {"type": "string"}}}}}}},
            "/v1/health": {"get": health},
            "/v1/openapi.json": {"get": op("This document", ("an OpenAPI 3.1 document", json!({"application/json": {"schema": {"type": "object"}}})), &[])},
            "/metrics": {"get": op("Metrics: OpenMetrics 1.0 text when the request accepts application/openmetrics-text, else Prometheus text 0.0.4. Counters end in _total; per task: documents in, out and failed, transactions, lag in bytes, documents and seconds per source, state, histograms of transaction and plugin call time; per collection: bytes written, persisted and unsealed", ("metrics", json!({"text/plain": {"schema": {"type": "string"}}, "application/openmetrics-text": {"schema": {"type": "string"}}})), &[])},
            "/v1/catalog": {
                "get": op("The current catalog", ("catalog", body("Catalog")), &[]),
                "post": with_body(
                    op("Publish a catalog bundle: everything in it or nothing", ("what was published", body("Published")), &[INVALID, TOO_LARGE]),
                    with_example(body("Bundle"), json!({"source": "example.flow.yaml", "catalog": {"collections": {"acme/example": {
                        "schema": {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}, "key": ["/id"]}}}}))),
            },
            "/v1/catalog/delete": {"post": with_body(
                op("Delete catalog entries together, in one transaction: collections (a derivation is its collection), materializations, captures, tests. Refused (409), deleting nothing, while an entry not deleted uses one; the message names each user. Deleted tasks stop and lose their checkpoints, state and counters; documents stay in their journals, a materialization's tables in its destination",
                    ("what was deleted", body("Deleted")), &[INVALID, ("404", "an entry named is not in the catalog"), CONFLICT]),
                json!({"application/json": {"schema": {"type": "object", "required": ["names"], "additionalProperties": false,
                    "properties": {"names": {"type": "array", "items": {"type": "string"}, "description": "the entries to delete"}}},
                    "example": {"names": ["acme/nothing"]}}}))},
            "/v1/catalog/{name}": {"parameters": name_param("Catalog entry"), "delete": op("Delete one catalog entry (as /v1/catalog/delete with one name)",
                ("what was deleted", body("Deleted")), &[INVALID, ("404", "no such entry"), CONFLICT])},
            "/v1/collections": {"get": op("Every collection: key, write head, fragments", ("collections", list_of("collections", "CollectionInfo")), &[])},
            "/v1/collections/{name}/documents": {"parameters": name_param("Collection"), "get": read, "post": ingest},
            "/v1/plugins": {"get": op("The live version of every plugin", ("plugins", list_of("plugins", "Version")), &[])},
            "/v1/plugins/{name}": {"parameters": name_param("Plugin"), "post": with_body(
                op("Deploy a component as a new version", ("the new version", body("Version")), &[INVALID, TOO_LARGE]),
                json!({"application/wasm": {"schema": {"type": "string", "format": "binary"}}}))},
            "/v1/plugins/{name}/rollback": {"parameters": name_param("Plugin"), "post": {
                "requestBody": {"required": false, "content": {"application/json": {"schema": {"type": "object",
                    "properties": {"to": {"type": "integer", "minimum": 1, "description": "the version to return to (default: the newest earlier one with another component)"}}},
                    "example": {"to": 99}}}},
                "summary": "Make an earlier version live again, as a new version",
                "responses": common({
                    let mut m = Map::new();
                    m.insert("200".into(), json!({"description": "the new version", "content": body("Version")}));
                    m.insert("400".into(), error(INVALID.1));
                    m
                })}},
            "/v1/plugins/{name}/versions": {"parameters": name_param("Plugin"), "get": op("Every version of a plugin", ("versions", list_of("versions", "Version")), &[("404", "no such plugin")])},
            "/v1/plugins/{name}/logs": {"parameters": name_param("Plugin"), "get": logs},
            "/v1/plugins/{name}/versions/{seq}": {"parameters": [name_param("Plugin")[0].clone(),
                    {"name": "seq", "in": "path", "required": true, "schema": {"type": "integer", "minimum": 1}, "description": "the version's sequence number"}],
                "delete": op("Delete a plugin version nothing runs (refused, 409, for the live version while a task uses the plugin)",
                    ("the deleted version", body("Version")), &[INVALID, ("404", "no such plugin or version"), CONFLICT])},
            "/v1/tasks/{name}/pause": {"parameters": name_param("Task"), "post": op("Pause a task at its next transaction boundary, until resumed (across restarts and publishes)",
                ("the task's status", body("TaskStatus")), &[("404", "no such task")])},
            "/v1/tasks/{name}/resume": {"parameters": name_param("Task"), "post": op("Resume a paused task from its checkpoint",
                ("the task's status", body("TaskStatus")), &[("404", "no such task")])},
            "/v1/tasks/{name}/reset": {"parameters": name_param("Task"), "post": op("Start a task over from the beginning of its sources, counters from zero: a derivation's checkpoints and state are cleared and what it derives again is appended; a capture's connector checkpoint is cleared; a materialization ignores its destination's checkpoint once and writes every row again (refused, 400, for a binding of a collection with reduce annotations, whose rows would be reduced twice)",
                ("what the reset did", body("Reset")), &[INVALID, ("404", "no such task")])},
            "/v1/tasks": {"get": op("Status of every task: state, last error, lag, documents in and out", ("tasks", list_of("tasks", "TaskStatus")), &[])},
            "/v1/tasks/{name}": {"parameters": name_param("Task"), "get": op("Status of one task", ("task", body("TaskStatus")), &[("404", "no such task")])},
        }
    })
}

#[cfg(test)]
mod test {
    use serde_json::Value;
    use std::collections::BTreeSet;

    /// Every route of the router, as (method, path), read from its source: what
    /// `api::router` registers with `.route(PATH, METHOD(handler)...)`.
    fn routed() -> BTreeSet<(String, String)> {
        let source = include_str!("mod.rs");
        let mut out = BTreeSet::new();
        for segment in source.split(".route(").skip(1) {
            let segment = &segment[..segment.find("\n        .").unwrap_or(segment.len())];
            let path = segment.split('"').nth(1).expect("a route's path");
            for method in ["get", "post", "delete", "put", "patch"] {
                let called = segment
                    .match_indices(&format!("{method}("))
                    .any(|(i, _)| i == 0 || !segment.as_bytes()[i - 1].is_ascii_alphanumeric());
                if called {
                    out.insert((method.to_string(), path.to_string()));
                }
            }
        }
        out
    }

    /// Every operation of the document, as (method, path).
    fn documented() -> BTreeSet<(String, String)> {
        let doc = super::document();
        let mut out = BTreeSet::new();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for method in ops.as_object().unwrap().keys() {
                if method != "parameters" {
                    out.insert((method.clone(), path.clone()));
                }
            }
        }
        out
    }

    #[test]
    fn every_route_is_documented_and_every_documented_route_is_routed() {
        let routed = routed();
        assert!(routed.len() > 15, "the routes were not found: {routed:?}");
        let documented = documented();
        // One route answers three documented operations: a task's verbs.
        let verbs: BTreeSet<(String, String)> = ["pause", "resume", "reset"]
            .iter()
            .map(|v| ("post".to_string(), format!("/v1/tasks/{{name}}/{v}")))
            .collect();
        let generic = ("post".to_string(), "/v1/tasks/{name}/{verb}".to_string());
        let mut expected = routed.clone();
        if expected.remove(&generic) {
            expected.extend(verbs);
        }
        let undocumented: Vec<_> = expected.difference(&documented).collect();
        let unrouted: Vec<_> = documented.difference(&expected).collect();
        assert!(
            undocumented.is_empty() && unrouted.is_empty(),
            "routes the OpenAPI document lacks: {undocumented:?}; documented operations no route serves: {unrouted:?}"
        );
        // Every operation has an id, a summary and a 200 answer with content.
        let doc = super::document();
        for (method, path) in &documented {
            let op: &Value = &doc["paths"][path][method];
            assert!(
                op["operationId"].is_string(),
                "{method} {path}: no operationId"
            );
            assert!(op["summary"].is_string(), "{method} {path}: no summary");
            assert!(
                op["responses"]["200"]["content"].is_object(),
                "{method} {path}: no 200 content"
            );
        }
    }
}
