#include "datasets/reader.h"

#include <archive.h>
#include <archive_entry.h>
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CHUNK (1 << 16)

enum { LAYOUT_UNKNOWN, LAYOUT_LINES, LAYOUT_ARRAY };
enum { ARR_FIRST, ARR_NEXT, ARR_AFTER, ARR_END };

struct ds_reader {
    char *path;
    ds_bad_policy policy;
    bool tar;
    struct archive *outer, *inner, *cur; /* cur: where member bytes come from */
    char *ibuf;                          /* inner archive's read buffer */
    bool member_open, done;
    long nmembers;                       /* data members seen (tar) */
    char *source;                        /* "path" or "path:member" */
    /* bytes of the current member */
    char *buf;
    size_t cap, pos, end, scan;
    bool eof;
    long line;                           /* line number of buf[pos] */
    int layout, arr;
    /* the current record */
    char *rec;
    size_t rec_len, rec_cap;
    long rec_line;
    oh_json json;
    bool have_json;
    oh_buf origin;
    long nskipped;
    char first_skip[1024];
};

int ds_bad_policy_parse(const char *name, ds_bad_policy *out, oh_err *err) {
    if (!strcmp(name, "stop")) { *out = DS_BAD_POLICY_STOP; return 0; }
    if (!strcmp(name, "skip")) { *out = DS_BAD_POLICY_SKIP; return 0; }
    return oh_errf(err, "unknown bad-record policy '%s' (expected stop or skip)", name);
}

static bool ends_with_ci(const char *s, size_t n, const char *suf) {
    size_t m = strlen(suf);
    return n >= m && !strncasecmp(s + n - m, suf, m);
}

bool ds_path_is_tar(const char *path) {
    static const char *sufs[] = {".tar", ".tar.gz", ".tgz", ".tar.zst", ".tzst", ".tar.xz", ".txz", ".tar.bz2", ".tbz2"};
    size_t n = strlen(path);
    for (size_t i = 0; i < sizeof sufs / sizeof *sufs; i++)
        if (ends_with_ci(path, n, sufs[i])) return true;
    return false;
}

/* length of the name without a compression suffix */
static size_t strip_compression(const char *path, size_t n) {
    static const char *sufs[] = {".gz", ".zst", ".zstd", ".xz", ".bz2", ".lz4"};
    for (size_t i = 0; i < sizeof sufs / sizeof *sufs; i++)
        if (ends_with_ci(path, n, sufs[i])) return n - strlen(sufs[i]);
    return n;
}
static bool is_compressed(const char *path) { size_t n = strlen(path); return strip_compression(path, n) != n; }

bool ds_path_is_json(const char *path) {
    size_t n = strip_compression(path, strlen(path));
    return ends_with_ci(path, n, ".jsonl") || ends_with_ci(path, n, ".ndjson") || ends_with_ci(path, n, ".json");
}

static int arch_err(ds_reader *r, struct archive *a, oh_err *err) {
    const char *m = archive_error_string(a);
    return oh_errf(err, "%s: %s", r->source ? r->source : r->path, m ? m : "read error");
}

/* ---- the byte stream of the current member ---- */

static int fill(ds_reader *r, oh_err *err) {
    if (r->eof) return 0;
    if (r->pos > 0) {
        memmove(r->buf, r->buf + r->pos, r->end - r->pos);
        r->end -= r->pos;
        r->scan -= r->pos < r->scan ? r->pos : r->scan;
        r->pos = 0;
    }
    if (r->cap - r->end < CHUNK) {
        r->cap = r->cap ? r->cap * 2 : 4 * CHUNK;
        r->buf = oh_realloc(r->buf, r->cap);
    }
    la_ssize_t n = archive_read_data(r->cur, r->buf + r->end, r->cap - r->end);
    if (n < 0) return arch_err(r, r->cur, err);
    if (n == 0) { r->eof = true; return 0; }
    r->end += (size_t)n;
    return 1;
}

/* next byte, -1 at the end of the member, -2 on error */
static int next_byte(ds_reader *r, oh_err *err) {
    if (r->pos == r->end) {
        int f = fill(r, err);
        if (f < 0) return -2;
        if (f == 0) return -1;
    }
    return (unsigned char)r->buf[r->pos++];
}

