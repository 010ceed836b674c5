/* tokenizer.c: byte-level BPE (tokenizer.json and tiktoken ranks). See
 * tokenizer.h for the contract; the comments here say how. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "datasets/tokenizer.h"

#include <pcre2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "util/json.h"

/* ------------------------------------------------------------------------ */
/* hashing and the two map kinds                                            */
/* ------------------------------------------------------------------------ */

static inline uint64_t hash_bytes(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 0x9e3779b97f4a7c15ull ^ ((uint64_t)n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, s, 8);
        h = (h ^ v) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
        s += 8;
        n -= 8;
    }
    uint64_t v = 0;
    if (n) memcpy(&v, s, n);
    h = (h ^ v) * 0x94d049bb133111ebull;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return h;
}

/* A set of ids keyed by the bytes each id names (a string arena plus per-id
 * offset/length arrays). Slot: (hash high 32 bits << 32) | (id + 1), 0 empty;
 * probing starts from those 32 bits, so growing needs no keys. */
typedef struct idmap {
    uint64_t *slot;
    size_t mask, count;
} idmap;

typedef struct keys {
    oh_buf arena;
    uint32_t *off, *len; /* len UINT32_MAX: the id has no key */
} keys;

static void idmap_init(idmap *m, size_t expect) {
    size_t cap = 64;
    while (cap < expect * 2) cap *= 2;
    m->slot = oh_calloc(cap, sizeof *m->slot);
    m->mask = cap - 1;
    m->count = 0;
}

static int32_t idmap_find(const idmap *m, const keys *k, const char *s, size_t n, uint64_t h) {
    uint32_t h32 = (uint32_t)(h >> 32);
    for (size_t i = h32 & m->mask;; i = (i + 1) & m->mask) {
        uint64_t v = m->slot[i];
        if (!v) return -1;
        if ((uint32_t)(v >> 32) == h32) {
            int32_t id = (int32_t)((uint32_t)v - 1);
            if (k->len[id] == n && !memcmp(k->arena.p + k->off[id], s, n)) return id;
        }
    }
}

static void idmap_put_slot(idmap *m, uint64_t v) {
    size_t i = (size_t)(v >> 32) & m->mask;
    while (m->slot[i]) i = (i + 1) & m->mask;
    m->slot[i] = v;
}

/* Insert id (whose key must not be present yet). */
static void idmap_add(idmap *m, int32_t id, uint64_t h) {
    if ((m->count + 1) * 2 > m->mask + 1) {
        size_t ocap = m->mask + 1;
        uint64_t *old = m->slot;
        m->slot = oh_calloc(ocap * 2, sizeof *m->slot);
        m->mask = ocap * 2 - 1;
        for (size_t i = 0; i < ocap; i++)
            if (old[i]) idmap_put_slot(m, old[i]);
        free(old);
    }
    idmap_put_slot(m, ((h >> 32) << 32) | (uint32_t)(id + 1));
    m->count++;
}

/* Merges: (left id, right id) -> (rank, merged id). */
typedef struct pair_slot {
    uint64_t key; /* UINT64_MAX: empty */
    uint32_t rank;
    int32_t id;
} pair_slot;

typedef struct pairmap {
    pair_slot *slot;
    size_t mask, count;
} pairmap;

static inline uint64_t pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }
static inline size_t pair_hash(uint64_t k) { return (size_t)((k * 0x9e3779b97f4a7c15ull) >> 17); }

static void pairmap_init(pairmap *m, size_t expect) {
    size_t cap = 64;
    while (cap < expect * 2) cap *= 2;
    m->slot = oh_malloc(cap * sizeof *m->slot);
    for (size_t i = 0; i < cap; i++) m->slot[i].key = UINT64_MAX;
    m->mask = cap - 1;
    m->count = 0;
}

static inline const pair_slot *pairmap_find(const pairmap *m, int32_t a, int32_t b) {
    uint64_t k = pair_key(a, b);
    for (size_t i = pair_hash(k) & m->mask;; i = (i + 1) & m->mask) {
        const pair_slot *s = &m->slot[i];
        if (s->key == k) return s;
        if (s->key == UINT64_MAX) return NULL;
    }
}

/* Insert or overwrite (HF: a pair listed twice keeps its last rank). */
static void pairmap_put(pairmap *m, int32_t a, int32_t b, uint32_t rank, int32_t id) {
    if ((m->count + 1) * 2 > m->mask + 1) {
        size_t ocap = m->mask + 1;
        pair_slot *old = m->slot;
        pairmap_init(m, ocap);
        for (size_t i = 0; i < ocap; i++) {
            if (old[i].key == UINT64_MAX) continue;
            size_t j = pair_hash(old[i].key) & m->mask;
            while (m->slot[j].key != UINT64_MAX) j = (j + 1) & m->mask;
            m->slot[j] = old[i];
            m->count++;
        }
        free(old);
    }
    uint64_t k = pair_key(a, b);
    size_t i = pair_hash(k) & m->mask;
    while (m->slot[i].key != UINT64_MAX && m->slot[i].key != k) i = (i + 1) & m->mask;
    if (m->slot[i].key == UINT64_MAX) m->count++;
    m->slot[i] = (pair_slot){k, rank, id};
}

/* ------------------------------------------------------------------------ */
/* UTF-8, GPT-2's byte <-> unicode mapping, White_Space                     */
/* ------------------------------------------------------------------------ */

/* Offset of the first invalid byte (as Rust's str::from_utf8), or SIZE_MAX. */
static size_t utf8_invalid_at(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (i + 8 <= n) {
            uint64_t v;
            memcpy(&v, s + i, 8);
            if (!(v & 0x8080808080808080ull)) { i += 8; continue; }
        }
        unsigned c = s[i];
        if (c < 0x80) { i++; continue; }
        size_t need;
        unsigned lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf) need = 1;
        else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            if (c == 0xe0) lo = 0xa0;
            if (c == 0xed) hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            if (c == 0xf0) lo = 0x90;
            if (c == 0xf4) hi = 0x8f;
        } else return i;
        if (i + need >= n) return i;
        if (s[i + 1] < lo || s[i + 1] > hi) return i;
        for (size_t k = 2; k <= need; k++)
            if ((s[i + k] & 0xc0) != 0x80) return i;
        i += need + 1;
    }
    return SIZE_MAX;
}

/* Decode the (valid) UTF-8 character at s; *len receives its length. */
static inline uint32_t utf8_get(const unsigned char *s, size_t *len) {
    unsigned c = s[0];
    if (c < 0x80) { *len = 1; return c; }
    if (c < 0xe0) { *len = 2; return ((c & 0x1fu) << 6) | (s[1] & 0x3fu); }
    if (c < 0xf0) { *len = 3; return ((c & 0x0fu) << 12) | ((s[1] & 0x3fu) << 6) | (s[2] & 0x3fu); }
    *len = 4;
    return ((c & 0x07u) << 18) | ((s[1] & 0x3fu) << 12) | ((s[2] & 0x3fu) << 6) | (s[3] & 0x3fu);
}

static inline size_t utf8_len_at(const unsigned char *s) {
    unsigned c = s[0];
    return c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
}


/* GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the
 * other 68 to U+0100.. in byte order. */
static uint16_t g_b2u[256];
static int16_t g_u2b[324]; /* -1: not a byte-level symbol */
static pthread_once_t g_bytelevel_once = PTHREAD_ONCE_INIT;
static void bytelevel_init(void) {
    int n = 0;
    for (int i = 0; i < 324; i++) g_u2b[i] = -1;
    for (int b = 0; b < 256; b++) {
        bool keep = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
        g_b2u[b] = (uint16_t)(keep ? b : 256 + n++);
        g_u2b[g_b2u[b]] = (int16_t)b;
    }
}

/* Unicode White_Space (what Oniguruma's and Rust's \s match). */
static inline bool is_white_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

/* ------------------------------------------------------------------------ */
/* regexes                                                                  */
/* ------------------------------------------------------------------------ */

typedef enum re_dialect { RE_DIALECT_ONIG, RE_DIALECT_RUST } re_dialect;

/* Translate a tokenizer regex into PCRE2 syntax (see tokenizer.h). Returns 0,
 * or -1 with why filled. */
