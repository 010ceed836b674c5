/* toml.c: TOML 1.0 parser, lookup, --set overrides and writer (toml.h). */
#include "finetune/toml.h"
#include "util/json.h" /* oh_buf */

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* flags: how a table or array came to be, for the redefinition rules */
enum {
    F_IMPLICIT = 1, /* table made as a parent of a [header]; may be defined once later */
    F_HEADER = 2,   /* table defined by [header], or an element of [[header]] */
    F_DOTTED = 4,   /* table made or extended by dotted keys */
    F_FROZEN = 8,   /* inline table or a table inside one: closed */
    F_AOT = 16,     /* array made by [[header]] */
};

/* ---------------------------------------------------------------- nodes */

static toml_value *new_node(toml_type t, int line, int col) {
    toml_value *v = oh_calloc(1, sizeof *v);
    v->type = t;
    v->line = line;
    v->col = col;
    return v;
}

void toml_free(toml_value *v) {
    if (!v) return;
    switch (v->type) {
    case TOML_TABLE:
        for (size_t i = 0; i < v->u.table.n; i++) {
            free(v->u.table.entries[i].key);
            toml_free(v->u.table.entries[i].value);
        }
        free(v->u.table.entries);
        break;
    case TOML_ARRAY:
        for (size_t i = 0; i < v->u.array.n; i++) toml_free(v->u.array.items[i]);
        free(v->u.array.items);
        break;
    case TOML_STRING:
    case TOML_DATETIME: free(v->u.str.s); break;
    default: break;
    }
    free(v);
}

static toml_entry *find(const toml_value *t, const char *key, size_t n) {
    for (size_t i = 0; i < t->u.table.n; i++) {
        toml_entry *e = &t->u.table.entries[i];
        if (e->key_len == n && memcmp(e->key, key, n) == 0) return e;
    }
    return NULL;
}

static toml_entry *add_entry(toml_value *t, const char *key, size_t n, int line, int col, toml_value *v) {
    if (t->u.table.n == t->u.table.cap) {
        t->u.table.cap = t->u.table.cap ? 2 * t->u.table.cap : 8;
        t->u.table.entries = oh_realloc(t->u.table.entries, t->u.table.cap * sizeof *t->u.table.entries);
    }
    toml_entry *e = &t->u.table.entries[t->u.table.n++];
    e->key = oh_strndup(key, n);
    e->key_len = n;
    e->line = line;
    e->col = col;
    e->value = v;
    return e;
}

static void push_item(toml_value *a, toml_value *v) {
    if (a->u.array.n == a->u.array.cap) {
        a->u.array.cap = a->u.array.cap ? 2 * a->u.array.cap : 8;
        a->u.array.items = oh_realloc(a->u.array.items, a->u.array.cap * sizeof *a->u.array.items);
    }
    a->u.array.items[a->u.array.n++] = v;
}

static const char *a_type(const toml_value *v) {
    switch (v->type) {
    case TOML_TABLE: return v->flags & F_FROZEN ? "an inline table" : "a table";
    case TOML_ARRAY: return v->flags & F_AOT ? "an array of tables" : "an array";
    case TOML_STRING: return "a string";
    case TOML_INT: return "an integer";
    case TOML_FLOAT: return "a float";
    case TOML_BOOL: return "a boolean";
    case TOML_DATETIME: return "a date-time";
    }
    return "a value";
}

/* ------------------------------------------------------------- writing keys */

