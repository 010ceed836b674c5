/* bench_tokenizer: encoding speed of datasets/tokenizer (standalone, not in
 * CMake). Build from the repository root, after building libohcore.a (or list
 * the sources):
 *
 *   cc -O2 -std=c11 -D_GNU_SOURCE -I. bench/bench_tokenizer.c datasets/tokenizer.c \
 *      util/util.c util/json.c -lpcre2-8 -lz -lpthread -lm -o build/bench_tokenizer
 *   ./build/bench_tokenizer TOKENIZER TEXT_FILE [THREADS]
 *
 * TOKENIZER: a tokenizer.json (or .gz, or a directory); a path ending in
 * .tiktoken or cl100k_base.json[.gz] is read as tiktoken ranks. The text is cut
 * into documents of about 4 KB at line ends. Prints one-thread MB/s with a cold
 * and a warm BPE cache, and tok_encode_batch's MB/s on THREADS threads. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/tokenizer.h"

static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s TOKENIZER TEXT_FILE [THREADS]\n", argv[0]);
        return 2;
    }
    int threads = argc > 3 ? atoi(argv[3]) : 0;
    oh_err err;
    double t0 = oh_time_s();
    bool tik = ends_with(argv[1], ".tiktoken") || strstr(argv[1], "cl100k_base.json");
    tok_tokenizer *tok = tik ? tok_load_tiktoken(argv[1], NULL, NULL, 0, &err) : tok_load(argv[1], &err);
    if (!tok) { fprintf(stderr, "error: %s\n", err.msg); return 1; }
    double t_load = oh_time_s() - t0;
    char *text;
    size_t len;
    if (oh_read_file(argv[2], &text, &len, &err)) { fprintf(stderr, "error: %s\n", err.msg); return 1; }

    size_t ndoc = 0, cap = 1024;
    const char **docs = malloc(cap * sizeof *docs);
    size_t *lens = malloc(cap * sizeof *lens);
    for (size_t a = 0; a < len;) {
        size_t b = a + 4096 < len ? a + 4096 : len;
        while (b < len && text[b - 1] != '\n') b++;
        if (ndoc == cap) {
            cap *= 2;
            docs = realloc(docs, cap * sizeof *docs);
            lens = realloc(lens, cap * sizeof *lens);
        }
        docs[ndoc] = text + a;
        lens[ndoc++] = b - a;
        a = b;
    }
    printf("tokenizer %s: loaded in %.2f s, vocab %d\n", argv[1], t_load, tok_vocab_size(tok));
    printf("text %s: %.2f MB in %zu documents\n", argv[2], (double)len / 1e6, ndoc);

    for (int pass = 0; pass < 2; pass++) {
        size_t ntok = 0;
        double t = oh_time_s();
        for (size_t i = 0; i < ndoc; i++) {
            int32_t *ids;
            size_t n;
            if (tok_encode(tok, docs[i], lens[i], &ids, &n, &err)) { fprintf(stderr, "error: %s\n", err.msg); return 1; }
            ntok += n;
            free(ids);
        }
        t = oh_time_s() - t;
        printf("1 thread, %s cache: %.2f MB/s, %.2f M tokens/s (%.2f bytes/token)\n", pass ? "warm" : "cold",
               (double)len / t / 1e6, (double)ntok / t / 1e6, (double)len / (double)ntok);
    }
    int32_t **ids = malloc(ndoc * sizeof *ids);
    size_t *counts = malloc(ndoc * sizeof *counts);
    double t = oh_time_s();
    if (tok_encode_batch(tok, docs, lens, ndoc, threads, ids, counts, &err)) { fprintf(stderr, "error: %s\n", err.msg); return 1; }
    t = oh_time_s() - t;
    for (size_t i = 0; i < ndoc; i++) free(ids[i]);
    printf("batch, %d threads (0 = all CPUs): %.2f MB/s\n", threads, (double)len / t / 1e6);
    free(ids); free(counts); free(docs); free(lens); free(text);
    tok_free(tok);
    return 0;
}
