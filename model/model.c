#include "model/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/safetensors.h"
#include "util/json.h"

/* released-layout suffix of each slot, per layer kind (NULL: slot absent) */
static const char *gdn_names[SLOT_COUNT] = {
    [SLOT_IN_NORM] = "input_layernorm.weight",
    [SLOT_POST_ATTN_NORM] = "post_attention_layernorm.weight",
    [SLOT_Q] = "linear_attn.q_proj.weight", [SLOT_K] = "linear_attn.k_proj.weight",
    [SLOT_V] = "linear_attn.v_proj.weight", [SLOT_G] = "linear_attn.g_proj.weight",
    [SLOT_O] = "linear_attn.o_proj.weight", [SLOT_A] = "linear_attn.a_proj.weight",
    [SLOT_B] = "linear_attn.b_proj.weight", [SLOT_QCONV] = "linear_attn.q_conv1d.weight",
    [SLOT_KCONV] = "linear_attn.k_conv1d.weight", [SLOT_VCONV] = "linear_attn.v_conv1d.weight",
    [SLOT_A_LOG] = "linear_attn.A_log", [SLOT_DT_BIAS] = "linear_attn.dt_bias",
    [SLOT_O_NORM] = "linear_attn.o_norm.weight",
    [SLOT_MLP_GATE] = "mlp.gate_proj.weight", [SLOT_MLP_UP] = "mlp.up_proj.weight", [SLOT_MLP_DOWN] = "mlp.down_proj.weight",
};
static const char *attn_names[SLOT_COUNT] = {
    [SLOT_Q] = "self_attn.q_proj.weight", [SLOT_K] = "self_attn.k_proj.weight",
    [SLOT_V] = "self_attn.v_proj.weight", [SLOT_O] = "self_attn.o_proj.weight",
    [SLOT_Q_NORM] = "self_attn.q_norm.weight", [SLOT_K_NORM] = "self_attn.k_norm.weight",
    [SLOT_POST_ATTN_NORM] = "post_attention_layernorm.weight",
    [SLOT_POST_FF_NORM] = "post_feedforward_layernorm.weight",
    [SLOT_MLP_GATE] = "mlp.gate_proj.weight", [SLOT_MLP_UP] = "mlp.up_proj.weight", [SLOT_MLP_DOWN] = "mlp.down_proj.weight",
};
/* OLMo-core names (blocks.{i}.<name>) */
static const char *core_gdn_names[SLOT_COUNT] = {
    [SLOT_IN_NORM] = "attention_norm", [SLOT_POST_ATTN_NORM] = "feed_forward_norm",
    [SLOT_Q] = "attention.w_q", [SLOT_K] = "attention.w_k", [SLOT_V] = "attention.w_v", [SLOT_G] = "attention.w_g",
    [SLOT_O] = "attention.w_out", [SLOT_A] = "attention.w_a", [SLOT_B] = "attention.w_b",
    [SLOT_QCONV] = "attention.q_conv1d", [SLOT_KCONV] = "attention.k_conv1d", [SLOT_VCONV] = "attention.v_conv1d",
    [SLOT_A_LOG] = "attention.A_log", [SLOT_DT_BIAS] = "attention.dt_bias", [SLOT_O_NORM] = "attention.o_norm",
    [SLOT_MLP_GATE] = "feed_forward.w1", [SLOT_MLP_UP] = "feed_forward.w3", [SLOT_MLP_DOWN] = "feed_forward.w2",
};
static const char *core_attn_names[SLOT_COUNT] = {
    [SLOT_Q] = "attention.w_q", [SLOT_K] = "attention.w_k", [SLOT_V] = "attention.w_v", [SLOT_O] = "attention.w_out",
    [SLOT_Q_NORM] = "attention.q_norm", [SLOT_K_NORM] = "attention.k_norm",
    [SLOT_POST_ATTN_NORM] = "attention_norm", [SLOT_POST_FF_NORM] = "feed_forward_norm",
    [SLOT_MLP_GATE] = "feed_forward.w1", [SLOT_MLP_UP] = "feed_forward.w3", [SLOT_MLP_DOWN] = "feed_forward.w2",
};

