// Write Flow derivations in JavaScript: extend `Derivation`, read documents as JavaScript
// values, keep per-key state with `state`, `publish` what the derived collection gets.
//
//   import { Derivation, PluginError, exportDerivation, state } from './flow_sdk.js';
//
//   class CustomerTotals extends Derivation {
//     transform(source, publish) {
//       const { customer, amount } = source.doc;
//       if (amount < 0) throw new PluginError(`order amount must not be negative, got ${amount}`);
//       const totals = state.get(source.key) ?? { total: 0, orders: 0 };
//       totals.total += amount;
//       totals.orders += 1;
//       state.set(source.key, totals);
//       publish({ customer, ...totals });
//     }
//   }
//
//   export const derive = exportDerivation(CustomerTotals);
//
// componentize-js builds the module that exports `derive` (world flow:plugin/derivation of
// wit/flow.wit, with `-d http -d fetch-event`: a plugin is granted no network). The same shape
// as the Rust SDK (sdk/rust): a constructor per task start or version switch, `transform` per
// source document, `flush` at the end of every transaction.

import * as rawState from 'flow:plugin/state@0.1.5';
import { PluginError, failure, json } from './flow_base.js';

export { PluginError, log } from './flow_base.js';

/** Extend it and implement `transform`; the constructor and `flush` are optional. */
export class Derivation {
  /** `spec`: `{name, config (parsed), key, transforms: [{name, source, shuffleKey}]}`. */
  constructor(spec) {
    this.spec = spec;
  }

  /** Called for each source document; `publish(value)` adds a document (any JSON-able
   * value) to the derived collection. */
  transform(source, publish) {
    throw new PluginError('a Derivation implements transform(source, publish)');
  }

  /** Called at the end of every transaction, to publish what was held back. */
  flush(publish) {}
}

/** Per-shuffle-key state: JSON values, read and written within the transaction, committed
 * atomically with its outputs. */
export const state = {
  /** The state of `key`, or undefined if never set (or cleared). */
  get(key) {
    const text = rawState.get(key);
    return text == null ? undefined : JSON.parse(text);
  },
  set(key, value) {
    rawState.set(key, json(value, 'state.set'));
  },
  clear(key) {
    rawState.clear(key);
  },
};

/** A source document: `transform` (an index into `spec.transforms`), `key` (its shuffle key
 * as JSON text, also its key for `state`), `text` (its JSON text), `doc` (parsed on first
 * use). */
class Source {
  constructor(s) {
    this.transform = s.transform;
    this.key = s.key;
    this.text = s.document;
    this.parsed = undefined;
  }

  get doc() {
    if (this.parsed === undefined) this.parsed = JSON.parse(this.text);
    return this.parsed;
  }
}

/** The `derive` export of derivation class `Class`: `export const derive = exportDerivation(Class)`. */
export function exportDerivation(Class) {
  let plugin;
  return {
    open(spec) {
      try {
        plugin = new Class({
          name: spec.name,
          config: spec.config ? JSON.parse(spec.config) : undefined,
          key: spec.key,
          transforms: spec.transforms.map((t) => ({ name: t.name, source: t.source, shuffleKey: t.shuffleKey })),
        });
      } catch (e) {
        throw failure(e, undefined);
      }
    },
    transform(batch) {
      const out = [];
      const publish = (value) => out.push(json(value, 'publish'));
      for (let i = 0; i < batch.length; i++) {
        try {
          plugin.transform(new Source(batch[i]), publish);
        } catch (e) {
          throw failure(e, i);
        }
      }
      return out;
    },
    flush() {
      const out = [];
      try {
        plugin.flush((value) => out.push(json(value, 'publish')));
      } catch (e) {
        throw failure(e, undefined);
      }
      return out;
    },
  };
}
