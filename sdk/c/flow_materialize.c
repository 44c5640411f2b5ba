/*
 * Flow plugin SDK for C: the materialization world's exports over wit-bindgen's bindings
 * (gen/materialization.h, written by `flow plugin build`), and what flow_materialize.h
 * declares.
 *
 * Ownership follows wit-bindgen's C rules: an export owns its arguments (freed here), what it
 * returns is freed by the generated post-return functions, and an import's results are the
 * caller's (freed here, or by flow_sql_rows_free and flow_fields_free).
 */
#include "flow_materialize.h"

#include "materialization.h"

#include <stdlib.h>
#include <string.h>

#define must flow__must

typedef materialization_string_t wit_string;

struct flow_opened {
    materialization_option_string_t checkpoint;
};

struct flow_loaded {
    exports_flow_plugin_sink_loaded_t *items;
    size_t len;
    size_t cap;
};

static flow_str str_of(const wit_string *s) {
    return (flow_str){(const char *)s->ptr, s->len};
}

/* A malloc'd copy, for what the post-return frees (only when not empty). */
static wit_string copy(const char *bytes, size_t len) {
    wit_string s = {NULL, len};
    if (len > 0) {
        s.ptr = must(malloc(len));
        memcpy(s.ptr, bytes, len);
    }
    return s;
}

void flow__log_write(flow_level level, const char *message, size_t len) {
    wit_string line = {(uint8_t *)message, len};
    flow_plugin_log_write((flow_plugin_log_level_t)level, &line);
}

static bool fail(exports_flow_plugin_sink_plugin_error_t *err, flow_error *e) {
    size_t len;
    char *message = flow__error_take(e, &len);
    err->message = (wit_string){(uint8_t *)message, len};
    err->document.is_some = false;
    return false;
}

void flow_opened_checkpoint(flow_opened *out, const char *json, size_t len) {
    if (out->checkpoint.is_some) {
        free(out->checkpoint.val.ptr);
    }
    out->checkpoint = (materialization_option_string_t){true, copy(json, len)};
}

void flow_loaded_add(flow_loaded *out, flow_str key, const char *json, size_t len) {
    if (out->len == out->cap) {
        out->cap = out->cap ? out->cap * 2 : 16;
        out->items = must(realloc(out->items, out->cap * sizeof *out->items));
    }
    out->items[out->len++] =
        (exports_flow_plugin_sink_loaded_t){copy(key.ptr, key.len), copy(json, len)};
}

/* --- Fields ------------------------------------------------------------------------------- */

void flow_fields_selected(uint32_t binding, flow_fields *out) {
    flow_plugin_fields_list_field_t *list = must(malloc(sizeof *list));
    flow_plugin_fields_selected(binding, list);
    flow_field *items = list->len > 0 ? must(malloc(list->len * sizeof *items)) : NULL;
    for (size_t i = 0; i < list->len; i++) {
        items[i] = (flow_field){str_of(&list->ptr[i].name), str_of(&list->ptr[i].pointer),
                                list->ptr[i].key};
    }
    *out = (flow_fields){list->len, items, list};
}

void flow_fields_free(flow_fields *f) {
    if (f->owned != NULL) {
        flow_plugin_fields_list_field_free(f->owned);
        free(f->owned);
    }
    free((void *)f->items);
    *f = (flow_fields){0};
}

/* --- SQL ---------------------------------------------------------------------------------- */

flow_sql_value flow_sql_null(void) {
    return (flow_sql_value){FLOW_SQL_NULL};
}

flow_sql_value flow_sql_int(int64_t v) {
    return (flow_sql_value){FLOW_SQL_INTEGER, .integer = v};
}

flow_sql_value flow_sql_real(double v) {
    return (flow_sql_value){FLOW_SQL_REAL, .real = v};
}

flow_sql_value flow_sql_text(flow_str s) {
    return (flow_sql_value){FLOW_SQL_TEXT, .bytes = s};
}

