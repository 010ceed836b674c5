#include "datasets/dataset.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_WINDOW 2048
#define CHUNK_RECORDS 4096

/* seeds for the separate random streams */
#define SALT_EVAL 0x6576616c73706c74ull
#define SALT_MIX 0x6d69787475726573ull
#define SALT_EPOCH 0x65706f6368736875ull
#define SALT_BINS 0x62696e736875666cull

typedef struct doc_t {
    int64_t off;    /* into the store, or a token index in token file tf */
    int32_t len;
    int16_t tf;     /* -1: the store */
    uint8_t role;   /* ds_doc_role */
    int32_t origin; /* index into origins */
    int64_t line;   /* JSON: line; token file: document number */
    int32_t piece;  /* split piece, 0 when whole */
} doc_t;

typedef struct unit_t {
    int64_t doc;    /* first document */
    int32_t len;    /* tokens, all documents */
    int32_t ntrained;
    uint8_t ndoc;
} unit_t;

typedef struct rec_t {
    int64_t unit;
    int32_t nunits;
    int32_t src;
} rec_t;

typedef struct pwin {
    int64_t epoch, w;   /* key; epoch -1 = eval; w -1 = empty */
    int n, nbins;
    int *items, *bin_start, *bin_order;
} pwin;

struct ds_loader {
    ds_config cfg;
    ds_source *sources;
    ds_tokenizer tok;
    struct pool *pool;          /* while reading */
    ds_template chat_own;
    const ds_template *chat;
    char *system_message;
    int64_t vocab, eos, pad, W;
    /* token store */
    int32_t *ids;
    uint8_t *tr;
    int64_t ntok, captok;
    doc_t *docs;
    int64_t ndocs, capdocs;
    unit_t *units;
    int64_t nunits, capunits;
    rec_t *recs;
    int64_t nrecs, caprecs;
    char **origins;
    int norigins, caporigins;
    ds_tokfile *tf;
    int ntf;
    /* split */
    int64_t *train, ntrain;
    int64_t *eval, neval;
    ds_stats st;
    ds_source_stats *sst;
    uint64_t fingerprint;
    /* cursors and caches */
    ds_position cur;
    int64_t eval_w, eval_bin, eval_index;
    int64_t perm_epoch[2];
    int64_t *perm[2];
    int perm_next;
    pwin win[2];
    int win_next;
    pwin ewin;
    ds_batch batch;
};

/* ---- small helpers ---- */

int ds_long_policy_parse(const char *name, ds_long_policy *out, oh_err *err) {
    if (!strcmp(name, "truncate")) { *out = DS_LONG_POLICY_TRUNCATE; return 0; }
    if (!strcmp(name, "split")) { *out = DS_LONG_POLICY_SPLIT; return 0; }
    return oh_errf(err, "unknown long-document policy '%s' (expected truncate or split)", name);
}

void ds_config_defaults(ds_config *c) {
    memset(c, 0, sizeof *c);
    c->max_seq_len = 4096;
    c->packing = true;
    c->pack_policy = DS_PACK_POLICY_BEST_FIT;
    c->long_docs = DS_LONG_POLICY_TRUNCATE;
    c->on_bad_record = DS_BAD_POLICY_STOP;
    c->add_eos = true;
    c->epochs = 1;
    c->eos_id = c->pad_id = -1;
}

static uint64_t mix64(uint64_t h, uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 31);
}

/* uniform integer in [0, n) */
static uint64_t rng_below(oh_rng *r, uint64_t n) {
    uint64_t lim = UINT64_MAX - UINT64_MAX % n, x;
    do x = oh_rng_u64(r); while (x >= lim);
    return x % n;
}

static void shuffle64(int64_t *a, int64_t n, oh_rng *r) {
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)rng_below(r, (uint64_t)i + 1);
        int64_t t = a[i]; a[i] = a[j]; a[j] = t;
    }
}