static int re_translate(const char *src, size_t n, re_dialect d, oh_buf *out, char *why, size_t whyn) {
    bool in_class = false;
    for (size_t i = 0; i < n; i++) {
        char c = src[i];
        if (c == '\\') {
            if (i + 1 >= n) { snprintf(why, whyn, "trailing backslash"); return -1; }
            char e = src[++i];
            switch (e) {
            case 's': oh_buf_puts(out, "\\p{White_Space}"); continue;
            case 'S': oh_buf_puts(out, "\\P{White_Space}"); continue;
            case 'w': case 'W': case 'b': case 'B': case 'h': case 'H': case 'R': case 'X':
            case 'K': case 'G': case 'Q': case 'E': case 'N':
                snprintf(why, whyn, "\\%c is not supported (its meaning differs between regex engines)", e);
                return -1;
            case 'u': { /* \uHHHH (Oniguruma, Rust) or \u{H...} (Rust) -> \x{...} */
                size_t k = 0;
                if (i + 1 < n && src[i + 1] == '{' && d == RE_DIALECT_RUST) {
                    while (i + 2 + k < n && src[i + 2 + k] && strchr("0123456789abcdefABCDEF", src[i + 2 + k])) k++;
                    if (k >= 1 && k <= 6 && i + 2 + k < n && src[i + 2 + k] == '}') {
                        oh_buf_puts(out, "\\x{");
                        oh_buf_put(out, src + i + 2, k);
                        oh_buf_puts(out, "}");
                        i += k + 2;
                        continue;
                    }
                } else {
                    while (k < 4 && i + 1 + k < n && src[i + 1 + k] && strchr("0123456789abcdefABCDEF", src[i + 1 + k])) k++;
                    if (k == 4) {
                        oh_buf_puts(out, "\\x{");
                        oh_buf_put(out, src + i + 1, 4);
                        oh_buf_puts(out, "}");
                        i += 4;
                        continue;
                    }
                }
                snprintf(why, whyn, "malformed \\u escape");
                return -1;
            }
            default:
                oh_buf_put(out, "\\", 1);
                oh_buf_put(out, &e, 1);
                continue;
            }
        }
        if (in_class) {
            if (c == ']') { in_class = false; oh_buf_put(out, &c, 1); continue; }
            if (c == '[') {
                if (i + 1 < n && src[i + 1] == ':') { /* POSIX class [:name:] */
                    const char *e = NULL;
                    for (size_t k = i + 2; k + 1 < n; k++)
                        if (src[k] == ':' && src[k + 1] == ']') { e = src + k + 2; break; }
                    if (e) { oh_buf_put(out, src + i, (size_t)(e - (src + i))); i = (size_t)(e - src) - 1; continue; }
                }
                snprintf(why, whyn, "nested character classes are not supported");
                return -1;
            }
            if (c == '&' && i + 1 < n && src[i + 1] == '&') {
                snprintf(why, whyn, "class intersection && is not supported");
                return -1;
            }
            oh_buf_put(out, &c, 1);
            continue;
        }
        if (c == '[') {
            in_class = true;
            oh_buf_put(out, &c, 1);
            /* a ']' right after '[' or '[^' is a literal */
            if (i + 1 < n && src[i + 1] == '^') { oh_buf_put(out, "^", 1); i++; }
            if (i + 1 < n && src[i + 1] == ']') { oh_buf_put(out, "\\]", 2); i++; }
            continue;
        }
        if (c == '(' && i + 1 < n && src[i + 1] == '?') {
            /* inline flags: (?flags) or (?flags:...) with flags in [a-zA-Z-] */
            size_t k = i + 2;
            while (k < n && (src[k] == '-' || (src[k] >= 'a' && src[k] <= 'z') || (src[k] >= 'A' && src[k] <= 'Z'))) k++;
            if (k > i + 2 && k < n && (src[k] == ':' || src[k] == ')') && !(src[i + 2] == 'P' && k == i + 3)) {
                oh_buf_puts(out, "(?");
                for (size_t f = i + 2; f < k; f++) {
                    char fl = src[f];
                    if (fl == '-' || fl == 'i' || fl == 'x') { oh_buf_put(out, &fl, 1); continue; }
                    if (fl == 'm' && d == RE_DIALECT_ONIG) { oh_buf_put(out, "s", 1); continue; } /* Ruby's m: dot matches newline */
                    if ((fl == 'm' || fl == 's') && d == RE_DIALECT_RUST) { oh_buf_put(out, &fl, 1); continue; }
                    if (fl == 'u' && d == RE_DIALECT_RUST) continue; /* Unicode mode: always on */
                    snprintf(why, whyn, "inline flag '%c' is not supported", fl);
                    return -1;
                }
                i = k - 1;
                continue;
            }
        }
        oh_buf_put(out, &c, 1);
    }
    if (in_class) { snprintf(why, whyn, "unterminated character class"); return -1; }
    return 0;
}

/* Compile a tokenizer regex (or, with literal, a plain string). */
static pcre2_code *re_compile(const char *src, size_t n, re_dialect d, bool literal, const char *what, oh_err *err) {
    oh_buf pat = {0};
    uint32_t opts = PCRE2_UTF;
    if (literal) {
        opts |= PCRE2_LITERAL; /* (UCP is not allowed with it, nor needed) */
        oh_buf_put(&pat, src, n);
    } else {
        char why[200];
        if (re_translate(src, n, d, &pat, why, sizeof why)) {
            oh_buf_free(&pat);
            oh_errf(err, "%s: regex /%.*s/: %s", what, (int)(n > 200 ? 200 : n), src, why);
            return NULL;
        }
        opts |= PCRE2_UCP | (d == RE_DIALECT_ONIG ? PCRE2_MULTILINE : PCRE2_DOLLAR_ENDONLY);
    }
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)(pat.p ? pat.p : ""), pat.n, opts, &ec, &eo, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        oh_errf(err, "%s: regex /%.*s/ does not compile: %s (at offset %zu of the translated pattern)", what,
                (int)(n > 200 ? 200 : n), src, (char *)msg, (size_t)eo);
        oh_buf_free(&pat);
        return NULL;
    }
    oh_buf_free(&pat);
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter */
    return re;
}

/* ------------------------------------------------------------------------ */
/* the tokenizer                                                            */
/* ------------------------------------------------------------------------ */

enum { TOK_F_VOCAB = 1, TOK_F_ADDED = 2, TOK_F_SPECIAL = 4 };

typedef struct tok_added {
    char *text;
    uint32_t len;
    int32_t id;
    bool lstrip, rstrip, single_word, normalized, special;
} tok_added;

/* Leftmost-longest matching over a set of added tokens: per first byte, the
 * candidates longest first. */
typedef struct tok_matcher {
    size_t n;             /* tokens in the set */
    bool first[256];
    uint32_t start[257];  /* order[start[b] .. start[b+1]) begin with byte b */
    uint32_t *order;      /* indices into tok->added */
} tok_matcher;

typedef struct tok_split {
    pcre2_code *re;
    bool keep_gaps; /* HF Isolated keeps unmatched text; tiktoken drops it */
} tok_split;

struct tok_tokenizer {
    uint64_t uid;
    char *what; /* the file, for messages */
    int32_t nid; /* ids 0..nid-1 have room in the tables below */
    int32_t max_id;
    keys str;   /* vocabulary spelling ("Ġthe") of each id */
    keys dec;   /* the bytes each id decodes to */
    uint8_t *flags;
    idmap by_str;   /* spelling -> id: added tokens and vocab */
    idmap by_bytes; /* bytes -> id: the BPE model's vocab */
    pairmap merges;
    int32_t byte_id[256];
    bool ignore_merges;
    tok_added *added;
    size_t nadded;
    tok_matcher m_raw, m_norm; /* normalized=false tokens, normalized=true tokens */
    pcre2_code *word_re;       /* Rust's \w, for single_word tokens */
    tok_split *splits;
    int nsplits;
    bool bl_prefix_space;
    pcre2_code *bl_re; /* GPT-2 regex when ByteLevel use_regex */
    int32_t *tmpl_pre, *tmpl_post;
    size_t ntmpl_pre, ntmpl_post;
};

static atomic_uint_fast64_t g_uid = 1;

static tok_tokenizer *tok_new(const char *what) {
    pthread_once(&g_bytelevel_once, bytelevel_init);
    tok_tokenizer *t = oh_calloc(1, sizeof *t);
    t->uid = atomic_fetch_add(&g_uid, 1);
    t->what = oh_strdup(what);
    t->max_id = -1;
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    return t;
}

static void ids_reserve(tok_tokenizer *t, int32_t id) {
    if (id < t->nid) return;
    int32_t cap = t->nid ? t->nid : 1024;
    while (cap <= id) cap = cap > (INT32_MAX / 2) ? INT32_MAX : cap * 2;
    t->str.off = oh_realloc(t->str.off, (size_t)cap * sizeof(uint32_t));
    t->str.len = oh_realloc(t->str.len, (size_t)cap * sizeof(uint32_t));
    t->dec.off = oh_realloc(t->dec.off, (size_t)cap * sizeof(uint32_t));
    t->dec.len = oh_realloc(t->dec.len, (size_t)cap * sizeof(uint32_t));
    t->flags = oh_realloc(t->flags, (size_t)cap);
    for (int32_t i = t->nid; i < cap; i++) {
        t->str.len[i] = t->dec.len[i] = UINT32_MAX;
        t->str.off[i] = t->dec.off[i] = 0;
        t->flags[i] = 0;
    }
    t->nid = cap;
}

static void keys_set(keys *k, int32_t id, const char *s, size_t n) {
    OH_CHECK(k->arena.n + n + 1 < UINT32_MAX, "tokenizer strings exceed 4 GB");
    k->off[id] = (uint32_t)k->arena.n;
    k->len[id] = (uint32_t)n;
    oh_buf_put(&k->arena, s, n);
    oh_buf_put(&k->arena, "", 1); /* NUL after each, for tok_token_text */
}

/* The GPT-2 spelling of bytes (each byte one character). */
static void bytes_to_spelling(const unsigned char *b, size_t n, oh_buf *out) {
    out->n = 0;
    for (size_t i = 0; i < n; i++) {
        char u[4];
        int k = oh_utf8_put(u, g_b2u[b[i]]);
        oh_buf_put(out, u, (size_t)k);
    }
}

/* The bytes a spelling stands for, if every character is a byte-level
 * symbol; false otherwise. */
static bool spelling_to_bytes(const char *s, size_t n, oh_buf *out) {
    out->n = 0;
    for (size_t i = 0; i < n;) {
        size_t l;
        uint32_t cp = utf8_get((const unsigned char *)s + i, &l);
        if (cp >= 324 || g_u2b[cp] < 0) return false;
        unsigned char b = (unsigned char)g_u2b[cp];
        oh_buf_put(out, &b, 1);
        i += l;
    }
    return true;
}

static void matcher_build(tok_matcher *m, const tok_added *a, size_t na, bool normalized) {
    memset(m, 0, sizeof *m);
    size_t cnt[256] = {0};
    for (size_t i = 0; i < na; i++)
        if (a[i].normalized == normalized && a[i].len) cnt[(unsigned char)a[i].text[0]]++, m->n++;
    m->order = oh_malloc((m->n ? m->n : 1) * sizeof *m->order);
    uint32_t pos = 0;
    for (int b = 0; b < 256; b++) { m->start[b] = pos; pos += (uint32_t)cnt[b]; m->first[b] = cnt[b] > 0; }
    m->start[256] = pos;
    uint32_t fill[256];
    memcpy(fill, m->start, sizeof fill);
    for (size_t i = 0; i < na; i++)
        if (a[i].normalized == normalized && a[i].len) m->order[fill[(unsigned char)a[i].text[0]]++] = (uint32_t)i;
    /* longest first within a bucket (insertion sort; buckets are small) */
    for (int b = 0; b < 256; b++)
        for (uint32_t i = m->start[b] + 1; i < m->start[b + 1]; i++) {
            uint32_t v = m->order[i], j = i;
            while (j > m->start[b] && a[m->order[j - 1]].len < a[v].len) { m->order[j] = m->order[j - 1]; j--; }
            m->order[j] = v;
        }
}

