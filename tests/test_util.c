#include <criterion/criterion.h>
#include <string.h>
#include "util/json.h"

Test(json, parse_and_get) {
    const char *s = "{\"a\": 1, \"b\": [1, 2, {\"c\": \"x\\u00e9\\n\"}], \"d\": null, \"e\": true}";
    oh_json j; oh_err e;
    cr_assert_eq(oh_json_parse(&j, s, strlen(s), "t", &e), 0, "%s", e.msg);
    long long v; cr_assert_eq(oh_json_int(&j, oh_json_get(&j, 0, "a"), &v), 0); cr_assert_eq(v, 1);
    int b = oh_json_get(&j, 0, "b");
    cr_assert_eq(oh_json_size(&j, b), 3);
    int c = oh_json_get(&j, oh_json_at(&j, b, 2), "c");
    size_t n; char *str = oh_json_str(&j, c, &n);
    cr_assert_str_eq(str, "x\xc3\xa9\n"); free(str);
    cr_assert(oh_json_is_null(&j, oh_json_get(&j, 0, "d")));
    bool t; cr_assert_eq(oh_json_bool(&j, oh_json_get(&j, 0, "e"), &t), 0); cr_assert(t);
    cr_assert_eq(oh_json_get(&j, 0, "zz"), -1);
    oh_json_free(&j);
}

Test(json, rejects_malformed) {
    const char *bad[] = {"{\"a\": }", "{\"a\": 1", "[1, 2] x", "{\"a\": tru}", "{\"a\": 1,}", "{a: 1}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        oh_json j; oh_err e;
        cr_assert_eq(oh_json_parse(&j, bad[i], strlen(bad[i]), "t", &e), -1, "accepted: %s", bad[i]);
    }
}

Test(util, bf16_round_trip) {
    cr_assert_eq(oh_bf16_to_f32(oh_f32_to_bf16(1.0f)), 1.0f);
    /* round to nearest even: 1 + 2^-8 is halfway between bf16 neighbours 1 and 1+2^-7 */
    cr_assert_eq(oh_bf16_to_f32(oh_f32_to_bf16(1.0f + 0x1p-8f)), 1.0f);
    cr_assert_eq(oh_bf16_to_f32(oh_f32_to_bf16(1.0f + 0x1.8p-8f)), 1.0f + 0x1p-7f);
    cr_assert_eq(oh_f16_to_f32(oh_f32_to_f16(0.333251953125f)), 0.333251953125f);
    cr_assert_eq(oh_f16_to_f32(oh_f32_to_f16(-2.0f)), -2.0f);
}
