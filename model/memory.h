/* memory.h: what a run needs, estimated before anything is allocated, so a
 * run that cannot fit is refused with a message that says what to change. */
#ifndef OH_MEMORY_H
#define OH_MEMORY_H
#include <stddef.h>
#include "model/config.h"

typedef struct oh_mem_estimate {
    size_t weights;      /* bf16 working weights (GPU) */
    size_t master;       /* fp32 master weights (full fine-tuning) */
    size_t grads;        /* gradients */
    size_t optimizer;    /* Adam moments */
    size_t adapters;     /* LoRA weights + grads + moments */
    size_t activations;  /* with per-layer activation checkpointing */
    size_t total;
} oh_mem_estimate;

size_t oh_config_param_count(const oh_config *c);
/* Parameters of LoRA rank r on every linear layer (all-linear). */
size_t oh_lora_param_count(const oh_config *c, int rank);
/* Estimates for one GPU, one sequence of T tokens. lora_rank 0 = full FT. */
oh_mem_estimate oh_memory_estimate(const oh_config *c, int lora_rank, int T);
/* "12.3 GiB" */
const char *oh_fmt_bytes(size_t b, char *buf, size_t n);
#endif