void tok_free(tok_tokenizer *t);
static void state_drop(uint64_t uid);

void tok_free(tok_tokenizer *t) {
    if (!t) return;
    state_drop(t->uid);
    free(t->what);
    oh_buf_free(&t->str.arena);
    oh_buf_free(&t->dec.arena);
    free(t->str.off); free(t->str.len); free(t->dec.off); free(t->dec.len); free(t->flags);
    free(t->by_str.slot);
    free(t->by_bytes.slot);
    free(t->merges.slot);
    for (size_t i = 0; i < t->nadded; i++) free(t->added[i].text);
    free(t->added);
    free(t->m_raw.order);
    free(t->m_norm.order);
    if (t->word_re) pcre2_code_free(t->word_re);
    for (int i = 0; i < t->nsplits; i++) pcre2_code_free(t->splits[i].re);
    free(t->splits);
    if (t->bl_re) pcre2_code_free(t->bl_re);
    free(t->tmpl_pre);
    free(t->tmpl_post);
    free(t);
}

/* Register a model vocabulary entry: spelling s (n bytes) at id. */
static int add_vocab_entry(tok_tokenizer *t, const char *s, size_t n, int32_t id, oh_buf *tmp, oh_err *err) {
    ids_reserve(t, id);
    uint64_t h = hash_bytes(s, n);
    if (t->str.len[id] != UINT32_MAX)
        return oh_errf(err, "%s: model.vocab: id %d is given to both \"%s\" and \"%.*s\"", t->what, id,
                       t->str.arena.p + t->str.off[id], (int)n, s);
    if (idmap_find(&t->by_str, &t->str, s, n, h) >= 0)
        return oh_errf(err, "%s: model.vocab: token \"%.*s\" appears twice", t->what, (int)n, s);
    keys_set(&t->str, id, s, n);
    idmap_add(&t->by_str, id, h);
    t->flags[id] |= TOK_F_VOCAB;
    if (id > t->max_id) t->max_id = id;
    if (spelling_to_bytes(s, n, tmp)) {
        keys_set(&t->dec, id, tmp->p ? tmp->p : "", tmp->n);
        idmap_add(&t->by_bytes, id, hash_bytes(tmp->p ? tmp->p : "", tmp->n));
    } else {
        /* not reachable by byte-level BPE; decodes to its own UTF-8 (HF's ByteLevel decoder) */
        keys_set(&t->dec, id, s, n);
    }
    return 0;
}

static int finish_byte_ids(tok_tokenizer *t, oh_err *err) {
    for (int b = 0; b < 256; b++) {
        unsigned char c = (unsigned char)b;
        t->byte_id[b] = idmap_find(&t->by_bytes, &t->dec, (const char *)&c, 1, hash_bytes(&c, 1));
        if (t->byte_id[b] < 0) {
            char u[5] = {0};
            oh_utf8_put(u, g_b2u[b]);
            return oh_errf(err, "%s: the vocabulary lacks the byte-level symbol \"%s\" for byte 0x%02x "
                                "(byte-level BPE needs all 256)", t->what, u, b);
        }
    }
    return 0;
}

/* Add an added token the way HF's AddedVocabulary does (id: an existing added
 * token with that content, else the model's vocab, else the next free id) and
 * check it against the id the file declares (declared < 0: take it). */
static int add_added_token(tok_tokenizer *t, const tok_added *a, int32_t declared, int32_t *next_id, oh_err *err) {
    uint64_t h = hash_bytes(a->text, a->len);
    int32_t v = idmap_find(&t->by_str, &t->str, a->text, a->len, h);
    if (v >= 0 && (t->flags[v] & TOK_F_ADDED))
        return oh_errf(err, "%s: added_tokens: \"%s\" appears twice", t->what, a->text);
    int32_t id = v >= 0 ? v : (*next_id)++;
    if (declared >= 0 && declared != id)
        return oh_errf(err, "%s: added_tokens: \"%s\" is declared with id %d but Hugging Face tokenizers would give "
                            "it id %d; refusing to guess", t->what, a->text, declared, id);
    ids_reserve(t, id);
    if (v < 0) {
        if (t->str.len[id] != UINT32_MAX)
            return oh_errf(err, "%s: added_tokens: \"%s\" would get id %d, which the vocabulary gives to \"%s\"",
                           t->what, a->text, id, t->str.arena.p + t->str.off[id]);
        keys_set(&t->str, id, a->text, a->len);
        idmap_add(&t->by_str, id, h);
        /* HF's ByteLevel decoder: all byte-level symbols -> those bytes, else the UTF-8 as is */
        oh_buf tmp = {0};
        if (spelling_to_bytes(a->text, a->len, &tmp)) keys_set(&t->dec, id, tmp.p ? tmp.p : "", tmp.n);
        else keys_set(&t->dec, id, a->text, a->len);
        oh_buf_free(&tmp);
    }
    t->flags[id] |= TOK_F_ADDED | (a->special ? TOK_F_SPECIAL : 0);
    if (id > t->max_id) t->max_id = id;
    t->added = oh_realloc(t->added, (t->nadded + 1) * sizeof *t->added);
    t->added[t->nadded] = *a;
    t->added[t->nadded].text = oh_strndup(a->text, a->len);
    t->added[t->nadded].id = id;
    t->nadded++;
    return 0;
}

