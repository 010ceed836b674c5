/* Tests of datasets/tokenizer: tiny tokenizer.json files built here with
 * hand-derivable ids (byte-level mapping, merge ranks, ignore_merges, Split,
 * GPT-2's regex, added tokens with lstrip/rstrip/single_word/normalized),
 * decoding, refusals, gzip and directory loading, tiktoken rank files, batch
 * encoding and the tokenize command.
 *
 * Suite tokenizer_parity (compiled with OH_HAVE_TOKENIZER_FIXTURES) checks
 * ids against files made by Hugging Face tokenizers and tiktoken
 * (tests/fixtures/make_tokenizer_fixtures.py -> tests/fixtures/tokenizer/). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "datasets/tokenizer.h"
#include "util/json.h"

/* ---- building tokenizer.json text ---- */

static uint32_t b2u(int b) {
    static uint32_t t[256];
    static int init;
    if (!init) {
        int n = 0;
        for (int i = 0; i < 256; i++) {
            bool keep = (i >= '!' && i <= '~') || (i >= 0xa1 && i <= 0xac) || i >= 0xae;
            t[i] = keep ? (uint32_t)i : (uint32_t)(256 + n++);
        }
        init = 1;
    }
    return t[b];
}

static void put_utf8(oh_buf *b, uint32_t cp) {
    char o[4];
    int n;
    if (cp < 0x80) { o[0] = (char)cp; n = 1; }
    else if (cp < 0x800) { o[0] = (char)(0xc0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3f)); n = 2; }
    else { o[0] = (char)(0xe0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[2] = (char)(0x80 | (cp & 0x3f)); n = 3; }
    oh_buf_put(b, o, (size_t)n);
}

#define G "\xc4\xa0" /* "Ġ", the spelling of a space */

typedef struct spec {
    const char *merges;      /* JSON array of merges, "[...]" */
    const char *vocab_extra; /* extra vocab members: "\"ab\": 256, ..." or NULL */
    const char *pre;         /* pre_tokenizer JSON, NULL: ByteLevel without regex */
    const char *added;       /* added_tokens JSON array or NULL */
    bool ignore_merges;
    const char *model_extra; /* extra model members or NULL */
    const char *top_extra;   /* extra top-level members (replacing defaults) or NULL */
    int missing_byte;        /* 1 + a byte left out of the vocab; 0: none */
} spec;

/* The 256 byte symbols get id = byte value. */
static char *make_json(spec s) {
    oh_buf b = {0};
    oh_buf_puts(&b, "{\"version\": \"1.0\", ");
    if (s.top_extra) oh_buf_printf(&b, "%s, ", s.top_extra);
    if (!s.top_extra || !strstr(s.top_extra, "\"truncation\"")) oh_buf_puts(&b, "\"truncation\": null, ");
    if (!s.top_extra || !strstr(s.top_extra, "\"padding\"")) oh_buf_puts(&b, "\"padding\": null, ");
    if (!s.top_extra || !strstr(s.top_extra, "\"normalizer\"")) oh_buf_puts(&b, "\"normalizer\": null, ");
    if (!s.top_extra || !strstr(s.top_extra, "\"decoder\""))
        oh_buf_puts(&b, "\"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}, ");
    if (!s.top_extra || !strstr(s.top_extra, "\"post_processor\"")) oh_buf_puts(&b, "\"post_processor\": null, ");
    oh_buf_printf(&b, "\"added_tokens\": %s, ", s.added ? s.added : "[]");
    oh_buf_printf(&b, "\"pre_tokenizer\": %s, ",
                  s.pre ? s.pre : "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}");
    oh_buf_printf(&b, "\"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": null, \"continuing_subword_prefix\": null, "
                      "\"end_of_word_suffix\": null, \"fuse_unk\": false, \"byte_fallback\": false, \"ignore_merges\": %s, ",
                  s.ignore_merges ? "true" : "false");
    if (s.model_extra) oh_buf_printf(&b, "%s, ", s.model_extra);
    oh_buf_puts(&b, "\"vocab\": {");
    bool first = true;
    for (int i = 0; i < 256; i++) {
        if (i + 1 == s.missing_byte) continue;
        oh_buf tmp = {0};
        put_utf8(&tmp, b2u(i));
        if (!first) oh_buf_puts(&b, ", ");
        first = false;
        oh_buf_json_str(&b, tmp.p, tmp.n);
        oh_buf_printf(&b, ": %d", i);
        oh_buf_free(&tmp);
    }
    if (s.vocab_extra) oh_buf_printf(&b, ", %s", s.vocab_extra);
    oh_buf_printf(&b, "}, \"merges\": %s}}", s.merges ? s.merges : "[]");
    return b.p;
}

static tok_tokenizer *load_spec(spec s) {
    char *j = make_json(s);
    oh_err e;
    tok_tokenizer *t = tok_load_json(j, strlen(j), "test.json", &e);
    cr_assert(t, "load failed: %s", e.msg);
    free(j);
    return t;
}

static void expect_refused(spec s, const char *needle) {
    char *j = make_json(s);
    oh_err e = {{0}};
    tok_tokenizer *t = tok_load_json(j, strlen(j), "test.json", &e);
    cr_assert_null(t, "accepted a tokenizer that should be refused (%s)", needle);
    cr_assert(strstr(e.msg, needle), "error \"%s\" does not mention \"%s\"", e.msg, needle);
    cr_assert(strstr(e.msg, "test.json"), "error \"%s\" does not name the file", e.msg);
    free(j);
}

