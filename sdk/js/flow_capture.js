// Write Flow captures in JavaScript: extend `Capture`, bring documents in over `http`, and set
// a checkpoint that says where the next poll starts, so every document is captured once.
//
//   import { Capture, Poll, PluginError, exportCapture, http } from './flow_capture.js';
//
//   class Orders extends Capture {
//     poll(out) {
//       const orders = http.get(this.spec.config.url).json();
//       for (const order of orders) out.document(0, order);
//       ...
//       return orders.length ? Poll.MORE : Poll.IDLE;
//     }
//   }
//
//   export const source = exportCapture(Orders);
//
// componentize-js builds the module that exports `source` (world flow:plugin/capture of
// wit/flow.wit, with `-d http -d fetch-event`: outgoing HTTP goes through the host's `http`,
// on the task's allow-list, not through fetch). The same shape as the Rust SDK (sdk/rust):
// a constructor per task start, with the last committed checkpoint; `poll` in a loop, each
// poll one host transaction.

import { sourceTime as rawSourceTime } from 'flow:plugin/progress@0.1.5';
import { PluginError, failure, json } from './flow_base.js';

export { PluginError, log } from './flow_base.js';
export { http } from './flow_http.js';

/** What `poll` returns: the source has more right now (polled again at once), or is idle
 * (the host waits, longer while it stays idle). */
export const Poll = Object.freeze({ MORE: 'more', IDLE: 'idle' });

/** Extend it and implement `poll`; the constructor is optional. */
export class Capture {
  /** `spec`: `{name, config (parsed), bindings: [{target, resource (parsed)}]}`;
   * `checkpoint`: the last committed one (parsed), or undefined. */
  constructor(spec, checkpoint) {
    this.spec = spec;
  }

  /** Capture what comes next into `out` (`out.document(binding, value)`,
   * `out.checkpoint(value)`) and return `Poll.MORE` or `Poll.IDLE`. Its documents are
   * validated against their binding's collection and committed with its checkpoint, or not
   * at all. */
  poll(out) {
    throw new PluginError('a Capture implements poll(out)');
  }
}

/** What one poll captured. */
class Captured {
  constructor() {
    this.documents = [];
    this.next = undefined;
  }

  /** Capture `value` (any JSON-able value) for binding `binding` (an index). */
  document(binding, value) {
    this.documents.push({ binding, document: json(value, 'document') });
  }

  /** Capture a document given as JSON text, as a source returned it. */
  documentText(binding, text) {
    this.documents.push({ binding, document: text });
  }

  /** Where the next poll starts: committed with this poll's documents, and given to the
   * constructor after a restart. */
  checkpoint(value) {
    this.next = json(value, 'checkpoint');
  }
}

/** When the source committed the last change this poll captured (ms since the Unix epoch, by
 * the source's clock): the host shows the capture's lag behind it. */
export function sourceTime(ms) {
  rawSourceTime(BigInt(ms));
}

/** The `source` export of capture class `Class`: `export const source = exportCapture(Class)`. */
export function exportCapture(Class) {
  let plugin;
  return {
    open(spec, checkpoint) {
      try {
        plugin = new Class(
          {
            name: spec.name,
            config: spec.config ? JSON.parse(spec.config) : undefined,
            bindings: spec.bindings.map((b) => ({ target: b.target, resource: JSON.parse(b.resource) })),
          },
          checkpoint == null ? undefined : JSON.parse(checkpoint),
        );
      } catch (e) {
        throw failure(e, undefined);
      }
    },
    poll() {
      const out = new Captured();
      let result;
      try {
        result = plugin.poll(out);
      } catch (e) {
        throw failure(e, undefined);
      }
      return { documents: out.documents, checkpoint: out.next, idle: result === Poll.IDLE };
    },
  };
}
