/* chat.h: chat templates, rendering a conversation to text, and turning the
 * rendered text into token ids with a per-token "trained" flag.
 *
 * Built in: the Olmo / ChatML format. Every message renders as
 *     <|im_start|>{role}\n{content}<|im_end|>\n
 * and the generation prompt is "<|im_start|>assistant\n". When the caller
 * gives a default system message and the conversation has no "system"
 * message, one is put first.
 *
 * Which tokens are trained (the label mask): only assistant messages, and of
 * each the content plus the end marker: the tokens after the generation
 * prompt "<|im_start|>assistant\n" up to and including "<|im_end|>". The "\n"
 * that follows <|im_end|> is not trained: a model stops at <|im_end|> and
 * never generates it. (This is transformers' {% generation %} convention for
 * ChatML templates; open-instruct's prefix-length masking also trains that
 * "\n", which teaches nothing.) With last_turn_only, only the final
 * assistant message is trained.
 *
 * Declared templates: per role a prefix (never trained), a suffix (trained
 * for assistant messages: the end marker) and a separator (never trained),
 * with "{role}" in a prefix replaced by the role; the role "*" applies to
 * roles not listed. Optional BOS text (first, never trained) and EOS text
 * (last, trained when the last message is) and the generation prompt.
 *
 * Tokenizing: the whole rendered text is encoded in one call, exactly as
 * transformers' apply_chat_template(tokenize=True) does (special-token text
 * such as <|im_start|> must be recognised by the encoder). A token is
 * trained when any of its bytes lies in a trained span: a token that
 * straddles a span edge (a BPE merge across it, e.g. assistant content that
 * starts with "\n" right after "assistant\n" gives one "\n\n" token) is
 * trained, as in transformers' assistant mask. The tokens' byte offsets come
 * from the tokenizer's token_len table when it has one (checked: the lengths
 * must add up to the text). Otherwise each span is encoded on its own; when
 * the pieces concatenate to the whole's ids (the usual case) they give the
 * edges, else an edge falls where the encoding of the text before it stops
 * agreeing with the whole, the token there going to the trained side.
 */
#ifndef DS_CHAT_H
#define DS_CHAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "datasets/records.h"
#include "util/json.h"
#include "util/util.h"

/* Text (len bytes) to ids; *ids is malloc'd (caller frees, may be NULL when
 * *n == 0). Must recognise special-token text. Thread safety is the
 * encoder's business (the loader calls it from several threads). */
typedef int (*ds_encode_fn)(void *ctx, const char *text, size_t len, int32_t **ids, size_t *n, oh_err *err);

/* The tokenizer as the data code sees it (the real one, or a stub in tests). */
typedef struct ds_tokenizer {
    void *ctx;
    ds_encode_fn encode;  /* required */
    /* optional (show): ids to text; *text malloc'd */
    int (*decode)(void *ctx, const int32_t *ids, size_t n, char **text, size_t *len, oh_err *err);
    /* optional: the number of input bytes each id stands for ([ntoken_len],
     * -1 for unused ids). With it, text is encoded once and tokens are
     * placed by byte offset; without it, see ds_tokenize_rendered. */
    const int32_t *token_len;
    int64_t ntoken_len;
    int64_t vocab_size;   /* ids the tokenizer can produce */
    int64_t eos_id;       /* <|endoftext|>; -1 if none */
    int64_t pad_id;       /* <|pad|>, else eos; -1 if none */
} ds_tokenizer;

struct tok_tokenizer;
/* Wrap a tokenizer loaded by tok_load (datasets/tokenizer.h). EOS is the
 * first of <|endoftext|>, <|end_of_text|>, </s>, <eos> that exists; PAD the
 * first of <|pad|>, <pad>, else EOS. tok must outlive the wrapper, and the
 * wrapper every loader made with it; ds_tokenizer_release frees its table. */
