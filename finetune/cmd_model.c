/* finetune inspect | logits | grads | init: the model-level commands. */
#include "finetune/commands.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lora/lora.h"
#include "model/memory.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "util/json.h"

#ifdef OH_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

/* ---- tiny argument helper ---- */
const char *cli_opt(int argc, char **argv, const char *name) {
    for (int i = 0; i < argc - 1; i++)
        if (!strcmp(argv[i], name)) return argv[i + 1];
    return NULL;
}
bool cli_flag(int argc, char **argv, const char *name) {
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], name)) return true;
    return false;
}
/* Reject options not in `known` (NULL-terminated; entries ending in '=' take a value). */
int cli_check(int argc, char **argv, const char *cmd, const char *const *known, int npos, oh_err *err) {
    int pos = 0;
    for (int i = 0; i < argc; i++) {
        if (argv[i][0] != '-' || !argv[i][1]) {
            if (++pos > npos) return oh_errf(err, "%s: unexpected argument '%s'", cmd, argv[i]);
            continue;
        }
        bool ok = false;
        for (const char *const *k = known; *k && !ok; k++) {
            size_t n = strlen(*k);
            bool takes = (*k)[n - 1] == '=';
            if (strncmp(argv[i], *k, takes ? n - 1 : n) || strlen(argv[i]) != (takes ? n - 1 : n)) continue;
            ok = true;
            if (takes && ++i >= argc) return oh_errf(err, "%s: option %s needs a value", cmd, argv[i - 1]);
        }
        if (!ok) return oh_errf(err, "%s: unknown option '%s' (see finetune %s --help)", cmd, argv[i], cmd);
    }
    return 0;
}

/* ---- {"input_ids": [...]} lines ---- */
typedef struct { int32_t **ids; int *lens; int n; } id_lines;

static void id_lines_free(id_lines *L) {
    for (int i = 0; i < L->n; i++) free(L->ids[i]);
    free(L->ids); free(L->lens);
    memset(L, 0, sizeof *L);
}

static int read_id_lines(const char *path, id_lines *out, int vocab, oh_err *err) {
    memset(out, 0, sizeof *out);
    char *text; size_t len;
    if (oh_read_file(path, &text, &len, err)) return -1;
    int lineno = 0, rc = 0;
    char *p = text, *end = text + len;
    while (p < end && rc == 0) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *le = nl ? nl : end;
        lineno++;
        char *q = p;
        while (q < le && (*q == ' ' || *q == '\t' || *q == '\r')) q++;
        if (q == le) { p = le + 1; continue; }
        char what[512];
        snprintf(what, sizeof what, "%s:%d", path, lineno);
        oh_json j;
        if (oh_json_parse(&j, p, (size_t)(le - p), what, err)) { rc = -1; break; }
        int a = oh_json_get(&j, 0, "input_ids");
        if (a < 0 || oh_json_type(&j, a) != JSMN_ARRAY) {
            rc = oh_errf(err, "%s: expected an object with an \"input_ids\" list", what);
        } else if (oh_json_size(&j, a) == 0) {
            rc = oh_errf(err, "%s: \"input_ids\" is empty", what);
        } else {
            int n = oh_json_size(&j, a);
            int32_t *ids = oh_malloc(sizeof(int32_t) * (size_t)n);
            int e = a + 1;
            for (int k = 0; k < n && rc == 0; k++, e = oh_json_skip(&j, e)) {
                long long v;
                if (oh_json_int(&j, e, &v)) rc = oh_errf(err, "%s: input_ids[%d] is not an integer", what, k);
                else if (v < 0 || v >= vocab)
                    rc = oh_errf(err, "%s: input_ids[%d] = %lld is outside the vocabulary (vocab_size %d)", what, k, v, vocab);
                else ids[k] = (int32_t)v;
            }
            if (rc) free(ids);
            else {
                out->ids = oh_realloc(out->ids, sizeof(int32_t *) * (size_t)(out->n + 1));
                out->lens = oh_realloc(out->lens, sizeof(int) * (size_t)(out->n + 1));
                out->ids[out->n] = ids;
                out->lens[out->n++] = n;
            }
        }
        oh_json_free(&j);
        p = le + 1;
    }
    free(text);
    if (rc == 0 && out->n == 0) rc = oh_errf(err, "%s: no input lines", path);
    if (rc) id_lines_free(out);
    return rc;
}

