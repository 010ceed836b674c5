/* Tests of finetune/toml: the TOML 1.0 spec's examples for each feature, the
 * invalid documents with the position reported, --set overrides and the
 * dump -> parse round trip. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "finetune/toml.h"
#include "util/json.h"

static toml_value *ok(const char *doc) {
    toml_value *v = NULL;
    oh_err e = {{0}};
    int r = toml_parse(doc, strlen(doc), "t.toml", &v, &e);
    cr_assert_eq(r, 0, "rejected:\n%s\n-> %s", doc, e.msg);
    cr_assert(v && v->type == TOML_TABLE);
    return v;
}

/* The document must fail with "t.toml:<at>: ..." and a message containing needle. */
static void bad_len(const char *doc, size_t len, const char *at, const char *needle) {
    toml_value *v = (toml_value *)1;
    oh_err e = {{0}};
    int r = toml_parse(doc, len, "t.toml", &v, &e);
    cr_expect_eq(r, -1, "accepted:\n%s", doc);
    if (r != -1) { toml_free(v); return; }
    cr_expect_null(v, "out not NULL on failure for:\n%s", doc);
    char prefix[64];
    snprintf(prefix, sizeof prefix, "t.toml:%s: ", at);
    cr_expect(strncmp(e.msg, prefix, strlen(prefix)) == 0, "for:\n%s\nwanted position %s, got: %s", doc, at, e.msg);
    cr_expect(strstr(e.msg, needle) != NULL, "for:\n%s\nwanted \"%s\" in: %s", doc, needle, e.msg);
}
static void bad(const char *doc, const char *at, const char *needle) { bad_len(doc, strlen(doc), at, needle); }

static const char *str_at(const toml_value *root, const char *path) {
    const toml_value *v = toml_get_path(root, path);
    cr_assert(v, "no %s", path);
    cr_assert_eq(v->type, TOML_STRING, "%s is a %s", path, toml_type_name(v->type));
    return v->u.str.s;
}
static int64_t int_at(const toml_value *root, const char *path) {
    int64_t i = 0;
    cr_assert_eq(toml_as_int(toml_get_path(root, path), &i), 0, "%s is not an integer", path);
    return i;
}
static double float_at(const toml_value *root, const char *path) {
    const toml_value *v = toml_get_path(root, path);
    cr_assert(v && v->type == TOML_FLOAT, "%s is not a float", path);
    return v->u.f;
}
static bool bool_at(const toml_value *root, const char *path) {
    bool b = false;
    cr_assert_eq(toml_as_bool(toml_get_path(root, path), &b), 0, "%s is not a boolean", path);
    return b;
}

/* dump, parse again, compare; and dumping the copy gives the same text */
static void round_trip(const toml_value *v) {
    char *text = toml_dump(v);
    toml_value *w = NULL;
    oh_err e = {{0}};
    cr_assert_eq(toml_parse(text, strlen(text), "dump.toml", &w, &e), 0, "dump does not parse: %s\n%s", e.msg, text);
    cr_expect(toml_equal(v, w), "round trip differs:\n%s", text);
    char *again = toml_dump(w);
    cr_expect_str_eq(again, text);
    free(again);
    toml_free(w);
    free(text);
}

/* ------------------------------------------------------------ comments, keys */

Test(toml, comments) {
    toml_value *r = ok("# This is a full-line comment\n"
                       "key = \"value\"  # This is a comment at the end of a line\n"
                       "another = \"# This is not a comment\"\n"
                       "#no space # and more ## \t tab \xc3\xa9\n"
                       "   # indented\n");
    cr_expect_str_eq(str_at(r, "key"), "value");
    cr_expect_str_eq(str_at(r, "another"), "# This is not a comment");
    cr_expect_eq(toml_len(r), 2);
    toml_free(r);
}

Test(toml, empty_and_blank_documents) {
    const char *docs[] = {"", "\n", "   \n\t\n", "# only a comment", "\r\n\r\n", "\xEF\xBB\xBF"};
    for (size_t i = 0; i < sizeof docs / sizeof *docs; i++) {
        toml_value *r = ok(docs[i]);
        cr_expect_eq(toml_len(r), 0);
        toml_free(r);
    }
}

Test(toml, bare_and_quoted_keys) {
    toml_value *r = ok("key = \"value\"\n"
                       "bare_key = \"value\"\n"
                       "bare-key = \"value\"\n"
                       "1234 = \"value\"\n"
                       "\"127.0.0.1\" = \"value\"\n"
                       "\"character encoding\" = \"value\"\n"
                       "\"\xca\x8e\xc7\x9d\xca\x9e\" = \"value\"\n"
                       "'key2' = \"value\"\n"
                       "'quoted \"value\"' = \"value\"\n"
                       "\"\" = \"blank\"\n"
                       "\"tab\\tkey\" = 1\n"
                       "- = 2\n"
                       "_ = 3\n");
    cr_expect_eq(toml_len(r), 13);
    const char *keys[] = {"key", "bare_key", "bare-key", "1234", "127.0.0.1", "character encoding",
                          "\xca\x8e\xc7\x9d\xca\x9e", "key2", "quoted \"value\"", "", "tab\tkey", "-", "_"};
    for (size_t i = 0; i < 13; i++) {
        const toml_entry *e = toml_table_entry(r, i);
        cr_assert(e);
        cr_expect_str_eq(e->key, keys[i], "entry %zu", i);
        cr_expect(toml_get(r, keys[i]) == e->value);
    }
    cr_expect_str_eq(toml_as_str(toml_get(r, "")), "blank");
    cr_expect_null(toml_get(r, "missing"));
    toml_free(r);
}

Test(toml, dotted_keys) {
    toml_value *r = ok("name = \"Orange\"\n"
                       "physical.color = \"orange\"\n"
                       "physical.shape = \"round\"\n"
                       "site.\"google.com\" = true\n"
                       "fruit.name = \"banana\"     # this is best practice\n"
                       "fruit. color = \"yellow\"    # same as fruit.color\n"
                       "fruit . flavor = \"banana\"   # same as fruit.flavor\n"
                       "3.14159 = \"pi\"\n");
    cr_expect_str_eq(str_at(r, "physical.color"), "orange");
    cr_expect_str_eq(str_at(r, "physical.shape"), "round");
    cr_expect(bool_at(r, "site.\"google.com\""));
    cr_expect(bool_at(r, "site.'google.com'"));
    cr_expect_str_eq(str_at(r, "fruit.color"), "yellow");
    cr_expect_str_eq(str_at(r, "fruit.flavor"), "banana");
    cr_expect_str_eq(str_at(r, "3.14159"), "pi");
    cr_expect_eq(toml_get(r, "3")->type, TOML_TABLE);
    cr_expect_eq(toml_len(toml_get(r, "fruit")), 3);
    toml_free(r);

    /* defined out of order: valid, though discouraged */
    r = ok("apple.type = \"fruit\"\norange.type = \"fruit\"\napple.skin = \"thin\"\norange.skin = \"thick\"\n"
           "apple.color = \"red\"\norange.color = \"orange\"\n");
    cr_expect_str_eq(str_at(r, "apple.color"), "red");
    cr_expect_str_eq(str_at(r, "orange.skin"), "thick");
    toml_free(r);

    /* dotted keys make tables that later headers may go below */
    r = ok("[fruit]\napple.color = \"red\"\napple.taste.sweet = true\n\n[fruit.apple.texture]\nsmooth = true\n");
    cr_expect(bool_at(r, "fruit.apple.taste.sweet"));
    cr_expect(bool_at(r, "fruit.apple.texture.smooth"));
    toml_free(r);

    /* dotted keys may add to a table that only exists as the parent of a header */
    r = ok("[a.b.c]\nz = 9\n[a]\nb.d = 1\n");
    cr_expect_eq(int_at(r, "a.b.d"), 1);
    cr_expect_eq(int_at(r, "a.b.c.z"), 9);
    toml_free(r);
}

/* ---------------------------------------------------------------- strings */

