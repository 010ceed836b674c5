/* finetune RECIPE.toml | export | generate */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/dataset.h"
#include "datasets/show_cmd.h"
#include "datasets/tokenizer.h"
#include "finetune/commands.h"
#include "finetune/train.h"
#include "model/decode.h"
#include "model/safetensors.h"

int cmd_train(int argc, char **argv) {
    /* argv[0] is the recipe */
    const char *path = NULL;
    const char **sets = oh_calloc((size_t)argc + 1, sizeof(char *));
    int nsets = 0;
    bool resume = false;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--set") && i + 1 < argc) sets[nsets++] = argv[++i];
        else if (!strncmp(argv[i], "--set=", 6)) sets[nsets++] = argv[i] + 6;
        else if (!strcmp(argv[i], "--resume")) resume = true;
        else if (argv[i][0] == '-') { fprintf(stderr, "error: unknown option '%s'\n", argv[i]); free(sets); return 2; }
        else if (!path) path = argv[i];
        else { fprintf(stderr, "error: unexpected argument '%s'\n", argv[i]); free(sets); return 2; }
    }
    recipe r;
    oh_err err;
    int rc = recipe_load(&r, path, sets, nsets, &err);
    free(sets);
    if (rc) { fprintf(stderr, "error: %s\n", err.msg); return 2; }
    if (train_run(&r, resume, &err)) { fprintf(stderr, "error: %s\n", err.msg); return 1; }
    return 0;
}

int cmd_export(int argc, char **argv) {
    static const char *const known[] = {"--out=", "--merge", "--dtype=", NULL};
    oh_err err;
    if (cli_check(argc, argv, "export", known, 1, &err)) { fprintf(stderr, "error: %s\n", err.msg); return 2; }
    const char *ck = NULL, *out = cli_opt(argc, argv, "--out"), *dt = cli_opt(argc, argv, "--dtype");
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--out") || !strcmp(argv[i], "--dtype")) { i++; continue; }
        if (argv[i][0] != '-') ck = argv[i];
    }
    bool merge = cli_flag(argc, argv, "--merge");
    if (!ck || !out) {
        fprintf(stderr, "usage: finetune export CHECKPOINT_DIR --out DIR [--merge] [--dtype bf16|f32]\n");
        return 2;
    }
    ckpt_state st;
    if (ckpt_read_state(ck, &st, &err)) { fprintf(stderr, "error: %s\n", err.msg); return 1; }
    bool lora = !strcmp(st.method, "lora");
    oh_model m;
    /* full: the checkpoint itself is a loadable model (config.json + fp32 weights) */
    if (oh_model_load(&m, lora ? st.base_model : ck, &err)) { fprintf(stderr, "error: %s\n", err.msg); return 1; }
    oh_lora lo;
    if (lora && oh_lora_load_peft(&lo, &m, ck, &err)) { fprintf(stderr, "error: %s\n", err.msg); oh_model_free(&m); return 1; }
    if (!lora && merge) fprintf(stderr, "note: --merge applies to LoRA checkpoints; this one is a full fine-tune\n");
    char *merged = lora && merge ? oh_sprintf("%s-merged", out) : NULL;
    int rc = export_run(&m, lora ? &lo : NULL, st.base_model, st.tokenizer[0] ? st.tokenizer : NULL, out, merged,
                        dt && !strcmp(dt, "f32") ? ST_F32 : ST_BF16, 5.0, &err);
    if (rc) fprintf(stderr, "error: %s\n", err.msg);
    else printf("wrote %s%s%s (from step %ld)\n", out, merged ? " and " : "", merged ? merged : "", st.step);
    free(merged);
    if (lora) oh_lora_free(&lo);
    oh_model_free(&m);
    return rc ? 1 : 0;
}

