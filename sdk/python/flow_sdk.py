"""Write Flow derivations in Python: subclass `Derivation`, read documents as Python values,
keep per-key state with `state`, `publish` what the derived collection gets.

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
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import log as _log
from wit_world.imports import state as _state
from wit_world.imports.types import PluginError

__all__ = ["Derivation", "Error", "Source", "Spec", "Transform", "export", "log", "state"]


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
