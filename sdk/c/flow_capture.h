/*
 * Flow plugin SDK for C: captures (wit/flow.wit, world `capture`).
 *
 * The same shape as the Rust, Python and JavaScript SDKs: a plugin defines
 * `flow_capture_open` (called when the task starts, with the last committed checkpoint) and
 * `flow_capture_poll` (called in a loop). Each poll is one host transaction: the documents it
 * captured (`flow_capture_document`) are validated against their binding's collection and
 * committed together with the checkpoint it set (`flow_capture_checkpoint`), or not at all.
 * Resuming from that checkpoint is what makes a capture exactly once. Outgoing HTTP goes
 * through the host (`flow_http_send`), to the hosts on the task's allow-list only.
 *
 * What the SDK passes in (`spec`, `checkpoint`) is valid during the call only: copy what
 * you keep.
 */
#ifndef FLOW_CAPTURE_H
#define FLOW_CAPTURE_H

#include "flow_http.h"
#include "flow_sdk.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One binding of the capture. */
typedef struct flow_capture_binding {
    flow_str target;   /* the collection its documents go to */
    flow_str resource; /* its `resource`, JSON text */
} flow_capture_binding;

/* The capture being opened. */
typedef struct flow_capture_spec {
    flow_str name;   /* the capture's name, e.g. acme/orders-api */
    flow_str config; /* the endpoint's `config`, JSON text */
    size_t bindings_len;
    const flow_capture_binding *bindings;
} flow_capture_spec;

/* What one poll captured (owned by the SDK). */
typedef struct flow_captured flow_captured;

/* Whether the source has more right now (polled again at once) or is idle (the host waits,
 * longer while it stays idle). */
typedef enum flow_poll {
    FLOW_POLL_MORE,
    FLOW_POLL_IDLE,
} flow_poll;

/* --- What a plugin defines ------------------------------------------------------------ */

/* Called once when the task starts; `checkpoint` is the last committed one (JSON text), or
 * NULL if the capture never committed one. Return NULL, or an error to refuse to start. */
flow_error *flow_capture_open(const flow_capture_spec *spec, const flow_str *checkpoint);

/* Capture what comes next into `out` and set `*poll`. Return NULL, or an error that fails
 * the poll (nothing of it is committed). */
flow_error *flow_capture_poll(flow_captured *out, flow_poll *poll);

/* --- Capturing ------------------------------------------------------------------------ */

/* Capture a document (JSON text, copied) for binding `binding` (an index into the spec's). */
void flow_capture_document(flow_captured *out, uint32_t binding, const char *json, size_t len);
/* Where the next poll starts (JSON text, copied): committed with this poll's documents and
 * given to flow_capture_open after a restart. Left unset, the last committed one stays. */
void flow_capture_checkpoint(flow_captured *out, const char *json, size_t len);
/* When the source committed the last change this poll captured (ms since the Unix epoch, by
 * the source's clock): the host shows the capture's lag behind it. */
void flow_source_time(uint64_t ms);

#ifdef __cplusplus
}
#endif

#endif /* FLOW_CAPTURE_H */