static int check_backend(const char *b, oh_err *err) {
    if (b && strcmp(b, "cpu"))
        return oh_errf(err, "backend '%s' is not available for this command yet (use --backend cpu)", b);
    return 0;
}

/* ---------------- inspect ---------------- */
int cmd_inspect(int argc, char **argv) {
    static const char *const known[] = {"--seq-len=", "--lora-rank=", NULL};
    oh_err err;
    if (cli_check(argc, argv, "inspect", known, 1, &err)) { fprintf(stderr, "error: %s\n", err.msg); return 2; }
    const char *dir = NULL;
    for (int i = 0; i < argc; i++) { if (argv[i][0] == '-') { i++; continue; } dir = argv[i]; }
    if (!dir) { fprintf(stderr, "usage: finetune inspect MODEL_DIR [--seq-len T] [--lora-rank R]\n"); return 2; }
    int T = cli_opt(argc, argv, "--seq-len") ? atoi(cli_opt(argc, argv, "--seq-len")) : 4096;
    int R = cli_opt(argc, argv, "--lora-rank") ? atoi(cli_opt(argc, argv, "--lora-rank")) : 16;
    oh_config c;
    if (oh_config_load_dir(&c, dir, &err)) { fprintf(stderr, "error: %s\n", err.msg); return 1; }
    st_archive a;
    if (st_open(&a, dir, &err)) { fprintf(stderr, "error: %s\n", err.msg); return 1; }
    size_t stored = 0, counts[ST_NDTYPES] = {0};
    for (int k = 0; k < a.ntensors; k++) { stored += a.tensors[k].nbytes; counts[a.tensors[k].dtype] += a.tensors[k].numel; }
    char b1[32], b2[32], b3[32];
    printf("model        %s\n", dir);
    printf("files        %d safetensors file(s), %d tensors, %s on disk\n", a.nfiles, a.ntensors, oh_fmt_bytes(stored, b1, sizeof b1));
    printf("stored dtype");
    for (int d = 0; d < ST_NDTYPES; d++) if (counts[d]) printf(" %s (%zu elements)", st_dtype_name((st_dtype)d), counts[d]);
    printf("\n");
    st_close(&a);
    int nattn = 0;
    for (int l = 0; l < c.num_hidden_layers; l++) nattn += c.is_attn[l];
    printf("layers       %d (%d gated DeltaNet, %d attention): ", c.num_hidden_layers, c.num_hidden_layers - nattn, nattn);
    for (int l = 0; l < c.num_hidden_layers; l++) putchar(c.is_attn[l] ? 'A' : 'G');
    printf("\n");
    printf("hidden       %d, MLP %d (SwiGLU), vocab %d, %s embeddings\n", c.hidden_size, c.intermediate_size,
           c.vocab_size, c.tie_word_embeddings ? "tied" : "untied");
    printf("attention    %d heads x %d, %d kv heads, q/k RMSNorm over the projection, %s\n", c.num_attention_heads,
           c.head_dim, c.num_key_value_heads, c.use_rope ? "RoPE" : "NoPE (no positional encoding)");
    if (c.use_rope) printf("rope theta   %g\n", c.rope_theta);
    printf("gated DN     %d key heads x %d, %d value heads x %d, conv %d, beta in (0, %d)\n", c.linear_num_key_heads,
           c.linear_key_head_dim, c.linear_num_value_heads, c.linear_value_head_dim, c.linear_conv_kernel_dim,
           c.linear_allow_neg_eigval ? 2 : 1);
    printf("eps          rms %g, GDN output norm 1e-5\n", c.rms_norm_eps);
    printf("tokens       eos %d, pad %d, bos %d; max positions %d\n", c.eos_token_id, c.pad_token_id, c.bos_token_id,
           c.max_position_embeddings);
    size_t N = oh_config_param_count(&c);
    printf("parameters   %zu (%.2fB)\n", N, (double)N / 1e9);
    oh_mem_estimate lo = oh_memory_estimate(&c, R, T), full = oh_memory_estimate(&c, 0, T);
    printf("memory estimate for one GPU, one sequence of %d tokens, activation checkpointing:\n", T);
    printf("  LoRA r=%d    %s  (bf16 base %s, adapters+Adam %s, activations %s)\n", R, oh_fmt_bytes(lo.total, b1, sizeof b1),
           oh_fmt_bytes(lo.weights, b2, sizeof b2), oh_fmt_bytes(lo.adapters, b3, sizeof b3),
           oh_fmt_bytes(lo.activations, (char[32]){0}, 32));
    printf("  full FT     %s  (bf16 weights %s, fp32 master %s, bf16 grads %s, Adam %s, activations %s)\n",
           oh_fmt_bytes(full.total, b1, sizeof b1), oh_fmt_bytes(full.weights, b2, sizeof b2),
           oh_fmt_bytes(full.master, b3, sizeof b3), oh_fmt_bytes(full.grads, (char[32]){0}, 32),
           oh_fmt_bytes(full.optimizer, (char[32]){0}, 32), oh_fmt_bytes(full.activations, (char[32]){0}, 32));
#ifdef OH_HAVE_CUDA
    int nd = oh_cuda_device_count();
    for (int d = 0; d < nd; d++) {
        char buf[256];
        if (oh_cuda_device_describe(d, buf, sizeof buf) == 0) printf("gpu          %s\n", buf);
    }
    if (!nd) printf("gpu          none visible (CPU backend)\n");
#else
    printf("gpu          CUDA backend not built (CPU backend)\n");
#endif
    return 0;
}