static int add_param(oh_model *m, char *name, int layer, oh_slot slot, int ndim, int64_t d0, int64_t d1, int64_t d2) {
    m->params = oh_realloc(m->params, sizeof(oh_param) * (size_t)(m->nparams + 1));
    oh_param *p = &m->params[m->nparams];
    memset(p, 0, sizeof *p);
    p->name = name;
    p->ndim = ndim;
    p->shape[0] = d0; p->shape[1] = d1; p->shape[2] = d2;
    p->numel = (size_t)d0 * (size_t)(ndim > 1 ? d1 : 1) * (size_t)(ndim > 2 ? d2 : 1);
    p->offset = m->nfloats;
    p->layer = layer;
    p->slot = slot;
    p->no_decay = ndim == 1;
    m->nfloats += (p->numel + 15) & ~(size_t)15; /* 64-byte aligned tensors */
    return m->nparams++;
}

void oh_model_build(oh_model *m, const oh_config *cfg, bool alloc) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    const oh_config *c = &m->cfg;
    int C = c->hidden_size, F = c->intermediate_size, Kd = oh_cfg_key_dim(c), Vd = oh_cfg_value_dim(c);
    int Hv = c->linear_num_value_heads, KC = c->linear_conv_kernel_dim;
    m->slot = oh_malloc(sizeof(int[SLOT_COUNT]) * (size_t)c->num_hidden_layers);
    m->embed = add_param(m, oh_strdup("model.embed_tokens.weight"), -1, SLOT_COUNT, 2, c->vocab_size, C, 0);
    for (int l = 0; l < c->num_hidden_layers; l++) {
        for (int s = 0; s < SLOT_COUNT; s++) m->slot[l][s] = -1;
        const char **names = c->is_attn[l] ? attn_names : gdn_names;
        for (int s = 0; s < SLOT_COUNT; s++) {
            if (!names[s]) continue;
            int64_t d0 = C, d1 = 0, d2 = 0;
            int nd = 1;
            switch ((oh_slot)s) {
            case SLOT_IN_NORM: case SLOT_POST_ATTN_NORM: case SLOT_POST_FF_NORM: break;
            case SLOT_Q_NORM: d0 = oh_cfg_q_dim(c); break;
            case SLOT_K_NORM: d0 = oh_cfg_kv_dim(c); break;
            case SLOT_MLP_GATE: case SLOT_MLP_UP: nd = 2; d0 = F; d1 = C; break;
            case SLOT_MLP_DOWN: nd = 2; d0 = C; d1 = F; break;
            case SLOT_Q: nd = 2; d0 = c->is_attn[l] ? oh_cfg_q_dim(c) : Kd; d1 = C; break;
            case SLOT_K: nd = 2; d0 = c->is_attn[l] ? oh_cfg_kv_dim(c) : Kd; d1 = C; break;
            case SLOT_V: nd = 2; d0 = c->is_attn[l] ? oh_cfg_kv_dim(c) : Vd; d1 = C; break;
            case SLOT_O: nd = 2; d0 = C; d1 = c->is_attn[l] ? oh_cfg_q_dim(c) : Vd; break;
            case SLOT_G: nd = 2; d0 = Vd; d1 = C; break;
            case SLOT_A: case SLOT_B: nd = 2; d0 = Hv; d1 = C; break;
            case SLOT_QCONV: case SLOT_KCONV: nd = 3; d0 = Kd; d1 = 1; d2 = KC; break;
            case SLOT_VCONV: nd = 3; d0 = Vd; d1 = 1; d2 = KC; break;
            case SLOT_A_LOG: case SLOT_DT_BIAS: d0 = Hv; break;
            case SLOT_O_NORM: d0 = c->linear_value_head_dim; break;
            default: break;
            }
            m->slot[l][s] = add_param(m, oh_sprintf("model.layers.%d.%s", l, names[s]), l, (oh_slot)s, nd, d0, d1, d2);
        }
    }
    m->final_norm = add_param(m, oh_strdup("model.norm.weight"), -1, SLOT_COUNT, 1, C, 0, 0);
    m->lm_head = c->tie_word_embeddings ? m->embed
                                        : add_param(m, oh_strdup("lm_head.weight"), -1, SLOT_COUNT, 2, c->vocab_size, C, 0);
    m->w = alloc ? oh_calloc(m->nfloats, sizeof(float)) : NULL;
    snprintf(m->source_layout, sizeof m->source_layout, "new");
}

