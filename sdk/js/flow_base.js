// What every world's JavaScript SDK shares (flow_sdk.js for derivations, flow_capture.js for
// captures, flow_materialize.js for materializations): errors as values, the plugin's log,
// JSON text, host calls' errors. It imports only `log`, which the host grants to every plugin.

import { write } from 'flow:plugin/log@0.1.5';

/** A failure the host reports with the task and plugin version. Thrown from a derivation's
 * `transform`, it names the source document (the task fails, or skips the document, as the
 * catalog's `onError` says); from a capture, it fails the poll. Anything else thrown is
 * reported the same way, with its name. */
export class PluginError extends Error {}

/** One line in the plugin's log (`flow plugin logs NAME`): level trace, debug, info, warn or
 * error. */
export function log(message, level = 'info') {
  write(level, String(message));
}

/** `value` as JSON text; an error naming `what` for a value JSON cannot hold (undefined, a
 * function). */
export function json(value, what) {
  const text = JSON.stringify(value);
  if (text === undefined) throw new PluginError(`${what}: ${typeof value} is not a JSON value`);
  return text;
}

export function failure(e, document) {
  const message =
    e instanceof PluginError ? e.message : `${(e && e.name) || 'Error'}: ${e && e.message !== undefined ? e.message : String(e)}`;
  return { message, document };
}

/** `f()`, a call of a host import: a `result` error of the host, which arrives as a thrown
 * value holding its string, is thrown as a PluginError with that string. */
export function hostCall(f) {
  try {
    return f();
  } catch (e) {
    throw new PluginError(e && e.payload !== undefined ? String(e.payload) : String(e));
  }
}
