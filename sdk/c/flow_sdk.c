/*
 * Flow plugin SDK for C: what every world shares (flow_sdk.h): errors, the log line format,
 * JSON text read and built without a tree. No bindings here: each world's glue
 * (flow_derive.c, flow_capture.c) writes log lines through its own.
 */
#include "flow_sdk.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct flow_error {
    char *message;
    size_t len;
};

/* Out of memory is a trap: the host reports the plugin's memory limit. */
void *flow__must(void *p) {
    if (p == NULL) {
        abort();
    }
    return p;
}

#define must flow__must

flow_str flow_cstr(const char *s) {
    return (flow_str){s, strlen(s)};
}

/* --- Buffers ------------------------------------------------------------------------------ */

static void reserve(flow_buf *b, size_t more) {
    if (b->cap - b->len >= more) {
        return;
    }
    size_t cap = b->cap ? b->cap : 64;
    while (cap - b->len < more) {
        cap *= 2;
    }
    b->ptr = must(realloc(b->ptr, cap));
    b->cap = cap;
}

void flow_buf_append(flow_buf *b, const char *bytes, size_t len) {
    reserve(b, len);
    memcpy(b->ptr + b->len, bytes, len);
    b->len += len;
}

void flow_buf_puts(flow_buf *b, const char *s) {
    flow_buf_append(b, s, strlen(s));
}

static void buf_vprintf(flow_buf *b, const char *format, va_list args) {
    va_list again;
    va_copy(again, args);
    char small[256];
    int n = vsnprintf(small, sizeof small, format, args);
    if (n < 0) {
        va_end(again);
        return;
    }
    if ((size_t)n < sizeof small) {
        flow_buf_append(b, small, (size_t)n);
    } else {
        reserve(b, (size_t)n + 1);
        vsnprintf(b->ptr + b->len, (size_t)n + 1, format, again);
        b->len += (size_t)n;
    }
    va_end(again);
}

void flow_buf_printf(flow_buf *b, const char *format, ...) {
    va_list args;
    va_start(args, format);
    buf_vprintf(b, format, args);
    va_end(args);
}

/* `v` in decimal, `width` digits at least (zeros in front). */
static void put_uint(flow_buf *b, uint64_t v, int width) {
    char digits[24];
    int n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0 || n < width);
    reserve(b, (size_t)n);
    while (n > 0) {
        b->ptr[b->len++] = digits[--n];
    }
}

/* Powers of ten a double holds exactly. */
static const double exact_tens[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                    1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                    1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* A number with at most 6 decimals and under 1e9 written by integer arithmetic: printf and
 * strtod of wasi-libc compute in 128-bit long doubles, in software. `d` digits after
 * the point: the fewest that read back as the same double (m / 10^d rounds to `value` just as
 * reading the text does). */
static bool number_fast(flow_buf *b, double value) {
    double magnitude = fabs(value);
    if (magnitude >= 1e9) {
        return false;
    }
    for (int d = 1; d <= 6; d++) {
        double m = magnitude * exact_tens[d];
        if (m != floor(m) || m / exact_tens[d] != magnitude) {
            continue;
        }
        uint64_t digits = (uint64_t)m;
        uint64_t scale = (uint64_t)exact_tens[d];
        if (value < 0) {
            flow_buf_append(b, "-", 1);
        }
        /* Trailing zeros were ruled out by trying fewer decimals first. */
        put_uint(b, digits / scale, 1);
        flow_buf_append(b, ".", 1);
        put_uint(b, digits % scale, d);
        return true;
    }
    return false;
}

void flow_buf_number(flow_buf *b, double value) {
    if (!isfinite(value)) {
        flow_buf_puts(b, "null");
        return;
    }
    char text[32];
    /* Whole numbers as integers (110, not 1.1e+02), up to where doubles stop being exact. */
    if (value == trunc(value) && fabs(value) < 9007199254740992.0) {
        if (signbit(value)) {
            flow_buf_append(b, "-", 1);
        }
        put_uint(b, (uint64_t)fabs(value), 1);
        return;
    }
    /* 15 significant digits read back as the same double for most values and %g drops
     * trailing zeros, so this is the shortest text in one try; else 16, then 17, which
     * always reads back. (Trying 1, 2, .. 17 cost a printf and a strtod per digit.) */
    if (number_fast(b, value)) {
        return;
    }
    for (int precision = 15; precision <= 17; precision++) {
        snprintf(text, sizeof text, "%.*g", precision, value);
        if (strtod(text, NULL) == value) {
            break;
        }
    }
    flow_buf_puts(b, text);
}

void flow_buf_string(flow_buf *b, flow_str s) {
    static const char hex[] = "0123456789abcdef";
    flow_buf_append(b, "\"", 1);
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        switch (c) {
        case '"': flow_buf_append(b, "\\\"", 2); break;
        case '\\': flow_buf_append(b, "\\\\", 2); break;
        case '\n': flow_buf_append(b, "\\n", 2); break;
        case '\r': flow_buf_append(b, "\\r", 2); break;
        case '\t': flow_buf_append(b, "\\t", 2); break;
        default:
            if (c < 0x20) {
                char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                flow_buf_append(b, esc, 6);
            } else {
                flow_buf_append(b, (const char *)&c, 1);
            }
        }
    }
    flow_buf_append(b, "\"", 1);
}

