#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "finetune/recipe.h"

static char *write_tmp(const char *text) {
    char *p = strdup("/tmp/oh_recipe_XXXXXX.toml");
    int fd = mkstemps(p, 5);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return p;
}

static const char *BASE = "[model]\npath = \"m\"\n\n[[data.sources]]\npath = \"d.jsonl\"\n";

Test(recipe, defaults_and_values) {
    char text[2048];
    snprintf(text, sizeof text, "%s\n[train]\nlr = 1e-4\nmethod = \"lora\"\n[lora]\nrank = 8\ntargets = [\"q_proj\", \"v_proj\"]\n", BASE);
    char *p = write_tmp(text);
    recipe r;
    oh_err e;
    cr_assert_eq(recipe_load(&r, p, NULL, 0, &e), 0, "%s", e.msg);
    cr_assert_float_eq(r.train.lr, 1e-4, 1e-15);
    cr_assert_str_eq(r.train.method, "lora");
    cr_assert_eq(r.lora.rank, 8);
    cr_assert_eq(r.lora.ntargets, 2);
    cr_assert_str_eq(r.lora.targets[1], "v_proj");
    cr_assert_eq(r.data.max_seq_len, 4096); /* default */
    cr_assert_float_eq(r.train.beta2, 0.95, 1e-15);
    cr_assert_eq(r.data.nsources, 1);
    cr_assert_str_eq(r.data.sources[0].path, "d.jsonl");
    unlink(p); free(p);
}

Test(recipe, overrides) {
    char *p = write_tmp(BASE);
    recipe r;
    oh_err e;
    const char *ov[] = {"train.lr=3e-5", "data.max_seq_len=8192", "output.dir=/tmp/x y", "data.sources[0].weight=0.5"};
    cr_assert_eq(recipe_load(&r, p, ov, 4, &e), 0, "%s", e.msg);
    cr_assert_float_eq(r.train.lr, 3e-5, 1e-15);
    cr_assert_eq(r.data.max_seq_len, 8192);
    cr_assert_str_eq(r.output.dir, "/tmp/x y");
    cr_assert_float_eq(r.data.sources[0].weight, 0.5, 0);
    const char *bad[] = {"train.lrr=1"};
    cr_assert_eq(recipe_load(&r, p, bad, 1, &e), -1);
    cr_assert(strstr(e.msg, "did you mean train.lr"), "%s", e.msg);
    const char *badv[] = {"train.lr=fast"};
    cr_assert_eq(recipe_load(&r, p, badv, 1, &e), -1);
    cr_assert(strstr(e.msg, "train.lr must be a number"), "%s", e.msg);
    unlink(p); free(p);
}

Test(recipe, errors_have_positions_and_suggestions) {
    struct { const char *text, *needle; } cases[] = {
        {"[train]\nlearning_rate = 1e-5\n", "did you mean"},
        {"[trian]\nlr = 1e-5\n", "unknown key trian.lr; did you mean train.lr?"},
        {"[train]\nlr = -1.0\n", ":7:6: train.lr must be in"},
        {"[train]\nschedule = \"cosin\"\n", "choose one of: constant|linear|cosine|wsd"},
        {"[train]\nepochs = \"two\"\n", "train.epochs must be an integer"},
        {"[data]\nmax_seq_len = 4\n", "data.max_seq_len must be in"},
        {"[lora]\nrank = 0\n", "lora.rank"},
        {"[[data.sources]]\npath = \"x\"\nwieght = 2\n", "did you mean weight"},
        {"[train\nlr = 1\n", ":6:7:"},
        {"[output]\nmerge = true\n", "output.merge applies to LoRA"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char text[1024];
        snprintf(text, sizeof text, "%s%s", BASE, cases[i].text);
        char *p = write_tmp(text);
        recipe r;
        oh_err e = {{0}};
        cr_expect_eq(recipe_load(&r, p, NULL, 0, &e), -1, "accepted case %zu", i);
        cr_expect(strstr(e.msg, cases[i].needle), "case %zu: '%s' lacks '%s'", i, e.msg, cases[i].needle);
        cr_expect(strstr(e.msg, p), "case %zu: no file name in '%s'", i, e.msg);
        unlink(p); free(p);
    }
}

Test(recipe, dump_round_trips) {
    char text[1024];
    snprintf(text, sizeof text, "%s\n[train]\nlr = 1.5e-5\nschedule = \"wsd\"\n", BASE);
    char *p = write_tmp(text);
    recipe a, b;
    oh_err e;
    cr_assert_eq(recipe_load(&a, p, NULL, 0, &e), 0, "%s", e.msg);
    char *d = recipe_dump(&a);
    char *p2 = write_tmp(d);
    cr_assert_eq(recipe_load(&b, p2, NULL, 0, &e), 0, "%s\n%s", e.msg, d);
    snprintf(b.file, sizeof b.file, "%s", a.file);
    cr_assert_eq(memcmp(&a, &b, sizeof a), 0, "resolved recipe does not reload to the same values");
    unlink(p); unlink(p2); free(p); free(p2); free(d);
}

Test(recipe, shipped_recipes_are_valid) {
    const char *files[] = {"quickstart.toml", "quickstart_lora.toml", "sft_math.toml", "lora_7b.toml"};
    for (size_t i = 0; i < 4; i++) {
        char p[1024];
        snprintf(p, sizeof p, "%s/recipes/%s", OH_SOURCE_DIR, files[i]);
        recipe r;
        oh_err e;
        cr_expect_eq(recipe_load(&r, p, NULL, 0, &e), 0, "%s: %s", files[i], e.msg);
    }
}
