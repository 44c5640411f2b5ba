/*
 * Flow plugin SDK for C: the derivation's exports over wit-bindgen's bindings of the
 * `derivation-packed` world (gen/derivation_packed.h, written by `flow plugin build`): a
 * call's documents arrive in a few buffers and what it publishes leaves in two, rather than
 * an allocation and a copy per document each way. And what flow_derive.h declares.
 *
 * Ownership follows wit-bindgen's C rules: an export owns its arguments (freed here), what it
 * returns is freed by the generated post-return functions, and an import's results are the
 * caller's (freed here, or handed to the plugin in a flow_buf).
 */
#include "flow_derive.h"

#ifdef FLOW_MIGRATE
/* The sources define flow_migrate: built on the world that also exports `migrate`. */
#include "migrating_derivation_packed.h"
typedef migrating_derivation_packed_string_t derivation_packed_string_t;
#else
#include "derivation_packed.h"
#endif

#include <stdlib.h>
#include <string.h>

#define must flow__must

/* What a call publishes, packed: document i is text[ends[i - 1]..ends[i]]. */
struct flow_publisher {
    flow_buf text;
    uint32_t *ends;
    size_t len;
    size_t cap;
};

static flow_str str_of(const derivation_packed_string_t *s) {
    return (flow_str){(const char *)s->ptr, s->len};
}

static derivation_packed_string_t wit_str(flow_str s) {
    return (derivation_packed_string_t){(uint8_t *)s.ptr, s.len};
}

void flow__log_write(flow_level level, const char *message, size_t len) {
    derivation_packed_string_t line = {(uint8_t *)message, len};
    flow_plugin_log_write((flow_plugin_log_level_t)level, &line);
}

/* The error's message becomes the returned plugin-error's (freed by the post-return). */
static void set_error(exports_flow_plugin_derive_packed_plugin_error_t *err, flow_error *e,
                      bool has_document, uint32_t document) {
    size_t len;
    char *message = flow__error_take(e, &len);
    err->message = (derivation_packed_string_t){(uint8_t *)message, len};
    err->document.is_some = has_document;
    err->document.val = document;
}

/* --- Publishing --------------------------------------------------------------------------- */

void flow_publish(flow_publisher *out, const char *json, size_t len) {
    if (out->len == out->cap) {
        out->cap = out->cap ? out->cap * 2 : 64;
        out->ends = must(realloc(out->ends, out->cap * sizeof *out->ends));
    }
    flow_buf_append(&out->text, json, len);
    out->ends[out->len++] = (uint32_t)out->text.len;
}

void flow_publish_buf(flow_publisher *out, flow_buf *json) {
    flow_publish(out, json->ptr, json->len);
    json->len = 0;
}

/* Hand what was published to the host (the post-return frees what is not empty). */
static void take_published(flow_publisher *out,
                           exports_flow_plugin_derive_packed_published_t *ret) {
    if (out->len == 0) {
        free(out->ends);
        flow_buf_free(&out->text);
        *ret = (exports_flow_plugin_derive_packed_published_t){{NULL, 0}, {NULL, 0}};
        return;
    }
    *ret = (exports_flow_plugin_derive_packed_published_t){
        {(uint8_t *)out->text.ptr, out->text.len},
        {out->ends, out->len},
    };
}

static void drop_published(flow_publisher *out) {
    free(out->ends);
    flow_buf_free(&out->text);
}

/* --- State -------------------------------------------------------------------------------- */

bool flow_state_get(flow_str key, flow_buf *value) {
    derivation_packed_string_t k = wit_str(key);
    derivation_packed_string_t got;
    if (!flow_plugin_state_get(&k, &got)) {
        return false;
    }
    free(value->ptr);
    *value = (flow_buf){(char *)got.ptr, got.len, got.len};
    return true;
}

void flow_state_set(flow_str key, const char *json, size_t len) {
    derivation_packed_string_t k = wit_str(key);
    derivation_packed_string_t v = {(uint8_t *)json, len};
    flow_plugin_state_set(&k, &v);
}

void flow_state_clear(flow_str key) {
    derivation_packed_string_t k = wit_str(key);
    flow_plugin_state_clear(&k);
}

/* --- The derive exports ------------------------------------------------------------------- */

__attribute__((weak)) flow_error *flow_flush(flow_publisher *out) {
    (void)out;
    return NULL;
}

