/* the one translation unit that compiles jsmn's implementation */
#define JSMN_STRICT
#define JSMN_PARENT_LINKS
#include <jsmn.h>
#include "util/json.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* A strict RFC 8259 syntax check; jsmn alone accepts a few malformed texts
 * ({"a": }, trailing commas). Returns the offset of the first error or -1. */
typedef struct { const char *s; size_t n, i; int depth; } vscan;
static void vws(vscan *v) { while (v->i < v->n && strchr(" \t\r\n", v->s[v->i]) && v->s[v->i]) v->i++; }
static bool vvalue(vscan *v);
static bool vstring(vscan *v) {
    if (v->i >= v->n || v->s[v->i] != '"') return false;
    v->i++;
    while (v->i < v->n) {
        unsigned char c = (unsigned char)v->s[v->i++];
        if (c == '"') return true;
        if (c < 0x20) return false;
        if (c == '\\') {
            if (v->i >= v->n) return false;
            char e = v->s[v->i++];
            if (e == 'u') {
                for (int k = 0; k < 4; k++, v->i++)
                    if (v->i >= v->n || !strchr("0123456789abcdefABCDEF", v->s[v->i]) || !v->s[v->i]) return false;
            } else if (!strchr("\"\\/bfnrt", e) || !e) return false;
        }
    }
    return false;
}
static bool vdigits(vscan *v) {
    size_t st = v->i;
    while (v->i < v->n && v->s[v->i] >= '0' && v->s[v->i] <= '9') v->i++;
    return v->i > st;
}
static bool vnumber(vscan *v) {
    if (v->i < v->n && v->s[v->i] == '-') v->i++;
    if (v->i < v->n && v->s[v->i] == '0') v->i++;
    else if (!vdigits(v)) return false;
    if (v->i < v->n && v->s[v->i] == '.') { v->i++; if (!vdigits(v)) return false; }
    if (v->i < v->n && (v->s[v->i] == 'e' || v->s[v->i] == 'E')) {
        v->i++;
        if (v->i < v->n && (v->s[v->i] == '+' || v->s[v->i] == '-')) v->i++;
        if (!vdigits(v)) return false;
    }
    return true;
}
static bool vword(vscan *v, const char *w) {
    size_t l = strlen(w);
    if (v->n - v->i < l || memcmp(v->s + v->i, w, l)) return false;
    v->i += l;
    return true;
}
static bool vvalue(vscan *v) {
    vws(v);
    if (v->i >= v->n) return false;
    char c = v->s[v->i];
    if (c == '{' || c == '[') {
        if (++v->depth > 512) return false;
        char close = c == '{' ? '}' : ']';
        v->i++;
        vws(v);
        if (v->i < v->n && v->s[v->i] == close) { v->i++; v->depth--; return true; }
        for (;;) {
            if (c == '{') {
                vws(v);
                if (!vstring(v)) return false;
                vws(v);
                if (v->i >= v->n || v->s[v->i] != ':') return false;
                v->i++;
            }
            if (!vvalue(v)) return false;
            vws(v);
            if (v->i >= v->n) return false;
            if (v->s[v->i] == ',') { v->i++; continue; }
            if (v->s[v->i] == close) { v->i++; v->depth--; return true; }
            return false;
        }
    }
    if (c == '"') return vstring(v);
    if (c == 't') return vword(v, "true");
    if (c == 'f') return vword(v, "false");
    if (c == 'n') return vword(v, "null");
    return vnumber(v);
}
static long json_syntax_error(const char *s, size_t n) {
    vscan v = {s, n, 0, 0};
    if (!vvalue(&v)) return (long)v.i;
    vws(&v);
    while (v.i < n && s[v.i] == 0) v.i++;
    return v.i < n ? (long)v.i : -1;
}

