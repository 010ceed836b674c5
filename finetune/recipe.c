#include "finetune/recipe.h"
#include "util/json.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef enum { K_STR, K_ENUM, K_INT, K_FLOAT, K_BOOL, K_STRLIST, K_SOURCES } key_type;

typedef struct key_def {
    const char *path;
    key_type type;
    size_t off, size;      /* offset in recipe; size of char arrays */
    const char *def;       /* default, as TOML text */
    double lo, hi;         /* numeric range (inclusive) */
    const char *choices;   /* K_ENUM: "a|b|c" */
    const char *help;
} key_def;

#define F(field) offsetof(recipe, field), sizeof(((recipe *)0)->field)
#define INF 1e300

static const key_def KEYS[] = {
    {"model.path", K_STR, F(model.path), "\"\"", 0, 0, NULL, "Hugging Face checkpoint directory (config.json + safetensors)"},
    {"model.init", K_ENUM, F(model.init), "\"\"", 0, 0, "|tiny|small|olmo-hybrid-7b", "create a random model of this preset in model.path when it has none"},
    {"model.seed", K_INT, F(model.seed), "0", 0, INF, NULL, "seed of model.init"},
    {"model.backend", K_ENUM, F(model.backend), "\"auto\"", 0, 0, "auto|cpu|cuda", "compute backend"},
    {"tokenizer.path", K_STR, F(tokenizer.path), "\"\"", 0, 0, NULL, "tokenizer.json or a directory holding one (default: model.path)"},
    {"data.sources", K_SOURCES, F(data.sources), "[]", 0, 0, NULL, "[[data.sources]] tables: path, weight (fraction <= 1 or count), format"},
    {"data.max_seq_len", K_INT, F(data.max_seq_len), "4096", 8, 1 << 22, NULL, "tokens per packed micro-batch (and longest document)"},
    {"data.packing", K_BOOL, F(data.packing), "true", 0, 0, NULL, "pack documents into one stream (false: one padded document per row)"},
    {"data.pack_policy", K_ENUM, F(data.pack_policy), "\"best-fit\"", 0, 0, "best-fit|first-fit", "how documents are packed"},
    {"data.long_docs", K_ENUM, F(data.long_docs), "\"truncate\"", 0, 0, "truncate|split", "documents longer than max_seq_len"},
    {"data.eval_split", K_FLOAT, F(data.eval_split), "0.0", 0, INF, NULL, "held-out records: a fraction (< 1) or a count"},
    {"data.chat_template", K_ENUM, F(data.chat_template), "\"olmo\"", 0, 0, "olmo|auto", "chat format (auto: read tokenizer_config.json)"},
    {"data.system_message", K_STR, F(data.system_message), "\"\"", 0, 0, NULL, "default system message injected when a conversation has none"},
    {"data.train_last_turn_only", K_BOOL, F(data.train_last_turn_only), "false", 0, 0, NULL, "train only the last assistant turn"},
    {"data.on_bad_record", K_ENUM, F(data.on_bad_record), "\"stop\"", 0, 0, "stop|skip", "a malformed record stops the run or is skipped and counted"},
    {"data.add_eos", K_BOOL, F(data.add_eos), "true", 0, 0, NULL, "append EOS to raw text documents"},
    {"data.seed", K_INT, F(data.seed), "0", 0, INF, NULL, "shuffle seed"},
    {"train.method", K_ENUM, F(train.method), "\"full\"", 0, 0, "full|lora", "full fine-tuning or LoRA"},
    {"train.objective", K_ENUM, F(train.objective), "\"sft\"", 0, 0, "sft|cpt", "sft: only assistant tokens trained; cpt: every token"},
    {"train.epochs", K_INT, F(train.epochs), "1", 1, 1000000, NULL, "passes over the training data"},
    {"train.max_steps", K_INT, F(train.max_steps), "0", 0, INF, NULL, "optimizer steps (0: as many as the epochs give)"},
    {"train.grad_accum", K_INT, F(train.grad_accum), "1", 1, 1 << 20, NULL, "micro-batches per optimizer step"},
    {"train.lr", K_FLOAT, F(train.lr), "2e-5", 0, 10, NULL, "peak learning rate"},
    {"train.schedule", K_ENUM, F(train.schedule), "\"linear\"", 0, 0, "constant|linear|cosine|wsd", "learning-rate schedule after warmup"},
    {"train.warmup_steps", K_INT, F(train.warmup_steps), "0", 0, INF, NULL, "warmup in optimizer steps (overrides warmup_frac when > 0)"},
    {"train.warmup_frac", K_FLOAT, F(train.warmup_frac), "0.03", 0, 1, NULL, "warmup as a fraction of the total steps"},
    {"train.min_lr_ratio", K_FLOAT, F(train.min_lr_ratio), "0.0", 0, 1, NULL, "final learning rate / peak"},
    {"train.wsd_decay_frac", K_FLOAT, F(train.wsd_decay_frac), "0.1", 0, 1, NULL, "wsd: fraction of steps in the final decay"},
    {"train.weight_decay", K_FLOAT, F(train.weight_decay), "0.0", 0, 10, NULL, "decoupled weight decay (never on norms and 1-d parameters)"},
    {"train.decay_embeddings", K_BOOL, F(train.decay_embeddings), "false", 0, 0, NULL, "apply weight decay to embeddings and lm_head"},
    {"train.beta1", K_FLOAT, F(train.beta1), "0.9", 0, 0.999999, NULL, "AdamW beta1"},
    {"train.beta2", K_FLOAT, F(train.beta2), "0.95", 0, 0.999999, NULL, "AdamW beta2"},
    {"train.eps", K_FLOAT, F(train.eps), "1e-8", 0, 1, NULL, "AdamW epsilon"},
    {"train.grad_clip", K_FLOAT, F(train.grad_clip), "1.0", 0, INF, NULL, "clip the global gradient norm (0: off)"},
    {"train.seed", K_INT, F(train.seed), "0", 0, INF, NULL, "seed of LoRA init and dropout"},
    {"train.eval_every", K_INT, F(train.eval_every), "0", 0, INF, NULL, "evaluate on the held-out split every N steps (0: at the end only)"},
    {"train.save_every", K_INT, F(train.save_every), "0", 0, INF, NULL, "write a checkpoint every N steps (0: at the end only)"},
    {"train.keep_last", K_INT, F(train.keep_last), "2", 1, 1000, NULL, "checkpoints kept"},
    {"train.nan_policy", K_ENUM, F(train.nan_policy), "\"stop\"", 0, 0, "stop|skip", "a NaN/Inf loss stops the run or skips the step"},
    {"train.resume", K_BOOL, F(train.resume), "false", 0, 0, NULL, "continue from the newest checkpoint in output.dir"},
    {"train.log_every", K_INT, F(train.log_every), "1", 1, INF, NULL, "progress line every N steps"},
    {"lora.rank", K_INT, F(lora.rank), "16", 1, 4096, NULL, "LoRA rank"},
    {"lora.alpha", K_FLOAT, F(lora.alpha), "32", 0, INF, NULL, "LoRA alpha (scale alpha/rank, or alpha/sqrt(rank) with rslora)"},
    {"lora.dropout", K_FLOAT, F(lora.dropout), "0.0", 0, 0.99, NULL, "dropout on the adapter input"},
    {"lora.rslora", K_BOOL, F(lora.rslora), "false", 0, 0, NULL, "rank-stabilised scaling"},
    {"lora.targets", K_STRLIST, F(lora.targets), "[\"all-linear\"]", 0, 0, NULL, "module names (q_proj, gate_proj, ...), one regex, or all-linear"},
    {"output.dir", K_STR, F(output.dir), "\"out/run\"", 0, 0, NULL, "run directory: checkpoints, metrics.jsonl, loss.svg, final/"},
    {"output.merge", K_BOOL, F(output.merge), "false", 0, 0, NULL, "LoRA: also write the merged model to <dir>/final-merged"},
    {"output.dtype", K_ENUM, F(output.dtype), "\"bf16\"", 0, 0, "bf16|f32", "dtype of exported weights"},
    {"output.shard_gb", K_FLOAT, F(output.shard_gb), "5.0", 0.001, INF, NULL, "exported shard size in GB"},
};
#define NKEYS (int)(sizeof KEYS / sizeof *KEYS)