static bool is_bare(int c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/* A basic string with every control character escaped. */
static void put_str(oh_buf *b, const char *s, size_t n) {
    oh_buf_put(b, "\"", 1);
    for (size_t k = 0; k < n; k++) {
        unsigned char c = (unsigned char)s[k];
        switch (c) {
        case '"': oh_buf_put(b, "\\\"", 2); break;
        case '\\': oh_buf_put(b, "\\\\", 2); break;
        case '\b': oh_buf_put(b, "\\b", 2); break;
        case '\t': oh_buf_put(b, "\\t", 2); break;
        case '\n': oh_buf_put(b, "\\n", 2); break;
        case '\f': oh_buf_put(b, "\\f", 2); break;
        case '\r': oh_buf_put(b, "\\r", 2); break;
        default:
            if (c < 0x20 || c == 0x7f) oh_buf_printf(b, "\\u%04X", c);
            else oh_buf_put(b, &s[k], 1);
        }
    }
    oh_buf_put(b, "\"", 1);
}

/* A key: bare when it can be, quoted otherwise. */
static void put_key(oh_buf *b, const char *s, size_t n) {
    bool bare = n > 0;
    for (size_t k = 0; k < n && bare; k++) bare = is_bare((unsigned char)s[k]);
    if (bare) oh_buf_put(b, s, n);
    else put_str(b, s, n);
}

/* ---------------------------------------------------------------- parser */

typedef struct pos { int line, col; } pos;

typedef struct keypart { char *s; size_t len; pos p; } keypart;
typedef struct keypath { keypart *parts; int n, cap; } keypath;

typedef struct parser {
    const char *src;
    size_t len, i;         /* text and the read offset */
    int line;              /* line of offset i */
    size_t line_start;     /* offset where that line starts */
    const char *file;      /* for messages */
    bool path_mode;        /* parsing a key path, not a document: other message form */
    oh_err *err;
    oh_buf path;           /* display path of the table being filled, for messages */
    oh_buf scratch;        /* for show() */
    char found[40];        /* for describe() */
    int memo_line, memo_col; /* pos_at's last answer */
    size_t memo_off;
} parser;

static int peek(const parser *P, size_t k) { return P->i + k < P->len ? (unsigned char)P->src[P->i + k] : -1; }
static bool is_ws(int c) { return c == ' ' || c == '\t'; }
static bool is_digit(int c) { return c >= '0' && c <= '9'; }
static bool is_ctrl(int c) { return (c >= 0 && c < 0x20 && c != '\t') || c == 0x7f; }
static bool at_newline(const parser *P) { int c = peek(P, 0); return c == '\n' || (c == '\r' && peek(P, 1) == '\n'); }
static void eat_newline(parser *P) {
    if (P->src[P->i] == '\r') P->i++;
    P->i++;
    P->line++;
    P->line_start = P->i;
}
static void skip_ws(parser *P) { while (is_ws(peek(P, 0))) P->i++; }

/* Column of offset off on the current line, in code points, 1-based. The
 * last answer is kept so that a long line costs linear time. */
static pos pos_at(parser *P, size_t off) {
    if (P->memo_line != P->line || P->memo_off < P->line_start || P->memo_off > off) {
        P->memo_line = P->line;
        P->memo_off = P->line_start;
        P->memo_col = 1;
    }
    for (size_t k = P->memo_off; k < off && k < P->len; k++)
        if (((unsigned char)P->src[k] & 0xC0) != 0x80) P->memo_col++;
    P->memo_off = off;
    return (pos){P->line, P->memo_col};
}
static pos here(parser *P) { return pos_at(P, P->i); }

__attribute__((format(printf, 3, 4))) static int fail(parser *P, pos p, const char *fmt, ...) {
    char msg[800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (P->path_mode) return oh_errf(P->err, "invalid key path '%s' (column %d): %s", P->file, p.col, msg);
    return oh_errf(P->err, "%s:%d:%d: %s", P->file, p.line, p.col, msg);
}

/* Decode one UTF-8 sequence; its length, or 0 if invalid. */
static int utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
    if (n == 0) return 0;
    unsigned c = s[0];
    if (c < 0x80) { *cp = c; return 1; }
    int len;
    uint32_t v, min;
    if ((c & 0xE0) == 0xC0) { len = 2; v = c & 0x1F; min = 0x80; }
    else if ((c & 0xF0) == 0xE0) { len = 3; v = c & 0x0F; min = 0x800; }
    else if ((c & 0xF8) == 0xF0) { len = 4; v = c & 0x07; min = 0x10000; }
    else return 0;
    if ((size_t)len > n) return 0;
    for (int k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[k] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

static void put_utf8(oh_buf *b, uint32_t cp) {
    char u[4];
    oh_buf_put(b, u, (size_t)oh_utf8_put(u, cp));
}

/* What is at offset off, for "found ..." in messages. */
static const char *describe(parser *P, size_t off) {
    if (off >= P->len) return "end of file";
    unsigned char c = (unsigned char)P->src[off];
    if (c == '\n' || (c == '\r' && off + 1 < P->len && P->src[off + 1] == '\n')) return "a newline";
    if (c > 0x20 && c < 0x7f) snprintf(P->found, sizeof P->found, "'%c'", c);
    else if (c == ' ') return "a space";
    else {
        uint32_t cp = c;
        utf8_decode((const unsigned char *)P->src + off, P->len - off, &cp);
        snprintf(P->found, sizeof P->found, "U+%04X", (unsigned)cp);
    }
    return P->found;
}

/* Display path base.parts[0..upto] for messages; valid until the next call. */
static const char *show(parser *P, const keypath *k, int upto) {
    P->scratch.n = 0;
    oh_buf_put(&P->scratch, P->path.p ? P->path.p : "", P->path.n);
    for (int j = 0; j <= upto; j++) {
        if (P->scratch.n) oh_buf_put(&P->scratch, ".", 1);
        put_key(&P->scratch, k->parts[j].s, k->parts[j].len);
    }
    return P->scratch.p;
}

static void path_truncate(oh_buf *b, size_t n) {
    b->n = n;
    if (b->p) b->p[n] = 0;
}

static void keypath_free(keypath *k) {
    for (int j = 0; j < k->n; j++) free(k->parts[j].s);
    free(k->parts);
    k->parts = NULL;
    k->n = k->cap = 0;
}

static int check_utf8(parser *P) {
    size_t k = P->i;
    while (k < P->len) {
        uint32_t cp;
        int n = utf8_decode((const unsigned char *)P->src + k, P->len - k, &cp);
        if (n == 0) return fail(P, pos_at(P, k), "invalid UTF-8 byte 0x%02X", (unsigned char)P->src[k]);
        if (cp == '\n') { P->line++; P->line_start = k + 1; }
        k += (size_t)n;
    }
    P->line = 1;
    P->line_start = P->i;
    return 0;
}

/* ---------------------------------------------------------------- comments */

static int skip_comment(parser *P) { /* at '#' */
    P->i++;
    while (P->i < P->len && !at_newline(P)) {
        int c = peek(P, 0);
        if (is_ctrl(c))
            return fail(P, here(P), "control character %s is not allowed in a comment", describe(P, P->i));
        P->i++;
    }
    return 0;
}

/* After a value or header: spaces, an optional comment, then a newline or the end. */
static int expect_eol(parser *P, const char *after) {
    skip_ws(P);
    if (peek(P, 0) == '#' && skip_comment(P)) return -1;
    if (P->i >= P->len) return 0;
    if (at_newline(P)) { eat_newline(P); return 0; }
    return fail(P, here(P), "expected a newline or a comment after %s, found %s", after, describe(P, P->i));
}

/* Whitespace, newlines and comments (inside arrays). */
static int skip_blank(parser *P) {
    for (;;) {
        skip_ws(P);
        if (peek(P, 0) == '#') { if (skip_comment(P)) return -1; }
        else if (at_newline(P)) eat_newline(P);
        else return 0;
    }
}

/* ---------------------------------------------------------------- strings */

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int parse_escape(parser *P, oh_buf *b) { /* at '\' */
    pos p = here(P);
    int c = peek(P, 1);
    const char *rep = NULL;
    switch (c) {
    case 'b': rep = "\b"; break;
    case 't': rep = "\t"; break;
    case 'n': rep = "\n"; break;
    case 'f': rep = "\f"; break;
    case 'r': rep = "\r"; break;
    case '"': rep = "\""; break;
    case '\\': rep = "\\"; break;
    case 'u':
    case 'U': {
        int nd = c == 'u' ? 4 : 8;
        uint32_t cp = 0;
        for (int k = 0; k < nd; k++) {
            int h = hexval(peek(P, 2 + (size_t)k));
            if (h < 0) return fail(P, p, "the escape \\%c needs %d hexadecimal digits", c, nd);
            cp = cp * 16 + (uint32_t)h;
        }
        if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return fail(P, p, "the escape \\%c%.*s is not a Unicode scalar value", c, nd, P->src + P->i + 2);
        put_utf8(b, cp);
        P->i += 2 + (size_t)nd;
        return 0;
    }
    default:
        if (c > 0x20 && c < 0x7f) return fail(P, p, "invalid escape sequence '\\%c'", c);
        return fail(P, p, "invalid escape: '\\' followed by %s", describe(P, P->i + 1));
    }
    oh_buf_put(b, rep, 1);
    P->i += 2;
    return 0;
}

static int parse_basic(parser *P, oh_buf *b) { /* at '"' */
    pos open = here(P);
    P->i++;
    for (;;) {
        int c = peek(P, 0);
        if (c < 0 || at_newline(P)) return fail(P, open, "unterminated string (a basic string ends on its line)");
        if (c == '"') { P->i++; return 0; }
        if (c == '\\') { if (parse_escape(P, b)) return -1; continue; }
        if (is_ctrl(c)) return fail(P, here(P), "control character %s must be escaped in a string", describe(P, P->i));
        oh_buf_put(b, P->src + P->i, 1);
        P->i++;
    }
}

static int parse_literal(parser *P, oh_buf *b) { /* at '\'' */
    pos open = here(P);
    P->i++;
    size_t s = P->i;
    for (;;) {
        int c = peek(P, 0);
        if (c < 0 || at_newline(P)) return fail(P, open, "unterminated literal string (it ends on its line)");
        if (c == '\'') break;
        if (is_ctrl(c))
            return fail(P, here(P), "control character %s is not allowed in a literal string", describe(P, P->i));
        P->i++;
    }
    oh_buf_put(b, P->src + s, P->i - s);
    P->i++;
    return 0;
}

/* Multi-line strings, basic (q = '"') or literal (q = '\''); at the opening
 * triple quote. */
static int parse_multiline(parser *P, oh_buf *b, char q) {
    pos open = here(P);
    P->i += 3;
    if (at_newline(P)) eat_newline(P); /* a newline right after the opening is trimmed */
    for (;;) {
        int c = peek(P, 0);
        if (c < 0) return fail(P, open, "unterminated multi-line string");
        if (c == q && peek(P, 1) == q && peek(P, 2) == q) {
            size_t n = 3;
            while (peek(P, n) == q) n++;
            if (n > 5)
                return fail(P, here(P), "%zu quotes in a row in a multi-line string (at most 2 may precede the closing 3)", n);
            for (size_t k = 3; k < n; k++) oh_buf_put(b, &q, 1);
            P->i += n;
            return 0;
        }
        if (c == '\\' && q == '"') {
            size_t k = 1;
            while (is_ws(peek(P, k))) k++;
            int d = peek(P, k);
            if (d == '\n' || (d == '\r' && peek(P, k + 1) == '\n')) { /* line-ending backslash */
                P->i += k;
                for (;;) {
                    if (is_ws(peek(P, 0))) P->i++;
                    else if (at_newline(P)) eat_newline(P);
                    else break;
                }
                continue;
            }
            if (parse_escape(P, b)) return -1;
            continue;
        }
        if (at_newline(P)) { /* CRLF is kept as LF */
            oh_buf_put(b, "\n", 1);
            eat_newline(P);
            continue;
        }
        if (is_ctrl(c))
            return fail(P, here(P), "control character %s %s in a multi-line string", describe(P, P->i),
                        q == '"' ? "must be escaped" : "is not allowed");
        oh_buf_put(b, P->src + P->i, 1);
        P->i++;
    }
}

/* A string value at a quote: the four kinds. */
static int parse_string(parser *P, oh_buf *b) {
    char q = P->src[P->i];
    if (peek(P, 1) == q && peek(P, 2) == q) return parse_multiline(P, b, q);
    return q == '"' ? parse_basic(P, b) : parse_literal(P, b);
}

/* ---------------------------------------------------------------- keys */

/* A key, possibly dotted, with whitespace around the dots; stops after the
 * spaces that follow it. */
static int parse_key(parser *P, keypath *k) {
    for (;;) {
        skip_ws(P);
        pos p = here(P);
        int c = peek(P, 0);
        oh_buf b = {0};
        if (c == '"' || c == '\'') {
            if (peek(P, 1) == c && peek(P, 2) == c) return fail(P, p, "a multi-line string cannot be a key");
            if ((c == '"' ? parse_basic(P, &b) : parse_literal(P, &b)) != 0) { oh_buf_free(&b); return -1; }
        } else if (is_bare(c)) {
            size_t s = P->i;
            while (is_bare(peek(P, 0))) P->i++;
            oh_buf_put(&b, P->src + s, P->i - s);
            int d = peek(P, 0);
            if (d >= 0 && !is_ws(d) && d != '=' && d != '.' && d != ']' && d != ',' && d != '}' && d != '#' &&
                !at_newline(P)) {
                pos q = here(P);
                int n = (int)b.n;
                char *name = b.p;
                int r = fail(P, q, "invalid character %s in bare key '%.*s' (bare keys are A-Za-z0-9_-; quote others)",
                             describe(P, P->i), n, name);
                oh_buf_free(&b);
                return r;
            }
        } else {
            return fail(P, p, "expected a key, found %s", describe(P, P->i));
        }
        if (k->n == k->cap) {
            k->cap = k->cap ? 2 * k->cap : 4;
            k->parts = oh_realloc(k->parts, (size_t)k->cap * sizeof *k->parts);
        }
        k->parts[k->n++] = (keypart){b.p ? b.p : oh_strdup(""), b.n, p};
        skip_ws(P);
        if (peek(P, 0) != '.') return 0;
        P->i++;
    }
}

/* ---------------------------------------------------------------- scalars */

static bool is_tokc(int c) { return is_bare(c) || c == '+' || c == '.' || c == ':'; }

/* Digits of base with single underscores between them, from *k. Returns the
 * digit count, or -1 for a misplaced underscore. */
static int scan_digits(const char *t, size_t n, size_t *k, int base) {
    size_t j = *k;
    int nd = 0;
    while (j < n) {
        int d = hexval((unsigned char)t[j]);
        if (d >= 0 && d < base) { nd++; j++; continue; }
        if (t[j] == '_') {
            int e = j + 1 < n ? hexval((unsigned char)t[j + 1]) : -1;
            if (nd == 0 || e < 0 || e >= base) return -1;
            j++;
            continue;
        }
        break;
    }
    *k = j;
    return nd;
}

static int parse_number(parser *P, pos p, const char *t, size_t n, toml_value **out) {
    size_t k = 0;
    bool sign = false, neg = false;
    if (t[0] == '+' || t[0] == '-') { sign = true; neg = t[0] == '-'; k = 1; }
    if (n - k == 3 && (memcmp(t + k, "inf", 3) == 0 || memcmp(t + k, "nan", 3) == 0)) {
        double f = t[k] == 'i' ? INFINITY : NAN;
        *out = new_node(TOML_FLOAT, p.line, p.col);
        (*out)->u.f = neg ? -f : f;
        return 0;
    }
    int len = (int)n;
    if (k >= n || !is_digit((unsigned char)t[k])) {
        bool word = (t[0] >= 'a' && t[0] <= 'z') || (t[0] >= 'A' && t[0] <= 'Z');
        return fail(P, p, "invalid value '%.*s'%s", len, t, word ? " (strings must be quoted)" : "");
    }
    if (t[k] == '0' && k + 1 < n && (t[k + 1] == 'x' || t[k + 1] == 'o' || t[k + 1] == 'b')) {
        int base = t[k + 1] == 'x' ? 16 : t[k + 1] == 'o' ? 8 : 2;
        const char *name = base == 16 ? "hexadecimal" : base == 8 ? "octal" : "binary";
        if (sign) return fail(P, p, "a sign is not allowed on a %s integer ('%.*s')", name, len, t);
        size_t j = k + 2;
        int nd = scan_digits(t, n, &j, base);
        if (nd < 0) return fail(P, p, "underscores must be between digits in '%.*s'", len, t);
        if (nd == 0 || j != n) return fail(P, p, "invalid %s integer '%.*s'", name, len, t);
        uint64_t m = 0;
        for (j = k + 2; j < n; j++) {
            if (t[j] == '_') continue;
            if (m > ((uint64_t)INT64_MAX - (uint64_t)hexval((unsigned char)t[j])) / (uint64_t)base)
                return fail(P, p, "integer '%.*s' does not fit in 64 bits", len, t);
            m = m * (uint64_t)base + (uint64_t)hexval((unsigned char)t[j]);
        }
        *out = new_node(TOML_INT, p.line, p.col);
        (*out)->u.i = (int64_t)m;
        return 0;
    }
    size_t j = k;
    int nd = scan_digits(t, n, &j, 10);
    if (nd < 0) return fail(P, p, "underscores must be between digits in '%.*s'", len, t);
    if (t[k] == '0' && nd > 1) return fail(P, p, "leading zeros are not allowed in '%.*s'", len, t);
    bool is_float = false;
    if (j < n && t[j] == '.') {
        j++;
        int nf = scan_digits(t, n, &j, 10);
        if (nf < 0) return fail(P, p, "underscores must be between digits in '%.*s'", len, t);
        if (nf == 0) return fail(P, p, "a decimal point must be followed by digits in '%.*s'", len, t);
        is_float = true;
    }
    if (j < n && (t[j] == 'e' || t[j] == 'E')) {
        j++;
        if (j < n && (t[j] == '+' || t[j] == '-')) j++;
        int ne = scan_digits(t, n, &j, 10);
        if (ne < 0) return fail(P, p, "underscores must be between digits in '%.*s'", len, t);
        if (ne == 0) return fail(P, p, "the exponent has no digits in '%.*s'", len, t);
        is_float = true;
    }
    if (j != n) return fail(P, p, "invalid number '%.*s'", len, t);
    if (!is_float) {
        uint64_t m = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
        for (j = k; j < n; j++) {
            if (t[j] == '_') continue;
            uint64_t d = (uint64_t)(t[j] - '0');
            if (m > (lim - d) / 10) return fail(P, p, "integer '%.*s' does not fit in 64 bits", len, t);
            m = m * 10 + d;
        }
        *out = new_node(TOML_INT, p.line, p.col);
        (*out)->u.i = !neg ? (int64_t)m : m == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)m;
        return 0;
    }
    char small[64], *buf = n < sizeof small ? small : oh_malloc(n + 1);
    size_t o = 0;
    for (j = 0; j < n; j++)
        if (t[j] != '_') buf[o++] = t[j];
    buf[o] = 0;
    errno = 0;
    double f = strtod(buf, NULL);
    bool range = errno == ERANGE && isinf(f);
    if (buf != small) free(buf);
    if (range) return fail(P, p, "float '%.*s' is out of range", len, t);
    *out = new_node(TOML_FLOAT, p.line, p.col);
    (*out)->u.f = f;
    return 0;
}

static bool digits_at(const char *t, size_t n, size_t k, int cnt, int *v) {
    if (k + (size_t)cnt > n) return false;
    *v = 0;
    for (int j = 0; j < cnt; j++) {
        if (!is_digit((unsigned char)t[k + (size_t)j])) return false;
        *v = *v * 10 + (t[k + (size_t)j] - '0');
    }
    return true;
}

static bool looks_date(const char *t, size_t n) {
    int y;
    return n >= 5 && digits_at(t, n, 0, 4, &y) && t[4] == '-';
}
static bool looks_time(const char *t, size_t n) {
    int h;
    return n >= 3 && digits_at(t, n, 0, 2, &h) && t[2] == ':';
}

/* HH:MM:SS[.frac] at *k (TOML 1.0: seconds required). */
static bool valid_time(const char *t, size_t n, size_t *k) {
    int h, m, s;
    size_t j = *k;
    if (!digits_at(t, n, j, 2, &h) || j + 2 >= n || t[j + 2] != ':' || !digits_at(t, n, j + 3, 2, &m) ||
        j + 5 >= n || t[j + 5] != ':' || !digits_at(t, n, j + 6, 2, &s))
        return false;
    if (h > 23 || m > 59 || s > 60) return false; /* 60: a leap second (RFC 3339) */
    j += 8;
    if (j < n && t[j] == '.') {
        size_t s0 = ++j;
        while (j < n && is_digit((unsigned char)t[j])) j++;
        if (j == s0) return false;
    }
    *k = j;
    return true;
}

static bool valid_datetime(const char *t, size_t n) {
    size_t k = 0;
    if (looks_time(t, n)) return valid_time(t, n, &k) && k == n;
    int y, mo, d;
    if (!digits_at(t, n, 0, 4, &y) || n < 10 || t[4] != '-' || !digits_at(t, n, 5, 2, &mo) || t[7] != '-' ||
        !digits_at(t, n, 8, 2, &d))
        return false;
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (mo < 1 || mo > 12 || d < 1) return false;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > mdays[mo - 1] + (mo == 2 && leap)) return false;
    if (n == 10) return true;
    if (t[10] != 'T' && t[10] != 't' && t[10] != ' ') return false;
    k = 11;
    if (!valid_time(t, n, &k)) return false;
    if (k == n) return true;
    if ((t[k] == 'Z' || t[k] == 'z') && k + 1 == n) return true;
    int oh, om;
    return (t[k] == '+' || t[k] == '-') && k + 6 == n && digits_at(t, n, k + 1, 2, &oh) && t[k + 3] == ':' &&
           digits_at(t, n, k + 4, 2, &om) && oh <= 23 && om <= 59;
}

/* Booleans, numbers and date-times: one run of token characters (a date, a
 * space and a time make one date-time). */
static int parse_scalar(parser *P, toml_value **out) {
    pos p = here(P);
    size_t s = P->i;
    while (is_tokc(peek(P, 0))) P->i++;
    if (P->i - s == 10 && looks_date(P->src + s, 10) && peek(P, 0) == ' ' && is_digit(peek(P, 1)) &&
        is_digit(peek(P, 2)) && peek(P, 3) == ':') {
        P->i++;
        while (is_tokc(peek(P, 0))) P->i++;
    }
    const char *t = P->src + s;
    size_t n = P->i - s;
    if (n == 0) return fail(P, p, "expected a value, found %s", describe(P, s));
    if ((n == 4 && memcmp(t, "true", 4) == 0) || (n == 5 && memcmp(t, "false", 5) == 0)) {
        *out = new_node(TOML_BOOL, p.line, p.col);
        (*out)->u.b = n == 4;
        return 0;
    }
    if (looks_date(t, n) || looks_time(t, n)) {
        if (!valid_datetime(t, n)) return fail(P, p, "invalid date-time '%.*s'", (int)n, t);
        *out = new_node(TOML_DATETIME, p.line, p.col);
        (*out)->u.str.s = oh_strndup(t, n);
        (*out)->u.str.len = n;
        return 0;
    }
    return parse_number(P, p, t, n, out);
}

/* ---------------------------------------------------------------- values */

static int parse_value(parser *P, toml_value **out);
static int parse_keyval(parser *P, toml_value *t);

static void freeze(toml_value *v) {
    if (v->type == TOML_TABLE) {
        v->flags |= F_FROZEN;
        for (size_t i = 0; i < v->u.table.n; i++) freeze(v->u.table.entries[i].value);
    } else if (v->type == TOML_ARRAY) {
        for (size_t i = 0; i < v->u.array.n; i++) freeze(v->u.array.items[i]);
    }
}

static int parse_array(parser *P, toml_value **out) {
    pos open = here(P);
    P->i++;
    toml_value *a = new_node(TOML_ARRAY, open.line, open.col);
    size_t base = P->path.n;
    for (;;) {
        if (skip_blank(P)) goto fail;
        int c = peek(P, 0);
        if (c == ']') { P->i++; break; }
        if (c < 0) { fail(P, here(P), "unterminated array (opened at %d:%d)", open.line, open.col); goto fail; }
        oh_buf_printf(&P->path, "[%zu]", a->u.array.n);
        toml_value *v;
        int r = parse_value(P, &v);
        path_truncate(&P->path, base);
        if (r) goto fail;
        push_item(a, v);
        if (skip_blank(P)) goto fail;
        c = peek(P, 0);
        if (c == ',') { P->i++; continue; }
        if (c == ']') { P->i++; break; }
        if (c < 0) { fail(P, here(P), "unterminated array (opened at %d:%d)", open.line, open.col); goto fail; }
        fail(P, here(P), "expected ',' or ']' in an array, found %s", describe(P, P->i));
        goto fail;
    }
    *out = a;
    return 0;
fail:
    toml_free(a);
    return -1;
}

/* Between the parts of an inline table only spaces may appear. */
static int inline_gap(parser *P, pos open) {
    skip_ws(P);
    if (at_newline(P)) return fail(P, here(P), "a newline is not allowed in an inline table (opened at %d:%d)", open.line, open.col);
    if (peek(P, 0) < 0) return fail(P, here(P), "unterminated inline table (opened at %d:%d)", open.line, open.col);
    if (peek(P, 0) == '#') return fail(P, here(P), "a comment is not allowed in an inline table");
    return 0;
}

static int parse_inline(parser *P, toml_value **out) {
    pos open = here(P);
    P->i++;
    toml_value *t = new_node(TOML_TABLE, open.line, open.col);
    if (inline_gap(P, open)) goto fail;
    if (peek(P, 0) == '}') { P->i++; goto done; }
    for (;;) {
        if (inline_gap(P, open)) goto fail;
        if (parse_keyval(P, t)) goto fail;
        if (inline_gap(P, open)) goto fail;
        int c = peek(P, 0);
        if (c == '}') { P->i++; break; }
        if (c != ',') { fail(P, here(P), "expected ',' or '}' in an inline table, found %s", describe(P, P->i)); goto fail; }
        P->i++;
        if (inline_gap(P, open)) goto fail;
        if (peek(P, 0) == '}') { fail(P, here(P), "a trailing comma is not allowed in an inline table"); goto fail; }
    }
done:
    freeze(t);
    *out = t;
    return 0;
fail:
    toml_free(t);
    return -1;
}

static int parse_value(parser *P, toml_value **out) {
    int c = peek(P, 0);
    if (c == '"' || c == '\'') {
        pos p = here(P);
        oh_buf b = {0};
        if (parse_string(P, &b)) { oh_buf_free(&b); return -1; }
        toml_value *v = new_node(TOML_STRING, p.line, p.col);
        v->u.str.s = b.p ? b.p : oh_strdup("");
        v->u.str.len = b.n;
        *out = v;
        return 0;
    }
    if (c == '[') return parse_array(P, out);
    if (c == '{') return parse_inline(P, out);
    return parse_scalar(P, out);
}

/* Place v at the (dotted) key k below table t. On failure v is not taken. */
static int insert_kv(parser *P, toml_value *t, const keypath *k, toml_value *v) {
    for (int j = 0; j < k->n - 1; j++) {
        const keypart *kp = &k->parts[j];
        toml_entry *e = find(t, kp->s, kp->len);
        if (!e) {
            toml_value *c = new_node(TOML_TABLE, kp->p.line, kp->p.col);
            c->flags = F_DOTTED;
            add_entry(t, kp->s, kp->len, kp->p.line, kp->p.col, c);
            t = c;
            continue;
        }
        toml_value *x = e->value;
        if (x->type != TOML_TABLE)
            return fail(P, kp->p, "key '%s' is already %s (defined at %d:%d), it cannot hold keys", show(P, k, j),
                        a_type(x), x->line, x->col);
        if (x->flags & F_FROZEN)
            return fail(P, kp->p, "inline table '%s' (defined at %d:%d) cannot be extended", show(P, k, j), x->line,
                        x->col);
        if (x->flags & F_HEADER)
            return fail(P, kp->p, "table '%s' is defined by a [header] at %d:%d; dotted keys cannot add to it",
                        show(P, k, j), x->line, x->col);
        x->flags |= F_DOTTED;
        t = x;
    }
    const keypart *last = &k->parts[k->n - 1];
    toml_entry *e = find(t, last->s, last->len);
    if (e) return fail(P, last->p, "duplicate key '%s' (first defined at %d:%d)", show(P, k, k->n - 1), e->line, e->col);
    add_entry(t, last->s, last->len, last->p.line, last->p.col, v);
    return 0;
}

/* key = value into table t (not the end of the line). */
static int parse_keyval(parser *P, toml_value *t) {
    keypath k = {0};
    if (parse_key(P, &k)) goto fail;
    if (peek(P, 0) != '=') {
        fail(P, here(P), "expected '=' after the key '%s', found %s", show(P, &k, k.n - 1), describe(P, P->i));
        goto fail;
    }
    P->i++;
    skip_ws(P);
    int c = peek(P, 0);
    if (c < 0 || at_newline(P) || c == '#' || c == ',' || c == '}' || c == ']') {
        fail(P, here(P), "missing value for the key '%s'", show(P, &k, k.n - 1));
        goto fail;
    }
    size_t base = P->path.n;
    show(P, &k, k.n - 1);
    path_truncate(&P->path, 0);
    oh_buf_put(&P->path, P->scratch.p, P->scratch.n);
    toml_value *v;
    int r = parse_value(P, &v);
    /* restore the base path: it is a prefix of what is there now */
    path_truncate(&P->path, base);
    if (r) goto fail;
    if (insert_kv(P, t, &k, v)) { toml_free(v); goto fail; }
    keypath_free(&k);
    return 0;
fail:
    keypath_free(&k);
    return -1;
}

/* [table] or [[array of tables]]: *cur becomes the table that follows. */
static int parse_header(parser *P, toml_value *root, toml_value **cur) {
    pos open = here(P);
    bool aot = peek(P, 1) == '[';
    P->i += aot ? 2 : 1;
    keypath k = {0};
    path_truncate(&P->path, 0);
    if (parse_key(P, &k)) goto fail;
    if (peek(P, 0) != ']' || (aot && peek(P, 1) != ']')) {
        fail(P, here(P), "expected '%s' to close the %s header, found %s", aot ? "]]" : "]",
             aot ? "array-of-tables" : "table", describe(P, P->i));
        goto fail;
    }
    P->i += aot ? 2 : 1;
    toml_value *t = root;
    for (int j = 0; j < k.n - 1; j++) {
        const keypart *kp = &k.parts[j];
        toml_entry *e = find(t, kp->s, kp->len);
        if (!e) {
            toml_value *c = new_node(TOML_TABLE, kp->p.line, kp->p.col);
            c->flags = F_IMPLICIT;
            add_entry(t, kp->s, kp->len, kp->p.line, kp->p.col, c);
            t = c;
            continue;
        }
        toml_value *x = e->value;
        if (x->type == TOML_TABLE && !(x->flags & F_FROZEN)) { t = x; continue; }
        if (x->type == TOML_ARRAY && (x->flags & F_AOT)) { t = x->u.array.items[x->u.array.n - 1]; continue; }
        if (x->type == TOML_TABLE)
            fail(P, kp->p, "inline table '%s' (defined at %d:%d) cannot be extended", show(P, &k, j), x->line, x->col);
        else
            fail(P, kp->p, "key '%s' is already %s (defined at %d:%d), not a table", show(P, &k, j), a_type(x),
                 x->line, x->col);
        goto fail;
    }
    const keypart *kp = &k.parts[k.n - 1];
    toml_entry *e = find(t, kp->s, kp->len);
    const char *name = show(P, &k, k.n - 1);
    if (!aot) {
        if (!e) {
            toml_value *c = new_node(TOML_TABLE, open.line, open.col);
            c->flags = F_HEADER;
            add_entry(t, kp->s, kp->len, kp->p.line, kp->p.col, c);
            t = c;
        } else {
            toml_value *x = e->value;
            if (x->type != TOML_TABLE) {
                fail(P, kp->p, "key '%s' is already %s (defined at %d:%d), it cannot be redefined as a table", name,
                     a_type(x), x->line, x->col);
                goto fail;
            }
            if (x->flags & F_FROZEN) {
                fail(P, kp->p, "inline table '%s' (defined at %d:%d) cannot be redefined", name, x->line, x->col);
                goto fail;
            }
            if (x->flags & F_HEADER) {
                fail(P, kp->p, "table '%s' is already defined at %d:%d", name, x->line, x->col);
                goto fail;
            }
            if (x->flags & F_DOTTED) {
                fail(P, kp->p, "table '%s' is already defined by dotted keys at %d:%d", name, x->line, x->col);
                goto fail;
            }
            x->flags = F_HEADER; /* was only a parent of an earlier header: now defined */
            x->line = open.line;
            x->col = open.col;
            e->line = kp->p.line;
            e->col = kp->p.col;
            t = x;
        }
    } else {
        toml_value *arr;
        if (!e) {
            arr = new_node(TOML_ARRAY, open.line, open.col);
            arr->flags = F_AOT;
            add_entry(t, kp->s, kp->len, kp->p.line, kp->p.col, arr);
        } else {
            arr = e->value;
            if (arr->type != TOML_ARRAY || !(arr->flags & F_AOT)) {
                fail(P, kp->p, "key '%s' is already %s (defined at %d:%d), not an array of tables", name,
                     a_type(arr), arr->line, arr->col);
                goto fail;
            }
        }
        toml_value *c = new_node(TOML_TABLE, open.line, open.col);
        c->flags = F_HEADER;
        push_item(arr, c);
        t = c;
    }
    /* messages below this header name keys from here */
    path_truncate(&P->path, 0);
    oh_buf_puts(&P->path, name);
    keypath_free(&k);
    *cur = t;
    return expect_eol(P, "the header");
fail:
    keypath_free(&k);
    return -1;
}

static int parse_doc(parser *P, toml_value *root) {
    toml_value *cur = root;
    for (;;) {
        skip_ws(P);
        if (P->i >= P->len) return 0;
        int c = peek(P, 0);
        if (c == '#') { if (skip_comment(P)) return -1; continue; }
        if (at_newline(P)) { eat_newline(P); continue; }
        if (c == '[') { if (parse_header(P, root, &cur)) return -1; continue; }
        if (parse_keyval(P, cur)) return -1;
        if (expect_eol(P, "the value")) return -1;
    }
}

static void parser_free(parser *P) {
    oh_buf_free(&P->path);
    oh_buf_free(&P->scratch);
}

int toml_parse(const char *text, size_t len, const char *filename, toml_value **out, oh_err *err) {
    *out = NULL;
    parser P = {.src = text, .len = len, .line = 1, .file = filename ? filename : "<toml>", .err = err};
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) P.i = P.line_start = 3;
    if (check_utf8(&P)) return -1;
    toml_value *root = new_node(TOML_TABLE, 1, 1);
    int r = parse_doc(&P, root);
    parser_free(&P);
    if (r) { toml_free(root); return -1; }
    *out = root;
    return 0;
}

