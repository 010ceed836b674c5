/* The training loop: setup, then a loop of optimizer steps with clearly
 * marked "every N steps" blocks, then the export. */
#include "finetune/train.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "datasets/dataset.h"
#include "datasets/tokenizer.h"
#include "finetune/optim.h"
#include "finetune/plot.h"
#include "model/memory.h"
#include "model/safetensors.h"
#include "util/json.h"

/* ---------------- export ---------------- */

int export_tokenizer_files(const char *tok_path, const char *dir, oh_err *err) {
    static const char *files[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                                  "tokenizer.json.gz"};
    char *src_dir;
    if (oh_is_dir(tok_path)) src_dir = oh_strdup(tok_path);
    else {
        const char *s = strrchr(tok_path, '/');
        src_dir = s ? oh_strndup(tok_path, (size_t)(s - tok_path)) : oh_strdup(".");
    }
    int rc = 0;
    for (size_t i = 0; i < sizeof files / sizeof *files && rc == 0; i++) {
        char *src = oh_path_join(src_dir, files[i]);
        if (oh_file_exists(src)) {
            char *dst = oh_path_join(dir, files[i]);
            rc = oh_copy_file(src, dst, err);
            free(dst);
        }
        free(src);
    }
    free(src_dir);
    return rc;
}

int export_run(oh_model *m, oh_lora *lo, const char *base_model, const char *tok_path, const char *dir,
               const char *merged_dir, int st_dtype, double shard_gb, oh_err *err) {
    size_t shard = (size_t)(shard_gb * 1e9);
    if (!lo) {
        if (oh_model_save(m, dir, st_dtype, shard, err)) return -1;
        return tok_path ? export_tokenizer_files(tok_path, dir, err) : 0;
    }
    if (oh_lora_save_peft(lo, dir, base_model, err)) return -1;
    if (merged_dir) {
        oh_lora_merge(lo, m);
        if (oh_model_save(m, merged_dir, st_dtype, shard, err)) return -1;
        if (tok_path && export_tokenizer_files(tok_path, merged_dir, err)) return -1;
    }
    return 0;
}

/* ---------------- helpers ---------------- */

static void fmt_eta(double s, char *buf, size_t n) {
    if (!isfinite(s) || s < 0) { snprintf(buf, n, "?"); return; }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else if (t >= 60) snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, n, "%lds", t);
}

/* continued pretraining: every next token inside each document is trained */
static void all_targets(int32_t *targets, const int32_t *ids, const int32_t *cu, int ndocs) {
    for (int d = 0; d < ndocs; d++)
        for (int t = cu[d]; t < cu[d + 1]; t++) targets[t] = t + 1 < cu[d + 1] ? ids[t + 1] : -1;
}

/* a view of a loader batch (its targets rewritten in place for cpt) */
static void to_batch(const ds_batch *db, oh_batch *b, bool cpt) {
    b->T = (int)db->T;
    b->ndocs = db->nseqs;
    b->ids = db->ids;
    b->pos = db->pos;
    b->cu_seqlens = db->cu_seqlens;
    b->targets = db->targets;
    if (cpt) all_targets(db->targets, db->ids, db->cu_seqlens, db->ndocs);
}

/* metrics.jsonl rows with "step" <= keep are kept (resume) */
static int truncate_metrics(const char *path, long keep, oh_err *err) {
    char *text;
    size_t len;
    if (!oh_file_exists(path)) return 0;
    if (oh_read_file(path, &text, &len, err)) return -1;
    oh_buf out = {0};
    for (char *line = text; line < text + len;) {
        char *nl = memchr(line, '\n', (size_t)(text + len - line));
        size_t n = nl ? (size_t)(nl - line) : (size_t)(text + len - line);
        oh_json j;
        long long step;
        if (n && oh_json_parse(&j, line, n, path, NULL) == 0) {
            if (oh_json_int(&j, oh_json_get(&j, 0, "step"), &step) == 0 && step <= keep) {
                oh_buf_put(&out, line, n);
                oh_buf_puts(&out, "\n");
            }
            oh_json_free(&j);
        }
        line += n + 1;
    }
    int rc = oh_write_file_atomic(path, out.p ? out.p : "", out.n, err);
    oh_buf_free(&out);
    free(text);
    return rc;
}