static const char *SOURCE_KEYS[] = {"path", "weight", "format"};
static const char *FORMATS = "auto|messages|prompt_completion|alpaca|preference|text|tokens";

static int lev(const char *a, const char *b) {
    size_t n = strlen(a), m = strlen(b);
    int *d = oh_malloc(sizeof(int) * (m + 1));
    for (size_t j = 0; j <= m; j++) d[j] = (int)j;
    for (size_t i = 1; i <= n; i++) {
        int prev = d[0];
        d[0] = (int)i;
        for (size_t j = 1; j <= m; j++) {
            int t = d[j];
            int c = prev + (a[i - 1] != b[j - 1]);
            if (d[j] + 1 < c) c = d[j] + 1;
            if (d[j - 1] + 1 < c) c = d[j - 1] + 1;
            d[j] = c;
            prev = t;
        }
    }
    int r = d[m];
    free(d);
    return r;
}

/* names users bring from transformers' TrainingArguments, PEFT and TRL */
static const char *ALIASES[][2] = {
    {"learning_rate", "train.lr"}, {"lr_scheduler_type", "train.schedule"}, {"lr_scheduler", "train.schedule"},
    {"warmup_ratio", "train.warmup_frac"}, {"max_grad_norm", "train.grad_clip"}, {"num_train_epochs", "train.epochs"},
    {"gradient_accumulation_steps", "train.grad_accum"}, {"adam_beta1", "train.beta1"}, {"adam_beta2", "train.beta2"},
    {"adam_epsilon", "train.eps"}, {"logging_steps", "train.log_every"}, {"save_steps", "train.save_every"},
    {"eval_steps", "train.eval_every"}, {"save_total_limit", "train.keep_last"}, {"r", "lora.rank"},
    {"lora_r", "lora.rank"}, {"lora_alpha", "lora.alpha"}, {"lora_dropout", "lora.dropout"},
    {"target_modules", "lora.targets"}, {"use_rslora", "lora.rslora"}, {"max_seq_length", "data.max_seq_len"},
    {"max_length", "data.max_seq_len"}, {"seq_len", "data.max_seq_len"}, {"output_dir", "output.dir"},
    {"model_name_or_path", "model.path"},
};