void flow_buf_free(flow_buf *b) {
    free(b->ptr);
    *b = (flow_buf){0};
}

/* --- Errors, logs ------------------------------------------------------------------------- */

flow_error *flow_errorf(const char *format, ...) {
    flow_buf b = {0};
    va_list args;
    va_start(args, format);
    buf_vprintf(&b, format, args);
    va_end(args);
    if (b.len == 0) {
        flow_buf_puts(&b, "(an error with no message)");
    }
    flow_error *e = must(malloc(sizeof *e));
    *e = (flow_error){b.ptr, b.len};
    return e;
}

void flow_log(flow_level level, const char *format, ...) {
    flow_buf b = {0};
    va_list args;
    va_start(args, format);
    buf_vprintf(&b, format, args);
    va_end(args);
    flow__log_write(level, b.ptr, b.len);
    flow_buf_free(&b);
}

flow_str flow_error_message(const flow_error *e) {
    return (flow_str){e->message, e->len};
}

void flow_error_free(flow_error *e) {
    if (e != NULL) {
        free(e->message);
        free(e);
    }
}

char *flow__error_take(flow_error *e, size_t *len) {
    char *message = e->message;
    *len = e->len;
    free(e);
    return message;
}

/* --- Reading JSON ------------------------------------------------------------------------- */

static const char *skip_ws(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) {
        p++;
    }
    return p;
}

/* After the string that starts at p (a '"'), or NULL. */
static const char *skip_string(const char *p, const char *end) {
    for (p++; p < end; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"') {
            return p + 1;
        }
        if (c == '\\') {
            p++;
        } else if (c < 0x20) {
            return NULL;
        }
    }
    return NULL;
}

static const char *skip_digits(const char *p, const char *end) {
    const char *start = p;
    while (p < end && *p >= '0' && *p <= '9') {
        p++;
    }
    return p == start ? NULL : p;
}

static const char *skip_number(const char *p, const char *end) {
    if (p < end && *p == '-') {
        p++;
    }
    if (p < end && *p == '0') {
        p++;
    } else if ((p = skip_digits(p, end)) == NULL) {
        return NULL;
    }
    if (p < end && *p == '.' && (p = skip_digits(p + 1, end)) == NULL) {
        return NULL;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) {
            p++;
        }
        if ((p = skip_digits(p, end)) == NULL) {
            return NULL;
        }
    }
    return p;
}

static const char *skip_word(const char *p, const char *end, const char *word) {
    size_t n = strlen(word);
    return (size_t)(end - p) >= n && memcmp(p, word, n) == 0 ? p + n : NULL;
}

/* After an object member's `"key":` (whitespace skipped), or NULL. */
static const char *skip_key(const char *p, const char *end) {
    p = skip_ws(p, end);
    if (p >= end || *p != '"' || (p = skip_string(p, end)) == NULL) {
        return NULL;
    }
    p = skip_ws(p, end);
    return p < end && *p == ':' ? p + 1 : NULL;
}

#define MAX_DEPTH 512

/* After the value that starts at p (whitespace skipped first), its type in *type, or NULL. */
static const char *skip_value(const char *p, const char *end, flow_json_type *type) {
    char closers[MAX_DEPTH];
    size_t depth = 0;
    bool first = true;
    for (;;) {
        p = skip_ws(p, end);
        if (p >= end) {
            return NULL;
        }
        flow_json_type t;
        switch (*p) {
        case '{':
        case '[':
            t = *p == '{' ? FLOW_JSON_OBJECT : FLOW_JSON_ARRAY;
            if (first) {
                *type = t;
                first = false;
            }
            if (depth == MAX_DEPTH) {
                return NULL;
            }
            closers[depth++] = *p == '{' ? '}' : ']';
            p = skip_ws(p + 1, end);
            if (p < end && *p == closers[depth - 1]) {
                p++;
                depth--;
                break;
            }
            if (closers[depth - 1] == '}' && (p = skip_key(p, end)) == NULL) {
                return NULL;
            }
            continue;
        case '"':
            t = FLOW_JSON_STRING;
            p = skip_string(p, end);
            break;
        case 't':
            t = FLOW_JSON_BOOL;
            p = skip_word(p, end, "true");
            break;
        case 'f':
            t = FLOW_JSON_BOOL;
            p = skip_word(p, end, "false");
            break;
        case 'n':
            t = FLOW_JSON_NULL;
            p = skip_word(p, end, "null");
            break;
        default:
            t = FLOW_JSON_NUMBER;
            p = skip_number(p, end);
        }
        if (p == NULL) {
            return NULL;
        }
        if (first) {
            *type = t;
            first = false;
        }
        /* After a value: close containers, or go on to the next member or item. */
        for (;;) {
            if (depth == 0) {
                return p;
            }
            p = skip_ws(p, end);
            if (p >= end) {
                return NULL;
            }
            if (*p == closers[depth - 1]) {
                p++;
                depth--;
                continue;
            }
            if (*p != ',') {
                return NULL;
            }
            p++;
            if (closers[depth - 1] == '}' && (p = skip_key(p, end)) == NULL) {
                return NULL;
            }
            break;
        }
    }
}