void oh_model_free(oh_model *m) {
    for (int i = 0; i < m->nparams; i++) free(m->params[i].name);
    free(m->params);
    free(m->slot);
    free(m->w);
    memset(m, 0, sizeof *m);
}

int oh_model_find_param(const oh_model *m, const char *name) {
    for (int i = 0; i < m->nparams; i++)
        if (!strcmp(m->params[i].name, name)) return i;
    return -1;
}

size_t oh_model_numel(const oh_model *m) {
    size_t n = 0;
    for (int i = 0; i < m->nparams; i++) n += m->params[i].numel;
    return n;
}

/* ---------------- loading ---------------- */

typedef struct {
    const st_archive *a;
    bool *used;          /* per archive tensor */
} loader;

static const st_tensor *find_mark(loader *L, const char *name) {
    const st_tensor *t = st_find(L->a, name);
    if (t) L->used[t - L->a->tensors] = true;
    return t;
}

/* Candidate names of a parameter, in the order the layouts are tried. */
static int candidates(const oh_model *m, const oh_param *p, char out[6][160]) {
    int n = 0;
    snprintf(out[n++], 160, "%s", p->name);
    if (p->layer < 0) {
        const char *core = !strcmp(p->name, "model.embed_tokens.weight") ? "embeddings.weight"
                           : !strcmp(p->name, "model.norm.weight") ? "lm_head.norm.weight"
                           : "lm_head.w_out.weight";
        snprintf(out[n++], 160, "%s", core);
        return n;
    }
    int l = p->layer;
    bool attn = m->cfg.is_attn[l];
    /* transformers save_pretrained renames */
    if (p->slot == SLOT_IN_NORM) snprintf(out[n++], 160, "model.layers.%d.attention_layer_norm.weight", l);
    if (p->slot == SLOT_POST_ATTN_NORM) snprintf(out[n++], 160, "model.layers.%d.feedforward_layer_norm.weight", l);
    if (attn && p->slot == SLOT_POST_ATTN_NORM) snprintf(out[n++], 160, "model.layers.%d.attention_layer_norm.weight", l);
    const char *core = (attn ? core_attn_names : core_gdn_names)[p->slot];
    if (core) {
        snprintf(out[n++], 160, "blocks.%d.%s.weight", l, core);
        snprintf(out[n++], 160, "blocks.%d.%s", l, core);
    }
    return n;
}

static int shape_matches(const st_tensor *t, const oh_param *p) {
    if ((size_t)t->numel != p->numel) return 0;
    if (p->ndim == 3) return t->shape[0] == p->shape[0]; /* conv: [C,1,K] or [C,K] */
    if (t->ndim != p->ndim) return 0;
    for (int d = 0; d < p->ndim; d++) if (t->shape[d] != p->shape[d]) return 0;
    return 1;
}

static void shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t w = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < ndim && w < n; d++) w += (size_t)snprintf(buf + w, n - w, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (w < n) snprintf(buf + w, n - w, "]");
}

/* transformers' save layout cuts the fused q|k|v conv into three equal
 * parts: concatenate and split at [key_dim, key_dim, value_dim]. */