flow_sql_value flow_sql_json(flow_json v) {
    switch (v.type) {
    case FLOW_JSON_NULL:
        return flow_sql_null();
    case FLOW_JSON_BOOL:
        return flow_sql_int(v.text.ptr[0] == 't');
    case FLOW_JSON_NUMBER: {
        double d = 0;
        flow_json_number(v, &d);
        /* Written without a fraction or exponent, and exact: a whole number. */
        bool whole = memchr(v.text.ptr, '.', v.text.len) == NULL &&
                     memchr(v.text.ptr, 'e', v.text.len) == NULL &&
                     memchr(v.text.ptr, 'E', v.text.len) == NULL && d >= -9007199254740992.0 &&
                     d <= 9007199254740992.0;
        return whole ? flow_sql_int((int64_t)d) : flow_sql_real(d);
    }
    case FLOW_JSON_STRING: {
        flow_buf b = {0};
        flow_json_string(v, &b);
        return (flow_sql_value){FLOW_SQL_TEXT, .bytes = {b.ptr, b.len}, .owned = b.ptr};
    }
    default:
        return flow_sql_text(v.text);
    }
}

void flow_sql_value_free(flow_sql_value *v) {
    free(v->owned);
    *v = flow_sql_null();
}

static flow_plugin_sql_value_t to_wit(const flow_sql_value *v) {
    flow_plugin_sql_value_t w = {0};
    switch (v->type) {
    case FLOW_SQL_NULL:
        w.tag = FLOW_PLUGIN_SQL_VALUE_NULL;
        break;
    case FLOW_SQL_INTEGER:
        w.tag = FLOW_PLUGIN_SQL_VALUE_INTEGER;
        w.val.integer = v->integer;
        break;
    case FLOW_SQL_REAL:
        w.tag = FLOW_PLUGIN_SQL_VALUE_REAL;
        w.val.real = v->real;
        break;
    case FLOW_SQL_TEXT:
        w.tag = FLOW_PLUGIN_SQL_VALUE_TEXT;
        w.val.text = (wit_string){(uint8_t *)v->bytes.ptr, v->bytes.len};
        break;
    case FLOW_SQL_BLOB:
        w.tag = FLOW_PLUGIN_SQL_VALUE_BLOB;
        w.val.blob = (materialization_list_u8_t){(uint8_t *)v->bytes.ptr, v->bytes.len};
        break;
    }
    return w;
}

static flow_sql_value from_wit(const flow_plugin_sql_value_t *w) {
    switch (w->tag) {
    case FLOW_PLUGIN_SQL_VALUE_INTEGER:
        return flow_sql_int(w->val.integer);
    case FLOW_PLUGIN_SQL_VALUE_REAL:
        return flow_sql_real(w->val.real);
    case FLOW_PLUGIN_SQL_VALUE_TEXT:
        return flow_sql_text(str_of(&w->val.text));
    case FLOW_PLUGIN_SQL_VALUE_BLOB:
        return (flow_sql_value){FLOW_SQL_BLOB,
                                .bytes = {(const char *)w->val.blob.ptr, w->val.blob.len}};
    default:
        return flow_sql_null();
    }
}

/* The parameters as the bindings take them (borrowing their bytes); free the list only. */
static flow_plugin_sql_list_value_t params_of(const flow_sql_value *params, size_t len) {
    flow_plugin_sql_value_t *items = len > 0 ? must(malloc(len * sizeof *items)) : NULL;
    for (size_t i = 0; i < len; i++) {
        items[i] = to_wit(&params[i]);
    }
    return (flow_plugin_sql_list_value_t){items, len};
}

static flow_error *host_error(wit_string *err) {
    flow_error *e = flow_errorf("%.*s", (int)err->len, (const char *)err->ptr);
    materialization_string_free(err);
    return e;
}

flow_error *flow_sql_execute(const char *statement, const flow_sql_value *params, size_t len,
                             uint64_t *changed) {
    wit_string s = {(uint8_t *)statement, strlen(statement)};
    flow_plugin_sql_list_value_t p = params_of(params, len);
    uint64_t n = 0;
    wit_string err;
    bool ok = flow_plugin_sql_execute(&s, &p, &n, &err);
    free(p.ptr);
    if (!ok) {
        return host_error(&err);
    }
    if (changed != NULL) {
        *changed = n;
    }
    return NULL;
}

flow_error *flow_sql_execute_many(const char *statement, const flow_sql_value *params,
                                  size_t columns, size_t rows, uint64_t *changed) {
    wit_string s = {(uint8_t *)statement, strlen(statement)};
    flow_plugin_sql_list_value_t *list = rows > 0 ? must(malloc(rows * sizeof *list)) : NULL;
    for (size_t r = 0; r < rows; r++) {
        list[r] = params_of(params + r * columns, columns);
    }
    flow_plugin_sql_list_list_value_t p = {list, rows};
    uint64_t n = 0;
    wit_string err;
    bool ok = flow_plugin_sql_execute_many(&s, &p, &n, &err);
    for (size_t r = 0; r < rows; r++) {
        free(list[r].ptr);
    }
    free(list);
    if (!ok) {
        return host_error(&err);
    }
    if (changed != NULL) {
        *changed = n;
    }
    return NULL;
}

