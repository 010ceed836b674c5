#include "model/memory.h"
#include <stdio.h>

size_t oh_config_param_count(const oh_config *c) {
    size_t C = (size_t)c->hidden_size, F = (size_t)c->intermediate_size, V = (size_t)c->vocab_size;
    size_t Kd = (size_t)oh_cfg_key_dim(c), Vd = (size_t)oh_cfg_value_dim(c), Hv = (size_t)c->linear_num_value_heads;
    size_t Dq = (size_t)oh_cfg_q_dim(c), Dkv = (size_t)oh_cfg_kv_dim(c), KC = (size_t)c->linear_conv_kernel_dim;
    size_t n = V * C + C + (c->tie_word_embeddings ? 0 : V * C);
    for (int l = 0; l < c->num_hidden_layers; l++) {
        n += 3 * C * F;
        if (c->is_attn[l]) n += 2 * C * Dq + 2 * C * Dkv + Dq + Dkv + 2 * C;
        else n += 2 * C + 2 * Kd * C + 2 * Vd * C + Vd * C + 2 * Hv * C + (2 * Kd + Vd) * KC + 2 * Hv +
                  (size_t)c->linear_value_head_dim;
    }
    return n;
}

size_t oh_lora_param_count(const oh_config *c, int r) {
    size_t C = (size_t)c->hidden_size, F = (size_t)c->intermediate_size, R = (size_t)r;
    size_t Kd = (size_t)oh_cfg_key_dim(c), Vd = (size_t)oh_cfg_value_dim(c), Hv = (size_t)c->linear_num_value_heads;
    size_t Dq = (size_t)oh_cfg_q_dim(c), Dkv = (size_t)oh_cfg_kv_dim(c);
    size_t n = 0;
    for (int l = 0; l < c->num_hidden_layers; l++) {
        n += R * (C + F) * 3; /* gate, up, down: r*(in+out) each */
        if (c->is_attn[l]) n += R * ((C + Dq) * 2 + (C + Dkv) * 2);
        else n += R * ((C + Kd) * 2 + (C + Vd) * 3 + (C + Hv) * 2);
    }
    return n;
}

oh_mem_estimate oh_memory_estimate(const oh_config *c, int lora_rank, int T) {
    oh_mem_estimate e = {0};
    size_t N = oh_config_param_count(c), t = (size_t)T, C = (size_t)c->hidden_size;
    size_t F = (size_t)c->intermediate_size, Vd = (size_t)oh_cfg_value_dim(c), Kd = (size_t)oh_cfg_key_dim(c);
    e.weights = 2 * N;
    if (lora_rank > 0) {
        e.adapters = oh_lora_param_count(c, lora_rank) * 16; /* fp32 weight, grad, two moments */
    } else {
        e.master = 4 * N;
        e.grads = 2 * N;
        e.optimizer = 8 * N;
    }
    /* checkpointing: the bf16 input of every layer, plus one layer's full
     * activations while it is recomputed, plus the chunked loss */
    size_t per_layer_full = t * (6 * C + 4 * F + 4 * Kd + 6 * Vd) * 2 + t * (size_t)c->linear_num_value_heads *
                            (size_t)c->linear_key_head_dim * (size_t)c->linear_value_head_dim * 4 / 64;
    e.activations = (size_t)c->num_hidden_layers * t * C * 2 + 2 * per_layer_full + t * C * 4 +
                    (size_t)8192 * (size_t)c->vocab_size * 4;
    e.total = e.weights + e.master + e.grads + e.optimizer + e.adapters + e.activations;
    return e;
}

const char *oh_fmt_bytes(size_t b, char *buf, size_t n) {
    double v = (double)b;
    if (v >= 1024.0 * 1024 * 1024) snprintf(buf, n, "%.1f GiB", v / (1024.0 * 1024 * 1024));
    else if (v >= 1024.0 * 1024) snprintf(buf, n, "%.1f MiB", v / (1024.0 * 1024));
    else snprintf(buf, n, "%.1f KiB", v / 1024.0);
    return buf;
}