static int write_curve(const char *run_dir, const char *metrics, oh_err *err) {
    char *text;
    size_t len;
    if (oh_read_file(metrics, &text, &len, err)) return -1;
    int cap = 1024, nt = 0, ne = 0;
    double *tx = oh_malloc(sizeof(double) * cap), *ty = oh_malloc(sizeof(double) * cap);
    double *ex = oh_malloc(sizeof(double) * cap), *ey = oh_malloc(sizeof(double) * cap);
    for (char *line = text; line < text + len;) {
        char *nl = memchr(line, '\n', (size_t)(text + len - line));
        size_t n = nl ? (size_t)(nl - line) : (size_t)(text + len - line);
        oh_json j;
        if (n && oh_json_parse(&j, line, n, metrics, NULL) == 0) {
            double step, v;
            if (oh_json_num(&j, oh_json_get(&j, 0, "step"), &step) == 0) {
                if (nt == cap || ne == cap) {
                    cap *= 2;
                    tx = oh_realloc(tx, sizeof(double) * cap); ty = oh_realloc(ty, sizeof(double) * cap);
                    ex = oh_realloc(ex, sizeof(double) * cap); ey = oh_realloc(ey, sizeof(double) * cap);
                }
                if (oh_json_num(&j, oh_json_get(&j, 0, "loss"), &v) == 0) { tx[nt] = step; ty[nt++] = v; }
                if (oh_json_num(&j, oh_json_get(&j, 0, "eval_loss"), &v) == 0) { ex[ne] = step; ey[ne++] = v; }
            }
            oh_json_free(&j);
        }
        line += n + 1;
    }
    plot_series s[2] = {{"train loss", "#1f77b4", tx, ty, nt}, {"eval loss", "#d62728", ex, ey, ne}};
    char *p = oh_path_join(run_dir, "loss.svg");
    int rc = plot_svg(p, "loss", s, 2, err);
    free(p); free(tx); free(ty); free(ex); free(ey); free(text);
    return rc;
}

static long ckpt_latest_step(const char *run_dir) {
    char *ck = ckpt_latest(run_dir);
    ckpt_state s;
    long step = -1;
    if (ck && ckpt_read_state(ck, &s, NULL) == 0) step = s.step;
    free(ck);
    return step;
}

/* the data position and RNG go into the state, then everything to disk */
static int save_checkpoint(const recipe *r, ds_loader *ld, ckpt_state *st, const oh_rng *rng, const oh_model *m,
                           const oh_lora *lo, const float *M1, const float *M2, oh_err *err) {
    ds_position pos;
    ds_get_position(ld, &pos);
    st->data_pos[0] = (uint64_t)pos.epoch;
    st->data_pos[1] = (uint64_t)pos.window;
    st->data_pos[2] = (uint64_t)pos.bin;
    st->data_pos[3] = (uint64_t)pos.batches;
    st->data_pos[4] = pos.fingerprint;
    st->rng = *rng;
    return ckpt_save(r->output.dir, st, m, lo, M1, M2, (int)r->train.keep_last, err);
}

static int append_line(FILE *f, const char *line) {
    if (fputs(line, f) < 0 || fflush(f) != 0) return -1;
    return 0;
}

/* evaluation loss over the held-out split: mean over trained tokens */
static int run_eval(const oh_model *m, ds_loader *ld, bool cpt, double *loss_out, int64_t *ntok, oh_err *err) {
    ds_eval_reset(ld);
    double sum = 0;
    int64_t n = 0;
    ds_batch *db;
    int r;
    while ((r = ds_eval_next(ld, &db, err)) == 1) {
        if (db->T == 0) continue;
        oh_batch b;
        to_batch(db, &b, cpt);
        oh_fwd_out fo;
        if (oh_forward(m, &b, &fo, NULL, err)) return -1;
        for (int t = 0; t < b.T; t++)
            if (b.targets[t] >= 0) { sum += fo.loss[t]; n++; }
        oh_fwd_free(&fo);
    }
    if (r < 0) return -1;
    *loss_out = n ? sum / (double)n : NAN;
    *ntok = n;
    return 0;
}

