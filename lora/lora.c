#include "lora/lora.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <math.h>
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_ops.h"
#include "model/safetensors.h"
#include "util/json.h"

static const char *slot_module(bool attn, oh_slot s) {
    switch (s) {
    case SLOT_Q: return attn ? "self_attn.q_proj" : "linear_attn.q_proj";
    case SLOT_K: return attn ? "self_attn.k_proj" : "linear_attn.k_proj";
    case SLOT_V: return attn ? "self_attn.v_proj" : "linear_attn.v_proj";
    case SLOT_O: return attn ? "self_attn.o_proj" : "linear_attn.o_proj";
    case SLOT_G: return attn ? NULL : "linear_attn.g_proj";
    case SLOT_A: return attn ? NULL : "linear_attn.a_proj";
    case SLOT_B: return attn ? NULL : "linear_attn.b_proj";
    case SLOT_MLP_GATE: return "mlp.gate_proj";
    case SLOT_MLP_UP: return "mlp.up_proj";
    case SLOT_MLP_DOWN: return "mlp.down_proj";
    default: return NULL;
    }
}

char *oh_lora_module_path(const oh_model *m, int l, oh_slot s) {
    const char *mod = slot_module(m->cfg.is_attn[l], s);
    return mod && m->slot[l][s] >= 0 ? oh_sprintf("model.layers.%d.%s", l, mod) : NULL;
}

int oh_lora_cfg_set_targets(oh_lora_cfg *c, const char *const *names, int n, oh_err *err) {
    c->ntargets = 0;
    c->regex[0] = 0;
    if (n == 1 && (!strcmp(names[0], "all-linear") || strpbrk(names[0], "\\.*+?[](|^$"))) {
        if (strlen(names[0]) >= sizeof c->regex) return oh_errf(err, "lora target pattern is too long");
        snprintf(c->regex, sizeof c->regex, "%s", names[0]);
        return 0;
    }
    if (n > OH_LORA_MAX_TARGETS) return oh_errf(err, "too many lora targets (at most %d)", OH_LORA_MAX_TARGETS);
    for (int i = 0; i < n; i++) {
        if (strlen(names[i]) >= sizeof c->targets[0] || !names[i][0])
            return oh_errf(err, "lora target '%s' is not a module name", names[i]);
        snprintf(c->targets[c->ntargets++], sizeof c->targets[0], "%s", names[i]);
    }
    return 0;
}

static bool ends_with_module(const char *path, const char *name) {
    size_t lp = strlen(path), ln = strlen(name);
    if (!strcmp(path, name)) return true;
    return lp > ln && path[lp - ln - 1] == '.' && !strcmp(path + lp - ln, name);
}