int toml_parse_file(const char *path, toml_value **out, oh_err *err) {
    char *text;
    size_t n;
    *out = NULL;
    if (oh_read_file(path, &text, &n, err)) return -1;
    int r = toml_parse(text, n, path, out, err);
    free(text);
    return r;
}

/* ---------------------------------------------------------------- lookup */

const char *toml_type_name(toml_type t) {
    switch (t) {
    case TOML_TABLE: return "table";
    case TOML_ARRAY: return "array";
    case TOML_STRING: return "string";
    case TOML_INT: return "integer";
    case TOML_FLOAT: return "float";
    case TOML_BOOL: return "boolean";
    case TOML_DATETIME: return "datetime";
    }
    return "?";
}

toml_value *toml_get(const toml_value *table, const char *key) {
    if (!table || table->type != TOML_TABLE || !key) return NULL;
    toml_entry *e = find(table, key, strlen(key));
    return e ? e->value : NULL;
}

size_t toml_len(const toml_value *v) {
    if (!v) return 0;
    if (v->type == TOML_TABLE) return v->u.table.n;
    if (v->type == TOML_ARRAY) return v->u.array.n;
    return 0;
}

const toml_entry *toml_table_entry(const toml_value *table, size_t i) {
    if (!table || table->type != TOML_TABLE || i >= table->u.table.n) return NULL;
    return &table->u.table.entries[i];
}