/* The data loader's configuration from a recipe. src holds the sources;
 * when the recipe asks for the tokenizer's own chat template, *tmpl is
 * filled and *have_tmpl set (free with ds_template_free). */
int train_data_config(const recipe *r, const char *tok_path, int64_t vocab_size, ds_config *dc, ds_source *src,
                      ds_template *tmpl, bool *have_tmpl, oh_err *err) {
    *have_tmpl = false;
    for (int i = 0; i < r->data.nsources; i++) {
        memset(&src[i], 0, sizeof src[i]);
        src[i].path = r->data.sources[i].path;
        src[i].weight = r->data.sources[i].weight;
        if (ds_format_parse(r->data.sources[i].format, &src[i].format, err)) return -1;
    }
    ds_config_defaults(dc);
    dc->sources = src;
    dc->nsources = r->data.nsources;
    dc->max_seq_len = r->data.max_seq_len;
    dc->packing = r->data.packing;
    if (ds_pack_policy_parse(r->data.pack_policy, &dc->pack_policy, err) ||
        ds_long_policy_parse(r->data.long_docs, &dc->long_docs, err))
        return -1;
    dc->eval_split = r->data.eval_split;
    dc->system_message = r->data.system_message[0] ? r->data.system_message : NULL;
    dc->train_last_turn_only = r->data.train_last_turn_only;
    dc->on_bad_record = !strcmp(r->data.on_bad_record, "skip") ? DS_BAD_POLICY_SKIP : DS_BAD_POLICY_STOP;
    dc->add_eos = r->data.add_eos;
    dc->seed = (uint64_t)r->data.seed;
    dc->epochs = r->train.max_steps > 0 ? 0 : (int)r->train.epochs; /* max_steps: cycle through the data */
    dc->vocab_size = vocab_size;
    dc->threads = 2;
    if (!strcmp(r->data.chat_template, "auto")) {
        char *jinja = NULL, *def_sys = NULL, *tc;
        if (oh_is_dir(tok_path)) tc = oh_path_join(tok_path, "tokenizer_config.json");
        else {
            const char *sl = strrchr(tok_path, '/');
            char *d = sl ? oh_strndup(tok_path, (size_t)(sl - tok_path)) : oh_strdup(".");
            tc = oh_path_join(d, "tokenizer_config.json");
            free(d);
        }
        int crc = ds_chat_template_read(tc, &jinja, err);
        if (crc == 0) crc = ds_chat_template_detect(jinja, tc, tmpl, &def_sys, err);
        free(tc);
        free(jinja);
        if (crc) return -1;
        *have_tmpl = true;
        dc->chat = tmpl;
        if (!dc->system_message && def_sys) dc->system_message = def_sys; /* one string per run, kept */
        else free(def_sys);
    }
    return 0;
}

/* ---------------- the run ---------------- */

