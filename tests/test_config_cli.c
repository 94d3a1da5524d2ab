// test_config_cli.c: the built `moe config` on bad configs and bad command lines, table-driven.
// Each case runs the real binary and checks its exit code, that stderr carries the expected
// `file:line:column` (or `--set path`) and message fragment, and that every stderr line is
// prefixed "moe config: ". A few good runs check exit 0, stdout, and "-" (stdin).
//
// usage: test_config_cli MOE_BINARY CONFIGS_DIR   (CONFIGS_DIR holds good/ and bad/)
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
    const char *file; // relative to CONFIGS_DIR ("" for none)
    const char *args[6];
    int code;          // expected exit code
    const char *where; // expected in stderr: "file:line:col:" (stdout for code 0)
    const char *what;  // expected in stderr: a message fragment (stdout for code 0)
    int use_stdin;     // pass "-" and feed the file on stdin
} cli_case;

static const cli_case cases[] = {
    // Unknown fields, with the closest known name.
    {"bad/unknown_field_nested.json",
     {0},
     2,
     "bad/unknown_field_nested.json:3:5: ",
     "unknown field \"topk\" in moe.ModelConfig (at model); did you mean \"top_k\"?",
     0},
    {"bad/unknown_field_top.json",
     {0},
     2,
     "bad/unknown_field_top.json:3:3: ",
     "unknown field \"modle\" in moe.Config (at top level); did you mean \"model\"?",
     0},
    {"bad/unknown_field_router.json",
     {0},
     2,
     "bad/unknown_field_router.json:1:35: ",
     "unknown field \"aux_loss_cof\" in moe.RouterConfig (at router); did you mean "
     "\"aux_loss_coef\"?",
     0},
    // Wrong types.
    {"bad/wrong_type_string_for_int.json",
     {0},
     2,
     "bad/wrong_type_string_for_int.json:1:24: ",
     "model.n_layers: expected an integer in [-2147483648, 2147483647] (int32), got \"four\"",
     0},
    {"bad/wrong_type_number_for_bool.json",
     {0},
     2,
     "bad/wrong_type_number_for_bool.json:1:28: ",
     "router.renormalize: expected true or false, got 1",
     0},
    {"bad/wrong_type_number_for_message.json",
     {0},
     2,
     "bad/wrong_type_number_for_message.json:1:11: ",
     "model: expected a JSON object (moe.ModelConfig), got 5",
     0},
    {"bad/wrong_type_scalar_for_repeated.json",
     {0},
     2,
     "bad/wrong_type_scalar_for_repeated.json:3:21: ",
     "model.dense_layers: expected a JSON array",
     0},
    {"bad/wrong_type_array_element.json",
     {0},
     2,
     "bad/wrong_type_array_element.json:1:35: ",
     "model.dense_layers[2]: expected an integer",
     0},
    {"bad/wrong_type_number_for_string.json",
     {0},
     2,
     "bad/wrong_type_number_for_string.json:1:10: ",
     "name: expected a string, got 42",
     0},
    {"bad/wrong_type_string_for_double.json",
     {0},
     2,
     "bad/wrong_type_string_for_double.json:1:18: ",
     "train.lr: expected a number (or \"NaN\", \"Infinity\", \"-Infinity\"), got \"fast\"",
     0},
    {"bad/null_in_array.json",
     {0},
     2,
     "bad/null_in_array.json:1:32: ",
     "model.dense_layers[1]: null is not allowed",
     0},
    // Out of range.
    {"bad/out_of_range_int32_float.json",
     {0},
     2,
     "bad/out_of_range_int32_float.json:4:14: ",
     "model.top_k: expected an integer in [-2147483648, 2147483647] (int32), got 1e12",
     0},
    {"bad/out_of_range_int32.json",
     {0},
     2,
     "bad/out_of_range_int32.json:1:24: ",
     "model.n_layers: expected an integer in [-2147483648, 2147483647] (int32), got 2147483648",
     0},
    {"bad/negative_uint64.json",
     {0},
     2,
     "bad/negative_uint64.json:1:20: ",
     "train.seed: expected an integer in [0, 18446744073709551615] (uint64), got -1",
     0},
    {"bad/fraction_for_int.json",
     {0},
     2,
     "bad/fraction_for_int.json:1:21: ",
     "train.steps: expected an integer",
     0},
    // Enums.
    {"bad/unknown_enum_name.json",
     {0},
     2,
     "bad/unknown_enum_name.json:1:26: ",
     "model.activation: expected one of swiglu (0), gelu (1) [moe.ModelConfig.Activation], got "
     "\"relu\"",
     0},
    {"bad/unknown_enum_number.json",
     {0},
     2,
     "bad/unknown_enum_number.json:1:25: ",
     "router.strategy: expected one of token_choice (0), expert_choice (1)",
     0},
    {"bad/unknown_enum_in_array.json",
     {0},
     2,
     "bad/unknown_enum_in_array.json:1:47: ",
     "lora.targets[1]: expected one of attention (0), experts (1)",
     0},
    // Malformed JSON (positions from jansson), duplicates, both spellings, top level.
    {"bad/malformed_missing_comma.json",
     {0},
     2,
     "bad/malformed_missing_comma.json:3:9: ",
     "invalid JSON: '}' expected near '\"model\"'",
     0},
    {"bad/malformed_trailing_garbage.json",
     {0},
     2,
     "bad/malformed_trailing_garbage.json:1:17: ",
     "invalid JSON: end of file expected near 'xyz'",
     0},
    {"bad/malformed_unterminated_string.json",
     {0},
     2,
     "bad/malformed_unterminated_string.json:1:13: ",
     "invalid JSON: unexpected newline near '\"abc'",
     0},
    {"bad/malformed_empty.json",
     {0},
     2,
     "bad/malformed_empty.json:1:0: ",
     "invalid JSON: unexpected token near end of file",
     0},
    {"bad/malformed_utf8.json",
     {0},
     2,
     "bad/malformed_utf8.json:1:13: ",
     "invalid JSON: unable to decode byte 0xff",
     0},
    {"bad/duplicate_key.json",
     {0},
     2,
     "bad/duplicate_key.json:3:9: ",
     "invalid JSON: duplicate object key near '\"model\"'",
     0},
    {"bad/both_spellings.json",
     {0},
     2,
     "bad/both_spellings.json:4:5: ",
     "model.top_k: field given twice, as \"top_k\" and \"topK\"; keep one",
     0},
    {"bad/top_level_array.json",
     {0},
     2,
     "bad/top_level_array.json:1:1: ",
     "expected a JSON object (moe.Config) at the top level, got [{\"name\": \"x\"}]",
     0},
    {"bad/top_level_string.json",
     {0},
     2,
     "bad/top_level_string.json:1:1: ",
     "expected a JSON object (moe.Config) at the top level, got \"hello\"",
     0},
    // Invalid combinations (validation), located where the field was written.
    {"bad/invalid_top_k_gt_experts.json",
     {0},
     2,
     "bad/invalid_top_k_gt_experts.json:4:14: ",
     "model.top_k = 8 exceeds model.n_experts = 4; set top_k <= 4",
     0},
    {"bad/invalid_ep_size.json",
     {0},
     2,
     "bad/invalid_ep_size.json:3:26: ",
     "parallel.ep_size = 4 does not divide model.n_experts = 6",
     0},
    {"bad/invalid_heads_d_model.json",
     {0},
     2,
     "bad/invalid_heads_d_model.json:1:39: ",
     "model.n_heads = 8 does not divide model.d_model = 100",
     0},
    {"bad/invalid_kv_heads.json",
     {0},
     2,
     "bad/invalid_kv_heads.json:1:40: ",
     "model.n_kv_heads = 3 does not divide model.n_heads = 8",
     0},
    {"bad/invalid_dense_layers.json",
     {0},
     2,
     "bad/invalid_dense_layers.json:1:47: ",
     "model.dense_layers[1] = 4 is not a layer index",
     0},
    {"bad/invalid_mla.json",
     {0},
     2,
     "bad/invalid_mla.json:1:28: ",
     "model.kv_lora_rank = 64 enables MLA, which needs",
     0},
    {"bad/invalid_warmup.json",
     {0},
     2,
     "bad/invalid_warmup.json:1:28: ",
     "train.warmup_steps = 500 exceeds train.steps = 100",
     0},
    {"bad/invalid_u16_vocab.json",
     {0},
     2,
     "bad/invalid_u16_vocab.json:1:21: ",
     "data.format = u16_tokens stores token ids in 16 bits, but model.vocab_size = 100000",
     0},
    // --set and --world.
    {"good/empty.json",
     {"--set", "model.topk=1"},
     2,
     "--set model.topk: ",
     "unknown field \"topk\" in moe.ModelConfig (at model); did you mean \"top_k\"?",
     0},
    {"good/empty.json",
     {"--set", "model.top_k=abc"},
     2,
     "--set model.top_k: ",
     "expected an integer in [-2147483648, 2147483647] (int32), got \"abc\"",
     0},
    {"good/empty.json",
     {"--set=router.scoring=cosine"},
     2,
     "--set router.scoring: ",
     "expected one of softmax (0), sigmoid (1)",
     0},
    {"good/empty.json",
     {"--set", "model.n_experts=2", "--set", "model.top_k=3"},
     2,
     "--set model.top_k=3: model.top_k = 3",
     "exceeds model.n_experts = 2",
     0},
    // A value the file wrote but an override replaced is blamed on the override.
    {"good/full.json",
     {"--world", "8", "--set", "parallel.epSize=3"},
     2,
     "--set parallel.epSize=3: parallel.ep_size = 3",
     "does not divide model.n_experts",
     0},
    {"good/empty.json",
     {"--world", "3"},
     2,
     "good/empty.json: train.global_batch = 16",
     "is not divisible by the world size 3",
     0},
    {"good/full.json",
     {"--world", "6"},
     2,
     "good/full.json:",
     "parallel.ep_size = 4 does not divide the world size 6",
     0},
    {"bad/invalid_top_k_gt_experts.json", {0}, 2, "<stdin>:4:14: ", "model.top_k = 8 exceeds", 1},
    // 119 problems: as many whole lines as fit, then how many more (not a line cut mid-word).
    {"bad/invalid_many_problems.json",
     {0},
     2,
     "bad/invalid_many_problems.json:4:",
     "\nmoe config: ... and ",
     0},
    // Usage errors.
    {"", {0}, 2, "moe config: missing CONFIG", "usage: moe config", 0},
    {"good/empty.json", {"--set"}, 2, "moe config: --set needs", "path.to.field=value", 0},
    {"good/empty.json", {"--world", "abc"}, 2, "moe config: --world needs", "got abc", 0},
    {"good/empty.json", {"--frobnicate"}, 2, "moe config: unknown option '--frobnicate'", "", 0},
    {"good/empty.json", {"good/full.json"}, 2, "moe config: one CONFIG only", "", 0},
    {"bad/does_not_exist.json",
     {0},
     2,
     "bad/does_not_exist.json: cannot open",
     "check the path",
     0},
    {"bad", {0}, 2, "bad: is a directory, not a config file", "pass the path of a JSON config", 0},
    // Good runs: exit 0, the effective config with defaults on stdout.
    {"good/full.json", {"--world", "8"}, 0, "\"top_k\": 6", "\"out_dir\": \"runs/full\"", 0},
    {"good/empty.json",
     {"--set", "model.n_experts=8", "--set", "router.scoring=sigmoid"},
     0,
     "\"n_experts\": 8",
     "\"scoring\": \"sigmoid\"",
     0},
    {"good/camel_case.json", {0}, 0, "\"vocab_size\": 50304", "\"seed\": 1234", 1},
    {"", {"--help"}, 0, "usage: moe config [CONFIG]", "--set path=value", 0},
};