toml_value *toml_array_item(const toml_value *array, size_t i) {
    if (!array || array->type != TOML_ARRAY || i >= array->u.array.n) return NULL;
    return array->u.array.items[i];
}

int toml_as_int(const toml_value *v, int64_t *out) {
    if (!v || v->type != TOML_INT) return -1;
    *out = v->u.i;
    return 0;
}
int toml_as_float(const toml_value *v, double *out) {
    if (!v || (v->type != TOML_FLOAT && v->type != TOML_INT)) return -1;
    *out = v->type == TOML_FLOAT ? v->u.f : (double)v->u.i;
    return 0;
}
int toml_as_bool(const toml_value *v, bool *out) {
    if (!v || v->type != TOML_BOOL) return -1;
    *out = v->u.b;
    return 0;
}
const char *toml_as_str(const toml_value *v) {
    return v && (v->type == TOML_STRING || v->type == TOML_DATETIME) ? v->u.str.s : NULL;
}

/* A key path: keys and [index] steps. */
typedef struct step { char *key; size_t len; size_t idx; } step; /* key NULL: an index */
typedef struct steps { step *s; int n, cap; } steps;

static void steps_push(steps *st, step s) {
    if (st->n == st->cap) {
        st->cap = st->cap ? 2 * st->cap : 8;
        st->s = oh_realloc(st->s, (size_t)st->cap * sizeof *st->s);
    }
    st->s[st->n++] = s;
}
static void steps_free(steps *st) {
    for (int j = 0; j < st->n; j++) free(st->s[j].key);
    free(st->s);
}

