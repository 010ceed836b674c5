/* tokenizer.h: byte-level BPE tokenizers, read from a Hugging Face
 * `tokenizer.json` or from a tiktoken rank file, encoding text to exactly the
 * ids Hugging Face `tokenizers` (or `tiktoken`) would produce.
 *
 * What a tokenizer.json may hold (anything else is refused at load time with an
 * error naming the feature and the file, never ignored):
 *   model          BPE: vocab, merges ("a b" strings or [["a","b"]] pairs),
 *                  ignore_merges; dropout null or 0; no byte_fallback, no
 *                  continuing_subword_prefix / end_of_word_suffix; the vocab
 *                  must hold the 256 byte-level symbols.
 *   normalizer     null (or an empty Sequence).
 *   pre_tokenizer  ByteLevel, or a Sequence of Split(s) followed by one
 *                  ByteLevel. Split: pattern {"Regex": ...} or {"String": ...},
 *                  behavior "Isolated", invert false. ByteLevel: add_prefix_space
 *                  and use_regex (GPT-2's regex) either way.
 *   added_tokens   matched in the raw text before pre-tokenization (leftmost-
 *                  longest; tokens with normalized=false first, then those with
 *                  normalized=true in the remaining text, as HF does), with
 *                  lstrip, rstrip and single_word honoured.
 *   decoder        ByteLevel.
 *   post_processor null, ByteLevel, TemplateProcessing, or a Sequence of them.
 *                  tok_encode never adds template tokens (HF's
 *                  add_special_tokens=False); tok_template() reports them.
 *   truncation, padding: null.
 *
 * Regexes are compiled with PCRE2 (UTF + UCP, JIT when available). The
 * dialects differ from HF's Oniguruma and tiktoken's Rust regex in a few
 * places, which are translated: \s and \S mean Unicode White_Space (PCRE2's \s
 * also takes U+180E), \uHHHH is accepted, Oniguruma's (?m) is dotall, and
 * ^ / $ are line anchors for tokenizer.json (Oniguruma) and text anchors for
 * tiktoken (Rust). Constructs whose meaning differs and that tokenizer
 * regexes do not use (\w \W \b \B \h \H \R \X \K \G \Q, nested classes, &&)
 * are refused. Unicode property tables are PCRE2's (10.42: Unicode 14):
 * letters added in later Unicode versions may split differently.
 *
 * Thread safety: a loaded tokenizer is read-only. tok_encode may be called
 * from any number of threads at once: each thread keeps its own BPE cache
 * (pretoken -> ids) and regex match state, found by the tokenizer's unique
 * id. A thread keeps state for at most 4 tokenizers (a few MB each at most);
 * tok_free releases the calling thread's state, other threads release theirs
 * when they exit or when the slot is reused.
 *
 * Errors: functions return 0 / -1 (or NULL) and fill an oh_err naming the
 * file and the key or feature at fault.
 */
#ifndef DS_TOKENIZER_H
#define DS_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "util/util.h"

typedef struct tok_tokenizer tok_tokenizer;

/* cl100k_base's pre-tokenizer regex (also dolma2's). */
#define TOK_CL100K_PATTERN                                                                       \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|" \
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
/* GPT-2's regex, used by a ByteLevel pre-tokenizer with use_regex true. */
#define TOK_GPT2_PATTERN \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

/* Load a Hugging Face tokenizer. path_or_dir: a tokenizer.json (plain or
 * gzip-compressed, any name), or a directory holding tokenizer.json (or
 * tokenizer.json.gz). Returns NULL and fills err on failure. Free with
 * tok_free. */
tok_tokenizer *tok_load(const char *path_or_dir, oh_err *err);
/* The same from a tokenizer.json already in memory (json: len bytes, not
 * necessarily NUL-terminated). what names it in error messages. */
tok_tokenizer *tok_load_json(const char *json, size_t len, const char *what, oh_err *err);

typedef struct tok_special {
    const char *text; /* the token's text, matched literally in the input */
    int32_t id;
} tok_special;

