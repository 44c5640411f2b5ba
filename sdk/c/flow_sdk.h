/*
 * Flow plugin SDK for C: what every world shares (errors as values, the plugin's log, reading
 * and building JSON text). A derivation includes flow_derive.h, a materialization
 * flow_materialize.h, a capture flow_capture.h; each world's glue (flow_derive.c,
 * flow_materialize.c, flow_capture.c) implements the exports over the bindings
 * wit-bindgen's C generator makes (`flow plugin build` writes them to gen/).
 *
 * An error is a value: return `flow_errorf(...)` from a plugin's function and the host
 * reports it with the task and plugin version. `flow_json_*` read fields out of JSON text
 * without building a tree; `flow_buf_*` build JSON text.
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

/* An error, as a value (made by flow_errorf, owned by the SDK once returned). */
typedef struct flow_error flow_error;

/* --- Errors, logs ----------------------------------------------------------------------- */

/* An error with a printf-style message. */
flow_error *flow_errorf(const char *format, ...) __attribute__((format(printf, 1, 2)));
/* An error's message (valid until the error is freed or returned). */
flow_str flow_error_message(const flow_error *e);
/* Free an error that will not be returned (e.g. after wrapping its message in another). */
void flow_error_free(flow_error *e);

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
/* The items of an array, for flow_json_next: `flow_str items = flow_json_items(array);`
 * (empty if `array` is not an array). */
flow_str flow_json_items(flow_json array);
/* The next item of `*items` into `*item`, and `*items` moved past it: false at the end (or
 * where the text is not a JSON value). */
bool flow_json_next(flow_str *items, flow_json *item);
/* The value at JSON pointer `pointer` (a C string, e.g. "/address/city"; "" is `doc`): false
 * where there is none. */
bool flow_json_pointer(flow_json doc, const char *pointer, flow_json *out);
/* A number's value: false if `value` is not a number. */
bool flow_json_number(flow_json value, double *out);
/* A string's characters, unescaped, into `out` (replacing its contents): false if not a string. */
bool flow_json_string(flow_json value, flow_buf *out);

/* --- For the worlds' glue (flow_derive.c, flow_capture.c, flow_materialize.c), not for
 * plugins --------------------------------------------------------------------------------- */

/* Write one log line through the world's bindings (defined by the glue). */
void flow__log_write(flow_level level, const char *message, size_t len);
/* The error's message (malloc'd, never empty) and its length; the error itself is freed. */
char *flow__error_take(flow_error *e, size_t *len);
/* `p`, or a trap if it is NULL (out of memory). */
void *flow__must(void *p);

#ifdef __cplusplus
}
#endif

#endif /* FLOW_SDK_H */