static int parse_path(const char *path, steps *st, oh_err *err) {
    parser P = {.src = path, .len = strlen(path), .line = 1, .file = path, .path_mode = true, .err = err};
    int r = -1;
    for (;;) {
        skip_ws(&P);
        int c = peek(&P, 0);
        oh_buf b = {0};
        if (c == '"' || c == '\'') {
            if ((c == '"' ? parse_basic(&P, &b) : parse_literal(&P, &b)) != 0) { oh_buf_free(&b); goto out; }
        } else if (is_bare(c)) {
            size_t s = P.i;
            while (is_bare(peek(&P, 0))) P.i++;
            oh_buf_put(&b, path + s, P.i - s);
        } else {
            fail(&P, here(&P), "expected a key, found %s", describe(&P, P.i));
            goto out;
        }
        steps_push(st, (step){b.p ? b.p : oh_strdup(""), b.n, 0});
        skip_ws(&P);
        while (peek(&P, 0) == '[') {
            P.i++;
            size_t s = P.i, idx = 0;
            while (is_digit(peek(&P, 0)) && P.i - s < 12) idx = idx * 10 + (size_t)(path[P.i++] - '0');
            if (P.i == s || peek(&P, 0) != ']') {
                fail(&P, here(&P), "expected an index and ']', found %s", describe(&P, P.i));
                goto out;
            }
            P.i++;
            steps_push(st, (step){NULL, 0, idx});
            skip_ws(&P);
        }
        if (P.i >= P.len) { r = 0; goto out; }
        if (peek(&P, 0) != '.') {
            fail(&P, here(&P), "expected '.' or '[', found %s", describe(&P, P.i));
            goto out;
        }
        P.i++;
    }
out:
    parser_free(&P);
    return r;
}

