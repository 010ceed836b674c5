/* lora.h: LoRA adapters on the linear layers of Olmo Hybrid, in PEFT's
 * format.
 *
 * An adapter on a linear layer W [out, in] adds  s * B (A x)  with
 * A [r, in], B [out, r], s = alpha / r (or alpha / sqrt(r) with rsLoRA),
 * optionally with dropout on x.  A starts as PEFT does (kaiming-uniform,
 * bound 1/sqrt(in)), B at zero, so a new adapter changes nothing.
 *
 * Targets follow PEFT: a list of names matches every module whose path ends
 * in ".<name>" (or equals it); a single string is "all-linear" (every linear
 * layer but lm_head) or a regular expression matched against the whole module
 * path (e.g. "model\\.layers\\.\\d+\\.(self_attn|linear_attn)\\.q_proj").
 * Module paths are transformers' names: model.layers.{i}.self_attn.q_proj,
 * model.layers.{i}.linear_attn.{q,k,v,g,o,a,b}_proj, model.layers.{i}.mlp.{gate,up,down}_proj.
 */
#ifndef OH_LORA_H
#define OH_LORA_H

#include "model/model.h"

#define OH_LORA_MAX_TARGETS 32

typedef struct oh_lora_cfg {
    int rank;
    double alpha;
    double dropout;
    bool rslora;
    int ntargets;                       /* 0 with regex set, or names */
    char targets[OH_LORA_MAX_TARGETS][64];
    char regex[256];                    /* "" unless a pattern or "all-linear" */
} oh_lora_cfg;

typedef struct oh_lora_adapter {
    int layer;
    oh_slot slot;
    int in, out;
    size_t a_off, b_off;   /* offsets of A [r, in] and B [out, r] in the lora buffers */
    char *module;          /* transformers module path */
} oh_lora_adapter;

typedef struct oh_lora {
    oh_lora_cfg cfg;
    double scale;
    int n;
    oh_lora_adapter *ad;
    int (*map)[SLOT_COUNT];  /* [layer][slot] -> adapter index or -1 */
    size_t nfloats;
    float *w;               /* adapter weights */
    float *g;               /* adapter gradients (accumulated by the backward), may be NULL */
} oh_lora;

/* The module path of a linear slot of layer l (caller frees); NULL for
 * non-linear slots. */
char *oh_lora_module_path(const oh_model *m, int l, oh_slot s);
/* Create adapters on the modules cfg targets; error if nothing matches or a
 * target name matches no module. Weights initialised from seed. */
int oh_lora_create(oh_lora *lo, const oh_model *m, const oh_lora_cfg *cfg, uint64_t seed, oh_err *err);
void oh_lora_free(oh_lora *lo);
/* Merge s * B A into the base weights of m. */
void oh_lora_merge(const oh_lora *lo, oh_model *m);

/* PEFT files: adapter_config.json + adapter_model.safetensors (F32). */
int oh_lora_save_peft(const oh_lora *lo, const char *dir, const char *base_model, oh_err *err);
int oh_lora_load_peft(oh_lora *lo, const oh_model *m, const char *dir, oh_err *err);

/* Parse the target list of a PEFT adapter_config / recipe: either names or
 * one string (pattern / "all-linear"). */
int oh_lora_cfg_set_targets(oh_lora_cfg *c, const char *const *names, int n, oh_err *err);

#endif
