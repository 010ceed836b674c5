#include "model/config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/json.h"

void oh_config_defaults(oh_config *c) {
    memset(c, 0, sizeof *c);
    c->vocab_size = 100352;
    c->hidden_size = 3840;
    c->intermediate_size = 11008;
    c->num_hidden_layers = 32;
    c->num_attention_heads = 30;
    c->linear_conv_kernel_dim = 4;
    c->linear_allow_neg_eigval = true;
    c->rms_norm_eps = 1e-6;
    c->max_position_embeddings = 65536;
    c->eos_token_id = 100257;
    c->pad_token_id = 100277;
    c->bos_token_id = -1;
    c->initializer_range = 0.02;
    c->linear_a_log_min = 0.0;
    c->linear_a_log_max = 16.0;
    c->linear_dt_min = 0.001;
    c->linear_dt_max = 0.1;
    c->linear_dt_init_floor = 1e-4;
    /* sizes left 0 are derived in oh_config_finalize; -1 marks "layer_types absent" */
    c->is_attn[0] = false;
    c->num_key_value_heads = 0;
}

static void default_layer_types(oh_config *c) {
    int n = c->num_hidden_layers, any = 0;
    for (int i = 0; i < n; i++) { c->is_attn[i] = (i % 4 == 3); any |= c->is_attn[i]; }
    if (!any) c->is_attn[n - 1] = true;
}

int oh_config_finalize(oh_config *c, const char *what, oh_err *err) {
#define NEED_POS(f) if (c->f <= 0) return oh_errf(err, "%s: %s must be a positive integer (got %d)", what, #f, c->f)
    NEED_POS(vocab_size);
    NEED_POS(hidden_size);
    NEED_POS(intermediate_size);
    NEED_POS(num_hidden_layers);
    NEED_POS(num_attention_heads);
    if (c->num_hidden_layers > OH_MAX_LAYERS)
        return oh_errf(err, "%s: num_hidden_layers %d exceeds the supported %d", what, c->num_hidden_layers, OH_MAX_LAYERS);
    if (c->num_key_value_heads <= 0) c->num_key_value_heads = c->num_attention_heads;
    if (c->head_dim <= 0) {
        if (c->hidden_size % c->num_attention_heads)
            return oh_errf(err, "%s: hidden_size %d is not divisible by num_attention_heads %d (set head_dim)", what,
                           c->hidden_size, c->num_attention_heads);
        c->head_dim = c->hidden_size / c->num_attention_heads;
    }
    if (c->num_attention_heads % c->num_key_value_heads)
        return oh_errf(err, "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d", what,
                       c->num_attention_heads, c->num_key_value_heads);
    if (c->use_rope && (c->head_dim % 2))
        return oh_errf(err, "%s: head_dim %d must be even for RoPE", what, c->head_dim);
    if (c->linear_num_key_heads <= 0) c->linear_num_key_heads = c->num_attention_heads;
    if (c->linear_num_value_heads <= 0) c->linear_num_value_heads = c->num_attention_heads;
    if (c->linear_key_head_dim <= 0) c->linear_key_head_dim = (int)(0.75 * c->hidden_size / c->linear_num_key_heads);
    if (c->linear_value_head_dim <= 0) c->linear_value_head_dim = 2 * c->linear_key_head_dim;
    NEED_POS(linear_key_head_dim);
    NEED_POS(linear_conv_kernel_dim);
    if (c->linear_num_value_heads % c->linear_num_key_heads)
        return oh_errf(err, "%s: linear_num_value_heads %d is not a multiple of linear_num_key_heads %d", what,
                       c->linear_num_value_heads, c->linear_num_key_heads);
    if (!(c->rms_norm_eps > 0)) return oh_errf(err, "%s: rms_norm_eps must be > 0", what);
    int nattn = 0;
    for (int i = 0; i < c->num_hidden_layers; i++) nattn += c->is_attn[i];
    if (nattn == 0) return oh_errf(err, "%s: layer_types has no full_attention layer", what);
    if (nattn == c->num_hidden_layers) return oh_errf(err, "%s: layer_types has no linear_attention layer", what);
    if (c->pad_token_id >= c->vocab_size)
        return oh_errf(err, "%s: pad_token_id %d is outside the vocabulary (vocab_size %d)", what, c->pad_token_id,
                       c->vocab_size);
    return 0;
#undef NEED_POS
}