static void seed_rng(oh_rng *r, uint64_t seed, uint64_t salt, uint64_t a, uint64_t b) {
    oh_rng_seed(r, mix64(mix64(mix64(seed, salt), a), b));
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int intern_origin(ds_loader *ld, const char *s) {
    if (ld->norigins > 0 && !strcmp(ld->origins[ld->norigins - 1], s)) return ld->norigins - 1;
    if (ld->norigins == ld->caporigins) {
        ld->caporigins = ld->caporigins ? ld->caporigins * 2 : 16;
        ld->origins = oh_realloc(ld->origins, sizeof *ld->origins * (size_t)ld->caporigins);
    }
    ld->origins[ld->norigins] = oh_strdup(s);
    return ld->norigins++;
}

#define GROW(arr, n, cap, extra)                                                        \
    do {                                                                                \
        if ((n) + (extra) > (cap)) {                                                    \
            while ((n) + (extra) > (cap)) (cap) = (cap) ? (cap) * 2 : 1024;             \
            (arr) = oh_realloc((arr), sizeof *(arr) * (size_t)(cap));                   \
        }                                                                               \
    } while (0)

static int64_t doc_trained(const ds_loader *ld, const doc_t *d) {
    int64_t k = 0;
    for (int32_t t = 1; t < d->len; t++) {
        int tr = d->tf < 0 ? ld->tr[d->off + t] : ds_tokfile_trained(&ld->tf[d->tf], (size_t)(d->off + t));
        k += tr != 0;
    }
    return k;
}

static int64_t new_doc(ds_loader *ld, int64_t off, int32_t len, int tf, ds_doc_role role, int origin, int64_t line, int piece) {
    GROW(ld->docs, ld->ndocs, ld->capdocs, 1);
    ld->docs[ld->ndocs] = (doc_t){off, len, (int16_t)tf, (uint8_t)role, origin, line, piece};
    return ld->ndocs++;
}

/* add a unit made of the last ndoc documents; false (and the documents
 * removed) when nothing in it is trained */
static bool add_unit(ds_loader *ld, int ndoc) {
    int64_t first = ld->ndocs - ndoc;
    int64_t len = 0, tr = 0;
    bool each = true;
    for (int64_t d = first; d < ld->ndocs; d++) {
        int64_t k = doc_trained(ld, &ld->docs[d]);
        each &= k > 0;
        tr += k;
        len += ld->docs[d].len;
    }
    if (!each) { ld->ndocs = first; return false; }
    GROW(ld->units, ld->nunits, ld->capunits, 1);
    ld->units[ld->nunits++] = (unit_t){first, (int32_t)len, (int32_t)tr, (uint8_t)ndoc};
    return true;
}

/* the documents of one record -> units; returns the number of units */
static int add_record_units(ds_loader *ld, int64_t off[2], int64_t len[2], int tf, int ndoc, int origin, int64_t line) {
    int64_t max = ld->cfg.max_seq_len;
    int made = 0;
    if (ndoc == 2) {
        int64_t lc = len[0], lr = len[1];
        if (lc + lr > max) {
            int64_t half = max / 2;
            if (lc > half && lr > max - half) { lc = half; lr = max - half; }
            else if (lc > lr) lc = max - lr;
            else lr = max - lc;
            ld->st.truncated++;
        }
        new_doc(ld, off[0], (int32_t)lc, tf, DS_DOC_ROLE_CHOSEN, origin, line, 0);
        new_doc(ld, off[1], (int32_t)lr, tf, DS_DOC_ROLE_REJECTED, origin, line, 0);
        return add_unit(ld, 2) ? 1 : 0;
    }
    if (len[0] <= max || ld->cfg.long_docs == DS_LONG_POLICY_TRUNCATE) {
        if (len[0] > max) ld->st.truncated++;
        new_doc(ld, off[0], (int32_t)(len[0] < max ? len[0] : max), tf, DS_DOC_ROLE_PLAIN, origin, line, 0);
        return add_unit(ld, 1) ? 1 : 0;
    }
    ld->st.split++;
    for (int64_t s = 0, piece = 0; s < len[0]; s += max, piece++) {
        int64_t l = len[0] - s < max ? len[0] - s : max;
        new_doc(ld, off[0] + s, (int32_t)l, tf, DS_DOC_ROLE_PLAIN, origin, line, (int)piece);
        made += add_unit(ld, 1);
    }
    return made;
}

static void add_record(ds_loader *ld, int src, int64_t unit0, int nunits) {
    GROW(ld->recs, ld->nrecs, ld->caprecs, 1);
    ld->recs[ld->nrecs++] = (rec_t){unit0, nunits, src};
}

/* ---- tokenizing examples (in worker threads) ---- */

typedef struct tokjob {
    ds_loader *ld;
    ds_example *ex;
    char **origin;
    int n;
    ds_tokens *out;   /* [2 n] */
    char **errmsg;    /* [n] NULL when fine */
    bool *fatal;      /* [n] an error no skip policy covers */
    atomic_int next;
} tokjob;

static int tokenize_chat(ds_loader *ld, const ds_conv *prompt, const ds_conv *cont, ds_tokens *out, oh_err *err) {
    ds_conv all = {0};
    ds_conv tmp = {0};
    if (cont) {
        for (int i = 0; i < prompt->n; i++) ds_conv_push(&tmp, prompt->msg[i].role, prompt->msg[i].content, prompt->msg[i].len);
        for (int i = 0; i < cont->n; i++) ds_conv_push(&tmp, cont->msg[i].role, cont->msg[i].content, cont->msg[i].len);
        all = tmp;
    } else {
        all = *prompt;
    }
    ds_chat_opts o = {ld->system_message, ld->cfg.train_last_turn_only, false, cont ? prompt->n : 0};
    ds_rendered r;
    int rc = ds_chat_render(ld->chat, &all, &o, &r, err);
    if (rc == 0) rc = ds_tokenize_rendered(&r, &ld->tok, out, err);
    if (r.text.p) ds_rendered_free(&r);
    ds_conv_free(&tmp);
    return rc;
}

static int tokenize_plain(ds_loader *ld, const char *prompt, size_t plen, const char *cont, size_t clen, bool eos,
                          ds_tokens *out, oh_err *err) {
    ds_rendered r = {0};
    oh_buf_put(&r.text, "", 0);
    ds_rendered_add(&r, prompt, plen, false);
    ds_rendered_add(&r, cont, clen, true);
    int rc = ds_tokenize_rendered(&r, &ld->tok, out, err);
    ds_rendered_free(&r);
    if (rc == 0 && eos) {
        if (ld->eos < 0) return oh_errf(err, "the tokenizer has no EOS token (set eos_id)");
        ds_tokens_push(out, (int32_t)ld->eos, true);
    }
    return rc;
}

static int tokenize_example(ds_loader *ld, const ds_example *ex, ds_tokens out[2], bool *fatal, oh_err *err) {
    int rc = 0;
    switch (ex->kind) {
    case DS_EXAMPLE_CHAT: rc = tokenize_chat(ld, &ex->conv, NULL, &out[0], err); break;
    case DS_EXAMPLE_PROMPT_COMPLETION:
        rc = tokenize_plain(ld, ex->prompt, ex->prompt_len, ex->completion, ex->completion_len, true, &out[0], err);
        break;
    case DS_EXAMPLE_TEXT: rc = tokenize_plain(ld, "", 0, ex->text, ex->text_len, ld->cfg.add_eos, &out[0], err); break;
    case DS_EXAMPLE_PREF_CHAT:
        rc = tokenize_chat(ld, &ex->conv, &ex->chosen, &out[0], err);
        if (rc == 0) rc = tokenize_chat(ld, &ex->conv, &ex->rejected, &out[1], err);
        break;
    case DS_EXAMPLE_PREF_TEXT:
        rc = tokenize_plain(ld, ex->prompt, ex->prompt_len, ex->chosen_text, ex->chosen_len, true, &out[0], err);
        if (rc == 0) rc = tokenize_plain(ld, ex->prompt, ex->prompt_len, ex->rejected_text, ex->rejected_len, true, &out[1], err);
        break;
    }
    if (rc) return -1;
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < out[k].n; i++)
            if (out[k].ids[i] < 0 || out[k].ids[i] >= ld->vocab) {
                *fatal = true;
                return oh_errf(err, "token id %d (token %zu) is beyond the vocabulary (%lld ids)", out[k].ids[i], i,
                               (long long)ld->vocab);
            }
    return 0;
}

