#include "datasets/chat.h"
#include "datasets/tokenizer.h"

#include <stdlib.h>
#include <string.h>

void ds_template_init(ds_template *t, const char *name, const char *generation_prompt, const char *bos, const char *eos) {
    memset(t, 0, sizeof *t);
    t->name = oh_strdup(name);
    t->generation_prompt = oh_strdup(generation_prompt ? generation_prompt : "");
    t->bos = oh_strdup(bos ? bos : "");
    t->eos = oh_strdup(eos ? eos : "");
}

void ds_template_add_role(ds_template *t, const char *role, const char *prefix, const char *suffix, const char *sep) {
    t->roles = oh_realloc(t->roles, sizeof *t->roles * (size_t)(t->nroles + 1));
    ds_role_format *r = &t->roles[t->nroles++];
    r->role = oh_strdup(role);
    r->prefix = oh_strdup(prefix ? prefix : "");
    r->suffix = oh_strdup(suffix ? suffix : "");
    r->sep = oh_strdup(sep ? sep : "");
}

void ds_template_chatml(ds_template *t) {
    ds_template_init(t, "olmo", "<|im_start|>assistant\n", "", "");
    ds_template_add_role(t, "*", "<|im_start|>{role}\n", "<|im_end|>", "\n");
}

void ds_template_free(ds_template *t) {
    for (int i = 0; i < t->nroles; i++) {
        free(t->roles[i].role); free(t->roles[i].prefix); free(t->roles[i].suffix); free(t->roles[i].sep);
    }
    free(t->roles);
    free(t->name); free(t->generation_prompt); free(t->bos); free(t->eos);
    memset(t, 0, sizeof *t);
}

void ds_rendered_add(ds_rendered *r, const char *s, size_t len, bool trained) {
    if (len == 0) return;
    if (r->nspans > 0) {
        ds_span *last = &r->spans[r->nspans - 1];
        if (last->trained == trained) { /* merge with the previous span */
            oh_buf_put(&r->text, s, len);
            last->len += len;
            return;
        }
    }
    if (r->nspans == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 8;
        r->spans = oh_realloc(r->spans, sizeof *r->spans * (size_t)r->cap);
    }
    r->spans[r->nspans++] = (ds_span){r->text.n, len, trained};
    oh_buf_put(&r->text, s, len);
}

void ds_rendered_free(ds_rendered *r) {
    oh_buf_free(&r->text);
    free(r->spans);
    memset(r, 0, sizeof *r);
}

static void add_prefix(ds_rendered *r, const char *prefix, const char *role) {
    const char *p = prefix, *q;
    while ((q = strstr(p, "{role}"))) {
        ds_rendered_add(r, p, (size_t)(q - p), false);
        ds_rendered_add(r, role, strlen(role), false);
        p = q + 6;
    }
    ds_rendered_add(r, p, strlen(p), false);
}

static const ds_role_format *role_format(const ds_template *t, const char *role) {
    const ds_role_format *any = NULL;
    for (int i = 0; i < t->nroles; i++) {
        if (!strcmp(t->roles[i].role, role)) return &t->roles[i];
        if (!strcmp(t->roles[i].role, "*")) any = &t->roles[i];
    }
    return any;
}