static int finish_added(tok_tokenizer *t, oh_err *err) {
    matcher_build(&t->m_raw, t->added, t->nadded, false);
    matcher_build(&t->m_norm, t->added, t->nadded, true);
    bool sw = false;
    for (size_t i = 0; i < t->nadded; i++) sw |= t->added[i].single_word;
    if (sw) {
        static const char word[] = "[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}]";
        int ec;
        PCRE2_SIZE eo;
        t->word_re = pcre2_compile((PCRE2_SPTR)word, sizeof word - 1, PCRE2_UTF | PCRE2_UCP | PCRE2_ANCHORED, &ec, &eo, NULL);
        if (!t->word_re) return oh_errf(err, "%s: this PCRE2 lacks \\p{Alphabetic} (needs 10.40+), needed by single_word", t->what);
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* reading files                                                            */
/* ------------------------------------------------------------------------ */

/* Whole file, gzip-compressed or not (zlib reads plain files transparently). */
static int read_maybe_gz(const char *path, char **out, size_t *len, oh_err *err) {
    gzFile f = gzopen(path, "rb");
    if (!f) return oh_errf(err, "%s: cannot open", path);
    gzbuffer(f, 1 << 17);
    size_t cap = 1 << 20, n = 0;
    char *buf = oh_malloc(cap + 1);
    for (;;) {
        if (n == cap) { cap *= 2; buf = oh_realloc(buf, cap + 1); }
        size_t want = cap - n;
        if (want > (1u << 30)) want = 1u << 30;
        int r = gzread(f, buf + n, (unsigned)want);
        if (r < 0) {
            int e;
            const char *m = gzerror(f, &e);
            oh_errf(err, "%s: read error: %s", path, m ? m : "?");
            gzclose(f);
            free(buf);
            return -1;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    gzclose(f);
    buf[n] = 0;
    *out = buf;
    *len = n;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* tokenizer.json                                                           */
/* ------------------------------------------------------------------------ */

typedef struct jctx {
    const oh_json *j;
    const char *what;
    oh_err *err;
} jctx;

/* The "type" of object i as a malloc'd string, or NULL. */
static char *jtype(const oh_json *j, int i) { return oh_json_str(j, oh_json_get(j, i, "type"), NULL); }

static int jbool(jctx *c, int obj, const char *key, bool dflt, bool *out, const char *where) {
    int v = oh_json_get(c->j, obj, key);
    *out = dflt;
    if (v < 0 || oh_json_is_null(c->j, v)) return 0;
    if (oh_json_bool(c->j, v, out)) return oh_errf(c->err, "%s: %s.%s must be true or false", c->what, where, key);
    return 0;
}

/* A string field that must be null, absent or "". */
static int jempty_str(jctx *c, int obj, const char *key, const char *where) {
    int v = oh_json_get(c->j, obj, key);
    if (v < 0 || oh_json_is_null(c->j, v)) return 0;
    size_t n;
    char *s = oh_json_str(c->j, v, &n);
    free(s);
    if (s && n == 0) return 0;
    return oh_errf(c->err, "%s: %s.%s is not supported (only null)", c->what, where, key);
}

static int load_model(tok_tokenizer *t, jctx *c, int m) {
    const oh_json *j = c->j;
    if (m < 0 || oh_json_type(j, m) != JSMN_OBJECT) return oh_errf(c->err, "%s: no \"model\" object", c->what);
    char *ty = jtype(j, m);
    if (ty && strcmp(ty, "BPE")) {
        oh_errf(c->err, "%s: model type \"%s\" is not supported (only BPE)", c->what, ty);
        free(ty);
        return -1;
    }
    free(ty);
    int dv = oh_json_get(j, m, "dropout");
    if (dv >= 0 && !oh_json_is_null(j, dv)) {
        double d;
        if (oh_json_num(j, dv, &d) || d != 0.0) return oh_errf(c->err, "%s: model.dropout is not supported (only null or 0)", c->what);
    }
    if (jempty_str(c, m, "continuing_subword_prefix", "model") || jempty_str(c, m, "end_of_word_suffix", "model")) return -1;
    bool bf;
    if (jbool(c, m, "byte_fallback", false, &bf, "model")) return -1;
    if (bf) return oh_errf(c->err, "%s: model.byte_fallback true is not supported", c->what);
    if (jbool(c, m, "ignore_merges", false, &t->ignore_merges, "model")) return -1;
    int uv = oh_json_get(j, m, "unk_token");
    if (uv >= 0 && !oh_json_is_null(j, uv) && !oh_json_is_str(j, uv))
        return oh_errf(c->err, "%s: model.unk_token must be a string or null", c->what);
    /* (unk_token is never used: every byte has a symbol, checked below) */

    int voc = oh_json_get(j, m, "vocab");
    if (voc < 0 || oh_json_type(j, voc) != JSMN_OBJECT) return oh_errf(c->err, "%s: model.vocab must be an object", c->what);
    int nv = oh_json_size(j, voc);
    idmap_init(&t->by_str, (size_t)nv + 1024);
    idmap_init(&t->by_bytes, (size_t)nv + 16);
    oh_buf tmp = {0};
    int i = voc + 1;
    for (int k = 0; k < nv; k++) {
        size_t sn;
        char *s = oh_json_str(j, i, &sn);
        long long id;
        if (oh_json_int(j, i + 1, &id) || id < 0 || id >= (1ll << 30)) {
            oh_errf(c->err, "%s: model.vocab[\"%s\"] must be an integer id in [0, 2^30)", c->what, s ? s : "?");
            free(s);
            oh_buf_free(&tmp);
            return -1;
        }
        int rc = add_vocab_entry(t, s, sn, (int32_t)id, &tmp, c->err);
        free(s);
        if (rc) { oh_buf_free(&tmp); return -1; }
        i = oh_json_skip(j, i + 1);
    }
    if (finish_byte_ids(t, c->err)) { oh_buf_free(&tmp); return -1; }

    int mg = oh_json_get(j, m, "merges");
    if (mg < 0 || oh_json_type(j, mg) != JSMN_ARRAY) { oh_buf_free(&tmp); return oh_errf(c->err, "%s: model.merges must be an array", c->what); }
    int nm = oh_json_size(j, mg);
    pairmap_init(&t->merges, (size_t)nm + 16);
    uint32_t rank = 0;
    i = mg + 1;
    for (int k = 0; k < nm; k++, i = oh_json_skip(j, i)) {
        char *a = NULL, *b = NULL;
        size_t an = 0, bn = 0;
        if (oh_json_is_str(j, i)) {
            size_t sn;
            char *s = oh_json_str(j, i, &sn);
            if (sn >= 8 && !memcmp(s, "#version", 8)) { free(s); continue; }
            char *sp = memchr(s, ' ', sn);
            if (!sp || memchr(sp + 1, ' ', sn - (size_t)(sp + 1 - s))) {
                oh_errf(c->err, "%s: model.merges[%d] \"%s\" is not two tokens separated by one space", c->what, k, s);
                free(s);
                oh_buf_free(&tmp);
                return -1;
            }
            an = (size_t)(sp - s);
            a = oh_strndup(s, an);
            bn = sn - an - 1;
            b = oh_strndup(sp + 1, bn);
            free(s);
        } else if (oh_json_type(j, i) == JSMN_ARRAY && oh_json_size(j, i) == 2 && oh_json_is_str(j, i + 1) &&
                   oh_json_is_str(j, i + 2)) {
            a = oh_json_str(j, i + 1, &an);
            b = oh_json_str(j, i + 2, &bn);
        } else {
            oh_buf_free(&tmp);
            return oh_errf(c->err, "%s: model.merges[%d] must be \"a b\" or [\"a\", \"b\"]", c->what, k);
        }
        int32_t ia = idmap_find(&t->by_str, &t->str, a, an, hash_bytes(a, an));
        int32_t ib = idmap_find(&t->by_str, &t->str, b, bn, hash_bytes(b, bn));
        tmp.n = 0;
        oh_buf_put(&tmp, a, an);
        oh_buf_put(&tmp, b, bn);
        int32_t inew = idmap_find(&t->by_str, &t->str, tmp.p, tmp.n, hash_bytes(tmp.p, tmp.n));
        if (ia < 0 || ib < 0 || inew < 0) {
            oh_errf(c->err, "%s: model.merges[%d] (\"%s\", \"%s\"): \"%s\" is not in the vocabulary", c->what, k, a, b,
                    ia < 0 ? a : ib < 0 ? b : tmp.p);
            free(a); free(b);
            oh_buf_free(&tmp);
            return -1;
        }
        pairmap_put(&t->merges, ia, ib, rank++, inew);
        free(a);
        free(b);
    }
    oh_buf_free(&tmp);
    return 0;
}

static int load_added_tokens(tok_tokenizer *t, jctx *c, int arr, int32_t vocab_entries) {
    const oh_json *j = c->j;
    if (arr < 0 || oh_json_is_null(j, arr)) return finish_added(t, c->err);
    if (oh_json_type(j, arr) != JSMN_ARRAY) return oh_errf(c->err, "%s: added_tokens must be an array", c->what);
    /* HF adds them all in one call: a token the vocab lacks gets the next id,
     * counting from the vocab's size (its number of entries) */
    int32_t next_id = vocab_entries;
    int na = oh_json_size(j, arr), i = arr + 1;
    for (int k = 0; k < na; k++, i = oh_json_skip(j, i)) {
        if (oh_json_type(j, i) != JSMN_OBJECT) return oh_errf(c->err, "%s: added_tokens[%d] must be an object", c->what, k);
        size_t n;
        char *content = oh_json_str(j, oh_json_get(j, i, "content"), &n);
        if (!content) return oh_errf(c->err, "%s: added_tokens[%d] has no \"content\" string", c->what, k);
        if (n == 0) { free(content); continue; } /* HF ignores empty tokens */
        char where[64];
        snprintf(where, sizeof where, "added_tokens[%d]", k);
        tok_added a = {.text = content, .len = (uint32_t)n};
        long long id = -1;
        int iv = oh_json_get(j, i, "id");
        if (iv >= 0 && (oh_json_int(j, iv, &id) || id < 0 || id >= (1ll << 30))) {
            free(content);
            return oh_errf(c->err, "%s: %s.id must be an integer in [0, 2^30)", c->what, where);
        }
        if (jbool(c, i, "special", false, &a.special, where) || jbool(c, i, "single_word", false, &a.single_word, where) ||
            jbool(c, i, "lstrip", false, &a.lstrip, where) || jbool(c, i, "rstrip", false, &a.rstrip, where) ||
            jbool(c, i, "normalized", !a.special, &a.normalized, where)) {
            free(content);
            return -1;
        }
        int rc = add_added_token(t, &a, (int32_t)id, &next_id, c->err);
        free(content);
        if (rc) return -1;
    }
    return finish_added(t, c->err);
}

static int load_bytelevel(tok_tokenizer *t, jctx *c, int obj, const char *where) {
    bool use_regex;
    if (jbool(c, obj, "add_prefix_space", true, &t->bl_prefix_space, where) || jbool(c, obj, "use_regex", true, &use_regex, where))
        return -1;
    if (use_regex) {
        t->bl_re = re_compile(TOK_GPT2_PATTERN, strlen(TOK_GPT2_PATTERN), RE_DIALECT_ONIG, false, c->what, c->err);
        if (!t->bl_re) return -1;
    }
    return 0;
}

static int load_split(tok_tokenizer *t, jctx *c, int obj, const char *where) {
    const oh_json *j = c->j;
    char *beh = oh_json_str(j, oh_json_get(j, obj, "behavior"), NULL);
    if (!beh || strcmp(beh, "Isolated")) {
        oh_errf(c->err, "%s: %s: Split behavior \"%s\" is not supported (only Isolated)", c->what, where, beh ? beh : "(missing)");
        free(beh);
        return -1;
    }
    free(beh);
    bool invert;
    if (jbool(c, obj, "invert", false, &invert, where)) return -1;
    if (invert) return oh_errf(c->err, "%s: %s: Split invert true is not supported", c->what, where);
    int p = oh_json_get(j, obj, "pattern");
    int rv = oh_json_get(j, p, "Regex"), sv = oh_json_get(j, p, "String");
    size_t n;
    char *pat = oh_json_str(j, rv >= 0 ? rv : sv, &n);
    if (!pat) return oh_errf(c->err, "%s: %s: Split pattern must be {\"Regex\": ...} or {\"String\": ...}", c->what, where);
    char what[600];
    snprintf(what, sizeof what, "%s: %s", c->what, where);
    pcre2_code *re = re_compile(pat, n, RE_DIALECT_ONIG, rv < 0, what, c->err);
    free(pat);
    if (!re) return -1;
    t->splits = oh_realloc(t->splits, (size_t)(t->nsplits + 1) * sizeof *t->splits);
    t->splits[t->nsplits++] = (tok_split){re, true};
    return 0;
}

static int load_pre_tokenizer(tok_tokenizer *t, jctx *c, int pt) {
    const oh_json *j = c->j;
    if (pt < 0 || oh_json_is_null(j, pt))
        return oh_errf(c->err, "%s: pre_tokenizer null is not supported (byte-level BPE needs ByteLevel)", c->what);
    char *ty = jtype(j, pt);
    int rc = 0;
    if (ty && !strcmp(ty, "ByteLevel")) rc = load_bytelevel(t, c, pt, "pre_tokenizer");
    else if (ty && !strcmp(ty, "Sequence")) {
        int arr = oh_json_get(j, pt, "pretokenizers");
        int n = oh_json_size(j, arr), i = arr + 1;
        if (oh_json_type(j, arr) != JSMN_ARRAY || n == 0) rc = oh_errf(c->err, "%s: pre_tokenizer.pretokenizers must be a non-empty array", c->what);
        for (int k = 0; !rc && k < n; k++, i = oh_json_skip(j, i)) {
            char where[64];
            snprintf(where, sizeof where, "pre_tokenizer.pretokenizers[%d]", k);
            char *sty = jtype(j, i);
            if (sty && !strcmp(sty, "Split") && k < n - 1) rc = load_split(t, c, i, where);
            else if (sty && !strcmp(sty, "ByteLevel") && k == n - 1) rc = load_bytelevel(t, c, i, where);
            else if (sty && (!strcmp(sty, "Split") || !strcmp(sty, "ByteLevel")))
                rc = oh_errf(c->err, "%s: %s: %s must come %s (supported: Split..., then one ByteLevel last)", c->what,
                             where, sty, !strcmp(sty, "Split") ? "before the ByteLevel" : "last");
            else rc = oh_errf(c->err, "%s: %s: pre-tokenizer type \"%s\" is not supported (supported: Split, ByteLevel)",
                              c->what, where, sty ? sty : "(missing)");
            free(sty);
        }
    } else rc = oh_errf(c->err, "%s: pre_tokenizer type \"%s\" is not supported (supported: ByteLevel, Sequence of Split + ByteLevel)",
                        c->what, ty ? ty : "(missing)");
    free(ty);
    return rc;
}

static int load_template(tok_tokenizer *t, jctx *c, int obj, const char *where) {
    const oh_json *j = c->j;
    int single = oh_json_get(j, obj, "single");
    if (oh_json_type(j, single) != JSMN_ARRAY) return oh_errf(c->err, "%s: %s.single must be an array", c->what, where);
    int specials = oh_json_get(j, obj, "special_tokens");
    int n = oh_json_size(j, single), i = single + 1;
    bool seen_a = false;
    for (int k = 0; k < n; k++, i = oh_json_skip(j, i)) {
        int st = oh_json_get(j, i, "SpecialToken"), sq = oh_json_get(j, i, "Sequence");
        if (sq >= 0) {
            if (!oh_json_eq(j, oh_json_get(j, sq, "id"), "A") || seen_a)
                return oh_errf(c->err, "%s: %s.single[%d]: only one Sequence \"A\" is supported", c->what, where, k);
            seen_a = true;
            continue;
        }
        char *name = oh_json_str(j, oh_json_get(j, st, "id"), NULL);
        if (!name) return oh_errf(c->err, "%s: %s.single[%d] must be a SpecialToken or Sequence", c->what, where, k);
        int sp = oh_json_get(j, specials, name);
        int ids = oh_json_get(j, sp, "ids");
        if (oh_json_type(j, ids) != JSMN_ARRAY) {
            oh_errf(c->err, "%s: %s.special_tokens has no ids for \"%s\"", c->what, where, name);
            free(name);
            return -1;
        }
        free(name);
        for (int q = 0; q < oh_json_size(j, ids); q++) {
            long long v;
            if (oh_json_int(j, oh_json_at(j, ids, q), &v) || v < 0 || v >= (1ll << 30))
                return oh_errf(c->err, "%s: %s.special_tokens: ids must be integers", c->what, where);
            int32_t **arr = seen_a ? &t->tmpl_post : &t->tmpl_pre;
            size_t *cnt = seen_a ? &t->ntmpl_post : &t->ntmpl_pre;
            *arr = oh_realloc(*arr, (*cnt + 1) * sizeof **arr);
            (*arr)[(*cnt)++] = (int32_t)v;
        }
    }
    if (!seen_a) return oh_errf(c->err, "%s: %s.single has no Sequence \"A\"", c->what, where);
    return 0;
}

static int load_post_processor(tok_tokenizer *t, jctx *c, int pp, const char *where) {
    const oh_json *j = c->j;
    if (pp < 0 || oh_json_is_null(j, pp)) return 0;
    char *ty = jtype(j, pp);
    int rc = 0;
    if (ty && !strcmp(ty, "ByteLevel")) rc = 0; /* only trims offsets */
    else if (ty && !strcmp(ty, "TemplateProcessing")) {
        if (t->ntmpl_pre || t->ntmpl_post) rc = oh_errf(c->err, "%s: %s: more than one TemplateProcessing", c->what, where);
        else rc = load_template(t, c, pp, where);
    } else if (ty && !strcmp(ty, "Sequence")) {
        int arr = oh_json_get(j, pp, "processors");
        int n = oh_json_size(j, arr), i = arr + 1;
        for (int k = 0; !rc && k < n; k++, i = oh_json_skip(j, i)) {
            char w[96];
            snprintf(w, sizeof w, "%s.processors[%d]", where, k);
            rc = load_post_processor(t, c, i, w);
        }
    } else rc = oh_errf(c->err, "%s: %s type \"%s\" is not supported (supported: ByteLevel, TemplateProcessing)", c->what,
                        where, ty ? ty : "(missing)");
    free(ty);
    return rc;
}

static int load_hf(tok_tokenizer *t, const oh_json *j, oh_err *err) {
    jctx c = {j, t->what, err};
    if (oh_json_type(j, 0) != JSMN_OBJECT) return oh_errf(err, "%s: not a JSON object", t->what);
    int v = oh_json_get(j, 0, "version");
    if (v >= 0 && !oh_json_eq(j, v, "1.0")) return oh_errf(err, "%s: tokenizer version must be \"1.0\"", t->what);
    static const char *const must_null[] = {"truncation", "padding"};
    for (int k = 0; k < 2; k++) {
        v = oh_json_get(j, 0, must_null[k]);
        if (v >= 0 && !oh_json_is_null(j, v))
            return oh_errf(err, "%s: %s is set; it is not supported (set it to null)", t->what, must_null[k]);
    }
    v = oh_json_get(j, 0, "normalizer");
    if (v >= 0 && !oh_json_is_null(j, v)) {
        char *ty = jtype(j, v);
        bool empty_seq = ty && !strcmp(ty, "Sequence") && oh_json_size(j, oh_json_get(j, v, "normalizers")) == 0;
        if (!empty_seq) {
            oh_errf(err, "%s: normalizer type \"%s\" is not supported (only null)", t->what, ty ? ty : "(missing)");
            free(ty);
            return -1;
        }
        free(ty);
    }
    v = oh_json_get(j, 0, "decoder");
    char *ty = v >= 0 && !oh_json_is_null(j, v) ? jtype(j, v) : NULL;
    if (!ty || strcmp(ty, "ByteLevel")) {
        oh_errf(err, "%s: decoder %s%s%s is not supported (only ByteLevel)", t->what, ty ? "type \"" : "null", ty ? ty : "",
                ty ? "\"" : "");
        free(ty);
        return -1;
    }
    free(ty);
    if (load_model(t, &c, oh_json_get(j, 0, "model"))) return -1;
    if (load_pre_tokenizer(t, &c, oh_json_get(j, 0, "pre_tokenizer"))) return -1;
    if (load_added_tokens(t, &c, oh_json_get(j, 0, "added_tokens"), (int32_t)t->by_str.count)) return -1;
    if (load_post_processor(t, &c, oh_json_get(j, 0, "post_processor"), "post_processor")) return -1;
    for (size_t i = 0; i < t->ntmpl_pre + t->ntmpl_post; i++) {
        int32_t id = i < t->ntmpl_pre ? t->tmpl_pre[i] : t->tmpl_post[i - t->ntmpl_pre];
        if (id > t->max_id || t->str.len[id] == UINT32_MAX)
            return oh_errf(err, "%s: post_processor uses id %d, which the tokenizer does not have", t->what, id);
    }
    return 0;
}

tok_tokenizer *tok_load_json(const char *json, size_t len, const char *what, oh_err *err) {
    oh_json j;
    if (oh_json_parse(&j, json, len, what, err)) return NULL;
    tok_tokenizer *t = tok_new(what);
    int rc = load_hf(t, &j, err);
    oh_json_free(&j);
    if (rc) { tok_free(t); return NULL; }
    return t;
}

tok_tokenizer *tok_load(const char *path, oh_err *err) {
    char *file = NULL;
    if (oh_is_dir(path)) {
        file = oh_path_join(path, "tokenizer.json");
        if (!oh_file_exists(file)) {
            char *gz = oh_path_join(path, "tokenizer.json.gz");
            if (oh_file_exists(gz)) { free(file); file = gz; }
            else {
                free(gz);
                oh_errf(err, "%s: no tokenizer.json in this directory", path);
                free(file);
                return NULL;
            }
        }
    } else file = oh_strdup(path);
    char *buf;
    size_t n;
    if (read_maybe_gz(file, &buf, &n, err)) { free(file); return NULL; }
    tok_tokenizer *t = tok_load_json(buf, n, file, err);
    free(buf);
    free(file);
    return t;
}

/* ------------------------------------------------------------------------ */
/* tiktoken ranks                                                           */
/* ------------------------------------------------------------------------ */

static int b64val(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
}

/* Standard base64 (padding optional) into out; false if malformed. */
static bool b64_decode(const char *s, size_t n, oh_buf *out) {
    out->n = 0;
    while (n && s[n - 1] == '=') n--;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64val((unsigned char)s[i]);
        if (v < 0) return false;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            unsigned char b = (unsigned char)(acc >> bits);
            oh_buf_put(out, &b, 1);
        }
    }
    return bits < 6;
}

static int tik_add_rank(tok_tokenizer *t, const char *b64, size_t n, long long rank, const char *where, oh_buf *bytes,
                        oh_buf *spell, oh_err *err) {
    if (!b64_decode(b64, n, bytes) || bytes->n == 0)
        return oh_errf(err, "%s: %s: bad base64 token \"%.*s\"", t->what, where, (int)(n > 60 ? 60 : n), b64);
    if (rank < 0 || rank >= (1ll << 30)) return oh_errf(err, "%s: %s: rank %lld out of range", t->what, where, rank);
    int32_t id = (int32_t)rank;
    ids_reserve(t, id);
    if (t->str.len[id] != UINT32_MAX) return oh_errf(err, "%s: %s: rank %d appears twice", t->what, where, id);
    uint64_t h = hash_bytes(bytes->p, bytes->n);
    if (idmap_find(&t->by_bytes, &t->dec, bytes->p, bytes->n, h) >= 0)
        return oh_errf(err, "%s: %s: token \"%.*s\" appears twice", t->what, where, (int)n, b64);
    keys_set(&t->dec, id, bytes->p, bytes->n);
    idmap_add(&t->by_bytes, id, h);
    bytes_to_spelling((const unsigned char *)bytes->p, bytes->n, spell);
    keys_set(&t->str, id, spell->p, spell->n);
    idmap_add(&t->by_str, id, hash_bytes(spell->p, spell->n));
    t->flags[id] |= TOK_F_VOCAB;
    if (id > t->max_id) t->max_id = id;
    return 0;
}

tok_tokenizer *tok_load_tiktoken(const char *path, const char *pattern, const tok_special *specials, size_t nspecials,
                                 oh_err *err) {
    char *buf;
    size_t len;
    if (read_maybe_gz(path, &buf, &len, err)) return NULL;
    tok_tokenizer *t = tok_new(path);
    idmap_init(&t->by_str, 1 << 17);
    idmap_init(&t->by_bytes, 1 << 17);
    oh_buf bytes = {0}, spell = {0};
    char *pat = NULL, *ranks = NULL;
    oh_json j = {0};
    tok_special *jspecial = NULL;
    size_t njspecial = 0;
    int rc = -1;
    size_t p0 = 0;
    while (p0 < len && strchr(" \t\r\n", buf[p0]) && buf[p0]) p0++;
    const char *body = buf;
    size_t body_n = len;
    if (p0 < len && buf[p0] == '{') { /* the npm package's JSON */
        if (oh_json_parse(&j, buf, len, path, err)) goto out;
        pat = oh_json_str(&j, oh_json_get(&j, 0, "pat_str"), NULL);
        ranks = oh_json_str(&j, oh_json_get(&j, 0, "bpe_ranks"), &body_n);
        if (!ranks) { oh_errf(err, "%s: no \"bpe_ranks\" string", path); goto out; }
        body = ranks;
        int sp = oh_json_get(&j, 0, "special_tokens");
        if (sp >= 0 && oh_json_type(&j, sp) == JSMN_OBJECT) {
            int ns = oh_json_size(&j, sp), i = sp + 1;
            jspecial = oh_calloc((size_t)ns + 1, sizeof *jspecial);
            for (int k = 0; k < ns; k++, i = oh_json_skip(&j, i + 1)) {
                long long id;
                char *name = oh_json_str(&j, i, NULL);
                if (oh_json_int(&j, i + 1, &id) || id < 0 || id >= (1ll << 30)) {
                    oh_errf(err, "%s: special_tokens[\"%s\"] must be an integer id", path, name ? name : "?");
                    free(name);
                    goto out;
                }
                jspecial[njspecial++] = (tok_special){name, (int32_t)id};
            }
        }
        /* lines "! first_rank tok tok ..." */
        size_t lineno = 0;
        for (size_t a = 0; a < body_n;) {
            size_t e = a;
            while (e < body_n && body[e] != '\n') e++;
            lineno++;
            char where[64];
            snprintf(where, sizeof where, "bpe_ranks line %zu", lineno);
            size_t f = a, field = 0;
            long long rank = 0;
            while (f < e) {
                size_t g = f;
                while (g < e && body[g] != ' ') g++;
                if (g > f) {
                    if (field == 0 && !(g - f == 1 && body[f] == '!')) { oh_errf(err, "%s: %s does not start with \"! RANK\"", path, where); goto out; }
                    if (field == 1) {
                        char num[32];
                        size_t l = g - f < 31 ? g - f : 31;
                        memcpy(num, body + f, l);
                        num[l] = 0;
                        char *endp;
                        rank = strtoll(num, &endp, 10);
                        if (*endp) { oh_errf(err, "%s: %s: bad rank \"%s\"", path, where, num); goto out; }
                    }
                    if (field >= 2 && tik_add_rank(t, body + f, g - f, rank++, where, &bytes, &spell, err)) goto out;
                    field++;
                }
                f = g + 1;
            }
            a = e + 1;
        }
    } else { /* tiktoken's "base64 rank" lines */
        size_t lineno = 0;
        for (size_t a = 0; a < body_n;) {
            size_t e = a;
            while (e < body_n && body[e] != '\n') e++;
            lineno++;
            size_t l = e;
            if (l > a && body[l - 1] == '\r') l--;
            if (l > a) {
                char where[64];
                snprintf(where, sizeof where, "line %zu", lineno);
                const char *sp = memchr(body + a, ' ', l - a);
                if (!sp) { oh_errf(err, "%s: %s is not \"base64token rank\"", path, where); goto out; }
                char num[32];
                size_t nl = (size_t)(body + l - (sp + 1));
                if (nl == 0 || nl > 31) { oh_errf(err, "%s: %s: bad rank", path, where); goto out; }
                memcpy(num, sp + 1, nl);
                num[nl] = 0;
                char *endp;
                long long rank = strtoll(num, &endp, 10);
                if (*endp) { oh_errf(err, "%s: %s: bad rank \"%s\"", path, where, num); goto out; }
                if (tik_add_rank(t, body + a, (size_t)(sp - (body + a)), rank, where, &bytes, &spell, err)) goto out;
            }
            a = e + 1;
        }
    }
    if (t->max_id < 0) { oh_errf(err, "%s: no ranks", path); goto out; }
    if (finish_byte_ids(t, err)) goto out;
    /* merges implied by ranks: every split of a token into two tokens merges
     * to it at the token's rank (tiktoken ranks a pair by its concatenation) */
    pairmap_init(&t->merges, (size_t)t->max_id * 2 + 16);
    for (int32_t id = 0; id <= t->max_id; id++) {
        if (t->dec.len[id] == UINT32_MAX || t->dec.len[id] < 2) continue;
        const char *s = t->dec.arena.p + t->dec.off[id];
        size_t n = t->dec.len[id];
        for (size_t k = 1; k < n; k++) {
            int32_t a = idmap_find(&t->by_bytes, &t->dec, s, k, hash_bytes(s, k));
            if (a < 0) continue;
            int32_t b = idmap_find(&t->by_bytes, &t->dec, s + k, n - k, hash_bytes(s + k, n - k));
            if (b >= 0) pairmap_put(&t->merges, a, b, (uint32_t)id, id);
        }
    }
    t->ignore_merges = true;
    /* special tokens */
    if (!specials) { specials = jspecial; nspecials = njspecial; }
    for (size_t k = 0; k < nspecials; k++) {
        if (!specials[k].text || !specials[k].text[0]) { oh_errf(err, "%s: special token %zu has no text", path, k); goto out; }
        int32_t id = specials[k].id;
        if (id < 0 || id >= (1 << 30)) { oh_errf(err, "%s: special token \"%s\" has a bad id %d", path, specials[k].text, id); goto out; }
        ids_reserve(t, id);
        if (t->str.len[id] != UINT32_MAX) {
            oh_errf(err, "%s: special token \"%s\" has id %d, which is already \"%s\"", path, specials[k].text, id,
                    t->str.arena.p + t->str.off[id]);
            goto out;
        }
        tok_added a = {.text = (char *)specials[k].text, .len = (uint32_t)strlen(specials[k].text), .special = true};
        int32_t next = id;
        if (add_added_token(t, &a, id, &next, err)) goto out;
        /* its own text, not the GPT-2 spelling's bytes */
        keys_set(&t->dec, id, a.text, a.len);
    }
    if (finish_added(t, err)) goto out;
    const char *p = pattern ? pattern : pat ? pat : TOK_CL100K_PATTERN;
    t->splits = oh_malloc(sizeof *t->splits);
    t->splits[0].re = re_compile(p, strlen(p), RE_DIALECT_RUST, false, path, err);
    t->splits[0].keep_gaps = false;
    if (!t->splits[0].re) goto out;
    t->nsplits = 1;
    rc = 0;
out:
    for (size_t k = 0; k < njspecial; k++) free((char *)jspecial[k].text);
    free(jspecial);
    oh_json_free(&j);
    free(pat);
    free(ranks);
    free(buf);
    oh_buf_free(&bytes);
    oh_buf_free(&spell);
    if (rc) { tok_free(t); return NULL; }
    return t;
}

/* ------------------------------------------------------------------------ */
/* per-thread state: BPE cache, regex match data, scratch                   */
/* ------------------------------------------------------------------------ */

#define CACHE_SLOTS (1u << 16)     /* at most half used */
#define CACHE_ARENA (8u << 20)     /* bytes of keys and ids */
#define CACHE_MAX_KEY 255          /* longer pretokens are not cached (HF: 256) */

typedef struct cache_slot {
    uint32_t h32, off; /* off into the arena */
    uint16_t klen, nids; /* klen 0: empty */
} cache_slot;

typedef struct seg {
    size_t a, b;
    int32_t id; /* -1: text */
} seg;

typedef struct sym {
    int32_t id, prev, next;
    uint32_t len; /* 0: merged away */
} sym;

typedef struct hent {
    uint32_t rank, pos;
    int32_t id;
} hent;

typedef struct tok_state {
    uint64_t uid;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit;
    cache_slot *slot;
    size_t count;
    char *arena;
    size_t arena_n, arena_cap;
    int32_t *out;
    size_t nout, capout;
    seg *seg1, *seg2;
    size_t nseg1, capseg1, nseg2, capseg2;
    char *pfx;
    size_t cappfx;
    sym *sym;
    hent *heap;
    size_t capsym;
} tok_state;

#define TLS_SLOTS 4
typedef struct tls_list {
    tok_state *s[TLS_SLOTS];
} tls_list;

static pthread_key_t g_key;
static pthread_once_t g_key_once = PTHREAD_ONCE_INIT;

static void state_free(tok_state *s) {
    if (!s) return;
    pcre2_match_data_free(s->md);
    pcre2_match_context_free(s->mctx);
    pcre2_jit_stack_free(s->jit);
    free(s->slot);
    free(s->arena);
    free(s->out);
    free(s->seg1);
    free(s->seg2);
    free(s->pfx);
    free(s->sym);
    free(s->heap);
    free(s);
}

static void tls_destroy(void *p) {
    tls_list *l = p;
    for (int i = 0; i < TLS_SLOTS; i++) state_free(l->s[i]);
    free(l);
}

static void key_init(void) { OH_CHECK(pthread_key_create(&g_key, tls_destroy) == 0, "pthread_key_create"); }

static tok_state *state_new(uint64_t uid) {
    tok_state *s = oh_calloc(1, sizeof *s);
    s->uid = uid;
    s->md = pcre2_match_data_create(1, NULL);
    s->mctx = pcre2_match_context_create(NULL);
    s->jit = pcre2_jit_stack_create(32 << 10, 8 << 20, NULL);
    OH_CHECK(s->md && s->mctx && s->jit, "out of memory (PCRE2 match state)");
    pcre2_jit_stack_assign(s->mctx, NULL, s->jit);
    s->slot = oh_calloc(CACHE_SLOTS, sizeof *s->slot);
    return s;
}

static tok_state *state_get(const tok_tokenizer *t) {
    pthread_once(&g_key_once, key_init);
    tls_list *l = pthread_getspecific(g_key);
    if (!l) {
        l = oh_calloc(1, sizeof *l);
        OH_CHECK(pthread_setspecific(g_key, l) == 0, "pthread_setspecific");
    }
    for (int i = 0; i < TLS_SLOTS; i++)
        if (l->s[i] && l->s[i]->uid == t->uid) return l->s[i];
    state_free(l->s[TLS_SLOTS - 1]);
    memmove(l->s + 1, l->s, (TLS_SLOTS - 1) * sizeof *l->s);
    l->s[0] = state_new(t->uid);
    return l->s[0];
}

static void state_drop(uint64_t uid) {
    pthread_once(&g_key_once, key_init);
    tls_list *l = pthread_getspecific(g_key);
    if (!l) return;
    for (int i = 0; i < TLS_SLOTS; i++)
        if (l->s[i] && l->s[i]->uid == uid) {
            state_free(l->s[i]);
            memmove(l->s + i, l->s + i + 1, (size_t)(TLS_SLOTS - 1 - i) * sizeof *l->s);
            l->s[TLS_SLOTS - 1] = NULL;
            return;
        }
}

static inline void out_push(tok_state *s, int32_t id) {
    if (s->nout == s->capout) {
        s->capout = s->capout ? s->capout * 2 : 1024;
        s->out = oh_realloc(s->out, s->capout * sizeof *s->out);
    }
    s->out[s->nout++] = id;
}

static void seg_push(seg **v, size_t *n, size_t *cap, size_t a, size_t b, int32_t id) {
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        *v = oh_realloc(*v, *cap * sizeof **v);
    }
    (*v)[(*n)++] = (seg){a, b, id};
}

static const int32_t *cache_get(const tok_state *s, const char *k, size_t n, uint64_t h, size_t *nids) {
    uint32_t h32 = (uint32_t)(h >> 32);
    for (size_t i = h & (CACHE_SLOTS - 1);; i = (i + 1) & (CACHE_SLOTS - 1)) {
        const cache_slot *c = &s->slot[i];
        if (!c->klen) return NULL;
        if (c->h32 == h32 && c->klen == n && !memcmp(s->arena + c->off, k, n)) {
            *nids = c->nids;
            return (const int32_t *)(s->arena + c->off + ((n + 3) & ~(size_t)3));
        }
    }
}

static void cache_put(tok_state *s, const char *k, size_t n, uint64_t h, const int32_t *ids, size_t nids) {
    size_t need = ((n + 3) & ~(size_t)3) + nids * sizeof(int32_t);
    if (nids > UINT16_MAX || need > CACHE_ARENA / 4) return;
    if (s->count + 1 > CACHE_SLOTS / 2 || s->arena_n + need > CACHE_ARENA) { /* full: start over */
        memset(s->slot, 0, CACHE_SLOTS * sizeof *s->slot);
        s->count = 0;
        s->arena_n = 0;
    }
    if (s->arena_n + need > s->arena_cap) {
        size_t cap = s->arena_cap ? s->arena_cap : 1 << 16;
        while (cap < s->arena_n + need) cap *= 2;
        if (cap > CACHE_ARENA) cap = CACHE_ARENA;
        s->arena = oh_realloc(s->arena, cap);
        s->arena_cap = cap;
    }
    uint32_t off = (uint32_t)s->arena_n;
    memcpy(s->arena + off, k, n);
    memcpy(s->arena + off + ((n + 3) & ~(size_t)3), ids, nids * sizeof(int32_t));
    s->arena_n += need;
    size_t i = h & (CACHE_SLOTS - 1);
    while (s->slot[i].klen) i = (i + 1) & (CACHE_SLOTS - 1);
    s->slot[i] = (cache_slot){(uint32_t)(h >> 32), off, (uint16_t)n, (uint16_t)nids};
    s->count++;
}

/* ------------------------------------------------------------------------ */
/* encoding                                                                 */
/* ------------------------------------------------------------------------ */

static inline bool hless(hent a, hent b) { return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos); }

static void heap_push(hent *h, size_t *n, hent v) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!hless(v, h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

static hent heap_pop(hent *h, size_t *n) {
    hent top = h[0], v = h[--(*n)];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && hless(h[c + 1], h[c])) c++;
        if (!hless(h[c], v)) break;
        h[i] = h[c];
        i = c;
    }
    if (m) h[i] = v;
    return top;
}