Test(toml, basic_strings_and_escapes) {
    toml_value *r = ok("str = \"I'm a string. \\\"You can quote me\\\". Name\\tJos\\u00E9\\nLocation\\tSF.\"\n"
                       "all = \"\\b\\t\\n\\f\\r\\\"\\\\\"\n"
                       "u4 = \"\\u00e9\\u20AC\"\n"
                       "u8 = \"\\U0001F600\\U000000E9\"\n"
                       "nul = \"a\\u0000b\"\n"
                       "raw = \"\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\ttab\"\n"
                       "empty = \"\"\n");
    cr_expect_str_eq(str_at(r, "str"), "I'm a string. \"You can quote me\". Name\tJos\xc3\xa9\nLocation\tSF.");
    cr_expect_str_eq(str_at(r, "all"), "\b\t\n\f\r\"\\");
    cr_expect_str_eq(str_at(r, "u4"), "\xc3\xa9\xe2\x82\xac");
    cr_expect_str_eq(str_at(r, "u8"), "\xf0\x9f\x98\x80\xc3\xa9");
    const toml_value *nul = toml_get(r, "nul");
    cr_expect_eq(nul->u.str.len, 3);
    cr_expect(memcmp(nul->u.str.s, "a\0b", 3) == 0);
    cr_expect_str_eq(str_at(r, "raw"), "\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\ttab");
    cr_expect_str_eq(str_at(r, "empty"), "");
    cr_expect_eq(toml_get(r, "empty")->u.str.len, 0);
    toml_free(r);
}

Test(toml, multiline_basic_strings) {
    toml_value *r = ok("str1 = \"\"\"\nRoses are red\nViolets are blue\"\"\"\n"
                       "s1 = \"The quick brown fox jumps over the lazy dog.\"\n"
                       "s2 = \"\"\"\nThe quick brown \\\n\n\n  fox jumps over \\\n    the lazy dog.\"\"\"\n"
                       "s3 = \"\"\"\\\n       The quick brown \\\n       fox jumps over \\\n       the lazy dog.\\\n       \"\"\"\n"
                       "str4 = \"\"\"Here are two quotation marks: \"\". Simple enough.\"\"\"\n"
                       "str5 = \"\"\"Here are three quotation marks: \"\"\\\".\"\"\"\n"
                       "str6 = \"\"\"Here are fifteen quotation marks: \"\"\\\"\"\"\\\"\"\"\\\"\"\"\\\"\"\"\\\".\"\"\"\n"
                       "str7 = \"\"\"\"This,\" she said, \"is just a pointless statement.\"\"\"\"\n"
                       "ws = \"\"\"a \\   \t \n  b\"\"\"\n"
                       "crlf = \"\"\"\r\none\r\ntwo\"\"\"\n"
                       "esc = \"\"\"tab\\there\\u00e9\"\"\"\n"
                       "q5 = \"\"\"x\"\"\"\"\"\n"
                       "empty = \"\"\"\"\"\"\n");
    cr_expect_str_eq(str_at(r, "str1"), "Roses are red\nViolets are blue");
    cr_expect_str_eq(str_at(r, "s2"), str_at(r, "s1"));
    cr_expect_str_eq(str_at(r, "s3"), str_at(r, "s1"));
    cr_expect_str_eq(str_at(r, "str4"), "Here are two quotation marks: \"\". Simple enough.");
    cr_expect_str_eq(str_at(r, "str5"), "Here are three quotation marks: \"\"\".");
    cr_expect_str_eq(str_at(r, "str6"), "Here are fifteen quotation marks: \"\"\"\"\"\"\"\"\"\"\"\"\"\"\".");
    cr_expect_str_eq(str_at(r, "str7"), "\"This,\" she said, \"is just a pointless statement.\"");
    cr_expect_str_eq(str_at(r, "ws"), "a b");
    cr_expect_str_eq(str_at(r, "crlf"), "one\ntwo");
    cr_expect_str_eq(str_at(r, "esc"), "tab\there\xc3\xa9");
    cr_expect_str_eq(str_at(r, "q5"), "x\"\"");
    cr_expect_str_eq(str_at(r, "empty"), "");
    toml_free(r);
}

Test(toml, literal_strings) {
    toml_value *r = ok("winpath  = 'C:\\Users\\nodejs\\templates'\n"
                       "winpath2 = '\\\\ServerX\\admin$\\system32\\'\n"
                       "quoted   = 'Tom \"Dubs\" Preston-Werner'\n"
                       "regex    = '<\\i\\c*\\s*>'\n"
                       "regex2 = '''I [dw]on't need \\d{2} apples'''\n"
                       "lines  = '''\nThe first newline is\ntrimmed in raw strings.\n   All other whitespace\n   is preserved.\n'''\n"
                       "quot15 = '''Here are fifteen quotation marks: \"\"\"\"\"\"\"\"\"\"\"\"\"\"\"'''\n"
                       "apos15 = \"Here are fifteen apostrophes: '''''''''''''''\"\n"
                       "str = ''''That,' she said, 'is still pointless.''''\n"
                       "tab = 'a\tb'\n");
    cr_expect_str_eq(str_at(r, "winpath"), "C:\\Users\\nodejs\\templates");
    cr_expect_str_eq(str_at(r, "winpath2"), "\\\\ServerX\\admin$\\system32\\");
    cr_expect_str_eq(str_at(r, "quoted"), "Tom \"Dubs\" Preston-Werner");
    cr_expect_str_eq(str_at(r, "regex"), "<\\i\\c*\\s*>");
    cr_expect_str_eq(str_at(r, "regex2"), "I [dw]on't need \\d{2} apples");
    cr_expect_str_eq(str_at(r, "lines"),
                     "The first newline is\ntrimmed in raw strings.\n   All other whitespace\n   is preserved.\n");
    cr_expect_str_eq(str_at(r, "quot15"), "Here are fifteen quotation marks: \"\"\"\"\"\"\"\"\"\"\"\"\"\"\"");
    cr_expect_str_eq(str_at(r, "apos15"), "Here are fifteen apostrophes: '''''''''''''''");
    cr_expect_str_eq(str_at(r, "str"), "'That,' she said, 'is still pointless.'");
    cr_expect_str_eq(str_at(r, "tab"), "a\tb");
    toml_free(r);
}

/* ---------------------------------------------------------------- numbers */

Test(toml, integers) {
    toml_value *r = ok("int1 = +99\nint2 = 42\nint3 = 0\nint4 = -17\n"
                       "int5 = 1_000\nint6 = 5_349_221\nint7 = 53_49_221\nint8 = 1_2_3_4_5\n"
                       "hex1 = 0xDEADBEEF\nhex2 = 0xdeadbeef\nhex3 = 0xdead_beef\n"
                       "oct1 = 0o01234567\noct2 = 0o755\nbin1 = 0b11010110\n"
                       "max = 9223372036854775807\nmin = -9223372036854775808\n"
                       "hmax = 0x7FFFFFFFFFFFFFFF\npz = +0\nmz = -0\nh0 = 0x0\nb0 = 0b0\n");
    cr_expect_eq(int_at(r, "int1"), 99);
    cr_expect_eq(int_at(r, "int2"), 42);
    cr_expect_eq(int_at(r, "int3"), 0);
    cr_expect_eq(int_at(r, "int4"), -17);
    cr_expect_eq(int_at(r, "int5"), 1000);
    cr_expect_eq(int_at(r, "int6"), 5349221);
    cr_expect_eq(int_at(r, "int7"), 5349221);
    cr_expect_eq(int_at(r, "int8"), 12345);
    cr_expect_eq(int_at(r, "hex1"), 0xDEADBEEF);
    cr_expect_eq(int_at(r, "hex2"), 0xDEADBEEF);
    cr_expect_eq(int_at(r, "hex3"), 0xDEADBEEF);
    cr_expect_eq(int_at(r, "oct1"), 01234567);
    cr_expect_eq(int_at(r, "oct2"), 0755);
    cr_expect_eq(int_at(r, "bin1"), 214);
    cr_expect_eq(int_at(r, "max"), INT64_MAX);
    cr_expect_eq(int_at(r, "min"), INT64_MIN);
    cr_expect_eq(int_at(r, "hmax"), INT64_MAX);
    cr_expect_eq(int_at(r, "pz"), 0);
    cr_expect_eq(int_at(r, "mz"), 0);
    cr_expect_eq(int_at(r, "h0"), 0);
    cr_expect_eq(int_at(r, "b0"), 0);
    toml_free(r);
}

