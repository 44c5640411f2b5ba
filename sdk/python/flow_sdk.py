"""Write Flow derivations and captures in Python: subclass `Derivation`, read documents as
Python values, keep per-key state with `state`, `publish` what the derived collection gets;
or subclass `Capture` and bring documents in over `http`, exactly once by a checkpoint.

    from flow_sdk import Derivation, Error, export, state

    class CustomerTotals(Derivation):
        def transform(self, source, publish):
            order = source.doc
            if order["amount"] < 0:
                raise Error(f"order amount must not be negative, got {order['amount']}")
            totals = state.get(source.key)
            if totals is None:
                totals = {"total": 0, "orders": 0}
            totals["total"] += order["amount"]
            totals["orders"] += 1
            state.set(source.key, totals)
            publish({"customer": order["customer"], **totals})

    Derive = export(CustomerTotals)

The module that calls `export` is the one componentize-py builds (`componentize app`, with
world `flow:plugin/derivation@VERSION` of wit/flow.wit): `Derive` is the name it looks for.
The same shape as the Rust SDK (`sdk/rust`): `open` once per task start or version switch,
`transform` per source document, `flush` at the end of every transaction.

A capture (world `flow:plugin/capture@VERSION`):

    from flow_sdk import Capture, Error, Poll, export_capture, http

    class Orders(Capture):
        def poll(self, out):
            orders = http.get(self.spec.config["url"]).json()
            for order in orders:
                out.document(0, order)
            ...
            return Poll.IDLE if not orders else Poll.MORE

    Source = export_capture(Orders)

Each world's bindings hold only its own imports: what another world's names need (`state`
in a capture, `http` in a derivation) raises when used.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import log as _log
from wit_world.imports.types import PluginError

try:
    from wit_world.imports import state as _state
except ImportError:  # a world without per-key state (a capture)
    _state = None
try:
    from wit_world.imports import http as _http
    from wit_world.imports import progress as _progress
except ImportError:  # a world without HTTP (a derivation)
    _http = _progress = None

__all__ = [
    "Capture",
    "CaptureBinding",
    "CaptureSpec",
    "Captured",
    "Derivation",
    "Error",
    "Poll",
    "Response",
    "Source",
    "Spec",
    "Transform",
    "export",
    "export_capture",
    "http",
    "log",
    "source_time",
    "state",
]


class Error(Exception):
    """A failure the host reports with the task and plugin version: raised from `transform`,
    it names the source document (the task fails, or skips the document, as the catalog's
    `onError` says). Any other exception is reported the same way, with its type."""


class Transform:
    """One transform of the derivation, as the catalog names it."""

    __slots__ = ("name", "source", "shuffle_key")

    def __init__(self, name, source, shuffle_key):
        self.name = name
        self.source = source
        self.shuffle_key = shuffle_key


class Spec:
    """The derivation being opened: `name`, `config` (the endpoint's config, parsed), `key`
    (JSON pointers) and `transforms`."""

    __slots__ = ("name", "config", "key", "transforms")

    def __init__(self, spec):
        self.name = spec.name
        self.config = json.loads(spec.config) if spec.config else None
        self.key = list(spec.key)
        self.transforms = [Transform(t.name, t.source, list(t.shuffle_key)) for t in spec.transforms]


class Source:
    """A source document: `transform` (an index into `Spec.transforms`), `key` (its shuffle
    key as JSON text, also its key for `state`), `text` (the document's JSON text) and `doc`
    (the document, parsed on first use)."""

    __slots__ = ("transform", "key", "text", "_doc")

    def __init__(self, transform, key, text):
        self.transform = transform
        self.key = key
        self.text = text
        self._doc = None

    @property
    def doc(self):
        if self._doc is None:
            self._doc = json.loads(self.text)
        return self._doc


class Derivation:
    """Subclass it and implement `transform`; `open` and `flush` are optional."""

    def __init__(self, spec):
        """Called when the task starts or switches to this version (`spec`: a `Spec`)."""
        self.spec = spec

    def transform(self, source, publish):
        """Called for each source document (a `Source`); `publish(value)` adds a document
        (any JSON-able value) to the derived collection."""
        raise NotImplementedError("a Derivation implements transform(self, source, publish)")

    def flush(self, publish):
        """Called at the end of every transaction, to publish what was held back."""


class state:
    """Per-shuffle-key state: JSON values, read and written within the transaction, committed
    atomically with its outputs."""

    @staticmethod
    def get(key):
        """The state of `key`, or None if never set (or cleared)."""
        text = _state.get(key)
        return None if text is None else json.loads(text)

    @staticmethod
    def set(key, value):
        _state.set(key, _dumps(value))

    @staticmethod
    def clear(key):
        _state.clear(key)


def log(message, level="info"):
    """One line in the plugin's log (`flow plugin logs NAME`): level trace, debug, info, warn
    or error."""
    _log.write(getattr(_log.Level, level.upper()), str(message))


def _dumps(value):
    # NaN and infinities are not JSON: refused here, where the document is known.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _failure(e, document=None):
    message = str(e) if isinstance(e, Error) else f"{type(e).__name__}: {e}"
    return Err(PluginError(message=message, document=document))


def export(cls):
    """The componentize-py export of derivation class `cls`: assign it to `Derive`."""

    class Derive(exports.Derive):
        plugin = None

        def open(self, spec):
            try:
                Derive.plugin = cls(Spec(spec))
            except Exception as e:
                raise _failure(e)

        def transform(self, batch):
            out = []

            def publish(value):
                out.append(_dumps(value))

            plugin = Derive.plugin
            for i, s in enumerate(batch):
                try:
                    plugin.transform(Source(s.transform, s.key, s.document), publish)
                except Exception as e:
                    raise _failure(e, i)
            return out

        def flush(self):
            out = []
            try:
                Derive.plugin.flush(lambda value: out.append(_dumps(value)))
            except Exception as e:
                raise _failure(e)
            return out

    return Derive


# --- Captures ---------------------------------------------------------------------------


class CaptureBinding:
    """One binding of the capture: `target` (the collection its documents go to) and
    `resource` (its `resource`, parsed)."""

    __slots__ = ("target", "resource")

    def __init__(self, target, resource):
        self.target = target
        self.resource = resource


class CaptureSpec:
    """The capture being opened: `name`, `config` (the endpoint's config, parsed) and
    `bindings`."""

    __slots__ = ("name", "config", "bindings")

    def __init__(self, spec):
        self.name = spec.name
        self.config = json.loads(spec.config) if spec.config else None
        self.bindings = [CaptureBinding(b.target, json.loads(b.resource)) for b in spec.bindings]


class Poll:
    """What `Capture.poll` returns: whether the source has more right now (the host polls
    again at once) or is idle (the host waits, longer while it stays idle)."""

    MORE = "more"
    IDLE = "idle"


class Captured:
    """What one poll captured: `document(binding, value)` for each document, and
    `checkpoint(value)`: where the next poll starts, committed with this poll's documents
    and given to the capture's constructor after a restart."""

    __slots__ = ("_documents", "_checkpoint")

    def __init__(self):
        self._documents = []
        self._checkpoint = None

    def document(self, binding, value):
        """Capture `value` (any JSON-able value) for binding `binding` (an index)."""
        self._documents.append((binding, _dumps(value)))

    def document_text(self, binding, text):
        """Capture a document given as JSON text, as a source returned it."""
        self._documents.append((binding, text))

    def checkpoint(self, value):
        self._checkpoint = _dumps(value)

    def __len__(self):
        return len(self._documents)


class Capture:
    """Subclass it and implement `poll`. Each poll is one host transaction: its documents
    are validated against their binding's collection and committed with its checkpoint, or
    not at all; resuming from the checkpoint is what makes a capture exactly once."""

    def __init__(self, spec, checkpoint):
        """Called when the task starts, with the last committed checkpoint (None: never
        one). `spec`: a `CaptureSpec`."""
        self.spec = spec

    def poll(self, out):
        """Capture what comes next into `out` (a `Captured`); return `Poll.MORE` or
        `Poll.IDLE`."""
        raise NotImplementedError("a Capture implements poll(self, out)")


class Response:
    """An HTTP response: `status`, `headers` (a list of (name, value)), `body` (bytes)."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, r):
        self.status = r.status
        self.headers = list(r.headers)
        self.body = bytes(r.body)

    def header(self, name):
        """The value of header `name` (case-insensitive), or None."""
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)

    def json(self):
        """The body, parsed as JSON."""
        return json.loads(self.body)


class http:
    """Outgoing HTTP to the hosts on the task's allow-list (`endpoint.http.allow`); anything
    else is refused by the host, and an `Error` here. A response over the host's cap
    (`hostResultBytesMax`) is an error too: page big reads."""

    @staticmethod
    def send(method, url, headers=(), body=b""):
        if _http is None:
            raise Error("http is granted to captures and materializations, not to this world")
        request = _http.Request(method=method, url=url, headers=list(headers), body=bytes(body))
        try:
            return Response(_http.send(request))
        except Err as e:
            raise Error(str(e.value)) from None

    @staticmethod
    def get(url, headers=()):
        return http.send("GET", url, headers)


def source_time(ms):
    """When the source committed the last change this poll captured (ms since the Unix
    epoch, by the source's clock): the host shows the capture's lag behind it."""
    _progress.source_time(ms)


def export_capture(cls):
    """The componentize-py export of capture class `cls`: assign it to `Source`."""
    from wit_world.exports import source as _source

    class Source(exports.Source):
        plugin = None

        def open(self, spec, checkpoint):
            try:
                Source.plugin = cls(
                    CaptureSpec(spec), None if checkpoint is None else json.loads(checkpoint)
                )
            except Exception as e:
                raise _failure(e)

        def poll(self):
            out = Captured()
            try:
                result = Source.plugin.poll(out)
            except Exception as e:
                raise _failure(e)
            return _source.PollResult(
                documents=[_source.Captured(binding=b, document=d) for b, d in out._documents],
                checkpoint=out._checkpoint,
                idle=result == Poll.IDLE,
            )

    return Source
