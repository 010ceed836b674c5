#include "finetune/checkpoint.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/safetensors.h"
#include "util/json.h"

/* entries for a flat buffer laid out like the params (or adapters) */
static st_entry *param_entries(const oh_model *m, const oh_lora *lo, const float *buf, const char *prefix, char ***names_out,
                               int *n_out) {
    int n = lo ? 2 * lo->n : m->nparams;
    st_entry *e = oh_calloc((size_t)n, sizeof(st_entry));
    char **names = oh_calloc((size_t)n, sizeof(char *));
    for (int i = 0; i < n; i++) {
        if (lo) {
            const oh_lora_adapter *a = &lo->ad[i / 2];
            bool isB = i & 1;
            names[i] = oh_sprintf("%s%s.lora_%c.weight", prefix, a->module, isB ? 'B' : 'A');
            e[i] = (st_entry){.name = names[i], .dtype = ST_F32, .ndim = 2,
                              .shape = {isB ? a->out : lo->cfg.rank, isB ? lo->cfg.rank : a->in},
                              .data = buf + (isB ? a->b_off : a->a_off)};
        } else {
            const oh_param *p = &m->params[i];
            names[i] = oh_sprintf("%s%s", prefix, p->name);
            e[i] = (st_entry){.name = names[i], .dtype = ST_F32, .ndim = p->ndim, .data = buf + p->offset};
            for (int d = 0; d < p->ndim; d++) e[i].shape[d] = p->shape[d];
        }
    }
    *names_out = names;
    *n_out = n;
    return e;
}

static void free_names(char **names, int n) {
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

static int save_buffer(const char *path, const oh_model *m, const oh_lora *lo, const float *buf, const char *prefix,
                       const float *buf2, const char *prefix2, oh_err *err) {
    char **n1, **n2 = NULL;
    int c1, c2 = 0;
    st_entry *e1 = param_entries(m, lo, buf, prefix, &n1, &c1), *e2 = NULL;
    if (buf2) e2 = param_entries(m, lo, buf2, prefix2, &n2, &c2);
    st_entry *all = oh_malloc(sizeof(st_entry) * (size_t)(c1 + c2));
    memcpy(all, e1, sizeof(st_entry) * (size_t)c1);
    if (c2) memcpy(all + c1, e2, sizeof(st_entry) * (size_t)c2);
    int rc = st_save(path, all, c1 + c2, NULL, err);
    free(all); free(e1); free(e2);
    free_names(n1, c1);
    if (n2) free_names(n2, c2);
    return rc;
}

static int load_buffer(const char *path, const oh_model *m, const oh_lora *lo, float *buf, const char *prefix, oh_err *err) {
    st_archive a;
    if (st_open(&a, path, err)) return -1;
    char **names;
    int n, rc = 0;
    st_entry *e = param_entries(m, lo, buf, prefix, &names, &n);
    for (int i = 0; i < n && rc == 0; i++) {
        const st_tensor *t = st_find(&a, e[i].name);
        size_t numel = 1;
        for (int d = 0; d < e[i].ndim; d++) numel *= (size_t)e[i].shape[d];
        if (!t) rc = oh_errf(err, "%s: tensor %s missing", path, e[i].name);
        else if ((size_t)t->numel != numel) rc = oh_errf(err, "%s: tensor %s has %lld elements, expected %zu", path, e[i].name, (long long)t->numel, numel);
        else rc = st_read_f32(&a, t, (float *)e[i].data, err);
    }
    free(e);
    free_names(names, n);
    st_close(&a);
    return rc;
}

static int write_state(const char *path, const ckpt_state *st, oh_err *err) {
    oh_buf b = {0};
    oh_buf_printf(&b, "{\n  \"step\": %ld,\n  \"tokens\": %ld,\n  \"method\": \"%s\",\n  \"base_model\": ", st->step, st->tokens,
                  st->method);
    oh_buf_json_str(&b, st->base_model, strlen(st->base_model));
    oh_buf_puts(&b, ",\n  \"tokenizer\": ");
    oh_buf_json_str(&b, st->tokenizer, strlen(st->tokenizer));
    oh_buf_puts(&b, ",\n  \"data_pos\": [");
    for (int i = 0; i < CKPT_POS_WORDS; i++) oh_buf_printf(&b, "%s\"%016" PRIx64 "\"", i ? ", " : "", st->data_pos[i]);
    oh_buf_puts(&b, "],\n  \"rng\": [");
    for (int i = 0; i < 4; i++) oh_buf_printf(&b, "%s\"%016" PRIx64 "\"", i ? ", " : "", st->rng.s[i]);
    oh_buf_puts(&b, "]\n}\n");
    int rc = oh_write_file_atomic(path, b.p, b.n, err);
    oh_buf_free(&b);
    return rc;
}

int ckpt_read_state(const char *dir, ckpt_state *st, oh_err *err) {
    memset(st, 0, sizeof *st);
    char *p = oh_path_join(dir, "state.json"), *text;
    size_t len;
    if (oh_read_file(p, &text, &len, err)) { free(p); return -1; }
    oh_json j;
    int rc = oh_json_parse(&j, text, len, p, err);
    if (rc == 0) {
        long long v;
        int k;
        if ((k = oh_json_get(&j, 0, "step")) < 0 || oh_json_int(&j, k, &v)) rc = oh_errf(err, "%s: no step", p);
        else st->step = (long)v;
        if (rc == 0 && (k = oh_json_get(&j, 0, "tokens")) >= 0 && oh_json_int(&j, k, &v) == 0) st->tokens = (long)v;
        char *s;
        if (rc == 0 && (s = oh_json_str(&j, oh_json_get(&j, 0, "base_model"), NULL))) {
            snprintf(st->base_model, sizeof st->base_model, "%s", s);
            free(s);
        }
        if (rc == 0 && (s = oh_json_str(&j, oh_json_get(&j, 0, "tokenizer"), NULL))) {
            snprintf(st->tokenizer, sizeof st->tokenizer, "%s", s);
            free(s);
        }
        if (rc == 0 && (s = oh_json_str(&j, oh_json_get(&j, 0, "method"), NULL))) {
            snprintf(st->method, sizeof st->method, "%s", s);
            free(s);
        }
        int dp = oh_json_get(&j, 0, "data_pos"), rg = oh_json_get(&j, 0, "rng");
        for (int i = 0; rc == 0 && i < CKPT_POS_WORDS; i++) {
            s = oh_json_str(&j, oh_json_at(&j, dp, i), NULL);
            if (!s) rc = oh_errf(err, "%s: bad data_pos", p);
            else { st->data_pos[i] = strtoull(s, NULL, 16); free(s); }
        }
        for (int i = 0; rc == 0 && i < 4; i++) {
            s = oh_json_str(&j, oh_json_at(&j, rg, i), NULL);
            if (!s) rc = oh_errf(err, "%s: bad rng", p);
            else { st->rng.s[i] = strtoull(s, NULL, 16); free(s); }
        }
        oh_json_free(&j);
    }
    free(text);
    free(p);
    return rc;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* complete checkpoints, sorted by name (= by step) */
static char **list_ckpts(const char *ckdir, int *n) {
    *n = 0;
    DIR *d = opendir(ckdir);
    if (!d) return NULL;
    char **v = NULL;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "step-", 5) || strchr(e->d_name, '.')) continue;
        v = oh_realloc(v, sizeof(char *) * (size_t)(*n + 1));
        v[(*n)++] = oh_strdup(e->d_name);
    }
    closedir(d);
    if (*n) qsort(v, (size_t)*n, sizeof(char *), cmp_str);
    return v;
}