/* ---------------- logits ---------------- */

/* Pack lines into batches of at most `budget` tokens and run the forward.
 * For line i: logits[i] [T_i, V] and loss[i] (mean over T_i - 1 predictions). */
static int run_lines(const oh_model *m, const id_lines *L, float **logits, float *loss, oh_err *err) {
    int V = m->cfg.vocab_size, budget = 8192;
    for (int i = 0; i < L->n;) {
        int j = i, T = 0;
        while (j < L->n && (j == i || T + L->lens[j] <= budget)) T += L->lens[j++];
        oh_batch b;
        oh_batch_from_docs(&b, (const int32_t *const *)L->ids + i, L->lens + i, j - i);
        oh_fwd_out fo;
        if (oh_forward(m, &b, &fo, NULL, err)) { oh_batch_free(&b); return -1; }
        for (int d = i; d < j; d++) {
            int t0 = b.cu_seqlens[d - i], n = L->lens[d];
            if (logits) {
                logits[d] = oh_malloc(sizeof(float) * (size_t)n * (size_t)V);
                memcpy(logits[d], fo.logits + (size_t)t0 * V, sizeof(float) * (size_t)n * (size_t)V);
            }
            double s = 0;
            for (int t = t0; t < t0 + n - 1; t++) s += fo.loss[t];
            loss[d] = n > 1 ? (float)(s / (n - 1)) : NAN;
        }
        oh_fwd_free(&fo);
        oh_batch_free(&b);
        i = j;
    }
    return 0;
}