static void *tok_worker(void *arg) {
    tokjob *j = arg;
    for (;;) {
        int i = atomic_fetch_add(&j->next, 1);
        if (i >= j->n) break;
        oh_err e;
        if (tokenize_example(j->ld, &j->ex[i], &j->out[2 * i], &j->fatal[i], &e)) {
            char *m = oh_sprintf("%s: %s", j->origin[i], e.msg);
            j->errmsg[i] = m;
        }
    }
    return NULL;
}

static int nthreads(const ds_loader *ld) {
    long n = ld->cfg.threads > 0 ? ld->cfg.threads : sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)(n > 64 ? 64 : n) : 1;
}

/* Worker threads that live while the sources are read (the tokenizer keeps
 * a BPE cache per thread, so threads are not re-created per chunk). */
typedef struct pool {
    pthread_t th[64];
    int n;                      /* threads besides the caller */
    pthread_barrier_t start, done;
    tokjob *job;
    bool quit;
} pool;

static void *pool_main(void *arg) {
    pool *p = arg;
    for (;;) {
        pthread_barrier_wait(&p->start);
        if (p->quit) break;
        tok_worker(p->job);
        pthread_barrier_wait(&p->done);
    }
    return NULL;
}

static void pool_start(pool *p, int nthreads) {
    memset(p, 0, sizeof *p);
    p->n = nthreads - 1;
    if (p->n <= 0) return;
    OH_CHECK(pthread_barrier_init(&p->start, NULL, (unsigned)p->n + 1) == 0, "barrier");
    OH_CHECK(pthread_barrier_init(&p->done, NULL, (unsigned)p->n + 1) == 0, "barrier");
    for (int t = 0; t < p->n; t++) OH_CHECK(pthread_create(&p->th[t], NULL, pool_main, p) == 0, "cannot start a thread");
}

static void pool_run(pool *p, tokjob *j) {
    if (p->n <= 0) { tok_worker(j); return; }
    p->job = j;
    pthread_barrier_wait(&p->start);
    tok_worker(j);
    pthread_barrier_wait(&p->done);
}

static void pool_stop(pool *p) {
    if (p->n <= 0) return;
    p->quit = true;
    pthread_barrier_wait(&p->start);
    for (int t = 0; t < p->n; t++) pthread_join(p->th[t], NULL);
    pthread_barrier_destroy(&p->start);
    pthread_barrier_destroy(&p->done);
    p->n = 0;
}

static void skip_record(ds_loader *ld, int src, const char *msg) {
    ld->st.skipped++;
    ld->sst[src].skipped++;
    if (!ld->st.first_skip[0]) snprintf(ld->st.first_skip, sizeof ld->st.first_skip, "%s", msg);
}

/* tokenize a chunk of examples and turn them into units */
static int flush_chunk(ds_loader *ld, int src, ds_example *ex, char **origin, int *orig_id, int64_t *line, int n, oh_err *err) {
    if (n == 0) return 0;
    tokjob j = {.ld = ld, .ex = ex, .origin = origin, .n = n};
    j.out = oh_calloc((size_t)n * 2, sizeof *j.out);
    j.errmsg = oh_calloc((size_t)n, sizeof *j.errmsg);
    j.fatal = oh_calloc((size_t)n, sizeof *j.fatal);
    atomic_init(&j.next, 0);
    pool_run(ld->pool, &j);

    int rc = 0;
    for (int i = 0; i < n; i++) {
        if (rc == 0 && j.errmsg[i]) {
            if (j.fatal[i] || ld->cfg.on_bad_record == DS_BAD_POLICY_STOP) rc = oh_errf(err, "%s", j.errmsg[i]);
            else skip_record(ld, src, j.errmsg[i]);
        } else if (rc == 0) {
            int ndoc = ds_example_is_pref(&ex[i]) ? 2 : 1;
            int64_t off[2], len[2];
            for (int k = 0; k < ndoc; k++) {
                ds_tokens *t = &j.out[2 * i + k];
                int64_t oldcap = ld->captok;
                GROW(ld->ids, ld->ntok, ld->captok, (int64_t)t->n);
                if (ld->captok != oldcap || !ld->tr) ld->tr = oh_realloc(ld->tr, (size_t)ld->captok);
                if (t->n) {
                    memcpy(ld->ids + ld->ntok, t->ids, sizeof(int32_t) * t->n);
                    memcpy(ld->tr + ld->ntok, t->trained, t->n);
                }
                off[k] = ld->ntok;
                len[k] = (int64_t)t->n;
                ld->ntok += (int64_t)t->n;
            }
            int64_t u0 = ld->nunits;
            int made = (len[0] > 0 && (ndoc == 1 || len[1] > 0)) ? add_record_units(ld, off, len, -1, ndoc, orig_id[i], line[i]) : 0;
            if (made == 0) { ld->st.dropped++; ld->sst[src].dropped++; }
            else add_record(ld, src, u0, made);
        }
        ds_tokens_free(&j.out[2 * i]);
        ds_tokens_free(&j.out[2 * i + 1]);
        free(j.errmsg[i]);
    }
    free(j.out); free(j.errmsg); free(j.fatal);
    return rc;
}

