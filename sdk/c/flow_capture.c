/*
 * Flow plugin SDK for C: the capture world's exports over wit-bindgen's bindings
 * (gen/capture.h, written by `flow plugin build`), and what flow_capture.h declares.
 *
 * Ownership follows wit-bindgen's C rules: an export owns its arguments (freed here), what it
 * returns is freed by the generated post-return functions, and an import's results are the
 * caller's (freed here, or by flow_response_free).
 */
#include "flow_capture.h"

#include "capture.h"

#include <stdlib.h>
#include <string.h>

#define must flow__must

struct flow_captured {
    exports_flow_plugin_source_captured_t *items;
    size_t len;
    size_t cap;
    capture_option_string_t checkpoint;
};

static flow_str str_of(const capture_string_t *s) {
    return (flow_str){(const char *)s->ptr, s->len};
}

/* A malloc'd copy, for what the post-return frees (only when not empty). */
static capture_string_t copy(const char *bytes, size_t len) {
    capture_string_t s = {NULL, len};
    if (len > 0) {
        s.ptr = must(malloc(len));
        memcpy(s.ptr, bytes, len);
    }
    return s;
}

void flow__log_write(flow_level level, const char *message, size_t len) {
    capture_string_t line = {(uint8_t *)message, len};
    flow_plugin_log_write((flow_plugin_log_level_t)level, &line);
}

static void set_error(exports_flow_plugin_source_plugin_error_t *err, flow_error *e) {
    size_t len;
    char *message = flow__error_take(e, &len);
    err->message = (capture_string_t){(uint8_t *)message, len};
    err->document.is_some = false;
}

/* --- Capturing ---------------------------------------------------------------------------- */

void flow_capture_document(flow_captured *out, uint32_t binding, const char *json, size_t len) {
    if (out->len == out->cap) {
        out->cap = out->cap ? out->cap * 2 : 16;
        out->items = must(realloc(out->items, out->cap * sizeof *out->items));
    }
    out->items[out->len++] = (exports_flow_plugin_source_captured_t){binding, copy(json, len)};
}

void flow_capture_checkpoint(flow_captured *out, const char *json, size_t len) {
    if (out->checkpoint.is_some) {
        free(out->checkpoint.val.ptr);
    }
    out->checkpoint = (capture_option_string_t){true, copy(json, len)};
}

void flow_source_time(uint64_t ms) {
    flow_plugin_progress_source_time(ms);
}

static void drop_captured(flow_captured *out) {
    for (size_t i = 0; i < out->len; i++) {
        free(out->items[i].document.ptr);
    }
    free(out->items);
    if (out->checkpoint.is_some) {
        free(out->checkpoint.val.ptr);
    }
}

/* --- HTTP --------------------------------------------------------------------------------- */

#define FLOW_HTTP_STRING capture_string_t
#define FLOW_HTTP_HEADER capture_tuple2_string_string_t
#define FLOW_HTTP_STRING_FREE capture_string_free
#include "flow_http.inc"

/* --- The source exports ------------------------------------------------------------------- */

bool exports_flow_plugin_source_open(exports_flow_plugin_source_capture_spec_t *spec,
                                     capture_string_t *maybe_checkpoint,
                                     exports_flow_plugin_source_plugin_error_t *err) {
    size_t n = spec->bindings.len;
    flow_capture_binding *bindings = n > 0 ? must(malloc(n * sizeof *bindings)) : NULL;
    for (size_t i = 0; i < n; i++) {
        bindings[i] = (flow_capture_binding){str_of(&spec->bindings.ptr[i].target),
                                             str_of(&spec->bindings.ptr[i].resource)};
    }
    flow_capture_spec s = {str_of(&spec->name), str_of(&spec->config), n, bindings};
    flow_str checkpoint;
    if (maybe_checkpoint != NULL) {
        checkpoint = str_of(maybe_checkpoint);
    }
    flow_error *e = flow_capture_open(&s, maybe_checkpoint != NULL ? &checkpoint : NULL);
    free(bindings);
    exports_flow_plugin_source_capture_spec_free(spec);
    if (maybe_checkpoint != NULL) {
        capture_string_free(maybe_checkpoint);
    }
    if (e != NULL) {
        set_error(err, e);
        return false;
    }
    return true;
}

bool exports_flow_plugin_source_poll(exports_flow_plugin_source_poll_result_t *ret,
                                     exports_flow_plugin_source_plugin_error_t *err) {
    flow_captured out = {0};
    flow_poll poll = FLOW_POLL_IDLE;
    flow_error *e = flow_capture_poll(&out, &poll);
    if (e != NULL) {
        drop_captured(&out);
        set_error(err, e);
        return false;
    }
    if (out.len == 0) {
        free(out.items);
        out.items = NULL;
    }
    *ret = (exports_flow_plugin_source_poll_result_t){
        {out.items, out.len},
        out.checkpoint,
        poll == FLOW_POLL_IDLE,
    };
    return true;
}
