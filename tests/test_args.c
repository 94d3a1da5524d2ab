// test_args.c: the one argument parser (common/args.c) on a small spec — a table of good and bad
// command lines checking the parsed values, the status, and that each refusal names the command,
// the option, the value given and the range; --opt=value; a repeated --set in order; --help
// generated from the table listing every option, its metavar, range and default.
#include "moe-args.h"
#include "moe-common.h"

#include <string.h>

static int failures = 0;

#define EXPECT(what, cond)                                                                         \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            failures++;                                                                            \
            fprintf(stderr, "test_args.c:%d: FAIL %s\n", __LINE__, what);                          \
        }                                                                                          \
    } while (0)

// The destinations of the spec under test (reset to the defaults before each case).
typedef struct {
    const char *config, *name, *shape;
    int json, steps, seed;
    double lr;
    moe_args_list sets;
} dst_t;

static const char *const shapes[] = {"coarse", "fine", NULL};

typedef struct {
    const char *argv[10]; // after the command's name; NULL-terminated
    int rc;               // MOE_ARGS_RUN, 0 (help) or MOE_EXIT_USAGE
    const char *err[3];   // substrings of stderr (refusals)
    struct {              // good cases: the values parsed
        const char *config;
        int steps, json;
        double lr;
        int n_sets;
        const char *set0, *set1;
    } want;
} args_case;

static const args_case cases[] = {
    // Good.
    {.argv = {"cfg.json"}, .rc = MOE_ARGS_RUN, .want = {"cfg.json", 10, 0, 0.5, 0, NULL, NULL}},
    {.argv = {"cfg.json", "--steps", "7", "--json"},
     .rc = MOE_ARGS_RUN,
     .want = {"cfg.json", 7, 1, 0.5, 0, NULL, NULL}},
    {.argv = {"--steps=100", "cfg.json", "--lr=0.25"},
     .rc = MOE_ARGS_RUN,
     .want = {"cfg.json", 100, 0, 0.25, 0, NULL, NULL}},
    {.argv = {"cfg.json", "--lr", "1e-3"},
     .rc = MOE_ARGS_RUN,
     .want = {"cfg.json", 10, 0, 1e-3, 0, NULL, NULL}},
    {.argv = {"cfg.json", "--set", "a.b=1", "--set=c.d=x=y"},
     .rc = MOE_ARGS_RUN,
     .want = {"cfg.json", 10, 0, 0.5, 2, "a.b=1", "c.d=x=y"}},
    {.argv = {"--set=a=1", "--", "-"},
     .rc = MOE_ARGS_RUN,
     .want = {"-", 10, 0, 0.5, 1, "a=1", NULL}},
    {.argv = {"-"}, .rc = MOE_ARGS_RUN, .want = {"-", 10, 0, 0.5, 0, NULL, NULL}},
    {.argv = {"cfg.json", "--steps", "+5"},
     .rc = MOE_ARGS_RUN,
     .want = {"cfg.json", 5, 0, 0.5, 0, NULL, NULL}},
    // Help wins, wherever it is (and a value that looks like it is a value).
    {.argv = {"--help"}, .rc = 0},
    {.argv = {"cfg.json", "--steps", "x", "-h"}, .rc = 0},
    // Numbers refused, naming command, option, value and range.
    {.argv = {"cfg.json", "--steps", "x"},
     .rc = MOE_EXIT_USAGE,
     .err = {"moe test: --steps", "[1, 100]", "got x"}},
    {.argv = {"cfg.json", "--steps", "-3"},
     .rc = MOE_EXIT_USAGE,
     .err = {"moe test: --steps", "[1, 100]", "got -3"}},
    {.argv = {"cfg.json", "--steps", "1e99"},
     .rc = MOE_EXIT_USAGE,
     .err = {"moe test: --steps", "[1, 100]", "got 1e99"}},
    {.argv = {"cfg.json", "--steps", "12abc"},
     .rc = MOE_EXIT_USAGE,
     .err = {"--steps", "[1, 100]", "got 12abc"}},
    {.argv = {"cfg.json", "--steps", "101"},
     .rc = MOE_EXIT_USAGE,
     .err = {"--steps", "[1, 100]", "got 101"}},
    {.argv = {"cfg.json", "--steps", "0"}, .rc = MOE_EXIT_USAGE, .err = {"--steps", "got 0"}},
    {.argv = {"cfg.json", "--steps", "99999999999999999999999"},
     .rc = MOE_EXIT_USAGE,
     .err = {"--steps", "[1, 100]"}},
    {.argv = {"cfg.json", "--steps", " 5"}, .rc = MOE_EXIT_USAGE, .err = {"--steps", "[1, 100]"}},
    {.argv = {"cfg.json", "--steps="},
     .rc = MOE_EXIT_USAGE,
     .err = {"moe test: --steps needs a non-empty value"}},
    {.argv = {"cfg.json", "--steps"},
     .rc = MOE_EXIT_USAGE,
     .err = {"moe test: --steps needs a value", "--steps N"}},
    {.argv = {"cfg.json", "--seed", "-2147483649"},
     .rc = MOE_EXIT_USAGE,
     .err = {"--seed", "[-2147483648, 2147483647]"}},
    {.argv = {"cfg.json", "--lr", "2"},
     .rc = MOE_EXIT_USAGE,
     .err = {"moe test: --lr", "[0, 1]", "got 2"}},
    {.argv = {"cfg.json", "--lr", "nan"}, .rc = MOE_EXIT_USAGE, .err = {"--lr", "got nan"}},
    {.argv = {"cfg.json", "--lr", "1e999"}, .rc = MOE_EXIT_USAGE, .err = {"--lr", "got 1e999"}},
    {.argv = {"cfg.json", "--lr", "0.5x"}, .rc = MOE_EXIT_USAGE, .err = {"--lr", "got 0.5x"}},
    // Choices, flags, unknown options, positionals.
    {.argv = {"cfg.json", "--shape", "medium"},
     .rc = MOE_EXIT_USAGE,
     .err = {"--shape needs one of coarse, fine", "got medium"}},
    {.argv = {"cfg.json", "--json=1"}, .rc = MOE_EXIT_USAGE, .err = {"--json takes no value"}},
    {.argv = {"cfg.json", "--frobnicate"},
     .rc = MOE_EXIT_USAGE,
     .err = {"moe test: unknown option '--frobnicate'"}},
    {.argv = {"cfg.json", "--ste", "3"}, .rc = MOE_EXIT_USAGE, .err = {"unknown option '--ste'"}},
    {.argv = {"cfg.json", "-x"}, .rc = MOE_EXIT_USAGE, .err = {"unknown option '-x'"}},
    {.argv = {0},
     .rc = MOE_EXIT_USAGE,
     .err = {"moe test: missing CONFIG", "usage: moe test CONFIG"}},
    {.argv = {"a.json", "b.json"},
     .rc = MOE_EXIT_USAGE,
     .err = {"moe test: one CONFIG only, got 'a.json' and 'b.json'"}},
    {.argv = {"cfg.json", "--set"},
     .rc = MOE_EXIT_USAGE,
     .err = {"--set needs a value (--set a.b=v)"}},
    // Issue 12 defect 10: an option followed by another option has no value (was taken as one).
    {.argv = {"cfg.json", "--set", "--json"},
     .rc = MOE_EXIT_USAGE,
     .err = {"--set needs a value (--set a.b=v)"}},
    {.argv = {"cfg.json", "--steps", "--lr=0.5"},
     .rc = MOE_EXIT_USAGE,
     .err = {"moe test: --steps needs a value"}},
};

