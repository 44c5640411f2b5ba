// Customer totals: a Flow derivation in TypeScript (`flow plugin init --lang ts`).
//
// For every order {customer, amount} it publishes {customer, total, orders}: the customer's
// running totals, kept in host-managed state, which commits atomically with the outputs, so
// totals survive restarts exactly. An order it cannot use fails with an error naming the
// document (the task fails, or skips it, as the catalog's onError says).
//
//   flow plugin build    # npm run build: jco types (wit/ -> types/), tsc, componentize-js -> plugin.wasm
//   flow plugin test     # flow.yaml's tests against plugin.wasm, no server needed

import { Derivation, PluginError, type Publish, type Source, type Spec, exportDerivation, log, state } from './flow_sdk.js';

interface Totals {
  total: number;
  orders: number;
}

class CustomerTotals extends Derivation {
  constructor(spec: Spec) {
    super(spec);
    log(`opening ${spec.name} with ${spec.transforms.length} transform(s)`);
  }

  transform(source: Source, publish: Publish) {
    const { customer, amount } = source.doc;
    if (typeof customer !== 'string' || typeof amount !== 'number') {
      throw new PluginError('order is not {customer: string, amount: number}');
    }
    if (amount < 0) {
      throw new PluginError(`order amount must not be negative, got ${amount}`);
    }
    const totals = state.get<Totals>(source.key) ?? { total: 0, orders: 0 };
    totals.total += amount;
    totals.orders += 1;
    state.set(source.key, totals);
    publish({ customer, total: totals.total, orders: totals.orders });
  }
}

export const derive = exportDerivation(CustomerTotals);
