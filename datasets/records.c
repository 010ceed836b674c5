#include "datasets/records.h"

#include <stdlib.h>
#include <string.h>

static const char *FORMAT_NAMES[] = {"auto", "messages", "prompt_completion", "alpaca", "preference", "text", "tokens"};

int ds_format_parse(const char *name, ds_format *out, oh_err *err) {
    for (int i = 0; i < (int)(sizeof FORMAT_NAMES / sizeof *FORMAT_NAMES); i++)
        if (!strcmp(name, FORMAT_NAMES[i])) { *out = (ds_format)i; return 0; }
    return oh_errf(err, "unknown data format '%s' (expected auto, messages, prompt_completion, alpaca, preference, text or tokens)", name);
}

const char *ds_format_name(ds_format f) {
    return (unsigned)f < sizeof FORMAT_NAMES / sizeof *FORMAT_NAMES ? FORMAT_NAMES[f] : "?";
}

void ds_conv_push(ds_conv *c, const char *role, const char *content, size_t len) {
    c->msg = oh_realloc(c->msg, sizeof *c->msg * (size_t)(c->n + 1));
    ds_message *m = &c->msg[c->n++];
    m->role = oh_strdup(role);
    m->content = oh_strndup(content, len);
    m->len = len;
}

void ds_conv_free(ds_conv *c) {
    for (int i = 0; i < c->n; i++) { free(c->msg[i].role); free(c->msg[i].content); }
    free(c->msg);
    c->msg = NULL;
    c->n = 0;
}

void ds_example_free(ds_example *ex) {
    ds_conv_free(&ex->conv);
    ds_conv_free(&ex->chosen);
    ds_conv_free(&ex->rejected);
    free(ex->prompt); free(ex->completion); free(ex->text); free(ex->chosen_text); free(ex->rejected_text);
    memset(ex, 0, sizeof *ex);
}

bool ds_example_is_pref(const ds_example *ex) {
    return ex->kind == DS_EXAMPLE_PREF_CHAT || ex->kind == DS_EXAMPLE_PREF_TEXT;
}

static const char *type_name(const oh_json *j, int i) {
    switch (oh_json_type(j, i)) {
    case JSMN_OBJECT: return "an object";
    case JSMN_ARRAY: return "a list";
    case JSMN_STRING: return "a string";
    default: return oh_json_is_null(j, i) ? "null" : "a number or boolean";
    }
}

/* a required string value */
static int get_str(const oh_json *j, int obj, const char *key, const char *where, const char *origin,
                   char **out, size_t *len, oh_err *err) {
    int v = oh_json_get(j, obj, key);
    if (v < 0) return oh_errf(err, "%s: %smissing key '%s'", origin, where, key);
    if (!oh_json_is_str(j, v))
        return oh_errf(err, "%s: %skey '%s': expected a string, got %s", origin, where, key, type_name(j, v));
    *out = oh_json_str(j, v, len);
    return 0;
}

/* message content: string, null, or a list of {type: text, text} parts */
static int get_content(const oh_json *j, int v, const char *what, const char *origin, oh_buf *b, oh_err *err) {
    b->n = 0;
    oh_buf_put(b, "", 0);
    if (oh_json_is_null(j, v)) return 0;
    if (oh_json_is_str(j, v)) {
        size_t n;
        char *s = oh_json_str(j, v, &n);
        oh_buf_put(b, s, n);
        free(s);
        return 0;
    }
    if (oh_json_type(j, v) == JSMN_ARRAY) {
        for (int k = 0; k < oh_json_size(j, v); k++) {
            int p = oh_json_at(j, v, k);
            int t = oh_json_get(j, p, "text");
            int ty = oh_json_get(j, p, "type");
            if (oh_json_type(j, p) != JSMN_OBJECT || t < 0 || !oh_json_is_str(j, t) || (ty >= 0 && !oh_json_eq(j, ty, "text")))
                return oh_errf(err, "%s: %s[%d]: expected a {\"type\": \"text\", \"text\": string} part", origin, what, k);
            size_t n;
            char *s = oh_json_str(j, t, &n);
            oh_buf_put(b, s, n);
            free(s);
        }
        return 0;
    }
    return oh_errf(err, "%s: %s: expected a string, got %s", origin, what, type_name(j, v));
}

