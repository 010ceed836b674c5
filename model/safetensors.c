#include "model/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/json.h"

static const char *dtype_names[ST_NDTYPES] = {"F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8",
                                              "U8",  "BOOL", "U16", "U32", "U64", "F8_E4M3", "F8_E5M2"};
static const size_t dtype_sizes[ST_NDTYPES] = {8, 4, 2, 2, 8, 4, 2, 1, 1, 1, 2, 4, 8, 1, 1};

const char *st_dtype_name(st_dtype d) { return (unsigned)d < ST_NDTYPES ? dtype_names[d] : "?"; }
size_t st_dtype_size(st_dtype d) { return (unsigned)d < ST_NDTYPES ? dtype_sizes[d] : 0; }
int st_dtype_parse(const char *s, st_dtype *out) {
    for (int i = 0; i < ST_NDTYPES; i++)
        if (!strcmp(s, dtype_names[i])) { *out = (st_dtype)i; return 0; }
    return -1;
}

#define ST_MAX_HEADER (100u << 20) /* 100 MB, as the reference implementation */

static int map_file(st_file *f, const char *path, oh_err *err) {
    memset(f, 0, sizeof *f);
    f->path = oh_strdup(path);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return oh_errf(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) { close(fd); return oh_errf(err, "%s: cannot stat: %s", path, strerror(errno)); }
    f->size = (size_t)st.st_size;
    if (f->size > 0) {
        void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) { close(fd); return oh_errf(err, "%s: mmap failed: %s", path, strerror(errno)); }
        f->map = m;
    }
    close(fd);
    return 0;
}