int cmd_generate(int argc, char **argv) {
    static const char *const known[] = {"--model=", "--adapter=", "--prompt=", "--chat", "--max-new-tokens=", "--temperature=",
                                        "--top-p=", "--seed=", "--tokenizer=", NULL};
    oh_err err;
    if (cli_check(argc, argv, "generate", known, 0, &err)) { fprintf(stderr, "error: %s\n", err.msg); return 2; }
    const char *dir = cli_opt(argc, argv, "--model"), *prompt = cli_opt(argc, argv, "--prompt");
    const char *adapter = cli_opt(argc, argv, "--adapter"), *tokp = cli_opt(argc, argv, "--tokenizer");
    if (!dir || !prompt) {
        fprintf(stderr, "usage: finetune generate --model DIR [--adapter DIR] --prompt TEXT [--chat] [--max-new-tokens N]\n"
                        "                         [--temperature T] [--top-p P] [--seed S] [--tokenizer PATH]\n");
        return 2;
    }
    bool chat = cli_flag(argc, argv, "--chat");
    int max_new = cli_opt(argc, argv, "--max-new-tokens") ? atoi(cli_opt(argc, argv, "--max-new-tokens")) : 64;
    oh_sample_cfg sc = {.temperature = cli_opt(argc, argv, "--temperature") ? atof(cli_opt(argc, argv, "--temperature")) : 0.0,
                        .top_p = cli_opt(argc, argv, "--top-p") ? atof(cli_opt(argc, argv, "--top-p")) : 1.0,
                        .seed = cli_opt(argc, argv, "--seed") ? strtoull(cli_opt(argc, argv, "--seed"), NULL, 10) : 0};
    oh_model m;
    if (oh_model_load(&m, dir, &err)) { fprintf(stderr, "error: %s\n", err.msg); return 1; }
    if (adapter) {
        oh_lora lo;
        if (oh_lora_load_peft(&lo, &m, adapter, &err)) { fprintf(stderr, "error: %s\n", err.msg); oh_model_free(&m); return 1; }
        oh_lora_merge(&lo, &m);
        oh_lora_free(&lo);
    }
    tok_tokenizer *tok = tok_load(tokp ? tokp : dir, &err);
    if (!tok) { fprintf(stderr, "error: %s\n", err.msg); oh_model_free(&m); return 1; }
    char *text = chat ? oh_sprintf("<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n", prompt) : oh_strdup(prompt);
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = tok_encode(tok, text, strlen(text), &ids, &n, &err);
    free(text);
    int32_t stop1 = m.cfg.eos_token_id, stop2 = chat ? tok_token_id(tok, "<|im_end|>") : -1;
    if (rc == 0 && n == 0) rc = oh_errf(&err, "the prompt is empty");
    oh_decoder *d = rc == 0 ? oh_decoder_new(&m, (int)n + max_new + 1) : NULL;
    float *logits = oh_malloc(sizeof(float) * (size_t)m.cfg.vocab_size);
    oh_rng rng;
    oh_rng_seed(&rng, sc.seed);
    for (size_t i = 0; i < n && rc == 0; i++) rc = oh_decoder_step(d, ids[i], logits, &err);
    if (rc == 0) {
        printf("%s", prompt);
        if (chat) printf("\n--- assistant ---\n");
        fflush(stdout);
    }
    for (int k = 0; k < max_new && rc == 0; k++) {
        int32_t next = oh_sample(logits, m.cfg.vocab_size, &sc, &rng);
        if (next == stop1 || next == stop2) break;
        char *piece = NULL;
        size_t plen = 0;
        if (tok_decode(tok, &next, 1, &piece, &plen, &err) == 0) {
            fwrite(piece, 1, plen, stdout);
            fflush(stdout);
            free(piece);
        }
        rc = oh_decoder_step(d, next, logits, &err);
    }
    printf("\n");
    if (rc) fprintf(stderr, "error: %s\n", err.msg);
    free(logits);
    free(ids);
    oh_decoder_free(d);
    tok_free(tok);
    oh_model_free(&m);
    return rc ? 1 : 0;
}

/* finetune tokenize --tokenizer PATH --input IN.jsonl --out OUT.jsonl
 * finetune tokenize --recipe RECIPE.toml --show N [--set key=value ...] */
int cmd_tokenize(int argc, char **argv) {
    const char *rp = cli_opt(argc, argv, "--recipe");
    if (!rp) return tok_cmd_tokenize(argc, argv);
    int n = cli_opt(argc, argv, "--show") ? atoi(cli_opt(argc, argv, "--show")) : 1;
    const char **sets = oh_calloc((size_t)argc + 1, sizeof(char *));
    int nsets = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--set") && i + 1 < argc) sets[nsets++] = argv[++i];
        else if (!strcmp(argv[i], "--recipe") || !strcmp(argv[i], "--show")) i++;
        else { fprintf(stderr, "error: tokenize: unknown argument '%s'\n", argv[i]); free(sets); return 2; }
    }
    recipe r;
    oh_err err;
    int rc = recipe_load(&r, rp, sets, nsets, &err);
    free(sets);
    if (rc) { fprintf(stderr, "error: %s\n", err.msg); return 2; }
    oh_config mc;
    bool have_cfg = oh_config_load_dir(&mc, r.model.path, &err) == 0;
    const char *tok_path = r.tokenizer.path[0] ? r.tokenizer.path : r.model.path;
    tok_tokenizer *tok = tok_load(tok_path, &err);
    if (!tok) { fprintf(stderr, "error: %s\n", err.msg); return 1; }
    ds_tokenizer dtok = {0};
    ds_source src[RECIPE_MAX_SOURCES];
    ds_config dc;
    ds_template tmpl;
    bool have_tmpl = false;
    rc = ds_tokenizer_from_tok(&dtok, tok, &err);
    if (rc == 0) rc = train_data_config(&r, tok_path, have_cfg ? mc.vocab_size : 0, &dc, src, &tmpl, &have_tmpl, &err);
    if (rc == 0) {
        dc.epochs = 1;
        rc = ds_cmd_show(&dc, &dtok, n, stdout, -1, &err);
    }
    if (rc) fprintf(stderr, "error: %s\n", err.msg);
    if (have_tmpl) ds_template_free(&tmpl);
    ds_tokenizer_release(&dtok);
    tok_free(tok);
    return rc ? 1 : 0;
}