/* keys we read; anything else in config.json is ignored (HF configs carry
 * many generic fields), but the keys that change the math are all here. */
static int get_int(const oh_json *j, const char *key, int *out, const char *what, oh_err *err) {
    int i = oh_json_get(j, 0, key);
    if (i < 0 || oh_json_is_null(j, i)) return 0;
    long long v;
    if (oh_json_int(j, i, &v) != 0 || v < -1 || v > 1000000000)
        return oh_errf(err, "%s: \"%s\" must be an integer", what, key);
    *out = (int)v;
    return 0;
}
static int get_num(const oh_json *j, int obj, const char *key, double *out, const char *what, oh_err *err) {
    int i = oh_json_get(j, obj, key);
    if (i < 0 || oh_json_is_null(j, i)) return 0;
    if (oh_json_num(j, i, out) != 0) return oh_errf(err, "%s: \"%s\" must be a number", what, key);
    return 0;
}
static int get_bool(const oh_json *j, const char *key, bool *out, const char *what, oh_err *err) {
    int i = oh_json_get(j, 0, key);
    if (i < 0 || oh_json_is_null(j, i)) return 0;
    if (oh_json_bool(j, i, out) != 0) return oh_errf(err, "%s: \"%s\" must be true or false", what, key);
    return 0;
}

/* eos_token_id may be an int or a list of ints (the first is used). */
static int get_token_id(const oh_json *j, const char *key, int *out, const char *what, oh_err *err) {
    int i = oh_json_get(j, 0, key);
    if (i < 0) return 0;
    if (oh_json_is_null(j, i)) { *out = -1; return 0; }
    if (oh_json_type(j, i) == JSMN_ARRAY) i = oh_json_at(j, i, 0);
    long long v;
    if (i < 0 || oh_json_int(j, i, &v) != 0) return oh_errf(err, "%s: \"%s\" must be an integer token id", what, key);
    *out = (int)v;
    return 0;
}

static int parse_rope(oh_config *c, const oh_json *j, const char *what, oh_err *err) {
    c->use_rope = false;
    c->rope_theta = 0;
    int rp = oh_json_get(j, 0, "rope_parameters");
    if (rp < 0) rp = oh_json_get(j, 0, "rope_scaling"); /* older spelling */
    double theta = 0;
    if (rp >= 0 && !oh_json_is_null(j, rp)) {
        if (oh_json_type(j, rp) != JSMN_OBJECT) return oh_errf(err, "%s: \"rope_parameters\" must be an object or null", what);
        int rt = oh_json_get(j, rp, "rope_type");
        if (rt < 0) rt = oh_json_get(j, rp, "type");
        if (rt >= 0 && !oh_json_is_null(j, rt) && !oh_json_eq(j, rt, "default")) {
            const char *p; int n; oh_json_raw(j, rt, &p, &n);
            return oh_errf(err, "%s: rope_parameters.rope_type %.*s is not supported (only default RoPE or NoPE)", what, n, p);
        }
        bool rope_type_null = rt >= 0 && oh_json_is_null(j, rt);
        if (get_num(j, rp, "rope_theta", &theta, what, err)) return -1;
        if (rope_type_null) theta = 0; /* {"rope_type": null} means NoPE */
    }
    if (theta == 0 && !(rp >= 0 && !oh_json_is_null(j, rp) && oh_json_get(j, rp, "rope_theta") >= 0)) {
        /* top-level rope_theta (older configs) when rope_parameters doesn't say */
        if (get_num(j, 0, "rope_theta", &theta, what, err)) return -1;
        if (rp >= 0 && oh_json_is_null(j, rp)) theta = 0; /* rope_parameters: null wins: NoPE */
    }
    if (theta < 0) return oh_errf(err, "%s: rope_theta must be positive", what);
    if (theta > 0) { c->use_rope = true; c->rope_theta = theta; }
    return 0;
}