static const char *suggest(const char *path) {
    const char *last = strrchr(path, '.');
    last = last ? last + 1 : path;
    for (size_t i = 0; i < sizeof ALIASES / sizeof *ALIASES; i++)
        if (!strcmp(last, ALIASES[i][0])) return ALIASES[i][1];
    const char *best = NULL;
    int bd = 1 << 30;
    for (int k = 0; k < NKEYS; k++) {
        int d = lev(path, KEYS[k].path);
        const char *dot = strrchr(KEYS[k].path, '.'), *pdot = strrchr(path, '.');
        if (dot && pdot && !strcmp(dot, pdot)) d = d < 2 ? d : 2; /* right key, wrong table */
        if (d < bd) { bd = d; best = KEYS[k].path; }
    }
    return bd <= 3 || (best && bd <= (int)strlen(path) / 3) ? best : NULL;
}

static bool enum_ok(const char *choices, const char *v) {
    size_t n = strlen(v);
    for (const char *p = choices;;) {
        const char *e = strchr(p, '|');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == n && !strncmp(p, v, n)) return true;
        if (!e) return false;
        p = e + 1;
    }
}

static int where(oh_err *err, const char *file, const toml_value *v, const char *fmt, const char *a, const char *b) {
    char msg[700];
    snprintf(msg, sizeof msg, fmt, a, b);
    if (v && v->line > 0) return oh_errf(err, "%s:%d:%d: %s", file, v->line, v->col, msg);
    return oh_errf(err, "%s: %s (from --set)", file, msg);
}