int cmd_logits(int argc, char **argv) {
    static const char *const known[] = {"--model=", "--input=", "--out=", "--backend=", "--adapter=", NULL};
    oh_err err;
    if (cli_check(argc, argv, "logits", known, 0, &err)) { fprintf(stderr, "error: %s\n", err.msg); return 2; }
    const char *adapter = cli_opt(argc, argv, "--adapter");
    const char *dir = cli_opt(argc, argv, "--model"), *in = cli_opt(argc, argv, "--input"), *out = cli_opt(argc, argv, "--out");
    if (!dir || !in || !out) {
        fprintf(stderr, "usage: finetune logits --model MODEL_DIR [--adapter PEFT_DIR] --input IDS.jsonl --out OUT.safetensors "
                        "[--backend cpu]\n");
        return 2;
    }
    if (check_backend(cli_opt(argc, argv, "--backend"), &err)) { fprintf(stderr, "error: %s\n", err.msg); return 2; }
    oh_model m;
    if (oh_model_load(&m, dir, &err)) { fprintf(stderr, "error: %s\n", err.msg); return 1; }
    oh_lora lo;
    if (adapter) { /* applied unmerged, as PEFT does */
        if (oh_lora_load_peft(&lo, &m, adapter, &err)) { fprintf(stderr, "error: %s\n", err.msg); oh_model_free(&m); return 1; }
        m.lora = &lo;
    }
    id_lines L;
    if (read_id_lines(in, &L, m.cfg.vocab_size, &err)) { fprintf(stderr, "error: %s\n", err.msg); oh_model_free(&m); return 1; }
    float **logits = oh_calloc((size_t)L.n, sizeof(float *));
    float *loss = oh_calloc((size_t)L.n, sizeof(float));
    int rc = run_lines(&m, &L, logits, loss, &err);
    if (rc == 0) {
        st_entry *e = oh_calloc((size_t)L.n * 2, sizeof(st_entry));
        char **names = oh_calloc((size_t)L.n * 2, sizeof(char *));
        for (int i = 0; i < L.n; i++) {
            names[2 * i] = oh_sprintf("logits_%d", i);
            names[2 * i + 1] = oh_sprintf("loss_%d", i);
            e[2 * i] = (st_entry){.name = names[2 * i], .dtype = ST_F32, .ndim = 2, .shape = {L.lens[i], m.cfg.vocab_size}, .data = logits[i]};
            e[2 * i + 1] = (st_entry){.name = names[2 * i + 1], .dtype = ST_F32, .ndim = 0, .data = &loss[i]};
        }
        rc = st_save(out, e, 2 * L.n, NULL, &err);
        for (int i = 0; i < 2 * L.n; i++) free(names[i]);
        free(names); free(e);
    }
    if (rc) fprintf(stderr, "error: %s\n", err.msg);
    else printf("wrote %s: logits and loss for %d sequence(s)\n", out, L.n);
    for (int i = 0; i < L.n; i++) free(logits[i]);
    free(logits); free(loss);
    id_lines_free(&L);
    if (adapter) { m.lora = NULL; oh_lora_free(&lo); }
    oh_model_free(&m);
    return rc ? 1 : 0;
}

/* ---------------- grads ---------------- */

int oh_compute_grads(const oh_model *m, const int32_t *const *ids, const int *lens, int n, float *grads, float *loss_out,
                     oh_err *err) {
    for (int i = 0; i < n; i++)
        if (lens[i] < 2) return oh_errf(err, "line %d has %d token(s); the loss needs at least 2", i, lens[i]);
    oh_batch b;
    oh_batch_from_docs(&b, ids, lens, n);
    oh_fwd_out fo;
    oh_acts *acts;
    if (oh_forward(m, &b, &fo, &acts, err)) { oh_batch_free(&b); return -1; }
    float *w = oh_calloc((size_t)b.T, sizeof(float));
    double L = 0;
    for (int d = 0; d < n; d++) {
        double s = 0;
        for (int t = b.cu_seqlens[d]; t < b.cu_seqlens[d + 1] - 1; t++) {
            w[t] = (float)(1.0 / ((double)n * (lens[d] - 1)));
            s += fo.loss[t];
        }
        L += s / (lens[d] - 1) / n;
    }
    oh_backward(m, &b, &fo, acts, w, grads);
    *loss_out = (float)L;
    free(w);
    oh_acts_free(acts);
    oh_fwd_free(&fo);
    oh_batch_free(&b);
    return 0;
}