int ckpt_save(const char *run_dir, const ckpt_state *st, const oh_model *m, const oh_lora *lo, const float *opt_m,
              const float *opt_v, int keep_last, oh_err *err) {
    char *ckdir = oh_path_join(run_dir, "checkpoints");
    if (oh_mkdirs(ckdir, err)) { free(ckdir); return -1; }
    char *final = oh_sprintf("%s/step-%08ld", ckdir, st->step);
    char *tmp = oh_sprintf("%s.tmp-%d", final, (int)getpid());
    oh_rmtree(tmp);
    int rc = oh_mkdirs(tmp, err);
    char *p;
    if (rc == 0) {
        char *cj = oh_config_to_json(&m->cfg);
        p = oh_path_join(tmp, "config.json");
        rc = oh_write_file_atomic(p, cj, strlen(cj), err);
        free(p); free(cj);
    }
    if (rc == 0) {
        if (lo) rc = oh_lora_save_peft(lo, tmp, st->base_model, err);
        else {
            p = oh_path_join(tmp, "model.safetensors");
            rc = save_buffer(p, m, NULL, m->w, "", NULL, NULL, err);
            free(p);
        }
    }
    if (rc == 0) {
        p = oh_path_join(tmp, "optimizer.safetensors");
        rc = save_buffer(p, m, lo, opt_m, "m.", opt_v, "v.", err);
        free(p);
    }
    if (rc == 0) {
        p = oh_path_join(tmp, "state.json");
        rc = write_state(p, st, err); /* last: its presence marks a complete checkpoint */
        free(p);
    }
    if (rc == 0) {
        oh_fsync_dir(tmp);
        oh_rmtree(final); /* a re-save of the same step */
        if (rename(tmp, final) != 0) rc = oh_errf(err, "%s: cannot rename checkpoint into place", final);
        oh_fsync_dir(ckdir);
    }
    if (rc) oh_rmtree(tmp);
    if (rc == 0) {
        int n;
        char **names = list_ckpts(ckdir, &n);
        for (int i = 0; i < n - keep_last; i++) {
            char *old = oh_path_join(ckdir, names[i]);
            oh_rmtree(old);
            free(old);
        }
        for (int i = 0; i < n; i++) free(names[i]);
        free(names);
    }
    free(tmp); free(final); free(ckdir);
    return rc;
}

char *ckpt_latest(const char *run_dir) {
    char *ckdir = oh_path_join(run_dir, "checkpoints");
    int n;
    char **names = list_ckpts(ckdir, &n);
    char *best = NULL;
    for (int i = n - 1; i >= 0 && !best; i--) {
        char *d = oh_path_join(ckdir, names[i]);
        char *s = oh_path_join(d, "state.json");
        if (oh_file_exists(s)) best = d;
        else free(d);
        free(s);
    }
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    free(ckdir);
    return best;
}

int ckpt_load(const char *dir, oh_model *m, oh_lora *lo, float *opt_m, float *opt_v, oh_err *err) {
    int rc;
    char *p;
    if (lo) {
        p = oh_path_join(dir, "adapter_model.safetensors");
        rc = load_buffer(p, m, lo, lo->w, "base_model.model.", err);
    } else {
        p = oh_path_join(dir, "model.safetensors");
        rc = load_buffer(p, m, NULL, m->w, "", err);
    }
    free(p);
    if (rc) return -1;
    p = oh_path_join(dir, "optimizer.safetensors");
    rc = load_buffer(p, m, lo, opt_m, "m.", err);
    if (rc == 0) rc = load_buffer(p, m, lo, opt_v, "v.", err);
    free(p);
    return rc;
}
