/* toml.h: TOML 1.0 documents (recipes) as a tree of values.
 *
 * toml_parse reads a whole document into a tree of toml_value nodes whose
 * root is a TOML_TABLE. The whole of TOML 1.0 is accepted: comments,
 * bare/quoted/dotted keys, the four string forms with every escape, integers
 * (decimal, 0x, 0o, 0b, underscores), floats (exponents, inf, nan), booleans,
 * date-times, arrays (mixed types, trailing commas, newlines and comments
 * inside), inline tables, [tables] and [[arrays of tables]]. The rules are
 * enforced: no key or table defined twice, no inline table or static array
 * extended afterwards, no value redefined as a table, and so on.
 *
 * Date-times (offset or local date-time, local date, local time) are checked
 * against RFC 3339 (month lengths, leap years, a leap second :60 allowed;
 * seconds required, as in TOML 1.0) but not interpreted: they keep their
 * source text, with type TOML_DATETIME.
 *
 * Newlines may be LF or CRLF; a CRLF inside a multi-line string is read as LF.
 *
 * Positions: every node remembers the line and column (both 1-based; columns
 * count Unicode code points, a tab counts one) where it was written, and every
 * table entry the position of its key, so later checks can say
 * "recipe.toml:12:5: train.lr must be > 0". Line 0 means the node did not come
 * from a document (toml_set_path, the toml_new_* constructors).
 *
 * Errors are returned as -1 with an oh_err message of the form
 * "file:line:column: what is wrong", naming the key where one is involved.
 *
 * Ownership: a table owns its keys and values, an array its items; toml_free
 * frees a whole subtree. Strings are UTF-8 and NUL-terminated; `len` counts
 * their bytes (a string written with \u0000 holds a NUL byte).
 *
 * Tables keep their keys in insertion (document) order; lookup is linear,
 * which is what recipe-sized tables need.
 */
#ifndef OH_TOML_H
#define OH_TOML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "util/util.h"

typedef enum toml_type {
    TOML_TABLE,
    TOML_ARRAY,
    TOML_STRING,
    TOML_INT,      /* int64_t */
    TOML_FLOAT,    /* double */
    TOML_BOOL,
    TOML_DATETIME, /* source text in u.str */
} toml_type;

typedef struct toml_value toml_value;

/* One key of a table. */
typedef struct toml_entry {
    char *key;          /* UTF-8, unescaped, NUL-terminated */
    size_t key_len;     /* bytes of key */
    int line, col;      /* where the key was written (the last part of a dotted key) */
    toml_value *value;  /* owned by the table */
} toml_entry;

struct toml_value {
    toml_type type;
    int line, col; /* where the value was written: its first character, the '['
                      of a [table] header or of the first [[array]] header;
                      tables made by dotted keys or as parents of a header: the
                      key that made them */
    union {
        struct { toml_entry *entries; size_t n, cap; } table;  /* TOML_TABLE */
        struct { toml_value **items; size_t n, cap; } array;   /* TOML_ARRAY */
        struct { char *s; size_t len; } str;                   /* TOML_STRING, TOML_DATETIME */
        int64_t i;                                             /* TOML_INT */
        double f;                                              /* TOML_FLOAT */
        bool b;                                                /* TOML_BOOL */
    } u;
    unsigned flags; /* parser bookkeeping; private to toml.c */
};

/* ---- parsing ---- */

/* Parse a whole document of len bytes (text need not be NUL-terminated; a
 * leading UTF-8 byte-order mark is skipped). `filename` names the source in
 * messages (NULL: "<toml>"). On success *out is a TOML_TABLE the caller frees
 * with toml_free; on failure *out is NULL and err says
 * "filename:line:column: what is wrong". */
int toml_parse(const char *text, size_t len, const char *filename, toml_value **out, oh_err *err);
/* Read and parse the file at path; messages name path. */
int toml_parse_file(const char *path, toml_value **out, oh_err *err);
/* Free a value and everything below it (NULL is fine). */
void toml_free(toml_value *v);