Test(toml, floats) {
    toml_value *r = ok("flt1 = +1.0\nflt2 = 3.1415\nflt3 = -0.01\n"
                       "flt4 = 5e+22\nflt5 = 1e06\nflt6 = -2E-2\n"
                       "flt7 = 6.626e-34\n"
                       "flt8 = 224_617.445_991_228\n"
                       "flt9 = 1e1_0\n"
                       "sf1 = inf\nsf2 = +inf\nsf3 = -inf\n"
                       "sf4 = nan\nsf5 = +nan\nsf6 = -nan\n"
                       "z1 = -0.0\nz2 = +0.0\nz3 = 0e0\nsmall = 1e-5\nexp0 = 1e-05\n");
    cr_expect_eq(float_at(r, "flt1"), 1.0);
    cr_expect_eq(float_at(r, "flt2"), 3.1415);
    cr_expect_eq(float_at(r, "flt3"), -0.01);
    cr_expect_eq(float_at(r, "flt4"), 5e22);
    cr_expect_eq(float_at(r, "flt5"), 1e6);
    cr_expect_eq(float_at(r, "flt6"), -2e-2);
    cr_expect_eq(float_at(r, "flt7"), 6.626e-34);
    cr_expect_eq(float_at(r, "flt8"), 224617.445991228);
    cr_expect_eq(float_at(r, "flt9"), 1e10);
    cr_expect(isinf(float_at(r, "sf1")) && float_at(r, "sf1") > 0);
    cr_expect(isinf(float_at(r, "sf2")) && float_at(r, "sf2") > 0);
    cr_expect(isinf(float_at(r, "sf3")) && float_at(r, "sf3") < 0);
    cr_expect(isnan(float_at(r, "sf4")));
    cr_expect(isnan(float_at(r, "sf5")));
    cr_expect(isnan(float_at(r, "sf6")));
    cr_expect(float_at(r, "z1") == 0 && signbit(float_at(r, "z1")));
    cr_expect(float_at(r, "z2") == 0 && !signbit(float_at(r, "z2")));
    cr_expect_eq(float_at(r, "z3"), 0.0);
    cr_expect_eq(float_at(r, "small"), 1e-5);
    cr_expect_eq(float_at(r, "exp0"), 1e-5);
    /* an integer reads as a float through toml_as_float, not the other way */
    double d;
    int64_t i;
    toml_value *x = ok("i = 3\nf = 2.5\n");
    cr_expect_eq(toml_as_float(toml_get(x, "i"), &d), 0);
    cr_expect_eq(d, 3.0);
    cr_expect_eq(toml_as_int(toml_get(x, "f"), &i), -1);
    toml_free(x);
    toml_free(r);
}

Test(toml, booleans) {
    toml_value *r = ok("bool1 = true\nbool2 = false\n");
    cr_expect(bool_at(r, "bool1"));
    cr_expect(!bool_at(r, "bool2"));
    toml_free(r);
}

Test(toml, datetimes_keep_their_text) {
    const char *vals[] = {
        "1979-05-27T07:32:00Z",       "1979-05-27T00:32:00-07:00", "1979-05-27T00:32:00.999999-07:00",
        "1979-05-27 07:32:00Z",       "1979-05-27t07:32:00z",      "1979-05-27T07:32:00",
        "1979-05-27T00:32:00.999999", "1979-05-27",                "07:32:00",
        "00:32:00.999999",            "2000-02-29",                "1990-12-31T23:59:60Z",
    };
    for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) {
        char doc[128];
        snprintf(doc, sizeof doc, "d = %s # comment\nx = [%s, %s]\n", vals[i], vals[i], vals[i]);
        toml_value *r = ok(doc);
        const toml_value *d = toml_get(r, "d");
        cr_expect_eq(d->type, TOML_DATETIME, "%s", vals[i]);
        cr_expect_str_eq(toml_as_str(d), vals[i]);
        cr_expect_eq(d->u.str.len, strlen(vals[i]));
        cr_expect_str_eq(toml_as_str(toml_get_path(r, "x[1]")), vals[i]);
        toml_free(r);
    }
}

/* ---------------------------------------------------------------- arrays */

Test(toml, arrays) {
    toml_value *r = ok("integers = [ 1, 2, 3 ]\n"
                       "colors = [ \"red\", \"yellow\", \"green\" ]\n"
                       "nested_arrays_of_ints = [ [ 1, 2 ], [3, 4, 5] ]\n"
                       "nested_mixed_array = [ [ 1, 2 ], [\"a\", \"b\", \"c\"] ]\n"
                       "string_array = [ \"all\", 'strings', \"\"\"are the same\"\"\", '''type''' ]\n"
                       "numbers = [ 0.1, 0.2, 0.5, 1, 2, 5 ]\n"
                       "contributors = [\n"
                       "  \"Foo Bar <foo@example.com>\",\n"
                       "  { name = \"Baz Qux\", email = \"bazqux@example.com\", url = \"https://example.com/bazqux\" }\n"
                       "]\n"
                       "integers2 = [\n  1, 2, 3\n]\n"
                       "integers3 = [\n  1,\n  2, # this is ok\n]\n"
                       "empty = []\nempty2 = [ ]\nempty3 = [\n # nothing\n]\n"
                       "trail = [1,2,]\n"
                       "crlf = [\r\n1,\r\n2\r\n]\n"
                       "deep = [[[[]]]]\n");
    const toml_value *a = toml_get(r, "integers");
    cr_assert_eq(a->type, TOML_ARRAY);
    cr_expect_eq(toml_len(a), 3);
    cr_expect_eq(toml_array_item(a, 2)->u.i, 3);
    cr_expect_null(toml_array_item(a, 3));
    cr_expect_str_eq(str_at(r, "colors[1]"), "yellow");
    cr_expect_eq(int_at(r, "nested_arrays_of_ints[1][2]"), 5);
    cr_expect_str_eq(str_at(r, "nested_mixed_array[1][0]"), "a");
    cr_expect_str_eq(str_at(r, "string_array[2]"), "are the same");
    cr_expect_str_eq(str_at(r, "string_array[3]"), "type");
    cr_expect_eq(toml_get_path(r, "numbers[0]")->type, TOML_FLOAT);
    cr_expect_eq(toml_get_path(r, "numbers[3]")->type, TOML_INT);
    cr_expect_str_eq(str_at(r, "contributors[0]"), "Foo Bar <foo@example.com>");
    cr_expect_str_eq(str_at(r, "contributors[1].email"), "bazqux@example.com");
    cr_expect_eq(toml_len(toml_get(r, "integers2")), 3);
    cr_expect_eq(toml_len(toml_get(r, "integers3")), 2);
    cr_expect_eq(toml_len(toml_get(r, "empty")), 0);
    cr_expect_eq(toml_get(r, "empty2")->type, TOML_ARRAY);
    cr_expect_eq(toml_len(toml_get(r, "empty3")), 0);
    cr_expect_eq(toml_len(toml_get(r, "trail")), 2);
    cr_expect_eq(int_at(r, "crlf[1]"), 2);
    cr_expect_eq(toml_len(toml_get_path(r, "deep[0][0]")), 1);
    toml_free(r);
}

/* ---------------------------------------------------------------- tables */

Test(toml, inline_tables) {
    toml_value *r = ok("name = { first = \"Tom\", last = \"Preston-Werner\" }\n"
                       "point = { x = 1, y = 2 }\n"
                       "animal = { type.name = \"pug\" }\n"
                       "empty = {}\nempty2 = { }\n"
                       "nested = { a = { b = { c = [1, {d = 2}] } }, e.f = 3, e.g = 4 }\n"
                       "multi = { list = [\n 1,\n 2 # comment inside a value\n], s = \"\"\"x\ny\"\"\" }\n");
    cr_expect_str_eq(str_at(r, "name.first"), "Tom");
    cr_expect_str_eq(str_at(r, "name.last"), "Preston-Werner");
    cr_expect_eq(int_at(r, "point.y"), 2);
    cr_expect_str_eq(str_at(r, "animal.type.name"), "pug");
    cr_expect_eq(toml_get(r, "empty")->type, TOML_TABLE);
    cr_expect_eq(toml_len(toml_get(r, "empty2")), 0);
    cr_expect_eq(int_at(r, "nested.a.b.c[1].d"), 2);
    cr_expect_eq(int_at(r, "nested.e.g"), 4);
    cr_expect_eq(int_at(r, "multi.list[1]"), 2);
    cr_expect_str_eq(str_at(r, "multi.s"), "x\ny");
    toml_free(r);
}