toml_value *toml_get_path(const toml_value *root, const char *path) {
    if (!root || !path) return NULL;
    steps st = {0};
    if (parse_path(path, &st, NULL)) { steps_free(&st); return NULL; }
    const toml_value *cur = root;
    for (int j = 0; j < st.n && cur; j++) {
        if (st.s[j].key) {
            toml_entry *e = cur->type == TOML_TABLE ? find(cur, st.s[j].key, st.s[j].len) : NULL;
            cur = e ? e->value : NULL;
        } else {
            cur = toml_array_item(cur, st.s[j].idx);
        }
    }
    steps_free(&st);
    return (toml_value *)cur;
}

/* ---------------------------------------------------------------- building */

toml_value *toml_new_table(void) { return new_node(TOML_TABLE, 0, 0); }
toml_value *toml_new_array(void) { return new_node(TOML_ARRAY, 0, 0); }
toml_value *toml_new_string(const char *s, size_t len) {
    toml_value *v = new_node(TOML_STRING, 0, 0);
    v->u.str.s = oh_strndup(s, len);
    v->u.str.len = len;
    return v;
}
toml_value *toml_new_int(int64_t i) { toml_value *v = new_node(TOML_INT, 0, 0); v->u.i = i; return v; }
toml_value *toml_new_float(double f) { toml_value *v = new_node(TOML_FLOAT, 0, 0); v->u.f = f; return v; }
toml_value *toml_new_bool(bool b) { toml_value *v = new_node(TOML_BOOL, 0, 0); v->u.b = b; return v; }

