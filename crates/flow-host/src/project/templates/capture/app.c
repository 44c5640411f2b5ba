/*
 * Orders from an HTTP API: a Flow capture in C (`flow plugin init --world capture`).
 *
 * It GETs `config.url` (a JSON array of orders, oldest first), then `config.url?after=ID`
 * with the id of the last order it captured, and captures each order into its binding's
 * collection. Its checkpoint is that last id, committed with the orders, so after a restart
 * it resumes exactly where the last committed poll ended: every order once.
 *
 *   flow plugin build    # bindings (gen/), clang for wasm32-wasi, then plugin.wasm
 *   flow plugin test     # flow.yaml's tests against plugin.wasm, HTTP answered by the tests
 */
#include "flow_capture.h"

#include <math.h>

static flow_buf url;    /* config.url, NUL-terminated */
static bool has_after;  /* whether an order was captured yet */
static double after;    /* the id of the last one */

flow_error *flow_capture_open(const flow_capture_spec *spec, const flow_str *checkpoint) {
    flow_json config, field;
    if (!flow_json_parse(spec->config, &config) || !flow_json_get(config, "url", &field) ||
        !flow_json_string(field, &url)) {
        return flow_errorf("config.url must be the orders API's URL, e.g. https://api.example.com/orders");
    }
    flow_buf_append(&url, "", 1);
    flow_json saved, id;
    has_after = checkpoint != NULL && flow_json_parse(*checkpoint, &saved) &&
                flow_json_get(saved, "after", &id) && flow_json_number(id, &after);
    if (has_after) {
        flow_log(FLOW_INFO, "opening %.*s at %s, after order %.0f", (int)spec->name.len,
                 spec->name.ptr, url.ptr, after);
    } else {
        flow_log(FLOW_INFO, "opening %.*s at %s, from the start", (int)spec->name.len,
                 spec->name.ptr, url.ptr);
    }
    return NULL;
}

flow_error *flow_capture_poll(flow_captured *out, flow_poll *poll) {
    flow_buf at = {0};
    flow_buf_puts(&at, url.ptr);
    if (has_after) {
        flow_buf_printf(&at, "?after=%.0f", after);
    }
    flow_buf_append(&at, "", 1);

    flow_header accept = {flow_cstr("accept"), flow_cstr("application/json")};
    flow_response response;
    flow_error *e = flow_http_get(at.ptr, &accept, 1, &response);
    flow_json orders;
    if (e != NULL) {
        flow_str why = flow_error_message(e);
        flow_error *wrapped = flow_errorf("GET %s: %.*s", at.ptr, (int)why.len, why.ptr);
        flow_error_free(e);
        e = wrapped;
    } else if (response.status != 200) {
        e = flow_errorf("GET %s: HTTP %u", at.ptr, (unsigned)response.status);
    } else if (!flow_json_parse(response.body, &orders) || orders.type != FLOW_JSON_ARRAY) {
        e = flow_errorf("GET %s: the response is not a JSON array of orders", at.ptr);
    }
    if (e != NULL) {
        flow_response_free(&response);
        flow_buf_free(&at);
        return e;
    }

    /* Each order is captured as its own text, escapes and all. */
    size_t captured = 0;
    flow_str items = flow_json_items(orders);
    flow_json order;
    while (flow_json_next(&items, &order)) {
        flow_json id;
        double value;
        if (!flow_json_get(order, "id", &id) || !flow_json_number(id, &value) ||
            value != floor(value)) {
            e = flow_errorf("GET %s: an order has no integer id", at.ptr);
            break;
        }
        flow_capture_document(out, 0, order.text.ptr, order.text.len);
        has_after = true;
        after = value;
        captured++;
    }
    flow_response_free(&response);
    flow_buf_free(&at);
    if (e != NULL) {
        return e;
    }
    if (captured == 0) {
        *poll = FLOW_POLL_IDLE;
        return NULL;
    }
    flow_buf checkpoint = {0};
    flow_buf_printf(&checkpoint, "{\"after\":%.0f}", after);
    flow_capture_checkpoint(out, checkpoint.ptr, checkpoint.len);
    flow_buf_free(&checkpoint);
    *poll = FLOW_POLL_MORE;
    return NULL;
}