static int peek_byte(ds_reader *r, oh_err *err) {
    int c = next_byte(r, err);
    if (c >= 0) r->pos--;
    return c;
}

/* skip spaces counting lines; returns the next byte (not consumed), -1, -2 */
static int skip_ws(ds_reader *r, oh_err *err) {
    for (;;) {
        int c = peek_byte(r, err);
        if (c < 0) return c;
        if (c == '\n') r->line++;
        else if (!(c == ' ' || c == '\t' || c == '\r')) return c;
        r->pos++;
    }
}

static void rec_put(ds_reader *r, const char *p, size_t n) {
    if (r->rec_len + n + 1 > r->rec_cap) {
        r->rec_cap = (r->rec_len + n + 1) * 2;
        r->rec = oh_realloc(r->rec, r->rec_cap);
    }
    memcpy(r->rec + r->rec_len, p, n);
    r->rec_len += n;
    r->rec[r->rec_len] = 0;
}

/* ---- members ---- */

static la_ssize_t inner_read(struct archive *a, void *ud, const void **out) {
    ds_reader *r = ud;
    la_ssize_t n = archive_read_data(r->outer, r->ibuf, CHUNK);
    if (n < 0) {
        const char *m = archive_error_string(r->outer);
        archive_set_error(a, EIO, "%s", m ? m : "read error");
        return -1;
    }
    *out = r->ibuf;
    return n;
}

static void close_inner(ds_reader *r) {
    if (r->inner) archive_read_free(r->inner);
    r->inner = NULL;
    r->cur = r->outer;
}

static void start_member(ds_reader *r, const char *member) {
    free(r->source);
    r->source = member ? oh_sprintf("%s:%s", r->path, member) : oh_strdup(r->path);
    r->pos = r->end = r->scan = 0;
    r->eof = false;
    r->line = 1;
    r->layout = LAYOUT_UNKNOWN;
    r->arr = ARR_FIRST;
    r->member_open = true;
}

/* 1: a member is open, 0: no more, -1: error */
static int open_next_member(ds_reader *r, oh_err *err) {
    close_inner(r);
    if (r->done) return 0;
    if (!r->tar) {
        /* the single entry of the raw format; opened once */
        if (r->source) { r->done = true; return 0; }
        struct archive_entry *e;
        int rc = archive_read_next_header(r->outer, &e);
        if (rc == ARCHIVE_EOF) { r->done = true; r->source = oh_strdup(r->path); return 0; }
        if (rc < ARCHIVE_WARN) return arch_err(r, r->outer, err);
        start_member(r, NULL);
        return 1;
    }
    for (;;) {
        struct archive_entry *e;
        int rc = archive_read_next_header(r->outer, &e);
        if (rc == ARCHIVE_EOF) {
            r->done = true;
            if (r->nmembers == 0)
                return oh_errf(err, "%s: the archive holds no .jsonl or .json members", r->path);
            return 0;
        }
        if (rc < ARCHIVE_WARN) return arch_err(r, r->outer, err);
        const char *name = archive_entry_pathname(e);
        if (!name || archive_entry_filetype(e) != AE_IFREG) continue;
        const char *base = strrchr(name, '/');
        base = base ? base + 1 : name;
        if (!strncmp(base, "._", 2) || !ds_path_is_json(name)) continue;
        r->nmembers++;
        start_member(r, name);
        if (is_compressed(name)) {
            r->inner = archive_read_new();
            archive_read_support_filter_all(r->inner);
            archive_read_support_format_raw(r->inner);
            if (!r->ibuf) r->ibuf = oh_malloc(CHUNK);
            if (archive_read_open(r->inner, r, NULL, inner_read, NULL) != ARCHIVE_OK) return arch_err(r, r->inner, err);
            struct archive_entry *ie;
            rc = archive_read_next_header(r->inner, &ie);
            if (rc == ARCHIVE_EOF) { r->eof = true; }
            else if (rc < ARCHIVE_WARN) return arch_err(r, r->inner, err);
            r->cur = r->inner;
        }
        return 1;
    }
}

/* ---- records within a member: 1 = text in rec, 0 = member ended, -1 = error ---- */