static int load_split_conv(oh_model *m, loader *L, int l, const st_tensor *t3[3], const char *dir, oh_err *err) {
    const oh_config *c = &m->cfg;
    int KC = c->linear_conv_kernel_dim;
    int64_t total = 2 * (int64_t)oh_cfg_key_dim(c) + oh_cfg_value_dim(c);
    int64_t rows = 0;
    for (int i = 0; i < 3; i++) {
        if ((t3[i]->numel % KC) || t3[i]->shape[0] * KC != t3[i]->numel)
            return oh_errf(err, "%s: tensor %s: shape does not fit conv kernel %d", dir, t3[i]->name, KC);
        rows += t3[i]->shape[0];
    }
    if (rows != total)
        return oh_errf(err, "%s: layer %d: conv tensors hold %lld channels, expected 2*key_dim + value_dim = %lld", dir, l,
                       (long long)rows, (long long)total);
    float *cat = oh_malloc(sizeof(float) * (size_t)(total * KC));
    size_t off = 0;
    for (int i = 0; i < 3; i++) {
        if (st_read_f32(L->a, t3[i], cat + off, err)) { free(cat); return -1; }
        off += (size_t)t3[i]->numel;
    }
    size_t kd = (size_t)oh_cfg_key_dim(c) * KC, vd = (size_t)oh_cfg_value_dim(c) * KC;
    memcpy(oh_lw(m, l, SLOT_QCONV), cat, kd * sizeof(float));
    memcpy(oh_lw(m, l, SLOT_KCONV), cat + kd, kd * sizeof(float));
    memcpy(oh_lw(m, l, SLOT_VCONV), cat + 2 * kd, vd * sizeof(float));
    free(cat);
    return 0;
}

int oh_model_load(oh_model *m, const char *dir, oh_err *err) {
    oh_config cfg;
    if (oh_config_load_dir(&cfg, dir, err)) return -1;
    st_archive a;
    if (st_open(&a, dir, err)) return -1;
    oh_model_build(m, &cfg, true);
    loader L = {&a, oh_calloc((size_t)a.ntensors ? (size_t)a.ntensors : 1, 1)};
    oh_buf missing = {0};
    int nmissing = 0, rc = 0;
    int layout_votes[3] = {0, 0, 0}; /* released, transformers-save, olmo-core */
    for (int i = 0; i < m->nparams && rc == 0; i++) {
        oh_param *p = &m->params[i];
        if (p->layer >= 0 && (p->slot == SLOT_KCONV || p->slot == SLOT_VCONV)) continue; /* with QCONV */
        char cand[6][160];
        int nc = candidates(m, p, cand);
        const st_tensor *t = NULL;
        int which = 0;
        for (int k = 0; k < nc && !t; k++) if ((t = find_mark(&L, cand[k]))) which = k;
        if (!t) {
            if (nmissing++ < 20) oh_buf_printf(&missing, "%s  %s", nmissing > 1 ? "\n" : "", p->name);
            if (p->slot == SLOT_QCONV) nmissing += 2;
            continue;
        }
        bool core_name = !strncmp(t->name, "blocks.", 7) || !strncmp(t->name, "embeddings", 10) ||
                         (!strncmp(t->name, "lm_head.", 8) && strcmp(t->name, "lm_head.weight"));
        layout_votes[core_name ? 2 : which > 0 ? 1 : 0]++;
        if (p->layer >= 0 && p->slot == SLOT_QCONV) {
            /* fetch k and v conv under the same naming */
            const st_tensor *t3[3] = {t, NULL, NULL};
            for (int s = 1; s < 3; s++) {
                oh_param *ps = &m->params[m->slot[p->layer][s == 1 ? SLOT_KCONV : SLOT_VCONV]];
                char c2[6][160];
                int n2 = candidates(m, ps, c2);
                for (int k = 0; k < n2 && !t3[s]; k++) t3[s] = find_mark(&L, c2[k]);
                if (!t3[s]) { if (nmissing++ < 20) oh_buf_printf(&missing, "\n  %s", ps->name); }
            }
            if (!t3[1] || !t3[2]) continue;
            const oh_param *pk = &m->params[m->slot[p->layer][SLOT_KCONV]], *pv = &m->params[m->slot[p->layer][SLOT_VCONV]];
            if (shape_matches(t3[0], p) && shape_matches(t3[1], pk) && shape_matches(t3[2], pv)) {
                rc = st_read_f32(&a, t3[0], oh_param_ptr(m, m->w, i), err);
                if (!rc) rc = st_read_f32(&a, t3[1], oh_param_ptr(m, m->w, m->slot[p->layer][SLOT_KCONV]), err);
                if (!rc) rc = st_read_f32(&a, t3[2], oh_param_ptr(m, m->w, m->slot[p->layer][SLOT_VCONV]), err);
            } else {
                rc = load_split_conv(m, &L, p->layer, t3, dir, err);
                if (!rc) layout_votes[1]++;
            }
            continue;
        }
        if (!shape_matches(t, p)) {
            char want[64], got[64];
            shape_str(want, sizeof want, p->ndim, p->shape);
            shape_str(got, sizeof got, t->ndim, t->shape);
            rc = oh_errf(err, "%s: tensor %s has shape %s, expected %s for %s (config.json)", a.files[t->file].path, t->name,
                         got, want, p->name);
            break;
        }
        rc = st_read_f32(&a, t, oh_param_ptr(m, m->w, i), err);
        if (!rc) {
            snprintf(m->stored_dtype, sizeof m->stored_dtype, "%s", st_dtype_name(t->dtype));
        }
    }
    if (rc == 0 && nmissing)
        rc = oh_errf(err, "%s: %d tensor(s) missing from the checkpoint:\n%s%s", dir, nmissing, missing.p,
                     nmissing > 20 ? "\n  ..." : "");
    if (rc == 0) {
        oh_buf unexp = {0};
        int nun = 0;
        for (int k = 0; k < a.ntensors; k++) {
            const char *nm = a.tensors[k].name;
            if (L.used[k] || !strncmp(nm, "mtp", 3) || strstr(nm, "rotary_emb.inv_freq")) continue;
            if (m->cfg.tie_word_embeddings && (!strcmp(nm, "lm_head.weight") || !strcmp(nm, "lm_head.w_out.weight"))) continue;
            if (nun++ < 20) oh_buf_printf(&unexp, "\n  %s", nm);
        }
        if (nun) rc = oh_errf(err, "%s: %d unexpected tensor(s) in the checkpoint:%s%s", dir, nun, unexp.p, nun > 20 ? "\n  ..." : "");
        oh_buf_free(&unexp);
    }
    if (rc == 0) {
        size_t bytes = 0;
        for (int k = 0; k < a.ntensors; k++) bytes += a.tensors[k].nbytes;
        m->stored_bytes = bytes;
        int best = layout_votes[2] ? 2 : layout_votes[1] ? 1 : 0;
        snprintf(m->source_layout, sizeof m->source_layout, "%s",
                 best == 2 ? "olmo-core" : best == 1 ? "transformers-save" : "released");
    }
    oh_buf_free(&missing);
    free(L.used);
    st_close(&a);
    if (rc) oh_model_free(m);
    return rc;
}

