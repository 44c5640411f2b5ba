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

A materialization (world `flow:plugin/materialization@VERSION`):

    from flow_sdk import Materialization, export_materialization, fields, sql

    class Totals(Materialization):
        def open(self):
            sql.execute("CREATE TABLE IF NOT EXISTS ...")
            ...
            return the_checkpoint_last_committed_or_None

        def load(self, binding, keys): ...            # [(key, document)] of those that exist
        def write(self, binding, documents): ...      # upsert or delete each
        def commit(self, checkpoint): ...             # record it with the rows

    Sink = export_materialization(Totals)

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
except ImportError:  # a world without HTTP (a derivation)
    _http = None
try:
    from wit_world.imports import progress as _progress
except ImportError:  # a world without a source's progress (not a capture)
    _progress = None
try:
    from wit_world.imports import fields as _fields
    from wit_world.imports import kv as _kv
    from wit_world.imports import sql as _sql
except ImportError:  # a world without a destination (not a materialization)
    _fields = _kv = _sql = None

__all__ = [
    "Capture",
    "CaptureBinding",
    "CaptureSpec",
    "Captured",
    "Derivation",
    "Error",
    "Field",
    "Materialization",
    "MaterializationBinding",
    "MaterializationSpec",
    "Poll",
    "Raw",
    "Response",
    "Source",
    "Spec",
    "Stored",
    "Transform",
    "export",
    "export_capture",
    "export_materialization",
    "export_migration",
    "fields",
    "http",
    "kv",
    "log",
    "pointer",
    "source_time",
    "sql",
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


def export_migration(migrate):
    """The componentize-py export of a state migration: assign it to `Migrate` beside
    `Derive`, and `flow plugin build` builds the derivation on world
    `flow:plugin/migrating-derivation@VERSION`. When a task switches to this version from
    another component that last wrote its state, the host calls `migrate(from_digest, key,
    state)` for each key before the first transaction (`from_digest`: `sha256:...` of that
    component; `key` and `state` parsed): return the key's new state, or None to keep it.
    The results commit atomically (all keys or none)."""
    from wit_world.exports import migrate as _migrate

    class Migrate(exports.Migrate):
        def migrate(self, from_digest, batch):
            out = []
            for i, s in enumerate(batch):
                try:
                    new = migrate(from_digest, json.loads(s.key), json.loads(s.state))
                except Exception as e:
                    raise _failure(e, i)
                if new is not None:
                    out.append(_migrate.KeyedState(key=s.key, state=_dumps(new)))
            return out

    return Migrate


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
        return Response(_call(_http, "http", lambda: _http.send(request)))

    @staticmethod
    def get(url, headers=()):
        return http.send("GET", url, headers)


def source_time(ms):
    """When the source committed the last change this poll captured (ms since the Unix
    epoch, by the source's clock): the host shows the capture's lag behind it."""
    if _progress is None:
        raise Error("source_time is granted to captures, not to this world")
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


# --- Materializations ----------------------------------------------------------------------


class MaterializationBinding:
    """One binding of the materialization: `collection` (its source), `schema` (the
    collection's JSON schema, parsed), `key` (JSON pointers), `resource` (parsed, e.g.
    `{"table": "customer_totals"}`) and `delta_updates`."""

    __slots__ = ("collection", "schema", "key", "resource", "delta_updates")

    def __init__(self, b):
        self.collection = b.collection
        self.schema = json.loads(b.schema)
        self.key = list(b.key)
        self.resource = json.loads(b.resource)
        self.delta_updates = b.delta_updates


class MaterializationSpec:
    """The materialization being opened: `name`, `config` (the endpoint's config, parsed)
    and `bindings`."""

    __slots__ = ("name", "config", "bindings")

    def __init__(self, spec):
        self.name = spec.name
        self.config = json.loads(spec.config) if spec.config else None
        self.bindings = [MaterializationBinding(b) for b in spec.bindings]


class Stored:
    """A document to write: `key` (the key's values, a list, parsed on first use),
    `key_text` (the key as a JSON array), `text` (the document's JSON text, what a
    whole-document column stores), `doc` (the document, parsed on first use), `exists`
    (whether `load` returned it in this transaction) and `delete` (the reduction deleted
    it: remove its row)."""

    __slots__ = ("key_text", "text", "exists", "delete", "_key", "_doc")

    def __init__(self, s):
        self.key_text = s.key
        self.text = s.document
        self.exists = s.exists
        self.delete = s.delete
        self._key = None
        self._doc = None

    @property
    def key(self):
        if self._key is None:
            self._key = json.loads(self.key_text)
        return self._key

    @property
    def doc(self):
        if self._doc is None:
            self._doc = json.loads(self.text)
        return self._doc


class Materialization:
    """Subclass it and implement `open`, `load`, `write` and `commit`. Per transaction the
    host calls `load` (standard updates: for the keys the transaction touches), then `write`
    (the fully reduced documents, in key order), then `commit` with the checkpoint, all in
    one destination transaction the host commits after `commit` returns; writing the
    checkpoint with the rows is what makes a materialization exactly once."""

    def __init__(self, spec):
        """Called when the task starts (`spec`: a `MaterializationSpec`), before `open`."""
        self.spec = spec

    def open(self):
        """Create or update the destination's tables; return the checkpoint `commit` last
        recorded (its JSON text), or None if it never did."""
        raise NotImplementedError("a Materialization implements open(self)")

    def load(self, binding, keys):
        """The stored documents of those `keys` (each a list of the key's values) that
        exist, as `(key, document)` pairs (the key as given, the document any JSON-able
        value, or `Raw(text)` for JSON text as stored)."""
        raise NotImplementedError("a Materialization implements load(self, binding, keys)")

    def write(self, binding, documents):
        """Write `documents` (each a `Stored`) of binding `binding` (an index)."""
        raise NotImplementedError("a Materialization implements write(self, binding, documents)")

    def commit(self, checkpoint):
        """Record `checkpoint` (JSON text) in the destination, with this transaction's rows."""
        raise NotImplementedError("a Materialization implements commit(self, checkpoint)")


class Raw(str):
    """JSON text to pass as it is (e.g. a document `load` read from a column), not as a
    Python string."""


class Field:
    """A field of a binding as the catalog selects it: `name` (a column's name), `pointer`
    (where its value is in a document) and `key` (whether it is part of the key)."""

    __slots__ = ("name", "pointer", "key")

    def __init__(self, f):
        self.name = f.name
        self.pointer = f.pointer
        self.key = f.key

    def value(self, doc):
        """This field's value in `doc` (a parsed document), or None where it has none."""
        return pointer(doc, self.pointer)


def pointer(doc, ptr):
    """The value at JSON pointer `ptr` (e.g. `/address/city`) of `doc`, or None."""
    if ptr == "":
        return doc
    for part in ptr[1:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(doc, dict):
            doc = doc.get(part)
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            return None
        if doc is None:
            return None
    return doc


class fields:
    """The fields of a binding as the catalog selects them: what become columns."""

    @staticmethod
    def selected(binding):
        """The fields of binding `binding` (an index), the key's first."""
        _require(_fields, "fields")
        return [Field(f) for f in _fields.selected(binding)]


def _require(capability, name):
    if capability is None:
        raise Error(f"{name} is granted to materializations, not to this world")


def _call(capability, name, f):
    """`f()`, a call of host import `capability` (named `name`): an `Error` where this world
    has no such import, or with the host's reason where the call returned one."""
    _require(capability, name)
    try:
        return f()
    except Err as e:
        raise Error(str(e.value)) from None


def _sql_value(v):
    if v is None:
        return _sql.Value_Null()
    if isinstance(v, bool):
        return _sql.Value_Integer(int(v))
    if isinstance(v, int):
        return _sql.Value_Integer(v)
    if isinstance(v, float):
        return _sql.Value_Real(v)
    if isinstance(v, str):
        return _sql.Value_Text(v)
    if isinstance(v, (bytes, bytearray)):
        return _sql.Value_Blob(bytes(v))
    return _sql.Value_Text(_dumps(v))


def _py_value(v):
    return None if isinstance(v, _sql.Value_Null) else v.value


class sql:
    """The destination database the host owns (SQLite, PostgreSQL, MySQL), inside the host's
    transaction. Parameters are Python values: None, bool and int (INTEGER), float, str,
    bytes; a dict or list goes as its JSON text. Results come back as Python values. A
    statement the host refuses, or that fails, raises `Error` with the database's reason."""

    @staticmethod
    def execute(statement, params=()):
        """Run one statement with positional parameters (`?1`, `?2` or `?`); the rows it
        changed."""
        return _call(_sql, "sql", lambda: _sql.execute(statement, [_sql_value(p) for p in params]))

    @staticmethod
    def execute_many(statement, param_rows):
        """Run one statement once per row of parameters, in one host call."""
        return _call(
            _sql,
            "sql",
            lambda: _sql.execute_many(statement, [[_sql_value(p) for p in r] for r in param_rows]),
        )

    @staticmethod
    def send(statement, params=()):
        """Queue a statement whose outcome is not needed: a failure surfaces at the next
        `execute`, `execute_many` or `query`, and the transaction commits nothing."""
        _call(_sql, "sql", lambda: _sql.send(statement, [_sql_value(p) for p in params]))

    @staticmethod
    def query(statement, params=()):
        """The rows of a query, each a list of Python values (`query_columns` for their
        names too)."""
        return sql.query_columns(statement, params)[1]

    @staticmethod
    def query_columns(statement, params=()):
        """(columns, rows) of a query."""
        r = _call(_sql, "sql", lambda: _sql.query(statement, [_sql_value(p) for p in params]))
        return list(r.columns), [[_py_value(v) for v in row] for row in r.rows]


class kv:
    """The key-value store the host owns (Redis): reads see what is committed; writes apply
    together when the host commits the transaction. Failures raise `Error`."""

    @staticmethod
    def get(keys):
        """The string values of `keys`, None where there is none."""
        return _call(_kv, "kv", lambda: _kv.get(list(keys)))

    @staticmethod
    def hget(keys, field):
        return _call(_kv, "kv", lambda: _kv.hget(list(keys), field))

    @staticmethod
    def hgetall(key):
        return _call(_kv, "kv", lambda: list(_kv.hgetall(key)))

    @staticmethod
    def set(entries, ttl_ms=None):
        """Set string values: `entries` is a list of (key, value)."""
        strings = lambda: [_kv.Entry(key=k, value=v) for k, v in entries]  # noqa: E731
        return _call(_kv, "kv", lambda: _kv.set(strings(), ttl_ms))

    @staticmethod
    def hset(entries, ttl_ms=None):
        """Replace hashes: `entries` is a list of (key, [(field, value)])."""
        hashes = lambda: [_kv.HashEntry(key=k, fields=list(f)) for k, f in entries]  # noqa: E731
        return _call(_kv, "kv", lambda: _kv.hset(hashes(), ttl_ms))

    @staticmethod
    def delete(keys):
        return _call(_kv, "kv", lambda: _kv.del_(list(keys)))

    @staticmethod
    def expect(key, value):
        """Commit only if `key` then holds `value` (None: does not exist): a fence."""
        return _call(_kv, "kv", lambda: _kv.expect(key, value))


def export_materialization(cls):
    """The componentize-py export of materialization class `cls`: assign it to `Sink`."""
    from wit_world.exports import sink as _sink

    class Sink(exports.Sink):
        plugin = None

        def open(self, spec):
            try:
                Sink.plugin = cls(MaterializationSpec(spec))
                checkpoint = Sink.plugin.open()
            except Exception as e:
                raise _failure(e)
            return checkpoint

        def load(self, binding, keys):
            try:
                parsed = [json.loads(k) for k in keys]
                # The host knows a key by the text it sent.
                texts = {_dumps(p): k for p, k in zip(parsed, keys)}
                found = Sink.plugin.load(binding, parsed)
                out = []
                for k, d in found:
                    text = _dumps(k)
                    out.append(
                        _sink.Loaded(
                            key=texts.get(text, text),
                            document=d if isinstance(d, Raw) else _dumps(d),
                        )
                    )
                return out
            except Exception as e:
                raise _failure(e)

        def write(self, binding, documents):
            try:
                Sink.plugin.write(binding, [Stored(d) for d in documents])
            except Exception as e:
                raise _failure(e)

        def commit(self, checkpoint):
            try:
                Sink.plugin.commit(checkpoint)
            except Exception as e:
                raise _failure(e)

    return Sink
