"""A Flow materialization on the Python SDK (flow_sdk.py): each binding's collection as a
SQLite table (`resource.table`), one row per key: a column per selected field (the key's
first, then each top-level property) and `flow_document` with the whole document. The
checkpoint is written to `flow_checkpoints` in the same transaction as the rows, which is
what makes the table exactly once.

Build: flow plugin build (componentize-py, then plugin.wasm)
"""

import json

from flow_sdk import Error, Materialization, Raw, export_materialization, fields, log, sql


def quote(name):
    return '"' + name.replace('"', '""') + '"'


def column_value(value):
    """A document's value as a column holds it: objects and arrays as their JSON text."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return value


class Table:
    def __init__(self, i, binding):
        table = binding.resource.get("table") if isinstance(binding.resource, dict) else None
        if not isinstance(table, str) or not table:
            raise Error(f"binding {i} ({binding.collection}): resource.table must name a table")
        if binding.delta_updates:
            raise Error(
                f"binding {i} ({binding.collection}): this materialization keeps one row per "
                "key; deltaUpdates is not supported"
            )
        self.name = quote(table)
        self.fields = fields.selected(i)
        self.keys = [f for f in self.fields if f.key]
        columns = [quote(f.name) for f in self.fields] + ["flow_document"]
        self.create = (
            f"CREATE TABLE IF NOT EXISTS {self.name} ({', '.join(columns[:-1])}, "
            f"flow_document TEXT NOT NULL, "
            f"PRIMARY KEY ({', '.join(quote(f.name) for f in self.keys)}))"
        )
        where = " AND ".join(f"{quote(f.name)} = ?" for f in self.keys)
        self.select = f"SELECT flow_document FROM {self.name} WHERE {where}"
        self.delete = f"DELETE FROM {self.name} WHERE {where}"
        self.upsert = (
            f"INSERT OR REPLACE INTO {self.name} ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' for _ in columns)})"
        )


class TotalsView(Materialization):
    def open(self):
        log(f"opening {self.spec.name} with {len(self.spec.bindings)} binding(s)")
        self.tables = [Table(i, b) for i, b in enumerate(self.spec.bindings)]
        sql.execute(
            "CREATE TABLE IF NOT EXISTS flow_checkpoints "
            "(materialization TEXT PRIMARY KEY, checkpoint TEXT NOT NULL)"
        )
        for t in self.tables:
            sql.execute(t.create)
        rows = sql.query(
            "SELECT checkpoint FROM flow_checkpoints WHERE materialization = ?", [self.spec.name]
        )
        return rows[0][0] if rows else None

    def load(self, binding, keys):
        t = self.tables[binding]
        found = []
        for key in keys:
            rows = sql.query(t.select, key)
            if rows:
                found.append((key, Raw(rows[0][0])))
        return found

    def write(self, binding, documents):
        t = self.tables[binding]
        upserts = []
        for d in documents:
            if d.delete:
                sql.execute(t.delete, d.key)
            else:
                doc = d.doc
                upserts.append([column_value(f.value(doc)) for f in t.fields] + [d.text])
        if upserts:
            sql.execute_many(t.upsert, upserts)

    def commit(self, checkpoint):
        sql.execute(
            "INSERT OR REPLACE INTO flow_checkpoints (materialization, checkpoint) VALUES (?, ?)",
            [self.spec.name, checkpoint],
        )


Sink = export_materialization(TotalsView)
