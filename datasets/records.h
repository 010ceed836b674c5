/* records.h: what a JSON record means. One record becomes one example: a
 * conversation, a prompt with a completion, a raw text, or a preference pair.
 *
 * Formats (a source may force one; "auto" decides per record by its keys, in
 * this order):
 *   messages           {"messages": [{"role": R, "content": C}, ...]}
 *                      also ShareGPT {"conversations": [{"from": F, "value": V}]}
 *                      (human -> user, gpt -> assistant)
 *   preference         {"chosen": X, "rejected": Y} with optional "prompt": P.
 *                      X, Y, P are strings or message lists. Without a
 *                      prompt, the shared leading messages (or, for strings,
 *                      the shared leading text, cut at a UTF-8 boundary) are
 *                      the prompt.
 *   prompt_completion  {"prompt": P, "completion": C}
 *   alpaca             {"instruction": I, "input": N (optional), "output": O}:
 *                      the conversation [user: I (+ "\n\n" + N when N is not
 *                      empty), assistant: O]
 *   text               {"text": T} (continued pretraining)
 * Strings versus message lists follow TRL's convention: plain strings are
 * plain text (no chat template: prompt masked, completion + EOS trained);
 * message lists are conversations (chat template). A string prompt next to
 * message-list completions becomes one user message, and a string completion
 * next to a message-list prompt becomes one assistant message.
 * Message content may be a string, null (empty), or a list of
 * {"type": "text", "text": S} parts (joined).
 *
 * Errors name the record's origin and the key: "data.jsonl:7: messages[1]:
 * missing key 'content'".
 */
#ifndef DS_RECORDS_H
#define DS_RECORDS_H

#include <stdbool.h>
#include <stddef.h>
#include "util/json.h"
#include "util/util.h"

typedef enum ds_format {
    DS_FORMAT_AUTO,
    DS_FORMAT_MESSAGES,
    DS_FORMAT_PROMPT_COMPLETION,
    DS_FORMAT_ALPACA,
    DS_FORMAT_PREFERENCE,
    DS_FORMAT_TEXT,
    DS_FORMAT_TOKENS, /* pre-tokenized token files (tokfile.h), not JSON */
} ds_format;

/* "auto", "messages", "prompt_completion", "alpaca", "preference", "text",
 * "tokens"; -1 with the list of names otherwise. */
int ds_format_parse(const char *name, ds_format *out, oh_err *err);
const char *ds_format_name(ds_format f);

typedef struct ds_message {
    char *role;
    char *content; /* may hold NUL bytes; len is authoritative */
    size_t len;
} ds_message;

typedef struct ds_conv {
    ds_message *msg;
    int n;
} ds_conv;

typedef enum ds_example_kind {
    DS_EXAMPLE_CHAT,              /* conv */
    DS_EXAMPLE_PROMPT_COMPLETION, /* prompt, completion (plain text) */
    DS_EXAMPLE_TEXT,              /* text */
    DS_EXAMPLE_PREF_CHAT,         /* conv = shared prompt turns; chosen, rejected = continuations */
    DS_EXAMPLE_PREF_TEXT,         /* prompt (may be empty); chosen_text, rejected_text = continuations */
} ds_example_kind;

/* Owns every string; free with ds_example_free. */
typedef struct ds_example {
    ds_example_kind kind;
    ds_conv conv;
    char *prompt, *completion, *text, *chosen_text, *rejected_text;
    size_t prompt_len, completion_len, text_len, chosen_len, rejected_len;
    ds_conv chosen, rejected;
} ds_example;

/* Interpret the object at token 0 of j. fmt DS_FORMAT_AUTO detects it;
 * DS_FORMAT_TOKENS is refused. origin prefixes every message. */
int ds_example_from_json(ds_example *ex, const oh_json *j, ds_format fmt, const char *origin, oh_err *err);
void ds_example_free(ds_example *ex);
bool ds_example_is_pref(const ds_example *ex);

void ds_conv_push(ds_conv *c, const char *role, const char *content, size_t len);
void ds_conv_free(ds_conv *c);

#endif
