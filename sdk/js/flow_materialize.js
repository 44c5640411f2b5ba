// Write Flow materializations in JavaScript: extend `Materialization`, keep a destination the
// host owns (`sql`: SQLite, PostgreSQL, MySQL; `kv`: Redis; `http` reaches the hosts on the
// task's allow-list) up to date, and record each transaction's checkpoint with its rows, so
// every change lands exactly once.
//
//   import { Materialization, exportMaterialization, fields, sql } from './flow_materialize.js';
//
//   class Totals extends Materialization {
//     open() { sql.execute('CREATE TABLE IF NOT EXISTS ...'); ...; return lastCheckpointOrUndefined; }
//     load(binding, keys) { ... return [[key, document], ...]; }   // those that exist
//     write(binding, documents) { ... }                             // upsert or delete each
//     commit(checkpoint) { ... }                                    // record it with the rows
//   }
//
//   export const sink = exportMaterialization(Totals);
//
// componentize-js builds the module that exports `sink` (world flow:plugin/materialization of
// wit/flow.wit, with `-d http -d fetch-event`). The same shape as the Rust SDK (sdk/rust): per
// transaction `load` (standard updates, the keys it touches), `write` (the fully reduced
// documents, in key order), then `commit`, all in one destination transaction that the host
// commits after `commit` returned.

import * as rawSql from 'flow:plugin/sql@0.1.5';
import * as rawKv from 'flow:plugin/kv@0.1.5';
import { selected } from 'flow:plugin/fields@0.1.5';
import { PluginError, failure, hostCall, json } from './flow_base.js';

export { PluginError, log } from './flow_base.js';
export { http } from './flow_http.js';

/** Extend it and implement `open`, `load`, `write` and `commit`. */
export class Materialization {
  /** `spec`: `{name, config (parsed), bindings: [{collection, schema (parsed), key (JSON
   * pointers), resource (parsed), deltaUpdates}]}`. Called before `open`. */
  constructor(spec) {
    this.spec = spec;
  }

  /** Create or update the destination's tables; return the checkpoint `commit` last recorded
   * (its JSON text), or undefined if it never did. */
  open() {
    throw new PluginError('a Materialization implements open()');
  }

  /** The stored documents of those `keys` (each an array of the key's values) that exist, as
   * `[key, document]` pairs: the key as given, the document any JSON-able value or `raw(text)`
   * for JSON text as stored. */
  load(binding, keys) {
    throw new PluginError('a Materialization implements load(binding, keys)');
  }

  /** Write `documents` (each `{key, keyText, text, doc, exists, delete}`) of binding
   * `binding` (an index). */
  write(binding, documents) {
    throw new PluginError('a Materialization implements write(binding, documents)');
  }

  /** Record `checkpoint` (JSON text) in the destination, with this transaction's rows. */
  commit(checkpoint) {
    throw new PluginError('a Materialization implements commit(checkpoint)');
  }
}

/** JSON text to pass as it is (a document `load` read from a column), not as a string. */
export class Raw {
  constructor(text) {
    this.text = text;
  }
}

/** `raw(text)`: JSON text `load` passes as it is. */
export function raw(text) {
  return new Raw(text);
}

/** A document to write; `doc` is parsed on first use. */
class Stored {
  constructor(s) {
    this.keyText = s.key;
    this.text = s.document;
    this.exists = s.exists;
    this.delete = s.delete;
  }

  /** The key's values, an array. */
  get key() {
    return (this._key ??= JSON.parse(this.keyText));
  }

  /** The document, parsed. */
  get doc() {
    return (this._doc ??= JSON.parse(this.text));
  }
}

/** The value at JSON pointer `ptr` (e.g. `/address/city`) of `doc`, or undefined. */
export function pointer(doc, ptr) {
  if (ptr === '') return doc;
  for (const raw of ptr.slice(1).split('/')) {
    const part = raw.replaceAll('~1', '/').replaceAll('~0', '~');
    if (doc === null || typeof doc !== 'object') return undefined;
    doc = Array.isArray(doc) ? (/^\d+$/.test(part) ? doc[Number(part)] : undefined) : doc[part];
    if (doc === undefined) return undefined;
  }
  return doc;
}

/** The fields of a binding as the catalog selects them: what become columns. */
export const fields = {
  /** The fields of binding `binding` (an index), the key's first: `{name, pointer, key}`. */
  selected(binding) {
    return selected(binding);
  },
};

function toSql(v) {
  if (v === null || v === undefined) return { tag: 'null' };
  if (typeof v === 'boolean') return { tag: 'integer', val: v ? 1n : 0n };
  if (typeof v === 'bigint') return { tag: 'integer', val: v };
  if (typeof v === 'number') {
    return Number.isSafeInteger(v) ? { tag: 'integer', val: BigInt(v) } : { tag: 'real', val: v };
  }
  if (typeof v === 'string') return { tag: 'text', val: v };
  if (v instanceof Uint8Array) return { tag: 'blob', val: v };
  return { tag: 'text', val: json(v, 'a SQL parameter') };
}