int oh_config_parse(oh_config *c, const char *text, size_t len, const char *what, oh_err *err) {
    oh_json j;
    if (oh_json_parse(&j, text, len, what, err)) return -1;
    int rc = -1;
    if (oh_json_type(&j, 0) != JSMN_OBJECT) { oh_errf(err, "%s: expected a JSON object", what); goto out; }
    oh_config_defaults(c);
    int mt = oh_json_get(&j, 0, "model_type");
    if (mt >= 0 && !oh_json_eq(&j, mt, "olmo_hybrid")) {
        const char *p; int n; oh_json_raw(&j, mt, &p, &n);
        oh_errf(err, "%s: model_type is \"%.*s\", expected \"olmo_hybrid\"", what, n, p);
        goto out;
    }
    if (get_int(&j, "vocab_size", &c->vocab_size, what, err) || get_int(&j, "hidden_size", &c->hidden_size, what, err) ||
        get_int(&j, "intermediate_size", &c->intermediate_size, what, err) ||
        get_int(&j, "num_hidden_layers", &c->num_hidden_layers, what, err) ||
        get_int(&j, "num_attention_heads", &c->num_attention_heads, what, err) ||
        get_int(&j, "num_key_value_heads", &c->num_key_value_heads, what, err) ||
        get_int(&j, "head_dim", &c->head_dim, what, err) ||
        get_int(&j, "linear_num_key_heads", &c->linear_num_key_heads, what, err) ||
        get_int(&j, "linear_num_value_heads", &c->linear_num_value_heads, what, err) ||
        get_int(&j, "linear_key_head_dim", &c->linear_key_head_dim, what, err) ||
        get_int(&j, "linear_value_head_dim", &c->linear_value_head_dim, what, err) ||
        get_int(&j, "linear_conv_kernel_dim", &c->linear_conv_kernel_dim, what, err) ||
        get_int(&j, "max_position_embeddings", &c->max_position_embeddings, what, err) ||
        get_bool(&j, "linear_allow_neg_eigval", &c->linear_allow_neg_eigval, what, err) ||
        get_bool(&j, "tie_word_embeddings", &c->tie_word_embeddings, what, err) ||
        get_num(&j, 0, "rms_norm_eps", &c->rms_norm_eps, what, err) ||
        get_num(&j, 0, "initializer_range", &c->initializer_range, what, err) ||
        get_num(&j, 0, "linear_a_log_min", &c->linear_a_log_min, what, err) ||
        get_num(&j, 0, "linear_a_log_max", &c->linear_a_log_max, what, err) ||
        get_num(&j, 0, "linear_dt_min", &c->linear_dt_min, what, err) ||
        get_num(&j, 0, "linear_dt_max", &c->linear_dt_max, what, err) ||
        get_num(&j, 0, "linear_dt_init_floor", &c->linear_dt_init_floor, what, err) ||
        get_token_id(&j, "eos_token_id", &c->eos_token_id, what, err) ||
        get_token_id(&j, "pad_token_id", &c->pad_token_id, what, err) ||
        get_token_id(&j, "bos_token_id", &c->bos_token_id, what, err) || parse_rope(c, &j, what, err))
        goto out;
    int act = oh_json_get(&j, 0, "hidden_act");
    if (act >= 0 && !oh_json_eq(&j, act, "silu")) { oh_errf(err, "%s: hidden_act must be \"silu\"", what); goto out; }
    int ab = oh_json_get(&j, 0, "attention_bias");
    bool bias = false;
    if (ab >= 0 && oh_json_bool(&j, ab, &bias) == 0 && bias) {
        oh_errf(err, "%s: attention_bias = true is not supported (the released models have no biases)", what);
        goto out;
    }
    int dt = oh_json_get(&j, 0, "torch_dtype");
    if (dt < 0) dt = oh_json_get(&j, 0, "dtype");
    if (dt >= 0 && oh_json_is_str(&j, dt)) {
        size_t n; char *s = oh_json_str(&j, dt, &n);
        snprintf(c->torch_dtype, sizeof c->torch_dtype, "%s", s);
        free(s);
    }
    int lt = oh_json_get(&j, 0, "layer_types");
    if (c->num_hidden_layers <= 0 || c->num_hidden_layers > OH_MAX_LAYERS) {
        oh_errf(err, "%s: num_hidden_layers must be in 1..%d", what, OH_MAX_LAYERS);
        goto out;
    }
    if (lt >= 0 && !oh_json_is_null(&j, lt)) {
        if (oh_json_type(&j, lt) != JSMN_ARRAY || oh_json_size(&j, lt) != c->num_hidden_layers) {
            oh_errf(err, "%s: layer_types must be a list of num_hidden_layers (%d) strings", what, c->num_hidden_layers);
            goto out;
        }
        for (int i = 0; i < c->num_hidden_layers; i++) {
            int e = oh_json_at(&j, lt, i);
            if (oh_json_eq(&j, e, "full_attention")) c->is_attn[i] = true;
            else if (oh_json_eq(&j, e, "linear_attention")) c->is_attn[i] = false;
            else {
                const char *p; int n; oh_json_raw(&j, e, &p, &n);
                oh_errf(err, "%s: layer_types[%d] is \"%.*s\"; expected \"full_attention\" or \"linear_attention\"", what, i, n, p);
                goto out;
            }
        }
    } else {
        default_layer_types(c);
    }
    rc = oh_config_finalize(c, what, err);
out:
    oh_json_free(&j);
    return rc;
}