int ds_chat_render(const ds_template *t, const ds_conv *c, const ds_chat_opts *o, ds_rendered *out, oh_err *err) {
    static const ds_chat_opts none = {0};
    if (!o) o = &none;
    memset(out, 0, sizeof *out);
    oh_buf_put(&out->text, "", 0);
    ds_rendered_add(out, t->bos, strlen(t->bos), false);
    bool has_system = false;
    int last_asst = -1;
    for (int i = 0; i < c->n; i++) {
        has_system |= !strcmp(c->msg[i].role, "system");
        if (!strcmp(c->msg[i].role, "assistant")) last_asst = i;
    }
    if (o->system_message && o->system_message[0] && !has_system) {
        const ds_role_format *f = role_format(t, "system");
        if (!f) { ds_rendered_free(out); return oh_errf(err, "chat template '%s' has no format for the role 'system'", t->name); }
        add_prefix(out, f->prefix, "system");
        ds_rendered_add(out, o->system_message, strlen(o->system_message), false);
        ds_rendered_add(out, f->suffix, strlen(f->suffix), false);
        ds_rendered_add(out, f->sep, strlen(f->sep), false);
    }
    bool last_trained = false;
    for (int i = 0; i < c->n; i++) {
        const ds_message *m = &c->msg[i];
        const ds_role_format *f = role_format(t, m->role);
        if (!f) {
            ds_rendered_free(out);
            return oh_errf(err, "chat template '%s' has no format for the role '%s'", t->name, m->role);
        }
        bool trained = !strcmp(m->role, "assistant") && (!o->last_turn_only || i == last_asst) && i >= o->train_from;
        add_prefix(out, f->prefix, m->role);
        ds_rendered_add(out, m->content, m->len, trained);
        ds_rendered_add(out, f->suffix, strlen(f->suffix), trained);
        ds_rendered_add(out, f->sep, strlen(f->sep), false);
        last_trained = trained;
    }
    if (o->add_generation_prompt) ds_rendered_add(out, t->generation_prompt, strlen(t->generation_prompt), false);
    else ds_rendered_add(out, t->eos, strlen(t->eos), last_trained);
    return 0;
}

void ds_tokens_push(ds_tokens *t, int32_t id, bool trained) {
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 256;
        t->ids = oh_realloc(t->ids, sizeof *t->ids * t->cap);
        t->trained = oh_realloc(t->trained, t->cap);
    }
    t->ids[t->n] = id;
    t->trained[t->n++] = trained;
}

void ds_tokens_free(ds_tokens *t) {
    free(t->ids);
    free(t->trained);
    memset(t, 0, sizeof *t);
}

static size_t common_prefix(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    size_t k = 0;
    while (k < na && k < nb && a[k] == b[k]) k++;
    return k;
}

/* flags from byte offsets: a token is trained when a trained span overlaps
 * it. false when the lengths do not add up to the text. */
static bool flags_by_offsets(const ds_rendered *r, const ds_tokenizer *tok, const int32_t *ids, size_t n, uint8_t *fl) {
    size_t at = 0;
    int s = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= tok->ntoken_len || tok->token_len[ids[i]] < 0) return false;
        size_t a = at, b = at + (size_t)tok->token_len[ids[i]];
        if (b > r->text.n) return false;
        while (s < r->nspans && r->spans[s].off + r->spans[s].len <= a) s++;
        bool tr = false;
        for (int k = s; k < r->nspans && r->spans[k].off < b && !tr; k++) tr = r->spans[k].trained;
        if (b == a) tr = s < r->nspans && r->spans[s].trained; /* an empty token: its span */
        fl[i] = tr;
        at = b;
    }
    return at == r->text.n;
}

/* flags without offsets: edges from span-by-span encodings */
static int flags_by_encoding(const ds_rendered *r, const ds_tokenizer *tok, const int32_t *ids, size_t n, uint8_t *fl,
                             oh_err *err) {
    size_t *edge = oh_malloc(sizeof(size_t) * (size_t)(r->nspans + 1)); /* token index where span k starts */
    edge[0] = 0;
    edge[r->nspans] = n;
    int32_t *part = NULL;
    size_t np = 0, at = 0;
    bool same = true;
    for (int k = 0; k < r->nspans && same; k++) {
        if (tok->encode(tok->ctx, r->text.p + r->spans[k].off, r->spans[k].len, &part, &np, err)) { free(edge); return -1; }
        if (at + np > n || (np && memcmp(ids + at, part, np * sizeof *part))) same = false;
        at += np;
        if (k + 1 < r->nspans) edge[k + 1] = at;
        free(part);
        part = NULL;
    }
    if (!same || at != n) {
        for (int k = 1; k < r->nspans; k++) {
            if (tok->encode(tok->ctx, r->text.p, r->spans[k].off, &part, &np, err)) { free(edge); return -1; }
            size_t e = common_prefix(part, np, ids, n);
            /* e < np: the token at e straddles the edge; it goes to the trained side */
            if (e < np && e < n && !r->spans[k].trained) e++;
            if (e < edge[k - 1]) e = edge[k - 1];
            edge[k] = e;
            free(part);
            part = NULL;
        }
    }
    for (int k = 0; k < r->nspans; k++)
        for (size_t i = edge[k]; i < edge[k + 1]; i++) fl[i] = r->spans[k].trained;
    free(edge);
    return 0;
}

