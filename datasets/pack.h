/* pack.h: bin packing of documents into micro-batches of at most `cap`
 * tokens. Pure functions over lengths; the loader (dataset.h) uses them on
 * windows of its shuffled order.
 *
 * DS_PACK_BEST_FIT: best-fit decreasing. Items are taken longest first (ties
 *   in index order) and each goes to the open bin whose free space is the
 *   smallest that still holds it; a new bin when none does.
 * DS_PACK_FIRST_FIT: items in the given order, each into the first bin (in
 *   creation order) that holds it.
 * Both are deterministic. Bins come out in creation order; inside a bin the
 * items are in increasing index order.
 */
#ifndef DS_PACK_H
#define DS_PACK_H

#include <stdint.h>
#include "util/util.h"

typedef enum ds_pack_policy {
    DS_PACK_POLICY_BEST_FIT,
    DS_PACK_POLICY_FIRST_FIT,
} ds_pack_policy;

/* "best-fit" / "first-fit" */
int ds_pack_policy_parse(const char *name, ds_pack_policy *out, oh_err *err);

/* Pack n items with lengths len[n] (each 1..cap) into bins of capacity cap.
 * items[n] receives the item indices grouped by bin; bin_start[nbins+1]
 * (caller allocates n+1) the start of each bin in items. Returns nbins, or
 * -1 (with err) when an item is empty or longer than cap. */
int ds_pack(const int64_t *len, int n, int64_t cap, ds_pack_policy policy, int *items, int *bin_start, oh_err *err);

#endif
