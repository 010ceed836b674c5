#include <criterion/criterion.h>
#include <string.h>

#include "model/config.h"
#include "model/memory.h"

static int parse(oh_config *c, const char *json, oh_err *e) { return oh_config_parse(c, json, strlen(json), "config.json", e); }

Test(config, defaults_are_the_7b) {
    oh_config c;
    oh_err e;
    cr_assert_eq(parse(&c, "{\"model_type\": \"olmo_hybrid\"}", &e), 0, "%s", e.msg);
    cr_assert_eq(c.hidden_size, 3840);
    cr_assert_eq(c.linear_key_head_dim, 96);
    cr_assert_eq(c.linear_value_head_dim, 192);
    cr_assert_eq(c.num_key_value_heads, 30);
    cr_assert_eq(c.head_dim, 128);
    cr_assert_eq(c.linear_num_value_heads, 30);
    cr_assert(c.linear_allow_neg_eigval);
    cr_assert(!c.use_rope);
    int nattn = 0;
    for (int l = 0; l < 32; l++) { nattn += c.is_attn[l]; cr_assert_eq(c.is_attn[l], l % 4 == 3); }
    cr_assert_eq(nattn, 8);
    /* the released 7B: 7,430,870,688 parameters (MODEL.md) */
    cr_assert_eq(oh_config_param_count(&c), (size_t)7430870688ull);
}

Test(config, nope_spellings_and_rope) {
    const char *nope[] = {
        "{\"rope_parameters\": null}",
        "{\"rope_parameters\": {\"rope_type\": null}}",
        "{\"rope_parameters\": {\"rope_theta\": null, \"rope_type\": \"default\"}}",
        "{\"rope_theta\": null}",
        "{}",
        "{\"rope_parameters\": null, \"rope_theta\": 500000}",
    };
    for (size_t i = 0; i < sizeof nope / sizeof *nope; i++) {
        oh_config c;
        oh_err e;
        cr_assert_eq(parse(&c, nope[i], &e), 0, "%s", e.msg);
        cr_expect(!c.use_rope, "RoPE on for %s", nope[i]);
    }
    const char *rope[] = {"{\"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 500000}}",
                          "{\"rope_theta\": 500000}", "{\"rope_parameters\": {\"rope_theta\": 500000.0}}"};
    for (size_t i = 0; i < sizeof rope / sizeof *rope; i++) {
        oh_config c;
        oh_err e;
        cr_assert_eq(parse(&c, rope[i], &e), 0, "%s", e.msg);
        cr_expect(c.use_rope && c.rope_theta == 500000.0, "%s", rope[i]);
    }
}

Test(config, refusals_name_the_field) {
    struct { const char *json, *needle; } bad[] = {
        {"{\"rope_parameters\": {\"rope_type\": \"yarn\", \"rope_theta\": 10000, \"factor\": 4}}", "rope_type"},
        {"{\"hidden_size\": 100, \"num_attention_heads\": 30}", "hidden_size"},
        {"{\"num_attention_heads\": 30, \"num_key_value_heads\": 7}", "num_key_value_heads"},
        {"{\"linear_num_key_heads\": 4, \"linear_num_value_heads\": 6}", "linear_num_value_heads"},
        {"{\"num_hidden_layers\": 2, \"layer_types\": [\"full_attention\"]}", "layer_types"},
        {"{\"num_hidden_layers\": 2, \"layer_types\": [\"linear_attention\", \"sliding_attention\"]}", "layer_types[1]"},
        {"{\"num_hidden_layers\": 2, \"layer_types\": [\"linear_attention\", \"linear_attention\"]}", "full_attention"},
        {"{\"model_type\": \"llama\"}", "model_type"},
        {"{\"vocab_size\": \"many\"}", "vocab_size"},
        {"{\"vocab_size\": 100, \"pad_token_id\": 100277}", "pad_token_id"},
        {"{\"hidden_act\": \"gelu\"}", "hidden_act"},
        {"{\"vocab_size\": 10,}", "config.json"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        oh_config c;
        oh_err e = {{0}};
        cr_expect_eq(parse(&c, bad[i].json, &e), -1, "accepted %s", bad[i].json);
        cr_expect(strstr(e.msg, bad[i].needle), "message for %s does not name %s: %s", bad[i].json, bad[i].needle, e.msg);
    }
}

Test(config, layer_types_default_small_models) {
    oh_config c;
    oh_err e;
    cr_assert_eq(parse(&c, "{\"num_hidden_layers\": 3, \"hidden_size\": 64, \"num_attention_heads\": 4, \"vocab_size\": 100,"
                           " \"pad_token_id\": 0}", &e), 0, "%s", e.msg);
    /* no i % 4 == 3 layer: the last layer becomes attention */
    cr_assert(!c.is_attn[0] && !c.is_attn[1] && c.is_attn[2]);
}

Test(config, round_trip_through_json) {
    oh_config a, b;
    oh_err e;
    cr_assert_eq(oh_config_preset(&a, "tiny", &e), 0);
    a.use_rope = true;
    a.rope_theta = 500000;
    char *j = oh_config_to_json(&a);
    cr_assert_eq(parse(&b, j, &e), 0, "%s\n%s", e.msg, j);
    cr_assert_eq(memcmp(&a.is_attn, &b.is_attn, sizeof a.is_attn), 0);
    cr_assert_eq(a.linear_num_value_heads, b.linear_num_value_heads);
    cr_assert_eq(a.rope_theta, b.rope_theta);
    cr_assert_eq(a.num_key_value_heads, b.num_key_value_heads);
    free(j);
}