Test(toml, tables) {
    toml_value *r = ok("top = 0\n"
                       "[table]\n\n"
                       "[table-1]\nkey1 = \"some string\"\nkey2 = 123\n\n"
                       "[table-2]\nkey1 = \"another string\"\nkey2 = 456\n"
                       "[dog.\"tater.man\"]\ntype.name = \"pug\"\n"
                       "[a.b.c]            # this is best practice\nx = 1\n"
                       "[ d.e.f ]          # same as [d.e.f]\nx = 2\n"
                       "[ g .  h  . i ]    # same as [g.h.i]\nx = 3\n"
                       "[ j . \"\xca\x9e\" . 'l' ]  # same as [j.\"\xca\x9e\".'l']\nx = 4\n"
                       "[x.y.z.w]\n\n[x] # defining a super-table afterward is ok\nq = 5\n"
                       "[fruit.apple]\n[animal]\n[fruit.orange]\n");
    cr_expect_eq(int_at(r, "top"), 0);
    cr_expect_eq(toml_get(r, "table")->type, TOML_TABLE);
    cr_expect_eq(toml_len(toml_get(r, "table")), 0);
    cr_expect_str_eq(str_at(r, "table-1.key1"), "some string");
    cr_expect_eq(int_at(r, "table-2.key2"), 456);
    cr_expect_str_eq(str_at(r, "dog.\"tater.man\".type.name"), "pug");
    cr_expect_eq(int_at(r, "a.b.c.x"), 1);
    cr_expect_eq(int_at(r, "d.e.f.x"), 2);
    cr_expect_eq(int_at(r, "g.h.i.x"), 3);
    cr_expect_eq(int_at(r, "j.\"\xca\x9e\".l.x"), 4);
    cr_expect_eq(toml_get_path(r, "x.y.z.w")->type, TOML_TABLE);
    cr_expect_eq(int_at(r, "x.q"), 5);
    cr_expect_eq(toml_len(toml_get(r, "fruit")), 2);
    toml_free(r);
}

Test(toml, arrays_of_tables) {
    toml_value *r = ok("[[products]]\nname = \"Hammer\"\nsku = 738594937\n\n"
                       "[[products]]  # empty table within the array\n\n"
                       "[[products]]\nname = \"Nail\"\nsku = 284758393\n\ncolor = \"gray\"\n");
    const toml_value *p = toml_get(r, "products");
    cr_assert_eq(p->type, TOML_ARRAY);
    cr_expect_eq(toml_len(p), 3);
    cr_expect_str_eq(str_at(r, "products[0].name"), "Hammer");
    cr_expect_eq(toml_len(toml_array_item(p, 1)), 0);
    cr_expect_str_eq(str_at(r, "products[2].color"), "gray");
    toml_free(r);

    r = ok("[[fruits]]\nname = \"apple\"\n\n"
           "[fruits.physical]  # subtable\ncolor = \"red\"\nshape = \"round\"\n\n"
           "[[fruits.varieties]]  # nested array of tables\nname = \"red delicious\"\n\n"
           "[[fruits.varieties]]\nname = \"granny smith\"\n\n\n"
           "[[fruits]]\nname = \"banana\"\n\n"
           "[[fruits.varieties]]\nname = \"plantain\"\n");
    cr_expect_eq(toml_len(toml_get(r, "fruits")), 2);
    cr_expect_str_eq(str_at(r, "fruits[0].physical.shape"), "round");
    cr_expect_str_eq(str_at(r, "fruits[0].varieties[1].name"), "granny smith");
    cr_expect_str_eq(str_at(r, "fruits[1].varieties[0].name"), "plantain");
    cr_expect_null(toml_get_path(r, "fruits[1].physical"));
    toml_free(r);

    r = ok("points = [ { x = 1, y = 2, z = 3 },\n           { x = 7, y = 8, z = 9 },\n           { x = 2, y = 4, z = 8 } ]\n");
    cr_expect_eq(int_at(r, "points[2].z"), 8);
    toml_free(r);
}

Test(toml, line_endings_and_no_final_newline) {
    toml_value *r = ok("a = 1\r\n[t]\r\nb = \"x\" # c\r\nc = 2");
    cr_expect_eq(int_at(r, "a"), 1);
    cr_expect_str_eq(str_at(r, "t.b"), "x");
    cr_expect_eq(int_at(r, "t.c"), 2);
    cr_expect_eq(toml_get_path(r, "t.c")->line, 4);
    toml_free(r);
    r = ok("\xEF\xBB\xBF" "a = 1\n");
    cr_expect_eq(int_at(r, "a"), 1);
    cr_expect_eq(toml_get(r, "a")->col, 5);
    toml_free(r);
}

/* ---------------------------------------------------------------- positions */

Test(toml, positions) {
    toml_value *r = ok("# recipe\n"
                       "name = \"run\"\n"
                       "\n"
                       "[train]\n"
                       "  lr = 1e-5\n"
                       "  opt.betas = [0.9,\n"
                       "     0.95]\n"
                       "  s = \"\"\"\nx\n\"\"\"\n"
                       "  k = 2\n"
                       "[[data.sources]]\n"
                       "\"\xc3\xa9\xc3\xa9\" = '\xc3\xa9\xc3\xa9' \n"
                       "w = { a = 1 }\n");
    const toml_value *v = toml_get(r, "name");
    cr_expect_eq(v->line, 2);
    cr_expect_eq(v->col, 8);
    const toml_entry *e = toml_table_entry(r, 0);
    cr_expect_eq(e->line, 2);
    cr_expect_eq(e->col, 1);
    const toml_value *train = toml_get(r, "train");
    cr_expect_eq(train->line, 4);
    cr_expect_eq(train->col, 1);
    cr_expect_eq(toml_table_entry(r, 1)->line, 4);
    cr_expect_eq(toml_table_entry(r, 1)->col, 2);
    v = toml_get_path(r, "train.lr");
    cr_expect_eq(v->line, 5);
    cr_expect_eq(v->col, 8);
    cr_expect_eq(toml_table_entry(train, 0)->col, 3);
    v = toml_get_path(r, "train.opt");
    cr_expect_eq(v->line, 6);
    cr_expect_eq(v->col, 3);
    v = toml_get_path(r, "train.opt.betas");
    cr_expect_eq(v->line, 6);
    cr_expect_eq(v->col, 15);
    cr_expect_eq(toml_table_entry(toml_get_path(r, "train.opt"), 0)->col, 7);
    v = toml_get_path(r, "train.opt.betas[1]");
    cr_expect_eq(v->line, 7);
    cr_expect_eq(v->col, 6);
    v = toml_get_path(r, "train.s");
    cr_expect_eq(v->line, 8);
    cr_expect_eq(v->col, 7);
    v = toml_get_path(r, "train.k");
    cr_expect_eq(v->line, 11);
    cr_expect_eq(v->col, 7);
    v = toml_get_path(r, "data.sources");
    cr_expect_eq(v->line, 12);
    cr_expect_eq(v->col, 1);
    v = toml_get_path(r, "data.sources[0].\"\xc3\xa9\xc3\xa9\"");
    cr_assert(v);
    cr_expect_eq(v->line, 13);
    cr_expect_eq(v->col, 8, "columns count code points");
    v = toml_get_path(r, "data.sources[0].w.a");
    cr_expect_eq(v->line, 14);
    cr_expect_eq(v->col, 11);
    cr_expect_eq(toml_get_path(r, "data.sources[0].w")->col, 5);
    /* insertion order */
    const char *order[] = {"name", "train", "data"};
    cr_assert_eq(toml_len(r), 3);
    for (size_t i = 0; i < 3; i++) cr_expect_str_eq(toml_table_entry(r, i)->key, order[i]);
    const char *torder[] = {"lr", "opt", "s", "k"};
    cr_assert_eq(toml_len(train), 4);
    for (size_t i = 0; i < 4; i++) cr_expect_str_eq(toml_table_entry(train, i)->key, torder[i]);
    cr_expect_null(toml_table_entry(train, 4));
    cr_expect_null(toml_table_entry(toml_get_path(r, "train.lr"), 0));
    toml_free(r);

    /* a table first seen as a parent takes the position of its own header */
    r = ok("[a.b]\nx = 1\n\n[a]\ny = 2\n");
    cr_expect_eq(toml_get(r, "a")->line, 4);
    cr_expect_eq(toml_table_entry(r, 0)->line, 4);
    cr_expect_eq(toml_table_entry(r, 0)->col, 2);
    toml_free(r);
}