/* Store value v (already located) for key k into r. */
static int store(recipe *r, const key_def *k, const toml_value *v, const char *file, oh_err *err) {
    char *dst = (char *)r + k->off;
    char range[96];
    switch (k->type) {
    case K_STR: case K_ENUM: {
        const char *s = toml_as_str(v);
        if (!s || v->type != TOML_STRING) return where(err, file, v, "%s must be a string (got %s)", k->path, toml_type_name(v->type));
        if (strlen(s) >= k->size) return where(err, file, v, "%s is too long%s", k->path, "");
        if (k->type == K_ENUM && !enum_ok(k->choices, s)) {
            char m[300];
            snprintf(m, sizeof m, "\"%s\" (choose one of: %s)", s, k->choices);
            return where(err, file, v, "%s cannot be %s", k->path, m);
        }
        snprintf(dst, k->size, "%s", s);
        return 0;
    }
    case K_INT: {
        int64_t i;
        if (toml_as_int(v, &i)) return where(err, file, v, "%s must be an integer (got %s)", k->path, toml_type_name(v->type));
        if ((double)i < k->lo || (double)i > k->hi) {
            snprintf(range, sizeof range, "in [%.0f, %.0f] (got %lld)", k->lo, k->hi >= INF ? 9.2e18 : k->hi, (long long)i);
            return where(err, file, v, "%s must be %s", k->path, range);
        }
        *(long *)dst = (long)i;
        return 0;
    }
    case K_FLOAT: {
        double d;
        if (toml_as_float(v, &d)) return where(err, file, v, "%s must be a number (got %s)", k->path, toml_type_name(v->type));
        if (!(d >= k->lo && d <= k->hi)) {
            snprintf(range, sizeof range, "in [%g, %g] (got %g)", k->lo, k->hi, d);
            return where(err, file, v, "%s must be %s", k->path, range);
        }
        *(double *)dst = d;
        return 0;
    }
    case K_BOOL: {
        bool b;
        if (toml_as_bool(v, &b)) return where(err, file, v, "%s must be true or false (got %s)", k->path, toml_type_name(v->type));
        *(bool *)dst = b;
        return 0;
    }
    case K_STRLIST: {
        const char *one = toml_as_str(v);
        r->lora.ntargets = 0;
        if (one) {
            snprintf(r->lora.targets[r->lora.ntargets++], 64, "%s", one);
            return 0;
        }
        if (v->type != TOML_ARRAY) return where(err, file, v, "%s must be a list of strings or a string%s", k->path, "");
        if (toml_len(v) > RECIPE_MAX_TARGETS || toml_len(v) == 0) return where(err, file, v, "%s must name 1 to 32 modules%s", k->path, "");
        for (size_t i = 0; i < toml_len(v); i++) {
            const toml_value *it = toml_array_item(v, i);
            const char *s = toml_as_str(it);
            if (!s || strlen(s) >= 64) return where(err, file, it, "%s items must be module names%s", k->path, "");
            snprintf(r->lora.targets[r->lora.ntargets++], 64, "%s", s);
        }
        return 0;
    }
    case K_SOURCES: {
        if (v->type != TOML_ARRAY) return where(err, file, v, "%s must be an array of tables ([[%s]])", k->path, k->path);
        if (toml_len(v) > RECIPE_MAX_SOURCES) return where(err, file, v, "%s: at most 16 sources%s", k->path, "");
        r->data.nsources = 0;
        for (size_t i = 0; i < toml_len(v); i++) {
            const toml_value *t = toml_array_item(v, i);
            if (t->type != TOML_TABLE) return where(err, file, t, "%s items must be tables%s", k->path, "");
            recipe_source *s = &r->data.sources[r->data.nsources++];
            memset(s, 0, sizeof *s);
            s->weight = 1.0;
            snprintf(s->format, sizeof s->format, "auto");
            for (size_t e = 0; e < toml_len(t); e++) {
                const toml_entry *en = toml_table_entry(t, e);
                char full[160];
                snprintf(full, sizeof full, "data.sources[%zu].%s", i, en->key);
                const toml_value *x = en->value;
                if (!strcmp(en->key, "path")) {
                    const char *p = toml_as_str(x);
                    if (!p || strlen(p) >= sizeof s->path) return where(err, file, x, "%s must be a file path%s", full, "");
                    snprintf(s->path, sizeof s->path, "%s", p);
                } else if (!strcmp(en->key, "weight")) {
                    if (toml_as_float(x, &s->weight) || !(s->weight > 0))
                        return where(err, file, x, "%s must be a fraction in (0, 1] or a record count > 1%s", full, "");
                } else if (!strcmp(en->key, "format")) {
                    const char *p = toml_as_str(x);
                    if (!p || !enum_ok(FORMATS, p)) return where(err, file, x, "%s must be one of %s", full, FORMATS);
                    snprintf(s->format, sizeof s->format, "%s", p);
                } else {
                    const char *best = NULL;
                    for (size_t q = 0; q < 3; q++) if (lev(en->key, SOURCE_KEYS[q]) <= 2) best = SOURCE_KEYS[q];
                    char m[200];
                    snprintf(m, sizeof m, "(known: path, weight, format)%s%s%s", best ? "; did you mean " : "", best ? best : "", best ? "?" : "");
                    oh_errf(err, "%s:%d:%d: unknown key %s %s", file, en->line, en->col, full, m);
                    return -1;
                }
            }
            if (!s->path[0]) return where(err, file, t, "%s needs a path%s", k->path, "");
        }
        return 0;
    }
    }
    return 0;
}