/* ---- lookup and iteration ---- */

/* "table", "array", "string", "integer", "float", "boolean", "datetime". */
const char *toml_type_name(toml_type t);

/* The value of key in table, or NULL (also when table is NULL or not a table).
 * key is one key, not a dotted path. */
toml_value *toml_get(const toml_value *table, const char *key);
/* The value at a key path below root, or NULL. The path is written like a
 * TOML dotted key ("train.lr", "a.\"b.c\".d", spaces around dots allowed) and
 * a part may be followed by array indices: "data.mix[1].weight", "m[0][2]". */
toml_value *toml_get_path(const toml_value *root, const char *path);

/* Entries of a table or items of an array; 0 for scalars and NULL. */
size_t toml_len(const toml_value *v);
/* The i-th entry of a table in insertion order, or NULL (not a table, i out
 * of range). */
const toml_entry *toml_table_entry(const toml_value *table, size_t i);
/* The i-th item of an array, or NULL. */
toml_value *toml_array_item(const toml_value *array, size_t i);

/* Typed reads: 0 and *out on success, -1 (nothing written) when v is NULL or
 * of another type. toml_as_float accepts an integer too (converted). */
int toml_as_int(const toml_value *v, int64_t *out);
int toml_as_float(const toml_value *v, double *out);
int toml_as_bool(const toml_value *v, bool *out);
/* The text of a string or date-time, or NULL. Owned by v. */
const char *toml_as_str(const toml_value *v);

/* ---- building and changing ---- */

/* New nodes (line 0). The caller owns them until they are placed in a table
 * or array. toml_new_string copies len bytes of s, which should be UTF-8
 * (toml_dump writes the bytes as they are). */
toml_value *toml_new_table(void);
toml_value *toml_new_array(void);
toml_value *toml_new_string(const char *s, size_t len);
toml_value *toml_new_int(int64_t i);
toml_value *toml_new_float(double f);
toml_value *toml_new_bool(bool b);
/* Put v under key in table, taking ownership of v. An existing value of that
 * key is freed and replaced in place (its position in the key order is kept);
 * otherwise the key is appended. table must be a TOML_TABLE. */
void toml_table_set(toml_value *table, const char *key, toml_value *v);
/* Append v to array, taking ownership. array must be a TOML_ARRAY. */
void toml_array_push(toml_value *array, toml_value *v);

/* Command-line override (`--set key.path=value`): set the value at `path`
 * (syntax of toml_get_path) below root, a TOML_TABLE. value_text is parsed
 * as one TOML value ("1e-5", "true", "\"text\"", "[1, 2]", "{a = 1}",
 * "1979-05-27"), surrounding spaces ignored; text that is not a TOML value
 * is taken as a plain string, so "model.path=/data/x" sets the string
 * "/data/x". Missing intermediate tables are created; an existing value is
 * replaced, keeping its place in key order. An index may name an existing
 * item or the position just past the end (append). The new nodes have line 0.
 * Fails (-1, err names the path) on a malformed path, a path that goes
 * through a value that is not a table or array, an index out of range, or
 * value_text that is not valid UTF-8. */
int toml_set_path(toml_value *root, const char *path, const char *value_text, oh_err *err);

/* ---- writing and comparing ---- */

/* The tree as TOML text (caller frees). For a table: its plain values as
 * `key = value` lines, then its sub-tables as [headers] and arrays whose items
 * are all tables as [[headers]]; tables inside other arrays become inline
 * tables; key order is kept within each of these groups. Floats are written
 * with the fewest digits that read back to the same double. Parsing the
 * result gives a tree that toml_equal calls equal. For a value that is not a
 * table: the value as it would follow `key = `. */
char *toml_dump(const toml_value *root);

/* Deep equality: same types; same integers, booleans and string bytes;
 * floats equal as doubles (nan equals nan); date-times with the same text;
 * arrays item by item; tables with the same keys and equal values, whatever
 * their order. Positions are ignored. */
bool toml_equal(const toml_value *a, const toml_value *b);

#endif