/* Encode text and compare with the expected ids (terminated by -1). */
static void expect_ids(tok_tokenizer *t, const char *text, const int32_t *want) {
    int32_t *ids;
    size_t n, m = 0;
    oh_err e;
    cr_assert_eq(tok_encode(t, text, strlen(text), &ids, &n, &e), 0, "%s", e.msg);
    while (want[m] >= 0) m++;
    char got[1024] = "", exp[1024] = "";
    for (size_t i = 0; i < n && strlen(got) < 1000; i++) snprintf(got + strlen(got), sizeof got - strlen(got), "%d ", ids[i]);
    for (size_t i = 0; i < m && strlen(exp) < 1000; i++) snprintf(exp + strlen(exp), sizeof exp - strlen(exp), "%d ", want[i]);
    cr_assert(n == m && (m == 0 || !memcmp(ids, want, m * sizeof *ids)), "\"%s\": got [%s], want [%s]", text, got, exp);
    free(ids);
}
#define IDS(...) ((const int32_t[]){__VA_ARGS__, -1})
#define NOIDS ((const int32_t[]){-1})

static void expect_round_trip(tok_tokenizer *t, const char *text) {
    int32_t *ids;
    size_t n, dl;
    char *d;
    oh_err e;
    cr_assert_eq(tok_encode(t, text, strlen(text), &ids, &n, &e), 0, "%s", e.msg);
    cr_assert_eq(tok_decode(t, ids, n, &d, &dl, &e), 0, "%s", e.msg);
    cr_assert(dl == strlen(text) && !memcmp(d, text, dl), "decode(encode(\"%s\")) = \"%s\"", text, d);
    free(ids);
    free(d);
}

static char *tmp_path(const char *name) {
    return oh_sprintf("%s/tok_test_%d_%s", OH_BINARY_DIR, (int)getpid(), name);
}

static void write_gz(const char *path, const char *data, size_t n) {
    gzFile f = gzopen(path, "wb");
    cr_assert(f);
    cr_assert_eq(gzwrite(f, data, (unsigned)n), (int)n);
    gzclose(f);
}

/* ---- BPE ---- */

/* hello = ((h e) (l l)) o, by ranks */
#define HELLO_MERGES "[\"h e\", \"l l\", \"he ll\", \"hell o\"]"
#define HELLO_VOCAB "\"he\": 256, \"ll\": 257, \"hell\": 258, \"hello\": 259"

Test(tokenizer, merges_by_rank) {
    tok_tokenizer *t = load_spec((spec){.merges = HELLO_MERGES, .vocab_extra = HELLO_VOCAB});
    expect_ids(t, "hello", IDS(259));
    expect_ids(t, "hell", IDS(258));
    expect_ids(t, "helo", IDS(256, 'l', 'o'));
    expect_ids(t, "lll", IDS(257, 'l')); /* leftmost first on equal rank */
    expect_ids(t, "", NOIDS);
    tok_free(t);
    /* the lower rank wins: "a b" before "b c" -> ab c; reversed -> a bc */
    t = load_spec((spec){.merges = "[\"a b\", \"b c\"]", .vocab_extra = "\"ab\": 256, \"bc\": 257"});
    expect_ids(t, "abc", IDS(256, 'c'));
    tok_free(t);
    t = load_spec((spec){.merges = "[\"b c\", \"a b\"]", .vocab_extra = "\"ab\": 256, \"bc\": 257"});
    expect_ids(t, "abc", IDS('a', 257));
    tok_free(t);
}

Test(tokenizer, merge_forms_agree) {
    tok_tokenizer *a = load_spec((spec){.merges = HELLO_MERGES, .vocab_extra = HELLO_VOCAB});
    tok_tokenizer *b = load_spec((spec){.merges = "[[\"h\", \"e\"], [\"l\", \"l\"], [\"he\", \"ll\"], [\"hell\", \"o\"]]",
                                        .vocab_extra = HELLO_VOCAB});
    expect_ids(a, "hello hell", IDS(259, ' ', 258));
    expect_ids(b, "hello hell", IDS(259, ' ', 258));
    tok_free(a);
    tok_free(b);
    /* "#version" lines are skipped in the string form */
    tok_tokenizer *c = load_spec((spec){.merges = "[\"#version: 0.2\", \"h e\"]", .vocab_extra = "\"he\": 256"});
    expect_ids(c, "he", IDS(256));
    tok_free(c);
}

Test(tokenizer, ignore_merges) {
    /* "abc" is in the vocab but no merge reaches it */
    spec s = {.merges = "[\"a b\"]", .vocab_extra = "\"ab\": 256, \"abc\": 257"};
    tok_tokenizer *t = load_spec(s);
    expect_ids(t, "abc", IDS(256, 'c'));
    tok_free(t);
    s.ignore_merges = true;
    t = load_spec(s);
    expect_ids(t, "abc", IDS(257));
    expect_ids(t, "abcd", IDS(256, 'c', 'd'));
    tok_free(t);
}

Test(tokenizer, byte_level_mapping) {
    /* a space is spelled Ġ; non-ASCII text goes byte by byte */
    tok_tokenizer *t = load_spec((spec){.merges = "[\"" G " w\"]", .vocab_extra = "\"" G "w\": 256"});
    expect_ids(t, "a world", IDS('a', 256, 'o', 'r', 'l', 'd'));
    expect_ids(t, "\xc3\xa9", IDS(0xc3, 0xa9));
    expect_ids(t, "\n\t\x01", IDS('\n', '\t', 1));
    expect_round_trip(t, "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 \x01\x7f");
    cr_assert_eq(tok_token_id(t, G "w"), 256);
    cr_assert_eq(tok_token_id(t, "\xc4\x8a"), '\n'); /* Ċ */
    cr_assert_eq(tok_token_id(t, "nope"), -1);
    cr_assert_str_eq(tok_token_text(t, ' '), G);
    cr_assert_null(tok_token_text(t, 999));
    cr_assert_eq(tok_vocab_size(t), 257);
    tok_free(t);
}