/* BPE of one pretoken (n >= 2 bytes) by merge rank, the lowest (rank, pos)
 * first, as HF's Word::merge_all; appends the ids to s->out. */
static void bpe_merge(const tok_tokenizer *t, tok_state *s, const unsigned char *p, size_t n) {
    if (n > s->capsym) {
        s->capsym = n * 2;
        s->sym = oh_realloc(s->sym, s->capsym * sizeof *s->sym);
        s->heap = oh_realloc(s->heap, 3 * s->capsym * sizeof *s->heap);
    }
    sym *y = s->sym;
    hent *h = s->heap;
    size_t nh = 0;
    for (size_t i = 0; i < n; i++) y[i] = (sym){t->byte_id[p[i]], (int32_t)i - 1, i + 1 < n ? (int32_t)i + 1 : -1, 1};
    for (size_t i = 0; i + 1 < n; i++) {
        const pair_slot *m = pairmap_find(&t->merges, y[i].id, y[i + 1].id);
        if (m) heap_push(h, &nh, (hent){m->rank, (uint32_t)i, m->id});
    }
    while (nh) {
        hent top = heap_pop(h, &nh);
        sym *a = &y[top.pos];
        if (!a->len || a->next < 0) continue;
        int32_t rpos = a->next;
        sym r = y[rpos];
        const pair_slot *m = pairmap_find(&t->merges, a->id, r.id);
        if (!m || m->id != top.id) continue; /* stale entry */
        a->id = top.id;
        a->len += r.len;
        a->next = r.next;
        y[rpos].len = 0;
        if (r.next >= 0) y[r.next].prev = (int32_t)top.pos;
        if (a->prev >= 0) {
            const pair_slot *q = pairmap_find(&t->merges, y[a->prev].id, a->id);
            if (q) heap_push(h, &nh, (hent){q->rank, (uint32_t)a->prev, q->id});
        }
        if (a->next >= 0) {
            const pair_slot *q = pairmap_find(&t->merges, a->id, y[a->next].id);
            if (q) heap_push(h, &nh, (hent){q->rank, top.pos, q->id});
        }
    }
    for (int32_t i = 0; i >= 0; i = y[i].next) out_push(s, y[i].id);
}

