/*
 * Flow plugin SDK for C: outgoing HTTP through the host, granted to captures and
 * materializations (flow_capture.h and flow_materialize.h include it), to the hosts on the
 * task's allow-list (`endpoint.http.allow`) only. Implemented by flow_http.inc, which each
 * world's glue includes over its own bindings.
 */
#ifndef FLOW_HTTP_H
#define FLOW_HTTP_H

#include "flow_sdk.h"

#ifdef __cplusplus
extern "C" {
#endif

/* --- HTTP ----------------------------------------------------------------------------- */

typedef struct flow_header {
    flow_str name;
    flow_str value;
} flow_header;

/* A response; free it with flow_response_free. */
typedef struct flow_response {
    uint16_t status;
    flow_str body;
    size_t headers_len;
    const flow_header *headers;
    void *owned; /* the SDK's */
} flow_response;

/* Send a request and wait for the whole response. An error (the host's reason: a host not on
 * the allow-list, a connection that failed, a response over `hostResultBytesMax`) leaves
 * `*out` empty. */
flow_error *flow_http_send(flow_str method, flow_str url, const flow_header *headers,
                           size_t headers_len, flow_str body, flow_response *out);
/* GET `url` (a C string). */
flow_error *flow_http_get(const char *url, const flow_header *headers, size_t headers_len,
                          flow_response *out);
/* The value of header `name` (case-insensitive), or false. */
bool flow_response_header(const flow_response *r, const char *name, flow_str *value);
void flow_response_free(flow_response *r);

#ifdef __cplusplus
}
#endif

#endif /* FLOW_HTTP_H */
