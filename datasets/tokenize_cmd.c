/* tokenize_cmd.c: `finetune tokenize` (see tok_cmd_tokenize in tokenizer.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "datasets/tokenizer.h"
#include "util/json.h"

#define CHUNK_LINES 8192
#define CHUNK_BYTES (64u << 20)

static void usage(FILE *f) {
    fprintf(f, "usage: finetune tokenize --tokenizer PATH --input IN.jsonl --out OUT.jsonl [--threads N]\n"
               "  each input line {\"text\": \"...\"} (input may be gzip-compressed) gives one output line\n"
               "  {\"ids\": [...]}; special-token text is recognised, no BOS/EOS is added.\n"
               "  --threads N: encoding threads (default: all CPUs)\n");
}

/* One input line at a time, any length; gzip or plain. *line is NUL-terminated
 * without its '\n' (and without a '\r' before it). Returns 1, 0 at the end,
 * -1 on a read error. */
static int read_line(gzFile f, char **line, size_t *cap, size_t *len) {
    size_t n = 0;
    if (!*cap) { *cap = 1 << 16; *line = oh_malloc(*cap); }
    for (;;) {
        if (!gzgets(f, *line + n, (int)(*cap - n > (1u << 30) ? (1u << 30) : *cap - n))) {
            int e;
            gzerror(f, &e);
            if (e != Z_OK && e != Z_STREAM_END) return -1;
            if (n == 0) return 0;
            break;
        }
        n += strlen(*line + n);
        if (n > 0 && (*line)[n - 1] == '\n') break;
        if (gzeof(f)) break;
        if (*cap - n < 2) { *cap *= 2; *line = oh_realloc(*line, *cap); }
    }
    if (n && (*line)[n - 1] == '\n') n--;
    if (n && (*line)[n - 1] == '\r') n--;
    (*line)[n] = 0;
    *len = n;
    return 1;
}

static const char *opt_value(int argc, char **argv, int *i, const char *name) {
    size_t l = strlen(name);
    if (!strncmp(argv[*i], name, l) && argv[*i][l] == '=') return argv[*i] + l + 1;
    if (!strcmp(argv[*i], name)) return *i + 1 < argc ? argv[++*i] : NULL;
    return NULL;
}

static void put_ids(oh_buf *b, const int32_t *ids, size_t n) {
    oh_buf_put(b, "{\"ids\": [", 9);
    char tmp[16];
    for (size_t k = 0; k < n; k++) {
        int32_t v = ids[k];
        int p = (int)sizeof tmp;
        if (v < 0) v = 0; /* ids are never negative */
        do { tmp[--p] = (char)('0' + v % 10); v /= 10; } while (v);
        if (k) oh_buf_put(b, ",", 1);
        oh_buf_put(b, tmp + p, sizeof tmp - (size_t)p);
    }
    oh_buf_put(b, "]}\n", 3);
}

