/*
 * Flow plugin SDK for C: derivations (wit/flow.wit, world `derivation`), over the bindings
 * wit-bindgen's C generator makes (`flow plugin build` writes them to gen/).
 *
 * The same shape as the Rust, Python and JavaScript SDKs: a plugin defines `flow_open` and
 * `flow_transform` (and, if it wants, `flow_flush`); a transform reads its source document
 * (`source->text`, with `source->key` the shuffle key), keeps per-key state with
 * `flow_state_get/set/clear` (JSON text, committed atomically with what it publishes), and
 * publishes JSON documents with `flow_publish`. An error is a value: return `flow_errorf(...)`
 * and the host fails (or, per the catalog's onError, skips) that document, naming it.
 *
 * Documents arrive as JSON text the host has validated against the source's schema; what a
 * plugin publishes is validated against the derived collection's. `flow_json_*` read fields
 * out of JSON text without building a tree; `flow_buf_*` build JSON text.
 *
 * Every string here is a pointer and a length, not NUL-terminated unless said.
 */
#ifndef FLOW_SDK_H
#define FLOW_SDK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Text: a pointer and a length. */
typedef struct flow_str {
    const char *ptr;
    size_t len;
} flow_str;

/* A NUL-terminated C string as a flow_str. */
flow_str flow_cstr(const char *s);

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

/* An error, as a value (made by flow_errorf, owned by the SDK once returned). */
typedef struct flow_error flow_error;

/* --- What a plugin defines ------------------------------------------------------------ */

/* Called once when the task starts. Return NULL, or an error to refuse to start. */
flow_error *flow_open(const flow_spec *spec);

/* Called for every source document, in order. Return NULL, or an error for this document. */
flow_error *flow_transform(const flow_source *source, flow_publisher *out);

/* Optional: called at the end of each transaction; publish what was held back. */
flow_error *flow_flush(flow_publisher *out);

/* --- Errors, logs ----------------------------------------------------------------------- */

/* An error with a printf-style message. */
flow_error *flow_errorf(const char *format, ...) __attribute__((format(printf, 1, 2)));

typedef enum flow_level {
    FLOW_TRACE,
    FLOW_DEBUG,
    FLOW_INFO,
    FLOW_WARN,
    FLOW_ERROR,
} flow_level;

/* One line of the plugin's log (`flow plugin logs NAME`), printf-style. */
void flow_log(flow_level level, const char *format, ...) __attribute__((format(printf, 2, 3)));

/* --- Building JSON text ----------------------------------------------------------------- */

/* A growable byte buffer; start it as `flow_buf b = {0};`. */
typedef struct flow_buf {
    char *ptr;
    size_t len;
    size_t cap;
} flow_buf;

void flow_buf_append(flow_buf *b, const char *bytes, size_t len);
void flow_buf_puts(flow_buf *b, const char *s);
void flow_buf_printf(flow_buf *b, const char *format, ...) __attribute__((format(printf, 2, 3)));
/* A number as JSON: whole numbers as integers, others the shortest text that reads back as the
 * same double (null if not finite). */
void flow_buf_number(flow_buf *b, double value);
/* A string as JSON, quoted and escaped. */
void flow_buf_string(flow_buf *b, flow_str s);
void flow_buf_free(flow_buf *b);

/* --- Publishing ------------------------------------------------------------------------- */

/* Publish one document, JSON text (copied). */
void flow_publish(flow_publisher *out, const char *json, size_t len);
/* Publish the buffer's text and empty it (it can be used again). */
void flow_publish_buf(flow_publisher *out, flow_buf *json);

/* --- State, per shuffle key ------------------------------------------------------------- */

/* The state of `key` into `value` (replacing its contents): false if there is none. */
bool flow_state_get(flow_str key, flow_buf *value);
/* Replace the state of `key` with `json`, JSON text. */
void flow_state_set(flow_str key, const char *json, size_t len);
/* Remove the state of `key`. */
void flow_state_clear(flow_str key);

/* --- Reading JSON text ------------------------------------------------------------------ */

typedef enum flow_json_type {
    FLOW_JSON_NULL,
    FLOW_JSON_BOOL,
    FLOW_JSON_NUMBER,
    FLOW_JSON_STRING,
    FLOW_JSON_ARRAY,
    FLOW_JSON_OBJECT,
} flow_json_type;

/* A JSON value: its type and its own text (e.g. `"alice"` with the quotes, or `12.5`). */
typedef struct flow_json {
    flow_json_type type;
    flow_str text;
} flow_json;

/* The value `text` holds (whitespace around it allowed): false if it is not one JSON value. */
bool flow_json_parse(flow_str text, flow_json *out);
/* The member `field` of an object: false if `object` is not an object or has no such member. */
bool flow_json_get(flow_json object, const char *field, flow_json *out);
/* A number's value: false if `value` is not a number. */
bool flow_json_number(flow_json value, double *out);
/* A string's characters, unescaped, into `out` (replacing its contents): false if not a string. */
bool flow_json_string(flow_json value, flow_buf *out);

#ifdef __cplusplus
}
#endif

#endif /* FLOW_SDK_H */