int oh_config_load_dir(oh_config *c, const char *dir, oh_err *err) {
    char *path = oh_path_join(dir, "config.json");
    char *text; size_t len;
    int rc = oh_read_file(path, &text, &len, err);
    if (rc == 0) { rc = oh_config_parse(c, text, len, path, err); free(text); }
    free(path);
    return rc;
}

/* a JSON float that reads back as a float (transformers' config validation
 * refuses 0 where it expects a float) */
static void put_float(oh_buf *b, const char *key, double v) {
    char tmp[40];
    snprintf(tmp, sizeof tmp, "%.17g", v);
    for (int p = 1; p <= 17; p++) {
        snprintf(tmp, sizeof tmp, "%.*g", p, v);
        if (strtod(tmp, NULL) == v) break;
    }
    oh_buf_printf(b, "  \"%s\": %s%s,\n", key, tmp, strpbrk(tmp, ".en") ? "" : ".0");
}

char *oh_config_to_json(const oh_config *c) {
    oh_buf b = {0};
    oh_buf_puts(&b, "{\n  \"architectures\": [\"OlmoHybridForCausalLM\"],\n  \"model_type\": \"olmo_hybrid\",\n");
    oh_buf_printf(&b, "  \"vocab_size\": %d,\n  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n", c->vocab_size,
                  c->hidden_size, c->intermediate_size);
    oh_buf_printf(&b, "  \"num_hidden_layers\": %d,\n  \"num_attention_heads\": %d,\n  \"num_key_value_heads\": %d,\n",
                  c->num_hidden_layers, c->num_attention_heads, c->num_key_value_heads);
    if (c->head_dim * c->num_attention_heads != c->hidden_size) oh_buf_printf(&b, "  \"head_dim\": %d,\n", c->head_dim);
    oh_buf_printf(&b, "  \"linear_num_key_heads\": %d,\n  \"linear_num_value_heads\": %d,\n", c->linear_num_key_heads,
                  c->linear_num_value_heads);
    oh_buf_printf(&b, "  \"linear_key_head_dim\": %d,\n  \"linear_value_head_dim\": %d,\n  \"linear_conv_kernel_dim\": %d,\n",
                  c->linear_key_head_dim, c->linear_value_head_dim, c->linear_conv_kernel_dim);
    oh_buf_printf(&b, "  \"linear_allow_neg_eigval\": %s,\n", c->linear_allow_neg_eigval ? "true" : "false");
    put_float(&b, "linear_a_log_min", c->linear_a_log_min);
    put_float(&b, "linear_a_log_max", c->linear_a_log_max);
    put_float(&b, "linear_dt_min", c->linear_dt_min);
    put_float(&b, "linear_dt_max", c->linear_dt_max);
    put_float(&b, "linear_dt_init_floor", c->linear_dt_init_floor);
    put_float(&b, "rms_norm_eps", c->rms_norm_eps);
    put_float(&b, "initializer_range", c->initializer_range);
    oh_buf_printf(&b, "  \"tie_word_embeddings\": %s,\n", c->tie_word_embeddings ? "true" : "false");
    oh_buf_printf(&b, "  \"max_position_embeddings\": %d,\n", c->max_position_embeddings);
    if (c->use_rope) oh_buf_printf(&b, "  \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": %.1f},\n", c->rope_theta);
    /* NoPE: this spelling is the one transformers 5.17 also reads as NoPE
     * ("rope_parameters": null makes it add default RoPE) */
    else oh_buf_puts(&b, "  \"rope_theta\": null,\n");
    oh_buf_puts(&b, "  \"hidden_act\": \"silu\",\n  \"attention_bias\": false,\n  \"attention_dropout\": 0.0,\n");
    oh_buf_printf(&b, "  \"eos_token_id\": %d,\n  \"pad_token_id\": %d,\n", c->eos_token_id, c->pad_token_id);
    if (c->bos_token_id >= 0) oh_buf_printf(&b, "  \"bos_token_id\": %d,\n", c->bos_token_id);
    else oh_buf_puts(&b, "  \"bos_token_id\": null,\n");
    oh_buf_puts(&b, "  \"layer_types\": [");
    for (int i = 0; i < c->num_hidden_layers; i++)
        oh_buf_printf(&b, "%s\"%s\"", i ? ", " : "", c->is_attn[i] ? "full_attention" : "linear_attention");
    oh_buf_printf(&b, "],\n  \"dtype\": \"%s\",\n", c->torch_dtype[0] ? c->torch_dtype : "bfloat16");
    oh_buf_puts(&b, "  \"use_cache\": true\n}\n");
    return b.p;
}