/* ---------------- init ---------------- */

static void init_param(const oh_model *m, int i, float *w, oh_rng *rp) {
    const oh_config *c = &m->cfg;
    const oh_param *p = &m->params[i];
    oh_rng r = *rp;
    {
        if (p->layer >= 0 && p->slot == SLOT_A_LOG) {
            for (size_t k = 0; k < p->numel; k++) {
                double A = c->linear_a_log_min + (c->linear_a_log_max - c->linear_a_log_min) * oh_rng_uniform(&r);
                if (A <= 0) A = 1e-30;
                w[k] = (float)log(A);
            }
        } else if (p->layer >= 0 && p->slot == SLOT_DT_BIAS) {
            for (size_t k = 0; k < p->numel; k++) {
                double dt = exp(oh_rng_uniform(&r) * (log(c->linear_dt_max) - log(c->linear_dt_min)) + log(c->linear_dt_min));
                if (dt < c->linear_dt_init_floor) dt = c->linear_dt_init_floor;
                w[k] = (float)(dt + log(-expm1(-dt)));
            }
        } else if (p->ndim == 1) {
            for (size_t k = 0; k < p->numel; k++) w[k] = 1.0f;
        } else {
            /* linear, conv and embedding weights: normal(0, initializer_range) */
            for (size_t k = 0; k < p->numel; k++) w[k] = (float)(c->initializer_range * oh_rng_normal(&r));
            if (i == m->embed && c->pad_token_id >= 0 && c->pad_token_id < c->vocab_size)
                memset(w + (size_t)c->pad_token_id * c->hidden_size, 0, sizeof(float) * (size_t)c->hidden_size);
        }
    }
    *rp = r;
}