bool flow_json_parse(flow_str text, flow_json *out) {
    const char *end = text.ptr + text.len;
    const char *start = skip_ws(text.ptr, end);
    flow_json_type type;
    const char *after = skip_value(start, end, &type);
    if (after == NULL || skip_ws(after, end) != end) {
        return false;
    }
    *out = (flow_json){type, {start, (size_t)(after - start)}};
    return true;
}

static void put_utf8(flow_buf *b, uint32_t c) {
    char u[4];
    size_t n;
    if (c < 0x80) {
        u[0] = (char)c;
        n = 1;
    } else if (c < 0x800) {
        u[0] = (char)(0xC0 | (c >> 6));
        u[1] = (char)(0x80 | (c & 0x3F));
        n = 2;
    } else if (c < 0x10000) {
        u[0] = (char)(0xE0 | (c >> 12));
        u[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        u[2] = (char)(0x80 | (c & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | (c >> 18));
        u[1] = (char)(0x80 | ((c >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((c >> 6) & 0x3F));
        u[3] = (char)(0x80 | (c & 0x3F));
        n = 4;
    }
    flow_buf_append(b, u, n);
}

static bool hex4(const char *p, const char *end, uint32_t *out) {
    if (end - p < 4) {
        return false;
    }
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') {
            v |= (uint32_t)(c - '0');
        } else if (c >= 'a' && c <= 'f') {
            v |= (uint32_t)(c - 'a' + 10);
        } else if (c >= 'A' && c <= 'F') {
            v |= (uint32_t)(c - 'A' + 10);
        } else {
            return false;
        }
    }
    *out = v;
    return true;
}

/* The characters of the string token [p, end) (quotes included), unescaped, appended to b. */
static bool unescape(const char *p, const char *end, flow_buf *b) {
    for (p++, end--; p < end; p++) {
        if (*p != '\\') {
            flow_buf_append(b, p, 1);
            continue;
        }
        if (++p >= end) {
            return false;
        }
        switch (*p) {
        case '"': flow_buf_puts(b, "\""); break;
        case '\\': flow_buf_puts(b, "\\"); break;
        case '/': flow_buf_puts(b, "/"); break;
        case 'b': flow_buf_puts(b, "\b"); break;
        case 'f': flow_buf_puts(b, "\f"); break;
        case 'n': flow_buf_puts(b, "\n"); break;
        case 'r': flow_buf_puts(b, "\r"); break;
        case 't': flow_buf_puts(b, "\t"); break;
        case 'u': {
            uint32_t c, low;
            if (!hex4(p + 1, end, &c)) {
                return false;
            }
            p += 4;
            if (c >= 0xD800 && c < 0xDC00 && end - p > 6 && p[1] == '\\' && p[2] == 'u' &&
                hex4(p + 3, end, &low) && low >= 0xDC00 && low < 0xE000) {
                c = 0x10000 + ((c - 0xD800) << 10) + (low - 0xDC00);
                p += 6;
            } else if (c >= 0xD800 && c < 0xE000) {
                c = 0xFFFD; /* a lone surrogate, as serde_json's lossy reading gives */
            }
            put_utf8(b, c);
            break;
        }
        default:
            return false;
        }
    }
    return true;
}

bool flow_json_string(flow_json value, flow_buf *out) {
    if (value.type != FLOW_JSON_STRING) {
        return false;
    }
    out->len = 0;
    return unescape(value.text.ptr, value.text.ptr + value.text.len, out);
}

/* Whether the string token [p, q) spells `field`. */
static bool key_is(const char *p, const char *q, const char *field) {
    size_t n = strlen(field);
    if (memchr(p, '\\', (size_t)(q - p)) == NULL) {
        return (size_t)(q - p) == n + 2 && memcmp(p + 1, field, n) == 0;
    }
    flow_buf key = {0};
    bool same = unescape(p, q, &key) && key.len == n && memcmp(key.ptr, field, n) == 0;
    flow_buf_free(&key);
    return same;
}

bool flow_json_get(flow_json object, const char *field, flow_json *out) {
    if (object.type != FLOW_JSON_OBJECT) {
        return false;
    }
    const char *end = object.text.ptr + object.text.len;
    const char *p = skip_ws(object.text.ptr + 1, end);
    if (p < end && *p == '}') {
        return false;
    }
    while (p < end) {
        p = skip_ws(p, end);
        const char *key = p;
        const char *key_end = p < end && *p == '"' ? skip_string(p, end) : NULL;
        if (key_end == NULL) {
            return false;
        }
        p = skip_ws(key_end, end);
        if (p >= end || *p != ':') {
            return false;
        }
        const char *value = skip_ws(p + 1, end);
        flow_json_type type;
        const char *after = skip_value(value, end, &type);
        if (after == NULL) {
            return false;
        }
        if (key_is(key, key_end, field)) {
            *out = (flow_json){type, {value, (size_t)(after - value)}};
            return true;
        }
        p = skip_ws(after, end);
        if (p >= end || *p != ',') {
            return false;
        }
        p++;
    }
    return false;
}

bool flow_json_pointer(flow_json doc, const char *pointer, flow_json *out) {
    flow_json at = doc;
    flow_buf part = {0};
    const char *p = pointer;
    bool found = true;
    while (found && *p == '/') {
        /* One reference token, unescaped: ~1 is '/', ~0 is '~'. */
        part.len = 0;
        for (p++; *p != '\0' && *p != '/'; p++) {
            if (p[0] == '~' && (p[1] == '0' || p[1] == '1')) {
                flow_buf_append(&part, p[1] == '0' ? "~" : "/", 1);
                p++;
            } else {
                flow_buf_append(&part, p, 1);
            }
        }
        flow_buf_append(&part, "", 1);
        part.len--;
        if (at.type == FLOW_JSON_OBJECT) {
            found = flow_json_get(at, part.ptr, &at);
        } else if (at.type == FLOW_JSON_ARRAY && part.len > 0 &&
                   strspn(part.ptr, "0123456789") == part.len) {
            size_t index = strtoul(part.ptr, NULL, 10);
            flow_str items = flow_json_items(at);
            found = false;
            for (size_t i = 0; flow_json_next(&items, &at); i++) {
                if (i == index) {
                    found = true;
                    break;
                }
            }
        } else {
            found = false;
        }
    }
    flow_buf_free(&part);
    if (found && *p == '\0') {
        *out = at;
        return true;
    }
    return false;
}

flow_str flow_json_items(flow_json array) {
    if (array.type != FLOW_JSON_ARRAY || array.text.len < 2) {
        return (flow_str){array.text.ptr, 0};
    }
    return (flow_str){array.text.ptr + 1, array.text.len - 2};
}

bool flow_json_next(flow_str *items, flow_json *item) {
    const char *end = items->ptr + items->len;
    const char *start = skip_ws(items->ptr, end);
    if (start >= end) {
        return false;
    }
    flow_json_type type;
    const char *after = skip_value(start, end, &type);
    if (after == NULL) {
        return false;
    }
    *item = (flow_json){type, {start, (size_t)(after - start)}};
    after = skip_ws(after, end);
    if (after < end && *after == ',') {
        after++;
    }
    *items = (flow_str){after, (size_t)(end - after)};
    return true;
}

/* A plain decimal (no exponent, at most 15 digits) as the double nearest it, by one exact
 * division (Clinger's fast path); false for anything else, which strtod reads. */
static bool number_text_fast(flow_str t, double *out) {
    const char *p = t.ptr, *end = t.ptr + t.len;
    bool negative = p < end && *p == '-';
    p += negative;
    uint64_t m = 0;
    int digits = 0, decimals = 0;
    bool point = false;
    for (; p < end; p++) {
        if (*p >= '0' && *p <= '9') {
            if (++digits > 15) {
                return false;
            }
            m = m * 10 + (uint64_t)(*p - '0');
            decimals += point;
        } else if (*p == '.' && !point) {
            point = true;
        } else {
            return false;
        }
    }
    double v = (double)m / exact_tens[decimals];
    *out = negative ? -v : v;
    return true;
}

bool flow_json_number(flow_json value, double *out) {
    if (value.type != FLOW_JSON_NUMBER || value.text.len >= 400) {
        return false;
    }
    if (number_text_fast(value.text, out)) {
        return true;
    }
    char text[400];
    memcpy(text, value.text.ptr, value.text.len);
    text[value.text.len] = 0;
    *out = strtod(text, NULL);
    return true;
}