int tok_cmd_tokenize(int argc, char **argv) {
    const char *tpath = NULL, *in = NULL, *out = NULL, *threads = NULL;
    for (int i = 0; i < argc; i++) {
        const char *v;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(stdout); return 0; }
        if ((v = opt_value(argc, argv, &i, "--tokenizer"))) tpath = v;
        else if ((v = opt_value(argc, argv, &i, "--input"))) in = v;
        else if ((v = opt_value(argc, argv, &i, "--out"))) out = v;
        else if ((v = opt_value(argc, argv, &i, "--threads"))) threads = v;
        else {
            fprintf(stderr, "error: tokenize: unknown or incomplete argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!tpath || !in || !out) {
        fprintf(stderr, "error: tokenize: --tokenizer, --input and --out are required\n");
        usage(stderr);
        return 2;
    }
    int nthreads = 0;
    if (threads) {
        char *e;
        long t = strtol(threads, &e, 10);
        if (*e || t < 1 || t > 4096) { fprintf(stderr, "error: tokenize: --threads must be a positive integer, not '%s'\n", threads); return 2; }
        nthreads = (int)t;
    }

    oh_err err;
    tok_tokenizer *tok = tok_load(tpath, &err);
    if (!tok) { fprintf(stderr, "error: %s\n", err.msg); return 1; }
    gzFile f = gzopen(in, "rb");
    if (!f) { fprintf(stderr, "error: %s: cannot open: %s\n", in, strerror(errno)); tok_free(tok); return 1; }
    gzbuffer(f, 1 << 18);
    char *tmp_path = oh_sprintf("%s.tmp%d", out, (int)getpid());
    FILE *o = fopen(tmp_path, "wb");
    if (!o) {
        fprintf(stderr, "error: %s: cannot create: %s\n", tmp_path, strerror(errno));
        gzclose(f); tok_free(tok); free(tmp_path);
        return 1;
    }

    char **texts = oh_malloc(CHUNK_LINES * sizeof *texts);
    size_t *lens = oh_malloc(CHUNK_LINES * sizeof *lens);
    int32_t **ids = oh_malloc(CHUNK_LINES * sizeof *ids);
    size_t *counts = oh_malloc(CHUNK_LINES * sizeof *counts);
    char *line = NULL;
    size_t cap = 0, len = 0, lineno = 0, nlines = 0, ntokens = 0, nbytes = 0;
    oh_buf ob = {0};
    int rc = 0;
    double t0 = oh_time_s();
    for (bool done = false; !done && rc == 0;) {
        size_t n = 0, bytes = 0, first = lineno + 1;
        while (n < CHUNK_LINES && bytes < CHUNK_BYTES) {
            int r = read_line(f, &line, &cap, &len);
            if (r < 0) { fprintf(stderr, "error: %s: read error after line %zu\n", in, lineno); rc = 1; break; }
            if (r == 0) { done = true; break; }
            lineno++;
            char what[600];
            snprintf(what, sizeof what, "%s:%zu", in, lineno);
            size_t k = 0;
            while (k < len && strchr(" \t", line[k])) k++;
            if (k == len) { fprintf(stderr, "error: %s: empty line (each line must be {\"text\": \"...\"})\n", what); rc = 1; break; }
            oh_json j;
            if (oh_json_parse(&j, line, len, what, &err)) { fprintf(stderr, "error: %s\n", err.msg); rc = 1; break; }
            int tv = oh_json_type(&j, 0) == JSMN_OBJECT ? oh_json_get(&j, 0, "text") : -1;
            if (tv < 0 || !oh_json_is_str(&j, tv)) {
                fprintf(stderr, "error: %s: expected an object with a \"text\" string\n", what);
                oh_json_free(&j);
                rc = 1;
                break;
            }
            texts[n] = oh_json_str(&j, tv, &lens[n]);
            bytes += lens[n];
            oh_json_free(&j);
            n++;
        }
        if (rc == 0 && n) {
            if (tok_encode_batch(tok, (const char *const *)texts, lens, n, nthreads, ids, counts, &err)) {
                /* err begins "text K": name the line instead */
                size_t k = 0;
                const char *msg = err.msg;
                if (sscanf(err.msg, "text %zu: ", &k) == 1) msg = strchr(err.msg, ':') + 2;
                fprintf(stderr, "error: %s:%zu: %s\n", in, first + k, msg);
                rc = 1;
            } else {
                ob.n = 0;
                for (size_t i = 0; i < n; i++) {
                    put_ids(&ob, ids[i], counts[i]);
                    ntokens += counts[i];
                    free(ids[i]);
                }
                if (ob.n && fwrite(ob.p, 1, ob.n, o) != ob.n) {
                    fprintf(stderr, "error: %s: write failed: %s\n", tmp_path, strerror(errno));
                    rc = 1;
                }
            }
            nlines += n;
            nbytes += bytes;
        }
        for (size_t i = 0; i < n; i++) free(texts[i]);
    }
    gzclose(f);
    if (fflush(o) || fsync(fileno(o))) { if (!rc) fprintf(stderr, "error: %s: write failed: %s\n", tmp_path, strerror(errno)); rc = 1; }
    fclose(o);
    if (rc == 0 && rename(tmp_path, out)) {
        fprintf(stderr, "error: cannot rename %s to %s: %s\n", tmp_path, out, strerror(errno));
        rc = 1;
    }
    if (rc) unlink(tmp_path);
    else {
        double dt = oh_time_s() - t0;
        fprintf(stderr, "tokenized %zu lines, %zu bytes -> %zu tokens in %.2f s (%.1f MB/s) -> %s\n", nlines, nbytes,
                ntokens, dt, dt > 0 ? (double)nbytes / dt / 1e6 : 0.0, out);
    }
    oh_buf_free(&ob);
    free(line);
    free(texts); free(lens); free(ids); free(counts);
    free(tmp_path);
    tok_free(tok);
    return rc;
}