/* ---------------------------------------------------------------- invalid */

Test(toml, invalid_redefinitions) {
    bad("a = 1\na = 2\n", "2:1", "duplicate key 'a' (first defined at 1:1)");
    bad("spelling = \"favorite\"\n\"spelling\" = \"favourite\"\n", "2:1", "duplicate key 'spelling'");
    bad("[t]\nx = 1\n  x = 2\n", "3:3", "duplicate key 't.x'");
    bad("a.b = 1\na.b = 2\n", "2:3", "duplicate key 'a.b'");
    bad("a = {x = 1, x = 2}\n", "1:13", "duplicate key 'a.x'");
    bad("a = [{x = 1, x = 2}]\n", "1:14", "duplicate key 'a[0].x'");
    bad("name = \"Tom\"\nname.first = \"x\"\n", "2:1", "'name' is already a string");
    bad("fruit.apple = 1\nfruit.apple.smooth = true\n", "2:7", "'fruit.apple' is already an integer");
    bad("[a]\n[a]\n", "2:2", "table 'a' is already defined at 1:1");
    bad("[a]\nb = 1\n\n[a]\nc = 2\n", "4:2", "table 'a' is already defined");
    bad("[a]\nb = 1\n[a.b]\n", "3:4", "key 'a.b' is already an integer");
    bad("[fruit]\napple.color = \"red\"\n[fruit.apple]\n", "3:8", "table 'fruit.apple' is already defined by dotted keys");
    bad("[fruit]\napple.taste.sweet = true\n[fruit.apple.taste]\n", "3:14", "dotted keys");
    bad("a.b = 1\n[a]\n", "2:2", "dotted keys");
    bad("a = {}\n[a]\n", "2:2", "inline table 'a'");
    bad("a = {}\n[a.b]\n", "2:2", "inline table 'a'");
    bad("a = {b = 1}\na.c = 2\n", "2:1", "inline table 'a'");
    bad("a = {b = {c = 1}, b.d = 2}\n", "1:19", "inline table 'a.b'");
    bad("[a.b.c]\nz = 9\n[a]\nb.c.t = 1\n", "4:3", "table 'a.b.c' is defined by a [header]");
    bad("[a.b]\nz = 9\n[a]\nb.t = 1\n", "4:1", "table 'a.b' is defined by a [header]");
    bad("a = 1\n[[a]]\n", "2:3", "key 'a' is already an integer (defined at 1:5), not an array of tables");
    bad("a = [1]\n[[a]]\n", "2:3", "already an array");
    bad("fruits = []\n[[fruits]]\n", "2:3", "not an array of tables");
    bad("[a]\n[[a]]\n", "2:3", "already a table");
    bad("[[a]]\n[a]\n", "2:2", "already an array of tables");
    bad("[fruit.physical]\ncolor = \"red\"\n[[fruit]]\n", "3:3", "'fruit' is already a table");
    bad("[[fruits]]\nname = \"apple\"\n[[fruits.varieties]]\nname = \"red delicious\"\n[fruits.varieties]\n", "5:9",
        "'fruits.varieties' is already an array of tables");
    bad("[fruits.physical]\ncolor = \"red\"\n[[fruits.physical]]\n", "3:10", "already a table");
    bad("a = [{b = 1}]\n[a.c]\n", "2:2", "'a' is already an array");
    bad("a = 1\n[a.b]\n", "2:2", "'a' is already an integer");
    bad("[[a]]\nb = {}\n[a.b]\n", "3:4", "inline table 'a.b'");
}

Test(toml, invalid_strings) {
    bad("a = \"\\q\"\n", "1:6", "invalid escape sequence '\\q'");
    bad("a = \"\\x41\"\n", "1:6", "invalid escape sequence '\\x'");
    bad("a = \"\\e\"\n", "1:6", "invalid escape sequence '\\e'");
    bad("a = \"ok \\ \"\n", "1:9", "invalid escape");
    bad("a = \"\\u12\"\n", "1:6", "\\u needs 4 hexadecimal digits");
    bad("a = \"\\U0001F60\"\n", "1:6", "\\U needs 8 hexadecimal digits");
    bad("a = \"\\uD800\"\n", "1:6", "not a Unicode scalar value");
    bad("a = \"\\U00110000\"\n", "1:6", "not a Unicode scalar value");
    bad("a = \"\"\"\\ x\"\"\"\n", "1:8", "invalid escape");
    bad("a = \"abc\n", "1:5", "unterminated string");
    bad("a = \"abc\nb = 1\n", "1:5", "unterminated string");
    bad("a = \"abc", "1:5", "unterminated string");
    bad("a = 'abc\n", "1:5", "unterminated literal string");
    bad("x = 1\na = \"\"\"abc\n\n", "2:5", "unterminated multi-line string");
    bad("x = 1\na = '''abc\n\n", "2:5", "unterminated multi-line string");
    bad("a = \"\"\"x\"\"\"\"\"\"\n", "1:9", "6 quotes in a row");
    bad("a = \"x\x01y\"\n", "1:7", "control character U+0001");
    bad("a = 'x\x7fy'\n", "1:7", "control character U+007F");
    bad("a = \"\"\"x\ry\"\"\"\n", "1:9", "control character U+000D");
    bad_len("a = \"x\0\"\n", 9, "1:7", "control character U+0000");
    bad("# ok\n# a\x7f\n", "2:4", "control character U+007F is not allowed in a comment");
    bad("a = \"\xff\"\n", "1:6", "invalid UTF-8");
    bad("a = 1\n\xc3\xa9\xed\xa0\x80 = 1\n", "2:2", "invalid UTF-8"); /* an encoded surrogate */
    bad("\"\"\"a\"\"\" = 1\n", "1:1", "a multi-line string cannot be a key");
    bad("k = \"\xc3\xa9\xc3\xa9\" x\n", "1:10", "expected a newline or a comment after the value, found 'x'");
}

Test(toml, invalid_numbers) {
    bad("a = 012\n", "1:5", "leading zeros are not allowed in '012'");
    bad("a = -012\n", "1:5", "leading zeros");
    bad("a = 00.5\n", "1:5", "leading zeros");
    bad("a = 0_1\n", "1:5", "leading zeros");
    bad("a = 1__2\n", "1:5", "underscores must be between digits");
    bad("a = 1_\n", "1:5", "underscores must be between digits");
    bad("a = 1_.5\n", "1:5", "underscores");
    bad("a = 1._5\n", "1:5", "underscores");
    bad("a = 1e_5\n", "1:5", "underscores");
    bad("a = 0x_1\n", "1:5", "underscores");
    bad("a = _1\n", "1:5", "invalid value '_1'");
    bad("a = 1.\n", "1:5", "a decimal point must be followed by digits");
    bad("a = 1.e5\n", "1:5", "a decimal point must be followed by digits");
    bad("a = .5\n", "1:5", "invalid value '.5'");
    bad("a = 1e\n", "1:5", "the exponent has no digits");
    bad("a = 1e+\n", "1:5", "the exponent has no digits");
    bad("a = 1.5.3\n", "1:5", "invalid number");
    bad("a = +0x1\n", "1:5", "a sign is not allowed on a hexadecimal integer");
    bad("a = -0b1\n", "1:5", "binary");
    bad("a = 0X1\n", "1:5", "invalid number '0X1'");
    bad("a = 0xG\n", "1:5", "invalid hexadecimal integer");
    bad("a = 0o8\n", "1:5", "invalid octal integer");
    bad("a = 0b2\n", "1:5", "invalid binary integer");
    bad("a = 0x\n", "1:5", "invalid hexadecimal integer");
    bad("a = 9223372036854775808\n", "1:5", "does not fit in 64 bits");
    bad("a = -9223372036854775809\n", "1:5", "does not fit in 64 bits");
    bad("a = 0x8000000000000000\n", "1:5", "does not fit in 64 bits");
    bad("a = 1e400\n", "1:5", "out of range");
    bad("a = Inf\n", "1:5", "invalid value 'Inf'");
    bad("a = infinity\n", "1:5", "invalid value");
    bad("a = 1__000.0\n", "1:5", "underscores");
    bad("a = 1,\n", "1:6", "expected a newline");
}