/* a list of messages at value index v; key names it in messages.
 * sharegpt: "from"/"value" instead of "role"/"content". */
static int parse_messages(const oh_json *j, int v, const char *key, bool sharegpt, const char *origin,
                          ds_conv *out, oh_err *err) {
    if (oh_json_type(j, v) != JSMN_ARRAY)
        return oh_errf(err, "%s: key '%s': expected a list of messages, got %s", origin, key, type_name(j, v));
    const char *rk = sharegpt ? "from" : "role", *ck = sharegpt ? "value" : "content";
    oh_buf content = {0};
    int n = oh_json_size(j, v), i = v + 1;
    for (int k = 0; k < n; k++, i = oh_json_skip(j, i)) {
        char where[96];
        snprintf(where, sizeof where, "%s[%d]", key, k);
        if (oh_json_type(j, i) != JSMN_OBJECT) {
            oh_buf_free(&content);
            return oh_errf(err, "%s: %s: expected an object with '%s' and '%s', got %s", origin, where, rk, ck, type_name(j, i));
        }
        int r = oh_json_get(j, i, rk), c = oh_json_get(j, i, ck);
        if (r < 0 || c < 0) {
            oh_buf_free(&content);
            return oh_errf(err, "%s: %s: missing key '%s'", origin, where, r < 0 ? rk : ck);
        }
        if (!oh_json_is_str(j, r)) {
            oh_buf_free(&content);
            return oh_errf(err, "%s: %s.%s: expected a string, got %s", origin, where, rk, type_name(j, r));
        }
        char cw[128];
        snprintf(cw, sizeof cw, "%s.%s", where, ck);
        if (get_content(j, c, cw, origin, &content, err)) { oh_buf_free(&content); return -1; }
        char *role = oh_json_str(j, r, NULL);
        const char *rr = role;
        if (sharegpt) {
            if (!strcmp(role, "human")) rr = "user";
            else if (!strcmp(role, "gpt")) rr = "assistant";
        }
        ds_conv_push(out, rr, content.p, content.n);
        free(role);
    }
    oh_buf_free(&content);
    return 0;
}

static bool same_msg(const ds_message *a, const ds_message *b) {
    return !strcmp(a->role, b->role) && a->len == b->len && !memcmp(a->content, b->content, a->len);
}