int train_run(const recipe *r, bool resume, oh_err *err) {
    int rc = -1;
    bool lora = !strcmp(r->train.method, "lora"), cpt = !strcmp(r->train.objective, "cpt");
    if (!strcmp(r->model.backend, "cuda"))
        return oh_errf(err, "%s: model.backend = \"cuda\": the CUDA training backend is not available in this build yet; "
                            "use model.backend = \"cpu\" (or \"auto\")", r->file);
    if (oh_mkdirs(r->output.dir, err)) return -1;

    /* ---- the resolved recipe, saved with the run ---- */
    char *dump = recipe_dump(r);
    char *p = oh_path_join(r->output.dir, "recipe.resolved.toml");
    int wrc = oh_write_file_atomic(p, dump, strlen(dump), err);
    free(p); free(dump);
    if (wrc) return -1;

    /* ---- model ---- */
    char *cfgp = oh_path_join(r->model.path, "config.json");
    bool have_model = oh_file_exists(cfgp);
    free(cfgp);
    if (!have_model && r->model.init[0]) {
        oh_config c;
        if (oh_config_preset(&c, r->model.init, err)) return -1;
        printf("creating a random %s model in %s (seed %ld)\n", r->model.init, r->model.path, r->model.seed);
        if (oh_init_checkpoint(&c, (uint64_t)r->model.seed, r->model.path, ST_F32, (size_t)5 << 30, err)) return -1;
    }
    oh_model m;
    if (oh_model_load(&m, r->model.path, err)) return -1;
    const oh_config *mc = &m.cfg;
    oh_mem_estimate me = oh_memory_estimate(mc, 0, (int)r->data.max_seq_len);
    size_t cpu_need = m.nfloats * sizeof(float) * (lora ? 1 : 4) + me.activations * 8;
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGE_SIZE);
    if (pages > 0 && psz > 0 && cpu_need > (size_t)pages * (size_t)psz) {
        char a[32], b[32];
        oh_errf(err, "this run needs about %s of memory on the CPU backend but the machine has %s: use a smaller "
                     "data.max_seq_len, train.method = \"lora\", or the CUDA backend",
                oh_fmt_bytes(cpu_need, a, sizeof a), oh_fmt_bytes((size_t)pages * (size_t)psz, b, sizeof b));
        goto out_model;
    }

    /* ---- tokenizer and data ---- */
    const char *tok_path = r->tokenizer.path[0] ? r->tokenizer.path : r->model.path;
    tok_tokenizer *tok = tok_load(tok_path, err);
    if (!tok) goto out_model;
    ds_tokenizer dtok = {0};
    if (ds_tokenizer_from_tok(&dtok, tok, err)) goto out_tok;
    ds_source src[RECIPE_MAX_SOURCES];
    ds_config dc;
    ds_template tmpl;
    bool have_tmpl = false;
    if (train_data_config(r, tok_path, mc->vocab_size, &dc, src, &tmpl, &have_tmpl, err)) goto out_tmpl;
    ds_loader *ld;
    if (ds_loader_create(&ld, &dc, &dtok, err)) goto out_tmpl;
    const ds_stats *stt = ds_loader_stats(ld);
    if (stt->skipped) printf("data: %lld malformed record(s) skipped; first: %s\n", (long long)stt->skipped, stt->first_skip);
    printf("data: %lld records, %lld training units (%lld tokens, %lld trained per epoch), %lld eval units\n",
           (long long)stt->records, (long long)stt->train_units, (long long)stt->train_tokens, (long long)stt->train_trained,
           (long long)stt->eval_units);

    /* ---- schedule ---- */
    /* packing differs per epoch (each is shuffled anew), so count every epoch */
    long micro_per_epoch = (long)ds_epoch_batches(ld, 0), micro_all = 0;
    for (long e = 0; e < r->train.epochs; e++) micro_all += (long)ds_epoch_batches(ld, e);
    long total = r->train.max_steps > 0 ? r->train.max_steps : micro_all / r->train.grad_accum;
    if (total < 1) total = 1;
    oh_schedule sched = {.peak_lr = r->train.lr, .total_steps = total, .min_lr_ratio = r->train.min_lr_ratio,
                         .decay_frac = r->train.wsd_decay_frac};
    oh_schedule_parse(r->train.schedule, &sched.kind);
    sched.warmup_steps = r->train.warmup_steps > 0 ? r->train.warmup_steps : lround(r->train.warmup_frac * (double)total);
    oh_adamw_cfg ac = {.lr = r->train.lr, .beta1 = r->train.beta1, .beta2 = r->train.beta2, .eps = r->train.eps,
                       .weight_decay = r->train.weight_decay};

    /* ---- what is trained: all weights, or LoRA adapters on a frozen base ---- */
    oh_lora lo_s, *lo = NULL;
    oh_rng drop_rng;
    oh_rng_seed(&drop_rng, (uint64_t)r->train.seed ^ 0x5eedull);
    if (lora) {
        oh_lora_cfg lc = {.rank = (int)r->lora.rank, .alpha = r->lora.alpha, .dropout = r->lora.dropout, .rslora = r->lora.rslora};
        const char *names[RECIPE_MAX_TARGETS];
        for (int i = 0; i < r->lora.ntargets; i++) names[i] = r->lora.targets[i];
        if (oh_lora_cfg_set_targets(&lc, names, r->lora.ntargets, err) ||
            oh_lora_create(&lo_s, &m, &lc, (uint64_t)r->train.seed, err))
            goto out_loader;
        lo = &lo_s;
        lo->g = oh_calloc(lo->nfloats, sizeof(float));
        m.lora = lo;
        if (lc.dropout > 0) m.dropout_rng = &drop_rng;
    }
    size_t nw = lo ? lo->nfloats : m.nfloats;
    float *W = lo ? lo->w : m.w;
    float *G = lo ? lo->g : oh_calloc(m.nfloats, sizeof(float));
    float *M1 = oh_calloc(nw, sizeof(float)), *M2 = oh_calloc(nw, sizeof(float));
    int nspans = lo ? 2 * lo->n : m.nparams;
    oh_span *spans = oh_calloc((size_t)nspans, sizeof(oh_span));
    size_t ntrain = 0;
    for (int i = 0; i < nspans; i++) {
        if (lo) {
            const oh_lora_adapter *a = &lo->ad[i / 2];
            spans[i] = (oh_span){i & 1 ? a->b_off : a->a_off, (size_t)(i & 1 ? a->out : lo->cfg.rank) * (i & 1 ? lo->cfg.rank : a->in), true};
        } else {
            const oh_param *q = &m.params[i];
            bool emb = i == m.embed || i == m.lm_head;
            spans[i] = (oh_span){q->offset, q->numel, !q->no_decay && (!emb || r->train.decay_embeddings)};
        }
        ntrain += spans[i].n;
    }
    printf("model: %zu parameters (%s), training %zu (%s)\n", oh_model_numel(&m), m.source_layout, ntrain,
           lo ? "LoRA adapters" : "full");

    /* ---- resume ---- */
    ckpt_state st = {0};
    snprintf(st.base_model, sizeof st.base_model, "%s", r->model.path);
    snprintf(st.tokenizer, sizeof st.tokenizer, "%s", tok_path);
    snprintf(st.method, sizeof st.method, "%s", r->train.method);
    char *metrics = oh_path_join(r->output.dir, "metrics.jsonl");
    if (resume || r->train.resume) {
        char *ck = ckpt_latest(r->output.dir);
        if (!ck) {
            printf("resume: no checkpoint in %s/checkpoints, starting from step 0\n", r->output.dir);
            if (truncate_metrics(metrics, 0, err)) goto out_train;
        } else {
            if (ckpt_read_state(ck, &st, err) || ckpt_load(ck, &m, lo, M1, M2, err)) { free(ck); goto out_train; }
            ds_position pos = {.epoch = (int64_t)st.data_pos[0], .window = (int64_t)st.data_pos[1],
                               .bin = (int64_t)st.data_pos[2], .batches = (int64_t)st.data_pos[3], .fingerprint = st.data_pos[4]};
            if (ds_set_position(ld, &pos, err)) { oh_err_prefix(err, "resume from %s", ck); free(ck); goto out_train; }
            drop_rng = st.rng;
            printf("resumed from %s (step %ld)\n", ck, st.step);
            free(ck);
            if (truncate_metrics(metrics, st.step, err)) goto out_train;
        }
    } else if (truncate_metrics(metrics, 0, err)) {
        goto out_train;
    }
    FILE *mf = fopen(metrics, "a");
    if (!mf) { oh_errf(err, "%s: cannot open: %s", metrics, strerror(errno)); goto out_train; }

    printf("training: %ld steps (%ld micro-batches of <= %ld tokens per epoch, grad_accum %ld), lr %g %s, warmup %ld\n",
           total, micro_per_epoch, r->data.max_seq_len, r->train.grad_accum, r->train.lr, r->train.schedule,
           sched.warmup_steps);
    bool tty = isatty(1);
    double t_start = oh_time_s();
    long step0 = st.step, tokens_run = 0;
    oh_batch *bb = oh_calloc((size_t)r->train.grad_accum, sizeof(oh_batch));
    int dsr = 1;
    rc = 0;
    for (long step = st.step; step < total && rc == 0; step++) {
        /* ---- one optimizer step: grad_accum micro-batches, the loss normalised by the step's trained tokens ---- */
        int64_t ntr = 0, ntok = 0;
        int nmb = 0;
        /* micro-batches are owned by the loader until the next call: copy them */
        for (int k = 0; k < r->train.grad_accum; k++) {
            ds_batch *db;
            dsr = ds_next_batch(ld, &db, err);
            if (dsr <= 0) break;
            oh_batch *b = &bb[nmb++];
            oh_batch_free(b);
            b->T = (int)db->T;
            b->ndocs = db->nseqs;
            b->ids = oh_malloc(sizeof(int32_t) * (size_t)db->T);
            b->pos = oh_malloc(sizeof(int32_t) * (size_t)db->T);
            b->targets = oh_malloc(sizeof(int32_t) * (size_t)db->T);
            b->cu_seqlens = oh_malloc(sizeof(int32_t) * (size_t)(db->nseqs + 1));
            memcpy(b->ids, db->ids, sizeof(int32_t) * (size_t)db->T);
            memcpy(b->pos, db->pos, sizeof(int32_t) * (size_t)db->T);
            memcpy(b->targets, db->targets, sizeof(int32_t) * (size_t)db->T);
            memcpy(b->cu_seqlens, db->cu_seqlens, sizeof(int32_t) * (size_t)(db->nseqs + 1));
            if (cpt) all_targets(b->targets, b->ids, b->cu_seqlens, db->ndocs);
            for (int t = 0; t < b->T; t++) ntr += b->targets[t] >= 0;
            ntok += db->T;
        }
        if (dsr < 0) { rc = -1; break; }
        if (nmb == 0) { /* the data ran out: the run ends here */
            total = step;
            if (step > 0 && ckpt_latest_step(r->output.dir) != step &&
                save_checkpoint(r, ld, &st, &drop_rng, &m, lo, M1, M2, err))
                rc = -1;
            break;
        }
        memset(G, 0, sizeof(float) * nw);
        double loss = 0;
        for (int k = 0; k < nmb && rc == 0; k++) {
            oh_batch *b = &bb[k];
            oh_fwd_out fo;
            oh_acts *acts;
            if (oh_forward(&m, b, &fo, &acts, err)) { rc = -1; break; }
            float *w = oh_calloc((size_t)b->T, sizeof(float));
            for (int t = 0; t < b->T; t++)
                if (b->targets[t] >= 0) { w[t] = (float)(1.0 / (double)ntr); loss += fo.loss[t] / (double)ntr; }
            oh_backward(&m, b, &fo, acts, w, lo ? NULL : G);
            free(w);
            oh_acts_free(acts);
            oh_fwd_free(&fo);
        }
        if (rc) break;
        tokens_run += ntok;
        st.tokens += ntok;
        double gnorm = oh_clip_grad_norm(G, spans, nspans, r->train.grad_clip);
        double lr = oh_schedule_lr(&sched, step);
        char row[512];
        if (!isfinite(loss) || !isfinite(gnorm)) {
            snprintf(row, sizeof row, "{\"step\": %ld, \"loss\": null, \"grad_norm\": null, \"lr\": %.9g, \"tokens\": %ld, \"skipped\": true}\n",
                     step + 1, lr, st.tokens);
            append_line(mf, row);
            if (!strcmp(r->train.nan_policy, "stop")) {
                rc = oh_errf(err, "step %ld: the loss is %s (grad norm %g); stopping (train.nan_policy = \"stop\"). The last "
                                  "checkpoint in %s/checkpoints is intact; lower train.lr or set train.nan_policy = \"skip\"",
                             step + 1, isfinite(loss) ? "finite but the gradient is not" : "not finite", gnorm, r->output.dir);
                break;
            }
            fprintf(stderr, "warning: step %ld: non-finite loss or gradient, update skipped\n", step + 1);
        } else {
            oh_adamw_step(W, G, M1, M2, spans, nspans, &ac, lr, step + 1);
            double el = oh_time_s() - t_start;
            snprintf(row, sizeof row,
                     "{\"step\": %ld, \"loss\": %.7g, \"lr\": %.9g, \"tokens\": %ld, \"trained_tokens\": %lld, \"grad_norm\": %.7g, "
                     "\"tokens_per_s\": %.1f, \"elapsed_s\": %.3f}\n",
                     step + 1, loss, lr, st.tokens, (long long)ntr, gnorm, tokens_run / (el > 0 ? el : 1), el);
            if (append_line(mf, row)) { rc = oh_errf(err, "%s: write failed", metrics); break; }
        }
        st.step = step + 1;

        /* ---- every log_every steps: the progress line ---- */
        if (st.step % r->train.log_every == 0 || st.step == total) {
            double el = oh_time_s() - t_start, tps = tokens_run / (el > 0 ? el : 1);
            char eta[32];
            fmt_eta(el / (double)(st.step - step0) * (double)(total - st.step), eta, sizeof eta);
            printf("%sstep %ld/%ld | loss %.4f | lr %.3e | grad %.3f | %.0f tok/s | MFU - (cpu) | ETA %s%s", tty ? "\r" : "",
                   st.step, total, loss, lr, gnorm, tps, eta, tty ? "   " : "\n");
            fflush(stdout);
        }
        /* ---- every eval_every steps (and at the end): the held-out loss ---- */
        if (stt->eval_units > 0 && ((r->train.eval_every > 0 && st.step % r->train.eval_every == 0) || st.step == total)) {
            double el;
            int64_t en;
            if (run_eval(&m, ld, cpt, &el, &en, err)) { rc = -1; break; }
            snprintf(row, sizeof row, "{\"step\": %ld, \"eval_loss\": %.7g, \"eval_tokens\": %lld}\n", st.step, el, (long long)en);
            append_line(mf, row);
            printf("%seval at step %ld: loss %.4f over %lld tokens\n", tty ? "\n" : "", st.step, el, (long long)en);
        }
        /* ---- every save_every steps (and at the end): a checkpoint ---- */
        if ((r->train.save_every > 0 && st.step % r->train.save_every == 0) || st.step == total) {
            if (save_checkpoint(r, ld, &st, &drop_rng, &m, lo, M1, M2, err)) { rc = -1; break; }
        }
    }
    if (tty) printf("\n");
    fclose(mf);
    for (int k = 0; k < (int)r->train.grad_accum; k++) oh_batch_free(&bb[k]);
    free(bb);
    if (rc == 0 && write_curve(r->output.dir, metrics, err)) rc = -1;
    if (rc == 0) {
        /* ---- export ---- */
        m.lora = NULL;
        m.dropout_rng = NULL;
        char *fin = oh_path_join(r->output.dir, "final");
        char *merged = lo && r->output.merge ? oh_path_join(r->output.dir, "final-merged") : NULL;
        rc = export_run(&m, lo, r->model.path, tok_path, fin, merged, !strcmp(r->output.dtype, "f32") ? ST_F32 : ST_BF16,
                        r->output.shard_gb, err);
        if (rc == 0) printf("wrote %s%s%s; metrics in %s, loss curve in %s/loss.svg\n", fin, merged ? " and " : "",
                            merged ? merged : "", metrics, r->output.dir);
        free(fin); free(merged);
    }
out_train:
    free(metrics);
    free(spans); free(M1); free(M2);
    if (!lo) free(G);
    if (lo) oh_lora_free(lo);
out_loader:
    ds_loader_free(ld);
out_tmpl:
    if (have_tmpl) ds_template_free(&tmpl);
out_tok:
    ds_tokenizer_release(&dtok);
    tok_free(tok);
out_model:
    m.lora = NULL;
    oh_model_free(&m);
    return rc;
}