flow_error *flow_sql_send(const char *statement, const flow_sql_value *params, size_t len) {
    wit_string s = {(uint8_t *)statement, strlen(statement)};
    flow_plugin_sql_list_value_t p = params_of(params, len);
    wit_string err;
    bool ok = flow_plugin_sql_send(&s, &p, &err);
    free(p.ptr);
    return ok ? NULL : host_error(&err);
}

/* What flow_sql_rows owns: the bindings' rows and the views over them. */
typedef struct rows_owned {
    flow_plugin_sql_rows_t rows;
    flow_str *columns;
    flow_sql_value *values;
} rows_owned;

flow_error *flow_sql_query(const char *statement, const flow_sql_value *params, size_t len,
                           flow_sql_rows *out) {
    *out = (flow_sql_rows){0};
    wit_string s = {(uint8_t *)statement, strlen(statement)};
    flow_plugin_sql_list_value_t p = params_of(params, len);
    rows_owned *owned = must(calloc(1, sizeof *owned));
    wit_string err;
    bool ok = flow_plugin_sql_query(&s, &p, &owned->rows, &err);
    free(p.ptr);
    if (!ok) {
        free(owned);
        return host_error(&err);
    }
    size_t ncols = owned->rows.columns.len, nrows = owned->rows.rows.len;
    owned->columns = ncols > 0 ? must(malloc(ncols * sizeof *owned->columns)) : NULL;
    for (size_t c = 0; c < ncols; c++) {
        owned->columns[c] = str_of(&owned->rows.columns.ptr[c]);
    }
    owned->values = ncols * nrows > 0 ? must(malloc(ncols * nrows * sizeof *owned->values)) : NULL;
    for (size_t r = 0; r < nrows; r++) {
        const flow_plugin_sql_list_value_t *row = &owned->rows.rows.ptr[r];
        for (size_t c = 0; c < ncols; c++) {
            owned->values[r * ncols + c] = c < row->len ? from_wit(&row->ptr[c]) : flow_sql_null();
        }
    }
    *out = (flow_sql_rows){ncols, owned->columns, nrows, owned->values, owned};
    return NULL;
}

void flow_sql_rows_free(flow_sql_rows *rows) {
    rows_owned *owned = rows->owned;
    if (owned != NULL) {
        flow_plugin_sql_rows_free(&owned->rows);
        free(owned->columns);
        free(owned->values);
        free(owned);
    }
    *rows = (flow_sql_rows){0};
}

/* --- HTTP --------------------------------------------------------------------------------- */

#define FLOW_HTTP_STRING materialization_string_t
#define FLOW_HTTP_HEADER materialization_tuple2_string_string_t
#define FLOW_HTTP_STRING_FREE materialization_string_free
#include "flow_http.inc"

/* --- Key-value ---------------------------------------------------------------------------- */

static materialization_list_string_t kv_keys(const flow_str *keys, size_t len) {
    wit_string *items = len > 0 ? must(malloc(len * sizeof *items)) : NULL;
    for (size_t i = 0; i < len; i++) {
        items[i] = (wit_string){(uint8_t *)keys[i].ptr, keys[i].len};
    }
    return (materialization_list_string_t){items, len};
}

/* What flow_kv_values owns: the bindings' list and the views over it. */
typedef struct kv_owned {
    materialization_list_option_string_t list;
    bool *present;
    flow_str *values;
} kv_owned;

static void kv_values(kv_owned *owned, flow_kv_values *out) {
    size_t n = owned->list.len;
    owned->present = n > 0 ? must(malloc(n * sizeof *owned->present)) : NULL;
    owned->values = n > 0 ? must(calloc(n, sizeof *owned->values)) : NULL;
    for (size_t i = 0; i < n; i++) {
        owned->present[i] = owned->list.ptr[i].is_some;
        if (owned->list.ptr[i].is_some) {
            owned->values[i] = str_of(&owned->list.ptr[i].val);
        }
    }
    *out = (flow_kv_values){n, owned->present, owned->values, owned};
}

