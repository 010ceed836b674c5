/* dataset.h: the data loader the trainer uses. Sources (JSON record files or
 * pre-tokenized token files) -> examples -> token ids with trained flags ->
 * mixture and eval split -> per-epoch shuffle -> packed micro-batches.
 *
 * At creation every source is read and tokenized once (records in parallel
 * over `threads`; results do not depend on the thread count) and kept in
 * memory (ids 4 bytes + flag 1 byte per token; token files stay mmap'd).
 * Errors surface then, before any training step: a malformed record stops
 * (or is skipped and counted, per on_bad_record), a token id >= vocab_size
 * stops with the record's file:line.
 *
 * Units. A document is one token sequence. A unit is what packing places:
 * one document, or for a preference record a pair (chosen document, then
 * rejected document, always in the same micro-batch, adjacent). Documents
 * longer than max_seq_len are truncated (keep the first max_seq_len tokens)
 * or split into max_seq_len pieces, each piece its own document and unit
 * (policy long_docs). A pair longer than max_seq_len is always truncated:
 * the longer side first, down to half of max_seq_len each. A unit with no
 * trained target left is dropped and counted.
 *
 * Records, eval split and mixture (all deterministic given the seed):
 *  1. eval: eval_split < 1 is a fraction of all records (rounded), >= 1 a
 *     count; that many records, drawn by a seeded permutation over every
 *     record of every source, form the eval set (kept in file order). They
 *     never appear in training.
 *  2. mixture: of each source's remaining records, weight <= 1 takes that
 *     fraction (rounded), weight > 1 that count (whole copies of the source
 *     then a seeded sample for the remainder when the count exceeds it).
 *  3. an empty training set is an error.
 * Epoch e visits the training units in a permutation seeded by seed + e.
 *
 * Packing: the permuted units are cut into windows of pack_window units;
 * each window is packed (pack.h, best-fit decreasing or first-fit) into bins
 * of max_seq_len tokens, and the window's bins are emitted in a seeded random
 * order. Without packing, each unit is its own micro-batch, padded to
 * max_seq_len. A micro-batch is one flat token stream:
 *   ids[T], targets[T] (the next token when it is trained, else -1; the last
 *   token of every document has -1, so no target crosses a boundary),
 *   pos[T] (0.. restarting at each document), cu_seqlens[nseqs+1].
 * Padding (no packing, or pad_to_max) is one extra segment at the end: pad
 * ids, targets -1, positions 0.. ; nseqs = ndocs + 1 then.
 *
 * Data parallel: with dp_world > 1, global micro-batch g goes to rank
 * g % dp_world; every call consumes one round of dp_world global batches, and
 * the run ends when a full round is no longer available (so every rank makes
 * the same number of calls). Positions are global, so any rank's position
 * resumes every rank.
 *
 * Resume: ds_position (epoch; window, whose first unit is at index
 * window * pack_window of the epoch's permutation; bin, the next of that
 * window's shuffled bins; the global batch count; and a fingerprint of the
 * data and packing settings) taken after a call and set on
 * a loader built from the same config gives the same subsequent batches.
 *
 * The tokenizer is a ds_tokenizer (chat.h): ds_tokenizer_from_tok wraps the
 * toolkit's tok_tokenizer; tests use stubs. It must outlive the loader.
 */
#ifndef DS_DATASET_H
#define DS_DATASET_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include "datasets/chat.h"
#include "datasets/pack.h"
#include "datasets/reader.h"
#include "datasets/records.h"
#include "datasets/tokfile.h"
#include "util/util.h"

/* ---- configuration ---- */

typedef enum ds_long_policy {
    DS_LONG_POLICY_TRUNCATE,
    DS_LONG_POLICY_SPLIT,
} ds_long_policy;
/* "truncate" / "split" */
int ds_long_policy_parse(const char *name, ds_long_policy *out, oh_err *err);

typedef struct ds_source {
    const char *path;
    double weight;          /* <= 1: fraction of the source's records; > 1: a count; must be > 0 */
    ds_format format;       /* DS_FORMAT_AUTO: per record; a path ending in .npy/.bin/.tok means tokens */
    ds_token_dtype dtype;   /* token files without a .npy header */
    const char *mask_path;  /* token files: label mask, or NULL */
} ds_source;

typedef struct ds_config {
    const ds_source *sources;
    int nsources;
    int64_t max_seq_len;
    bool packing;           /* false: one unit per micro-batch, padded to max_seq_len */
    bool pad_to_max;        /* packed micro-batches padded to max_seq_len too */
    ds_pack_policy pack_policy;
    int pack_window;        /* units per packing window; 0 = 2048 */
    ds_long_policy long_docs;
    double eval_split;      /* < 1: fraction of records; >= 1: a count */
    const ds_template *chat;      /* NULL: built-in Olmo/ChatML; borrowed, must outlive the loader */
    const char *system_message;   /* NULL or "": none injected */
    bool train_last_turn_only;
    ds_bad_policy on_bad_record;
    bool add_eos;           /* raw text documents end with EOS (prompt/completion always do) */
    uint64_t seed;
    int epochs;             /* ds_next_batch ends after this many; 0 = never ends */
    int64_t vocab_size;     /* the model's vocabulary: ids must be below; 0 = the tokenizer's */
    int64_t eos_id, pad_id; /* -1: the tokenizer's */
    int threads;            /* tokenization threads; 0 = online CPUs */
    int dp_rank, dp_world;  /* data parallel; world 0 or 1 = off */
    bool progress;          /* print reading/tokenizing progress to stderr */
} ds_config;

