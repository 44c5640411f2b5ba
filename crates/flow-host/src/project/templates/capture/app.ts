// Orders from an HTTP API: a Flow capture in TypeScript (`flow plugin init --world capture`).
//
// It GETs `config.url` (a JSON array of orders, oldest first), then `config.url?after=ID` with
// the id of the last order it captured, and captures each order into its binding's collection.
// Its checkpoint is that last id, committed with the orders, so after a restart it resumes
// exactly where the last committed poll ended: every order once.
//
//   flow plugin build    # npm run build: jco types (wit/ -> types/), tsc, componentize-js -> plugin.wasm
//   flow plugin test     # flow.yaml's tests against plugin.wasm, HTTP answered by the tests

import {
  Capture,
  type CaptureSpec,
  type Captured,
  PluginError,
  Poll,
  type PollResult,
  exportCapture,
  http,
  log,
} from './flow_capture.js';

interface Checkpoint {
  after: number;
}

class OrdersApi extends Capture<Checkpoint> {
  url: string;
  after: number | undefined;

  constructor(spec: CaptureSpec, checkpoint: Checkpoint | undefined) {
    super(spec, checkpoint);
    const url = spec.config?.url;
    if (typeof url !== 'string') {
      throw new PluginError("config.url must be the orders API's URL, e.g. https://api.example.com/orders");
    }
    this.url = url;
    this.after = checkpoint?.after;
    if (this.after === undefined) log(`opening ${spec.name} at ${url}, from the start`);
    else log(`opening ${spec.name} at ${url}, after order ${this.after}`);
  }

  poll(out: Captured): PollResult {
    const url = this.after === undefined ? this.url : `${this.url}?after=${this.after}`;
    let response;
    try {
      response = http.get(url, [['accept', 'application/json']]);
    } catch (e) {
      throw new PluginError(`GET ${url}: ${(e as Error).message}`);
    }
    if (response.status !== 200) throw new PluginError(`GET ${url}: HTTP ${response.status}`);
    let orders: unknown;
    try {
      orders = response.json();
    } catch {
      orders = undefined;
    }
    if (!Array.isArray(orders)) throw new PluginError(`GET ${url}: the response is not a JSON array of orders`);
    for (const order of orders) {
      const id = order?.id;
      if (!Number.isInteger(id)) throw new PluginError(`GET ${url}: an order has no integer id`);
      out.document(0, order);
      this.after = id;
    }
    if (orders.length === 0) return Poll.IDLE;
    out.checkpoint({ after: this.after });
    return Poll.MORE;
  }
}

export const source = exportCapture(OrdersApi);
