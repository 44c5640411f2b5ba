"""Orders from an HTTP API: a Flow capture in Python (`flow plugin init --world capture`).

It GETs `config.url` (a JSON array of orders, oldest first), then `config.url?after=ID` with
the id of the last order it captured, and captures each order into its binding's collection.
Its checkpoint is that last id, committed with the orders, so after a restart it resumes
exactly where the last committed poll ended: every order once.

    flow plugin build    # componentize-py: app.py, flow_sdk.py and wit/ -> plugin.wasm
    flow plugin test     # flow.yaml's tests against plugin.wasm, HTTP answered by the tests
"""

from flow_sdk import Capture, Error, Poll, export_capture, http, log


class OrdersApi(Capture):
    def __init__(self, spec, checkpoint):
        super().__init__(spec, checkpoint)
        url = (spec.config or {}).get("url")
        if not isinstance(url, str):
            raise Error("config.url must be the orders API's URL, e.g. https://api.example.com/orders")
        self.url = url
        self.after = checkpoint.get("after") if checkpoint else None
        if self.after is None:
            log(f"opening {spec.name} at {url}, from the start")
        else:
            log(f"opening {spec.name} at {url}, after order {self.after}")

    def poll(self, out):
        url = self.url if self.after is None else f"{self.url}?after={self.after}"
        try:
            response = http.get(url, [("accept", "application/json")])
        except Error as e:
            raise Error(f"GET {url}: {e}")
        if response.status != 200:
            raise Error(f"GET {url}: HTTP {response.status}")
        try:
            orders = response.json()
        except ValueError:
            orders = None
        if not isinstance(orders, list):
            raise Error(f"GET {url}: the response is not a JSON array of orders")
        for order in orders:
            id = order.get("id") if isinstance(order, dict) else None
            if not isinstance(id, int) or isinstance(id, bool):
                raise Error(f"GET {url}: an order has no integer id")
            out.document(0, order)
            self.after = id
        if not orders:
            return Poll.IDLE
        out.checkpoint({"after": self.after})
        return Poll.MORE


Source = export_capture(OrdersApi)