function fromSql(v) {
  switch (v.tag) {
    case 'null':
      return null;
    case 'integer':
      // Numbers where they are exact, BigInt beyond.
      return v.val >= BigInt(Number.MIN_SAFE_INTEGER) && v.val <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v.val) : v.val;
    default:
      return v.val;
  }
}

/** The destination database the host owns (SQLite, PostgreSQL, MySQL), inside the host's
 * transaction. Parameters are JavaScript values: null/undefined, booleans and whole numbers
 * (INTEGER), other numbers (REAL), strings, Uint8Array; an object or array goes as its JSON
 * text. A statement the host refuses, or that fails, throws a PluginError with the reason. */
export const sql = {
  /** Run one statement with positional parameters (`?1`, `?2` or `?`); the rows it changed. */
  execute(statement, params = []) {
    return Number(hostCall(() => rawSql.execute(statement, params.map(toSql))));
  },
  /** Run one statement once per row of parameters, in one host call. */
  executeMany(statement, paramRows) {
    return Number(hostCall(() => rawSql.executeMany(statement, paramRows.map((r) => r.map(toSql)))));
  },
  /** Queue a statement whose outcome is not needed: a failure surfaces at the next `execute`,
   * `executeMany` or `query`, and the transaction commits nothing. */
  send(statement, params = []) {
    hostCall(() => rawSql.send(statement, params.map(toSql)));
  },
  /** The rows of a query, each an array of values (`queryColumns` for their names too). */
  query(statement, params = []) {
    return sql.queryColumns(statement, params).rows;
  },
  /** `{columns, rows}` of a query. */
  queryColumns(statement, params = []) {
    const r = hostCall(() => rawSql.query(statement, params.map(toSql)));
    return { columns: r.columns, rows: r.rows.map((row) => row.map(fromSql)) };
  },
};

const ttl = (ms) => (ms === undefined || ms === null ? undefined : BigInt(ms));

/** The key-value store the host owns (Redis): reads see what is committed; writes apply
 * together when the host commits the transaction. Failures throw a PluginError. */
export const kv = {
  /** The string values of `keys`, undefined where there is none. */
  get: (keys) => hostCall(() => rawKv.get(keys)),
  hget: (keys, field) => hostCall(() => rawKv.hget(keys, field)),
  hgetall: (key) => hostCall(() => rawKv.hgetall(key)),
  /** Set string values: `entries` is `[[key, value], ...]`. */
  set: (entries, ttlMs) => hostCall(() => rawKv.set(entries.map(([key, value]) => ({ key, value })), ttl(ttlMs))),
  /** Replace hashes: `entries` is `[[key, [[field, value], ...]], ...]`. */
  hset: (entries, ttlMs) => hostCall(() => rawKv.hset(entries.map(([key, fields]) => ({ key, fields })), ttl(ttlMs))),
  delete: (keys) => hostCall(() => rawKv.del(keys)),
  /** Commit only if `key` then holds `value` (undefined: does not exist): a fence. */
  expect: (key, value) => hostCall(() => rawKv.expect(key, value)),
};

/** The `sink` export of materialization class `Class`:
 * `export const sink = exportMaterialization(Class)`. */
export function exportMaterialization(Class) {
  let plugin;
  const run = (f) => {
    try {
      return f();
    } catch (e) {
      throw failure(e, undefined);
    }
  };
  return {
    open(spec) {
      return run(() => {
        plugin = new Class({
          name: spec.name,
          config: spec.config ? JSON.parse(spec.config) : undefined,
          bindings: spec.bindings.map((b) => ({
            collection: b.collection,
            schema: JSON.parse(b.schema),
            key: b.key,
            resource: JSON.parse(b.resource),
            deltaUpdates: b.deltaUpdates,
          })),
        });
        const checkpoint = plugin.open();
        return checkpoint == null ? undefined : String(checkpoint);
      });
    },
    load(binding, keys) {
      return run(() => {
        const parsed = keys.map((k) => JSON.parse(k));
        // The host knows a key by the text it sent.
        const texts = new Map(parsed.map((p, i) => [JSON.stringify(p), keys[i]]));
        return plugin.load(binding, parsed).map(([key, doc]) => {
          const text = JSON.stringify(key);
          return {
            key: texts.get(text) ?? text,
            document: doc instanceof Raw ? doc.text : json(doc, 'a loaded document'),
          };
        });
      });
    },
    write(binding, documents) {
      run(() => plugin.write(binding, documents.map((d) => new Stored(d))));
    },
    commit(checkpoint) {
      run(() => plugin.commit(checkpoint));
    },
  };
}