static void unmap_file(st_file *f) {
    if (f->map) munmap(f->map, f->size);
    free(f->path);
    memset(f, 0, sizeof *f);
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

typedef struct { size_t b, e; int idx; } range_t;
static int cmp_range(const void *a, const void *b) {
    const range_t *x = a, *y = b;
    return x->b < y->b ? -1 : x->b > y->b ? 1 : (x->e < y->e ? -1 : x->e > y->e);
}

/* Parse and validate one file's header; append its tensors to a. */
static int parse_header(st_archive *a, int fi, oh_err *err) {
    st_file *f = &a->files[fi];
    const char *path = f->path;
    if (f->size < 8) return oh_errf(err, "%s: truncated: %zu bytes, too short for a safetensors header", path, f->size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | f->map[i];
    if (hlen > ST_MAX_HEADER) return oh_errf(err, "%s: header length %llu exceeds the 100 MB bound", path, (unsigned long long)hlen);
    if (hlen + 8 > f->size)
        return oh_errf(err, "%s: truncated: header says %llu bytes but the file has %zu", path,
                       (unsigned long long)hlen, f->size - 8);
    const char *h = (const char *)f->map + 8;
    size_t data_off = 8 + (size_t)hlen, data_len = f->size - data_off;
    oh_json j;
    char *what = oh_sprintf("%s (header)", path);
    int rc = oh_json_parse(&j, h, (size_t)hlen, what, err);
    free(what);
    if (rc) return -1;
    rc = -1;
    if (oh_json_type(&j, 0) != JSMN_OBJECT) { oh_errf(err, "%s: header is not a JSON object", path); goto out; }
    int nmem = oh_json_size(&j, 0), i = 1;
    int first = a->ntensors;
    a->tensors = oh_realloc(a->tensors, sizeof(st_tensor) * (size_t)(a->ntensors + nmem));
    for (int m = 0; m < nmem; m++) {
        int key = i, val = i + 1;
        i = oh_json_skip(&j, val);
        size_t kn; char *name = oh_json_str(&j, key, &kn);
        if (!strcmp(name, "__metadata__")) {
            if (oh_json_type(&j, val) != JSMN_OBJECT) { oh_errf(err, "%s: __metadata__ is not an object", path); free(name); goto out; }
            free(name);
            continue;
        }
        st_tensor *t = &a->tensors[a->ntensors];
        memset(t, 0, sizeof *t);
        t->name = name;
        t->file = fi;
        a->ntensors++;
        if (oh_json_type(&j, val) != JSMN_OBJECT) { oh_errf(err, "%s: tensor %s: entry is not an object", path, name); goto out; }
        int dt = oh_json_get(&j, val, "dtype"), sh = oh_json_get(&j, val, "shape"), of = oh_json_get(&j, val, "data_offsets");
        if (dt < 0 || sh < 0 || of < 0) { oh_errf(err, "%s: tensor %s: needs dtype, shape and data_offsets", path, name); goto out; }
        char *dts = oh_json_str(&j, dt, NULL);
        if (!dts || st_dtype_parse(dts, &t->dtype)) {
            const char *p; int n; oh_json_raw(&j, dt, &p, &n);
            oh_errf(err, "%s: tensor %s: unknown dtype %.*s", path, name, n, p);
            free(dts);
            goto out;
        }
        free(dts);
        if (oh_json_type(&j, sh) != JSMN_ARRAY || oh_json_size(&j, sh) > ST_MAX_DIMS) {
            oh_errf(err, "%s: tensor %s: shape must be a list of at most %d integers", path, name, ST_MAX_DIMS); goto out;
        }
        t->ndim = oh_json_size(&j, sh);
        t->numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            long long v;
            if (oh_json_int(&j, oh_json_at(&j, sh, d), &v) || v < 0 || v > (1ll << 40)) {
                oh_errf(err, "%s: tensor %s: shape[%d] is not a valid size", path, name, d); goto out;
            }
            t->shape[d] = v;
            t->numel *= v;
            if (t->numel > (1ll << 40)) { oh_errf(err, "%s: tensor %s: too many elements", path, name); goto out; }
        }
        long long b, e;
        if (oh_json_type(&j, of) != JSMN_ARRAY || oh_json_size(&j, of) != 2 || oh_json_int(&j, oh_json_at(&j, of, 0), &b) ||
            oh_json_int(&j, oh_json_at(&j, of, 1), &e) || b < 0 || e < b) {
            oh_errf(err, "%s: tensor %s: data_offsets must be [begin, end] with 0 <= begin <= end", path, name); goto out;
        }
        size_t want = (size_t)t->numel * st_dtype_size(t->dtype);
        if ((size_t)(e - b) != want) {
            oh_errf(err, "%s: tensor %s: shape x dtype is %zu bytes but data_offsets span %lld", path, name, want, e - b);
            goto out;
        }
        if ((size_t)e > data_len) {
            oh_errf(err, "%s: tensor %s: data [%lld, %lld) lies beyond the end of the file (data section %zu bytes; truncated?)",
                    path, name, b, e, data_len);
            goto out;
        }
        t->data = f->map + data_off + b;
        t->nbytes = want;
    }
    /* overlap check within this file */
    int nt = a->ntensors - first;
    range_t *r = oh_malloc(sizeof(range_t) * (size_t)(nt ? nt : 1));
    for (int k = 0; k < nt; k++) {
        st_tensor *t = &a->tensors[first + k];
        r[k].b = (size_t)(t->data - (f->map + data_off));
        r[k].e = r[k].b + t->nbytes;
        r[k].idx = first + k;
    }
    qsort(r, (size_t)nt, sizeof *r, cmp_range);
    for (int k = 1; k < nt; k++)
        if (r[k].b < r[k - 1].e && r[k].e > r[k].b) {
            oh_errf(err, "%s: tensors %s and %s overlap in the data section", path, a->tensors[r[k - 1].idx].name,
                    a->tensors[r[k].idx].name);
            free(r);
            goto out;
        }
    free(r);
    rc = 0;
out:
    oh_json_free(&j);
    return rc;
}

static int open_index(st_archive *a, const char *index_path, oh_err *err) {
    char *text; size_t len;
    if (oh_read_file(index_path, &text, &len, err)) return -1;
    oh_json j;
    int rc = -1;
    char **shard_of = NULL, **names = NULL;
    int nmap = 0;
    if (oh_json_parse(&j, text, len, index_path, err)) { free(text); return -1; }
    int wm = oh_json_get(&j, 0, "weight_map");
    if (wm < 0 || oh_json_type(&j, wm) != JSMN_OBJECT) { oh_errf(err, "%s: no \"weight_map\" object", index_path); goto out; }
    char *slash = strrchr(index_path, '/');
    char *dir = slash ? oh_strndup(index_path, (size_t)(slash - index_path)) : oh_strdup(".");
    nmap = oh_json_size(&j, wm);
    shard_of = oh_calloc((size_t)nmap, sizeof(char *));
    names = oh_calloc((size_t)nmap, sizeof(char *));
    int i = wm + 1;
    for (int m = 0; m < nmap; m++) {
        names[m] = oh_json_str(&j, i, NULL);
        char *file = oh_json_str(&j, i + 1, NULL);
        i = oh_json_skip(&j, i + 1);
        if (!file || strchr(file, '/')) {
            oh_errf(err, "%s: weight_map[%s] must be a file name in the same directory", index_path, names[m]);
            free(file); free(dir); goto out;
        }
        /* open each shard once */
        int fi = -1;
        for (int k = 0; k < a->nfiles; k++) {
            const char *base = strrchr(a->files[k].path, '/');
            if (!strcmp(base ? base + 1 : a->files[k].path, file)) { fi = k; break; }
        }
        if (fi < 0) {
            char *p = oh_path_join(dir, file);
            a->files = oh_realloc(a->files, sizeof(st_file) * (size_t)(a->nfiles + 1));
            fi = a->nfiles++;
            int r = map_file(&a->files[fi], p, err);
            if (r == 0) r = parse_header(a, fi, err);
            free(p);
            if (r) { oh_err_prefix(err, "shard listed in %s", index_path); free(file); free(dir); goto out; }
        }
        shard_of[m] = file;
    }
    free(dir);
    qsort(a->tensors, (size_t)a->ntensors, sizeof(st_tensor), cmp_tensor_name);
    for (int k = 1; k < a->ntensors; k++)
        if (!strcmp(a->tensors[k].name, a->tensors[k - 1].name)) {
            oh_errf(err, "tensor %s appears twice (in %s and %s)", a->tensors[k].name, a->files[a->tensors[k - 1].file].path,
                    a->files[a->tensors[k].file].path);
            goto out;
        }
    for (int m = 0; m < nmap; m++) {
        const st_tensor *t = st_find(a, names[m]);
        if (!t) { oh_errf(err, "%s: tensor %s is listed in the index but not in %s", index_path, names[m], shard_of[m]); goto out; }
        const char *base = strrchr(a->files[t->file].path, '/');
        if (strcmp(base ? base + 1 : a->files[t->file].path, shard_of[m])) {
            oh_errf(err, "%s: tensor %s is listed in %s but found in %s", index_path, names[m], shard_of[m], a->files[t->file].path);
            goto out;
        }
    }
    if (a->ntensors != nmap) {
        for (int k = 0; k < a->ntensors; k++) {
            int found = 0;
            for (int m = 0; m < nmap && !found; m++) found = !strcmp(names[m], a->tensors[k].name);
            if (!found) {
                oh_errf(err, "%s: tensor %s in %s is not listed in the index", index_path, a->tensors[k].name,
                        a->files[a->tensors[k].file].path);
                goto out;
            }
        }
    }
    rc = 0;
out:
    for (int m = 0; m < nmap; m++) { if (names) free(names[m]); if (shard_of) free(shard_of[m]); }
    free(names); free(shard_of);
    oh_json_free(&j);
    free(text);
    return rc;
}

int st_open(st_archive *a, const char *path, oh_err *err) {
    memset(a, 0, sizeof *a);
    int rc;
    if (oh_is_dir(path)) {
        char *idx = oh_path_join(path, "model.safetensors.index.json");
        char *one = oh_path_join(path, "model.safetensors");
        if (oh_file_exists(idx)) rc = open_index(a, idx, err);
        else if (oh_file_exists(one)) rc = st_open(a, one, err);
        else rc = oh_errf(err, "%s: no model.safetensors or model.safetensors.index.json", path);
        free(idx); free(one);
        if (rc) st_close(a);
        return rc;
    }
    size_t n = strlen(path);
    if (n > 5 && !strcmp(path + n - 5, ".json")) {
        rc = open_index(a, path, err);
    } else {
        a->files = oh_calloc(1, sizeof(st_file));
        a->nfiles = 1;
        rc = map_file(&a->files[0], path, err);
        if (rc == 0) rc = parse_header(a, 0, err);
        if (rc == 0) {
            qsort(a->tensors, (size_t)a->ntensors, sizeof(st_tensor), cmp_tensor_name);
            for (int k = 1; k < a->ntensors; k++)
                if (!strcmp(a->tensors[k].name, a->tensors[k - 1].name)) {
                    rc = oh_errf(err, "%s: tensor %s appears twice in the header", path, a->tensors[k].name);
                    break;
                }
        }
    }
    if (rc) st_close(a);
    return rc;
}

void st_close(st_archive *a) {
    for (int i = 0; i < a->ntensors; i++) free(a->tensors[i].name);
    free(a->tensors);
    for (int i = 0; i < a->nfiles; i++) unmap_file(&a->files[i]);
    free(a->files);
    memset(a, 0, sizeof *a);
}

const st_tensor *st_find(const st_archive *a, const char *name) {
    st_tensor key = {.name = (char *)name};
    return bsearch(&key, a->tensors, (size_t)a->ntensors, sizeof(st_tensor), cmp_tensor_name);
}

int st_read_f32(const st_archive *a, const st_tensor *t, float *out, oh_err *err) {
    const uint8_t *p = t->data;
    size_t n = (size_t)t->numel;
    switch (t->dtype) {
    case ST_F32: memcpy(out, p, n * 4); break;
    case ST_BF16: for (size_t i = 0; i < n; i++) out[i] = oh_bf16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8))); break;
    case ST_F16: for (size_t i = 0; i < n; i++) out[i] = oh_f16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8))); break;
    case ST_F64: for (size_t i = 0; i < n; i++) { double d; memcpy(&d, p + 8 * i, 8); out[i] = (float)d; } break;
    default:
        return oh_errf(err, "%s: tensor %s has dtype %s, expected a float type", a->files[t->file].path, t->name,
                       st_dtype_name(t->dtype));
    }
    return 0;
}

