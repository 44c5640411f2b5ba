// The types of flow_capture.js, for TypeScript captures (`flow plugin init --lang ts --world
// capture`). `exportCapture` returns the `source` export `jco types` describes from
// wit/flow.wit (the project's `npm run types`), so `tsc` checks a plugin against the contract.

export { type Level, PluginError, log } from './flow_base.js';
export { type Response, http } from './flow_http.js';

export interface CaptureBinding {
  /** The collection its documents go to. */
  target: string;
  /** The binding's `resource`, parsed. */
  resource: any;
}

export interface CaptureSpec {
  name: string;
  /** The endpoint's config, parsed. */
  config: any;
  bindings: CaptureBinding[];
}

export type PollResult = 'more' | 'idle';
export const Poll: { readonly MORE: 'more'; readonly IDLE: 'idle' };

export interface Captured {
  /** Capture `value` (any JSON-able value) for binding `binding` (an index). */
  document(binding: number, value: unknown): void;
  /** Capture a document given as JSON text. */
  documentText(binding: number, text: string): void;
  /** Where the next poll starts, committed with this poll's documents. */
  checkpoint(value: unknown): void;
}

export class Capture<Checkpoint = any> {
  spec: CaptureSpec;
  constructor(spec: CaptureSpec, checkpoint: Checkpoint | undefined);
  poll(out: Captured): PollResult;
}

export function sourceTime(ms: number): void;

export function exportCapture<Checkpoint>(
  capture: new (spec: CaptureSpec, checkpoint: Checkpoint | undefined) => Capture<Checkpoint>,
): typeof import('./types/interfaces/flow-plugin-source.js');