static char *run(const moe_args_spec *spec, const char *const *args, int *rc, char **out) {
    char *argv[16];
    int argc = 0;
    argv[argc++] = "test";
    for (int i = 0; args[i]; i++) argv[argc++] = (char *)args[i];
    argv[argc] = NULL;
    char *ob = NULL, *eb = NULL;
    size_t on = 0, en = 0;
    FILE *of = open_memstream(&ob, &on), *ef = open_memstream(&eb, &en);
    MOE_ASSERT(of && ef);
    *rc = moe_args_parse_f(spec, argc, argv, of, ef);
    fclose(of);
    fclose(ef);
    *out = ob;
    return eb;
}

int main(void) {
    dst_t d;
    const moe_arg_pos pos[] = {{"CONFIG", MOE_ARG_STRING, &d.config, 1, 1, "the config"}};
    const moe_arg_opt opts[] = {
        MOE_OPT_FLAG("--json", &d.json, "print JSON"),
        MOE_OPT_INT("--steps", &d.steps, "N", 1, 100, "timed steps"),
        MOE_OPT_INT("--seed", &d.seed, NULL, 0, 0, "any int"),
        MOE_OPT_DOUBLE("--lr", &d.lr, "LR", 0, 1, "learning rate"),
        MOE_OPT_STRING("--name", &d.name, "TEXT", "a name"),
        MOE_OPT_CHOICE("--shape", &d.shape, shapes, "the shape"),
        MOE_OPT_LIST("--set", &d.sets, "a.b=v", "override a field"),
        MOE_OPT_FLAG("--hidden", &d.json, NULL),
    };
    const moe_args_spec spec = {"moe test",       "A test command.", pos, MOE_ARGS_N(pos), opts,
                                MOE_ARGS_N(opts), "exit codes: none"};
    const int n = MOE_ARGS_N(cases);
    for (int i = 0; i < n; i++) {
        const args_case *c = &cases[i];
        memset(&d, 0, sizeof d);
        d.steps = 10, d.lr = 0.5;
        int rc;
        char *out, *err = run(&spec, c->argv, &rc, &out);
        char label[256];
        size_t u = (size_t)snprintf(label, sizeof label, "case %d: moe test", i);
        for (int k = 0; c->argv[k] && u < sizeof label; k++)
            u += (size_t)snprintf(label + u, sizeof label - u, " %s", c->argv[k]);
        int ok = rc == c->rc;
        for (int k = 0; k < 3 && c->err[k]; k++) ok &= strstr(err, c->err[k]) != NULL;
        if (c->rc == MOE_EXIT_USAGE) {
            // The message first, prefixed with the command; then the usage line.
            ok &= !strncmp(err, "moe test: ", 10) && strstr(err, "\nusage: moe test") != NULL;
            ok &= out[0] == '\0';
        } else if (c->rc == MOE_ARGS_RUN) {
            ok &= err[0] == '\0' && out[0] == '\0';
            ok &= d.config && !strcmp(d.config, c->want.config) && d.steps == c->want.steps &&
                  d.json == c->want.json && d.lr == c->want.lr && d.sets.n == c->want.n_sets;
            if (c->want.n_sets > 0) ok &= !strcmp(d.sets.v[0], c->want.set0);
            if (c->want.n_sets > 1) ok &= !strcmp(d.sets.v[1], c->want.set1);
        } else {
            ok &= err[0] == '\0' && strstr(out, "usage: moe test CONFIG") != NULL;
        }
        if (!ok) {
            failures++;
            fprintf(stderr,
                    "FAIL %s\n  expected rc %d, got %d (config %s steps %d json %d lr %g "
                    "sets %d)\n  stderr: %s  stdout: %.200s\n",
                    label, c->rc, rc, d.config ? d.config : "(null)", d.steps, d.json, d.lr,
                    d.sets.n, err, out);
        }
        moe_args_free(&spec);
        EXPECT("moe_args_free zeroes the lists", d.sets.v == NULL && d.sets.n == 0);
        free(out);
        free(err);
    }

    // --help: generated from the table — every listed option with its metavar, the ranges and
    // defaults, the positional, summary and epilog; the hidden alias is left out.
    {
        memset(&d, 0, sizeof d);
        d.steps = 10, d.lr = 0.5, d.shape = NULL;
        int rc;
        char *out, *err = run(&spec, (const char *[]){"--help", NULL}, &rc, &out);
        EXPECT("--help exit 0", rc == 0);
        EXPECT("--help nothing on stderr", err[0] == '\0');
        const char *want[] = {
            "usage: moe test CONFIG [--json] [--steps N] [--seed N] [--lr LR] [--name TEXT]",
            "[--shape coarse|fine]",
            "[--set a.b=v]...",
            "A test command.",
            "CONFIG",
            "the config",
            "--json",
            "print JSON",
            "--steps N",
            "integer in [1, 100]; default 10",
            "--seed N",
            "--lr LR",
            "number in [0, 1]; default 0.5",
            "--name TEXT",
            "--shape coarse|fine",
            "--set a.b=v",
            "repeatable",
            "-h, --help",
            "exit codes: none"};
        for (size_t k = 0; k < sizeof want / sizeof *want; k++)
            if (!strstr(out, want[k])) {
                failures++;
                fprintf(stderr, "FAIL --help lacks \"%s\":\n%s\n", want[k], out);
            }
        EXPECT("--help hides an option without help", !strstr(out, "--hidden"));
        free(out);
        free(err);
    }

    // A list positional with a minimum, after a fixed one; a required option.
    {
        const char *first = NULL, *need = NULL;
        moe_args_list rest = {0};
        const moe_arg_pos p2[] = {{"FIRST", MOE_ARG_STRING, &first, 1, 1, NULL},
                                  {"RUN_DIR", MOE_ARG_LIST, &rest, 1, 0, "runs"}};
        const moe_arg_opt o2[] = {
            {"--need", MOE_ARG_STRING, &need, "X", "required", 0, 0, NULL, 1},
        };
        const moe_args_spec s2 = {"moe two", NULL, p2, 2, o2, 1, NULL};
        int rc;
        char *out, *err = run(&s2, (const char *[]){"a", "b", "--need", "n", "c", NULL}, &rc, &out);
        EXPECT("list positional: runs", rc == MOE_ARGS_RUN);
        EXPECT("list positional: values", first && !strcmp(first, "a") && rest.n == 2 &&
                                              !strcmp(rest.v[0], "b") && !strcmp(rest.v[1], "c"));
        moe_args_free(&s2);
        free(out), free(err);
        err = run(&s2, (const char *[]){"a", "--need=n", NULL}, &rc, &out);
        EXPECT("list positional: missing", rc == MOE_EXIT_USAGE && strstr(err, "missing RUN_DIR"));
        free(out), free(err);
        err = run(&s2, (const char *[]){"a", "b", NULL}, &rc, &out);
        EXPECT("required option", rc == MOE_EXIT_USAGE && strstr(err, "moe two: missing --need X"));
        free(out), free(err);
        err = run(&s2, (const char *[]){"--help", NULL}, &rc, &out);
        EXPECT("usage of a required option and a list",
               rc == 0 && strstr(out, "usage: moe two FIRST RUN_DIR... --need X"));
        free(out), free(err);
    }

    // moe_args_has_flag stops at "--".
    {
        char *a1[] = {"layer", "--json", "--ep", NULL}, *a2[] = {"layer", "--", "--ep", NULL};
        EXPECT("has_flag", moe_args_has_flag(3, a1, "--ep") == 1);
        EXPECT("has_flag after --", moe_args_has_flag(3, a2, "--ep") == 0);
    }

    printf("%d cases, %d failures\n", n, failures);
    return failures ? 1 : 0;
}
