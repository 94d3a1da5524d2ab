// test_config_set.c: `--set path=value` overrides. Reference: an override must give the same
// message (packed bytes) as the file reader given the equivalent JSON document, and bad paths
// and values must fail with a message naming `--set path` and what was expected.
#include "config.h"

#include <string.h>

static int failures = 0;

static uint8_t *pack(const ProtobufCMessage *m, size_t *n) {
    *n = protobuf_c_message_get_packed_size(m);
    uint8_t *b = malloc(*n ? *n : 1);
    MOE_ASSERT(b);
    protobuf_c_message_pack(m, b);
    return b;
}

// Applies `sets` to a Config parsed from `start`, and compares with the Config parsed from
// `expect` (the same document written by hand).
static void check_good(const char *start, const char *const *sets, int n_sets, const char *expect) {
    ProtobufCMessage *a, *b;
    MOE_ASSERT(moe_json_parse_message("start", start, strlen(start), &moe__config__descriptor,
                                      &a) == MOE_OK);
    MOE_ASSERT(moe_json_parse_message("expect", expect, strlen(expect), &moe__config__descriptor,
                                      &b) == MOE_OK);
    for (int i = 0; i < n_sets; i++) {
        if (moe_config_set((Moe__Config *)a, sets[i]) != MOE_OK) {
            fprintf(stderr, "FAIL --set %s: expected success, got: %s\n", sets[i],
                    moe_last_error());
            failures++;
            goto done;
        }
    }
    size_t na, nb;
    uint8_t *pa = pack(a, &na), *pb = pack(b, &nb);
    if (na != nb || memcmp(pa, pb, na)) {
        char *ja = moe_json_format_message(a, MOE_JSON_COMPACT);
        fprintf(stderr, "FAIL --set %s%s:\n  expected %s\n  got      %s\n", sets[0],
                n_sets > 1 ? " (and more)" : "", expect, ja);
        free(ja);
        failures++;
    }
    free(pa);
    free(pb);
done:
    protobuf_c_message_free_unpacked(a, NULL);
    protobuf_c_message_free_unpacked(b, NULL);
}

static void check_bad(const char *set, const char *frag1, const char *frag2) {
    Moe__Config *cfg = moe_config_new_default();
    moe_status st = moe_config_set(cfg, set);
    const char *msg = moe_last_error();
    if (st == MOE_OK) {
        fprintf(stderr, "FAIL --set %s: expected an error containing \"%s\", got success\n", set,
                frag1);
        failures++;
    } else if (!strstr(msg, frag1) || (frag2 && !strstr(msg, frag2))) {
        fprintf(stderr,
                "FAIL --set %s:\n  expected a message containing \"%s\"%s%s%s\n  got \"%s\"\n", set,
                frag1, frag2 ? " and \"" : "", frag2 ? frag2 : "", frag2 ? "\"" : "", msg);
        failures++;
    }
    // A failed override leaves a config that still packs, formats and frees cleanly.
    size_t n;
    free(pack(&cfg->base, &n));
    free(moe_json_format_message(&cfg->base, MOE_JSON_DEFAULTS));
    moe_config_free(cfg);
}

#define GOOD(start, expect, ...)                                                                   \
    do {                                                                                           \
        const char *s_[] = {__VA_ARGS__};                                                          \
        check_good(start, s_, (int)(sizeof s_ / sizeof s_[0]), expect);                            \
    } while (0)