int oh_lora_create(oh_lora *lo, const oh_model *m, const oh_lora_cfg *cfg, uint64_t seed, oh_err *err) {
    memset(lo, 0, sizeof *lo);
    lo->cfg = *cfg;
    if (cfg->rank <= 0) return oh_errf(err, "lora rank must be positive (got %d)", cfg->rank);
    lo->scale = cfg->rslora ? cfg->alpha / sqrt((double)cfg->rank) : cfg->alpha / cfg->rank;
    int L = m->cfg.num_hidden_layers;
    lo->map = oh_malloc(sizeof(int[SLOT_COUNT]) * (size_t)L);
    pcre2_code *re = NULL;
    bool all_linear = !strcmp(cfg->regex, "all-linear");
    if (cfg->regex[0] && !all_linear) {
        int ec;
        PCRE2_SIZE eo;
        re = pcre2_compile((PCRE2_SPTR)cfg->regex, PCRE2_ZERO_TERMINATED, PCRE2_ANCHORED | PCRE2_ENDANCHORED, &ec, &eo, NULL);
        if (!re) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(ec, msg, sizeof msg);
            free(lo->map);
            return oh_errf(err, "lora target pattern '%s': %s at offset %zu", cfg->regex, (char *)msg, (size_t)eo);
        }
    }
    pcre2_match_data *md = re ? pcre2_match_data_create_from_pattern(re, NULL) : NULL;
    bool used[OH_LORA_MAX_TARGETS] = {0};
    for (int l = 0; l < L; l++) {
        for (int s = 0; s < SLOT_COUNT; s++) {
            lo->map[l][s] = -1;
            char *path = oh_lora_module_path(m, l, (oh_slot)s);
            if (!path) continue;
            bool hit = all_linear;
            if (re) hit = pcre2_match(re, (PCRE2_SPTR)path, strlen(path), 0, 0, md, NULL) >= 0;
            for (int k = 0; k < cfg->ntargets; k++)
                if (ends_with_module(path, cfg->targets[k])) { hit = true; used[k] = true; }
            if (!hit) { free(path); continue; }
            const oh_param *p = &m->params[m->slot[l][s]];
            lo->ad = oh_realloc(lo->ad, sizeof(oh_lora_adapter) * (size_t)(lo->n + 1));
            oh_lora_adapter *a = &lo->ad[lo->n];
            a->layer = l;
            a->slot = (oh_slot)s;
            a->out = (int)p->shape[0];
            a->in = (int)p->shape[1];
            a->a_off = lo->nfloats;
            lo->nfloats += (size_t)cfg->rank * a->in;
            a->b_off = lo->nfloats;
            lo->nfloats += (size_t)a->out * cfg->rank;
            a->module = path;
            lo->map[l][s] = lo->n++;
        }
    }
    if (md) pcre2_match_data_free(md);
    if (re) pcre2_code_free(re);
    for (int k = 0; k < cfg->ntargets; k++)
        if (!used[k]) {
            oh_lora_free(lo);
            return oh_errf(err, "lora target '%s' matches no linear module (known: q_proj k_proj v_proj o_proj g_proj "
                                "a_proj b_proj gate_proj up_proj down_proj, or all-linear)", cfg->targets[k]);
        }
    if (lo->n == 0) {
        oh_lora_free(lo);
        return oh_errf(err, "lora targets match no module");
    }
    lo->w = oh_calloc(lo->nfloats, sizeof(float));
    oh_rng r;
    oh_rng_seed(&r, seed);
    for (int i = 0; i < lo->n; i++) {
        float *A = lo->w + lo->ad[i].a_off;
        double bound = 1.0 / sqrt((double)lo->ad[i].in); /* kaiming_uniform(a=sqrt(5)) on [r, in] */
        for (size_t k = 0; k < (size_t)cfg->rank * lo->ad[i].in; k++) A[k] = (float)((2.0 * oh_rng_uniform(&r) - 1.0) * bound);
    }
    return 0;
}

void oh_lora_free(oh_lora *lo) {
    for (int i = 0; i < lo->n; i++) free(lo->ad[i].module);
    free(lo->ad); free(lo->map); free(lo->w); free(lo->g);
    memset(lo, 0, sizeof *lo);
}

void oh_lora_merge(const oh_lora *lo, oh_model *m) {
    int r = lo->cfg.rank;
    for (int i = 0; i < lo->n; i++) {
        const oh_lora_adapter *a = &lo->ad[i];
        float *W = oh_lw(m, a->layer, a->slot);
        const float *A = lo->w + a->a_off, *B = lo->w + a->b_off;
        for (int o = 0; o < a->out; o++)
            for (int k = 0; k < r; k++) {
                float bs = (float)(lo->scale * B[(size_t)o * r + k]);
                if (bs == 0) continue;
                for (int j = 0; j < a->in; j++) W[(size_t)o * a->in + j] += bs * A[(size_t)k * a->in + j];
            }
    }
}