/* preference: chosen / rejected (+ prompt) */
static int parse_pref(ds_example *ex, const oh_json *j, const char *origin, oh_err *err) {
    int pc = oh_json_get(j, 0, "chosen"), pr = oh_json_get(j, 0, "rejected"), pp = oh_json_get(j, 0, "prompt");
    if (pc < 0 || pr < 0) return oh_errf(err, "%s: missing key '%s'", origin, pc < 0 ? "chosen" : "rejected");
    int ids[3] = {pc, pr, pp};
    const char *names[3] = {"chosen", "rejected", "prompt"};
    bool any_list = false;
    for (int k = 0; k < 3; k++) {
        if (ids[k] < 0) continue;
        int t = oh_json_type(j, ids[k]);
        if (t != JSMN_STRING && t != JSMN_ARRAY)
            return oh_errf(err, "%s: key '%s': expected a string or a list of messages, got %s", origin, names[k], type_name(j, ids[k]));
        any_list |= t == JSMN_ARRAY;
    }
    if (!any_list) {
        ex->kind = DS_EXAMPLE_PREF_TEXT;
        ex->chosen_text = oh_json_str(j, pc, &ex->chosen_len);
        ex->rejected_text = oh_json_str(j, pr, &ex->rejected_len);
        if (pp >= 0) {
            ex->prompt = oh_json_str(j, pp, &ex->prompt_len);
        } else {
            size_t k = 0, m = ex->chosen_len < ex->rejected_len ? ex->chosen_len : ex->rejected_len;
            while (k < m && ex->chosen_text[k] == ex->rejected_text[k]) k++;
            while (k > 0 && k < ex->chosen_len && ((unsigned char)ex->chosen_text[k] & 0xC0) == 0x80) k--;
            if (k == ex->chosen_len || k == ex->rejected_len)
                return oh_errf(err, "%s: 'chosen' and 'rejected' do not differ after their shared prompt text", origin);
            ex->prompt = oh_strndup(ex->chosen_text, k);
            ex->prompt_len = k;
            char *c = oh_strndup(ex->chosen_text + k, ex->chosen_len - k);
            char *r = oh_strndup(ex->rejected_text + k, ex->rejected_len - k);
            free(ex->chosen_text); free(ex->rejected_text);
            ex->chosen_text = c; ex->rejected_text = r;
            ex->chosen_len -= k; ex->rejected_len -= k;
        }
        return 0;
    }
    ex->kind = DS_EXAMPLE_PREF_CHAT;
    ds_conv *dst[3] = {&ex->chosen, &ex->rejected, &ex->conv};
    const char *as_role[3] = {"assistant", "assistant", "user"};
    for (int k = 0; k < 3; k++) {
        if (ids[k] < 0) continue;
        if (oh_json_is_str(j, ids[k])) {
            size_t n;
            char *s = oh_json_str(j, ids[k], &n);
            ds_conv_push(dst[k], as_role[k], s, n);
            free(s);
        } else if (parse_messages(j, ids[k], names[k], false, origin, dst[k], err)) {
            return -1;
        }
    }
    if (pp < 0) {
        /* the shared leading messages are the prompt */
        int k = 0;
        while (k < ex->chosen.n && k < ex->rejected.n && same_msg(&ex->chosen.msg[k], &ex->rejected.msg[k])) k++;
        if (k == ex->chosen.n || k == ex->rejected.n)
            return oh_errf(err, "%s: 'chosen' and 'rejected' do not differ after their shared prompt messages", origin);
        for (int i = 0; i < k; i++) ds_conv_push(&ex->conv, ex->chosen.msg[i].role, ex->chosen.msg[i].content, ex->chosen.msg[i].len);
        ds_conv *both[2] = {&ex->chosen, &ex->rejected};
        for (int b = 0; b < 2; b++) {
            ds_conv rest = {0};
            for (int i = k; i < both[b]->n; i++) ds_conv_push(&rest, both[b]->msg[i].role, both[b]->msg[i].content, both[b]->msg[i].len);
            ds_conv_free(both[b]);
            *both[b] = rest;
        }
    }
    if (ex->chosen.n == 0 || ex->rejected.n == 0)
        return oh_errf(err, "%s: key '%s': empty list of messages", origin, ex->chosen.n == 0 ? "chosen" : "rejected");
    return 0;
}

static int parse_prompt_completion(ds_example *ex, const oh_json *j, const char *origin, oh_err *err) {
    int pp = oh_json_get(j, 0, "prompt"), pc = oh_json_get(j, 0, "completion");
    if (pp < 0 || pc < 0) return oh_errf(err, "%s: missing key '%s'", origin, pp < 0 ? "prompt" : "completion");
    int tp = oh_json_type(j, pp), tc = oh_json_type(j, pc);
    if (tp != JSMN_STRING && tp != JSMN_ARRAY)
        return oh_errf(err, "%s: key 'prompt': expected a string or a list of messages, got %s", origin, type_name(j, pp));
    if (tc != JSMN_STRING && tc != JSMN_ARRAY)
        return oh_errf(err, "%s: key 'completion': expected a string or a list of messages, got %s", origin, type_name(j, pc));
    if (tp == JSMN_STRING && tc == JSMN_STRING) {
        ex->kind = DS_EXAMPLE_PROMPT_COMPLETION;
        ex->prompt = oh_json_str(j, pp, &ex->prompt_len);
        ex->completion = oh_json_str(j, pc, &ex->completion_len);
        return 0;
    }
    ex->kind = DS_EXAMPLE_CHAT;
    int ids[2] = {pp, pc};
    const char *names[2] = {"prompt", "completion"}, *roles[2] = {"user", "assistant"};
    for (int k = 0; k < 2; k++) {
        if (oh_json_is_str(j, ids[k])) {
            size_t n;
            char *s = oh_json_str(j, ids[k], &n);
            ds_conv_push(&ex->conv, roles[k], s, n);
            free(s);
        } else if (parse_messages(j, ids[k], names[k], false, origin, &ex->conv, err)) {
            return -1;
        }
    }
    return 0;
}

