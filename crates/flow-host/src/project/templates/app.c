/*
 * Customer totals: a Flow derivation in C (`flow plugin init --lang c`).
 *
 * For every order {customer, amount} it publishes {customer, total, orders}: the customer's
 * running totals, kept in host-managed state, which commits atomically with the outputs, so
 * totals survive restarts exactly. An order it cannot use fails with an error naming the
 * document (the task fails, or skips it, as the catalog's onError says).
 *
 *   flow plugin build    # bindings (gen/), clang for wasm32-wasi, then plugin.wasm
 *   flow plugin test     # flow.yaml's tests against plugin.wasm, no server needed
 */
#include "flow_derive.h"

flow_error *flow_open(const flow_spec *spec) {
    flow_log(FLOW_INFO, "opening %.*s with %zu transform(s)", (int)spec->name.len,
             spec->name.ptr, spec->transforms);
    return NULL;
}

flow_error *flow_transform(const flow_source *source, flow_publisher *out) {
    flow_json order, customer, field;
    double amount;
    if (!flow_json_parse(source->text, &order) || !flow_json_get(order, "customer", &customer) ||
        customer.type != FLOW_JSON_STRING || !flow_json_get(order, "amount", &field) ||
        !flow_json_number(field, &amount)) {
        return flow_errorf("order is not {customer: string, amount: number}");
    }
    if (amount < 0) {
        return flow_errorf("order amount must not be negative, got %.*s", (int)field.text.len,
                           field.text.ptr);
    }

    /* The customer's totals so far: {"total": number, "orders": number}, or none yet. */
    double total = 0, orders = 0;
    flow_buf text = {0};
    if (flow_state_get(source->key, &text)) {
        flow_json state, t, o;
        if (!flow_json_parse((flow_str){text.ptr, text.len}, &state) ||
            !flow_json_get(state, "total", &t) || !flow_json_number(t, &total) ||
            !flow_json_get(state, "orders", &o) || !flow_json_number(o, &orders)) {
            flow_error *e = flow_errorf("the state of %.*s is not {total, orders}: %.*s",
                                        (int)source->key.len, source->key.ptr, (int)text.len,
                                        text.ptr);
            flow_buf_free(&text);
            return e;
        }
    }
    total += amount;
    orders += 1;

    text.len = 0;
    flow_buf_puts(&text, "{\"total\":");
    flow_buf_number(&text, total);
    flow_buf_puts(&text, ",\"orders\":");
    flow_buf_number(&text, orders);
    flow_buf_puts(&text, "}");
    flow_state_set(source->key, text.ptr, text.len);

    /* The customer's JSON string is published as it came, escapes and all. */
    text.len = 0;
    flow_buf_puts(&text, "{\"customer\":");
    flow_buf_append(&text, customer.text.ptr, customer.text.len);
    flow_buf_puts(&text, ",\"total\":");
    flow_buf_number(&text, total);
    flow_buf_puts(&text, ",\"orders\":");
    flow_buf_number(&text, orders);
    flow_buf_puts(&text, "}");
    flow_publish_buf(out, &text);
    flow_buf_free(&text);
    return NULL;
}
