/*
 * A SQLite table of per-customer totals: a Flow materialization in C (`flow plugin init
 * --world materialization`).
 *
 * Each binding's collection becomes a table (`resource.table`), one row per key: a column per
 * selected field (the key's first, then each top-level property) and `flow_document` with the
 * whole document. The checkpoint is written to `flow_checkpoints` in the same transaction as
 * the rows, which is what makes the table exactly once.
 *
 *   flow plugin build    # bindings (gen/), clang for wasm32-wasi, then plugin.wasm
 *   flow plugin test     # flow.yaml's tests against plugin.wasm, into a database of each test's own
 */
#include "flow_materialize.h"

#include <stdlib.h>

typedef struct table {
    flow_fields fields;
    size_t keys;    /* how many of the fields are the key's (they come first) */
    flow_buf select, delete_, upsert; /* statements, NUL-terminated */
} table;

static table *tables;
static flow_buf name; /* the materialization's name */

static void quote(flow_buf *b, flow_str name) {
    flow_buf_puts(b, "\"");
    for (size_t i = 0; i < name.len; i++) {
        flow_buf_append(b, name.ptr[i] == '"' ? "\"\"" : &name.ptr[i], name.ptr[i] == '"' ? 2 : 1);
    }
    flow_buf_puts(b, "\"");
}

static void where_key(flow_buf *b, const table *t) {
    for (size_t k = 0; k < t->keys; k++) {
        flow_buf_puts(b, k ? " AND " : " WHERE ");
        quote(b, t->fields.items[k].name);
        flow_buf_puts(b, " = ?");
    }
    flow_buf_append(b, "", 1);
}

static flow_error *open_table(uint32_t i, const flow_materialization_binding *b, table *t) {
    flow_json resource, field;
    flow_buf tname = {0};
    if (!flow_json_parse(b->resource, &resource) || !flow_json_get(resource, "table", &field) ||
        !flow_json_string(field, &tname) || tname.len == 0) {
        flow_buf_free(&tname);
        return flow_errorf("binding %u (%.*s): resource.table must name a table", i,
                           (int)b->collection.len, b->collection.ptr);
    }
    if (b->delta_updates) {
        flow_buf_free(&tname);
        return flow_errorf("binding %u (%.*s): this materialization keeps one row per key; "
                           "deltaUpdates is not supported",
                           i, (int)b->collection.len, b->collection.ptr);
    }
    flow_fields_selected(i, &t->fields);
    t->keys = 0;
    while (t->keys < t->fields.len && t->fields.items[t->keys].key) {
        t->keys++;
    }
    flow_str table_name = {tname.ptr, tname.len};
    flow_buf create = {0}, columns = {0}, places = {0};
    for (size_t f = 0; f < t->fields.len; f++) {
        quote(&columns, t->fields.items[f].name);
        flow_buf_puts(&columns, ", ");
        flow_buf_puts(&places, "?, ");
    }
    flow_buf_puts(&create, "CREATE TABLE IF NOT EXISTS ");
    quote(&create, table_name);
    flow_buf_printf(&create, " (%.*sflow_document TEXT NOT NULL, PRIMARY KEY (", (int)columns.len,
                    columns.ptr);
    for (size_t k = 0; k < t->keys; k++) {
        if (k) {
            flow_buf_puts(&create, ", ");
        }
        quote(&create, t->fields.items[k].name);
    }
    flow_buf_append(&create, "))", 3); /* with the NUL */

    flow_buf_puts(&t->select, "SELECT flow_document FROM ");
    quote(&t->select, table_name);
    where_key(&t->select, t);
    flow_buf_puts(&t->delete_, "DELETE FROM ");
    quote(&t->delete_, table_name);
    where_key(&t->delete_, t);
    flow_buf_puts(&t->upsert, "INSERT OR REPLACE INTO ");
    quote(&t->upsert, table_name);
    flow_buf_printf(&t->upsert, " (%.*sflow_document) VALUES (%.*s?)", (int)columns.len,
                    columns.ptr, (int)places.len, places.ptr);
    flow_buf_append(&t->upsert, "", 1);

    flow_error *e = flow_sql_execute(create.ptr, NULL, 0, NULL);
    flow_buf_free(&create);
    flow_buf_free(&columns);
    flow_buf_free(&places);
    flow_buf_free(&tname);
    return e;
}

