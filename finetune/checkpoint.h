/* checkpoint.h: training checkpoints, written atomically.
 *
 * <run>/checkpoints/step-%08ld/ holds
 *   config.json          the model config
 *   model.safetensors    full fine-tuning: fp32 weights (exact resume)
 *   adapter_config.json + adapter_model.safetensors   LoRA: the adapters (fp32)
 *   optimizer.safetensors  AdamW moments "m.<name>", "v.<name>"
 *   state.json           step, tokens, data position, RNG state, base model path
 * It is written to step-N.tmp-<pid>/, every file fsynced, then renamed into
 * place and the parent fsynced: a killed writer leaves the previous
 * checkpoints intact. Older ones beyond keep_last are removed. */
#ifndef OH_CHECKPOINT_H
#define OH_CHECKPOINT_H

#include <stdint.h>
#include "lora/lora.h"
#include "model/model.h"
#include "util/util.h"

#define CKPT_POS_WORDS 8

typedef struct ckpt_state {
    long step;               /* optimizer steps done */
    long tokens;             /* tokens consumed */
    uint64_t data_pos[CKPT_POS_WORDS]; /* the data iterator's position, opaque */
    oh_rng rng;              /* dropout RNG */
    char base_model[512];    /* model the run started from */
    char tokenizer[512];     /* tokenizer.json (or dir) the run used */
    char method[8];          /* full, lora */
} ckpt_state;

/* Write a checkpoint; m->w are the weights (full) or lo (LoRA, m may then
 * have base weights that are not written). opt_m/opt_v: moments in the
 * layout of the trained buffer (m->nfloats or lo->nfloats floats). */
int ckpt_save(const char *run_dir, const ckpt_state *st, const oh_model *m, const oh_lora *lo, const float *opt_m,
              const float *opt_v, int keep_last, oh_err *err);
/* Path of the newest complete checkpoint in run_dir (caller frees) or NULL. */
char *ckpt_latest(const char *run_dir);
/* Read state.json of a checkpoint dir. */
int ckpt_read_state(const char *ckpt_dir, ckpt_state *st, oh_err *err);
/* Load weights (into m->w for full, into lo->w for LoRA) and moments. */
int ckpt_load(const char *ckpt_dir, oh_model *m, oh_lora *lo, float *opt_m, float *opt_v, oh_err *err);

#endif
