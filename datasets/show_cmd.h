/* show_cmd.h: `finetune tokenize --recipe R.toml --show N` prints the first N
 * packed micro-batches the loader would give the trainer, decoded, so a user
 * can check the chat template and the label mask before training.
 *
 * For each micro-batch: a header line (documents, tokens, trained tokens),
 * then every document under a "--- document i/n: origin ---" line, its text
 * decoded run by run. Trained tokens (those that are a target) are shown
 * underlined and green when `out` is a terminal, else wrapped in [[ ]].
 * Padding is summarised on one line. Without a decode function, ids are
 * printed instead of text.
 */
#ifndef DS_SHOW_CMD_H
#define DS_SHOW_CMD_H

#include <stdio.h>
#include "datasets/dataset.h"

/* Build a loader from cfg + tok and print its first n training micro-batches
 * (n <= 0: 1) to out, then the data summary. color: -1 = when out is a tty,
 * 0 = never (brackets), 1 = always. */
int ds_cmd_show(const ds_config *cfg, const ds_tokenizer *tok, int n, FILE *out, int color, oh_err *err);

/* Print one batch (used by ds_cmd_show; the loader supplies origins). */
void ds_show_batch(const ds_loader *ld, const ds_batch *b, FILE *out, bool color);
/* Print the loader's summary: records, skipped (with the first message),
 * dropped, truncated, split, units and tokens of train and eval. */
void ds_show_stats(const ds_loader *ld, FILE *out);

#endif
