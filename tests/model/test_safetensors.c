#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/safetensors.h"

static char *tmpdir(void) {
    char *d = strdup("/tmp/oh_test_st_XXXXXX");
    cr_assert(mkdtemp(d));
    return d;
}

/* write a raw file: 8-byte header length, header text, data bytes */
static void write_raw(const char *path, const char *header, size_t hlen_claim, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    uint64_t h = hlen_claim;
    fwrite(&h, 8, 1, f);
    fwrite(header, 1, strlen(header), f);
    if (n) fwrite(data, 1, n, f);
    fclose(f);
}

Test(safetensors, round_trip_dtypes) {
    char *d = tmpdir();
    float a[6] = {1.5f, -2.25f, 3.0f, 0.1f, 1e-3f, -7.0f};
    st_entry e[3] = {
        {.name = "a.f32", .dtype = ST_F32, .ndim = 2, .shape = {2, 3}, .data = a},
        {.name = "b.bf16", .dtype = ST_BF16, .ndim = 1, .shape = {6}, .data = a},
        {.name = "c.f16", .dtype = ST_F16, .ndim = 3, .shape = {1, 2, 3}, .data = a},
    };
    char *p = oh_sprintf("%s/x.safetensors", d);
    oh_err err;
    cr_assert_eq(st_save(p, e, 3, "{\"format\":\"pt\"}", &err), 0, "%s", err.msg);
    st_archive ar;
    cr_assert_eq(st_open(&ar, p, &err), 0, "%s", err.msg);
    cr_assert_eq(ar.ntensors, 3);
    float out[6];
    const st_tensor *t = st_find(&ar, "a.f32");
    cr_assert(t && t->ndim == 2 && t->shape[1] == 3);
    st_read_f32(&ar, t, out, &err);
    cr_assert_eq(memcmp(out, a, sizeof a), 0);
    st_read_f32(&ar, st_find(&ar, "b.bf16"), out, &err);
    for (int i = 0; i < 6; i++) cr_assert_eq(out[i], oh_bf16_to_f32(oh_f32_to_bf16(a[i])));
    st_read_f32(&ar, st_find(&ar, "c.f16"), out, &err);
    for (int i = 0; i < 6; i++) cr_assert_float_eq(out[i], a[i], 1e-3 * (1 + a[i] * a[i]));
    cr_assert_null(st_find(&ar, "nope"));
    st_close(&ar);
    /* sharded with an index */
    cr_assert_eq(st_save_sharded(d, e, 3, 16, true, &err), 0, "%s", err.msg);
    cr_assert_eq(st_open(&ar, d, &err), 0, "%s", err.msg);
    cr_assert_eq(ar.ntensors, 3);
    cr_assert_eq(ar.nfiles, 3);
    st_close(&ar);
    oh_rmtree(d);
    free(p); free(d);
}

Test(safetensors, malformed_headers_are_refused_with_names) {
    char *d = tmpdir();
    char *p = oh_sprintf("%s/bad.safetensors", d);
    float data[4] = {0};
    struct { const char *header; long claim; size_t ndata; const char *needle; } cases[] = {
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", -1, 8, "beyond the end"},      /* truncated data */
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 1000000, 16, "truncated"},    /* header length lies */
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 200000000, 16, "100 MB"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}", -1, 16, "JSON"},
        {"{\"w\":{\"dtype\":\"Q4\",\"shape\":[4],\"data_offsets\":[0,16]}}", -1, 16, "unknown dtype"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}", -1, 16, "shape x dtype"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"v\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", -1, 16, "overlap"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", -1, 16, "twice"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[-4],\"data_offsets\":[0,16]}}", -1, 16, "shape"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[4]}}", -1, 16, "data_offsets"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t hl = strlen(cases[i].header);
        write_raw(p, cases[i].header, cases[i].claim < 0 ? hl : (size_t)cases[i].claim, data, cases[i].ndata);
        st_archive ar;
        oh_err err = {{0}};
        cr_expect_eq(st_open(&ar, p, &err), -1, "case %zu accepted", i);
        cr_expect(strstr(err.msg, cases[i].needle), "case %zu: '%s' lacks '%s'", i, err.msg, cases[i].needle);
        cr_expect(strstr(err.msg, "bad.safetensors"), "case %zu: message does not name the file: %s", i, err.msg);
        if (i != 1 && i != 2 && i != 3 && i != 7)
            cr_expect(strstr(err.msg, "tensor w") || strstr(err.msg, "tensors w"), "case %zu: no tensor name: %s", i, err.msg);
    }
    /* an empty file */
    FILE *f = fopen(p, "wb");
    fclose(f);
    st_archive ar;
    oh_err err;
    cr_expect_eq(st_open(&ar, p, &err), -1);
    cr_expect(strstr(err.msg, "truncated"), "%s", err.msg);
    oh_rmtree(d);
    free(p); free(d);
}

Test(safetensors, index_inconsistent_with_shards) {
    char *d = tmpdir();
    float a[2] = {1, 2};
    st_entry e[2] = {{.name = "x", .dtype = ST_F32, .ndim = 1, .shape = {2}, .data = a},
                     {.name = "y", .dtype = ST_F32, .ndim = 1, .shape = {2}, .data = a}};
    oh_err err;
    cr_assert_eq(st_save_sharded(d, e, 2, 8, true, &err), 0, "%s", err.msg);
    char *idx = oh_sprintf("%s/model.safetensors.index.json", d);
    /* the index claims a tensor that no shard holds */
    FILE *f = fopen(idx, "w");
    fprintf(f, "{\"weight_map\": {\"x\": \"model-00001-of-00002.safetensors\", \"y\": \"model-00002-of-00002.safetensors\","
               " \"z\": \"model-00002-of-00002.safetensors\"}}");
    fclose(f);
    st_archive ar;
    cr_assert_eq(st_open(&ar, d, &err), -1);
    cr_expect(strstr(err.msg, "tensor z"), "%s", err.msg);
    /* a shard holds a tensor the index does not list */
    f = fopen(idx, "w");
    fprintf(f, "{\"weight_map\": {\"x\": \"model-00001-of-00002.safetensors\"}}");
    fclose(f);
    cr_assert_eq(st_open(&ar, d, &err), 0, "%s", err.msg); /* only shard 1 is opened: consistent */
    st_close(&ar);
    f = fopen(idx, "w");
    fprintf(f, "{\"weight_map\": {\"x\": \"model-00002-of-00002.safetensors\", \"y\": \"model-00002-of-00002.safetensors\"}}");
    fclose(f);
    cr_assert_eq(st_open(&ar, d, &err), -1);
    cr_expect(strstr(err.msg, "tensor x"), "%s", err.msg);
    /* a missing shard file */
    f = fopen(idx, "w");
    fprintf(f, "{\"weight_map\": {\"x\": \"model-00009-of-00009.safetensors\"}}");
    fclose(f);
    cr_assert_eq(st_open(&ar, d, &err), -1);
    cr_expect(strstr(err.msg, "model-00009-of-00009.safetensors"), "%s", err.msg);
    oh_rmtree(d);
    free(idx); free(d);
}