static void table_put(toml_value *t, const char *key, size_t n, toml_value *v) {
    toml_entry *e = find(t, key, n);
    if (e) {
        toml_free(e->value);
        e->value = v;
        e->line = e->col = 0;
    } else {
        add_entry(t, key, n, 0, 0, v);
    }
}

void toml_table_set(toml_value *table, const char *key, toml_value *v) {
    OH_CHECK(table && table->type == TOML_TABLE && key && v, "toml_table_set needs a table, a key and a value");
    table_put(table, key, strlen(key), v);
}

void toml_array_push(toml_value *array, toml_value *v) {
    OH_CHECK(array && array->type == TOML_ARRAY && v, "toml_array_push needs an array and a value");
    push_item(array, v);
}

static void clear_pos(toml_value *v) {
    v->line = v->col = 0;
    v->flags = 0;
    if (v->type == TOML_TABLE)
        for (size_t i = 0; i < v->u.table.n; i++) {
            v->u.table.entries[i].line = v->u.table.entries[i].col = 0;
            clear_pos(v->u.table.entries[i].value);
        }
    else if (v->type == TOML_ARRAY)
        for (size_t i = 0; i < v->u.array.n; i++) clear_pos(v->u.array.items[i]);
}

/* value_text as one TOML value, or else as a plain string. */
static toml_value *parse_override(const char *text) {
    parser P = {.src = text, .len = strlen(text), .line = 1, .file = "--set", .err = NULL};
    toml_value *v = NULL;
    skip_ws(&P);
    if (P.i < P.len && parse_value(&P, &v) == 0) {
        skip_ws(&P);
        if (P.i != P.len) { toml_free(v); v = NULL; }
    } else {
        v = NULL;
    }
    parser_free(&P);
    if (!v) return toml_new_string(text, P.len);
    clear_pos(v);
    return v;
}

/* Display of the first n steps, for messages (caller frees). */
static char *show_steps(const steps *st, int n) {
    oh_buf b = {0};
    oh_buf_put(&b, "", 0);
    for (int j = 0; j < n; j++) {
        if (st->s[j].key) {
            if (j) oh_buf_put(&b, ".", 1);
            put_key(&b, st->s[j].key, st->s[j].len);
        } else {
            oh_buf_printf(&b, "[%zu]", st->s[j].idx);
        }
    }
    return b.p;
}

/* The containers for steps from..n-1 around v, built bottom-up; NULL if an
 * index other than 0 would leave a hole (v is then freed). */
static toml_value *build_chain(const steps *st, int from, toml_value *v) {
    toml_value *node = v;
    for (int j = st->n - 1; j >= from; j--) {
        const step *s = &st->s[j];
        toml_value *c;
        if (s->key) {
            c = toml_new_table();
            add_entry(c, s->key, s->len, 0, 0, node);
        } else {
            if (s->idx != 0) { toml_free(node); return NULL; }
            c = toml_new_array();
            push_item(c, node);
        }
        node = c;
    }
    return node;
}

int toml_set_path(toml_value *root, const char *path, const char *value_text, oh_err *err) {
    OH_CHECK(root && path && value_text, "toml_set_path needs a root, a path and a value");
    if (root->type != TOML_TABLE) return oh_errf(err, "%s: the root is not a table", path);
    {
        size_t n = strlen(value_text), k = 0;
        while (k < n) {
            uint32_t cp;
            int l = utf8_decode((const unsigned char *)value_text + k, n - k, &cp);
            if (!l) return oh_errf(err, "%s: the value is not valid UTF-8", path);
            k += (size_t)l;
        }
    }
    steps st = {0};
    if (parse_path(path, &st, err)) {
        steps_free(&st);
        return -1;
    }
    toml_value *v = parse_override(value_text);
    toml_value *cur = root;
    int r = -1;
    char *where = NULL;
    for (int j = 0; j < st.n; j++) {
        const step *s = &st.s[j];
        bool last = j == st.n - 1;
        if (s->key) {
            if (cur->type != TOML_TABLE) {
                where = show_steps(&st, j);
                oh_errf(err, "%s: %s is %s, not a table", path, where, a_type(cur));
                goto out;
            }
            toml_entry *e = find(cur, s->key, s->len);
            if (last) { table_put(cur, s->key, s->len, v); v = NULL; r = 0; goto out; }
            if (!e) {
                toml_value *chain = build_chain(&st, j + 1, v);
                v = NULL;
                if (!chain) { oh_errf(err, "%s: a new array can only start at index 0", path); goto out; }
                add_entry(cur, s->key, s->len, 0, 0, chain);
                r = 0;
                goto out;
            }
            cur = e->value;
        } else {
            if (cur->type != TOML_ARRAY) {
                where = show_steps(&st, j);
                oh_errf(err, "%s: %s is %s, not an array", path, where, a_type(cur));
                goto out;
            }
            size_t n = cur->u.array.n;
            if (s->idx > n) {
                where = show_steps(&st, j);
                oh_errf(err, "%s: index %zu is out of range (%s has %zu items)", path, s->idx, where, n);
                goto out;
            }
            if (last) {
                if (s->idx < n) { toml_free(cur->u.array.items[s->idx]); cur->u.array.items[s->idx] = v; }
                else push_item(cur, v);
                v = NULL;
                r = 0;
                goto out;
            }
            if (s->idx == n) {
                toml_value *chain = build_chain(&st, j + 1, v);
                v = NULL;
                if (!chain) { oh_errf(err, "%s: a new array can only start at index 0", path); goto out; }
                push_item(cur, chain);
                r = 0;
                goto out;
            }
            cur = cur->u.array.items[s->idx];
        }
    }
out:
    toml_free(v);
    free(where);
    steps_free(&st);
    return r;
}