static void bpe(const tok_tokenizer *t, tok_state *s, const char *p, size_t n) {
    if (n == 1) { out_push(s, t->byte_id[(unsigned char)p[0]]); return; }
    uint64_t h = hash_bytes(p, n);
    if (t->ignore_merges) {
        int32_t id = idmap_find(&t->by_bytes, &t->dec, p, n, h);
        if (id >= 0) { out_push(s, id); return; }
    }
    if (n <= CACHE_MAX_KEY) {
        size_t k;
        const int32_t *c = cache_get(s, p, n, h, &k);
        if (c) {
            for (size_t i = 0; i < k; i++) out_push(s, c[i]);
            return;
        }
    }
    size_t before = s->nout;
    bpe_merge(t, s, (const unsigned char *)p, n);
    if (n <= CACHE_MAX_KEY) cache_put(s, p, n, h, s->out + before, s->nout - before);
}

static int re_error(const tok_tokenizer *t, int rc, oh_err *err) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(rc, msg, sizeof msg);
    return oh_errf(err, "%s: regex matching failed: %s", t->what, (char *)msg);
}

/* Pre-tokenize text p (n bytes) from split stage `stage` on, then BPE each
 * piece. Stages 0..nsplits-1 are Split regexes; stage nsplits is ByteLevel. */
