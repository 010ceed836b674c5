/* safetensors.h: reading and writing the safetensors format, one file or
 * shards listed in model.safetensors.index.json.
 *
 * Reading maps the files (mmap) and validates every header before any tensor
 * is used: bounded header size, well-formed JSON, known dtype, shape x dtype
 * size equal to the byte range, ranges inside the file and not overlapping,
 * no duplicate names (also across shards), index and shards consistent.
 * Errors name the file and the tensor.
 *
 * Writing goes to a temporary file that is fsynced and renamed into place.
 */
#ifndef OH_SAFETENSORS_H
#define OH_SAFETENSORS_H

#include <stdint.h>
#include "util/util.h"

typedef enum st_dtype {
    ST_F64, ST_F32, ST_F16, ST_BF16, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_BOOL,
    ST_U16, ST_U32, ST_U64, ST_F8_E4M3, ST_F8_E5M2, ST_NDTYPES
} st_dtype;

const char *st_dtype_name(st_dtype d);
size_t st_dtype_size(st_dtype d);
int st_dtype_parse(const char *s, st_dtype *out); /* -1 if unknown */

#define ST_MAX_DIMS 8

typedef struct st_tensor {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;
    const uint8_t *data; /* inside the mapping */
    size_t nbytes;
    int file;            /* index into st_archive.files */
} st_tensor;

typedef struct st_file {
    char *path;
    uint8_t *map;
    size_t size;
} st_file;

typedef struct st_archive {
    st_file *files;
    int nfiles;
    st_tensor *tensors; /* sorted by name */
    int ntensors;
} st_archive;

/* Open PATH: a .safetensors file, a model.safetensors.index.json, or a
 * directory holding either (index preferred). */
int st_open(st_archive *a, const char *path, oh_err *err);
void st_close(st_archive *a);
const st_tensor *st_find(const st_archive *a, const char *name);
/* Convert a float tensor (F32/BF16/F16/F64) to f32 into out[numel]. */
int st_read_f32(const st_archive *a, const st_tensor *t, float *out, oh_err *err);

/* ---- writing ---- */
typedef struct st_entry {
    const char *name;
    st_dtype dtype;      /* dtype written to disk: F32, BF16 or F16 (converted from data) */
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const float *data;   /* f32 values, numel of them */
} st_entry;

/* One file; metadata is an optional JSON object text for "__metadata__"
 * (string values only), or NULL. */
int st_save(const char *path, const st_entry *e, int n, const char *metadata_json, oh_err *err);
/* Shards of at most max_shard_bytes (data bytes) named
 * model-0000i-of-0000N.safetensors in dir, plus model.safetensors.index.json;
 * a single model.safetensors when everything fits in one shard and
 * force_index is false. */
int st_save_sharded(const char *dir, const st_entry *e, int n, size_t max_shard_bytes, bool force_index, oh_err *err);

#endif