Test(toml, invalid_values_and_syntax) {
    /* keys */
    bad("a$b = 1\n", "1:2", "invalid character '$' in bare key 'a'");
    bad("ke y = 1\n", "1:4", "expected '=' after the key 'ke', found 'y'");
    bad("\xc3\xa9 = 1\n", "1:1", "expected a key, found U+00E9");
    bad("= 1\n", "1:1", "expected a key, found '='");
    bad("a. = 1\n", "1:4", "expected a key");
    bad("a..b = 1\n", "1:3", "expected a key");
    bad("a 1\n", "1:3", "expected '='");
    bad("a\n", "1:2", "expected '=' after the key 'a', found a newline");
    bad("[a$]\n", "1:3", "invalid character '$'");
    /* missing values */
    bad("a =\n", "1:4", "missing value for the key 'a'");
    bad("a = # comment\n", "1:5", "missing value for the key 'a'");
    bad("a = ", "1:5", "missing value");
    bad("[t]\nx.y = \n", "2:7", "missing value for the key 't.x.y'");
    bad("a = {b = }\n", "1:10", "missing value for the key 'a.b'");
    /* bare words */
    bad("a = abc\n", "1:5", "invalid value 'abc' (strings must be quoted)");
    bad("a = true2\n", "1:5", "invalid value 'true2'");
    bad("a = TRUE\n", "1:5", "invalid value 'TRUE'");
    bad("a = 1 2\n", "1:7", "expected a newline or a comment after the value, found '2'");
    bad("a = \"x\" \"y\"\n", "1:9", "expected a newline");
    bad("a = 1\rb = 2\n", "1:6", "found U+000D");
    bad("a = $\n", "1:5", "expected a value, found '$'");
    /* inline tables */
    bad("a = {b = 1,}\n", "1:12", "a trailing comma is not allowed in an inline table");
    bad("a = {b = 1, }\n", "1:13", "trailing comma");
    bad("a = {b = 1,\n c = 2}\n", "1:12", "a newline is not allowed in an inline table");
    bad("a = {\n}\n", "1:6", "a newline is not allowed in an inline table");
    bad("a = {b = 1\n}\n", "1:11", "a newline is not allowed");
    bad("a = {b = 1 # c\n}\n", "1:12", "a comment is not allowed in an inline table");
    bad("a = {b = 1 c = 2}\n", "1:12", "expected ',' or '}' in an inline table, found 'c'");
    bad("a = {b = 1", "1:11", "unterminated inline table (opened at 1:5)");
    bad("a = {,}\n", "1:6", "expected a key, found ','");
    /* arrays */
    bad("a = [1 2]\n", "1:8", "expected ',' or ']' in an array, found '2'");
    bad("a = [1,,2]\n", "1:8", "expected a value, found ','");
    bad("a = [,]\n", "1:6", "expected a value, found ','");
    bad("a = [1,2", "1:9", "unterminated array (opened at 1:5)");
    bad("a = [1,\n2\n", "3:1", "unterminated array (opened at 1:5)");
    bad("a = [1 # c ]\n", "2:1", "unterminated array");
    /* headers */
    bad("[a\nb = 1\n", "1:3", "expected ']' to close the table header, found a newline");
    bad("[]\n", "1:2", "expected a key, found ']'");
    bad("[[a]\n", "1:4", "expected ']]' to close the array-of-tables header");
    bad("[[a] ]\n", "1:4", "expected ']]'");
    bad("[ [a]]\n", "1:3", "expected a key, found '['");
    bad("[a] b = 1\n", "1:5", "expected a newline or a comment after the header, found 'b'");
    bad("[a]]\n", "1:4", "found ']'");
    bad("[\"\"\"a\"\"\"]\n", "1:2", "multi-line string cannot be a key");
    /* date-times */
    bad("a = 1979-13-01\n", "1:5", "invalid date-time '1979-13-01'");
    bad("a = 2023-02-29\n", "1:5", "invalid date-time");
    bad("a = 1979-04-31\n", "1:5", "invalid date-time");
    bad("a = 1979-05-27T25:00:00\n", "1:5", "invalid date-time");
    bad("a = 1979-05-27T07:60:00\n", "1:5", "invalid date-time");
    bad("a = 07:32\n", "1:5", "invalid date-time '07:32'");
    bad("a = 1979-05-27T07:32:00+7:00\n", "1:5", "invalid date-time");
    bad("a = 1979-05-27T07:32:00.Z\n", "1:5", "invalid date-time");
    bad("a = 07:32:00Z\n", "1:5", "invalid date-time");
    bad("a = 1979-5-27\n", "1:5", "invalid date-time");
    bad("a = 1979-05-27X07:32:00\n", "1:5", "invalid date-time");
    /* the file name may be NULL */
    oh_err e;
    toml_value *v;
    cr_expect_eq(toml_parse("a = ", 4, NULL, &v, &e), -1);
    cr_expect(strncmp(e.msg, "<toml>:1:5: ", 12) == 0, "%s", e.msg);
}

/* Every prefix of a valid document either parses or fails with a position,
 * never crashes (run under a sanitizer to see the leaks and overruns). */
Test(toml, every_prefix_parses_or_fails_cleanly) {
    const char *doc = "# c\na = \"s\\u00e9\\n\" # x\nb.c = [1, 2.5e3, 'x', {d = true, e = 1979-05-27T07:32:00Z}]\n"
                      "m = \"\"\"\nline \\\n  two\"\"\"\nl = '''\nraw'''\n[t.u]\nv = 0x1F\n[[arr]]\nw = -inf\n"
                      "[[arr]]\nx = { y = [[]] }\n";
    size_t n = strlen(doc);
    for (size_t k = 0; k <= n; k++) {
        toml_value *v = NULL;
        oh_err e = {{0}};
        int r = toml_parse(doc, k, "p.toml", &v, &e);
        if (r == 0) {
            cr_expect(v != NULL);
            toml_free(v);
        } else {
            cr_expect(v == NULL);
            cr_expect(strncmp(e.msg, "p.toml:", 7) == 0, "prefix %zu: %s", k, e.msg);
        }
    }
}

/* A long one-line array parses in linear time (columns are counted incrementally). */
Test(toml, long_lines_and_documents, .timeout = 20) {
    oh_buf b = {0};
    oh_buf_puts(&b, "a = [");
    for (int i = 0; i < 200000; i++) oh_buf_printf(&b, "%d, ", i);
    oh_buf_puts(&b, "\"\xc3\xa9\"]\n");
    for (int i = 0; i < 2000; i++) oh_buf_printf(&b, "[t%d]\nx = %d\n", i, i);
    oh_buf_puts(&b, "b = $\n");
    toml_value *v = NULL;
    oh_err e = {{0}};
    cr_assert_eq(toml_parse(b.p, b.n, "big.toml", &v, &e), -1);
    cr_expect(strncmp(e.msg, "big.toml:4002:5: ", 17) == 0, "%s", e.msg);
    b.n -= strlen("b = $\n");
    cr_assert_eq(toml_parse(b.p, b.n, "big.toml", &v, &e), 0, "%s", e.msg);
    cr_expect_eq(toml_len(toml_get(v, "a")), 200001);
    cr_expect_eq(toml_get_path(v, "a[199999]")->u.i, 199999);
    cr_expect_eq(toml_get_path(v, "a[200000]")->col, 5 + 1488890 + 1);
    toml_free(v);
    oh_buf_free(&b);
}

/* ---------------------------------------------------------------- files */