int cmd_grads(int argc, char **argv) {
    static const char *const known[] = {"--model=", "--input=", "--out=", "--backend=", NULL};
    oh_err err;
    if (cli_check(argc, argv, "grads", known, 0, &err)) { fprintf(stderr, "error: %s\n", err.msg); return 2; }
    const char *dir = cli_opt(argc, argv, "--model"), *in = cli_opt(argc, argv, "--input"), *out = cli_opt(argc, argv, "--out");
    if (!dir || !in || !out) {
        fprintf(stderr, "usage: finetune grads --model MODEL_DIR --input IDS.jsonl --out OUT.safetensors [--backend cpu]\n");
        return 2;
    }
    if (check_backend(cli_opt(argc, argv, "--backend"), &err)) { fprintf(stderr, "error: %s\n", err.msg); return 2; }
    oh_model m;
    if (oh_model_load(&m, dir, &err)) { fprintf(stderr, "error: %s\n", err.msg); return 1; }
    id_lines L;
    if (read_id_lines(in, &L, m.cfg.vocab_size, &err)) { fprintf(stderr, "error: %s\n", err.msg); oh_model_free(&m); return 1; }
    float *grads = oh_calloc(m.nfloats, sizeof(float));
    float loss = 0;
    int rc = oh_compute_grads(&m, (const int32_t *const *)L.ids, L.lens, L.n, grads, &loss, &err);
    if (rc == 0) {
        st_entry *e = oh_calloc((size_t)m.nparams + 1, sizeof(st_entry));
        char **names = oh_calloc((size_t)m.nparams, sizeof(char *));
        for (int i = 0; i < m.nparams; i++) {
            const oh_param *p = &m.params[i];
            names[i] = oh_sprintf("grad.%s", p->name);
            e[i] = (st_entry){.name = names[i], .dtype = ST_F32, .ndim = p->ndim, .data = grads + p->offset};
            for (int d = 0; d < p->ndim; d++) e[i].shape[d] = p->shape[d];
        }
        e[m.nparams] = (st_entry){.name = "loss", .dtype = ST_F32, .ndim = 0, .data = &loss};
        rc = st_save(out, e, m.nparams + 1, NULL, &err);
        for (int i = 0; i < m.nparams; i++) free(names[i]);
        free(names); free(e);
    }
    if (rc) fprintf(stderr, "error: %s\n", err.msg);
    else printf("wrote %s: loss %.6f and gradients of %d tensors\n", out, loss, m.nparams);
    free(grads);
    id_lines_free(&L);
    oh_model_free(&m);
    return rc ? 1 : 0;
}

/* ---------------- init ---------------- */

int cmd_init(int argc, char **argv) {
    static const char *const known[] = {"--preset=", "--config=", "--out=", "--seed=", "--dtype=", NULL};
    oh_err err;
    if (cli_check(argc, argv, "init", known, 0, &err)) { fprintf(stderr, "error: %s\n", err.msg); return 2; }
    const char *preset = cli_opt(argc, argv, "--preset"), *cfgf = cli_opt(argc, argv, "--config");
    const char *out = cli_opt(argc, argv, "--out"), *dt = cli_opt(argc, argv, "--dtype");
    if ((!preset == !cfgf) || !out) {
        fprintf(stderr, "usage: finetune init (--preset NAME | --config config.json) --out DIR [--seed N] [--dtype bf16|f32]\n"
                        "presets: %s\n", oh_config_preset_names());
        return 2;
    }
    uint64_t seed = cli_opt(argc, argv, "--seed") ? strtoull(cli_opt(argc, argv, "--seed"), NULL, 10) : 0;
    int dtype = ST_BF16;
    if (dt && !strcmp(dt, "f32")) dtype = ST_F32;
    else if (dt && strcmp(dt, "bf16")) { fprintf(stderr, "error: --dtype must be bf16 or f32\n"); return 2; }
    oh_config c;
    if (preset) {
        if (oh_config_preset(&c, preset, &err)) { fprintf(stderr, "error: %s\n", err.msg); return 2; }
    } else {
        char *text; size_t len;
        if (oh_read_file(cfgf, &text, &len, &err) || oh_config_parse(&c, text, len, cfgf, &err)) {
            fprintf(stderr, "error: %s\n", err.msg);
            return 1;
        }
        free(text);
    }
    if (oh_init_checkpoint(&c, seed, out, dtype, (size_t)5 << 30, &err)) { fprintf(stderr, "error: %s\n", err.msg); return 1; }
    printf("wrote %s: %zu parameters, %s, seed %llu\n", out, oh_config_param_count(&c), dtype == ST_F32 ? "f32" : "bf16",
           (unsigned long long)seed);
    return 0;
}