/* `get` (field NULL) or `hget` of `keys`. */
static flow_error *kv_read(const flow_str *keys, size_t len, const flow_str *field,
                           flow_kv_values *out) {
    *out = (flow_kv_values){0};
    materialization_list_string_t k = kv_keys(keys, len);
    kv_owned *owned = must(calloc(1, sizeof *owned));
    wit_string err;
    bool ok;
    if (field == NULL) {
        ok = flow_plugin_kv_get(&k, &owned->list, &err);
    } else {
        wit_string f = {(uint8_t *)field->ptr, field->len};
        ok = flow_plugin_kv_hget(&k, &f, &owned->list, &err);
    }
    free(k.ptr);
    if (!ok) {
        free(owned);
        return host_error(&err);
    }
    kv_values(owned, out);
    return NULL;
}

flow_error *flow_kv_get(const flow_str *keys, size_t len, flow_kv_values *out) {
    return kv_read(keys, len, NULL, out);
}

flow_error *flow_kv_hget(const flow_str *keys, size_t len, flow_str field, flow_kv_values *out) {
    return kv_read(keys, len, &field, out);
}

void flow_kv_values_free(flow_kv_values *v) {
    kv_owned *owned = v->owned;
    if (owned != NULL) {
        materialization_list_option_string_free(&owned->list);
        free(owned->present);
        free(owned->values);
        free(owned);
    }
    *v = (flow_kv_values){0};
}

flow_error *flow_kv_hgetall(flow_str key, flow_kv_hash *out) {
    *out = (flow_kv_hash){0};
    wit_string k = {(uint8_t *)key.ptr, key.len};
    materialization_list_tuple2_string_string_t *list = must(malloc(sizeof *list));
    wit_string err;
    if (!flow_plugin_kv_hgetall(&k, list, &err)) {
        free(list);
        return host_error(&err);
    }
    flow_header *fields = list->len > 0 ? must(malloc(list->len * sizeof *fields)) : NULL;
    for (size_t i = 0; i < list->len; i++) {
        fields[i] = (flow_header){str_of(&list->ptr[i].f0), str_of(&list->ptr[i].f1)};
    }
    *out = (flow_kv_hash){list->len, fields, list};
    return NULL;
}

void flow_kv_hash_free(flow_kv_hash *h) {
    if (h->owned != NULL) {
        materialization_list_tuple2_string_string_free(h->owned);
        free(h->owned);
    }
    free((void *)h->fields);
    *h = (flow_kv_hash){0};
}

flow_error *flow_kv_set(const flow_str *keys, const flow_str *values, size_t len, uint64_t ttl_ms) {
    flow_plugin_kv_entry_t *items = len > 0 ? must(malloc(len * sizeof *items)) : NULL;
    for (size_t i = 0; i < len; i++) {
        items[i] = (flow_plugin_kv_entry_t){{(uint8_t *)keys[i].ptr, keys[i].len},
                                            {(uint8_t *)values[i].ptr, values[i].len}};
    }
    flow_plugin_kv_list_entry_t entries = {items, len};
    wit_string err;
    bool ok = flow_plugin_kv_set(&entries, ttl_ms > 0 ? &ttl_ms : NULL, &err);
    free(items);
    return ok ? NULL : host_error(&err);
}

flow_error *flow_kv_hset(flow_str key, const flow_header *fields, size_t len, uint64_t ttl_ms) {
    materialization_tuple2_string_string_t *pairs =
        len > 0 ? must(malloc(len * sizeof *pairs)) : NULL;
    for (size_t i = 0; i < len; i++) {
        pairs[i] = (materialization_tuple2_string_string_t){
            {(uint8_t *)fields[i].name.ptr, fields[i].name.len},
            {(uint8_t *)fields[i].value.ptr, fields[i].value.len}};
    }
    flow_plugin_kv_hash_entry_t entry = {{(uint8_t *)key.ptr, key.len}, {pairs, len}};
    flow_plugin_kv_list_hash_entry_t entries = {&entry, 1};
    wit_string err;
    bool ok = flow_plugin_kv_hset(&entries, ttl_ms > 0 ? &ttl_ms : NULL, &err);
    free(pairs);
    return ok ? NULL : host_error(&err);
}