Test(tokenizer, invalid_utf8_refused) {
    tok_tokenizer *t = load_spec((spec){0});
    int32_t *ids;
    size_t n;
    oh_err e;
    cr_assert_eq(tok_encode(t, "ok\xc3(", 4, &ids, &n, &e), -1);
    cr_assert(strstr(e.msg, "UTF-8") && strstr(e.msg, "byte 2"), "%s", e.msg);
    cr_assert_eq(tok_encode(t, "\xed\xa0\x80", 3, &ids, &n, &e), -1); /* a surrogate */
    cr_assert_eq(tok_encode(t, "\xc0\xaf", 2, &ids, &n, &e), -1);     /* overlong */
    tok_free(t);
}

/* ---- pre-tokenizers ---- */

#define SEQ(split) "{\"type\": \"Sequence\", \"pretokenizers\": [" split ", {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]}"
#define SPLIT(re) "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"" re "\"}, \"behavior\": \"Isolated\", \"invert\": false}"

Test(tokenizer, split_isolated) {
    /* the merge b+Ġ applies only when nothing splits between b and the space */
    spec s = {.merges = "[\"b " G "\"]", .vocab_extra = "\"b" G "\": 256"};
    tok_tokenizer *t = load_spec(s);
    expect_ids(t, "ab cd", IDS('a', 256, 'c', 'd'));
    tok_free(t);
    s.pre = SEQ(SPLIT(" ?\\\\p{L}+"));
    t = load_spec(s);
    expect_ids(t, "ab cd", IDS('a', 'b', ' ', 'c', 'd'));
    expect_ids(t, "ab,  cd", IDS('a', 'b', ',', ' ', ' ', 'c', 'd')); /* unmatched text is kept */
    expect_round_trip(t, "ab,  cd!");
    tok_free(t);
    /* a String pattern is literal */
    s.pre = SEQ("{\"type\": \"Split\", \"pattern\": {\"String\": \".\"}, \"behavior\": \"Isolated\", \"invert\": false}");
    s.merges = "[\"a b\"]";
    s.vocab_extra = "\"ab\": 256";
    t = load_spec(s);
    expect_ids(t, "ab.ab", IDS(256, '.', 256));
    expect_ids(t, "ab", IDS(256));
    tok_free(t);
}

Test(tokenizer, split_white_space_is_unicode_white_space) {
    /* \s must not match U+180E (PCRE2's \s does; Oniguruma's and Rust's do not) */
    spec s = {.merges = "[\"a \xc3\xa1\", \"a \xc3\x82\"]", .vocab_extra = "\"a\xc3\xa1\": 256, \"a\xc3\x82\": 257",
              .pre = SEQ(SPLIT("\\\\s"))};
    tok_tokenizer *t = load_spec(s);
    expect_ids(t, "a\xe1\xa0\x8e" "b", IDS(256, 0xa0, 0x8e, 'b')); /* U+180E: no split, a+E1 merges */
    expect_ids(t, "a\xc2\xa0" "b", IDS('a', 0xc2, 0xa0, 'b'));     /* U+00A0 is white space: split */
    tok_free(t);
}

Test(tokenizer, gpt2_regex_and_prefix_space) {
    const char *pre = "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": true}";
    spec s = {.merges = "[\"' m\", \"" G " " G "\"]", .vocab_extra = "\"'m\": 256, \"" G G "\": 257", .pre = pre};
    tok_tokenizer *t = load_spec(s);
    expect_ids(t, "I'm", IDS('I', 256));
    expect_ids(t, "I'M", IDS('I', '\'', 'M')); /* GPT-2's contractions are lower case only */
    expect_ids(t, "a   b", IDS('a', 257, ' ', 'b')); /* \s+(?!\S) leaves the last space to " b" */
    tok_free(t);
    s.pre = "{\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}";
    t = load_spec(s);
    expect_ids(t, "hi", IDS(' ', 'h', 'i'));
    expect_ids(t, " hi", IDS(' ', 'h', 'i'));
    tok_free(t);
}

Test(tokenizer, quickstart_tokenizer) {
    oh_err e;
    tok_tokenizer *t = tok_load(OH_SOURCE_DIR "/recipes/quickstart", &e);
    cr_assert(t, "%s", e.msg);
    expect_ids(t, "<|im_start|>user\nWhat is 3 + 4?<|im_end|>",
               IDS(2, 4 + 'u', 4 + 's', 4 + 'e', 4 + 'r', 4 + '\n', 262, 265, 4 + ' ', 4 + '3', 266, 4 + ' ', 4 + '4', 4 + '?', 3));
    cr_assert_eq(tok_token_id(t, "<|endoftext|>"), 1);
    cr_assert(tok_is_special(t, 1));
    cr_assert(!tok_is_special(t, 262));
    cr_assert_geq(tok_vocab_size(t), 269); /* (recipes/quickstart/make_quickstart.py may add merges) */
    tok_free(t);
}

/* ---- added tokens ---- */

#define ADDED(id, content, extra) \
    "{\"id\": " #id ", \"content\": \"" content "\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, " \
    "\"normalized\": false, \"special\": true" extra "}"

