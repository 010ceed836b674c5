/* json.h: JSON reading on top of jsmn (strict mode), and a growable byte
 * buffer with JSON string escaping for writing.
 *
 * A parsed document keeps pointers into the caller's source text, which must
 * outlive it. Token indices are ints; -1 means "not there".
 */
#ifndef OH_JSON_H
#define OH_JSON_H

#define JSMN_HEADER
#define JSMN_STRICT
#define JSMN_PARENT_LINKS /* without it jsmn is quadratic on large objects (tokenizer.json) */
#include <jsmn.h>
#include "util/util.h"

typedef struct oh_json {
    const char *src;
    size_t len;
    jsmntok_t *tok;
    int ntok;
} oh_json;

/* Parse a whole document. `what` names the source in error messages (a file
 * name, or "file:line"). Trailing non-space text is an error. */
int oh_json_parse(oh_json *j, const char *src, size_t len, const char *what, oh_err *err);
void oh_json_free(oh_json *j);

int oh_json_type(const oh_json *j, int i);          /* JSMN_OBJECT, ... */
int oh_json_skip(const oh_json *j, int i);          /* index just after the subtree at i */
int oh_json_get(const oh_json *j, int obj, const char *key); /* value index or -1 */
int oh_json_size(const oh_json *j, int i);          /* members of an object / array */
/* i-th element of an array (O(n)); -1 if out of range. */
int oh_json_at(const oh_json *j, int arr, int idx);
bool oh_json_is_null(const oh_json *j, int i);
bool oh_json_is_str(const oh_json *j, int i);
/* Compare a string token (unescaped) against s. */
bool oh_json_eq(const oh_json *j, int i, const char *s);
/* Unescaped string value (\uXXXX and surrogate pairs to UTF-8); caller frees.
 * Returns NULL if token i is not a string. *n receives the byte length
 * (strings may hold NUL bytes). */
char *oh_json_str(const oh_json *j, int i, size_t *n);
int oh_json_num(const oh_json *j, int i, double *out);   /* -1 if not a number */
int oh_json_int(const oh_json *j, int i, long long *out); /* -1 if not an integer */
int oh_json_bool(const oh_json *j, int i, bool *out);    /* -1 if not true/false */
/* Raw text of token i (for messages). */
void oh_json_raw(const oh_json *j, int i, const char **p, int *n);

/* ---- writing ---- */
typedef struct oh_buf { char *p; size_t n, cap; } oh_buf;
void oh_buf_put(oh_buf *b, const void *data, size_t n);
void oh_buf_puts(oh_buf *b, const char *s);
void oh_buf_printf(oh_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void oh_buf_json_str(oh_buf *b, const char *s, size_t n); /* quoted, escaped */
void oh_buf_free(oh_buf *b);

#endif