static bool is_token_path(const char *p) {
    size_t n = strlen(p);
    return (n > 4 && (!strcmp(p + n - 4, ".npy") || !strcmp(p + n - 4, ".bin") || !strcmp(p + n - 4, ".tok")));
}

static int read_json_source(ds_loader *ld, int src, oh_err *err) {
    const ds_source *s = &ld->sources[src];
    ds_reader *r;
    if (ds_reader_open(&r, s->path, ld->cfg.on_bad_record, err)) return -1;
    ds_example *ex = oh_calloc(CHUNK_RECORDS, sizeof *ex);
    char **origin = oh_calloc(CHUNK_RECORDS, sizeof *origin);
    int *orig_id = oh_calloc(CHUNK_RECORDS, sizeof *orig_id);
    int64_t *line = oh_calloc(CHUNK_RECORDS, sizeof *line);
    int n = 0, rc = 0;
    double t0 = oh_time_s(), last = t0;
    for (;;) {
        ds_record rec;
        int k = ds_reader_next(r, &rec, err);
        if (k < 0) { rc = -1; break; }
        if (k > 0) {
            ld->st.records++;
            ld->sst[src].records++;
            oh_err e;
            if (ds_example_from_json(&ex[n], &rec.json, s->format, rec.origin, &e)) {
                if (ld->cfg.on_bad_record == DS_BAD_POLICY_STOP) { if (err) *err = e; rc = -1; break; }
                skip_record(ld, src, e.msg);
                continue;
            }
            origin[n] = oh_strdup(rec.origin);
            orig_id[n] = intern_origin(ld, rec.source);
            line[n] = rec.line;
            n++;
        }
        if (n == CHUNK_RECORDS || (k == 0 && n > 0)) {
            rc = flush_chunk(ld, src, ex, origin, orig_id, line, n, err);
            for (int i = 0; i < n; i++) { ds_example_free(&ex[i]); free(origin[i]); }
            n = 0;
            if (rc) break;
            if (ld->cfg.progress && oh_time_s() - last > 2.0) {
                last = oh_time_s();
                fprintf(stderr, "data: %s: %lld records, %.0f records/s\n", s->path, (long long)ld->sst[src].records,
                        (double)ld->sst[src].records / (last - t0));
            }
        }
        if (k == 0) break;
    }
    for (int i = 0; i < n; i++) { ds_example_free(&ex[i]); free(origin[i]); }
    /* the reader's malformed-JSON skips */
    long sk = ds_reader_skipped(r);
    if (sk > 0) {
        ld->st.skipped += sk;
        ld->sst[src].skipped += sk;
        ld->st.records += sk;
        ld->sst[src].records += sk;
        if (!ld->st.first_skip[0]) snprintf(ld->st.first_skip, sizeof ld->st.first_skip, "%s", ds_reader_first_skip(r));
    }
    ds_reader_close(r);
    free(ex); free(origin); free(orig_id); free(line);
    return rc;
}

static int read_token_source(ds_loader *ld, int src, oh_err *err) {
    const ds_source *s = &ld->sources[src];
    ld->tf = oh_realloc(ld->tf, sizeof *ld->tf * (size_t)(ld->ntf + 1));
    ds_tokfile *f = &ld->tf[ld->ntf];
    if (ds_tokfile_open(f, s->path, s->dtype, s->mask_path, ld->eos, ld->vocab, err)) return -1;
    int tf = ld->ntf++;
    int origin = intern_origin(ld, s->path);
    for (size_t d = 0; d < f->ndocs; d++) {
        ld->st.records++;
        ld->sst[src].records++;
        int64_t off[2] = {(int64_t)f->doc_start[d], 0}, len[2] = {(int64_t)(f->doc_start[d + 1] - f->doc_start[d]), 0};
        int64_t u0 = ld->nunits;
        int made = add_record_units(ld, off, len, tf, 1, origin, (int64_t)d);
        if (made == 0) { ld->st.dropped++; ld->sst[src].dropped++; }
        else add_record(ld, src, u0, made);
    }
    return 0;
}

/* ---- split and mixture ---- */