void oh_model_init_random(oh_model *m, uint64_t seed) {
    oh_rng r;
    oh_rng_seed(&r, seed);
    for (int i = 0; i < m->nparams; i++)
        if (!(i == m->lm_head && m->lm_head == m->embed)) init_param(m, i, oh_param_ptr(m, m->w, i), &r);
}

static int write_side_files(const oh_config *c0, const char *dir, int dtype, oh_err *err);

int oh_init_checkpoint(const oh_config *cfg, uint64_t seed, const char *dir, int dtype, size_t max_shard_bytes,
                       oh_err *err) {
    if (oh_mkdirs(dir, err) || write_side_files(cfg, dir, dtype, err)) return -1;
    oh_model m;
    oh_model_build(&m, cfg, false);
    oh_rng r;
    oh_rng_seed(&r, seed);
    size_t esz = dtype == ST_F32 ? 4 : 2;
    /* count shards first so file names carry the total */
    int nshards = 0;
    size_t cur = 0;
    for (int i = 0; i < m.nparams; i++) {
        size_t b = m.params[i].numel * esz;
        if (nshards == 0 || (cur > 0 && cur + b > max_shard_bytes)) { nshards++; cur = 0; }
        cur += b;
    }
    oh_buf idx = {0};
    oh_buf_puts(&idx, "{\n  \"metadata\": {\"total_size\": 0},\n  \"weight_map\": {\n");
    int rc = 0, first = 0, shard = 0;
    size_t total = 0;
    while (first < m.nparams && rc == 0) {
        int last = first;
        size_t bytes = m.params[first].numel * esz;
        while (last + 1 < m.nparams && bytes + m.params[last + 1].numel * esz <= max_shard_bytes)
            bytes += m.params[++last].numel * esz;
        total += bytes;
        int cnt = last - first + 1;
        st_entry *e = oh_calloc((size_t)cnt, sizeof(st_entry));
        float **bufs = oh_calloc((size_t)cnt, sizeof(float *));
        for (int k = 0; k < cnt; k++) {
            const oh_param *q = &m.params[first + k];
            bufs[k] = oh_malloc(sizeof(float) * q->numel);
            init_param(&m, first + k, bufs[k], &r);
            e[k] = (st_entry){.name = q->name, .dtype = (st_dtype)dtype, .ndim = q->ndim, .data = bufs[k]};
            for (int d = 0; d < q->ndim; d++) e[k].shape[d] = q->shape[d];
        }
        char *fname = nshards == 1 ? oh_strdup("model.safetensors")
                                   : oh_sprintf("model-%05d-of-%05d.safetensors", shard + 1, nshards);
        char *path = oh_path_join(dir, fname);
        rc = st_save(path, e, cnt, "{\"format\":\"pt\"}", err);
        for (int k = 0; k < cnt; k++) {
            oh_buf_puts(&idx, "    ");
            oh_buf_json_str(&idx, m.params[first + k].name, strlen(m.params[first + k].name));
            oh_buf_printf(&idx, ": \"%s\"%s\n", fname, first + k == m.nparams - 1 ? "" : ",");
            free(bufs[k]);
        }
        free(bufs); free(e); free(path); free(fname);
        first = last + 1;
        shard++;
    }
    oh_buf_puts(&idx, "  }\n}\n");
    if (rc == 0 && nshards > 1) {
        char *tot = oh_sprintf("%zu", total);
        char *p0 = strstr(idx.p, "\"total_size\": 0");
        oh_buf fixed = {0};
        oh_buf_put(&fixed, idx.p, (size_t)(p0 - idx.p));
        oh_buf_printf(&fixed, "\"total_size\": %s", tot);
        oh_buf_puts(&fixed, p0 + strlen("\"total_size\": 0"));
        char *path = oh_path_join(dir, "model.safetensors.index.json");
        rc = oh_write_file_atomic(path, fixed.p, fixed.n, err);
        free(path); free(tot); oh_buf_free(&fixed);
    }
    oh_buf_free(&idx);
    oh_model_free(&m);
    return rc;
}