Test(tokenizer, added_tokens_in_text) {
    spec s = {.added = "[" ADDED(257, "<s>", "") ", " ADDED(258, "<s>>", "") ", " ADDED(259, "</s>", "") "]",
              .vocab_extra = "\"ab\": 256", .merges = "[\"a b\"]"};
    tok_tokenizer *t = load_spec(s);
    expect_ids(t, "ab<s>ab", IDS(256, 257, 256));
    expect_ids(t, "a<s>>b", IDS('a', 258, 'b')); /* leftmost-longest */
    expect_ids(t, "<s><s></s>", IDS(257, 257, 259));
    expect_ids(t, "<s", IDS('<', 's'));
    expect_ids(t, "a<s >b", IDS('a', '<', 's', ' ', '>', 'b'));
    expect_round_trip(t, "x<s>y</s><s>>z");
    cr_assert_eq(tok_token_id(t, "<s>>"), 258);
    cr_assert(tok_is_special(t, 259));
    cr_assert(!tok_is_special(t, 256));
    cr_assert_str_eq(tok_token_text(t, 258), "<s>>");
    tok_free(t);
}

Test(tokenizer, added_tokens_strip) {
    const char *added = "[{\"id\": 256, \"content\": \"[M]\", \"single_word\": false, \"lstrip\": true, \"rstrip\": false, \"normalized\": false, \"special\": true},"
                        " {\"id\": 257, \"content\": \"[R]\", \"single_word\": false, \"lstrip\": false, \"rstrip\": true, \"normalized\": false, \"special\": true}]";
    tok_tokenizer *t = load_spec((spec){.added = added});
    expect_ids(t, "a  [M] b", IDS('a', 256, ' ', 'b'));
    expect_ids(t, "a[R]  b", IDS('a', 257, 'b'));
    expect_ids(t, "a\xe3\x80\x80[M]", IDS('a', 256)); /* U+3000 is white space */
    expect_ids(t, "[R] [M]", IDS(257, 256));           /* the space went to [R] */
    tok_free(t);
}

Test(tokenizer, added_tokens_single_word) {
    const char *added = "[{\"id\": 256, \"content\": \"ab\", \"single_word\": true, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": false}]";
    tok_tokenizer *t = load_spec((spec){.added = added});
    expect_ids(t, "ab cab ab", IDS(256, ' ', 'c', 'a', 'b', ' ', 256));
    expect_ids(t, "abc (ab)", IDS('a', 'b', 'c', ' ', '(', 256, ')'));
    expect_ids(t, "\xc3\xa9" "ab", IDS(0xc3, 0xa9, 'a', 'b')); /* é is a word character */
    cr_assert(!tok_is_special(t, 256));
    tok_free(t);
}

Test(tokenizer, added_tokens_normalized_after_raw) {
    /* HF matches normalized=false tokens first, then normalized=true ones in
     * what is left: "bc" wins over the leftmost "ab" */
    const char *added = "[{\"id\": 256, \"content\": \"ab\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": true, \"special\": false},"
                        " {\"id\": 257, \"content\": \"bc\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true}]";
    tok_tokenizer *t = load_spec((spec){.added = added});
    expect_ids(t, "abc", IDS('a', 257));
    expect_ids(t, "abxab", IDS(256, 'x', 256));
    tok_free(t);
}

Test(tokenizer, added_token_ids_follow_hf) {
    /* a token in the vocab takes the vocab's id; a new one the next id after
     * the vocab's size; a declared id that differs is refused */
    const char *ok = "[" ADDED(256, "ab", "") ", " ADDED(257, "<x>", "") "]";
    tok_tokenizer *t = load_spec((spec){.added = ok, .vocab_extra = "\"ab\": 256"});
    expect_ids(t, "ab<x>", IDS(256, 257));
    tok_free(t);
    expect_refused((spec){.added = "[" ADDED(300, "<x>", "") "]"}, "would give it id 256");
}

Test(tokenizer, decode) {
    const char *added = "[" ADDED(256, "<|im_start|>", "") ", " ADDED(257, G "foo", "") "]";
    tok_tokenizer *t = load_spec((spec){.added = added});
    int32_t ids[] = {256, 'h', 'i', ' ', 0xc3, 0xa9, 257};
    char *d;
    size_t n;
    oh_err e;
    cr_assert_eq(tok_decode(t, ids, 7, &d, &n, &e), 0, "%s", e.msg);
    cr_assert_str_eq(d, "<|im_start|>hi \xc3\xa9 foo"); /* Ġfoo decodes as " foo", as HF does */
    cr_assert_eq(n, strlen(d));
    free(d);
    cr_assert_eq(tok_decode(t, ids, 0, &d, &n, &e), 0);
    cr_assert_str_eq(d, "");
    free(d);
    int32_t bad[] = {'a', 999};
    cr_assert_eq(tok_decode(t, bad, 2, &d, &n, &e), -1);
    cr_assert(strstr(e.msg, "999"), "%s", e.msg);
    tok_free(t);
}

Test(tokenizer, template_tokens) {
    const char *pp = "\"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}},"
                     " {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}, {\"SpecialToken\": {\"id\": \"</s>\", \"type_id\": 0}}], \"pair\": [],"
                     " \"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [256], \"tokens\": [\"<s>\"]}, \"</s>\": {\"id\": \"</s>\", \"ids\": [257], \"tokens\": [\"</s>\"]}}}";
    tok_tokenizer *t = load_spec((spec){.added = "[" ADDED(256, "<s>", "") ", " ADDED(257, "</s>", "") "]", .top_extra = pp});
    const int32_t *pre, *post;
    size_t npre, npost;
    tok_template(t, &pre, &npre, &post, &npost);
    cr_assert(npre == 1 && pre[0] == 256 && npost == 1 && post[0] == 257);
    expect_ids(t, "x", IDS('x')); /* encode adds none */
    tok_free(t);
    t = load_spec((spec){0});
    tok_template(t, &pre, &npre, &post, &npost);
    cr_assert(npre == 0 && npost == 0);
    tok_free(t);
}

/* ---- refusals ---- */