/* packing on, best-fit, window 2048, truncate, ChatML, stop on bad records,
 * add_eos, seed 0, 1 epoch, everything else 0 / -1 / NULL. */
void ds_config_defaults(ds_config *c);

/* ---- the loader ---- */

typedef struct ds_loader ds_loader;

typedef struct ds_source_stats {
    int64_t records;        /* records read (token files: documents) */
    int64_t skipped;        /* malformed, skipped */
    int64_t dropped;        /* no trained target (e.g. no assistant turn) */
    int64_t eval;           /* records put in the eval set */
    int64_t train;          /* records in the training set (with repeats) */
} ds_source_stats;

typedef struct ds_stats {
    int64_t records, skipped, dropped, truncated, split;
    char first_skip[1024];  /* the first skipped record's message, "" if none */
    int64_t train_units, eval_units;
    int64_t train_tokens, train_trained;  /* one epoch */
    int64_t eval_tokens, eval_trained;
    int64_t nsources;
    const ds_source_stats *source;        /* [nsources] */
} ds_stats;

/* Read and tokenize every source, split, mix. cfg is copied (paths and the
 * system message too; the chat template and the tokenizer are borrowed).
 * Free with ds_loader_free. */
int ds_loader_create(ds_loader **out, const ds_config *cfg, const ds_tokenizer *tok, oh_err *err);
void ds_loader_free(ds_loader *ld);
const ds_stats *ds_loader_stats(const ds_loader *ld);

typedef enum ds_doc_role {
    DS_DOC_ROLE_PLAIN,
    DS_DOC_ROLE_CHOSEN,
    DS_DOC_ROLE_REJECTED,
} ds_doc_role;

/* One micro-batch; owned by the loader, valid until the next call that
 * fills a batch. */
typedef struct ds_batch {
    int64_t T;              /* token positions */
    int32_t *ids;           /* [T] */
    int32_t *targets;       /* [T] next-token target or -1 */
    int32_t *pos;           /* [T] */
    int32_t *cu_seqlens;    /* [nseqs + 1], cu_seqlens[nseqs] == T */
    int nseqs;              /* segments (documents, then padding if any) */
    int ndocs;              /* documents: the first ndocs segments */
    int64_t ntrained;       /* targets != -1 */
    uint8_t *doc_role;      /* [ndocs] ds_doc_role; a pair is chosen then rejected */
    int64_t *doc_id;        /* [ndocs] the document's stable index (ds_loader_doc_origin) */
    int64_t epoch;          /* epoch it belongs to (train) */
    int64_t index;          /* global micro-batch number (train) or eval batch number */
} ds_batch;

/* The next training micro-batch of this rank: 1 filled, 0 the configured
 * epochs are done, -1 error. */
int ds_next_batch(ds_loader *ld, ds_batch **batch, oh_err *err);

/* Eval micro-batches in a fixed order: ds_eval_reset, then ds_eval_next
 * until it returns 0. With dp_world > 1 a rank whose share of the last round
 * is missing gets an empty batch (T = 0, ndocs = 0) so every rank makes the
 * same number of calls. */
void ds_eval_reset(ds_loader *ld);
int ds_eval_next(ds_loader *ld, ds_batch **batch, oh_err *err);
int64_t ds_eval_batches(ds_loader *ld);   /* global count */

/* Global micro-batches in epoch e (for the schedule). */
int64_t ds_epoch_batches(ds_loader *ld, int64_t epoch);

/* "file:line" of a document (token files: "file:doc N"), into buf. */
const char *ds_loader_doc_origin(const ds_loader *ld, int64_t doc_id, char *buf, size_t cap);
const ds_tokenizer *ds_loader_tokenizer(const ds_loader *ld);

/* ---- resume ---- */

typedef struct ds_position {
    int64_t epoch, window, bin; /* the next global batch to consider */
    int64_t batches;            /* global batches consumed */
    uint64_t fingerprint;       /* data + packing settings */
} ds_position;

void ds_get_position(const ds_loader *ld, ds_position *p);
/* Fails when the fingerprint differs (the data or settings changed). */
int ds_set_position(ds_loader *ld, const ds_position *p, oh_err *err);
/* As a JSON object {"epoch":..,"window":..,"bin":..,"batches":..,"fingerprint":"hex"}; caller frees. */
char *ds_position_to_json(const ds_position *p);
int ds_position_from_json(ds_position *p, const char *json, size_t len, oh_err *err);

#endif