static int build_split(ds_loader *ld, oh_err *err) {
    int64_t R = ld->nrecs;
    for (int s = 0; s < ld->cfg.nsources; s++) {
        int64_t usable = 0;
        for (int64_t i = 0; i < R; i++) usable += ld->recs[i].src == s;
        if (usable == 0)
            return oh_errf(err, "%s: no usable records (%lld read, %lld malformed and skipped, %lld without any trained token)",
                           ld->sources[s].path, (long long)ld->sst[s].records, (long long)ld->sst[s].skipped,
                           (long long)ld->sst[s].dropped);
    }
    double es = ld->cfg.eval_split;
    if (es < 0) return oh_errf(err, "eval_split %g is negative", es);
    int64_t E = es < 1 ? (int64_t)llround(es * (double)R) : (int64_t)llround(es);
    if (E >= R) return oh_errf(err, "eval_split %g takes all %lld records: nothing is left to train on", es, (long long)R);
    bool *is_eval = oh_calloc((size_t)R, 1);
    if (E > 0) {
        int64_t *perm = oh_malloc(sizeof(int64_t) * (size_t)R);
        for (int64_t i = 0; i < R; i++) perm[i] = i;
        oh_rng rng;
        seed_rng(&rng, ld->cfg.seed, SALT_EVAL, 0, 0);
        shuffle64(perm, R, &rng);
        for (int64_t i = 0; i < E; i++) is_eval[perm[i]] = true;
        free(perm);
    }
    /* eval units in file order */
    int64_t cap = 0;
    for (int64_t i = 0; i < R; i++) {
        if (!is_eval[i]) continue;
        ld->sst[ld->recs[i].src].eval++;
        for (int k = 0; k < ld->recs[i].nunits; k++) {
            GROW(ld->eval, ld->neval, cap, 1);
            ld->eval[ld->neval++] = ld->recs[i].unit + k;
        }
    }
    /* mixture */
    cap = 0;
    int64_t *pool = oh_malloc(sizeof(int64_t) * (size_t)R);
    for (int s = 0; s < ld->cfg.nsources; s++) {
        int64_t N = 0;
        for (int64_t i = 0; i < R; i++)
            if (ld->recs[i].src == s && !is_eval[i]) pool[N++] = i;
        double w = ld->sources[s].weight;
        if (!(w > 0)) { free(pool); free(is_eval); return oh_errf(err, "%s: weight %g must be > 0", ld->sources[s].path, w); }
        int64_t k = w <= 1 ? (int64_t)llround(w * (double)N) : (int64_t)llround(w);
        if (N == 0) k = 0;
        int64_t copies = N ? k / N : 0, rem = N ? k % N : 0;
        int64_t *pick = oh_malloc(sizeof(int64_t) * (size_t)(N ? N : 1));
        memcpy(pick, pool, sizeof(int64_t) * (size_t)N);
        if (rem > 0) {
            oh_rng rng;
            seed_rng(&rng, ld->cfg.seed, SALT_MIX, (uint64_t)s, 0);
            shuffle64(pick, N, &rng);
            qsort(pick, (size_t)rem, sizeof *pick, cmp_i64);
        }
        for (int64_t c = 0; c <= copies; c++) {
            int64_t m = c < copies ? N : rem;
            const int64_t *from = c < copies ? pool : pick;
            for (int64_t i = 0; i < m; i++) {
                const rec_t *rc = &ld->recs[from[i]];
                ld->sst[s].train++;
                for (int u = 0; u < rc->nunits; u++) {
                    GROW(ld->train, ld->ntrain, cap, 1);
                    ld->train[ld->ntrain++] = rc->unit + u;
                }
            }
        }
        free(pick);
    }
    free(pool);
    free(is_eval);
    if (ld->ntrain == 0)
        return oh_errf(err, "the training set is empty after the eval split and the source weights (%lld records usable)",
                       (long long)R);
    return 0;
}

static void compute_stats(ds_loader *ld) {
    ld->st.train_units = ld->ntrain;
    ld->st.eval_units = ld->neval;
    for (int64_t i = 0; i < ld->ntrain; i++) {
        ld->st.train_tokens += ld->units[ld->train[i]].len;
        ld->st.train_trained += ld->units[ld->train[i]].ntrained;
    }
    for (int64_t i = 0; i < ld->neval; i++) {
        ld->st.eval_tokens += ld->units[ld->eval[i]].len;
        ld->st.eval_trained += ld->units[ld->eval[i]].ntrained;
    }
    ld->st.nsources = ld->cfg.nsources;
    ld->st.source = ld->sst;
    uint64_t h = mix64(0x646174617365746full, (uint64_t)ld->ntrain);
    h = mix64(h, (uint64_t)ld->neval);
    h = mix64(h, (uint64_t)ld->cfg.max_seq_len);
    h = mix64(h, (uint64_t)ld->W);
    h = mix64(h, (uint64_t)ld->cfg.pack_policy);
    h = mix64(h, (uint64_t)ld->cfg.packing);
    h = mix64(h, ld->cfg.seed);
    for (int64_t i = 0; i < ld->ntrain; i++) {
        const unit_t *u = &ld->units[ld->train[i]];
        const doc_t *d = &ld->docs[u->doc];
        int32_t first = d->tf < 0 ? ld->ids[d->off] : (int32_t)ds_tokfile_id(&ld->tf[d->tf], (size_t)d->off);
        h = mix64(h, ((uint64_t)(uint32_t)u->len << 32) | (uint32_t)first);
    }
    ld->fingerprint = h;
}

/* ---- creation ---- */