static int next_line(ds_reader *r, oh_err *err) {
    for (;;) {
        char *nl = memchr(r->buf + r->scan, '\n', r->end - r->scan);
        size_t stop;
        if (!nl) {
            r->scan = r->end;
            if (!r->eof) {
                if (fill(r, err) < 0) return -1;
                continue;
            }
            if (r->pos == r->end) return 0;
            stop = r->end;
        } else {
            stop = (size_t)(nl - r->buf);
        }
        size_t b = r->pos, e = stop;
        r->pos = r->scan = stop < r->end ? stop + 1 : stop;
        r->rec_line = r->line++;
        if (e > b && r->buf[e - 1] == '\r') e--;
        bool blank = true;
        for (size_t k = b; k < e && blank; k++) blank = isspace((unsigned char)r->buf[k]);
        if (blank) continue;
        r->rec_len = 0;
        rec_put(r, r->buf + b, e - b);
        return 1;
    }
}

static int arr_fail(ds_reader *r, int c, const char *what, oh_err *err) {
    if (c == -2) return -1;
    if (c == -1) return oh_errf(err, "%s:%ld: unexpected end of file inside the JSON array", r->source, r->line);
    return oh_errf(err, "%s:%ld: %s", r->source, r->line, what);
}

static int next_element(ds_reader *r, oh_err *err) {
    int c;
    if (r->arr == ARR_AFTER) {
        c = skip_ws(r, err);
        if (c == ',') { r->pos++; r->arr = ARR_NEXT; }
        else if (c == ']') { r->pos++; r->arr = ARR_END; }
        else return arr_fail(r, c, "expected ',' or ']' after an array element", err);
    }
    if (r->arr == ARR_END) {
        c = skip_ws(r, err);
        if (c == -2) return -1;
        if (c == -1) return 0;
        return oh_errf(err, "%s:%ld: text after the end of the top-level JSON array", r->source, r->line);
    }
    c = skip_ws(r, err);
    if (c == ']' && r->arr == ARR_FIRST) { r->pos++; r->arr = ARR_END; return next_element(r, err); }
    if (c < 0 || c == ']' || c == ',') return arr_fail(r, c, "expected an array element", err);
    r->rec_len = 0;
    r->rec_line = r->line;
    int depth = 0;
    bool in_str = false, esc = false;
    int first = c;
    for (;;) {
        c = next_byte(r, err);
        if (c < 0) return arr_fail(r, c, "", err);
        if (first != '{' && first != '[' && first != '"' && !in_str && depth == 0 &&
            (c == ',' || c == ']' || c == ' ' || c == '\t' || c == '\r' || c == '\n')) {
            r->pos--; /* a primitive ended */
            break;
        }
        char ch = (char)c;
        rec_put(r, &ch, 1);
        if (c == '\n') r->line++;
        if (in_str) {
            if (esc) esc = false;
            else if (c == '\\') esc = true;
            else if (c == '"') { in_str = false; if (depth == 0) break; }
            continue;
        }
        if (c == '"') in_str = true;
        else if (c == '{' || c == '[') depth++;
        else if (c == '}' || c == ']') {
            if (--depth <= 0) break;
        }
    }
    r->arr = ARR_AFTER;
    return 1;
}

/* ---- public ---- */

int ds_reader_open(ds_reader **out, const char *path, ds_bad_policy policy, oh_err *err) {
    *out = NULL;
    bool tar = ds_path_is_tar(path);
    if (!tar && !ds_path_is_json(path))
        return oh_errf(err, "%s: unknown dataset file type (expected .jsonl, .ndjson or .json, optionally "
                       ".gz/.zst/.xz/.bz2 compressed, or a .tar/.tar.gz/.tar.zst of those)", path);
    if (oh_is_dir(path)) return oh_errf(err, "%s: is a directory", path);
    if (!oh_file_exists(path)) return oh_errf(err, "%s: no such file", path);
    ds_reader *r = oh_calloc(1, sizeof *r);
    r->path = oh_strdup(path);
    r->policy = policy;
    r->tar = tar;
    r->outer = archive_read_new();
    archive_read_support_filter_all(r->outer);
    if (tar) archive_read_support_format_tar(r->outer);
    else archive_read_support_format_raw(r->outer);
    if (archive_read_open_filename(r->outer, path, CHUNK) != ARCHIVE_OK) {
        arch_err(r, r->outer, err);
        ds_reader_close(r);
        return -1;
    }
    r->cur = r->outer;
    *out = r;
    return 0;
}