static int parse_alpaca(ds_example *ex, const oh_json *j, const char *origin, oh_err *err) {
    char *ins = NULL, *out = NULL, *inp = NULL;
    size_t nins, nout, ninp = 0;
    if (get_str(j, 0, "instruction", "", origin, &ins, &nins, err)) return -1;
    if (get_str(j, 0, "output", "", origin, &out, &nout, err)) { free(ins); return -1; }
    int pi = oh_json_get(j, 0, "input");
    if (pi >= 0 && !oh_json_is_null(j, pi)) {
        if (!oh_json_is_str(j, pi)) {
            free(ins); free(out);
            return oh_errf(err, "%s: key 'input': expected a string, got %s", origin, type_name(j, pi));
        }
        inp = oh_json_str(j, pi, &ninp);
    }
    oh_buf u = {0};
    oh_buf_put(&u, ins, nins);
    if (ninp > 0) { oh_buf_puts(&u, "\n\n"); oh_buf_put(&u, inp, ninp); }
    ex->kind = DS_EXAMPLE_CHAT;
    ds_conv_push(&ex->conv, "user", u.p, u.n);
    ds_conv_push(&ex->conv, "assistant", out, nout);
    oh_buf_free(&u);
    free(ins); free(out); free(inp);
    return 0;
}

static ds_format detect(const oh_json *j) {
    if (oh_json_get(j, 0, "messages") >= 0 || oh_json_get(j, 0, "conversations") >= 0) return DS_FORMAT_MESSAGES;
    if (oh_json_get(j, 0, "chosen") >= 0 && oh_json_get(j, 0, "rejected") >= 0) return DS_FORMAT_PREFERENCE;
    if (oh_json_get(j, 0, "prompt") >= 0 && oh_json_get(j, 0, "completion") >= 0) return DS_FORMAT_PROMPT_COMPLETION;
    if (oh_json_get(j, 0, "instruction") >= 0 && oh_json_get(j, 0, "output") >= 0) return DS_FORMAT_ALPACA;
    if (oh_json_get(j, 0, "text") >= 0) return DS_FORMAT_TEXT;
    return DS_FORMAT_AUTO;
}

int ds_example_from_json(ds_example *ex, const oh_json *j, ds_format fmt, const char *origin, oh_err *err) {
    memset(ex, 0, sizeof *ex);
    if (oh_json_type(j, 0) != JSMN_OBJECT) return oh_errf(err, "%s: expected a JSON object", origin);
    if (fmt == DS_FORMAT_AUTO) {
        fmt = detect(j);
        if (fmt == DS_FORMAT_AUTO) {
            oh_buf keys = {0};
            int n = oh_json_size(j, 0), i = 1;
            for (int k = 0; k < n && k < 8; k++, i = oh_json_skip(j, i + 1)) {
                const char *p; int len;
                oh_json_raw(j, i, &p, &len);
                oh_buf_printf(&keys, "%s'%.*s'", k ? ", " : "", len, p);
            }
            oh_errf(err, "%s: cannot tell the record format: expected the key 'messages', 'chosen'+'rejected', "
                    "'prompt'+'completion', 'instruction'+'output' or 'text' (the record has %s)",
                    origin, keys.n ? keys.p : "no keys");
            oh_buf_free(&keys);
            return -1;
        }
    }
    int rc = 0;
    switch (fmt) {
    case DS_FORMAT_MESSAGES: {
        int v = oh_json_get(j, 0, "messages");
        bool sharegpt = false;
        if (v < 0 && (v = oh_json_get(j, 0, "conversations")) >= 0) sharegpt = true;
        if (v < 0) { rc = oh_errf(err, "%s: missing key 'messages'", origin); break; }
        ex->kind = DS_EXAMPLE_CHAT;
        rc = parse_messages(j, v, sharegpt ? "conversations" : "messages", sharegpt, origin, &ex->conv, err);
        break;
    }
    case DS_FORMAT_PREFERENCE: rc = parse_pref(ex, j, origin, err); break;
    case DS_FORMAT_PROMPT_COMPLETION: rc = parse_prompt_completion(ex, j, origin, err); break;
    case DS_FORMAT_ALPACA: rc = parse_alpaca(ex, j, origin, err); break;
    case DS_FORMAT_TEXT:
        ex->kind = DS_EXAMPLE_TEXT;
        rc = get_str(j, 0, "text", "", origin, &ex->text, &ex->text_len, err);
        break;
    default:
        rc = oh_errf(err, "%s: format '%s' does not apply to JSON records", origin, ds_format_name(fmt));
    }
    if (rc) ds_example_free(ex);
    return rc;
}