Test(tokenizer, refuses_unsupported) {
    expect_refused((spec){.top_extra = "\"normalizer\": {\"type\": \"NFC\"}"}, "normalizer type \"NFC\"");
    expect_refused((spec){.pre = "{\"type\": \"Metaspace\", \"replacement\": \"_\"}"}, "\"Metaspace\"");
    expect_refused((spec){.pre = "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"a\"}, "
                                                  "\"behavior\": \"Removed\", \"invert\": false}, {\"type\": \"ByteLevel\"}]}"},
                   "behavior \"Removed\"");
    expect_refused((spec){.pre = "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"a\"}, "
                                                  "\"behavior\": \"Isolated\", \"invert\": true}, {\"type\": \"ByteLevel\"}]}"},
                   "invert");
    expect_refused((spec){.pre = SEQ(SPLIT("\\\\w+"))}, "\\w");
    expect_refused((spec){.pre = SEQ(SPLIT("(unclosed"))}, "does not compile");
    expect_refused((spec){.pre = "null"}, "pre_tokenizer null");
    expect_refused((spec){.pre = "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"ByteLevel\"}, " SPLIT("a") "]}"},
                   "must come");
    expect_refused((spec){.top_extra = "\"decoder\": {\"type\": \"Metaspace\"}"}, "decoder type \"Metaspace\"");
    expect_refused((spec){.top_extra = "\"post_processor\": {\"type\": \"RobertaProcessing\"}"}, "\"RobertaProcessing\"");
    expect_refused((spec){.top_extra = "\"truncation\": {\"max_length\": 5}"}, "truncation");
    expect_refused((spec){.top_extra = "\"padding\": {\"strategy\": \"BatchLongest\"}"}, "padding");
    expect_refused((spec){.missing_byte = 1 + 'q'}, "byte 0x71");
    expect_refused((spec){.merges = "[\"a b\"]"}, "\"ab\" is not in the vocabulary");
    expect_refused((spec){.merges = "[\"a b c\"]", .vocab_extra = "\"ab\": 256"}, "merges[0]");
    expect_refused((spec){.vocab_extra = "\"zz\": 65"}, "id 65");
}

/* make_json's text with one member changed */
static void expect_refused_edit(const char *from, const char *to, const char *needle) {
    char *j = make_json((spec){0});
    char *at = strstr(j, from);
    cr_assert(at, "no %s", from);
    oh_buf b = {0};
    oh_buf_put(&b, j, (size_t)(at - j));
    oh_buf_puts(&b, to);
    oh_buf_puts(&b, at + strlen(from));
    oh_err e = {{0}};
    tok_tokenizer *t = tok_load_json(b.p, b.n, "test.json", &e);
    cr_assert_null(t, "accepted %s", to);
    cr_assert(strstr(e.msg, needle) && strstr(e.msg, "test.json"), "error \"%s\" does not mention \"%s\"", e.msg, needle);
    oh_buf_free(&b);
    free(j);
}

Test(tokenizer, refuses_model_options) {
    expect_refused_edit("\"type\": \"BPE\"", "\"type\": \"WordPiece\"", "model type \"WordPiece\"");
    expect_refused_edit("\"byte_fallback\": false", "\"byte_fallback\": true", "byte_fallback");
    expect_refused_edit("\"continuing_subword_prefix\": null", "\"continuing_subword_prefix\": \"##\"", "continuing_subword_prefix");
    expect_refused_edit("\"end_of_word_suffix\": null", "\"end_of_word_suffix\": \"</w>\"", "end_of_word_suffix");
    expect_refused_edit("\"dropout\": null", "\"dropout\": 0.1", "dropout");
    expect_refused_edit("\"version\": \"1.0\"", "\"version\": \"2.0\"", "version");
}

Test(tokenizer, refuses_bad_json) {
    oh_err e;
    cr_assert_null(tok_load_json("{\"model\": ", 10, "broken.json", &e));
    cr_assert(strstr(e.msg, "broken.json"), "%s", e.msg);
    cr_assert_null(tok_load("/nonexistent/tokenizer.json", &e));
    cr_assert(strstr(e.msg, "/nonexistent/tokenizer.json"), "%s", e.msg);
}

/* ---- files ---- */

Test(tokenizer, loads_gzip_and_directories) {
    char *j = make_json((spec){.merges = HELLO_MERGES, .vocab_extra = HELLO_VOCAB});
    char *gz = tmp_path("tok.json.gz");
    write_gz(gz, j, strlen(j));
    oh_err e;
    tok_tokenizer *t = tok_load(gz, &e);
    cr_assert(t, "%s", e.msg);
    expect_ids(t, "hello", IDS(259));
    tok_free(t);
    char *dir = tmp_path("dir");
    cr_assert_eq(oh_mkdirs(dir, &e), 0);
    char *file = oh_path_join(dir, "tokenizer.json");
    cr_assert_eq(oh_write_file_atomic(file, j, strlen(j), &e), 0);
    t = tok_load(dir, &e);
    cr_assert(t, "%s", e.msg);
    expect_ids(t, "hello", IDS(259));
    tok_free(t);
    unlink(file);
    cr_assert_null(tok_load(dir, &e));
    cr_assert(strstr(e.msg, "no tokenizer.json"), "%s", e.msg);
    oh_rmtree(dir);
    unlink(gz);
    free(file); free(dir); free(gz); free(j);
}

/* ---- tiktoken ---- */