static void rewrite_json_msg(ds_reader *r, oh_err *e) {
    /* oh_json_parse says "<origin>: invalid JSON at line L column C" with L
     * counted inside the record: make it the file's line */
    size_t ol = r->origin.n;
    if (strncmp(e->msg, r->origin.p, ol) || strncmp(e->msg + ol, ": ", 2)) return;
    const char *what = e->msg + ol + 2;
    const char *p = strstr(what, " line ");
    unsigned l, c;
    if (!p || sscanf(p, " line %u column %u", &l, &c) != 2) return;
    char tmp[sizeof e->msg];
    snprintf(tmp, sizeof tmp, "%s:%ld: %.*s column %u", r->source, r->rec_line + (long)l - 1, (int)(p - what), what, c);
    memcpy(e->msg, tmp, sizeof tmp);
}

int ds_reader_next(ds_reader *r, ds_record *rec, oh_err *err) {
    if (r->have_json) { oh_json_free(&r->json); r->have_json = false; }
    for (;;) {
        if (!r->member_open) {
            int m = open_next_member(r, err);
            if (m <= 0) return m;
        }
        if (r->layout == LAYOUT_UNKNOWN) {
            /* sniff: optional BOM, spaces, then '[' or not */
            int c = peek_byte(r, err);
            if (c == -2) return -1;
            if (c == 0xEF && r->end - r->pos >= 3 && !memcmp(r->buf + r->pos, "\xEF\xBB\xBF", 3)) r->pos += 3;
            c = skip_ws(r, err);
            if (c == -2) return -1;
            if (c == '[') { r->pos++; r->layout = LAYOUT_ARRAY; }
            else r->layout = LAYOUT_LINES;
            r->scan = r->pos;
        }
        int k = r->layout == LAYOUT_ARRAY ? next_element(r, err) : next_line(r, err);
        if (k < 0) return -1;
        if (k == 0) { r->member_open = false; continue; }

        r->origin.n = 0;
        oh_buf_printf(&r->origin, "%s:%ld", r->source, r->rec_line);
        oh_err e;
        int bad = 0;
        if (oh_json_parse(&r->json, r->rec, r->rec_len, r->origin.p, &e) != 0) {
            rewrite_json_msg(r, &e);
            size_t sl = strip_compression(r->source, strlen(r->source));
            if (ends_with_ci(r->source, sl, ".json")) { /* likely one pretty-printed object */
                size_t ml = strlen(e.msg);
                snprintf(e.msg + ml, sizeof e.msg - ml, " (a .json dataset is a top-level array of objects, or one object per line)");
            }
            bad = 1;
        } else if (oh_json_type(&r->json, 0) != JSMN_OBJECT) {
            int t = oh_json_type(&r->json, 0);
            oh_errf(&e, "%s: expected a JSON object, got %s", r->origin.p,
                    t == JSMN_ARRAY ? "an array" : t == JSMN_STRING ? "a string" : "a number, boolean or null");
            oh_json_free(&r->json);
            bad = 1;
        }
        if (bad) {
            if (r->policy == DS_BAD_POLICY_STOP) { if (err) *err = e; return -1; }
            if (r->nskipped++ == 0) snprintf(r->first_skip, sizeof r->first_skip, "%s", e.msg);
            continue;
        }
        r->have_json = true;
        rec->json = r->json;
        rec->text = r->rec;
        rec->len = r->rec_len;
        rec->origin = r->origin.p;
        rec->source = r->source;
        rec->line = r->rec_line;
        return 1;
    }
}

long ds_reader_skipped(const ds_reader *r) { return r->nskipped; }
const char *ds_reader_first_skip(const ds_reader *r) { return r->first_skip; }

void ds_reader_close(ds_reader *r) {
    if (!r) return;
    if (r->have_json) oh_json_free(&r->json);
    if (r->inner) archive_read_free(r->inner);
    if (r->outer) archive_read_free(r->outer);
    free(r->ibuf);
    free(r->path);
    free(r->source);
    free(r->buf);
    free(r->rec);
    oh_buf_free(&r->origin);
    free(r);
}
