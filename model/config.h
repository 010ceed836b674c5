/* config.h: the Olmo Hybrid model configuration (config.json), with every
 * field and default of transformers' OlmoHybridConfig (MODEL.md). */
#ifndef OH_CONFIG_H
#define OH_CONFIG_H

#include <stdbool.h>
#include "util/util.h"

#define OH_MAX_LAYERS 256

typedef struct oh_config {
    int vocab_size;
    int hidden_size;
    int intermediate_size;
    int num_hidden_layers;
    int num_attention_heads;
    int num_key_value_heads;     /* default: num_attention_heads */
    int head_dim;                /* default: hidden_size / num_attention_heads */
    int linear_num_key_heads;    /* default: num_attention_heads */
    int linear_num_value_heads;  /* default: num_attention_heads */
    int linear_key_head_dim;     /* default: int(0.75 * hidden / linear_num_key_heads) */
    int linear_value_head_dim;   /* default: 2 * linear_key_head_dim */
    int linear_conv_kernel_dim;  /* default 4 */
    bool linear_allow_neg_eigval;/* default true */
    double rms_norm_eps;         /* default 1e-6 */
    bool tie_word_embeddings;    /* default false */
    int max_position_embeddings; /* default 65536 */
    double rope_theta;           /* 0 when NoPE */
    bool use_rope;
    int eos_token_id, pad_token_id, bos_token_id; /* -1 when absent */
    double initializer_range;    /* default 0.02 */
    double linear_a_log_min, linear_a_log_max;          /* A_log init range (0, 16) */
    double linear_dt_min, linear_dt_max, linear_dt_init_floor; /* dt_bias init */
    char torch_dtype[16];        /* "bfloat16", "float32", ... ("" when absent) */
    bool is_attn[OH_MAX_LAYERS]; /* layer_types[i] == "full_attention" */
} oh_config;

/* Fill c with the defaults of the 7B (OlmoHybridConfig()). */
void oh_config_defaults(oh_config *c);
/* Derive defaulted sizes and check consistency. Returns 0 or -1 with a
 * message that names the field. `what` names the source in messages. */
int oh_config_finalize(oh_config *c, const char *what, oh_err *err);
/* Parse config.json text; `what` names the file for messages. */
int oh_config_parse(oh_config *c, const char *json, size_t len, const char *what, oh_err *err);
/* Read DIR/config.json. */
int oh_config_load_dir(oh_config *c, const char *dir, oh_err *err);
/* config.json text in the released form (caller frees). */
char *oh_config_to_json(const oh_config *c);

/* Derived sizes. */
static inline int oh_cfg_key_dim(const oh_config *c) { return c->linear_num_key_heads * c->linear_key_head_dim; }
static inline int oh_cfg_value_dim(const oh_config *c) { return c->linear_num_value_heads * c->linear_value_head_dim; }
static inline int oh_cfg_q_dim(const oh_config *c) { return c->num_attention_heads * c->head_dim; }
static inline int oh_cfg_kv_dim(const oh_config *c) { return c->num_key_value_heads * c->head_dim; }

/* Named presets for `finetune init`: "tiny" (tests, quickstart), "small"
 * (~20M parameters), "olmo-hybrid-7b". Returns -1 for an unknown name. */
int oh_config_preset(oh_config *c, const char *name, oh_err *err);
const char *oh_config_preset_names(void);

#endif