flow_error *flow_materialization_open(const flow_materialization_spec *spec, flow_opened *out) {
    flow_log(FLOW_INFO, "opening %.*s with %zu binding(s)", (int)spec->name.len, spec->name.ptr,
             spec->bindings_len);
    name.len = 0;
    flow_buf_append(&name, spec->name.ptr, spec->name.len);
    flow_error *e = flow_sql_execute("CREATE TABLE IF NOT EXISTS flow_checkpoints "
                                     "(materialization TEXT PRIMARY KEY, checkpoint TEXT NOT NULL)",
                                     NULL, 0, NULL);
    tables = calloc(spec->bindings_len ? spec->bindings_len : 1, sizeof *tables);
    for (uint32_t i = 0; e == NULL && i < spec->bindings_len; i++) {
        e = open_table(i, &spec->bindings[i], &tables[i]);
    }
    if (e != NULL) {
        return e;
    }
    flow_sql_value param = flow_sql_text(spec->name);
    flow_sql_rows rows;
    e = flow_sql_query("SELECT checkpoint FROM flow_checkpoints WHERE materialization = ?", &param,
                       1, &rows);
    if (e == NULL && rows.rows_len > 0 && rows.values[0].type == FLOW_SQL_TEXT) {
        flow_opened_checkpoint(out, rows.values[0].bytes.ptr, rows.values[0].bytes.len);
    }
    if (e == NULL) {
        flow_sql_rows_free(&rows);
    }
    return e;
}

/* The key's values (a JSON array) as statement parameters, into `params` (up to `max`). */
static size_t key_params(flow_str key, flow_sql_value *params, size_t max) {
    flow_json array, item;
    size_t n = 0;
    if (flow_json_parse(key, &array)) {
        flow_str items = flow_json_items(array);
        while (n < max && flow_json_next(&items, &item)) {
            params[n++] = flow_sql_json(item);
        }
    }
    return n;
}

static void free_params(flow_sql_value *params, size_t n) {
    for (size_t i = 0; i < n; i++) {
        flow_sql_value_free(&params[i]);
    }
}

flow_error *flow_materialization_load(uint32_t binding, const flow_str *keys, size_t keys_len,
                                      flow_loaded *out) {
    const table *t = &tables[binding];
    flow_sql_value *params = calloc(t->keys ? t->keys : 1, sizeof *params);
    flow_error *e = NULL;
    for (size_t i = 0; e == NULL && i < keys_len; i++) {
        size_t n = key_params(keys[i], params, t->keys);
        flow_sql_rows rows;
        e = flow_sql_query(t->select.ptr, params, n, &rows);
        free_params(params, n);
        if (e == NULL) {
            if (rows.rows_len > 0 && rows.values[0].type == FLOW_SQL_TEXT) {
                flow_loaded_add(out, keys[i], rows.values[0].bytes.ptr, rows.values[0].bytes.len);
            }
            flow_sql_rows_free(&rows);
        }
    }
    free(params);
    return e;
}

flow_error *flow_materialization_write(uint32_t binding, const flow_stored *docs, size_t len) {
    const table *t = &tables[binding];
    size_t width = t->fields.len + 1; /* the fields, then flow_document */
    flow_sql_value *rows = calloc(len * width + 1, sizeof *rows);
    size_t upserts = 0;
    flow_error *e = NULL;
    for (size_t i = 0; e == NULL && i < len; i++) {
        flow_sql_value *row = &rows[upserts * width];
        if (docs[i].delete_) {
            size_t n = key_params(docs[i].key, row, t->keys);
            e = flow_sql_execute(t->delete_.ptr, row, n, NULL);
            free_params(row, n);
            continue;
        }
        flow_json doc, value;
        flow_json_parse(docs[i].document, &doc);
        for (size_t f = 0; f < t->fields.len; f++) {
            flow_buf pointer = {0};
            flow_buf_append(&pointer, t->fields.items[f].pointer.ptr, t->fields.items[f].pointer.len);
            flow_buf_append(&pointer, "", 1);
            row[f] = flow_json_pointer(doc, pointer.ptr, &value) ? flow_sql_json(value) : flow_sql_null();
            flow_buf_free(&pointer);
        }
        row[t->fields.len] = flow_sql_text(docs[i].document);
        upserts++;
    }
    if (e == NULL && upserts > 0) {
        e = flow_sql_execute_many(t->upsert.ptr, rows, width, upserts, NULL);
    }
    free_params(rows, upserts * width);
    free(rows);
    return e;
}

flow_error *flow_materialization_commit(flow_str checkpoint) {
    flow_sql_value params[2] = {flow_sql_text((flow_str){name.ptr, name.len}),
                                flow_sql_text(checkpoint)};
    return flow_sql_execute(
        "INSERT OR REPLACE INTO flow_checkpoints (materialization, checkpoint) VALUES (?, ?)",
        params, 2, NULL);
}
