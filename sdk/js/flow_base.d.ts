// The types of flow_base.js: what the derivation and capture SDKs share.

export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';

/** A failure the host reports with the task and plugin version, naming the document when
 * thrown from a derivation's `transform`; from a capture, it fails the poll. */
export class PluginError extends Error {}

/** One line in the plugin's log (`flow plugin logs NAME`). */
export function log(message: unknown, level?: Level): void;
