/*
 * Flow plugin SDK for C: materializations (wit/flow.wit, world `materialization`).
 *
 * The same shape as the Rust, Python and JavaScript SDKs. A plugin defines:
 * - `flow_materialization_open`: create or update the destination's tables and say the
 *   checkpoint `commit` last recorded (`flow_opened_checkpoint`), if any;
 * - `flow_materialization_load`: the stored documents of those keys that exist
 *   (`flow_loaded_add`), for standard (reduced) updates;
 * - `flow_materialization_write`: write the fully reduced documents of one binding;
 * - `flow_materialization_commit`: record the checkpoint with the rows.
 * Per transaction the host calls load, write, then commit, all in one destination transaction
 * that it commits after commit returned: the checkpoint lands with the rows, exactly once.
 *
 * The destination is the host's: `flow_sql_*` run statements inside its transaction (SQLite,
 * PostgreSQL, MySQL), `flow_kv_*` queue a Redis destination's writes; `flow_http_*` reach the
 * hosts on the task's allow-list. What the SDK passes in is valid during the call only: copy
 * what you keep.
 */
#ifndef FLOW_MATERIALIZE_H
#define FLOW_MATERIALIZE_H

#include "flow_http.h"
#include "flow_sdk.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One binding of the materialization. */
typedef struct flow_materialization_binding {
    flow_str collection; /* the source collection, e.g. acme/customer-totals */
    flow_str schema;     /* its JSON schema, JSON text */
    size_t key_len;
    const flow_str *key; /* the collection key, JSON pointers */
    flow_str resource;   /* the binding's `resource`, JSON text, e.g. {"table":"totals"} */
    bool delta_updates;  /* true: store combined deltas and never load */
} flow_materialization_binding;

/* The materialization being opened. */
typedef struct flow_materialization_spec {
    flow_str name;   /* e.g. acme/views */
    flow_str config; /* the endpoint's `config`, JSON text */
    size_t bindings_len;
    const flow_materialization_binding *bindings;
} flow_materialization_spec;

/* A document to write. */
typedef struct flow_stored {
    flow_str key;      /* the key, a JSON array, e.g. ["alice"] */
    flow_str document; /* the document, JSON text */
    bool exists;       /* whether load returned it in this transaction */
    bool delete_;      /* the reduction deleted it: remove its row */
} flow_stored;

/* What open says (owned by the SDK). */
typedef struct flow_opened flow_opened;
/* What load found (owned by the SDK). */
typedef struct flow_loaded flow_loaded;

/* --- What a plugin defines ------------------------------------------------------------ */

/* Called once when the task starts. Return NULL, or an error to refuse to start. */
flow_error *flow_materialization_open(const flow_materialization_spec *spec, flow_opened *out);
/* The stored documents of those `keys` (JSON arrays) that exist, into `out`. */
flow_error *flow_materialization_load(uint32_t binding, const flow_str *keys, size_t keys_len,
                                      flow_loaded *out);
/* Write `docs` of binding `binding`, in key order. */
flow_error *flow_materialization_write(uint32_t binding, const flow_stored *docs, size_t len);
/* Record `checkpoint` (JSON text) in the destination, with this transaction's rows. */
flow_error *flow_materialization_commit(flow_str checkpoint);

/* The checkpoint `commit` last recorded (JSON text, copied); left unset, there is none. */
void flow_opened_checkpoint(flow_opened *out, const char *json, size_t len);
/* A stored document of `key` (one of the keys load was given, as given) that exists. */
void flow_loaded_add(flow_loaded *out, flow_str key, const char *json, size_t len);

/* --- The fields of a binding, as the catalog selects them: what become columns -------- */

typedef struct flow_field {
    flow_str name;    /* the column's name, e.g. city */
    flow_str pointer; /* where its value is in a document, e.g. /address/city */
    bool key;         /* whether it is (part of) the collection key */
} flow_field;

typedef struct flow_fields {
    size_t len;
    const flow_field *items; /* the key's first */
    void *owned;             /* the SDK's */
} flow_fields;

/* The fields of binding `binding`; free them with flow_fields_free. */
void flow_fields_selected(uint32_t binding, flow_fields *out);
void flow_fields_free(flow_fields *f);

/* --- SQL, inside the host's transaction ------------------------------------------------ */

typedef enum flow_sql_type {
    FLOW_SQL_NULL,
    FLOW_SQL_INTEGER,
    FLOW_SQL_REAL,
    FLOW_SQL_TEXT,
    FLOW_SQL_BLOB,
} flow_sql_type;