int ds_loader_create(ds_loader **out, const ds_config *cfg, const ds_tokenizer *tok, oh_err *err) {
    *out = NULL;
    if (cfg->nsources <= 0) return oh_errf(err, "data: no sources");
    if (cfg->max_seq_len < 2) return oh_errf(err, "data: max_seq_len %lld is too small", (long long)cfg->max_seq_len);
    if (cfg->max_seq_len > INT32_MAX / 2) return oh_errf(err, "data: max_seq_len %lld is too large", (long long)cfg->max_seq_len);
    if (!tok || !tok->encode) return oh_errf(err, "data: no tokenizer");
    ds_loader *ld = oh_calloc(1, sizeof *ld);
    ld->cfg = *cfg;
    ld->tok = *tok;
    ld->sources = oh_calloc((size_t)cfg->nsources, sizeof *ld->sources);
    for (int s = 0; s < cfg->nsources; s++) {
        ld->sources[s] = cfg->sources[s];
        ld->sources[s].path = oh_strdup(cfg->sources[s].path);
        ld->sources[s].mask_path = cfg->sources[s].mask_path ? oh_strdup(cfg->sources[s].mask_path) : NULL;
    }
    ld->cfg.sources = ld->sources;
    if (cfg->chat) ld->chat = cfg->chat;
    else { ds_template_chatml(&ld->chat_own); ld->chat = &ld->chat_own; }
    ld->cfg.chat = NULL;
    ld->system_message = cfg->system_message && cfg->system_message[0] ? oh_strdup(cfg->system_message) : NULL;
    ld->cfg.system_message = NULL;
    ld->vocab = cfg->vocab_size > 0 ? cfg->vocab_size : tok->vocab_size;
    if (ld->vocab <= 0) ld->vocab = INT32_MAX;
    ld->eos = cfg->eos_id >= 0 ? cfg->eos_id : tok->eos_id;
    ld->pad = cfg->pad_id >= 0 ? cfg->pad_id : tok->pad_id >= 0 ? tok->pad_id : ld->eos;
    if (ld->pad < 0) ld->pad = 0;
    ld->W = cfg->pack_window > 0 ? cfg->pack_window : DEFAULT_WINDOW;
    if (ld->cfg.dp_world < 1) { ld->cfg.dp_world = 1; ld->cfg.dp_rank = 0; }
    if (ld->cfg.dp_rank < 0 || ld->cfg.dp_rank >= ld->cfg.dp_world) {
        ds_loader_free(ld);
        return oh_errf(err, "data: dp_rank %d outside 0..%d", cfg->dp_rank, cfg->dp_world - 1);
    }
    ld->sst = oh_calloc((size_t)cfg->nsources, sizeof *ld->sst);

    pool workers;
    pool_start(&workers, nthreads(ld));
    ld->pool = &workers;
    int rc = 0;
    for (int s = 0; s < cfg->nsources && rc == 0; s++) {
        const ds_source *src = &ld->sources[s];
        bool tokens = src->format == DS_FORMAT_TOKENS || (src->format == DS_FORMAT_AUTO && is_token_path(src->path));
        rc = tokens ? read_token_source(ld, s, err) : read_json_source(ld, s, err);
    }
    pool_stop(&workers);
    ld->pool = NULL;
    if (rc) { ds_loader_free(ld); return -1; }
    if (build_split(ld, err)) { ds_loader_free(ld); return -1; }
    compute_stats(ld);

    int64_t T = ld->cfg.max_seq_len;
    ds_batch *b = &ld->batch;
    b->ids = oh_malloc(sizeof(int32_t) * (size_t)T);
    b->targets = oh_malloc(sizeof(int32_t) * (size_t)T);
    b->pos = oh_malloc(sizeof(int32_t) * (size_t)T);
    b->cu_seqlens = oh_malloc(sizeof(int32_t) * (size_t)(T + 2));
    b->doc_role = oh_malloc((size_t)T + 1);
    b->doc_id = oh_malloc(sizeof(int64_t) * (size_t)(T + 1));
    for (int k = 0; k < 2; k++) { ld->perm_epoch[k] = -1; ld->win[k].w = -1; }
    ld->ewin.w = -1;
    ld->cur.fingerprint = ld->fingerprint;
    *out = ld;
    return 0;
}

static void pwin_free(pwin *p) { free(p->items); free(p->bin_start); free(p->bin_order); memset(p, 0, sizeof *p); p->w = -1; }

void ds_loader_free(ds_loader *ld) {
    if (!ld) return;
    for (int s = 0; s < ld->cfg.nsources && ld->sources; s++) {
        free((char *)ld->sources[s].path);
        free((char *)ld->sources[s].mask_path);
    }
    free(ld->sources);
    if (ld->chat == &ld->chat_own) ds_template_free(&ld->chat_own);
    free(ld->system_message);
    free(ld->ids); free(ld->tr); free(ld->docs); free(ld->units); free(ld->recs);
    for (int i = 0; i < ld->norigins; i++) free(ld->origins[i]);
    free(ld->origins);
    for (int i = 0; i < ld->ntf; i++) ds_tokfile_close(&ld->tf[i]);
    free(ld->tf);
    free(ld->train); free(ld->eval); free(ld->sst);
    for (int k = 0; k < 2; k++) { free(ld->perm[k]); pwin_free(&ld->win[k]); }
    pwin_free(&ld->ewin);
    ds_batch *b = &ld->batch;
    free(b->ids); free(b->targets); free(b->pos); free(b->cu_seqlens); free(b->doc_role); free(b->doc_id);
    free(ld);
}

const ds_stats *ds_loader_stats(const ds_loader *ld) { return &ld->st; }
const ds_tokenizer *ds_loader_tokenizer(const ds_loader *ld) { return &ld->tok; }

const char *ds_loader_doc_origin(const ds_loader *ld, int64_t doc_id, char *buf, size_t cap) {
    if (doc_id < 0 || doc_id >= ld->ndocs) { snprintf(buf, cap, "?"); return buf; }
    const doc_t *d = &ld->docs[doc_id];
    const char *o = ld->origins[d->origin];
    int n = d->tf >= 0 ? snprintf(buf, cap, "%s:doc %lld", o, (long long)d->line)
                       : snprintf(buf, cap, "%s:%lld", o, (long long)d->line);
    if (d->piece > 0 && n >= 0 && (size_t)n < cap) snprintf(buf + n, cap - (size_t)n, " (piece %d)", d->piece + 1);
    return buf;
}

/* ---- permutations and packed windows ---- */

