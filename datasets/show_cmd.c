#include "datasets/show_cmd.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *ROLE_NAMES[] = {"", " (chosen)", " (rejected)"};

static void put_run(const ds_tokenizer *tok, const int32_t *ids, size_t n, bool trained, bool color, FILE *out) {
    if (n == 0) return;
    if (trained) fputs(color ? "\x1b[4;32m" : "[[", out);
    char *text = NULL;
    size_t len = 0;
    oh_err e;
    if (tok->decode && tok->decode(tok->ctx, ids, n, &text, &len, &e) == 0) {
        fwrite(text, 1, len, out);
    } else {
        for (size_t i = 0; i < n; i++) fprintf(out, "%s%d", i ? " " : "<", ids[i]);
        fputc('>', out);
    }
    free(text);
    if (trained) fputs(color ? "\x1b[0m" : "]]", out);
}

void ds_show_batch(const ds_loader *ld, const ds_batch *b, FILE *out, bool color) {
    const ds_tokenizer *tok = ds_loader_tokenizer(ld);
    fprintf(out, "=== micro-batch %lld (epoch %lld): %d document%s, %lld tokens, %lld trained ===\n",
            (long long)b->index, (long long)b->epoch, b->ndocs, b->ndocs == 1 ? "" : "s", (long long)b->T,
            (long long)b->ntrained);
    for (int d = 0; d < b->ndocs; d++) {
        int32_t s = b->cu_seqlens[d], e = b->cu_seqlens[d + 1];
        int64_t tr = 0;
        for (int32_t t = s; t < e; t++) tr += b->targets[t] >= 0;
        char origin[1100];
        ds_loader_doc_origin(ld, b->doc_id[d], origin, sizeof origin);
        fprintf(out, "--- document %d/%d: %s%s, %d tokens, %lld trained ---\n", d + 1, b->ndocs, origin,
                ROLE_NAMES[b->doc_role[d] < 3 ? b->doc_role[d] : 0], e - s, (long long)tr);
        /* token t is trained when it is the target of t - 1 */
        int32_t run = s;
        bool cur = false;
        for (int32_t t = s; t <= e; t++) {
            bool trn = t < e && t > s && b->targets[t - 1] >= 0;
            if (t == e || trn != cur) {
                put_run(tok, b->ids + run, (size_t)(t - run), cur, color, out);
                run = t;
                cur = trn;
            }
        }
        fputc('\n', out);
    }
    if (b->nseqs > b->ndocs)
        fprintf(out, "--- padding: %d tokens ---\n", b->cu_seqlens[b->nseqs] - b->cu_seqlens[b->ndocs]);
}

void ds_show_stats(const ds_loader *ld, FILE *out) {
    const ds_stats *st = ds_loader_stats(ld);
    fprintf(out, "records: %lld read, %lld skipped (malformed), %lld dropped (nothing trained), %lld truncated, %lld split\n",
            (long long)st->records, (long long)st->skipped, (long long)st->dropped, (long long)st->truncated,
            (long long)st->split);
    if (st->first_skip[0]) fprintf(out, "first skipped: %s\n", st->first_skip);
    fprintf(out, "train: %lld documents/pairs, %lld tokens, %lld trained per epoch\n", (long long)st->train_units,
            (long long)st->train_tokens, (long long)st->train_trained);
    if (st->eval_units)
        fprintf(out, "eval: %lld documents/pairs, %lld tokens, %lld trained\n", (long long)st->eval_units,
                (long long)st->eval_tokens, (long long)st->eval_trained);
}

int ds_cmd_show(const ds_config *cfg, const ds_tokenizer *tok, int n, FILE *out, int color, oh_err *err) {
    ds_loader *ld;
    if (ds_loader_create(&ld, cfg, tok, err)) return -1;
    bool col = color < 0 ? isatty(fileno(out)) : color > 0;
    if (n <= 0) n = 1;
    for (int i = 0; i < n; i++) {
        ds_batch *b;
        int k = ds_next_batch(ld, &b, err);
        if (k < 0) { ds_loader_free(ld); return -1; }
        if (k == 0) break;
        ds_show_batch(ld, b, out, col);
    }
    ds_show_stats(ld, out);
    ds_loader_free(ld);
    return 0;
}