int oh_config_preset(oh_config *c, const char *name, oh_err *err) {
    oh_config_defaults(c);
    if (!strcmp(name, "olmo-hybrid-7b")) {
        /* the defaults are the 7B */
    } else if (!strcmp(name, "tiny")) {
        /* quickstart and tests: 4 layers (3 GDN + 1 attention), ~1.2M parameters */
        c->vocab_size = 512; c->hidden_size = 64; c->intermediate_size = 176; c->num_hidden_layers = 4;
        c->num_attention_heads = 4; c->num_key_value_heads = 2;
        c->linear_num_key_heads = 2; c->linear_num_value_heads = 4;
        c->linear_key_head_dim = 16; c->linear_value_head_dim = 32;
        c->eos_token_id = 1; c->pad_token_id = 0; c->max_position_embeddings = 4096;
    } else if (!strcmp(name, "small")) {
        /* ~20M parameters: the speed check of the CPU backward */
        c->vocab_size = 8192; c->hidden_size = 384; c->intermediate_size = 1024; c->num_hidden_layers = 8;
        c->num_attention_heads = 6;
        c->linear_num_key_heads = 6; c->linear_num_value_heads = 6;
        c->eos_token_id = 1; c->pad_token_id = 0; c->max_position_embeddings = 8192;
    } else {
        return oh_errf(err, "unknown preset \"%s\" (known: %s)", name, oh_config_preset_names());
    }
    snprintf(c->torch_dtype, sizeof c->torch_dtype, "bfloat16");
    default_layer_types(c);
    return oh_config_finalize(c, name, err);
}

const char *oh_config_preset_names(void) { return "tiny, small, olmo-hybrid-7b"; }
