"""Customer totals: a Flow derivation in Python (`flow plugin init --lang python`).

For every order {customer, amount} it publishes {customer, total, orders}: the customer's
running totals, kept in host-managed state, which commits atomically with the outputs, so
totals survive restarts exactly. An order it cannot use is returned as an error naming the
document (the task fails, or skips it, as the catalog's onError says).

    flow plugin build    # componentize-py: app.py + wit/ -> plugin.wasm
    flow plugin test     # flow.yaml's tests against plugin.wasm, no server needed
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import log, state
from wit_world.imports.types import PluginError


class Derive(exports.Derive):
    def open(self, spec):
        log.write(log.Level.INFO, f"opening {spec.name} with {len(spec.transforms)} transform(s)")

    def transform(self, batch):
        out = []
        for i, source in enumerate(batch):
            order = json.loads(source.document)
            customer, amount = order.get("customer"), order.get("amount")
            if not isinstance(customer, str) or not isinstance(amount, (int, float)):
                raise Err(PluginError(message="order is not {customer: string, amount: number}", document=i))
            if amount < 0:
                raise Err(PluginError(message=f"order amount must not be negative, got {amount}", document=i))
            prev = state.get(source.key)
            totals = json.loads(prev) if prev else {"total": 0, "orders": 0}
            totals["total"] += amount
            totals["orders"] += 1
            state.set(source.key, json.dumps(totals))
            out.append(json.dumps({"customer": customer, "total": totals["total"], "orders": totals["orders"]}))
        return out

    def flush(self):
        return []
