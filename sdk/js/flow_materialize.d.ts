// The types of flow_materialize.js, for TypeScript materializations (`flow plugin init --lang
// ts --world materialization`). `exportMaterialization` returns the `sink` export `jco types`
// describes from wit/flow.wit (the project's `npm run types`), so `tsc` checks a plugin
// against the contract.

export { type Level, PluginError, log } from './flow_base.js';
export { type Response, http } from './flow_http.js';

export interface MaterializationBinding {
  /** The source collection, e.g. `acme/customer-totals`. */
  collection: string;
  /** The collection's JSON schema, parsed. */
  schema: any;
  /** The collection's key, as JSON pointers. */
  key: string[];
  /** The binding's `resource`, parsed, e.g. `{table: 'customer_totals'}`. */
  resource: any;
  /** True: store combined deltas and never load. False: standard (reduced) updates. */
  deltaUpdates: boolean;
}

export interface MaterializationSpec {
  name: string;
  /** The endpoint's config, parsed. */
  config: any;
  bindings: MaterializationBinding[];
}

/** A document to write. */
export interface Stored {
  /** The key's values. */
  readonly key: unknown[];
  /** The key as a JSON array. */
  readonly keyText: string;
  /** The document's JSON text, as the host sent it. */
  readonly text: string;
  /** The document, parsed on first use. */
  readonly doc: any;
  /** Whether `load` returned it in this transaction. */
  readonly exists: boolean;
  /** The reduction deleted it: remove its row. */
  readonly delete: boolean;
}

/** JSON text `load` passes as it is. */
export class Raw {
  readonly text: string;
  constructor(text: string);
}
export function raw(text: string): Raw;

export class Materialization {
  spec: MaterializationSpec;
  constructor(spec: MaterializationSpec);
  /** Create or update the destination's tables; the checkpoint last committed, if any. */
  open(): string | undefined;
  /** `[key, document]` of those `keys` that exist. */
  load(binding: number, keys: unknown[][]): [unknown[], unknown][];
  write(binding: number, documents: Stored[]): void;
  commit(checkpoint: string): void;
}

export interface Field {
  /** The column's name, e.g. `city`. */
  name: string;
  /** Where the value is in a document, a JSON pointer, e.g. `/address/city`. */
  pointer: string;
  /** Whether it is (part of) the collection key. */
  key: boolean;
}

export const fields: {
  selected(binding: number): Field[];
};

/** The value at JSON pointer `ptr` of `doc`, or undefined. */
export function pointer(doc: unknown, ptr: string): any;

/** A SQL parameter or result value. */
export type SqlValue = null | undefined | boolean | number | bigint | string | Uint8Array | object;

export const sql: {
  execute(statement: string, params?: SqlValue[]): number;
  executeMany(statement: string, paramRows: SqlValue[][]): number;
  send(statement: string, params?: SqlValue[]): void;
  query(statement: string, params?: SqlValue[]): any[][];
  queryColumns(statement: string, params?: SqlValue[]): { columns: string[]; rows: any[][] };
};

export const kv: {
  get(keys: string[]): (string | undefined)[];
  hget(keys: string[], field: string): (string | undefined)[];
  hgetall(key: string): [string, string][];
  set(entries: [string, string][], ttlMs?: number): void;
  hset(entries: [string, [string, string][]][], ttlMs?: number): void;
  delete(keys: string[]): void;
  expect(key: string, value: string | undefined): void;
};

export function exportMaterialization(
  materialization: new (spec: MaterializationSpec) => Materialization,
): typeof import('./types/interfaces/flow-plugin-sink.js');
