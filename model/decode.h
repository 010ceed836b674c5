/* decode.h: the recurrent decode path for generation: per GDN layer the
 * last K-1 pre-conv inputs of q, k, v and the state S [Hv, K, V]; per
 * attention layer a KV cache. One token at a time, on the CPU. */
#ifndef OH_DECODE_H
#define OH_DECODE_H
#include "model/model.h"

typedef struct oh_decoder oh_decoder;

/* Adapters are not applied here: merge them into the weights first. */
oh_decoder *oh_decoder_new(const oh_model *m, int max_tokens);
void oh_decoder_free(oh_decoder *d);
/* Feed one token; logits[vocab] of the next-token distribution. -1 when the
 * cache is full or the id is out of range. */
int oh_decoder_step(oh_decoder *d, int32_t token, float *logits, oh_err *err);

typedef struct oh_sample_cfg {
    double temperature;  /* 0: greedy */
    double top_p;        /* 1: off */
    uint64_t seed;
} oh_sample_cfg;
/* Pick the next token from logits. */
int32_t oh_sample(const float *logits, int V, const oh_sample_cfg *c, oh_rng *r);
#endif