int ds_tokenizer_from_tok(ds_tokenizer *out, struct tok_tokenizer *tok, oh_err *err);
void ds_tokenizer_release(ds_tokenizer *t);

typedef struct ds_role_format {
    char *role;   /* a role name, or "*" */
    char *prefix; /* "{role}" is replaced by the message's role */
    char *suffix;
    char *sep;
} ds_role_format;

/* Owns its strings: ds_template_free. */
typedef struct ds_template {
    char *name;
    ds_role_format *roles;
    int nroles;
    char *generation_prompt;
    char *bos, *eos; /* "" when not used */
} ds_template;

/* The built-in Olmo/ChatML template. */
void ds_template_chatml(ds_template *t);
/* An empty template named name; add roles with ds_template_add_role. */
void ds_template_init(ds_template *t, const char *name, const char *generation_prompt, const char *bos, const char *eos);
void ds_template_add_role(ds_template *t, const char *role, const char *prefix, const char *suffix, const char *sep);
void ds_template_free(ds_template *t);

typedef struct ds_chat_opts {
    const char *system_message; /* NULL or "": none */
    bool last_turn_only;
    bool add_generation_prompt; /* end with the generation prompt (and no EOS) */
    int train_from;             /* messages before this index are never trained
                                 * (the prompt turns of a preference pair) */
} ds_chat_opts;

/* The rendered text as spans; a span is trained or not. */
typedef struct ds_span {
    size_t off, len;
    bool trained;
} ds_span;

typedef struct ds_rendered {
    oh_buf text;
    ds_span *spans;
    int nspans, cap;
} ds_rendered;

void ds_rendered_add(ds_rendered *r, const char *s, size_t len, bool trained);
void ds_rendered_free(ds_rendered *r);

/* Render a conversation. Fails when a message's role has no format. */
int ds_chat_render(const ds_template *t, const ds_conv *c, const ds_chat_opts *o, ds_rendered *out, oh_err *err);

/* Token ids with a trained flag per token: trained[i] says whether ids[i] is
 * a target (predicted from the tokens before it). */
typedef struct ds_tokens {
    int32_t *ids;
    uint8_t *trained;
    size_t n, cap;
} ds_tokens;

void ds_tokens_push(ds_tokens *t, int32_t id, bool trained);
void ds_tokens_free(ds_tokens *t);

/* Encode rendered text (see the header comment), appending to out. */
int ds_tokenize_rendered(const ds_rendered *r, const ds_tokenizer *tok, ds_tokens *out, oh_err *err);

/* ---- the tokenizer's own chat template ---- */

/* The chat template text of a Hugging Face tokenizer. path: a
 * tokenizer_config.json (its "chat_template": a string, or a list of
 * {name, template} whose "default" is taken), a chat_template.jinja, or a
 * directory holding one of them (chat_template.jinja first). Caller frees. */
int ds_chat_template_read(const char *path, char **jinja, oh_err *err);

/* Recognise the ChatML/Olmo format in a jinja template: "<|im_start|>" then
 * the message role, a newline, the content and "<|im_end|>". On success the
 * built-in template goes to *out and, when the template injects a literal
 * default system message, its text to *default_system (else NULL; caller
 * frees). Otherwise an error (naming `what`) asks the user to name a
 * template in the recipe. */
int ds_chat_template_detect(const char *jinja, const char *what, ds_template *out, char **default_system, oh_err *err);

/* The recipe's data.chat_template: "olmo" (or "chatml") is the built-in
 * template; "auto" reads the tokenizer's template (tokenizer_path: the
 * tokenizer.json, or its directory; tokenizer_config.json or
 * chat_template.jinja is looked for next to it) and accepts it when it is
 * ChatML (ds_chat_template_detect). *default_system as there (NULL for
 * "olmo"). */
int ds_chat_template_resolve(const char *name, const char *tokenizer_path, ds_template *out, char **default_system,
                             oh_err *err);

#endif
