// moe-args.h: the one command-line parser of every moe command and benchmark (common/args.c).
// A command declares a table — its positional arguments and options, each with a destination,
// metavar, range and help — and one call parses argv into the destinations and, for --help,
// prints usage generated from the same table, so what is accepted and what is documented cannot
// drift. Rules (docs/cli.md):
//
//   --opt value and --opt=value for every valued option; -h/--help anywhere prints the help on
//   stdout (exit 0); `--` ends the options; options and positionals may be mixed in any order.
//   Integers are read with strtoll and doubles with strtod, whole string, range-checked against
//   [lo, hi]: `x`, `12abc`, `1e99`, `-3` (below lo), an empty or missing value are refused with a
//   message naming the command, the option, the value given and the accepted range. Every
//   valued option refuses an empty value. Unknown options and a wrong number of positionals are
//   refused too. A refusal prints "<cmd>: <message>" and the usage line on stderr; the command
//   returns MOE_EXIT_USAGE (2).
//
// The destination's value before parsing is the default (printed by --help when it is in the
// option's range). A repeated option (MOE_ARG_LIST) collects its values in order; lists are
// allocated by the parser and released by moe_args_free. Not thread-safe per spec (it writes the
// destinations); no global state.
#ifndef MOE_ARGS_H
#define MOE_ARGS_H

#include <stdio.h>

typedef enum {
    MOE_ARG_FLAG,   // int *: set to 1; takes no value
    MOE_ARG_INT,    // int *: an integer in [lo, hi] (lo == hi == 0: any int)
    MOE_ARG_DOUBLE, // double *: a finite number in [lo, hi] (lo == hi == 0: any finite)
    MOE_ARG_STRING, // const char **: the value (points into argv); a positional with max 1
    MOE_ARG_CHOICE, // const char **: one of `choices` (points into the table)
    MOE_ARG_LIST,   // moe_args_list *: every value in order (repeatable option, or positionals)
} moe_arg_kind;

// The values of a repeated option or of a positional taking several arguments (pointers into
// argv). Start it as {0}; moe_args_parse allocates it, moe_args_free releases it.
typedef struct {
    const char **v;
    int n;
} moe_args_list;

// One option. `name` is the long form with its dashes ("--warmup").
typedef struct {
    const char *name;
    moe_arg_kind kind;
    void *dst;
    const char *metavar;        // "N", "FILE", "a.b=v"; NULL: N (int), X (double), VALUE
    const char *help;           // one or more lines ('\n' continues under the help column);
                                // NULL: accepted but left out of usage and help (an alias)
    double lo, hi;              // MOE_ARG_INT / MOE_ARG_DOUBLE: accepted range, inclusive
    const char *const *choices; // MOE_ARG_CHOICE: NULL-terminated
    int required;               // refuse the command line without it ("missing --checkpoint DIR")
} moe_arg_opt;

// One positional argument: MOE_ARG_STRING (max 1; dst a const char **) or MOE_ARG_LIST (dst a
// moe_args_list *). Arguments are given to the positionals in order, each taking as many as it
// may while leaving the later ones their minimum.
typedef struct {
    const char *name; // CONFIG, DIR, RUN_DIR (shown as NAME, [NAME] or NAME...)
    moe_arg_kind kind;
    void *dst;
    int min, max; // how many arguments; max 0 with MOE_ARG_LIST: no limit
    const char *help;
} moe_arg_pos;

typedef struct {
    const char *cmd;     // "moe bench layer": the usage line and every message's prefix
    const char *summary; // the paragraph under the usage line of --help ('\n' allowed)
    const moe_arg_pos *pos;
    int n_pos;
    const moe_arg_opt *opts;
    int n_opts;
    const char *epilog; // printed last by --help (exit codes, see-also); may be NULL
} moe_args_spec;

#define MOE_ARGS_N(a) ((int)(sizeof(a) / sizeof((a)[0])))

// Table entries, one per kind (a required option sets .required on a full initializer).
#define MOE_OPT_FLAG(name, dst, help)                                                              \
    { name, MOE_ARG_FLAG, dst, NULL, help, 0, 0, NULL, 0 }
#define MOE_OPT_INT(name, dst, metavar, lo, hi, help)                                              \
    { name, MOE_ARG_INT, dst, metavar, help, lo, hi, NULL, 0 }
#define MOE_OPT_DOUBLE(name, dst, metavar, lo, hi, help)                                           \
    { name, MOE_ARG_DOUBLE, dst, metavar, help, lo, hi, NULL, 0 }
#define MOE_OPT_STRING(name, dst, metavar, help)                                                   \
    { name, MOE_ARG_STRING, dst, metavar, help, 0, 0, NULL, 0 }
#define MOE_OPT_CHOICE(name, dst, choices, help)                                                   \
    { name, MOE_ARG_CHOICE, dst, NULL, help, 0, 0, choices, 0 }
#define MOE_OPT_LIST(name, dst, metavar, help)                                                     \
    { name, MOE_ARG_LIST, dst, metavar, help, 0, 0, NULL, 0 }

// moe_args_parse's answer when the command should go on; anything else is the exit code to
// return at once (MOE_EXIT_OK after --help, MOE_EXIT_USAGE after a refusal).
enum { MOE_ARGS_RUN = -1 };

// Parses argv[1..argc) (argv[0] is the command's name) into the destinations of spec.
// Help goes to stdout, refusals to stderr.
int moe_args_parse(const moe_args_spec *spec, int argc, char **argv);
// The same with the streams given (tests).
int moe_args_parse_f(const moe_args_spec *spec, int argc, char **argv, FILE *out, FILE *err);
// Releases every list a parse allocated in spec's destinations (and zeroes them). NULL-safe.
void moe_args_free(const moe_args_spec *spec);

// The full help (--help) and the usage line alone (printed under a refusal).
void moe_args_help(const moe_args_spec *spec, FILE *f);
void moe_args_usage(const moe_args_spec *spec, FILE *f);

// 1 if argv[1..argc) holds the flag `name` before any `--` (for a flag that hands the whole
// command line to another command, as `moe bench layer --ep` does), else 0.
int moe_args_has_flag(int argc, char **argv, const char *name);

#endif