void recipe_defaults(recipe *r) {
    memset(r, 0, sizeof *r);
    for (int k = 0; k < NKEYS; k++) {
        toml_value *v = NULL;
        char *doc = oh_sprintf("x = %s", KEYS[k].def);
        oh_err e;
        OH_CHECK(toml_parse(doc, strlen(doc), "<defaults>", &v, &e) == 0, "%s", e.msg);
        OH_CHECK(store(r, &KEYS[k], toml_get(v, "x"), "<defaults>", &e) == 0, "%s", e.msg);
        toml_free(v);
        free(doc);
    }
}

/* Walk the tree: every leaf must be a known key. */
static int walk(recipe *r, const toml_value *t, const char *prefix, const char *file, oh_err *err) {
    for (size_t i = 0; i < toml_len(t); i++) {
        const toml_entry *e = toml_table_entry(t, i);
        char path[256];
        snprintf(path, sizeof path, "%s%s%s", prefix, prefix[0] ? "." : "", e->key);
        const key_def *k = NULL;
        for (int j = 0; j < NKEYS && !k; j++) if (!strcmp(KEYS[j].path, path)) k = &KEYS[j];
        if (k) {
            if (store(r, k, e->value, file, err)) return -1;
            continue;
        }
        bool is_section = false;
        size_t pl = strlen(path);
        for (int j = 0; j < NKEYS && !is_section; j++) is_section = !strncmp(KEYS[j].path, path, pl) && KEYS[j].path[pl] == '.';
        if (is_section && e->value->type == TOML_TABLE) {
            if (walk(r, e->value, path, file, err)) return -1;
            continue;
        }
        /* an unknown table: name its first key, which gives a better suggestion */
        const toml_value *v = e->value;
        while (v->type == TOML_TABLE && toml_len(v) > 0) {
            const toml_entry *f = toml_table_entry(v, 0);
            size_t l = strlen(path);
            snprintf(path + l, sizeof path - l, ".%s", f->key);
            v = f->value;
        }
        const char *s = suggest(path);
        if (e->line > 0)
            return oh_errf(err, "%s:%d:%d: unknown key %s%s%s%s (finetune --help-recipe lists them)", file, e->line, e->col, path,
                           s ? "; did you mean " : "", s ? s : "", s ? "?" : "");
        return oh_errf(err, "%s: unknown key %s%s%s%s (finetune --help-recipe lists them)", file, path,
                       s ? "; did you mean " : "", s ? s : "", s ? "?" : "");
    }
    return 0;
}

int recipe_load(recipe *r, const char *path, const char *const *ov, int nov, oh_err *err) {
    recipe_defaults(r);
    snprintf(r->file, sizeof r->file, "%s", path);
    toml_value *root;
    if (toml_parse_file(path, &root, err)) return -1;
    int rc = 0;
    for (int i = 0; i < nov && rc == 0; i++) {
        const char *eq = strchr(ov[i], '=');
        if (!eq) { rc = oh_errf(err, "--set %s: expected key.path=value", ov[i]); break; }
        char *key = oh_strndup(ov[i], (size_t)(eq - ov[i]));
        bool known = false;
        for (int j = 0; j < NKEYS; j++) known |= !strcmp(KEYS[j].path, key) || !strncmp(key, "data.sources[", 13);
        if (!known) {
            const char *s = suggest(key);
            rc = oh_errf(err, "--set %s: unknown key %s%s%s%s", ov[i], key, s ? "; did you mean " : "", s ? s : "", s ? "?" : "");
        } else if (toml_set_path(root, key, eq + 1, err)) {
            rc = oh_err_prefix(err, "--set %s", ov[i]);
        }
        free(key);
    }
    if (rc == 0) rc = walk(r, root, "", path, err);
    toml_free(root);
    if (rc) return -1;
    /* cross-key checks */
    if (!r->model.path[0]) return oh_errf(err, "%s: model.path is required", path);
    if (r->data.nsources == 0) return oh_errf(err, "%s: no [[data.sources]]", path);
    if (r->train.method[0] != 'l' && r->output.merge) {
        return oh_errf(err, "%s: output.merge applies to LoRA runs (train.method = \"lora\")", path);
    }
    return 0;
}