static const int64_t *epoch_perm(ds_loader *ld, int64_t epoch) {
    for (int k = 0; k < 2; k++)
        if (ld->perm_epoch[k] == epoch) return ld->perm[k];
    int k = ld->perm_next;
    ld->perm_next ^= 1;
    if (!ld->perm[k]) ld->perm[k] = oh_malloc(sizeof(int64_t) * (size_t)ld->ntrain);
    memcpy(ld->perm[k], ld->train, sizeof(int64_t) * (size_t)ld->ntrain);
    oh_rng rng;
    seed_rng(&rng, ld->cfg.seed + (uint64_t)epoch, SALT_EPOCH, 0, 0);
    shuffle64(ld->perm[k], ld->ntrain, &rng);
    ld->perm_epoch[k] = epoch;
    return ld->perm[k];
}

static int64_t nwindows(const ds_loader *ld, int64_t n) { return (n + ld->W - 1) / ld->W; }

/* pack list[0..n) into p; shuffle the bin order with (epoch, w) unless eval */
static void pack_into(ds_loader *ld, pwin *p, const int64_t *list, int n, int64_t epoch, int64_t w, bool shuffle) {
    free(p->items); free(p->bin_start); free(p->bin_order);
    p->epoch = epoch;
    p->w = w;
    p->n = n;
    p->items = oh_malloc(sizeof(int) * (size_t)(n ? n : 1));
    p->bin_start = oh_malloc(sizeof(int) * (size_t)(n + 1));
    if (ld->cfg.packing) {
        int64_t *len = oh_malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
        for (int i = 0; i < n; i++) len[i] = ld->units[list[i]].len;
        p->nbins = ds_pack(len, n, ld->cfg.max_seq_len, ld->cfg.pack_policy, p->items, p->bin_start, NULL);
        OH_CHECK(p->nbins >= 0, "packing failed");
        free(len);
    } else {
        for (int i = 0; i < n; i++) { p->items[i] = i; p->bin_start[i] = i; }
        p->bin_start[n] = n;
        p->nbins = n;
    }
    p->bin_order = oh_malloc(sizeof(int) * (size_t)(p->nbins ? p->nbins : 1));
    for (int i = 0; i < p->nbins; i++) p->bin_order[i] = i;
    if (shuffle && ld->cfg.packing && p->nbins > 1) {
        oh_rng rng;
        seed_rng(&rng, ld->cfg.seed + (uint64_t)epoch, SALT_BINS, (uint64_t)w, 0);
        for (int i = p->nbins - 1; i > 0; i--) {
            int j = (int)rng_below(&rng, (uint64_t)i + 1);
            int t = p->bin_order[i]; p->bin_order[i] = p->bin_order[j]; p->bin_order[j] = t;
        }
    }
}

static const pwin *train_window(ds_loader *ld, int64_t epoch, int64_t w) {
    for (int k = 0; k < 2; k++)
        if (ld->win[k].w == w && ld->win[k].epoch == epoch) return &ld->win[k];
    const int64_t *perm = epoch_perm(ld, epoch);
    int64_t start = w * ld->W, n = ld->ntrain - start < ld->W ? ld->ntrain - start : ld->W;
    pwin *p = &ld->win[ld->win_next];
    ld->win_next ^= 1;
    pack_into(ld, p, perm + start, (int)n, epoch, w, true);
    return p;
}

/* move p to an existing bin; false at the end of the configured epochs */
static bool normalize(ds_loader *ld, ds_position *p) {
    int64_t nw = nwindows(ld, ld->ntrain);
    for (;;) {
        if (ld->cfg.epochs > 0 && p->epoch >= ld->cfg.epochs) return false;
        if (p->window >= nw) { p->epoch++; p->window = 0; p->bin = 0; continue; }
        const pwin *pw = train_window(ld, p->epoch, p->window);
        if (p->bin < pw->nbins) return true;
        p->window++;
        p->bin = 0;
    }
}

/* ---- filling a batch ---- */

static void fill_batch(ds_loader *ld, const pwin *pw, const int64_t *list, int bin, ds_batch *b) {
    int64_t T = 0, Tmax = ld->cfg.max_seq_len;
    b->ndocs = 0;
    b->ntrained = 0;
    b->cu_seqlens[0] = 0;
    if (pw) {
        int bi = pw->bin_order[bin];
        for (int k = pw->bin_start[bi]; k < pw->bin_start[bi + 1]; k++) {
            const unit_t *u = &ld->units[list[pw->items[k]]];
            for (int dd = 0; dd < u->ndoc; dd++) {
                const doc_t *d = &ld->docs[u->doc + dd];
                OH_CHECK(T + d->len <= Tmax, "bin over capacity");
                const ds_tokfile *f = d->tf >= 0 ? &ld->tf[d->tf] : NULL;
                for (int32_t t = 0; t < d->len; t++) {
                    int64_t g = d->off + t;
                    b->ids[T + t] = f ? (int32_t)ds_tokfile_id(f, (size_t)g) : ld->ids[g];
                    b->pos[T + t] = t;
                }
                for (int32_t t = 0; t < d->len; t++) {
                    int next_tr = 0;
                    if (t + 1 < d->len) {
                        int64_t g = d->off + t + 1;
                        next_tr = f ? ds_tokfile_trained(f, (size_t)g) : ld->tr[g];
                    }
                    b->targets[T + t] = next_tr ? b->ids[T + t + 1] : -1;
                    b->ntrained += next_tr != 0;
                }
                T += d->len;
                b->doc_role[b->ndocs] = d->role;
                b->doc_id[b->ndocs] = u->doc + dd;
                b->cu_seqlens[++b->ndocs] = (int32_t)T;
            }
        }
    }
    b->nseqs = b->ndocs;
    if (T > 0 && T < Tmax && (!ld->cfg.packing || ld->cfg.pad_to_max)) {
        for (int64_t t = T; t < Tmax; t++) { b->ids[t] = (int32_t)ld->pad; b->targets[t] = -1; b->pos[t] = (int32_t)(t - T); }
        T = Tmax;
        b->cu_seqlens[++b->nseqs] = (int32_t)T;
    }
    b->T = T;
}