/* Load a tiktoken encoding. path: a rank file, plain or gzip-compressed, either
 * tiktoken's format (one "base64token rank" per line) or the npm `tiktoken`
 * package's encoders/NAME.json ({"pat_str", "special_tokens", "bpe_ranks": "! 0
 * tok tok ..."}: each line "! first_rank" then tokens of consecutive ranks).
 * pattern: the pre-tokenizer regex (Rust regex dialect); NULL takes the JSON's
 * pat_str, else TOK_CL100K_PATTERN. specials: the special tokens (nspecials of
 * them); NULL takes the JSON's special_tokens, else none. Encoding is
 * tiktoken's encode(text, allowed_special="all"): special-token text anywhere
 * becomes its id (leftmost, longest first), text between is split by the
 * regex (text the regex does not match is dropped, as tiktoken does), and each
 * piece that is a whole token is emitted as is, else merged by rank (the
 * adjacent pair whose concatenation has the lowest rank first). Token ids are
 * ranks. tok_token_id / tok_token_text use the GPT-2 byte-level spelling of a
 * token's bytes (as a converted tokenizer.json would), or a special's text. */
tok_tokenizer *tok_load_tiktoken(const char *path, const char *pattern, const tok_special *specials,
                                 size_t nspecials, oh_err *err);

void tok_free(tok_tokenizer *tok);

/* Encode len bytes of UTF-8 text. *ids receives a malloc'd array of *n ids
 * (caller frees; NULL when *n == 0). Added/special-token text is recognised;
 * no BOS/EOS or template tokens are added. Fails (naming the byte offset) on
 * invalid UTF-8. Thread-safe. */
int tok_encode(tok_tokenizer *tok, const char *text, size_t len, int32_t **ids, size_t *n, oh_err *err);

/* Encode n texts on nthreads threads (<= 0: one per online CPU; 1: the calling
 * thread). texts[i] has lens[i] bytes. On success ids[i] (malloc'd, caller
 * frees each) and counts[i] hold text i's ids, exactly as tok_encode would
 * give. On failure nothing is left allocated and err names the first failing
 * text's index. */
int tok_encode_batch(tok_tokenizer *tok, const char *const *texts, const size_t *lens, size_t n, int nthreads,
                     int32_t **ids, size_t *counts, oh_err *err);

/* Decode ids to the bytes they stand for (ByteLevel decoding; added tokens give
 * their content). *text is malloc'd and NUL-terminated (caller frees), *len its
 * length without the NUL (len may be NULL). The bytes are raw: ids that split
 * a UTF-8 character give invalid UTF-8 (HF's decode would put U+FFFD there).
 * Nothing is skipped: filter special tokens with tok_is_special first if
 * wanted. An id the tokenizer does not have is an error. */
int tok_decode(const tok_tokenizer *tok, const int32_t *ids, size_t n, char **text, size_t *len, oh_err *err);

/* The id of a token given as its vocabulary spelling ("Ġthe", "<|im_start|>"):
 * added tokens first, then the model's vocabulary, as HF's token_to_id. -1 if
 * absent. */
int tok_token_id(const tok_tokenizer *tok, const char *token_text);
/* The vocabulary spelling of id (NUL-terminated, owned by tok), or NULL. */
const char *tok_token_text(const tok_tokenizer *tok, int32_t id);
/* One more than the largest id the tokenizer can produce (vocab and added
 * tokens; ids below it may be unused). */
int tok_vocab_size(const tok_tokenizer *tok);
/* Whether id is an added token marked special (tiktoken: a special token). */
bool tok_is_special(const tok_tokenizer *tok, int32_t id);
/* The tokens a TemplateProcessing post-processor puts before and after a
 * single sequence (HF's add_special_tokens=True); both empty when there is
 * none. The arrays are owned by tok. */
void tok_template(const tok_tokenizer *tok, const int32_t **prefix, size_t *nprefix, const int32_t **suffix,
                  size_t *nsuffix);

/* `finetune tokenize --tokenizer PATH --input IN.jsonl --out OUT.jsonl
 * [--threads N]` (datasets/tokenize_cmd.c). argv holds the arguments after
 * the verb. Each input line {"text": "..."} (other keys ignored; the input may
 * be gzip-compressed) gives one output line {"ids": [...]}, in order; special-
 * token text is recognised and no BOS/EOS is added. A malformed line stops the
 * run with "IN:LINE: what is wrong" and leaves no output file. Returns the
 * process exit status: 0, 1 on failure, 2 on bad usage. */
int tok_cmd_tokenize(int argc, char **argv);

#endif
