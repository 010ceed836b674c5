/* reader.h: streaming record readers for JSON datasets, through libarchive.
 *
 * One reader walks one path and yields records: one JSON object each, parsed
 * with oh_json, with its origin for messages ("file:line", or for a member
 * of a tar archive "archive.tar:member.jsonl:line"). Nothing is extracted to
 * disk; memory holds one record at a time.
 *
 * What a path may be (decided by its name):
 *   x.jsonl / x.ndjson / x.json           plain text
 *   any of those + .gz .zst .xz .bz2 .lz4 compressed (libarchive filters)
 *   x.tar / x.tar.gz / x.tgz / x.tar.zst / x.tar.xz / x.tar.bz2
 *                                         a tar whose regular-file members
 *                                         named like the above are read in
 *                                         archive order (other members and
 *                                         macOS "._" files are passed over)
 * The content decides between the two JSON layouts, whatever the extension
 * says (many ".json" files on the Hub are JSON lines): a first non-space byte
 * '[' means one top-level array of objects, anything else means one object
 * per line. Blank lines are ignored; a UTF-8 byte-order mark and a '\r'
 * before '\n' are accepted. A record's line is the line where it starts.
 *
 * Malformed records (invalid JSON, not an object) give "origin: what is
 * wrong". With DS_BAD_STOP the reader returns -1 with that message; with
 * DS_BAD_SKIP it counts the record, keeps the first message, and goes on.
 * Errors that leave no way to continue (an unreadable file, a broken archive,
 * a JSON array whose commas/brackets are wrong) always stop.
 */
#ifndef DS_READER_H
#define DS_READER_H

#include <stdbool.h>
#include <stddef.h>
#include "util/json.h"
#include "util/util.h"

typedef enum ds_bad_policy {
    DS_BAD_POLICY_STOP,  /* a malformed record is an error */
    DS_BAD_POLICY_SKIP,  /* skip it and count it */
} ds_bad_policy;

/* "stop" / "skip" */
int ds_bad_policy_parse(const char *name, ds_bad_policy *out, oh_err *err);

typedef struct ds_reader ds_reader;

/* One record. Everything points into the reader and stays valid until the
 * next ds_reader_next or ds_reader_close. */
typedef struct ds_record {
    oh_json json;        /* parsed; token 0 is the object */
    const char *text;    /* the record's JSON text (json.src) */
    size_t len;
    const char *origin;  /* "file:line" or "archive:member:line" */
    const char *source;  /* origin without ":line" */
    long line;           /* 1-based line where the record starts */
} ds_record;

/* Open path. Fails (naming the path) when it cannot be opened or its name
 * is not one of the layouts above. */
int ds_reader_open(ds_reader **out, const char *path, ds_bad_policy policy, oh_err *err);
/* Next record: 1 when *rec was filled, 0 at the end, -1 on error. */
int ds_reader_next(ds_reader *r, ds_record *rec, oh_err *err);
/* Records skipped under DS_BAD_POLICY_SKIP so far, and the first message
 * ("" when none). */
long ds_reader_skipped(const ds_reader *r);
const char *ds_reader_first_skip(const ds_reader *r);
void ds_reader_close(ds_reader *r);

/* True when the path's name says it is a tar archive. */
bool ds_path_is_tar(const char *path);
/* True when the name (after removing a compression suffix) ends in .jsonl,
 * .ndjson or .json. */
bool ds_path_is_json(const char *path);

#endif