int ds_next_batch(ds_loader *ld, ds_batch **batch, oh_err *err) {
    *batch = NULL;
    int world = ld->cfg.dp_world, rank = ld->cfg.dp_rank;
    ds_position p = ld->cur, mine = {0};
    for (int k = 0; k < world; k++) {
        if (!normalize(ld, &p)) return 0;
        if (k == rank) mine = p;
        p.bin++;
    }
    const pwin *pw = train_window(ld, mine.epoch, mine.window);
    const int64_t *perm = epoch_perm(ld, mine.epoch);
    fill_batch(ld, pw, perm + mine.window * ld->W, (int)mine.bin, &ld->batch);
    ld->batch.epoch = mine.epoch;
    ld->batch.index = ld->cur.batches + rank;
    p.batches = ld->cur.batches + world;
    ld->cur = p;
    *batch = &ld->batch;
    return 1;
}

int64_t ds_epoch_batches(ds_loader *ld, int64_t epoch) {
    int64_t total = 0;
    for (int64_t w = 0; w < nwindows(ld, ld->ntrain); w++) total += train_window(ld, epoch, w)->nbins;
    return total;
}

/* ---- eval ---- */

void ds_eval_reset(ds_loader *ld) { ld->eval_w = ld->eval_bin = ld->eval_index = 0; }

static const pwin *eval_window(ds_loader *ld, int64_t w) {
    if (ld->ewin.w != w) {
        int64_t start = w * ld->W, n = ld->neval - start < ld->W ? ld->neval - start : ld->W;
        pack_into(ld, &ld->ewin, ld->eval + start, (int)n, -1, w, false);
    }
    return &ld->ewin;
}

/* the next eval bin: false at the end */
static bool eval_take(ds_loader *ld, int64_t *w, int64_t *bin) {
    int64_t nw = nwindows(ld, ld->neval);
    while (ld->eval_w < nw) {
        const pwin *pw = eval_window(ld, ld->eval_w);
        if (ld->eval_bin < pw->nbins) { *w = ld->eval_w; *bin = ld->eval_bin++; return true; }
        ld->eval_w++;
        ld->eval_bin = 0;
    }
    return false;
}

int ds_eval_next(ds_loader *ld, ds_batch **batch, oh_err *err) {
    *batch = NULL;
    int world = ld->cfg.dp_world, rank = ld->cfg.dp_rank;
    int64_t w, bin, mw = -1, mbin = -1;
    int got = 0;
    for (int k = 0; k < world; k++) {
        if (!eval_take(ld, &w, &bin)) break;
        got++;
        if (k == rank) { mw = w; mbin = bin; }
    }
    if (got == 0) return 0;
    if (mw >= 0) fill_batch(ld, eval_window(ld, mw), ld->eval + mw * ld->W, (int)mbin, &ld->batch);
    else fill_batch(ld, NULL, NULL, 0, &ld->batch);
    ld->batch.epoch = 0;
    ld->batch.index = ld->eval_index + rank;
    ld->eval_index += world;
    *batch = &ld->batch;
    return 1;
}

int64_t ds_eval_batches(ds_loader *ld) {
    int64_t total = 0;
    for (int64_t w = 0; w < nwindows(ld, ld->neval); w++) total += eval_window(ld, w)->nbins;
    return total;
}

/* ---- resume ---- */

void ds_get_position(const ds_loader *ld, ds_position *p) {
    *p = ld->cur;
    p->fingerprint = ld->fingerprint;
}

int ds_set_position(ds_loader *ld, const ds_position *p, oh_err *err) {
    if (p->fingerprint != ld->fingerprint)
        return oh_errf(err, "data position: the data or the packing settings differ from the run that saved it "
                       "(fingerprint %016llx, now %016llx)", (unsigned long long)p->fingerprint,
                       (unsigned long long)ld->fingerprint);
    if (p->epoch < 0 || p->window < 0 || p->bin < 0 || p->batches < 0) return oh_errf(err, "data position: negative field");
    ld->cur = *p;
    return 0;
}

char *ds_position_to_json(const ds_position *p) {
    return oh_sprintf("{\"epoch\": %lld, \"window\": %lld, \"bin\": %lld, \"batches\": %lld, \"fingerprint\": \"%016llx\"}",
                      (long long)p->epoch, (long long)p->window, (long long)p->bin, (long long)p->batches,
                      (unsigned long long)p->fingerprint);
}

int ds_position_from_json(ds_position *p, const char *json, size_t len, oh_err *err) {
    oh_json j;
    if (oh_json_parse(&j, json, len, "data position", err)) return -1;
    memset(p, 0, sizeof *p);
    int rc = 0;
    const char *keys[4] = {"epoch", "window", "bin", "batches"};
    int64_t *dst[4] = {&p->epoch, &p->window, &p->bin, &p->batches};
    for (int k = 0; k < 4 && rc == 0; k++) {
        long long v;
        if (oh_json_int(&j, oh_json_get(&j, 0, keys[k]), &v)) rc = oh_errf(err, "data position: key '%s': expected an integer", keys[k]);
        else *dst[k] = v;
    }
    if (rc == 0) {
        char *h = oh_json_str(&j, oh_json_get(&j, 0, "fingerprint"), NULL);
        char *end = NULL;
        if (h) p->fingerprint = strtoull(h, &end, 16);
        if (!h || !*h || *end) rc = oh_errf(err, "data position: key 'fingerprint': expected a hex string");
        free(h);
    }
    oh_json_free(&j);
    return rc;
}