int ds_tokenize_rendered(const ds_rendered *r, const ds_tokenizer *tok, ds_tokens *out, oh_err *err) {
    if (r->nspans == 0) return 0;
    int32_t *ids = NULL;
    size_t n = 0;
    if (tok->encode(tok->ctx, r->text.p, r->text.n, &ids, &n, err)) return -1;
    uint8_t *fl = oh_malloc(n ? n : 1);
    int rc = 0;
    if (r->nspans == 1) memset(fl, r->spans[0].trained, n);
    else if (!(tok->token_len && flags_by_offsets(r, tok, ids, n, fl))) rc = flags_by_encoding(r, tok, ids, n, fl, err);
    if (rc == 0)
        for (size_t i = 0; i < n; i++) ds_tokens_push(out, ids[i], fl[i]);
    free(ids);
    free(fl);
    return rc;
}

/* ---- the toolkit's tokenizer ---- */

static int tok_enc_cb(void *ctx, const char *text, size_t len, int32_t **ids, size_t *n, oh_err *err) {
    return tok_encode(ctx, text, len, ids, n, err);
}
static int tok_dec_cb(void *ctx, const int32_t *ids, size_t n, char **text, size_t *len, oh_err *err) {
    return tok_decode(ctx, ids, n, text, len, err);
}

int ds_tokenizer_from_tok(ds_tokenizer *out, struct tok_tokenizer *tok, oh_err *err) {
    memset(out, 0, sizeof *out);
    if (!tok) return oh_errf(err, "no tokenizer");
    out->ctx = tok;
    out->encode = tok_enc_cb;
    out->decode = tok_dec_cb;
    out->vocab_size = tok_vocab_size(tok);
    static const char *eos[] = {"<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>"};
    static const char *pad[] = {"<|pad|>", "<pad>"};
    out->eos_id = out->pad_id = -1;
    for (size_t i = 0; i < sizeof eos / sizeof *eos && out->eos_id < 0; i++) out->eos_id = tok_token_id(tok, eos[i]);
    for (size_t i = 0; i < sizeof pad / sizeof *pad && out->pad_id < 0; i++) out->pad_id = tok_token_id(tok, pad[i]);
    if (out->pad_id < 0) out->pad_id = out->eos_id;
    int32_t *len = oh_malloc(sizeof(int32_t) * (size_t)(out->vocab_size ? out->vocab_size : 1));
    for (int32_t id = 0; id < out->vocab_size; id++) {
        char *t = NULL;
        size_t l = 0;
        len[id] = tok_decode(tok, &id, 1, &t, &l, NULL) == 0 ? (int32_t)l : -1;
        free(t);
    }
    out->token_len = len;
    out->ntoken_len = out->vocab_size;
    return 0;
}

void ds_tokenizer_release(ds_tokenizer *t) {
    free((void *)t->token_len);
    t->token_len = NULL;
    t->ntoken_len = 0;
}

/* ---- the tokenizer's chat template ---- */

int ds_chat_template_read(const char *path, char **jinja, oh_err *err) {
    *jinja = NULL;
    char *file = NULL;
    if (oh_is_dir(path)) {
        char *j = oh_path_join(path, "chat_template.jinja");
        if (oh_file_exists(j)) file = j;
        else { free(j); file = oh_path_join(path, "tokenizer_config.json"); }
    } else {
        file = oh_strdup(path);
    }
    char *src;
    size_t len;
    if (oh_read_file(file, &src, &len, err)) { free(file); return -1; }
    size_t fl = strlen(file);
    if (fl < 5 || strcmp(file + fl - 5, ".json")) { /* a .jinja file */
        *jinja = src;
        free(file);
        return 0;
    }
    oh_json j;
    int rc = -1;
    if (oh_json_parse(&j, src, len, file, err)) { free(src); free(file); return -1; }
    int t = oh_json_get(&j, 0, "chat_template");
    if (t < 0) {
        oh_errf(err, "%s: no chat_template: name a template in the recipe (data.chat_template = \"olmo\")", file);
    } else if (oh_json_is_str(&j, t)) {
        *jinja = oh_json_str(&j, t, NULL);
        rc = 0;
    } else if (oh_json_type(&j, t) == JSMN_ARRAY) {
        for (int k = 0; k < oh_json_size(&j, t); k++) {
            int e = oh_json_at(&j, t, k);
            if (oh_json_eq(&j, oh_json_get(&j, e, "name"), "default") && oh_json_is_str(&j, oh_json_get(&j, e, "template"))) {
                *jinja = oh_json_str(&j, oh_json_get(&j, e, "template"), NULL);
                rc = 0;
            }
        }
        if (rc) oh_errf(err, "%s: chat_template is a list without a \"default\" entry", file);
    } else {
        oh_errf(err, "%s: chat_template: expected a string or a list", file);
    }
    oh_json_free(&j);
    free(src);
    free(file);
    return rc;
}

