// The types of flow_sdk.js, for TypeScript plugins (`flow plugin init --lang ts`). The host's
// own interfaces are typed by `jco types` from wit/flow.wit into types/ (the project's
// `npm run types`); `exportDerivation` returns the `derive` export those types describe, so
// `tsc` checks a plugin against the contract.

export { type Level, PluginError, log } from './flow_base.js';

export interface Transform {
  name: string;
  source: string;
  shuffleKey: string[];
}

export interface Spec {
  name: string;
  /** The endpoint's config, parsed. */
  config: unknown;
  key: string[];
  transforms: Transform[];
}

export interface Source {
  /** An index into `spec.transforms`. */
  transform: number;
  /** The shuffle key as JSON text; also the key for `state`. */
  key: string;
  /** The document's JSON text. */
  text: string;
  /** The document, parsed on first use. */
  readonly doc: any;
}

/** Adds a document (any JSON-able value) to the derived collection. */
export type Publish = (value: unknown) => void;

export class Derivation {
  spec: Spec;
  constructor(spec: Spec);
  transform(source: Source, publish: Publish): void;
  flush(publish: Publish): void;
}

export const state: {
  get<T = any>(key: string): T | undefined;
  set(key: string, value: unknown): void;
  clear(key: string): void;
};

export function exportDerivation(
  derivation: new (spec: Spec) => Derivation,
): typeof import('./types/interfaces/flow-plugin-derive.js');