bool exports_flow_plugin_derive_packed_open(exports_flow_plugin_derive_packed_derivation_spec_t *spec,
                                     exports_flow_plugin_derive_packed_plugin_error_t *err) {
    flow_spec s = {str_of(&spec->name), str_of(&spec->config), spec->transforms.len};
    flow_error *e = flow_open(&s);
    exports_flow_plugin_derive_packed_derivation_spec_free(spec);
    if (e != NULL) {
        set_error(err, e, false, 0);
        return false;
    }
    return true;
}

bool exports_flow_plugin_derive_packed_transform(
    exports_flow_plugin_derive_packed_source_batch_t *batch,
    exports_flow_plugin_derive_packed_published_t *ret,
    exports_flow_plugin_derive_packed_plugin_error_t *err) {
    flow_publisher out = {0};
    flow_error *e = NULL;
    size_t n = batch->document_ends.len;
    if (batch->key_ends.len != n || batch->transforms.len != n) {
        e = flow_errorf("the host's batch is packed wrongly: %zu documents, %zu keys, %zu transforms",
                        n, batch->key_ends.len, batch->transforms.len);
        n = 0;
    }
    const char *keys = (const char *)batch->keys.ptr;
    const char *documents = (const char *)batch->documents.ptr;
    uint32_t key_start = 0, document_start = 0;
    size_t failed = SIZE_MAX; /* the document the plugin failed, if it did */
    for (size_t i = 0; i < n; i++) {
        uint32_t key_end = batch->key_ends.ptr[i], document_end = batch->document_ends.ptr[i];
        if (key_end < key_start || key_end > batch->keys.len || document_end < document_start ||
            document_end > batch->documents.len) {
            e = flow_errorf("the host's batch is packed wrongly at document %zu", i);
            break;
        }
        flow_source source = {
            batch->transforms.ptr[i],
            {keys + key_start, key_end - key_start},
            {documents + document_start, document_end - document_start},
        };
        e = flow_transform(&source, &out);
        if (e != NULL) {
            failed = i;
            break;
        }
        key_start = key_end;
        document_start = document_end;
    }
    exports_flow_plugin_derive_packed_source_batch_free(batch);
    if (e != NULL) {
        drop_published(&out);
        set_error(err, e, failed != SIZE_MAX, (uint32_t)failed);
        return false;
    }
    take_published(&out, ret);
    return true;
}

bool exports_flow_plugin_derive_packed_flush(exports_flow_plugin_derive_packed_published_t *ret,
                                      exports_flow_plugin_derive_packed_plugin_error_t *err) {
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

#ifdef FLOW_MIGRATE
/* --- The migrate export ------------------------------------------------------------------- */

bool exports_flow_plugin_migrate_migrate(derivation_packed_string_t *from_digest,
                                         exports_flow_plugin_migrate_list_keyed_state_t *batch,
                                         exports_flow_plugin_migrate_list_keyed_state_t *ret,
                                         exports_flow_plugin_migrate_plugin_error_t *err) {
    size_t n = batch->len, len = 0;
    exports_flow_plugin_migrate_keyed_state_t *out =
        n > 0 ? must(malloc(n * sizeof *out)) : NULL;
    flow_buf next = {0};
    flow_error *e = NULL;
    size_t failed = 0;
    for (size_t i = 0; e == NULL && i < n; i++) {
        next.len = 0;
        e = flow_migrate(str_of(from_digest), str_of(&batch->ptr[i].key),
                         str_of(&batch->ptr[i].state), &next);
        if (e != NULL) {
            failed = i;
        } else if (next.len > 0) {
            /* The key moves to the result; the post-return frees it there. */
            derivation_packed_string_t text = {must(malloc(next.len)), next.len};
            memcpy(text.ptr, next.ptr, next.len);
            out[len++] = (exports_flow_plugin_migrate_keyed_state_t){batch->ptr[i].key, text};
            batch->ptr[i].key = (derivation_packed_string_t){NULL, 0};
        }
    }
    flow_buf_free(&next);
    exports_flow_plugin_migrate_list_keyed_state_free(batch);
    if (from_digest->len > 0) {
        free(from_digest->ptr);
    }
    if (e != NULL) {
        for (size_t i = 0; i < len; i++) {
            free(out[i].key.ptr);
            free(out[i].state.ptr);
        }
        free(out);
        size_t mlen;
        char *message = flow__error_take(e, &mlen);
        err->message = (derivation_packed_string_t){(uint8_t *)message, mlen};
        err->document.is_some = true;
        err->document.val = (uint32_t)failed;
        return false;
    }
    if (len == 0) {
        free(out);
        out = NULL;
    }
    *ret = (exports_flow_plugin_migrate_list_keyed_state_t){out, len};
    return true;
}
#endif
