"""Schemathesis hooks for the Flow control API (run by tests/all/api_schema.rs).

- `follow=true` keeps a documents or logs response open by design (it streams as data comes),
  so a request with it would never finish: the hook drops the flag from every generated
  request; every other parameter is generated as the document describes it.
- The API takes NDJSON (ingest) and component bytes (deploy): these serializers send what was
  generated for them as the body.
"""
import json

import schemathesis


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    if case.query:
        case.query.pop("follow", None)


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return json.dumps(value).encode()


@schemathesis.serializer("application/wasm")
def wasm(ctx, value):
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return json.dumps(value).encode()
