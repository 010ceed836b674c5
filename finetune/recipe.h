/* recipe.h: the training recipe (TOML), validated against one declarative
 * table of keys (type, default, range, help) that also drives
 * `finetune --help-recipe` and the resolved recipe saved with every run.
 * Unknown keys are refused with a did-you-mean; errors give file:line:column. */
#ifndef OH_RECIPE_H
#define OH_RECIPE_H

#include <stdbool.h>
#include "finetune/toml.h"
#include "util/util.h"

#define RECIPE_MAX_SOURCES 16
#define RECIPE_MAX_TARGETS 32

typedef struct recipe_source {
    char path[512];
    double weight;       /* fraction of the source's records (<= 1) or a count (> 1) */
    char format[24];     /* auto, messages, prompt_completion, alpaca, preference, text, tokens */
} recipe_source;

typedef struct recipe {
    char file[512];      /* where it came from */
    struct {
        char path[512];      /* HF checkpoint dir */
        char init[32];       /* "" or a preset name: create the model when path has none */
        long seed;           /* init seed */
        char backend[8];     /* auto, cpu, cuda */
    } model;
    struct {
        char path[512];      /* tokenizer.json or dir ("" = model.path) */
    } tokenizer;
    struct {
        recipe_source sources[RECIPE_MAX_SOURCES];
        int nsources;
        long max_seq_len;
        bool packing;
        char pack_policy[16];    /* best-fit, first-fit */
        char long_docs[16];      /* truncate, split */
        double eval_split;       /* fraction (< 1) or count (>= 1) */
        char chat_template[16];  /* olmo, auto */
        char system_message[1024];
        bool train_last_turn_only;
        char on_bad_record[8];   /* stop, skip */
        bool add_eos;            /* text records */
        long seed;
    } data;
    struct {
        char method[8];      /* full, lora */
        char objective[8];   /* sft, cpt */
        long epochs;
        long max_steps;      /* 0: from epochs */
        long grad_accum;     /* micro-batches per optimizer step */
        double lr;
        char schedule[16];
        long warmup_steps;
        double warmup_frac;
        double min_lr_ratio;
        double wsd_decay_frac;
        double weight_decay;
        bool decay_embeddings; /* weight decay on embeddings (norms and 1-d params never decay) */
        double beta1, beta2, eps;
        double grad_clip;
        long seed;
        long eval_every;
        long save_every;
        long keep_last;
        char nan_policy[8];  /* skip, stop */
        bool resume;
        long log_every;
    } train;
    struct {
        long rank;
        double alpha;
        double dropout;
        bool rslora;
        char targets[RECIPE_MAX_TARGETS][64];
        int ntargets;
    } lora;
    struct {
        char dir[512];
        bool merge;
        char dtype[8];       /* bf16, f32 */
        double shard_gb;
    } output;
} recipe;

/* Defaults of every key. */
void recipe_defaults(recipe *r);
/* Parse the file, apply `--set key=value` overrides (in order), validate.
 * Relative paths in the recipe are taken relative to the recipe's folder. */
int recipe_load(recipe *r, const char *path, const char *const *overrides, int noverrides, oh_err *err);
/* The resolved recipe as TOML (every key, defaults included). Caller frees. */
char *recipe_dump(const recipe *r);
/* `finetune --help-recipe` */
void recipe_print_help(FILE *f);

#endif