/* ---------------------------------------------------------------- writing */

static void put_float(oh_buf *b, double f) {
    if (isnan(f)) { oh_buf_puts(b, "nan"); return; }
    if (isinf(f)) { oh_buf_puts(b, f < 0 ? "-inf" : "inf"); return; }
    char s[48];
    int prec = 1;
    for (; prec < 17; prec++) {
        snprintf(s, sizeof s, "%.*g", prec, f);
        if (strtod(s, NULL) == f) break;
    }
    snprintf(s, sizeof s, "%.*g", prec, f);
    /* plain digits rather than an exponent below 1e16: "100.0", not "1e2" */
    char *e = strchr(s, 'e');
    int x = e ? atoi(e + 1) : 0;
    if (e && x >= 0 && x < 16) snprintf(s, sizeof s, "%.*g", x + 1, f);
    /* "1e-05" -> "1e-5", "1e+300" -> "1e300" */
    e = strchr(s, 'e');
    if (e) {
        char *d = e + 1, *q = e + 1;
        if (*q == '+') q++;
        else if (*q == '-') *d++ = *q++;
        while (*q == '0' && q[1]) q++;
        memmove(d, q, strlen(q) + 1);
    }
    oh_buf_puts(b, s);
    if (!strpbrk(s, ".e")) oh_buf_puts(b, ".0");
}

static void put_inline(oh_buf *b, const toml_value *v) {
    switch (v->type) {
    case TOML_STRING: put_str(b, v->u.str.s, v->u.str.len); break;
    case TOML_DATETIME: oh_buf_put(b, v->u.str.s, v->u.str.len); break;
    case TOML_INT: oh_buf_printf(b, "%" PRId64, v->u.i); break;
    case TOML_FLOAT: put_float(b, v->u.f); break;
    case TOML_BOOL: oh_buf_puts(b, v->u.b ? "true" : "false"); break;
    case TOML_ARRAY:
        oh_buf_puts(b, "[");
        for (size_t i = 0; i < v->u.array.n; i++) {
            if (i) oh_buf_puts(b, ", ");
            put_inline(b, v->u.array.items[i]);
        }
        oh_buf_puts(b, "]");
        break;
    case TOML_TABLE:
        if (v->u.table.n == 0) { oh_buf_puts(b, "{}"); break; }
        oh_buf_puts(b, "{ ");
        for (size_t i = 0; i < v->u.table.n; i++) {
            const toml_entry *e = &v->u.table.entries[i];
            if (i) oh_buf_puts(b, ", ");
            put_key(b, e->key, e->key_len);
            oh_buf_puts(b, " = ");
            put_inline(b, e->value);
        }
        oh_buf_puts(b, " }");
        break;
    }
}

static bool is_table_array(const toml_value *v) {
    if (v->type != TOML_ARRAY || v->u.array.n == 0) return false;
    for (size_t i = 0; i < v->u.array.n; i++)
        if (v->u.array.items[i]->type != TOML_TABLE) return false;
    return true;
}
static bool is_section(const toml_value *v) { return v->type == TOML_TABLE || is_table_array(v); }

static bool has_plain(const toml_value *t) {
    for (size_t i = 0; i < t->u.table.n; i++)
        if (!is_section(t->u.table.entries[i].value)) return true;
    return false;
}

static void dump_table(oh_buf *b, const toml_value *t, oh_buf *path) {
    for (size_t i = 0; i < t->u.table.n; i++) {
        const toml_entry *e = &t->u.table.entries[i];
        if (is_section(e->value)) continue;
        put_key(b, e->key, e->key_len);
        oh_buf_puts(b, " = ");
        put_inline(b, e->value);
        oh_buf_puts(b, "\n");
    }
    for (size_t i = 0; i < t->u.table.n; i++) {
        const toml_entry *e = &t->u.table.entries[i];
        const toml_value *v = e->value;
        if (!is_section(v)) continue;
        size_t base = path->n;
        if (base) oh_buf_put(path, ".", 1);
        put_key(path, e->key, e->key_len);
        if (v->type == TOML_TABLE) {
            if (v->u.table.n == 0 || has_plain(v)) { /* a table of tables needs no header of its own */
                if (b->n) oh_buf_puts(b, "\n");
                oh_buf_printf(b, "[%s]\n", path->p);
            }
            dump_table(b, v, path);
        } else {
            for (size_t j = 0; j < v->u.array.n; j++) {
                if (b->n) oh_buf_puts(b, "\n");
                oh_buf_printf(b, "[[%s]]\n", path->p);
                dump_table(b, v->u.array.items[j], path);
            }
        }
        path_truncate(path, base);
    }
}

char *toml_dump(const toml_value *root) {
    oh_buf b = {0};
    oh_buf_put(&b, "", 0);
    if (!root) return b.p;
    if (root->type != TOML_TABLE) {
        put_inline(&b, root);
        return b.p;
    }
    oh_buf path = {0};
    dump_table(&b, root, &path);
    oh_buf_free(&path);
    return b.p;
}

bool toml_equal(const toml_value *a, const toml_value *b) {
    if (a == b) return true;
    if (!a || !b || a->type != b->type) return false;
    switch (a->type) {
    case TOML_STRING:
    case TOML_DATETIME:
        return a->u.str.len == b->u.str.len && memcmp(a->u.str.s, b->u.str.s, a->u.str.len) == 0;
    case TOML_INT: return a->u.i == b->u.i;
    case TOML_FLOAT: return (isnan(a->u.f) && isnan(b->u.f)) || a->u.f == b->u.f;
    case TOML_BOOL: return a->u.b == b->u.b;
    case TOML_ARRAY:
        if (a->u.array.n != b->u.array.n) return false;
        for (size_t i = 0; i < a->u.array.n; i++)
            if (!toml_equal(a->u.array.items[i], b->u.array.items[i])) return false;
        return true;
    case TOML_TABLE:
        if (a->u.table.n != b->u.table.n) return false;
        for (size_t i = 0; i < a->u.table.n; i++) {
            const toml_entry *e = &a->u.table.entries[i];
            const toml_entry *f = find(b, e->key, e->key_len);
            if (!f || !toml_equal(e->value, f->value)) return false;
        }
        return true;
    }
    return false;
}
