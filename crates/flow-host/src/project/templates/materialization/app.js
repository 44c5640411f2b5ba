// A SQLite table of per-customer totals: a Flow materialization in JavaScript (`flow plugin
// init --world materialization`).
//
// Each binding's collection becomes a table (`resource.table`), one row per key: a column per
// selected field (the key's first, then each top-level property) and `flow_document` with the
// whole document. The checkpoint is written to `flow_checkpoints` in the same transaction as
// the rows, which is what makes the table exactly once.
//
//   flow plugin build    # npm run build: componentize-js -> plugin.wasm
//   flow plugin test     # flow.yaml's tests against plugin.wasm, into a database of each test's own

import { Materialization, PluginError, exportMaterialization, fields, log, pointer, raw, sql } from './flow_materialize.js';

const quote = (name) => `"${name.replaceAll('"', '""')}"`;

// A document's value as a column holds it: objects and arrays as their JSON text.
function columnValue(value) {
  return value !== null && typeof value === 'object' ? JSON.stringify(value) : value;
}

class Table {
  constructor(i, binding) {
    const table = binding.resource && binding.resource.table;
    if (typeof table !== 'string' || table === '') {
      throw new PluginError(`binding ${i} (${binding.collection}): resource.table must name a table`);
    }
    if (binding.deltaUpdates) {
      throw new PluginError(
        `binding ${i} (${binding.collection}): this materialization keeps one row per key; deltaUpdates is not supported`,
      );
    }
    this.name = quote(table);
    this.fields = fields.selected(i);
    const keys = this.fields.filter((f) => f.key).map((f) => quote(f.name));
    const columns = [...this.fields.map((f) => quote(f.name)), 'flow_document'];
    this.create =
      `CREATE TABLE IF NOT EXISTS ${this.name} (${columns.slice(0, -1).join(', ')}, ` +
      `flow_document TEXT NOT NULL, PRIMARY KEY (${keys.join(', ')}))`;
    const where = keys.map((k) => `${k} = ?`).join(' AND ');
    this.select = `SELECT flow_document FROM ${this.name} WHERE ${where}`;
    this.delete = `DELETE FROM ${this.name} WHERE ${where}`;
    this.upsert = `INSERT OR REPLACE INTO ${this.name} (${columns.join(', ')}) VALUES (${columns.map(() => '?').join(', ')})`;
  }
}

class TotalsView extends Materialization {
  open() {
    log(`opening ${this.spec.name} with ${this.spec.bindings.length} binding(s)`);
    this.tables = this.spec.bindings.map((b, i) => new Table(i, b));
    sql.execute(
      'CREATE TABLE IF NOT EXISTS flow_checkpoints (materialization TEXT PRIMARY KEY, checkpoint TEXT NOT NULL)',
    );
    for (const t of this.tables) sql.execute(t.create);
    const rows = sql.query('SELECT checkpoint FROM flow_checkpoints WHERE materialization = ?', [this.spec.name]);
    return rows.length ? rows[0][0] : undefined;
  }

  load(binding, keys) {
    const t = this.tables[binding];
    const found = [];
    for (const key of keys) {
      const rows = sql.query(t.select, key);
      if (rows.length) found.push([key, raw(rows[0][0])]);
    }
    return found;
  }

  write(binding, documents) {
    const t = this.tables[binding];
    const upserts = [];
    for (const d of documents) {
      if (d.delete) {
        sql.execute(t.delete, d.key);
      } else {
        const doc = d.doc;
        upserts.push([...t.fields.map((f) => columnValue(pointer(doc, f.pointer))), d.text]);
      }
    }
    if (upserts.length) sql.executeMany(t.upsert, upserts);
  }

  commit(checkpoint) {
    sql.execute('INSERT OR REPLACE INTO flow_checkpoints (materialization, checkpoint) VALUES (?, ?)', [
      this.spec.name,
      checkpoint,
    ]);
  }
}

export const sink = exportMaterialization(TotalsView);