/* A parameter or result value: `integer`, `real`, or `bytes` (TEXT, BLOB) by its type. */
typedef struct flow_sql_value {
    flow_sql_type type;
    int64_t integer;
    double real;
    flow_str bytes;
    char *owned; /* what flow_sql_json allocated, freed by flow_sql_value_free */
} flow_sql_value;

flow_sql_value flow_sql_null(void);
flow_sql_value flow_sql_int(int64_t v);
flow_sql_value flow_sql_real(double v);
flow_sql_value flow_sql_text(flow_str s);
/* A JSON value as a column holds it: null as NULL, true/false as 1/0, whole numbers as
 * INTEGER, other numbers as REAL, strings as TEXT (unescaped), objects and arrays as TEXT of
 * their JSON. Free it with flow_sql_value_free. */
flow_sql_value flow_sql_json(flow_json v);
void flow_sql_value_free(flow_sql_value *v);

/* Query results: `rows_len` rows of `columns_len` values, row after row in `values`. */
typedef struct flow_sql_rows {
    size_t columns_len;
    const flow_str *columns;
    size_t rows_len;
    const flow_sql_value *values;
    void *owned; /* the SDK's */
} flow_sql_rows;

/* Run one statement (a C string) with positional parameters (`?1`, `?2` or `?`); `changed`
 * (may be NULL) gets the rows it changed. A statement the host refuses, or that fails, is an
 * error with the database's reason. */
flow_error *flow_sql_execute(const char *statement, const flow_sql_value *params, size_t len,
                             uint64_t *changed);
/* Run one statement once per row of `columns` parameters (`rows` rows, row after row in
 * `params`), in one host call. */
flow_error *flow_sql_execute_many(const char *statement, const flow_sql_value *params,
                                  size_t columns, size_t rows, uint64_t *changed);
/* Queue a statement whose outcome is not needed: a failure surfaces at the next execute or
 * query, and the transaction commits nothing. */
flow_error *flow_sql_send(const char *statement, const flow_sql_value *params, size_t len);
/* The rows of a query; free them with flow_sql_rows_free. */
flow_error *flow_sql_query(const char *statement, const flow_sql_value *params, size_t len,
                           flow_sql_rows *out);
void flow_sql_rows_free(flow_sql_rows *rows);

/* --- A key-value store (Redis), inside the host's transaction --------------------------- */

/* Reads see the store as committed; writes are queued and applied together when the host
 * commits the transaction. Every call stops at the export's deadline; a failure is an error
 * with the host's reason. */

/* Values the store holds, by key: `present[i]` says whether key i has one. */
typedef struct flow_kv_values {
    size_t len;
    const bool *present;
    const flow_str *values;
    void *owned; /* the SDK's */
} flow_kv_values;

/* The string values of `keys`. Free them with flow_kv_values_free. */
flow_error *flow_kv_get(const flow_str *keys, size_t len, flow_kv_values *out);
/* Field `field` of the hashes at `keys`. */
flow_error *flow_kv_hget(const flow_str *keys, size_t len, flow_str field, flow_kv_values *out);
void flow_kv_values_free(flow_kv_values *v);
/* All fields of the hash at `key` (none if it does not exist). */
typedef struct flow_kv_hash {
    size_t len;
    const flow_header *fields;
    void *owned; /* the SDK's */
} flow_kv_hash;
flow_error *flow_kv_hgetall(flow_str key, flow_kv_hash *out);
void flow_kv_hash_free(flow_kv_hash *h);
/* Set `keys[i]` to `values[i]`, expiring after `ttl_ms` milliseconds (0: never). */
flow_error *flow_kv_set(const flow_str *keys, const flow_str *values, size_t len, uint64_t ttl_ms);
/* Replace the hash at `key` with `fields` (name, value pairs), expiring after `ttl_ms` (0:
 * never). */
flow_error *flow_kv_hset(flow_str key, const flow_header *fields, size_t len, uint64_t ttl_ms);
flow_error *flow_kv_del(const flow_str *keys, size_t len);
/* Commit this transaction only if `key` then holds `*value` (NULL: does not exist): a fence
 * against a stale instance of the task. */
flow_error *flow_kv_expect(flow_str key, const flow_str *value);

#ifdef __cplusplus
}
#endif

#endif /* FLOW_MATERIALIZE_H */