int oh_lora_save_peft(const oh_lora *lo, const char *dir, const char *base_model, oh_err *err) {
    if (oh_mkdirs(dir, err)) return -1;
    oh_buf j = {0};
    oh_buf_puts(&j, "{\n  \"peft_type\": \"LORA\",\n  \"task_type\": \"CAUSAL_LM\",\n  \"base_model_name_or_path\": ");
    oh_buf_json_str(&j, base_model ? base_model : "", base_model ? strlen(base_model) : 0);
    oh_buf_printf(&j, ",\n  \"r\": %d,\n  \"lora_alpha\": %.17g,\n  \"lora_dropout\": %.17g,\n  \"use_rslora\": %s,\n",
                  lo->cfg.rank, lo->cfg.alpha, lo->cfg.dropout, lo->cfg.rslora ? "true" : "false");
    oh_buf_puts(&j, "  \"bias\": \"none\",\n  \"fan_in_fan_out\": false,\n  \"inference_mode\": true,\n"
                    "  \"init_lora_weights\": true,\n  \"modules_to_save\": null,\n  \"target_modules\": ");
    if (lo->cfg.regex[0]) {
        oh_buf_json_str(&j, lo->cfg.regex, strlen(lo->cfg.regex));
    } else {
        oh_buf_puts(&j, "[");
        for (int k = 0; k < lo->cfg.ntargets; k++) {
            if (k) oh_buf_puts(&j, ", ");
            oh_buf_json_str(&j, lo->cfg.targets[k], strlen(lo->cfg.targets[k]));
        }
        oh_buf_puts(&j, "]");
    }
    oh_buf_puts(&j, "\n}\n");
    char *p = oh_path_join(dir, "adapter_config.json");
    int rc = oh_write_file_atomic(p, j.p, j.n, err);
    free(p);
    oh_buf_free(&j);
    if (rc) return -1;
    st_entry *e = oh_calloc((size_t)lo->n * 2, sizeof(st_entry));
    char **names = oh_calloc((size_t)lo->n * 2, sizeof(char *));
    for (int i = 0; i < lo->n; i++) {
        const oh_lora_adapter *a = &lo->ad[i];
        names[2 * i] = oh_sprintf("base_model.model.%s.lora_A.weight", a->module);
        names[2 * i + 1] = oh_sprintf("base_model.model.%s.lora_B.weight", a->module);
        e[2 * i] = (st_entry){.name = names[2 * i], .dtype = ST_F32, .ndim = 2, .shape = {lo->cfg.rank, a->in}, .data = lo->w + a->a_off};
        e[2 * i + 1] = (st_entry){.name = names[2 * i + 1], .dtype = ST_F32, .ndim = 2, .shape = {a->out, lo->cfg.rank}, .data = lo->w + a->b_off};
    }
    p = oh_path_join(dir, "adapter_model.safetensors");
    rc = st_save(p, e, lo->n * 2, "{\"format\":\"pt\"}", err);
    free(p);
    for (int i = 0; i < 2 * lo->n; i++) free(names[i]);
    free(names); free(e);
    return rc;
}