static int pretok(const tok_tokenizer *t, tok_state *s, const char *p, size_t n, int stage, oh_err *err) {
    if (n == 0) return 0;
    const pcre2_code *re;
    bool keep_gaps = true;
    bool last = stage >= t->nsplits;
    if (!last) {
        re = t->splits[stage].re;
        keep_gaps = t->splits[stage].keep_gaps;
    } else {
        if (t->bl_prefix_space && p[0] != ' ') {
            if (n + 1 > s->cappfx) {
                s->cappfx = (n + 1) * 2;
                s->pfx = oh_realloc(s->pfx, s->cappfx);
            }
            s->pfx[0] = ' ';
            memcpy(s->pfx + 1, p, n);
            p = s->pfx;
            n++;
        }
        re = t->bl_re;
        if (!re) { bpe(t, s, p, n); return 0; }
    }
    size_t last_end = 0, prev = 0, last_match = SIZE_MAX;
    while (last_end <= n) {
        int rc = pcre2_match(re, (PCRE2_SPTR)p, n, last_end, PCRE2_NO_UTF_CHECK, s->md, s->mctx);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) return re_error(t, rc, err);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(s->md);
        size_t ms = ov[0], me = ov[1];
        if (ms == me) { /* an empty match: resume one character on; skip it right after a match */
            last_end = me < n ? me + utf8_len_at((const unsigned char *)p + me) : me + 1;
            if (me == last_match) continue;
        } else last_end = me;
        last_match = me;
        if (keep_gaps && prev < ms) {
            if (last) bpe(t, s, p + prev, ms - prev);
            else if (pretok(t, s, p + prev, ms - prev, stage + 1, err)) return -1;
        }
        if (me > ms) {
            if (last) bpe(t, s, p + ms, me - ms);
            else if (pretok(t, s, p + ms, me - ms, stage + 1, err)) return -1;
        }
        if (me > prev) prev = me;
    }
    if (keep_gaps && prev < n) {
        if (last) bpe(t, s, p + prev, n - prev);
        else if (pretok(t, s, p + prev, n - prev, stage + 1, err)) return -1;
    }
    return 0;
}