int oh_json_parse(oh_json *j, const char *src, size_t len, const char *what, oh_err *err) {
    memset(j, 0, sizeof *j);
    j->src = src;
    j->len = len;
    long bad_at = json_syntax_error(src, len);
    if (bad_at >= 0) {
        unsigned line = 1, col = 1;
        for (long k = 0; k < bad_at && k < (long)len; k++) { if (src[k] == '\n') { line++; col = 1; } else col++; }
        if ((size_t)bad_at >= len) return oh_errf(err, "%s: unexpected end of JSON", what);
        return oh_errf(err, "%s: invalid JSON at line %u column %u", what, line, col);
    }
    jsmn_parser p;
    jsmn_init(&p);
    int n = jsmn_parse(&p, src, len, NULL, 0);
    if (n < 0) {
        /* locate the offending byte for the message */
        const char *why = n == JSMN_ERROR_PART ? "unexpected end of JSON" : "invalid JSON";
        unsigned line = 1, col = 1;
        for (unsigned k = 0; k < p.pos && k < len; k++) { if (src[k] == '\n') { line++; col = 1; } else col++; }
        if (n == JSMN_ERROR_PART) return oh_errf(err, "%s: %s", what, why);
        return oh_errf(err, "%s: %s near line %u column %u", what, why, line, col);
    }
    if (n == 0) return oh_errf(err, "%s: empty JSON document", what);
    j->tok = oh_malloc(sizeof(jsmntok_t) * (size_t)n);
    jsmn_init(&p);
    int m = jsmn_parse(&p, src, len, j->tok, (unsigned)n);
    OH_CHECK(m == n);
    j->ntok = n;
    /* exactly one top-level value */
    int end = oh_json_skip(j, 0);
    size_t after = end < n ? (size_t)j->tok[end].start : (size_t)j->tok[0].end;
    if (end < n) { oh_json_free(j); return oh_errf(err, "%s: more than one JSON value", what); }
    for (size_t k = after; k < len; k++)
        if (src[k] != ' ' && src[k] != '\n' && src[k] != '\r' && src[k] != '\t' && src[k] != 0) {
            oh_json_free(j);
            return oh_errf(err, "%s: trailing characters after JSON value", what);
        }
    return 0;
}

void oh_json_free(oh_json *j) { free(j->tok); j->tok = NULL; j->ntok = 0; }

int oh_json_type(const oh_json *j, int i) { return (i >= 0 && i < j->ntok) ? (int)j->tok[i].type : -1; }

int oh_json_skip(const oh_json *j, int i) {
    int pending = 1;
    while (pending > 0 && i < j->ntok) {
        const jsmntok_t *t = &j->tok[i];
        pending--;
        if (t->type == JSMN_OBJECT) pending += 2 * t->size;
        else if (t->type == JSMN_ARRAY) pending += t->size;
        i++;
    }
    return i;
}

int oh_json_size(const oh_json *j, int i) { return (i >= 0 && i < j->ntok) ? j->tok[i].size : 0; }

static bool str_eq_raw(const oh_json *j, int i, const char *s) {
    const jsmntok_t *t = &j->tok[i];
    size_t n = (size_t)(t->end - t->start);
    if (memchr(j->src + t->start, '\\', n)) {
        size_t m; char *u = oh_json_str(j, i, &m);
        bool eq = u && m == strlen(s) && !memcmp(u, s, m);
        free(u);
        return eq;
    }
    return strlen(s) == n && !memcmp(j->src + t->start, s, n);
}

int oh_json_get(const oh_json *j, int obj, const char *key) {
    if (oh_json_type(j, obj) != JSMN_OBJECT) return -1;
    int n = j->tok[obj].size, i = obj + 1;
    for (int k = 0; k < n; k++) {
        if (j->tok[i].type == JSMN_STRING && str_eq_raw(j, i, key)) return i + 1;
        i = oh_json_skip(j, i + 1);
    }
    return -1;
}

int oh_json_at(const oh_json *j, int arr, int idx) {
    if (oh_json_type(j, arr) != JSMN_ARRAY || idx < 0 || idx >= j->tok[arr].size) return -1;
    int i = arr + 1;
    for (int k = 0; k < idx; k++) i = oh_json_skip(j, i);
    return i;
}

bool oh_json_is_null(const oh_json *j, int i) {
    if (oh_json_type(j, i) != JSMN_PRIMITIVE) return false;
    return j->src[j->tok[i].start] == 'n';
}
bool oh_json_is_str(const oh_json *j, int i) { return oh_json_type(j, i) == JSMN_STRING; }
bool oh_json_eq(const oh_json *j, int i, const char *s) { return oh_json_is_str(j, i) && str_eq_raw(j, i, s); }

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

