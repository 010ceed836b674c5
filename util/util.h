/* util.h: small things every module uses.
 *
 * Errors: recoverable failures are reported through an oh_err that carries a
 * message naming the file, line, key or tensor; functions return 0 on success
 * and -1 on failure.  Broken invariants (allocation failure, a bug) abort with
 * the failing expression and file:line via OH_CHECK.
 */
#ifndef OH_UTIL_H
#define OH_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdbool.h>

typedef struct oh_err {
    char msg[1024];
} oh_err;

/* Format a message into err (may be NULL). Always returns -1 so callers can
 * write `return oh_errf(err, "...")`. */
int oh_errf(oh_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefix an existing message: "prefix: old message". Returns -1. */
int oh_err_prefix(oh_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void oh_fatal(const char *expr, const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));
#define OH_CHECK(cond, ...)                                                    \
    do { if (!(cond)) oh_fatal(#cond, __FILE__, __LINE__, "" __VA_ARGS__); } while (0)

void *oh_malloc(size_t n);            /* aborts on failure */
void *oh_calloc(size_t n, size_t sz); /* aborts on failure */
void *oh_realloc(void *p, size_t n);  /* aborts on failure */
char *oh_strdup(const char *s);
char *oh_strndup(const char *s, size_t n);
char *oh_sprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2))); /* caller frees */

/* Whole-file read; adds a NUL after the data. Caller frees *out. */
int oh_read_file(const char *path, char **out, size_t *len, oh_err *err);
bool oh_file_exists(const char *path);
bool oh_is_dir(const char *path);
/* mkdir -p */
int oh_mkdirs(const char *path, oh_err *err);
/* Write data to path atomically: path.tmp, fsync, rename, fsync dir. */
int oh_write_file_atomic(const char *path, const void *data, size_t len, oh_err *err);
/* Remove a directory tree (rm -rf). */
int oh_rmtree(const char *path);
/* Copy a file (not atomic). */
int oh_copy_file(const char *src, const char *dst, oh_err *err);
/* fsync a directory by path. */
int oh_fsync_dir(const char *path);
/* Join two path parts with '/'. Caller frees. */
char *oh_path_join(const char *a, const char *b);

double oh_time_s(void); /* monotonic seconds */

/* bf16 / fp16 conversions (round to nearest even for bf16). */
static inline float oh_bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v; v.u = (uint32_t)h << 16; return v.f;
}
static inline uint16_t oh_f32_to_bf16(float f) {
    union { uint32_t u; float f; } v; v.f = f;
    if ((v.u & 0x7f800000u) == 0x7f800000u && (v.u & 0x7fffffu)) return (uint16_t)((v.u >> 16) | 0x40); /* NaN */
    uint32_t r = 0x7fffu + ((v.u >> 16) & 1u);
    return (uint16_t)((v.u + r) >> 16);
}
float oh_f16_to_f32(uint16_t h);
uint16_t oh_f32_to_f16(float f);

/* UTF-8 encoding of code point cp (<= 0x10FFFF) into o; returns 1..4 bytes. */
int oh_utf8_put(char *o, uint32_t cp);

/* ---- deterministic RNG (xoshiro256**), seedable, state serialisable ---- */
typedef struct oh_rng { uint64_t s[4]; } oh_rng;
void oh_rng_seed(oh_rng *r, uint64_t seed);
uint64_t oh_rng_u64(oh_rng *r);
double oh_rng_uniform(oh_rng *r);        /* [0, 1) */
double oh_rng_normal(oh_rng *r);         /* N(0, 1) */

#endif