/* ---------------- writing ---------------- */

static size_t entry_bytes(const st_entry *e) {
    size_t n = 1;
    for (int d = 0; d < e->ndim; d++) n *= (size_t)e->shape[d];
    return n * st_dtype_size(e->dtype);
}

static int write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0) { if (errno == EINTR) continue; return -1; }
        c += w; n -= (size_t)w;
    }
    return 0;
}

int st_save(const char *path, const st_entry *e, int n, const char *metadata_json, oh_err *err) {
    for (int i = 0; i < n; i++)
        if (e[i].dtype != ST_F32 && e[i].dtype != ST_BF16 && e[i].dtype != ST_F16)
            return oh_errf(err, "%s: tensor %s: can only write F32, BF16 or F16", path, e[i].name);
    oh_buf h = {0};
    oh_buf_puts(&h, "{");
    if (metadata_json) oh_buf_printf(&h, "\"__metadata__\":%s", metadata_json);
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        size_t nb = entry_bytes(&e[i]);
        if (metadata_json || i) oh_buf_puts(&h, ",");
        oh_buf_json_str(&h, e[i].name, strlen(e[i].name));
        oh_buf_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", st_dtype_name(e[i].dtype));
        for (int d = 0; d < e[i].ndim; d++) oh_buf_printf(&h, "%s%lld", d ? "," : "", (long long)e[i].shape[d]);
        oh_buf_printf(&h, "],\"data_offsets\":[%zu,%zu]}", off, off + nb);
        off += nb;
    }
    oh_buf_puts(&h, "}");
    while (h.n % 8) oh_buf_puts(&h, " "); /* align the data section */
    char *tmp = oh_sprintf("%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) { oh_buf_free(&h); free(tmp); return oh_errf(err, "%s: cannot create: %s", path, strerror(errno)); }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)h.n >> (8 * i));
    int bad = write_all(fd, len8, 8) || write_all(fd, h.p, h.n);
    oh_buf_free(&h);
    size_t cap = 1 << 20;
    uint8_t *chunk = oh_malloc(cap * 4);
    for (int i = 0; i < n && !bad; i++) {
        size_t cnt = entry_bytes(&e[i]) / st_dtype_size(e[i].dtype);
        for (size_t s = 0; s < cnt && !bad; s += cap) {
            size_t m = cnt - s < cap ? cnt - s : cap;
            const float *src = e[i].data + s;
            if (e[i].dtype == ST_F32) {
                bad = write_all(fd, src, m * 4);
            } else {
                for (size_t k = 0; k < m; k++) {
                    uint16_t v = e[i].dtype == ST_BF16 ? oh_f32_to_bf16(src[k]) : oh_f32_to_f16(src[k]);
                    chunk[2 * k] = (uint8_t)v; chunk[2 * k + 1] = (uint8_t)(v >> 8);
                }
                bad = write_all(fd, chunk, m * 2);
            }
        }
    }
    free(chunk);
    if (!bad) bad = fsync(fd) != 0;
    if (close(fd) != 0) bad = 1;
    if (!bad) bad = rename(tmp, path) != 0;
    if (bad) {
        int e2 = errno;
        unlink(tmp); free(tmp);
        return oh_errf(err, "%s: write failed: %s", path, strerror(e2));
    }
    free(tmp);
    char *slash = strrchr(path, '/');
    char *dir = slash ? oh_strndup(path, (size_t)(slash - path)) : oh_strdup(".");
    oh_fsync_dir(dir);
    free(dir);
    return 0;
}