static char *b64(const char *s, size_t n) {
    static const char *A = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    oh_buf b = {0};
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)(unsigned char)s[i] << 16;
        if (i + 1 < n) v |= (uint32_t)(unsigned char)s[i + 1] << 8;
        if (i + 2 < n) v |= (unsigned char)s[i + 2];
        char o[4] = {A[v >> 18], A[(v >> 12) & 63], i + 1 < n ? A[(v >> 6) & 63] : '=', i + 2 < n ? A[v & 63] : '='};
        oh_buf_put(&b, o, 4);
    }
    return b.p;
}

/* ranks: bytes 0..255, then ab 256, bc 257, abc 258, " a" 259 */
static const char *TIK_EXTRA[] = {"ab", "bc", "abc", " a"};

static char *tiktoken_text(void) {
    oh_buf b = {0};
    for (int i = 0; i < 256; i++) {
        char c = (char)i;
        char *e = b64(&c, 1);
        oh_buf_printf(&b, "%s %d\n", e, i);
        free(e);
    }
    for (int k = 0; k < 4; k++) {
        char *e = b64(TIK_EXTRA[k], strlen(TIK_EXTRA[k]));
        oh_buf_printf(&b, "%s %d\n", e, 256 + k);
        free(e);
    }
    return b.p;
}

static void check_tiktoken(tok_tokenizer *t) {
    expect_ids(t, "abc", IDS(258));          /* a whole token */
    expect_ids(t, "abcd", IDS(258, 'd'));    /* ab, then ab+c = abc */
    expect_ids(t, "bcab", IDS(257, 256));
    expect_ids(t, "x abc", IDS('x', ' ', 258)); /* " abc": ab (256) first, then ab+c */
    expect_ids(t, "x ac", IDS('x', 259, 'c'));  /* " ac": " a" */
    expect_ids(t, "<|endoftext|>ab<|endoftext|>", IDS(1000, 256, 1000));
    expect_round_trip(t, "hello <|endoftext|> w\xc3\xb6rld 123");
    cr_assert_eq(tok_token_id(t, "<|endoftext|>"), 1000);
    cr_assert_eq(tok_token_id(t, G "a"), 259); /* the GPT-2 spelling */
    cr_assert(tok_is_special(t, 1000));
    cr_assert_eq(tok_vocab_size(t), 1001);
}

Test(tokenizer, tiktoken_rank_file) {
    char *txt = tiktoken_text();
    char *path = tmp_path("ranks.tiktoken");
    oh_err e;
    cr_assert_eq(oh_write_file_atomic(path, txt, strlen(txt), &e), 0);
    tok_special sp[] = {{"<|endoftext|>", 1000}};
    tok_tokenizer *t = tok_load_tiktoken(path, NULL, sp, 1, &e);
    cr_assert(t, "%s", e.msg);
    check_tiktoken(t);
    tok_free(t);
    /* text the pattern does not match is dropped, as tiktoken does */
    t = tok_load_tiktoken(path, "[a-z]+", sp, 1, &e);
    cr_assert(t, "%s", e.msg);
    expect_ids(t, "ab, bc!", IDS(256, 257));
    tok_free(t);
    unlink(path);
    /* gzip-compressed */
    char *gz = tmp_path("ranks.tiktoken.gz");
    write_gz(gz, txt, strlen(txt));
    t = tok_load_tiktoken(gz, NULL, sp, 1, &e);
    cr_assert(t, "%s", e.msg);
    check_tiktoken(t);
    tok_free(t);
    unlink(gz);
    free(gz); free(path); free(txt);
}

Test(tokenizer, tiktoken_npm_json) {
    /* the npm package's format: "! first_rank tok tok ...", pat_str, special_tokens */
    oh_buf b = {0};
    oh_buf_puts(&b, "{\"pat_str\": \"" TOK_CL100K_PATTERN "\", \"special_tokens\": {\"<|endoftext|>\": 1000}, \"bpe_ranks\": \"! 0");
    for (int i = 0; i < 256; i++) {
        char c = (char)i;
        char *e = b64(&c, 1);
        oh_buf_printf(&b, " %s", e);
        free(e);
    }
    oh_buf_puts(&b, "\\n! 256");
    for (int k = 0; k < 4; k++) {
        char *e = b64(TIK_EXTRA[k], strlen(TIK_EXTRA[k]));
        oh_buf_printf(&b, " %s", e);
        free(e);
    }
    oh_buf_puts(&b, "\"}");
    /* the pattern inside a C string literal has single backslashes: escape for JSON */
    oh_buf j = {0};
    const char *p = strstr(b.p, "\"pat_str\": \"") + 12, *q = strstr(b.p, "\", \"special_tokens\"");
    oh_buf_put(&j, b.p, (size_t)(p - b.p));
    for (const char *c = p; c < q; c++) {
        if (*c == '\\') oh_buf_put(&j, "\\", 1);
        oh_buf_put(&j, c, 1);
    }
    oh_buf_puts(&j, q);
    char *gz = tmp_path("ranks.json.gz");
    write_gz(gz, j.p, j.n);
    oh_err e;
    tok_tokenizer *t = tok_load_tiktoken(gz, NULL, NULL, 0, &e);
    cr_assert(t, "%s", e.msg);
    check_tiktoken(t);
    expect_ids(t, "I'M", IDS('I', '\'', 'M')); /* cl100k: (?i:'m) */
    tok_free(t);
    unlink(gz);
    free(gz);
    oh_buf_free(&b);
    oh_buf_free(&j);
}

