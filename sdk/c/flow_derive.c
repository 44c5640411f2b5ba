/*
 * Flow plugin SDK for C: the derivation world's exports over wit-bindgen's bindings
 * (gen/derivation.h, written by `flow plugin build`), and what flow_derive.h declares.
 *
 * Ownership follows wit-bindgen's C rules: an export owns its arguments (freed here), what it
 * returns is freed by the generated post-return functions, and an import's results are the
 * caller's (freed here, or handed to the plugin in a flow_buf).
 */
#include "flow_derive.h"

#include "derivation.h"

#include <stdlib.h>
#include <string.h>

#define must flow__must

struct flow_publisher {
    derivation_string_t *items;
    size_t len;
    size_t cap;
};

static flow_str str_of(const derivation_string_t *s) {
    return (flow_str){(const char *)s->ptr, s->len};
}

static derivation_string_t wit_str(flow_str s) {
    return (derivation_string_t){(uint8_t *)s.ptr, s.len};
}

void flow__log_write(flow_level level, const char *message, size_t len) {
    derivation_string_t line = {(uint8_t *)message, len};
    flow_plugin_log_write((flow_plugin_log_level_t)level, &line);
}

/* The error's message becomes the returned plugin-error's (freed by the post-return). */
static void set_error(exports_flow_plugin_derive_plugin_error_t *err, flow_error *e,
                      bool has_document, uint32_t document) {
    size_t len;
    char *message = flow__error_take(e, &len);
    err->message = (derivation_string_t){(uint8_t *)message, len};
    err->document.is_some = has_document;
    err->document.val = document;
}

/* --- Publishing --------------------------------------------------------------------------- */

void flow_publish(flow_publisher *out, const char *json, size_t len) {
    flow_buf copy = {0};
    flow_buf_append(&copy, json, len);
    flow_publish_buf(out, &copy);
}

void flow_publish_buf(flow_publisher *out, flow_buf *json) {
    if (out->len == out->cap) {
        out->cap = out->cap ? out->cap * 2 : 16;
        out->items = must(realloc(out->items, out->cap * sizeof *out->items));
    }
    /* The list's strings are freed by the post-return only when not empty. */
    if (json->len == 0) {
        flow_buf_puts(json, " ");
    }
    out->items[out->len++] = (derivation_string_t){(uint8_t *)json->ptr, json->len};
    *json = (flow_buf){0};
}

/* Hand what was published to the host; an empty list holds no allocation. */
static void take_published(flow_publisher *out, derivation_list_string_t *ret) {
    if (out->len == 0) {
        free(out->items);
        *ret = (derivation_list_string_t){NULL, 0};
    } else {
        *ret = (derivation_list_string_t){out->items, out->len};
    }
}

static void drop_published(flow_publisher *out) {
    for (size_t i = 0; i < out->len; i++) {
        free(out->items[i].ptr);
    }
    free(out->items);
}

/* --- State -------------------------------------------------------------------------------- */

bool flow_state_get(flow_str key, flow_buf *value) {
    derivation_string_t k = wit_str(key);
    derivation_string_t got;
    if (!flow_plugin_state_get(&k, &got)) {
        return false;
    }
    free(value->ptr);
    *value = (flow_buf){(char *)got.ptr, got.len, got.len};
    return true;
}

void flow_state_set(flow_str key, const char *json, size_t len) {
    derivation_string_t k = wit_str(key);
    derivation_string_t v = {(uint8_t *)json, len};
    flow_plugin_state_set(&k, &v);
}

void flow_state_clear(flow_str key) {
    derivation_string_t k = wit_str(key);
    flow_plugin_state_clear(&k);
}

/* --- The derive exports ------------------------------------------------------------------- */

__attribute__((weak)) flow_error *flow_flush(flow_publisher *out) {
    (void)out;
    return NULL;
}

bool exports_flow_plugin_derive_open(exports_flow_plugin_derive_derivation_spec_t *spec,
                                     exports_flow_plugin_derive_plugin_error_t *err) {
    flow_spec s = {str_of(&spec->name), str_of(&spec->config), spec->transforms.len};
    flow_error *e = flow_open(&s);
    exports_flow_plugin_derive_derivation_spec_free(spec);
    if (e != NULL) {
        set_error(err, e, false, 0);
        return false;
    }
    return true;
}

bool exports_flow_plugin_derive_transform(exports_flow_plugin_derive_list_source_document_t *batch,
                                          derivation_list_string_t *ret,
                                          exports_flow_plugin_derive_plugin_error_t *err) {
    flow_publisher out = {0};
    flow_error *e = NULL;
    size_t i;
    for (i = 0; i < batch->len && e == NULL; i++) {
        exports_flow_plugin_derive_source_document_t *d = &batch->ptr[i];
        flow_source source = {d->transform, str_of(&d->key), str_of(&d->document)};
        e = flow_transform(&source, &out);
    }
    exports_flow_plugin_derive_list_source_document_free(batch);
    if (e != NULL) {
        drop_published(&out);
        set_error(err, e, true, (uint32_t)(i - 1));
        return false;
    }
    take_published(&out, ret);
    return true;
}

bool exports_flow_plugin_derive_flush(derivation_list_string_t *ret,
                                      exports_flow_plugin_derive_plugin_error_t *err) {
    flow_publisher out = {0};
    flow_error *e = flow_flush(&out);
    if (e != NULL) {
        drop_published(&out);
        set_error(err, e, false, 0);
        return false;
    }
    take_published(&out, ret);
    return true;
}
