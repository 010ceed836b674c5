#include "datasets/pack.h"

#include <stdlib.h>
#include <string.h>

int ds_pack_policy_parse(const char *name, ds_pack_policy *out, oh_err *err) {
    if (!strcmp(name, "best-fit")) { *out = DS_PACK_POLICY_BEST_FIT; return 0; }
    if (!strcmp(name, "first-fit")) { *out = DS_PACK_POLICY_FIRST_FIT; return 0; }
    return oh_errf(err, "unknown pack policy '%s' (expected best-fit or first-fit)", name);
}

typedef struct { int64_t len; int idx; } item_len;
static int by_len_desc(const void *a, const void *b) {
    const item_len *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}
static int by_bin_then_index(const void *a, const void *b) {
    const int *x = a, *y = b;
    if (x[0] != y[0]) return x[0] < y[0] ? -1 : 1;
    return (x[1] > y[1]) - (x[1] < y[1]);
}

int ds_pack(const int64_t *len, int n, int64_t cap, ds_pack_policy policy, int *items, int *bin_start, oh_err *err) {
    for (int i = 0; i < n; i++)
        if (len[i] < 1 || len[i] > cap)
            return oh_errf(err, "pack: item %d has length %lld (capacity %lld)", i, (long long)len[i], (long long)cap);
    int *order = oh_malloc(sizeof(int) * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) order[i] = i;
    if (policy == DS_PACK_POLICY_BEST_FIT) {
        item_len *il = oh_malloc(sizeof *il * (size_t)(n ? n : 1));
        for (int i = 0; i < n; i++) { il[i].len = len[i]; il[i].idx = i; }
        qsort(il, (size_t)n, sizeof *il, by_len_desc);
        for (int i = 0; i < n; i++) order[i] = il[i].idx;
        free(il);
    }
    int64_t *room = oh_malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    int *pair = oh_malloc(sizeof(int) * 2 * (size_t)(n ? n : 1)); /* (bin, item) */
    int nbins = 0;
    for (int k = 0; k < n; k++) {
        int i = order[k], best = -1;
        for (int b = 0; b < nbins; b++) {
            if (room[b] < len[i]) continue;
            if (policy == DS_PACK_POLICY_FIRST_FIT) { best = b; break; }
            if (best < 0 || room[b] < room[best]) best = b;
            if (room[b] == len[i]) break; /* a perfect fit */
        }
        if (best < 0) { best = nbins++; room[best] = cap; }
        room[best] -= len[i];
        pair[2 * k] = best;
        pair[2 * k + 1] = i;
    }
    qsort(pair, (size_t)n, 2 * sizeof(int), by_bin_then_index);
    int b = 0;
    bin_start[0] = 0;
    for (int k = 0; k < n; k++) {
        while (b < pair[2 * k]) bin_start[++b] = k;
        items[k] = pair[2 * k + 1];
    }
    while (b < nbins) bin_start[++b] = n;
    free(order); free(room); free(pair);
    return nbins;
}