int main(void) {
    // Scalars of every kind, both spellings, sub-messages created on the way.
    GOOD("{}", "{\"model\":{\"top_k\":4}}", "model.top_k=4");
    GOOD("{}", "{\"model\":{\"top_k\":5}}", "model.topK=5");
    GOOD("{}", "{\"model\":{\"top_k\":5}}", "model.top_k=\"5\"");
    GOOD("{}", "{\"model\":{\"vocab_size\":9223372036854775807}}",
         "model.vocabSize=9223372036854775807");
    GOOD("{}", "{\"train\":{\"seed\":\"18446744073709551615\"}}",
         "train.seed=18446744073709551615");
    GOOD("{}", "{\"train\":{\"lr\":0.001}}", "train.lr=1e-3");
    GOOD("{}", "{\"train\":{\"lr\":\"NaN\"}}", "train.lr=NaN");
    GOOD("{}", "{\"router\":{\"scoring\":\"sigmoid\"}}", "router.scoring=sigmoid");
    GOOD("{}", "{\"router\":{\"scoring\":\"sigmoid\"}}", "router.scoring=\"sigmoid\"");
    GOOD("{}", "{\"router\":{\"scoring\":1}}", "router.scoring=1");
    GOOD("{}", "{\"parallel\":{\"overlap\":true}}", "parallel.overlap=true");
    GOOD("{}", "{\"name\":\"hello world\"}", "name=hello world");
    GOOD("{}", "{\"name\":\"a=b\"}", "name=a=b");
    GOOD("{}", "{\"name\":\"\"}", "name=");
    GOOD("{}", "{\"name\":\"3\",\"out_dir\":\"true\"}", "name=3", "out_dir=true");
    GOOD("{}", "{\"name\":\"null\"}", "name=\"null\"");
    GOOD("{}", "{\"name\":\"caf\\u00e9\"}", "name=café");
    GOOD("{}", "{\"data\":{\"path\":\"/tmp/x y.bin\"}}", "data.path=/tmp/x y.bin");
    // Repeated fields are replaced, never appended.
    GOOD("{\"model\":{\"dense_layers\":[7,8]}}", "{\"model\":{\"dense_layers\":[1,2,3]}}",
         "model.dense_layers=[1,2,3]");
    GOOD("{\"model\":{\"dense_layers\":[7,8]}}", "{\"model\":{}}", "model.dense_layers=[]");
    GOOD("{}", "{\"lora\":{\"targets\":[\"experts\",\"router\"]}}", "lora.targets=[\"experts\",4]");
    // A JSON object merges into the sub-message; null clears a field.
    GOOD("{\"model\":{\"top_k\":3,\"n_experts\":4}}",
         "{\"model\":{\"top_k\":3,\"n_experts\":8,\"d_model\":64}}",
         "model={\"n_experts\":8,\"dModel\":64}");
    GOOD("{\"model\":{\"top_k\":3,\"n_experts\":4}}", "{\"model\":{\"n_experts\":4}}",
         "model.top_k=null");
    GOOD("{\"name\":\"x\"}", "{}", "name=null");
    // ...but a sub-message of the Config stays present, reset to its defaults.
    GOOD("{\"model\":{\"top_k\":3}}", "{\"model\":{}}", "model=null");
    GOOD("{\"model\":{\"dense_layers\":[1]}}", "{\"model\":{}}", "model.dense_layers=null");
    // Later overrides win.
    GOOD("{}", "{\"model\":{\"top_k\":2}}", "model.top_k=9", "model.topK=2");

    // Bad paths and values: the message names --set and the path, and what was expected.
    check_bad("model.topk=3",
              "--set model.topk: unknown field \"topk\" in moe.ModelConfig (at model)",
              "did you mean \"top_k\"?");
    check_bad("modle.top_k=3", "unknown field \"modle\" in moe.Config (at top level)",
              "did you mean \"model\"?");
    check_bad("model.topKK=3", "unknown field \"topKK\"", "did you mean \"topK\"?");
    check_bad("zzzzzzzzzzzz=3", "unknown field \"zzzzzzzzzzzz\"", "known fields: name, model");
    check_bad("model.top_k=abc",
              "--set model.top_k: expected an integer in [-2147483648, 2147483647]", "got \"abc\"");
    check_bad("model.top_k=1.5", "--set model.top_k: expected an integer", "got 1.5");
    check_bad("model.top_k=1e12", "--set model.top_k: expected an integer", "got 1e12");
    check_bad("model.top_k=true", "--set model.top_k: expected an integer", "got true");
    check_bad("train.seed=-1", "--set train.seed: expected an integer in [0, 18446744073709551615]",
              NULL);
    check_bad("model.top_k.x=1", "--set model.top_k: a scalar field has no fields", NULL);
    check_bad("model.dense_layers.x=1", "--set model.dense_layers: a repeated scalar field", NULL);
    check_bad("model.activation=relu",
              "--set model.activation: expected one of swiglu (0), gelu (1)", "got \"relu\"");
    check_bad("model.activation=7", "--set model.activation: expected one of", "got 7");
    check_bad("router.renormalize=yes", "--set router.renormalize: expected true or false",
              "got \"yes\"");
    check_bad("train.lr=fast", "--set train.lr: expected a number", NULL);
    check_bad("model.dense_layers=3", "--set model.dense_layers: expected a JSON array", NULL);
    check_bad("model.dense_layers=[1,\"x\"]", "--set model.dense_layers[1]: expected an integer",
              "got \"x\"");
    check_bad("model.dense_layers=[1,null]", "--set model.dense_layers[1]: null is not allowed",
              NULL);
    check_bad("model={\"top_k\": 1,}", "--set model: invalid JSON value", NULL);
    check_bad("model=3", "--set model: expected a JSON object (moe.ModelConfig)", NULL);
    // Issue 12 defect 9g: a quoted value that is not valid JSON is an error, not text with quotes.
    check_bad("name=\"\\u0000\"", "--set name: invalid JSON value", "\\u0000");
    check_bad("name=\"unterminated", "--set name: invalid JSON value", NULL);
    check_bad("model={\"topk\":1}", "--set model.topk: unknown field \"topk\"", NULL);
    check_bad("model={\"top_k\":1,\"topK\":2}",
              "--set model.top_k: field given twice, as \"top_k\" and \"topK\"", NULL);
    check_bad("noequals", "--set noequals: expected path.to.field=value", NULL);
    check_bad("=3", "expected path.to.field=value", NULL);
    check_bad("name=[3]", "--set name: expected a string, got [3]", NULL);

    // moe_config_new_default: every sub-message present, holding the schema defaults.
    Moe__Config *cfg = moe_config_new_default();
    if (!cfg->model || !cfg->router || !cfg->train || !cfg->parallel || !cfg->data || !cfg->lora ||
        cfg->model->top_k != 2 || cfg->train->seed != 1234 || cfg->router->aux_loss_coef != 0.01 ||
        strcmp(cfg->out_dir, "runs/default") != 0) {
        fprintf(stderr, "FAIL moe_config_new_default: a sub-message or default is missing\n");
        failures++;
    }
    moe_config_free(cfg);

    if (failures) {
        fprintf(stderr, "%d failed\n", failures);
        return 1;
    }
    printf("test_config_set: all checks passed\n");
    return 0;
}
