// The types of flow_http.js: outgoing HTTP, which flow_capture.js and flow_materialize.js
// export.

export interface Response {
  status: number;
  headers: [string, string][];
  body: Uint8Array;
  header(name: string): string | undefined;
  text(): string;
  json(): any;
}

export const http: {
  send(method: string, url: string, headers?: [string, string][], body?: Uint8Array): Response;
  get(url: string, headers?: [string, string][]): Response;
};
