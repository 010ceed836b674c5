/* tokfile.h: pre-tokenized token files as OLMo-core writes them for
 * continued pretraining: one flat little-endian array of uint32 or uint16
 * token ids, memory-mapped, never copied.
 *
 * A file may also carry a NumPy .npy header ("\x93NUMPY"); its dtype ('<u4',
 * '<u2') then wins over the configured one and must be 1-d, C order.
 * Documents: the stream is split after every EOS id (the EOS belongs to the
 * document it ends); text after the last EOS is a last document. Empty
 * documents cannot occur (two EOS in a row give a one-token document).
 * Optional label mask: a second file with one byte per token (0 = not
 * trained, 1 = trained; .npy '|u1' or '|b1' accepted), same length.
 * Every id is checked against the vocabulary at open: an id >= vocab_size is
 * an error naming the file, the token index and its byte offset.
 */
#ifndef DS_TOKFILE_H
#define DS_TOKFILE_H

#include <stddef.h>
#include <stdint.h>
#include "util/util.h"

typedef enum ds_token_dtype {
    DS_TOKEN_DTYPE_U32,
    DS_TOKEN_DTYPE_U16,
} ds_token_dtype;

/* "uint32"/"u4"/"uint16"/"u2" */
int ds_token_dtype_parse(const char *name, ds_token_dtype *out, oh_err *err);

typedef struct ds_tokfile {
    char *path, *mask_path;
    ds_token_dtype dtype;
    const uint8_t *data;     /* first token */
    size_t ntok;
    const uint8_t *mask;     /* [ntok] or NULL: every token trained */
    size_t *doc_start;       /* [ndocs + 1] token offsets; doc_start[ndocs] == ntok */
    size_t ndocs;
    void *map, *mask_map;    /* mmap bases */
    size_t map_len, mask_map_len;
} ds_tokfile;

/* Map path (and mask_path unless NULL), check ids < vocab_size, find the
 * documents. eos_id < 0: the whole file is one document. */
int ds_tokfile_open(ds_tokfile *f, const char *path, ds_token_dtype dtype, const char *mask_path,
                    int64_t eos_id, int64_t vocab_size, oh_err *err);
void ds_tokfile_close(ds_tokfile *f);

static inline uint32_t ds_tokfile_id(const ds_tokfile *f, size_t i) {
    const uint8_t *p = f->data + i * (f->dtype == DS_TOKEN_DTYPE_U32 ? 4 : 2);
    return f->dtype == DS_TOKEN_DTYPE_U32 ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24
                                           : (uint32_t)p[0] | (uint32_t)p[1] << 8;
}
static inline int ds_tokfile_trained(const ds_tokfile *f, size_t i) { return f->mask ? f->mask[i] != 0 : 1; }

#endif
