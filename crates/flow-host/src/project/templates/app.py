"""Customer totals: a Flow derivation in Python (`flow plugin init --lang python`).

For every order {customer, amount} it publishes {customer, total, orders}: the customer's
running totals, kept in host-managed state, which commits atomically with the outputs, so
totals survive restarts exactly. An order it cannot use fails with an error naming the
document (the task fails, or skips it, as the catalog's onError says).

    flow plugin build    # componentize-py: app.py, flow_sdk.py and wit/ -> plugin.wasm
    flow plugin test     # flow.yaml's tests against plugin.wasm, no server needed
"""

from flow_sdk import Derivation, Error, export, log, state


class CustomerTotals(Derivation):
    def __init__(self, spec):
        super().__init__(spec)
        log(f"opening {spec.name} with {len(spec.transforms)} transform(s)")

    def transform(self, source, publish):
        order = source.doc
        customer, amount = order.get("customer"), order.get("amount")
        if not isinstance(customer, str) or not isinstance(amount, (int, float)):
            raise Error("order is not {customer: string, amount: number}")
        if amount < 0:
            raise Error(f"order amount must not be negative, got {amount}")
        totals = state.get(source.key)
        if totals is None:
            totals = {"total": 0, "orders": 0}
        totals["total"] += amount
        totals["orders"] += 1
        state.set(source.key, totals)
        publish({"customer": customer, "total": totals["total"], "orders": totals["orders"]})


Derive = export(CustomerTotals)
