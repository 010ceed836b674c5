/* model.h: the Olmo Hybrid model on the CPU reference backend: its
 * parameters (one fp32 buffer, a table of named tensors in the released
 * layout), loading from every checkpoint layout of MODEL.md, random
 * initialisation as transformers does, saving in the released layout, and
 * the forward pass over a packed batch of documents.
 *
 * Parameters: model->params[i] describes tensor i (released name, shape,
 * offset into model->w).  Gradients and optimizer moments use the same
 * offsets in buffers of model->nfloats floats.
 */
#ifndef OH_MODEL_H
#define OH_MODEL_H

#include <stdint.h>
#include "model/config.h"

/* Parameter slots of a layer; which exist depends on the layer kind. */
typedef enum oh_slot {
    /* both kinds */
    SLOT_POST_ATTN_NORM, SLOT_MLP_GATE, SLOT_MLP_UP, SLOT_MLP_DOWN,
    SLOT_Q, SLOT_K, SLOT_V, SLOT_O,
    /* GDN */
    SLOT_IN_NORM, SLOT_G, SLOT_A, SLOT_B, SLOT_QCONV, SLOT_KCONV, SLOT_VCONV, SLOT_A_LOG, SLOT_DT_BIAS, SLOT_O_NORM,
    /* attention */
    SLOT_Q_NORM, SLOT_K_NORM, SLOT_POST_FF_NORM,
    SLOT_COUNT
} oh_slot;

typedef struct oh_param {
    char *name;         /* released-layout name */
    int ndim;
    int64_t shape[3];
    size_t numel;
    size_t offset;      /* into the model's float buffers */
    int layer;          /* -1 for global tensors */
    oh_slot slot;
    bool no_decay;      /* norms and 1-d parameters (and embeddings, by recipe) */
} oh_param;

typedef struct oh_model {
    oh_config cfg;
    oh_param *params;
    int nparams;
    size_t nfloats;
    float *w;           /* all parameters */
    int embed, final_norm, lm_head;  /* param indices; lm_head == embed when tied */
    int (*slot)[SLOT_COUNT];         /* [layer][slot] -> param index or -1 */
    struct oh_lora *lora;            /* adapters applied in forward/backward, or NULL */
    struct oh_rng *dropout_rng;      /* LoRA dropout when training (NULL: no dropout) */
    char source_layout[32];          /* "released", "transformers-save", "olmo-core" */
    char stored_dtype[16];           /* dtype of the tensors on disk */
    size_t stored_bytes;
} oh_model;

/* Build the parameter table for cfg; allocate (zeroed) weights when alloc. */
void oh_model_build(oh_model *m, const oh_config *cfg, bool alloc);
void oh_model_free(oh_model *m);
static inline float *oh_param_ptr(const oh_model *m, float *base, int idx) { return base + m->params[idx].offset; }
static inline float *oh_lw(const oh_model *m, int layer, oh_slot s) { return m->w + m->params[m->slot[layer][s]].offset; }
int oh_model_find_param(const oh_model *m, const char *name); /* -1 if none */

/* Load DIR (config.json + safetensors in any supported layout). */
int oh_model_load(oh_model *m, const char *dir, oh_err *err);
/* Random init as transformers' _init_weights: normal(0, initializer_range)
 * for linear and embedding weights (the pad row of the embedding zeroed),
 * ones for norms, A_log = log(U(a_log_min, a_log_max)), dt_bias = inverse
 * softplus of a log-uniform dt in [dt_min, dt_max] clamped at the floor. */
void oh_model_init_random(oh_model *m, uint64_t seed);
/* The same initialisation written straight to a checkpoint dir, one shard at
 * a time, without holding the whole model in memory (the 7B preset). */
int oh_init_checkpoint(const oh_config *cfg, uint64_t seed, const char *dir, int st_dtype, size_t max_shard_bytes,
                       oh_err *err);
/* Write config.json + safetensors (released layout; dtype ST_BF16 or ST_F32)
 * + generation_config.json into dir. */
int oh_model_save(const oh_model *m, const char *dir, int st_dtype, size_t max_shard_bytes, oh_err *err);

/* ---- a packed batch ---- */
typedef struct oh_batch {
    int T;                 /* tokens in the stream */
    int ndocs;
    int32_t *ids;          /* [T] */
    int32_t *pos;          /* [T] position within its document */
    int32_t *cu_seqlens;   /* [ndocs + 1] */
    int32_t *targets;      /* [T] next-token label or -1 (not trained) */
} oh_batch;

/* Make a batch from documents (copies); targets = next token of the same
 * document, -1 at each document's last token. Caller frees with oh_batch_free. */
void oh_batch_from_docs(oh_batch *b, const int32_t *const *docs, const int *lens, int ndocs);
void oh_batch_free(oh_batch *b);
/* Check every id is inside the vocabulary; the error names the document and position. */
int oh_batch_check(const oh_batch *b, int vocab_size, oh_err *err);

/* ---- forward ---- */
typedef struct oh_acts oh_acts; /* saved activations for the backward */

/* Forward over the batch: logits[T, vocab] (may be NULL if only the loss is
 * wanted... it is always computed on the CPU), per-token losses loss[T]
 * (0 where targets < 0). When acts is non-NULL everything needed by the
 * backward is kept there. */
typedef struct oh_fwd_out {
    float *logits;  /* [T, vocab], owned by the caller of oh_forward via oh_fwd_free */
    float *loss;    /* [T] */
} oh_fwd_out;
int oh_forward(const oh_model *m, const oh_batch *b, oh_fwd_out *out, oh_acts **acts, oh_err *err);
void oh_fwd_free(oh_fwd_out *o);
void oh_acts_free(oh_acts *a);

/* Backward: accumulate into grads (m->nfloats floats) the gradient of
 * L = sum_t weight[t] * loss[t]. Needs the acts of the forward. grads may
 * be NULL (a frozen base: LoRA); adapter gradients go to m->lora->g when
 * that is set. */
void oh_backward(const oh_model *m, const oh_batch *b, const oh_fwd_out *fo, oh_acts *acts, const float *weight,
                 float *grads);

/* Parameter count and bytes. */
size_t oh_model_numel(const oh_model *m);

#endif
