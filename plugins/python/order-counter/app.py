"""A derivation written in Python, against the same wit/ as the Rust SDK.

Counts orders per shuffle key in host-managed state and publishes
{"customer": ..., "orders": N, "lastId": ...} for every order. Amounts below zero are
returned as a plugin error naming the document.

Build (tests/build.rs runs this, with the version of the package in wit/flow.wit):
    componentize-py -d ../../../wit -w flow:plugin/derivation@VERSION componentize app -o order_counter.wasm
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import log, state
from wit_world.imports.types import PluginError


class Derive(exports.Derive):
    def open(self, spec):
        log.write(log.Level.INFO, f"python derivation {spec.name} opened")

    def transform(self, batch):
        out = []
        for i, source in enumerate(batch):
            doc = json.loads(source.document)
            if doc.get("amount", 0) < 0:
                raise Err(PluginError(message=f"amount must not be negative: {doc['amount']}", document=i))
            prev = state.get(source.key)
            count = (json.loads(prev)["orders"] if prev else 0) + 1
            state.set(source.key, json.dumps({"orders": count}))
            out.append(json.dumps({"customer": doc["customer"], "orders": count, "lastId": doc["id"]}))
        return out

    def flush(self):
        return []
