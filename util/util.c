#include "util/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int oh_errf(oh_err *err, const char *fmt, ...) {
    if (!err) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return -1;
}

int oh_err_prefix(oh_err *err, const char *fmt, ...) {
    if (!err) return -1;
    char pre[512], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    snprintf(err->msg, sizeof err->msg, "%s: %s", pre, old);
    return -1;
}

void oh_fatal(const char *expr, const char *file, int line, const char *fmt, ...) {
    fprintf(stderr, "fatal: %s:%d: check failed: %s", file, line, expr);
    if (fmt && *fmt) {
        va_list ap;
        va_start(ap, fmt);
        fputs(": ", stderr);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
    }
    fputc('\n', stderr);
    abort();
}

void *oh_malloc(size_t n) {
    void *p = malloc(n ? n : 1);
    OH_CHECK(p, "out of memory allocating %zu bytes", n);
    return p;
}
void *oh_calloc(size_t n, size_t sz) {
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    OH_CHECK(p, "out of memory allocating %zu x %zu bytes", n, sz);
    return p;
}
void *oh_realloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    OH_CHECK(q, "out of memory reallocating %zu bytes", n);
    return q;
}
char *oh_strdup(const char *s) { return oh_strndup(s, strlen(s)); }
char *oh_strndup(const char *s, size_t n) {
    char *p = oh_malloc(n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}
char *oh_sprintf(const char *fmt, ...) {
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *p = oh_malloc((size_t)n + 1);
    vsnprintf(p, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return p;
}

int oh_read_file(const char *path, char **out, size_t *len, oh_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return oh_errf(err, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = oh_malloc(cap + 1);
    for (;;) {
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (n < cap) break;
        cap *= 2;
        buf = oh_realloc(buf, cap + 1);
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) { free(buf); return oh_errf(err, "%s: read error", path); }
    buf[n] = 0;
    *out = buf;
    if (len) *len = n;
    return 0;
}

bool oh_file_exists(const char *path) { struct stat st; return stat(path, &st) == 0; }
bool oh_is_dir(const char *path) { struct stat st; return stat(path, &st) == 0 && S_ISDIR(st.st_mode); }

int oh_mkdirs(const char *path, oh_err *err) {
    char *p = oh_strdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            int e = errno; free(p);
            return oh_errf(err, "%s: cannot create directory: %s", path, strerror(e));
        }
        *s = '/';
    }
    if (mkdir(p, 0755) != 0 && errno != EEXIST) {
        int e = errno; free(p);
        return oh_errf(err, "%s: cannot create directory: %s", path, strerror(e));
    }
    free(p);
    return 0;
}

int oh_fsync_dir(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return -1;
    int r = fsync(fd);
    close(fd);
    return r;
}

static char *dirname_of(const char *path) {
    const char *s = strrchr(path, '/');
    if (!s) return oh_strdup(".");
    if (s == path) return oh_strdup("/");
    return oh_strndup(path, (size_t)(s - path));
}

int oh_write_file_atomic(const char *path, const void *data, size_t len, oh_err *err) {
    char *tmp = oh_sprintf("%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) { int e = errno; free(tmp); return oh_errf(err, "%s: cannot create: %s", path, strerror(e)); }
    const char *p = data;
    size_t left = len;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            int e = errno; close(fd); unlink(tmp); free(tmp);
            return oh_errf(err, "%s: write failed: %s", path, strerror(e));
        }
        p += w; left -= (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        int e = errno; unlink(tmp); free(tmp);
        return oh_errf(err, "%s: fsync failed: %s", path, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno; unlink(tmp); free(tmp);
        return oh_errf(err, "%s: rename failed: %s", path, strerror(e));
    }
    free(tmp);
    char *d = dirname_of(path);
    oh_fsync_dir(d);
    free(d);
    return 0;
}

int oh_rmtree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR(st.st_mode)) return unlink(path);
    DIR *d = opendir(path);
    if (!d) return -1;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *sub = oh_path_join(path, e->d_name);
        if (oh_rmtree(sub) != 0) rc = -1;
        free(sub);
    }
    closedir(d);
    if (rmdir(path) != 0) rc = -1;
    return rc;
}

int oh_copy_file(const char *src, const char *dst, oh_err *err) {
    char *buf; size_t n;
    if (oh_read_file(src, &buf, &n, err) != 0) return -1;
    FILE *f = fopen(dst, "wb");
    if (!f) { free(buf); return oh_errf(err, "%s: cannot create: %s", dst, strerror(errno)); }
    size_t w = fwrite(buf, 1, n, f);
    int bad = (w != n) | (fclose(f) != 0);
    free(buf);
    return bad ? oh_errf(err, "%s: write failed", dst) : 0;
}

char *oh_path_join(const char *a, const char *b) {
    size_t la = strlen(a);
    if (la && a[la - 1] == '/') return oh_sprintf("%s%s", a, b);
    return oh_sprintf("%s/%s", a, b);
}

double oh_time_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

float oh_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    union { uint32_t u; float f; } v;
    if (exp == 0) {
        float m = ldexpf((float)man, -24);
        return sign ? -m : m;
    } else if (exp == 31) {
        v.u = sign | 0x7f800000u | (man << 13);
    } else {
        v.u = sign | ((exp + 112) << 23) | (man << 13);
    }
    return v.f;
}

uint16_t oh_f32_to_f16(float f) {
    union { uint32_t u; float f; } v; v.f = f;
    uint32_t sign = (v.u >> 16) & 0x8000;
    float a = fabsf(f);
    if (isnan(f)) return (uint16_t)(sign | 0x7e00);
    if (a >= 65520.0f) return (uint16_t)(sign | 0x7c00);
    if (a < 6.103515625e-05f) { /* subnormal */
        uint32_t m = (uint32_t)lrintf(a * 16777216.0f);
        return (uint16_t)(sign | m);
    }
    uint32_t u = v.u & 0x7fffffff;
    uint32_t r = u + 0xfff + ((u >> 13) & 1);
    return (uint16_t)(sign | (((r >> 23) - 112) << 10) | ((r >> 13) & 0x3ff));
}

static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
void oh_rng_seed(oh_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix(&seed);
}
static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
uint64_t oh_rng_u64(oh_rng *r) {
    uint64_t *s = r->s;
    uint64_t res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t; s[3] = rotl(s[3], 45);
    return res;
}
double oh_rng_uniform(oh_rng *r) { return (double)(oh_rng_u64(r) >> 11) * 0x1.0p-53; }
double oh_rng_normal(oh_rng *r) {
    double u1 = oh_rng_uniform(r), u2 = oh_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

int oh_utf8_put(char *o, uint32_t cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xc0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3f)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}