/* a literal default system message: "<|im_start|>system" + newline (real or
 * the two characters backslash n) + text without jinja syntax or quotes +
 * "<|im_end|>" */
static char *literal_system(const char *s) {
    const char *p = s;
    while ((p = strstr(p, "<|im_start|>system"))) {
        p += strlen("<|im_start|>system");
        const char *q = p;
        if (*q == '\n') q++;
        else if (q[0] == '\\' && q[1] == 'n') q += 2;
        else continue;
        const char *e = strstr(q, "<|im_end|>");
        if (!e || e == q) continue;
        bool literal = true;
        for (const char *k = q; k < e && literal; k++)
            if (*k == '{' || *k == '}' || *k == '\'' || *k == '"' || *k == '+') literal = false;
        if (!literal) continue;
        oh_buf b = {0};
        for (const char *k = q; k < e; k++) {
            if (k[0] == '\\' && k + 1 < e) {
                char c = k[1];
                oh_buf_put(&b, c == 'n' ? "\n" : c == 't' ? "\t" : &k[1], 1);
                k++;
            } else {
                oh_buf_put(&b, k, 1);
            }
        }
        return b.p;
    }
    return NULL;
}

int ds_chat_template_detect(const char *jinja, const char *what, ds_template *out, char **default_system, oh_err *err) {
    if (default_system) *default_system = NULL;
    static const char *role_after_start[] = {
        "'<|im_start|>' + message['role']", "\"<|im_start|>\" + message[\"role\"]", "'<|im_start|>' + message.role",
        "<|im_start|>{{ message['role'] }}", "<|im_start|>{{message['role']}}", "<|im_start|>{{ message.role }}",
        "<|im_start|>{{message.role}}", "'<|im_start|>' + message[\"role\"]", "\"<|im_start|>\" + message['role']",
        "<|im_start|>' + message['role']", "<|im_start|>user", "<|im_start|>assistant",
    };
    bool ok = strstr(jinja, "<|im_start|>") && strstr(jinja, "<|im_end|>");
    bool role = false;
    for (size_t i = 0; ok && i < sizeof role_after_start / sizeof *role_after_start; i++)
        role |= strstr(jinja, role_after_start[i]) != NULL;
    if (!ok || !role)
        return oh_errf(err, "%s: the chat template is not the ChatML/Olmo format (<|im_start|>role\\n content "
                       "<|im_end|>); name a template in the recipe (data.chat_template = \"olmo\") or declare one", what);
    ds_template_chatml(out);
    if (default_system) *default_system = literal_system(jinja);
    return 0;
}

int ds_chat_template_resolve(const char *name, const char *tokenizer_path, ds_template *out, char **default_system,
                             oh_err *err) {
    if (default_system) *default_system = NULL;
    if (!strcmp(name, "olmo") || !strcmp(name, "chatml")) { ds_template_chatml(out); return 0; }
    if (strcmp(name, "auto"))
        return oh_errf(err, "unknown chat template '%s' (expected olmo or auto)", name);
    char *dir;
    if (oh_is_dir(tokenizer_path)) {
        dir = oh_strdup(tokenizer_path);
    } else {
        const char *slash = strrchr(tokenizer_path, '/');
        dir = slash ? oh_strndup(tokenizer_path, (size_t)(slash - tokenizer_path)) : oh_strdup(".");
    }
    char *jinja;
    int rc = ds_chat_template_read(dir, &jinja, err);
    if (rc == 0) {
        rc = ds_chat_template_detect(jinja, dir, out, default_system, err);
        free(jinja);
    }
    free(dir);
    return rc;
}