static bool char_is_word(const tok_tokenizer *t, tok_state *s, const char *p, size_t l) {
    return pcre2_match(t->word_re, (PCRE2_SPTR)p, l, 0, PCRE2_NO_UTF_CHECK, s->md, NULL) > 0;
}

/* HF's AddedVocabulary::find_matches over text p (n bytes) with the tokens of
 * m: appends segments (text or token) to *v. */
static void find_matches(const tok_tokenizer *t, tok_state *s, const tok_matcher *m, const char *p, size_t n, seg **v,
                         size_t *nv, size_t *cap) {
    size_t start_offset = 0, pos = 0;
    const unsigned char *u = (const unsigned char *)p;
    while (pos < n) {
        /* the leftmost-longest match at or after pos */
        size_t ms = 0, me = 0;
        const tok_added *hit = NULL;
        for (size_t i = pos; i < n && !hit; i++) {
            if (!m->first[u[i]]) continue;
            for (uint32_t q = m->start[u[i]]; q < m->start[u[i] + 1]; q++) {
                const tok_added *a = &t->added[m->order[q]];
                if (a->len <= n - i && !memcmp(p + i, a->text, a->len)) { hit = a; ms = i; me = i + a->len; break; }
            }
        }
        if (!hit) break;
        pos = me;
        size_t start = ms, stop = me;
        if (hit->single_word) {
            bool start_space = true, stop_space = true;
            if (start > 0) { /* is the character before a word character? */
                size_t b = start - 1;
                while (b > 0 && (u[b] & 0xc0) == 0x80) b--;
                start_space = !char_is_word(t, s, p + b, start - b);
            }
            if (stop < n) stop_space = !char_is_word(t, s, p + stop, utf8_len_at(u + stop));
            if (!start_space || !stop_space) continue;
        }
        if (hit->lstrip) { /* take the white space before, down to the previous split */
            size_t b = start;
            while (b > 0) {
                size_t c = b - 1, l;
                while (c > 0 && (u[c] & 0xc0) == 0x80) c--;
                if (!is_white_space(utf8_get(u + c, &l))) break;
                b = c;
            }
            start = b > start_offset ? b : start_offset;
        }
        if (hit->rstrip) {
            while (stop < n) {
                size_t l;
                if (!is_white_space(utf8_get(u + stop, &l))) break;
                stop += l;
            }
        }
        if (start_offset < start) seg_push(v, nv, cap, start_offset, start, -1);
        seg_push(v, nv, cap, start, stop, hit->id);
        start_offset = stop;
    }
    if (start_offset < n) seg_push(v, nv, cap, start_offset, n, -1);
}

static int encode_into(const tok_tokenizer *t, tok_state *s, const char *text, size_t len, oh_err *err) {
    size_t bad = utf8_invalid_at((const unsigned char *)text, len);
    if (bad != SIZE_MAX) return oh_errf(err, "text is not valid UTF-8 at byte %zu", bad);
    if (!t->m_raw.n && !t->m_norm.n) return pretok(t, s, text, len, 0, err);
    s->nseg1 = 0;
    if (t->m_raw.n) find_matches(t, s, &t->m_raw, text, len, &s->seg1, &s->nseg1, &s->capseg1);
    else seg_push(&s->seg1, &s->nseg1, &s->capseg1, 0, len, -1);
    for (size_t i = 0; i < s->nseg1; i++) {
        seg g = s->seg1[i];
        if (g.id >= 0) { out_push(s, g.id); continue; }
        if (!t->m_norm.n) {
            if (pretok(t, s, text + g.a, g.b - g.a, 0, err)) return -1;
            continue;
        }
        s->nseg2 = 0;
        find_matches(t, s, &t->m_norm, text + g.a, g.b - g.a, &s->seg2, &s->nseg2, &s->capseg2);
        for (size_t k = 0; k < s->nseg2; k++) {
            seg h = s->seg2[k];
            if (h.id >= 0) out_push(s, h.id);
            else if (pretok(t, s, text + g.a + h.a, h.b - h.a, 0, err)) return -1;
        }
    }
    return 0;
}

int tok_encode(tok_tokenizer *t, const char *text, size_t len, int32_t **ids, size_t *n, oh_err *err) {
    *ids = NULL;
    *n = 0;
    tok_state *s = state_get(t);
    s->nout = 0;
    if (encode_into(t, s, text ? text : "", text ? len : 0, err)) return -1;
    if (s->nout) {
        *ids = oh_malloc(s->nout * sizeof **ids);
        memcpy(*ids, s->out, s->nout * sizeof **ids);
    }
    *n = s->nout;
    if (s->capout > (1u << 20) && s->nout < s->capout / 8) { /* do not keep a huge buffer around */
        free(s->out);
        s->out = NULL;
        s->capout = 0;
    }
    return 0;
}

typedef struct batch_job {
    tok_tokenizer *t;
    const char *const *texts;
    const size_t *lens;
    size_t n;
    int32_t **ids;
    size_t *counts;
    atomic_size_t next;
    pthread_mutex_t mu;
    size_t fail_at; /* lowest failing index, SIZE_MAX if none */
    oh_err fail;
} batch_job;

static void *batch_worker(void *arg) {
    batch_job *b = arg;
    for (;;) {
        size_t i0 = atomic_fetch_add(&b->next, 16);
        if (i0 >= b->n) break;
        size_t i1 = i0 + 16 < b->n ? i0 + 16 : b->n;
        for (size_t i = i0; i < i1; i++) {
            oh_err e;
            if (tok_encode(b->t, b->texts[i], b->lens[i], &b->ids[i], &b->counts[i], &e)) {
                pthread_mutex_lock(&b->mu);
                if (i < b->fail_at) { b->fail_at = i; b->fail = e; }
                pthread_mutex_unlock(&b->mu);
            }
        }
    }
    /* this thread's state goes with it (TLS destructor) */
    return NULL;
}

int tok_encode_batch(tok_tokenizer *t, const char *const *texts, const size_t *lens, size_t n, int nthreads,
                     int32_t **ids, size_t *counts, oh_err *err) {
    for (size_t i = 0; i < n; i++) { ids[i] = NULL; counts[i] = 0; }
    if (nthreads <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        nthreads = c > 0 ? (int)c : 1;
    }
    if ((size_t)nthreads > (n + 15) / 16) nthreads = (int)((n + 15) / 16);
    if (nthreads < 1) nthreads = 1;
    batch_job b = {.t = t, .texts = texts, .lens = lens, .n = n, .ids = ids, .counts = counts, .fail_at = SIZE_MAX};
    atomic_init(&b.next, 0);
    pthread_mutex_init(&b.mu, NULL);
    if (nthreads == 1) batch_worker(&b);
    else {
        pthread_t *th = oh_malloc((size_t)nthreads * sizeof *th);
        int started = 0;
        for (; started < nthreads; started++)
            if (pthread_create(&th[started], NULL, batch_worker, &b)) break;
        if (started == 0) batch_worker(&b);
        for (int k = 0; k < started; k++) pthread_join(th[k], NULL);
        free(th);
    }
    pthread_mutex_destroy(&b.mu);
    if (b.fail_at != SIZE_MAX) {
        for (size_t i = 0; i < n; i++) { free(ids[i]); ids[i] = NULL; counts[i] = 0; }
        if (err) *err = b.fail;
        return oh_err_prefix(err, "text %zu", b.fail_at);
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* decoding and lookups                                                     */
/* ------------------------------------------------------------------------ */

int tok_decode(const tok_tokenizer *t, const int32_t *ids, size_t n, char **text, size_t *len, oh_err *err) {
    *text = NULL;
    if (len) *len = 0;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] > t->max_id || t->dec.len[ids[i]] == UINT32_MAX)
            return oh_errf(err, "%s: id %d (at %zu) is not in the vocabulary", t->what, ids[i], i);
        total += t->dec.len[ids[i]];
    }
    char *o = oh_malloc(total + 1);
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(o + w, t->dec.arena.p + t->dec.off[ids[i]], t->dec.len[ids[i]]);
        w += t->dec.len[ids[i]];
    }
    o[w] = 0;
    *text = o;
    if (len) *len = w;
    return 0;
}

int tok_token_id(const tok_tokenizer *t, const char *s) {
    size_t n = strlen(s);
    return idmap_find(&t->by_str, &t->str, s, n, hash_bytes(s, n));
}

const char *tok_token_text(const tok_tokenizer *t, int32_t id) {
    if (id < 0 || id > t->max_id || t->str.len[id] == UINT32_MAX) return NULL;
    return t->str.arena.p + t->str.off[id];
}

int tok_vocab_size(const tok_tokenizer *t) { return t->max_id + 1; }

bool tok_is_special(const tok_tokenizer *t, int32_t id) {
    return id >= 0 && id <= t->max_id && (t->flags[id] & TOK_F_SPECIAL);
}

void tok_template(const tok_tokenizer *t, const int32_t **prefix, size_t *nprefix, const int32_t **suffix, size_t *nsuffix) {
    *prefix = t->tmpl_pre;
    *nprefix = t->ntmpl_pre;
    *suffix = t->tmpl_post;
    *nsuffix = t->ntmpl_post;
}