/* ---------------- saving ---------------- */

static int write_side_files(const oh_config *c0, const char *dir, int dtype, oh_err *err) {
    oh_config cfg = *c0;
    snprintf(cfg.torch_dtype, sizeof cfg.torch_dtype, "%s", dtype == ST_F32 ? "float32" : "bfloat16");
    char *cj = oh_config_to_json(&cfg);
    char *p = oh_path_join(dir, "config.json");
    int rc = oh_write_file_atomic(p, cj, strlen(cj), err);
    free(p); free(cj);
    if (rc) return -1;
    oh_buf g = {0};
    oh_buf_puts(&g, "{\n  \"_from_model_config\": true,\n");
    if (cfg.bos_token_id >= 0) oh_buf_printf(&g, "  \"bos_token_id\": %d,\n", cfg.bos_token_id);
    oh_buf_printf(&g, "  \"eos_token_id\": %d,\n  \"pad_token_id\": %d\n}\n", cfg.eos_token_id, cfg.pad_token_id);
    p = oh_path_join(dir, "generation_config.json");
    rc = oh_write_file_atomic(p, g.p, g.n, err);
    free(p); oh_buf_free(&g);
    return rc;
}

int oh_model_save(const oh_model *m, const char *dir, int dtype, size_t max_shard_bytes, oh_err *err) {
    if (oh_mkdirs(dir, err) || write_side_files(&m->cfg, dir, dtype, err)) return -1;
    int rc;
    st_entry *e = oh_calloc((size_t)m->nparams, sizeof(st_entry));
    for (int i = 0; i < m->nparams; i++) {
        const oh_param *q = &m->params[i];
        e[i].name = q->name;
        e[i].dtype = (st_dtype)dtype;
        e[i].ndim = q->ndim;
        for (int d = 0; d < q->ndim; d++) e[i].shape[d] = q->shape[d];
        e[i].data = m->w + q->offset;
    }
    rc = st_save_sharded(dir, e, m->nparams, max_shard_bytes, false, err);
    free(e);
    return rc;
}

/* ---------------- batches ---------------- */

void oh_batch_from_docs(oh_batch *b, const int32_t *const *docs, const int *lens, int ndocs) {
    memset(b, 0, sizeof *b);
    int T = 0;
    for (int d = 0; d < ndocs; d++) T += lens[d];
    b->T = T;
    b->ndocs = ndocs;
    b->ids = oh_malloc(sizeof(int32_t) * (size_t)(T ? T : 1));
    b->pos = oh_malloc(sizeof(int32_t) * (size_t)(T ? T : 1));
    b->targets = oh_malloc(sizeof(int32_t) * (size_t)(T ? T : 1));
    b->cu_seqlens = oh_malloc(sizeof(int32_t) * (size_t)(ndocs + 1));
    int t = 0;
    b->cu_seqlens[0] = 0;
    for (int d = 0; d < ndocs; d++) {
        for (int i = 0; i < lens[d]; i++, t++) {
            b->ids[t] = docs[d][i];
            b->pos[t] = i;
            b->targets[t] = i + 1 < lens[d] ? docs[d][i + 1] : -1;
        }
        b->cu_seqlens[d + 1] = t;
    }
}

void oh_batch_free(oh_batch *b) {
    free(b->ids); free(b->pos); free(b->targets); free(b->cu_seqlens);
    memset(b, 0, sizeof *b);
}

int oh_batch_check(const oh_batch *b, int vocab_size, oh_err *err) {
    for (int d = 0; d < b->ndocs; d++)
        for (int t = b->cu_seqlens[d]; t < b->cu_seqlens[d + 1]; t++)
            if (b->ids[t] < 0 || b->ids[t] >= vocab_size)
                return oh_errf(err, "document %d, position %d: token id %d is outside the vocabulary (vocab_size %d)", d,
                               t - b->cu_seqlens[d], b->ids[t], vocab_size);
    return 0;
}