int oh_lora_load_peft(oh_lora *lo, const oh_model *m, const char *dir, oh_err *err) {
    char *p = oh_path_join(dir, "adapter_config.json"), *text;
    size_t len;
    if (oh_read_file(p, &text, &len, err)) { free(p); return -1; }
    oh_json j;
    int rc = oh_json_parse(&j, text, len, p, err);
    oh_lora_cfg c = {0};
    char **names = NULL;
    int nn = 0;
    if (rc == 0) {
        int k;
        double d;
        long long r;
        bool b;
        if ((k = oh_json_get(&j, 0, "peft_type")) >= 0 && !oh_json_eq(&j, k, "LORA"))
            rc = oh_errf(err, "%s: peft_type is not LORA", p);
        if (rc == 0 && ((k = oh_json_get(&j, 0, "r")) < 0 || oh_json_int(&j, k, &r) || r <= 0))
            rc = oh_errf(err, "%s: \"r\" must be a positive integer", p);
        c.rank = (int)r;
        c.alpha = c.rank;
        if (rc == 0 && (k = oh_json_get(&j, 0, "lora_alpha")) >= 0 && oh_json_num(&j, k, &d) == 0) c.alpha = d;
        if (rc == 0 && (k = oh_json_get(&j, 0, "lora_dropout")) >= 0 && oh_json_num(&j, k, &d) == 0) c.dropout = d;
        if (rc == 0 && (k = oh_json_get(&j, 0, "use_rslora")) >= 0 && oh_json_bool(&j, k, &b) == 0) c.rslora = b;
        if (rc == 0 && (k = oh_json_get(&j, 0, "fan_in_fan_out")) >= 0 && oh_json_bool(&j, k, &b) == 0 && b)
            rc = oh_errf(err, "%s: fan_in_fan_out adapters are not supported", p);
        int t = oh_json_get(&j, 0, "target_modules");
        if (rc == 0 && t >= 0 && oh_json_type(&j, t) == JSMN_ARRAY) {
            nn = oh_json_size(&j, t);
            names = oh_calloc((size_t)nn + 1, sizeof(char *));
            for (int i = 0; i < nn; i++) names[i] = oh_json_str(&j, oh_json_at(&j, t, i), NULL);
        } else if (rc == 0 && t >= 0 && oh_json_is_str(&j, t)) {
            names = oh_calloc(2, sizeof(char *));
            names[0] = oh_json_str(&j, t, NULL);
            nn = 1;
        } else if (rc == 0) {
            rc = oh_errf(err, "%s: no target_modules", p);
        }
        for (int i = 0; i < nn && rc == 0; i++) if (!names[i]) rc = oh_errf(err, "%s: target_modules must be strings", p);
        if (rc == 0) rc = oh_lora_cfg_set_targets(&c, (const char *const *)names, nn, err);
        oh_json_free(&j);
    }
    for (int i = 0; i < nn; i++) free(names[i]);
    free(names);
    free(text);
    free(p);
    if (rc) return -1;
    if (oh_lora_create(lo, m, &c, 0, err)) return -1;
    p = oh_path_join(dir, "adapter_model.safetensors");
    st_archive a;
    rc = st_open(&a, p, err);
    free(p);
    if (rc) { oh_lora_free(lo); return -1; }
    int found = 0;
    for (int i = 0; i < lo->n && rc == 0; i++) {
        oh_lora_adapter *ad = &lo->ad[i];
        for (int w = 0; w < 2 && rc == 0; w++) {
            /* PEFT writes "...lora_A.weight"; older files may carry an adapter name: "...lora_A.default.weight" */
            char *n1 = oh_sprintf("base_model.model.%s.lora_%c.weight", ad->module, w ? 'B' : 'A');
            char *n2 = oh_sprintf("base_model.model.%s.lora_%c.default.weight", ad->module, w ? 'B' : 'A');
            const st_tensor *t = st_find(&a, n1);
            if (!t) t = st_find(&a, n2);
            int64_t r0 = w ? ad->out : lo->cfg.rank, r1 = w ? lo->cfg.rank : ad->in;
            if (!t) rc = oh_errf(err, "%s: adapter tensor %s is missing", dir, n1);
            else if (t->ndim != 2 || t->shape[0] != r0 || t->shape[1] != r1)
                rc = oh_errf(err, "%s: adapter tensor %s has shape [%lld, %lld], expected [%lld, %lld]", dir, t->name,
                             (long long)t->shape[0], (long long)(t->ndim > 1 ? t->shape[1] : 0), (long long)r0, (long long)r1);
            else rc = st_read_f32(&a, t, lo->w + (w ? ad->b_off : ad->a_off), err);
            found++;
            free(n1); free(n2);
        }
    }
    if (rc == 0 && found != a.ntensors)
        rc = oh_errf(err, "%s: adapter_model.safetensors holds %d tensors but the config targets %d modules", dir, a.ntensors, lo->n);
    st_close(&a);
    if (rc) oh_lora_free(lo);
    return rc;
}