Test(toml, parse_file) {
    char path[] = "/tmp/oh_test_toml_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    const char *doc = "[train]\nlr = 2e-5\nlr = 1\n";
    cr_assert_eq(write(fd, doc, strlen(doc)), (ssize_t)strlen(doc));
    close(fd);
    toml_value *v = (toml_value *)1;
    oh_err e = {{0}};
    cr_expect_eq(toml_parse_file(path, &v, &e), -1);
    cr_expect_null(v);
    char want[128];
    snprintf(want, sizeof want, "%s:3:1: duplicate key 'train.lr'", path);
    cr_expect(strncmp(e.msg, want, strlen(want)) == 0, "%s", e.msg);
    doc = "[train]\nlr = 2e-5\n";
    fd = open(path, O_WRONLY | O_TRUNC);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, doc, strlen(doc)), (ssize_t)strlen(doc));
    close(fd);
    cr_assert_eq(toml_parse_file(path, &v, &e), 0, "%s", e.msg);
    cr_expect_eq(float_at(v, "train.lr"), 2e-5);
    toml_free(v);
    unlink(path);
    cr_expect_eq(toml_parse_file("/nonexistent/recipe.toml", &v, &e), -1);
    cr_expect(strstr(e.msg, "/nonexistent/recipe.toml") != NULL, "%s", e.msg);
}

/* ---------------------------------------------------------------- lookup */

Test(toml, get_path) {
    toml_value *r = ok("a.\"b.c\".d = 1\n[x]\ny = [[1, 2], [3]]\n[[x.z]]\nw = 'first'\n[[x.z]]\nw = 'second'\n");
    cr_expect_eq(int_at(r, "a.\"b.c\".d"), 1);
    cr_expect_eq(int_at(r, "a . 'b.c' . d"), 1);
    cr_expect_null(toml_get_path(r, "a.b.c.d"));
    cr_expect_eq(int_at(r, "x.y[1][0]"), 3);
    cr_expect_null(toml_get_path(r, "x.y[2]"));
    cr_expect_null(toml_get_path(r, "x.y[0][5]"));
    cr_expect_str_eq(str_at(r, "x.z[1].w"), "second");
    cr_expect_eq(toml_get_path(r, "x.z")->type, TOML_ARRAY);
    cr_expect_null(toml_get_path(r, "x.z.w"));     /* a key on an array */
    cr_expect_null(toml_get_path(r, "x[0]"));      /* an index on a table */
    cr_expect_null(toml_get_path(r, "x.y[0].q"));  /* a key on an array item that is an array */
    cr_expect_null(toml_get_path(r, "a..b"));      /* malformed paths */
    cr_expect_null(toml_get_path(r, ""));
    cr_expect_null(toml_get_path(r, "x.y["));
    cr_expect_null(toml_get_path(r, "x.y[a]"));
    cr_expect_null(toml_get_path(r, "x.y]"));
    cr_expect_null(toml_get_path(NULL, "x"));
    cr_expect_null(toml_get(NULL, "x"));
    cr_expect_null(toml_get(toml_get(r, "x"), "y.q"));
    cr_expect_eq(toml_len(NULL), 0);
    cr_expect_eq(toml_len(toml_get_path(r, "a.\"b.c\".d")), 0);
    cr_expect_null(toml_as_str(toml_get_path(r, "a.\"b.c\".d")));
    cr_expect_str_eq(toml_type_name(TOML_DATETIME), "datetime");
    cr_expect_str_eq(toml_type_name(TOML_INT), "integer");
    toml_free(r);
}

Test(toml, build_and_set_in_place) {
    toml_value *t = toml_new_table();
    toml_table_set(t, "b", toml_new_int(1));
    toml_table_set(t, "a", toml_new_string("x\0y", 3));
    toml_table_set(t, "c", toml_new_bool(true));
    toml_table_set(t, "b", toml_new_float(2.5)); /* replaces, keeps its place */
    toml_value *arr = toml_new_array();
    toml_array_push(arr, toml_new_int(7));
    toml_array_push(arr, toml_new_table());
    toml_table_set(t, "arr", arr);
    cr_assert_eq(toml_len(t), 4);
    cr_expect_str_eq(toml_table_entry(t, 0)->key, "b");
    cr_expect_eq(float_at(t, "b"), 2.5);
    cr_expect_eq(toml_get(t, "a")->u.str.len, 3);
    cr_expect_eq(toml_get(t, "a")->line, 0);
    cr_expect(bool_at(t, "c"));
    cr_expect_eq(int_at(t, "arr[0]"), 7);
    round_trip(t);
    toml_free(t);
}

/* ---------------------------------------------------------------- --set */

static void set_ok(toml_value *r, const char *path, const char *text) {
    oh_err e = {{0}};
    cr_assert_eq(toml_set_path(r, path, text, &e), 0, "--set %s=%s: %s", path, text, e.msg);
}

Test(toml, set_path_values) {
    toml_value *r = ok("[train]\nlr = 1e-4\nsteps = 10\n[model]\npath = \"/old\"\n");
    set_ok(r, "train.lr", "1e-5");
    cr_expect_eq(float_at(r, "train.lr"), 1e-5);
    cr_expect_eq(toml_get_path(r, "train.lr")->line, 0, "a --set value has no line");
    cr_expect_eq(toml_table_entry(toml_get(r, "train"), 0)->line, 0);
    cr_expect_str_eq(toml_table_entry(toml_get(r, "train"), 0)->key, "lr", "replaced in place");
    set_ok(r, "train.steps", "2_000");
    cr_expect_eq(int_at(r, "train.steps"), 2000);
    set_ok(r, "train.flag", "true");
    cr_expect(bool_at(r, "train.flag"));
    set_ok(r, "model.path", "/data/x");
    cr_expect_str_eq(str_at(r, "model.path"), "/data/x");
    set_ok(r, "model.name", "\"quoted text\"");
    cr_expect_str_eq(str_at(r, "model.name"), "quoted text");
    set_ok(r, "model.lit", "'C:\\x'");
    cr_expect_str_eq(str_at(r, "model.lit"), "C:\\x");
    set_ok(r, "model.plain", "hello world");
    cr_expect_str_eq(str_at(r, "model.plain"), "hello world");
    set_ok(r, "model.version", "1.2.3");
    cr_expect_str_eq(str_at(r, "model.version"), "1.2.3");
    set_ok(r, "model.empty", "");
    cr_expect_str_eq(str_at(r, "model.empty"), "");
    set_ok(r, "model.broken", "[1, 2");
    cr_expect_str_eq(str_at(r, "model.broken"), "[1, 2");
    set_ok(r, "model.spaced", "  42  ");
    cr_expect_eq(int_at(r, "model.spaced"), 42);
    set_ok(r, "model.list", "[1, 2]");
    cr_expect_eq(toml_len(toml_get_path(r, "model.list")), 2);
    cr_expect_eq(int_at(r, "model.list[1]"), 2);
    cr_expect_eq(toml_get_path(r, "model.list[1]")->line, 0);
    set_ok(r, "model.tbl", "{a = 1, b.c = 'x'}");
    cr_expect_str_eq(str_at(r, "model.tbl.b.c"), "x");
    set_ok(r, "model.when", "1979-05-27");
    cr_expect_eq(toml_get_path(r, "model.when")->type, TOML_DATETIME);
    set_ok(r, "model.hex", "0x10");
    cr_expect_eq(int_at(r, "model.hex"), 16);
    set_ok(r, "model.neg", "-inf");
    cr_expect(isinf(float_at(r, "model.neg")));
    /* new intermediate tables */
    set_ok(r, "lora.target.rank", "16");
    cr_expect_eq(int_at(r, "lora.target.rank"), 16);
    cr_expect_eq(toml_get(r, "lora")->type, TOML_TABLE);
    set_ok(r, "\"odd key\".x", "1");
    cr_expect_eq(int_at(r, "'odd key'.x"), 1);
    /* a value replaced by a table's worth of keys: the value must be a table */
    set_ok(r, "lora", "{rank = 8}");
    cr_expect_eq(int_at(r, "lora.rank"), 8);
    cr_expect_null(toml_get_path(r, "lora.target"));
    /* the result still dumps to valid TOML */
    round_trip(r);
    toml_free(r);
}

