/* commands.h: the verbs of the finetune CLI and small argument helpers. */
#ifndef OH_COMMANDS_H
#define OH_COMMANDS_H
#include <stdbool.h>
#include <stdint.h>
#include "util/util.h"

struct oh_model;
int cmd_inspect(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_grads(int argc, char **argv);
int cmd_init(int argc, char **argv);

/* L = mean over the n sequences of each one's mean next-token loss; its
 * gradient is accumulated into grads (model->nfloats floats). */
int oh_compute_grads(const struct oh_model *m, const int32_t *const *ids, const int *lens, int n, float *grads,
                     float *loss, oh_err *err);

const char *cli_opt(int argc, char **argv, const char *name);
bool cli_flag(int argc, char **argv, const char *name);
int cli_check(int argc, char **argv, const char *cmd, const char *const *known, int npos, oh_err *err);
#endif
