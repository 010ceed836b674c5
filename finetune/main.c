/* finetune: the command-line entry point. */
#include <stdio.h>
#include <string.h>

#include "finetune/commands.h"
#include "finetune/recipe.h"
#include "finetune/train.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: finetune RECIPE.toml [--set key=value ...] [--resume]\n"
            "       finetune --help-recipe\n"
            "       finetune export CHECKPOINT_DIR --out DIR [--merge] [--dtype bf16|f32]\n"
            "       finetune generate --model DIR [--adapter DIR] --prompt TEXT [--chat] [--max-new-tokens N]\n"
            "                [--temperature T] [--top-p P] [--seed S]\n"
            "       finetune tokenize --tokenizer PATH --input IN.jsonl --out OUT.jsonl [--threads N]\n"
            "       finetune inspect MODEL_DIR [--seq-len T] [--lora-rank R]\n"
            "       finetune logits --model DIR --input IDS.jsonl --out OUT.safetensors [--backend cpu]\n"
            "       finetune grads  --model DIR --input IDS.jsonl --out OUT.safetensors [--backend cpu]\n"
            "       finetune init (--preset NAME | --config FILE) --out DIR [--seed N] [--dtype bf16|f32]\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *verb = argv[1];
    if (!strcmp(verb, "inspect")) return cmd_inspect(argc - 2, argv + 2);
    if (!strcmp(verb, "logits")) return cmd_logits(argc - 2, argv + 2);
    if (!strcmp(verb, "grads")) return cmd_grads(argc - 2, argv + 2);
    if (!strcmp(verb, "init")) return cmd_init(argc - 2, argv + 2);
    if (!strcmp(verb, "export")) return cmd_export(argc - 2, argv + 2);
    if (!strcmp(verb, "generate")) return cmd_generate(argc - 2, argv + 2);
    if (!strcmp(verb, "tokenize")) return cmd_tokenize(argc - 2, argv + 2);
    if (!strcmp(verb, "--help-recipe")) { recipe_print_help(stdout); return 0; }
    size_t n = strlen(verb);
    if (n > 5 && !strcmp(verb + n - 5, ".toml")) return cmd_train(argc - 1, argv + 1);
    fprintf(stderr, "error: unknown command '%s'\n", verb);
    usage(stderr);
    return 2;
}