char *oh_json_str(const oh_json *j, int i, size_t *nout) {
    if (!oh_json_is_str(j, i)) return NULL;
    const char *s = j->src + j->tok[i].start;
    size_t n = (size_t)(j->tok[i].end - j->tok[i].start);
    char *o = oh_malloc(n + 1);
    size_t w = 0;
    for (size_t k = 0; k < n; k++) {
        char c = s[k];
        if (c != '\\') { o[w++] = c; continue; }
        c = s[++k];
        switch (c) {
        case 'n': o[w++] = '\n'; break;
        case 't': o[w++] = '\t'; break;
        case 'r': o[w++] = '\r'; break;
        case 'b': o[w++] = '\b'; break;
        case 'f': o[w++] = '\f'; break;
        case 'u': {
            unsigned cp = 0;
            for (int d = 0; d < 4; d++) cp = cp * 16 + (unsigned)hexval(s[k + 1 + d]);
            k += 4;
            if (cp >= 0xd800 && cp < 0xdc00 && k + 6 < n + 1 && s[k + 1] == '\\' && s[k + 2] == 'u') {
                unsigned lo = 0;
                for (int d = 0; d < 4; d++) lo = lo * 16 + (unsigned)hexval(s[k + 3 + d]);
                if (lo >= 0xdc00 && lo < 0xe000) { cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00); k += 6; }
            }
            if (cp >= 0xd800 && cp < 0xe000) cp = 0xfffd; /* lone surrogate */
            w += (size_t)oh_utf8_put(o + w, cp);
            break;
        }
        default: o[w++] = c; break; /* \" \\ \/ */
        }
    }
    o[w] = 0;
    if (nout) *nout = w;
    return o;
}

int oh_json_num(const oh_json *j, int i, double *out) {
    if (oh_json_type(j, i) != JSMN_PRIMITIVE) return -1;
    const char *s = j->src + j->tok[i].start;
    if (!(*s == '-' || (*s >= '0' && *s <= '9'))) return -1;
    char tmp[64];
    int l = j->tok[i].end - j->tok[i].start;
    if (l >= (int)sizeof tmp) return -1;
    memcpy(tmp, s, (size_t)l); tmp[l] = 0;
    *out = strtod(tmp, NULL);
    return 0;
}

int oh_json_int(const oh_json *j, int i, long long *out) {
    double d;
    if (oh_json_num(j, i, &d) != 0) return -1;
    if (d != floor(d) || fabs(d) > 9.007199254740992e15) return -1;
    *out = (long long)d;
    return 0;
}

int oh_json_bool(const oh_json *j, int i, bool *out) {
    if (oh_json_type(j, i) != JSMN_PRIMITIVE) return -1;
    char c = j->src[j->tok[i].start];
    if (c == 't') { *out = true; return 0; }
    if (c == 'f') { *out = false; return 0; }
    return -1;
}

void oh_json_raw(const oh_json *j, int i, const char **p, int *n) {
    *p = j->src + j->tok[i].start;
    *n = j->tok[i].end - j->tok[i].start;
}

void oh_buf_put(oh_buf *b, const void *data, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        b->p = oh_realloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
    b->p[b->n] = 0;
}
void oh_buf_puts(oh_buf *b, const char *s) { oh_buf_put(b, s, strlen(s)); }
void oh_buf_printf(oh_buf *b, const char *fmt, ...) {
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char small[256];
    char *tmp = (size_t)n < sizeof small ? small : oh_malloc((size_t)n + 1);
    vsnprintf(tmp, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    oh_buf_put(b, tmp, (size_t)n);
    if (tmp != small) free(tmp);
}
void oh_buf_json_str(oh_buf *b, const char *s, size_t n) {
    oh_buf_put(b, "\"", 1);
    for (size_t k = 0; k < n; k++) {
        unsigned char c = (unsigned char)s[k];
        switch (c) {
        case '"': oh_buf_put(b, "\\\"", 2); break;
        case '\\': oh_buf_put(b, "\\\\", 2); break;
        case '\n': oh_buf_put(b, "\\n", 2); break;
        case '\r': oh_buf_put(b, "\\r", 2); break;
        case '\t': oh_buf_put(b, "\\t", 2); break;
        default:
            if (c < 0x20) oh_buf_printf(b, "\\u%04x", c);
            else oh_buf_put(b, &s[k], 1);
        }
    }
    oh_buf_put(b, "\"", 1);
}
void oh_buf_free(oh_buf *b) { free(b->p); b->p = NULL; b->n = b->cap = 0; }
