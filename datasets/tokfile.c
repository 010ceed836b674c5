#include "datasets/tokfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int ds_token_dtype_parse(const char *name, ds_token_dtype *out, oh_err *err) {
    if (!strcmp(name, "uint32") || !strcmp(name, "u4") || !strcmp(name, "u32")) { *out = DS_TOKEN_DTYPE_U32; return 0; }
    if (!strcmp(name, "uint16") || !strcmp(name, "u2") || !strcmp(name, "u16")) { *out = DS_TOKEN_DTYPE_U16; return 0; }
    return oh_errf(err, "unknown token dtype '%s' (expected uint32 or uint16)", name);
}

static int map_file(const char *path, void **map, size_t *len, oh_err *err) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return oh_errf(err, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) { close(fd); return oh_errf(err, "%s: %s", path, strerror(errno)); }
    *len = (size_t)st.st_size;
    *map = NULL;
    if (*len > 0) {
        void *p = mmap(NULL, *len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) { close(fd); return oh_errf(err, "%s: mmap: %s", path, strerror(errno)); }
        madvise(p, *len, MADV_SEQUENTIAL);
        *map = p;
    }
    close(fd);
    return 0;
}

/* An optional .npy header: returns the data offset (0 without a header) and
 * the descr string (e.g. "<u4") in descr. */
static int npy_header(const char *path, const uint8_t *p, size_t len, size_t *off, char descr[8], oh_err *err) {
    *off = 0;
    descr[0] = 0;
    if (len < 10 || memcmp(p, "\x93NUMPY", 6)) return 0;
    size_t hl, start;
    if (p[6] == 1) { hl = (size_t)p[8] | (size_t)p[9] << 8; start = 10; }
    else if (len >= 12) { hl = (size_t)p[8] | (size_t)p[9] << 8 | (size_t)p[10] << 16 | (size_t)p[11] << 24; start = 12; }
    else return oh_errf(err, "%s: truncated .npy header", path);
    if (start + hl > len) return oh_errf(err, "%s: truncated .npy header", path);
    char *h = oh_strndup((const char *)p + start, hl);
    int rc = 0;
    const char *d = strstr(h, "'descr'");
    if (!d || !(d = strchr(d + 7, '\'')) ) rc = oh_errf(err, "%s: .npy header has no descr", path);
    else {
        size_t k = 0;
        d++;
        while (*d && *d != '\'' && k < 7) descr[k++] = *d++;
        descr[k] = 0;
        if (strstr(h, "'fortran_order': True")) rc = oh_errf(err, "%s: .npy array in Fortran order", path);
        const char *s = strstr(h, "'shape'");
        if (!rc && s) {
            s = strchr(s, '(');
            int commas = 0, digits = 0;
            for (; s && *s && *s != ')'; s++) { commas += *s == ','; digits += *s >= '0' && *s <= '9'; }
            /* (n,) is 1-d; (a, b) is not */
            if (s && commas > 1) rc = oh_errf(err, "%s: .npy array is not 1-d", path);
            (void)digits;
        }
    }
    free(h);
    *off = start + hl;
    return rc;
}

int ds_tokfile_open(ds_tokfile *f, const char *path, ds_token_dtype dtype, const char *mask_path,
                    int64_t eos_id, int64_t vocab_size, oh_err *err) {
    memset(f, 0, sizeof *f);
    f->path = oh_strdup(path);
    if (map_file(path, &f->map, &f->map_len, err)) goto fail;
    size_t off;
    char descr[8];
    if (npy_header(path, f->map, f->map_len, &off, descr, err)) goto fail;
    if (descr[0]) {
        if (!strcmp(descr, "<u4") || !strcmp(descr, "|u4")) dtype = DS_TOKEN_DTYPE_U32;
        else if (!strcmp(descr, "<u2") || !strcmp(descr, "|u2")) dtype = DS_TOKEN_DTYPE_U16;
        else { oh_errf(err, "%s: .npy dtype '%s' is not a token dtype (expected <u4 or <u2)", path, descr); goto fail; }
    }
    f->dtype = dtype;
    size_t w = dtype == DS_TOKEN_DTYPE_U32 ? 4 : 2;
    size_t bytes = f->map_len - off;
    if (bytes % w) {
        oh_errf(err, "%s: %zu bytes of token data is not a whole number of %s tokens", path, bytes,
                w == 4 ? "uint32" : "uint16");
        goto fail;
    }
    f->data = (const uint8_t *)f->map + off;
    f->ntok = bytes / w;
    if (f->ntok == 0) { oh_errf(err, "%s: no tokens", path); goto fail; }

    if (mask_path) {
        f->mask_path = oh_strdup(mask_path);
        if (map_file(mask_path, &f->mask_map, &f->mask_map_len, err)) goto fail;
        if (npy_header(mask_path, f->mask_map, f->mask_map_len, &off, descr, err)) goto fail;
        if (descr[0] && strcmp(descr, "|u1") && strcmp(descr, "|b1") && strcmp(descr, "<u1")) {
            oh_errf(err, "%s: .npy dtype '%s' is not a mask dtype (expected |u1 or |b1)", mask_path, descr);
            goto fail;
        }
        if (f->mask_map_len - off != f->ntok) {
            oh_errf(err, "%s: %zu mask bytes for %zu tokens in %s", mask_path, f->mask_map_len - off, f->ntok, path);
            goto fail;
        }
        f->mask = (const uint8_t *)f->mask_map + off;
        for (size_t i = 0; i < f->ntok; i++)
            if (f->mask[i] > 1) {
                oh_errf(err, "%s: byte %zu is %u (a label mask holds 0 or 1)", mask_path, i + off, f->mask[i]);
                goto fail;
            }
    }

    size_t cap = 1024;
    f->doc_start = oh_malloc(sizeof(size_t) * cap);
    f->doc_start[0] = 0;
    f->ndocs = 0;
    for (size_t i = 0; i < f->ntok; i++) {
        uint32_t id = ds_tokfile_id(f, i);
        if (vocab_size > 0 && (int64_t)id >= vocab_size) {
            oh_errf(err, "%s: token %zu (byte offset %zu) is id %u, beyond the vocabulary (%lld ids)", path, i,
                    (size_t)(f->data - (const uint8_t *)f->map) + i * w, id, (long long)vocab_size);
            goto fail;
        }
        if ((eos_id >= 0 && (int64_t)id == eos_id) || i + 1 == f->ntok) {
            if (f->ndocs + 2 > cap) { cap *= 2; f->doc_start = oh_realloc(f->doc_start, sizeof(size_t) * cap); }
            f->doc_start[++f->ndocs] = i + 1;
        }
    }
    return 0;
fail:
    ds_tokfile_close(f);
    return -1;
}

void ds_tokfile_close(ds_tokfile *f) {
    if (f->map) munmap(f->map, f->map_len);
    if (f->mask_map) munmap(f->mask_map, f->mask_map_len);
    free(f->path);
    free(f->mask_path);
    free(f->doc_start);
    memset(f, 0, sizeof *f);
}
