/*
 * Flow plugin SDK for C: derivations (wit/flow.wit, world `derivation`).
 *
 * The same shape as the Rust, Python and JavaScript SDKs: a plugin defines `flow_open` and
 * `flow_transform` (and, if it wants, `flow_flush`); a transform reads its source document
 * (`source->text`, with `source->key` the shuffle key), keeps per-key state with
 * `flow_state_get/set/clear` (JSON text, committed atomically with what it publishes), and
 * publishes JSON documents with `flow_publish`. An error is a value: return `flow_errorf(...)`
 * and the host fails (or, per the catalog's onError, skips) that document, naming it.
 *
 * Documents arrive as JSON text the host has validated against the source's schema; what a
 * plugin publishes is validated against the derived collection's. What the SDK passes in
 * (`spec`, `source`) is valid during the call only.
 */
#ifndef FLOW_DERIVE_H
#define FLOW_DERIVE_H

#include "flow_sdk.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The derivation being opened. */
typedef struct flow_spec {
    flow_str name;     /* the derived collection, e.g. acme/customer-totals */
    flow_str config;   /* the endpoint's `config`, JSON text */
    size_t transforms; /* how many transforms the catalog gives it */
} flow_spec;

/* One source document. */
typedef struct flow_source {
    uint32_t transform; /* which transform, an index into the catalog's list */
    flow_str key;       /* the shuffle key as a JSON array, e.g. ["alice"]: the state's key */
    flow_str text;      /* the document, JSON text */
} flow_source;

/* Where a transform publishes (owned by the SDK). */
typedef struct flow_publisher flow_publisher;

/* --- What a plugin defines ------------------------------------------------------------ */

/* Called once when the task starts. Return NULL, or an error to refuse to start. */
flow_error *flow_open(const flow_spec *spec);

/* Called for every source document, in order. Return NULL, or an error for this document. */
flow_error *flow_transform(const flow_source *source, flow_publisher *out);

/* Optional: called at the end of each transaction; publish what was held back. */
flow_error *flow_flush(flow_publisher *out);

/* Optional: migrate the state of one key written by an earlier version (the component
 * `from_digest`, `sha256:...`), before this version's first transaction: write the new state
 * (JSON text) into `out` and return NULL, or leave `out` empty to keep it as it is. A project
 * whose sources define it is built on the `migrating-derivation-packed` world, and the host
 * calls it for each key when a task switches to this version from another component that last
 * wrote its state; the results commit atomically (all keys or none). */
flow_error *flow_migrate(flow_str from_digest, flow_str key, flow_str state, flow_buf *out);

/* --- Publishing ------------------------------------------------------------------------- */

/* Publish one document, JSON text (copied). */
void flow_publish(flow_publisher *out, const char *json, size_t len);
/* Publish the buffer's text (copied) and empty it: it keeps its memory, to be used again
 * (free it when done). */
void flow_publish_buf(flow_publisher *out, flow_buf *json);

/* --- State, per shuffle key ------------------------------------------------------------- */

/* The state of `key` into `value` (replacing its contents): false if there is none. */
bool flow_state_get(flow_str key, flow_buf *value);
/* Replace the state of `key` with `json`, JSON text. */
void flow_state_set(flow_str key, const char *json, size_t len);
/* Remove the state of `key`. */
void flow_state_clear(flow_str key);

#ifdef __cplusplus
}
#endif

#endif /* FLOW_DERIVE_H */