Test(tokenizer, tiktoken_refusals) {
    char *path = tmp_path("bad.tiktoken");
    oh_err e;
    const char *bad[][2] = {{"YQ== 0\nYQ== 1\n", "appears twice"},
                            {"YQ== 0\nYg== 0\n", "rank 0 appears twice"},
                            {"YQ==\n", "line 1"},
                            {"!!!! 0\n", "base64"},
                            {"YQ== 0\n", "byte 0x00"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_assert_eq(oh_write_file_atomic(path, bad[i][0], strlen(bad[i][0]), &e), 0);
        cr_assert_null(tok_load_tiktoken(path, NULL, NULL, 0, &e), "accepted %s", bad[i][0]);
        cr_assert(strstr(e.msg, bad[i][1]) && strstr(e.msg, path), "\"%s\" lacks \"%s\"", e.msg, bad[i][1]);
    }
    unlink(path);
    free(path);
}

/* ---- batch and threads ---- */

Test(tokenizer, batch_matches_single) {
    const char *added = "[" ADDED(260, "<|im_end|>", "") "]";
    tok_tokenizer *t = load_spec((spec){.merges = HELLO_MERGES, .vocab_extra = HELLO_VOCAB, .added = added,
                                        .pre = SEQ(SPLIT(" ?\\\\p{L}+|\\\\s+"))});
    enum { N = 2000 };
    char **texts = malloc(N * sizeof *texts);
    size_t *lens = malloc(N * sizeof *lens);
    oh_rng r;
    oh_rng_seed(&r, 7);
    const char *words[] = {"hello", "hell", "he", " ", "  ", "<|im_end|>", "ll", "o", "\xc3\xa9", "\n", "x"};
    for (int i = 0; i < N; i++) {
        oh_buf b = {0};
        oh_buf_put(&b, "", 0);
        int k = (int)(oh_rng_u64(&r) % 40);
        for (int w = 0; w < k; w++) oh_buf_puts(&b, words[oh_rng_u64(&r) % 11]);
        texts[i] = b.p;
        lens[i] = b.n;
    }
    int32_t **ids = malloc(N * sizeof *ids);
    size_t *counts = malloc(N * sizeof *counts);
    oh_err e;
    cr_assert_eq(tok_encode_batch(t, (const char *const *)texts, lens, N, 4, ids, counts, &e), 0, "%s", e.msg);
    for (int i = 0; i < N; i++) {
        int32_t *one;
        size_t n;
        cr_assert_eq(tok_encode(t, texts[i], lens[i], &one, &n, &e), 0);
        cr_assert(n == counts[i] && (!n || !memcmp(one, ids[i], n * sizeof *one)), "text %d differs", i);
        free(one);
        free(ids[i]);
    }
    /* a failing text is named, and nothing is left allocated */
    free(texts[1234]);
    texts[1234] = oh_strdup("bad \xff");
    lens[1234] = 5;
    cr_assert_eq(tok_encode_batch(t, (const char *const *)texts, lens, N, 3, ids, counts, &e), -1);
    cr_assert(strstr(e.msg, "text 1234") && strstr(e.msg, "UTF-8"), "%s", e.msg);
    for (int i = 0; i < N; i++) cr_assert_null(ids[i]);
    for (int i = 0; i < N; i++) free(texts[i]);
    free(texts); free(lens); free(ids); free(counts);
    tok_free(t);
}

/* ---- the tokenize command ---- */

static int run_cmd(const char *tpath, const char *in, const char *out) {
    char *argv[] = {"--tokenizer", (char *)tpath, "--input", (char *)in, "--out", (char *)out, "--threads=2"};
    return tok_cmd_tokenize(7, argv);
}

Test(tokenizer, tokenize_command) {
    char *tp = tmp_path("cmd_tok.json"), *in = tmp_path("in.jsonl"), *out = tmp_path("out.jsonl");
    char *j = make_json((spec){.merges = HELLO_MERGES, .vocab_extra = HELLO_VOCAB, .added = "[" ADDED(260, "<|im_end|>", "") "]"});
    oh_err e;
    cr_assert_eq(oh_write_file_atomic(tp, j, strlen(j), &e), 0, "%s", e.msg);
    const char *lines = "{\"text\": \"hello<|im_end|>\\n\"}\n{\"text\": \"\"}\n{\"id\": 1, \"text\": \"hell\\u00e9\"}\n";
    cr_assert_eq(oh_write_file_atomic(in, lines, strlen(lines), &e), 0);
    cr_assert_eq(run_cmd(tp, in, out), 0);
    char *got;
    size_t n;
    cr_assert_eq(oh_read_file(out, &got, &n, &e), 0, "%s", e.msg);
    cr_assert_str_eq(got, "{\"ids\": [259,260,10]}\n{\"ids\": []}\n{\"ids\": [258,195,169]}\n");
    free(got);
    unlink(out);
    /* a malformed line stops the run, names file:line, and leaves no output */
    const char *bad = "{\"text\": \"a\"}\n{\"txt\": \"b\"}\n";
    cr_assert_eq(oh_write_file_atomic(in, bad, strlen(bad), &e), 0);
    cr_assert_eq(run_cmd(tp, in, out), 1);
    cr_assert(!oh_file_exists(out));
    char *argv[] = {"--input", in};
    cr_assert_eq(tok_cmd_tokenize(2, argv), 2);
    unlink(in);
    unlink(tp);
    free(j); free(tp); free(in); free(out);
}

/* ------------------------------------------------------------------------ */
/* parity with Hugging Face tokenizers and tiktoken                         */
/* ------------------------------------------------------------------------ */
#ifdef OH_HAVE_TOKENIZER_FIXTURES

#define TFIX OH_SOURCE_DIR "/tests/fixtures/tokenizer/"
#define REGEN "; make them with: python3 tests/fixtures/make_tokenizer_fixtures.py --ranks cl100k_base.json.gz --out tests/fixtures/tokenizer"

static void need(const char *path) {
    cr_assert(oh_file_exists(path), "missing fixture %s" REGEN, path);
}

static int32_t *json_ids(const oh_json *j, int arr, size_t *n) {
    *n = (size_t)oh_json_size(j, arr);
    int32_t *v = malloc((*n + 1) * sizeof *v);
    int i = arr + 1;
    for (size_t k = 0; k < *n; k++, i = oh_json_skip(j, i)) {
        long long x;
        cr_assert_eq(oh_json_int(j, i, &x), 0);
        v[k] = (int32_t)x;
    }
    return v;
}

/* Check every case of a cases file. key: the ids to compare with ("ids", or
 * "tiktoken_ids" falling back to "ids"). */
static void check_cases(tok_tokenizer *t, const char *cases, const char *key, bool small) {
    need(cases);
    FILE *f = fopen(cases, "r");
    cr_assert(f);
    char *line = NULL;
    size_t cap = 0, lineno = 0, bad = 0;
    ssize_t r;
    while ((r = getline(&line, &cap, f)) > 0) {
        lineno++;
        oh_json j;
        oh_err e;
        cr_assert_eq(oh_json_parse(&j, line, (size_t)r, cases, &e), 0, "%s", e.msg);
        size_t tl;
        char *text = oh_json_str(&j, oh_json_get(&j, 0, "text"), &tl);
        int arr = oh_json_get(&j, 0, key);
        if (arr < 0) arr = oh_json_get(&j, 0, "ids");
        size_t m, n;
        int32_t *want = json_ids(&j, arr, &m), *ids;
        cr_assert_eq(tok_encode(t, text, tl, &ids, &n, &e), 0, "%s:%zu: %s", cases, lineno, e.msg);
        if (n != m || (m && memcmp(ids, want, m * sizeof *ids))) {
            bad++;
            cr_log_error("%s:%zu: ids differ (%zu vs %zu expected)", cases, lineno, n, m);
        }
        char *d;
        size_t dl;
        cr_assert_eq(tok_decode(t, ids, n, &d, &dl, &e), 0, "%s", e.msg);
        size_t el;
        char *expect = small ? oh_json_str(&j, oh_json_get(&j, 0, "decoded"), &el) : NULL;
        if (!expect) { expect = oh_strndup(text, tl); el = tl; }
        if (dl != el || memcmp(d, expect, el)) { bad++; cr_log_error("%s:%zu: decode differs", cases, lineno); }
        if (small) { /* the template's tokens around the ids */
            size_t ms;
            int32_t *ws = json_ids(&j, oh_json_get(&j, 0, "ids_with_specials"), &ms);
            const int32_t *pre, *post;
            size_t npre, npost;
            tok_template(t, &pre, &npre, &post, &npost);
            bool ok = ms == npre + n + npost && !memcmp(ws, pre, npre * 4) && !memcmp(ws + npre, ids, n * 4) &&
                      !memcmp(ws + npre + n, post, npost * 4);
            if (!ok) { bad++; cr_log_error("%s:%zu: template tokens differ", cases, lineno); }
            free(ws);
        }
        free(expect); free(d); free(ids); free(want); free(text);
        oh_json_free(&j);
    }
    free(line);
    fclose(f);
    cr_assert(lineno > 0, "%s is empty", cases);
    cr_assert_eq(bad, 0, "%zu of %zu cases in %s differ (see the log)", bad, lineno, cases);
}

Test(tokenizer_parity, dolma2_hf, .timeout = 120) {
    need(TFIX "dolma2_tokenizer.json.gz");
    oh_err e;
    tok_tokenizer *t = tok_load(TFIX "dolma2_tokenizer.json.gz", &e);
    cr_assert(t, "%s", e.msg);
    cr_assert_eq(tok_vocab_size(t), 100278);
    cr_assert_eq(tok_token_id(t, "<|endoftext|>"), 100257);
    cr_assert_eq(tok_token_id(t, "<|pad|>"), 100277);
    check_cases(t, TFIX "cases.jsonl", "ids", false);
    tok_free(t);
}

Test(tokenizer_parity, dolma2_tiktoken, .timeout = 120) {
    need(TFIX "cl100k_base.json.gz");
    need(TFIX "meta.json");
    char *meta;
    size_t ml;
    oh_err e;
    cr_assert_eq(oh_read_file(TFIX "meta.json", &meta, &ml, &e), 0, "%s", e.msg);
    oh_json j;
    cr_assert_eq(oh_json_parse(&j, meta, ml, "meta.json", &e), 0, "%s", e.msg);
    int arr = oh_json_get(&j, 0, "specials");
    size_t n = (size_t)oh_json_size(&j, arr);
    tok_special *sp = calloc(n, sizeof *sp);
    for (size_t k = 0; k < n; k++) {
        int el = oh_json_at(&j, arr, (int)k);
        long long id;
        cr_assert_eq(oh_json_int(&j, oh_json_at(&j, el, 0), &id), 0);
        sp[k] = (tok_special){oh_json_str(&j, oh_json_at(&j, el, 1), NULL), (int32_t)id};
    }
    tok_tokenizer *t = tok_load_tiktoken(TFIX "cl100k_base.json.gz", NULL, sp, n, &e);
    cr_assert(t, "%s", e.msg);
    check_cases(t, TFIX "cases.jsonl", "tiktoken_ids", false);
    tok_free(t);
    for (size_t k = 0; k < n; k++) free((char *)sp[k].text);
    free(sp);
    oh_json_free(&j);
    free(meta);
}

Test(tokenizer_parity, small_hf) {
    need(TFIX "small_tokenizer.json.gz");
    oh_err e;
    tok_tokenizer *t = tok_load(TFIX "small_tokenizer.json.gz", &e);
    cr_assert(t, "%s", e.msg);
    check_cases(t, TFIX "cases_small.jsonl", "ids", true);
    tok_free(t);
}

#endif