int st_save_sharded(const char *dir, const st_entry *e, int n, size_t max_shard_bytes, bool force_index, oh_err *err) {
    int *shard = oh_malloc(sizeof(int) * (size_t)(n ? n : 1));
    int nshards = 0;
    size_t cur = 0, total = 0;
    for (int i = 0; i < n; i++) {
        size_t b = entry_bytes(&e[i]);
        if (nshards == 0 || (cur > 0 && cur + b > max_shard_bytes)) { nshards++; cur = 0; }
        shard[i] = nshards - 1;
        cur += b;
        total += b;
    }
    int rc = 0;
    if (nshards <= 1 && !force_index) {
        char *p = oh_path_join(dir, "model.safetensors");
        rc = st_save(p, e, n, "{\"format\":\"pt\"}", err);
        free(p);
        free(shard);
        return rc;
    }
    oh_buf idx = {0};
    oh_buf_printf(&idx, "{\n  \"metadata\": {\"total_size\": %zu},\n  \"weight_map\": {\n", total);
    for (int s = 0; s < nshards && rc == 0; s++) {
        int first = -1, cnt = 0;
        for (int i = 0; i < n; i++) if (shard[i] == s) { if (first < 0) first = i; cnt++; }
        char *fname = oh_sprintf("model-%05d-of-%05d.safetensors", s + 1, nshards);
        char *p = oh_path_join(dir, fname);
        rc = st_save(p, e + first, cnt, "{\"format\":\"pt\"}", err);
        for (int i = first; i < first + cnt; i++) {
            oh_buf_puts(&idx, "    ");
            oh_buf_json_str(&idx, e[i].name, strlen(e[i].name));
            oh_buf_printf(&idx, ": \"%s\"%s\n", fname, i == n - 1 ? "" : ",");
        }
        free(p); free(fname);
    }
    oh_buf_puts(&idx, "  }\n}\n");
    if (rc == 0) {
        char *p = oh_path_join(dir, "model.safetensors.index.json");
        rc = oh_write_file_atomic(p, idx.p, idx.n, err);
        free(p);
    }
    oh_buf_free(&idx);
    free(shard);
    return rc;
}