static char *slurp(int fd) {
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    lseek(fd, 0, SEEK_SET);
    for (ssize_t got; (got = read(fd, buf + n, cap - n - 1)) > 0;) {
        n += (size_t)got;
        if (n + 1 == cap) buf = realloc(buf, cap *= 2);
    }
    buf[n] = '\0';
    return buf;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s MOE_BINARY CONFIGS_DIR\n", argv[0]);
        return 2;
    }
    const char *moe = argv[1], *dir = argv[2];
    int failures = 0, n = (int)(sizeof cases / sizeof cases[0]);
    for (int i = 0; i < n; i++) {
        const cli_case *c = &cases[i];
        char path[2048], label[4096];
        snprintf(path, sizeof path, "%s/%s", dir, c->file);
        const char *av[16];
        int ac = 0;
        av[ac++] = moe;
        av[ac++] = "config";
        if (c->file[0]) av[ac++] = c->use_stdin ? "-" : path;
        size_t lo = (size_t)snprintf(label, sizeof label, "moe config %s%s",
                                     c->use_stdin ? "- < " : "", c->file);
        for (int k = 0; k < 6 && c->args[k]; k++) {
            av[ac++] = c->args[k];
            lo += (size_t)snprintf(label + lo, sizeof label - lo, " %s", c->args[k]);
        }
        av[ac] = NULL;
        char out_t[] = "/tmp/moe-cfgcli-out-XXXXXX", err_t[] = "/tmp/moe-cfgcli-err-XXXXXX";
        int out_fd = mkstemp(out_t), err_fd = mkstemp(err_t);
        if (out_fd < 0 || err_fd < 0) {
            perror("mkstemp");
            return 1;
        }
        unlink(out_t);
        unlink(err_t);
        pid_t pid = fork();
        if (pid == 0) {
            int in_fd = c->use_stdin ? open(path, O_RDONLY) : open("/dev/null", O_RDONLY);
            dup2(in_fd, 0);
            dup2(out_fd, 1);
            dup2(err_fd, 2);
            execv(moe, (char *const *)av);
            _exit(127);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        char *out = slurp(out_fd), *err = slurp(err_fd);
        close(out_fd);
        close(err_fd);
        const char *hay = c->code == 0 ? out : err;
        int ok = code == c->code && strstr(hay, c->where) && strstr(hay, c->what);
        // Every stderr line of a failure starts with "moe config: " (usage text aside).
        if (ok && c->code != 0) {
            for (char *line = err; *line && ok;
                 line = strchr(line, '\n') ? strchr(line, '\n') + 1 : "") {
                if (!strncmp(line, "usage:", 6)) break;
                if (strncmp(line, "moe config: ", 12)) ok = 0;
            }
        }
        if (!ok) {
            failures++;
            fprintf(stderr,
                    "FAIL %s\n  expected: exit %d, %s containing \"%s\" and \"%s\"\n"
                    "  got:      exit %d, stderr:\n%s  stdout (first 300 chars):\n%.300s\n",
                    label, c->code, c->code ? "stderr" : "stdout", c->where, c->what, code, err,
                    out);
        }
        free(out);
        free(err);
    }
    printf("%d passed, %d failed\n", n - failures, failures);
    return failures ? 1 : 0;
}
