"""Schemathesis hooks for the Flow control API (run by tests/all/api_schema.rs).

- `follow=true` keeps a documents or logs response open by design (it streams as data comes),
  so a request with it would never finish: the hook drops the flag from every generated
  request; every other parameter is generated as the document describes it.
- CPython 3.11.7 workaround, below.
- The API takes NDJSON (ingest) and component bytes (deploy): these serializers send what was
  generated for them as the body.
"""
import json

import hypothesis.internal.lambda_sources
import schemathesis

# Hypothesis names a filter in its repr by parsing the source file of its lambda, and
# CPython 3.11.7's ast.parse intermittently fails on schemathesis's largest module with
# "SystemError: AST constructor recursion depth mismatch" (a CPython bug, fixed in later
# releases), which schemathesis reports as an error of the operation under test. The names
# only decorate reprs, so a lambda is described as "lambda" without parsing anything.
hypothesis.internal.lambda_sources.lambda_description = lambda f: "lambda"


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    if case.query:
        case.query.pop("follow", None)


def as_body(ctx, value):
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return json.dumps(value).encode()


schemathesis.serializer("application/x-ndjson")(as_body)
schemathesis.serializer("application/wasm")(as_body)