Test(toml, set_path_arrays) {
    toml_value *r = ok("[[data.sources]]\npath = 'a'\nweight = 1.0\n[[data.sources]]\npath = 'b'\n");
    set_ok(r, "data.sources[1].weight", "0.5");
    cr_expect_eq(float_at(r, "data.sources[1].weight"), 0.5);
    set_ok(r, "data.sources[0].path", "/x/y.jsonl");
    cr_expect_str_eq(str_at(r, "data.sources[0].path"), "/x/y.jsonl");
    set_ok(r, "data.sources[2].path", "c");  /* append */
    cr_expect_eq(toml_len(toml_get_path(r, "data.sources")), 3);
    cr_expect_str_eq(str_at(r, "data.sources[2].path"), "c");
    set_ok(r, "data.sources[0]", "{path = 'z'}");
    cr_expect_str_eq(str_at(r, "data.sources[0].path"), "z");
    cr_expect_null(toml_get_path(r, "data.sources[0].weight"));
    set_ok(r, "data.list[0]", "5");          /* a new array */
    cr_expect_eq(int_at(r, "data.list[0]"), 5);
    set_ok(r, "data.list[1]", "6");
    cr_expect_eq(int_at(r, "data.list[1]"), 6);
    set_ok(r, "data.grid[0][0]", "1");
    cr_expect_eq(int_at(r, "data.grid[0][0]"), 1);
    round_trip(r);
    toml_free(r);
}

Test(toml, set_path_errors) {
    toml_value *r = ok("[train]\nlr = 1e-4\nbetas = [0.9, 0.95]\n");
    char *before = toml_dump(r);
    struct { const char *path, *value, *needle; } cases[] = {
        {"train.lr.x", "1", "train.lr.x: train.lr is a float, not a table"},
        {"train.betas.x", "1", "train.betas is an array, not a table"},
        {"train[0]", "1", "train is a table, not an array"},
        {"train.betas[5]", "1", "index 5 is out of range (train.betas has 2 items)"},
        {"train.betas[3].x", "1", "index 3 is out of range"},
        {"train.new[1]", "1", "a new array can only start at index 0"},
        {"train.new[0][2]", "1", "a new array can only start at index 0"},
        {"train..lr", "1", "invalid key path 'train..lr' (column 7): expected a key, found '.'"},
        {"", "1", "invalid key path"},
        {"train.lr x", "1", "expected '.' or '['"},
        {"train.betas[x]", "1", "expected an index"},
        {"train.\"lr", "1", "unterminated string"},
        {"train.lr", "\xff", "not valid UTF-8"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        oh_err e = {{0}};
        cr_expect_eq(toml_set_path(r, cases[i].path, cases[i].value, &e), -1, "accepted %s", cases[i].path);
        cr_expect(strstr(e.msg, cases[i].needle) != NULL, "--set %s: wanted \"%s\" in: %s", cases[i].path,
                  cases[i].needle, e.msg);
    }
    char *after = toml_dump(r);
    cr_expect_str_eq(after, before, "a failed --set changed the tree");
    free(before);
    free(after);
    toml_free(r);
}

/* ---------------------------------------------------------------- dump */

Test(toml, dump_round_trip_of_spec_examples) {
    const char *doc =
        "# This is a TOML document\n"
        "title = \"TOML Example\"\n"
        "[owner]\nname = \"Tom Preston-Werner\"\ndob = 1979-05-27T07:32:00-08:00\n"
        "[database]\nenabled = true\nports = [ 8000, 8001, 8002 ]\ndata = [ [\"delta\", \"phi\"], [3.14] ]\n"
        "temp_targets = { cpu = 79.5, case = 72.0 }\n"
        "[servers]\n[servers.alpha]\nip = \"10.0.0.1\"\nrole = \"frontend\"\n"
        "[servers.beta]\nip = \"10.0.0.2\"\nrole = \"backend\"\n"
        "[[fruits]]\nname = \"apple\"\n[fruits.physical]\ncolor = \"red\"\nshape = \"round\"\n"
        "[[fruits.varieties]]\nname = \"red delicious\"\n[[fruits.varieties]]\nname = \"granny smith\"\n"
        "[[fruits]]\nname = \"banana\"\n[[fruits.varieties]]\nname = \"plantain\"\n"
        "[[fruits]]\n"
        "[misc]\n"
        "\"key with spaces\" = 'v'\n\"\" = \"empty key\"\n\"ʎǝʞ\" = 1\n\"a.b\" = 2\n"
        "esc = \"tab\\t nl\\n cr\\r bs\\b ff\\f q\\\" bsl\\\\ nul\\u0000 del\\u007f \\u00e9\"\n"
        "ml = \"\"\"\nmulti\nline\"\"\"\n"
        "ints = [0, -1, 9223372036854775807, -9223372036854775808, 0xff]\n"
        "floats = [0.1, -0.0, 1e300, 5e-324, 1.7976931348623157e308, 123456789.0, 1e22, inf, -inf, nan, 3.0]\n"
        "dates = [1979-05-27, 07:32:00.5, 1979-05-27 07:32:00Z, 1979-05-27T07:32:00]\n"
        "mixed = [1, 'a', {x = [{y = 1}]}, [], {}]\n"
        "tables_in_array = [{a = 1}, {b = {c = 2}}]\n"
        "empty_table = {}\n"
        "nested.deep.value = 1\n"
        "only.sub.tables.here = true\n";
    toml_value *r = ok(doc);
    round_trip(r);
    toml_free(r);
}

Test(toml, dump_text) {
    toml_value *r = ok("b.c = 1\nx = \"it's\"\n\"q k\" = 0.1\n[t]\nf = 3.0\ng = 1e-5\nh = [1, {a = 2, 'z z' = \"\\u0001\"}]\n"
                       "big = 1e300\nneg = -2.5e-8\nn = -nan\ni = +inf\nz = -0.0\nw = 100.0\nm = 1e15\nl = 1e17\nu = 0.00012\n"
                       "[[t.arr]]\nk = 1\n[[t.arr]]\n[e]\n[only.sub]\nv = true\n");
    char *s = toml_dump(r);
    cr_expect_str_eq(s, "x = \"it's\"\n"
                        "\"q k\" = 0.1\n"
                        "\n[b]\n"
                        "c = 1\n"
                        "\n[t]\n"
                        "f = 3.0\n"
                        "g = 1e-5\n"
                        "h = [1, { a = 2, \"z z\" = \"\\u0001\" }]\n"
                        "big = 1e300\n"
                        "neg = -2.5e-8\n"
                        "n = nan\n"
                        "i = inf\n"
                        "z = -0.0\n"
                        "w = 100.0\n"
                        "m = 1000000000000000.0\n"
                        "l = 1e17\n"
                        "u = 0.00012\n"
                        "\n[[t.arr]]\n"
                        "k = 1\n"
                        "\n[[t.arr]]\n"
                        "\n[e]\n"
                        "\n[only.sub]\n"
                        "v = true\n");
    free(s);
    toml_free(r);
    /* a value that is not a table dumps as it would follow `key = ` */
    toml_value *v = toml_new_string("a\"b", 3);
    s = toml_dump(v);
    cr_expect_str_eq(s, "\"a\\\"b\"");
    free(s);
    toml_free(v);
}

Test(toml, equal) {
    toml_value *a = ok("x = 1\ny = [1, 2.0, 'a']\n[t]\nz = nan\n");
    toml_value *b = ok("[t]\nz = nan\n[u]\n");
    cr_expect(!toml_equal(a, b));
    toml_value *c = ok("y = [1, 2.0, \"a\"]\nt.z = nan\nx = 1\n");
    cr_expect(toml_equal(a, c), "tables compare regardless of key order");
    toml_value *d = ok("y = [1, 2, \"a\"]\nt.z = nan\nx = 1\n");
    cr_expect(!toml_equal(a, d), "2.0 is not 2");
    toml_value *e = ok("y = [2.0, 1, \"a\"]\nt.z = nan\nx = 1\n");
    cr_expect(!toml_equal(a, e), "arrays compare in order");
    toml_value *f = ok("d = 1979-05-27T07:32:00Z\n");
    toml_value *g = ok("d = 1979-05-27t07:32:00z\n");
    cr_expect(!toml_equal(f, g), "date-times compare by text");
    cr_expect(toml_equal(NULL, NULL));
    cr_expect(!toml_equal(a, NULL));
    toml_free(a); toml_free(b); toml_free(c); toml_free(d); toml_free(e); toml_free(f); toml_free(g);
}
