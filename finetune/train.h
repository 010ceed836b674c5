/* train.h: the training run of a recipe (finetune RECIPE.toml) and the
 * export of its results. */
#ifndef OH_TRAIN_H
#define OH_TRAIN_H
#include "finetune/checkpoint.h"
#include "finetune/recipe.h"

/* Run the recipe end to end. resume: continue from the newest checkpoint
 * in output.dir. Returns 0, or -1 with err. */
int train_run(const recipe *r, bool resume, oh_err *err);

/* Copy the tokenizer files found at tok_path (a tokenizer.json or a dir)
 * into dir. */
int export_tokenizer_files(const char *tok_path, const char *dir, oh_err *err);
/* Write `final`: an HF checkpoint (full) or a PEFT adapter (LoRA, with the
 * merged checkpoint in merged_dir when that is not NULL; this merges the
 * adapter into m). */
int export_run(oh_model *m, oh_lora *lo, const char *base_model, const char *tok_path, const char *dir,
               const char *merged_dir, int st_dtype, double shard_gb, oh_err *err);

struct ds_config;
struct ds_source;
struct ds_template;
int train_data_config(const recipe *r, const char *tok_path, int64_t vocab_size, struct ds_config *dc,
                      struct ds_source *src, struct ds_template *tmpl, bool *have_tmpl, oh_err *err);

int cmd_train(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_generate(int argc, char **argv);
#endif