static void dump_value(oh_buf *b, const recipe *r, const key_def *k) {
    const char *src = (const char *)r + k->off;
    switch (k->type) {
    case K_STR: case K_ENUM: oh_buf_json_str(b, src, strlen(src)); break;
    case K_INT: oh_buf_printf(b, "%ld", *(const long *)src); break;
    case K_FLOAT: {
        double d = *(const double *)src;
        char tmp[64];
        snprintf(tmp, sizeof tmp, "%.17g", d);
        for (int p = 1; p <= 17; p++) { snprintf(tmp, sizeof tmp, "%.*g", p, d); if (strtod(tmp, NULL) == d) break; }
        oh_buf_puts(b, tmp);
        if (!strpbrk(tmp, ".eEn")) oh_buf_puts(b, ".0");
        break;
    }
    case K_BOOL: oh_buf_puts(b, *(const bool *)src ? "true" : "false"); break;
    case K_STRLIST:
        oh_buf_puts(b, "[");
        for (int i = 0; i < r->lora.ntargets; i++) {
            if (i) oh_buf_puts(b, ", ");
            oh_buf_json_str(b, r->lora.targets[i], strlen(r->lora.targets[i]));
        }
        oh_buf_puts(b, "]");
        break;
    case K_SOURCES: break;
    }
}

char *recipe_dump(const recipe *r) {
    oh_buf b = {0};
    oh_buf_printf(&b, "# resolved recipe (from %s; every key, defaults included)\n", r->file);
    const char *section = "";
    size_t seclen = 0;
    for (int k = 0; k < NKEYS; k++) {
        if (KEYS[k].type == K_SOURCES) continue;
        const char *dot = strchr(KEYS[k].path, '.');
        size_t sl = (size_t)(dot - KEYS[k].path);
        if (seclen != sl || strncmp(section, KEYS[k].path, sl)) {
            section = KEYS[k].path;
            seclen = sl;
            oh_buf_printf(&b, "\n[%.*s]\n", (int)sl, KEYS[k].path);
        }
        oh_buf_printf(&b, "%s = ", dot + 1);
        dump_value(&b, r, &KEYS[k]);
        oh_buf_puts(&b, "\n");
    }
    for (int i = 0; i < r->data.nsources; i++) {
        oh_buf_puts(&b, "\n[[data.sources]]\npath = ");
        oh_buf_json_str(&b, r->data.sources[i].path, strlen(r->data.sources[i].path));
        oh_buf_printf(&b, "\nweight = %.17g\nformat = \"%s\"\n", r->data.sources[i].weight, r->data.sources[i].format);
    }
    return b.p;
}

void recipe_print_help(FILE *f) {
    fprintf(f, "Recipe keys (TOML; override any with --set key=value):\n\n");
    for (int k = 0; k < NKEYS; k++) {
        const key_def *d = &KEYS[k];
        const char *tn = d->type == K_STR ? "string" : d->type == K_ENUM ? "choice" : d->type == K_INT ? "integer"
                       : d->type == K_FLOAT ? "number" : d->type == K_BOOL ? "bool" : d->type == K_STRLIST ? "list" : "tables";
        fprintf(f, "  %-26s %-8s default %s", d->path, tn, d->def);
        if (d->type == K_ENUM) fprintf(f, "  {%s}", d->choices);
        if ((d->type == K_INT || d->type == K_FLOAT) && (d->lo != 0 || d->hi < INF)) {
            if (d->hi < INF) fprintf(f, "  range [%g, %g]", d->lo, d->hi);
            else fprintf(f, "  >= %g", d->lo);
        }
        fprintf(f, "\n      %s\n", d->help);
    }
}
