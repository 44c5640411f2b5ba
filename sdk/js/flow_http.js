// Outgoing HTTP through the host, for the worlds that import it (captures: flow_capture.js,
// materializations: flow_materialize.js, which both export `http` from here).

import { send } from 'flow:plugin/http@0.1.5';
import { hostCall } from './flow_base.js';

/** An HTTP response: `status`, `headers` ([name, value] pairs), `body` (bytes). */
class Response {
  constructor(r) {
    this.status = r.status;
    this.headers = r.headers;
    this.body = r.body;
  }

  /** The value of header `name` (case-insensitive), or undefined. */
  header(name) {
    const lower = name.toLowerCase();
    const found = this.headers.find(([k]) => k.toLowerCase() === lower);
    return found && found[1];
  }

  text() {
    return new TextDecoder().decode(this.body);
  }

  /** The body, parsed as JSON. */
  json() {
    return JSON.parse(this.text());
  }
}

/** Outgoing HTTP to the hosts on the task's allow-list (`endpoint.http.allow`); anything else
 * is refused by the host, and a PluginError here. A response over the host's cap
 * (`hostResultBytesMax`) is an error too: page big reads. */
export const http = {
  send(method, url, headers = [], body = new Uint8Array()) {
    return new Response(hostCall(() => send({ method, url, headers, body })));
  },
  get(url, headers = []) {
    return http.send('GET', url, headers);
  },
};