flow_error *flow_kv_del(const flow_str *keys, size_t len) {
    materialization_list_string_t k = kv_keys(keys, len);
    wit_string err;
    bool ok = flow_plugin_kv_del(&k, &err);
    free(k.ptr);
    return ok ? NULL : host_error(&err);
}

flow_error *flow_kv_expect(flow_str key, const flow_str *value) {
    wit_string k = {(uint8_t *)key.ptr, key.len};
    wit_string v = value != NULL ? (wit_string){(uint8_t *)value->ptr, value->len}
                                 : (wit_string){NULL, 0};
    wit_string err;
    bool ok = flow_plugin_kv_expect(&k, value != NULL ? &v : NULL, &err);
    return ok ? NULL : host_error(&err);
}

/* --- The sink exports --------------------------------------------------------------------- */

bool exports_flow_plugin_sink_open(exports_flow_plugin_sink_materialization_spec_t *spec,
                                   materialization_option_string_t *ret,
                                   exports_flow_plugin_sink_plugin_error_t *err) {
    size_t n = spec->bindings.len;
    flow_materialization_binding *bindings = n > 0 ? must(calloc(n, sizeof *bindings)) : NULL;
    for (size_t i = 0; i < n; i++) {
        const exports_flow_plugin_sink_binding_spec_t *b = &spec->bindings.ptr[i];
        flow_str *key = b->key.len > 0 ? must(malloc(b->key.len * sizeof *key)) : NULL;
        for (size_t k = 0; k < b->key.len; k++) {
            key[k] = str_of(&b->key.ptr[k]);
        }
        bindings[i] = (flow_materialization_binding){
            str_of(&b->collection), str_of(&b->schema), b->key.len, key,
            str_of(&b->resource),   b->delta_updates,
        };
    }
    flow_materialization_spec s = {str_of(&spec->name), str_of(&spec->config), n, bindings};
    flow_opened opened = {0};
    flow_error *e = flow_materialization_open(&s, &opened);
    for (size_t i = 0; i < n; i++) {
        free((void *)bindings[i].key);
    }
    free(bindings);
    exports_flow_plugin_sink_materialization_spec_free(spec);
    if (e != NULL) {
        if (opened.checkpoint.is_some) {
            free(opened.checkpoint.val.ptr);
        }
        return fail(err, e);
    }
    *ret = opened.checkpoint;
    return true;
}

bool exports_flow_plugin_sink_load(uint32_t binding, materialization_list_string_t *keys,
                                   exports_flow_plugin_sink_list_loaded_t *ret,
                                   exports_flow_plugin_sink_plugin_error_t *err) {
    size_t n = keys->len;
    flow_str *views = n > 0 ? must(malloc(n * sizeof *views)) : NULL;
    for (size_t i = 0; i < n; i++) {
        views[i] = str_of(&keys->ptr[i]);
    }
    flow_loaded out = {0};
    flow_error *e = flow_materialization_load(binding, views, n, &out);
    free(views);
    materialization_list_string_free(keys);
    if (e != NULL) {
        for (size_t i = 0; i < out.len; i++) {
            free(out.items[i].key.ptr);
            free(out.items[i].document.ptr);
        }
        free(out.items);
        return fail(err, e);
    }
    if (out.len == 0) {
        free(out.items);
        out.items = NULL;
    }
    *ret = (exports_flow_plugin_sink_list_loaded_t){out.items, out.len};
    return true;
}

bool exports_flow_plugin_sink_write(uint32_t binding, exports_flow_plugin_sink_list_stored_t *documents,
                                    exports_flow_plugin_sink_plugin_error_t *err) {
    size_t n = documents->len;
    flow_stored *docs = n > 0 ? must(malloc(n * sizeof *docs)) : NULL;
    for (size_t i = 0; i < n; i++) {
        const exports_flow_plugin_sink_stored_t *d = &documents->ptr[i];
        docs[i] = (flow_stored){str_of(&d->key), str_of(&d->document), d->exists, d->delete_};
    }
    flow_error *e = flow_materialization_write(binding, docs, n);
    free(docs);
    exports_flow_plugin_sink_list_stored_free(documents);
    return e == NULL ? true : fail(err, e);
}

bool exports_flow_plugin_sink_commit(materialization_string_t *checkpoint,
                                     exports_flow_plugin_sink_plugin_error_t *err) {
    flow_error *e = flow_materialization_commit(str_of(checkpoint));
    materialization_string_free(checkpoint);
    return e == NULL ? true : fail(err, e);
}
