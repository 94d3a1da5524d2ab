// args.c: the table-driven command-line parser of every moe command (moe-args.h is the manual).
// Trade-off: one linear pass over argv with exact long-option names (no abbreviations, no short
// options but -h), so a typo is refused instead of guessed; the help text is generated from the
// table that drives the parse, never written by hand.
#include "moe-args.h"
#include "moe-common.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <string.h>

enum { MOE_ARGS_WIDTH = 79, MOE_ARGS_COL_MAX = 28 };

static const char *moe_args_metavar(const moe_arg_opt *o, char *buf, size_t cap) {
    if (o->metavar) return o->metavar;
    switch (o->kind) {
    case MOE_ARG_INT: return "N";
    case MOE_ARG_DOUBLE: return "X";
    case MOE_ARG_CHOICE: {
        moe_list l;
        buf[0] = '\0';
        moe_list_start(&l, buf, cap, "|");
        for (int i = 0; o->choices && o->choices[i]; i++) moe_list_add(&l, "%s", o->choices[i]);
        moe_list_end(&l);
        return buf;
    }
    case MOE_ARG_FLAG:
    case MOE_ARG_STRING:
    case MOE_ARG_LIST: return "VALUE";
    }
    return "VALUE";
}

// Integer ranges: lo == hi == 0 means the whole int range.
static void moe_args_int_range(const moe_arg_opt *o, long long *lo, long long *hi) {
    if (o->lo == 0 && o->hi == 0) {
        *lo = INT_MIN;
        *hi = INT_MAX;
    } else {
        MOE_ASSERT(o->lo >= INT_MIN && o->hi <= INT_MAX && o->lo <= o->hi); // int destinations
        *lo = (long long)o->lo;
        *hi = (long long)o->hi;
    }
}

// ---------------------------------------------------------------- usage and help

// Prints words separated by spaces, wrapping at MOE_ARGS_WIDTH with continuation lines indented
// by `indent`; *col is the current column.
static void moe_args_word(FILE *f, const char *w, int indent, int *col) {
    int n = (int)strlen(w);
    if (*col >= indent && *col + 1 + n > MOE_ARGS_WIDTH) {
        fprintf(f, "\n%*s", indent - 1, "");
        *col = indent - 1;
    }
    fprintf(f, " %s", w);
    *col += 1 + n;
}

void moe_args_usage(const moe_args_spec *s, FILE *f) {
    char w[256], mv[128];
    int col = fprintf(f, "usage: %s", s->cmd);
    const int indent = col + 1;
    for (int i = 0; i < s->n_pos; i++) {
        const moe_arg_pos *p = &s->pos[i];
        const int many = p->kind == MOE_ARG_LIST && p->max != 1;
        snprintf(w, sizeof w, "%s%s%s%s", p->min ? "" : "[", p->name, many ? "..." : "",
                 p->min ? "" : "]");
        moe_args_word(f, w, indent, &col);
    }
    for (int i = 0; i < s->n_opts; i++) {
        const moe_arg_opt *o = &s->opts[i];
        if (!o->help) continue;
        const char *open = o->required ? "" : "[", *close = o->required ? "" : "]";
        if (o->kind == MOE_ARG_FLAG)
            snprintf(w, sizeof w, "%s%s%s", open, o->name, close);
        else
            snprintf(w, sizeof w, "%s%s %s%s%s", open, o->name, moe_args_metavar(o, mv, sizeof mv),
                     close, o->kind == MOE_ARG_LIST ? "..." : "");
        moe_args_word(f, w, indent, &col);
    }
    fputc('\n', f);
}

// One entry of the help: "  left   help…" with the help's lines (and the annotation) under the
// help column.
static void moe_args_entry(FILE *f, const char *left, const char *help, const char *annot,
                           int hcol) {
    int col = fprintf(f, "  %s", left);
    if (col + 2 > hcol) {
        fputc('\n', f);
        col = 0;
    }
    int last = 0; // length of the help's last line
    for (const char *h = help ? help : ""; *h;) {
        const char *nl = strchr(h, '\n');
        int n = nl ? (int)(nl - h) : (int)strlen(h);
        fprintf(f, "%*s%.*s", hcol - col, "", n, h);
        last = n;
        col = hcol + n;
        h += n;
        if (*h == '\n') {
            h++;
            fputc('\n', f);
            col = 0;
        }
    }
    if (annot && *annot) {
        if (last == 0 && col <= hcol)
            fprintf(f, "%*s(%s)", hcol - col, "", annot);
        else if (col + 2 + (int)strlen(annot) + 1 > MOE_ARGS_WIDTH)
            fprintf(f, "\n%*s(%s)", hcol, "", annot);
        else
            fprintf(f, " (%s)", annot);
    }
    fputc('\n', f);
}

static void moe_args_annotation(const moe_arg_opt *o, char *a, size_t cap) {
    a[0] = '\0';
    switch (o->kind) {
    case MOE_ARG_FLAG: break;
    case MOE_ARG_INT: {
        long long lo, hi;
        moe_args_int_range(o, &lo, &hi);
        int v = *(const int *)o->dst;
        size_t u = (o->lo == 0 && o->hi == 0)
                       ? (size_t)snprintf(a, cap, "integer")
                       : (size_t)snprintf(a, cap, "integer in [%lld, %lld]", lo, hi);
        if (v >= lo && v <= hi && u < cap) snprintf(a + u, cap - u, "; default %d", v);
        break;
    }
    case MOE_ARG_DOUBLE: {
        double v = *(const double *)o->dst;
        size_t u = (o->lo == 0 && o->hi == 0)
                       ? (size_t)snprintf(a, cap, "number")
                       : (size_t)snprintf(a, cap, "number in [%g, %g]", o->lo, o->hi);
        if (((o->lo == 0 && o->hi == 0) || (v >= o->lo && v <= o->hi)) && u < cap)
            snprintf(a + u, cap - u, "; default %g", v);
        break;
    }
    case MOE_ARG_STRING:
    case MOE_ARG_CHOICE: {
        const char *v = *(const char *const *)o->dst;
        if (v) snprintf(a, cap, "default %s", v);
        break;
    }
    case MOE_ARG_LIST: snprintf(a, cap, "repeatable"); break;
    }
    if (o->required) {
        size_t u = strlen(a);
        snprintf(a + u, cap - u, "%srequired", u ? "; " : "");
    }
}

void moe_args_help(const moe_args_spec *s, FILE *f) {
    char left[256], mv[128], annot[160];
    moe_args_usage(s, f);
    if (s->summary) fprintf(f, "\n%s\n", s->summary);
    // The help column: past the widest left part, within MOE_ARGS_COL_MAX.
    int hcol = (int)strlen("  -h, --help") + 2;
    for (int i = 0; i < s->n_pos; i++) {
        int n = 2 + (int)strlen(s->pos[i].name) + 2;
        hcol = n > hcol ? n : hcol;
    }
    for (int i = 0; i < s->n_opts; i++) {
        const moe_arg_opt *o = &s->opts[i];
        if (!o->help) continue;
        int n = 2 + (int)strlen(o->name) + 2;
        if (o->kind != MOE_ARG_FLAG) n += 1 + (int)strlen(moe_args_metavar(o, mv, sizeof mv));
        if (n <= MOE_ARGS_COL_MAX) hcol = n > hcol ? n : hcol;
    }
    if (s->n_pos) {
        fprintf(f, "\narguments:\n");
        for (int i = 0; i < s->n_pos; i++) {
            const moe_arg_pos *p = &s->pos[i];
            if (p->min == 0)
                snprintf(annot, sizeof annot, "optional");
            else if (p->kind == MOE_ARG_LIST && p->max == 0)
                snprintf(annot, sizeof annot, "one or more");
            else
                annot[0] = '\0';
            moe_args_entry(f, p->name, p->help, annot, hcol);
        }
    }
    fprintf(f, "\noptions:\n");
    for (int i = 0; i < s->n_opts; i++) {
        const moe_arg_opt *o = &s->opts[i];
        if (!o->help) continue;
        if (o->kind == MOE_ARG_FLAG)
            snprintf(left, sizeof left, "%s", o->name);
        else
            snprintf(left, sizeof left, "%s %s", o->name, moe_args_metavar(o, mv, sizeof mv));
        moe_args_annotation(o, annot, sizeof annot);
        moe_args_entry(f, left, o->help, annot, hcol);
    }
    moe_args_entry(f, "-h, --help", "this help", NULL, hcol);
    if (s->epilog) fprintf(f, "\n%s\n", s->epilog);
}

// ---------------------------------------------------------------- parsing

static const moe_arg_opt *moe_args_find(const moe_args_spec *s, const char *a, size_t n) {
    for (int i = 0; i < s->n_opts; i++)
        if (strlen(s->opts[i].name) == n && !strncmp(s->opts[i].name, a, n)) return &s->opts[i];
    return NULL;
}

static int moe_args_is_help(const char *a) { return !strcmp(a, "-h") || !strcmp(a, "--help"); }

// An option-looking argument: "-x" or "--x" (a lone "-" is a positional: standard input).
static int moe_args_is_opt(const char *a) { return a[0] == '-' && a[1] != '\0'; }

static moe_args_list *moe_args_list_of(void *dst, int cap) {
    moe_args_list *l = dst;
    if (!l->v) {
        l->v = moe_xcalloc((size_t)cap + 1, sizeof *l->v);
        l->n = 0;
    }
    return l;
}

static int moe_args_refuse(const moe_args_spec *s, FILE *err) {
    moe_args_usage(s, err);
    fprintf(err, "(%s --help lists every option)\n", s->cmd);
    return MOE_EXIT_USAGE;
}

// Stores value v of option o; 0 ok, else prints the refusal's message line and returns -1.
static int moe_args_store(const moe_args_spec *s, const moe_arg_opt *o, const char *v, int cap,
                          FILE *err) {
    char mv[128];
    if (!*v) {
        fprintf(err, "%s: %s needs a non-empty value (%s %s)\n", s->cmd, o->name, o->name,
                moe_args_metavar(o, mv, sizeof mv));
        return -1;
    }
    switch (o->kind) {
    case MOE_ARG_FLAG: MOE_ASSERT(0); return -1; // no value: handled by the caller
    case MOE_ARG_INT: {
        long long lo, hi;
        moe_args_int_range(o, &lo, &hi);
        char *end = NULL;
        errno = 0;
        long long x = strtoll(v, &end, 10);
        if (isspace((unsigned char)v[0]) || *end || errno || x < lo || x > hi) {
            fprintf(err, "%s: %s needs an integer in [%lld, %lld], got %s\n", s->cmd, o->name, lo,
                    hi, v);
            return -1;
        }
        *(int *)o->dst = (int)x;
        return 0;
    }
    case MOE_ARG_DOUBLE: {
        char *end = NULL;
        errno = 0;
        double x = strtod(v, &end);
        const int ranged = !(o->lo == 0 && o->hi == 0);
        if (isspace((unsigned char)v[0]) || *end || errno || !isfinite(x) ||
            (ranged && (x < o->lo || x > o->hi))) {
            if (ranged)
                fprintf(err, "%s: %s needs a number in [%g, %g], got %s\n", s->cmd, o->name, o->lo,
                        o->hi, v);
            else
                fprintf(err, "%s: %s needs a finite number, got %s\n", s->cmd, o->name, v);
            return -1;
        }
        *(double *)o->dst = x;
        return 0;
    }
    case MOE_ARG_STRING: *(const char **)o->dst = v; return 0;
    case MOE_ARG_CHOICE:
        for (int i = 0; o->choices[i]; i++)
            if (!strcmp(v, o->choices[i])) {
                *(const char **)o->dst = o->choices[i];
                return 0;
            }
        fprintf(err, "%s: %s needs one of ", s->cmd, o->name);
        for (int i = 0; o->choices[i]; i++) fprintf(err, i ? ", %s" : "%s", o->choices[i]);
        fprintf(err, "; got %s\n", v);
        return -1;
    case MOE_ARG_LIST: {
        moe_args_list *l = moe_args_list_of(o->dst, cap);
        l->v[l->n++] = v;
        return 0;
    }
    }
    return -1;
}

int moe_args_parse_f(const moe_args_spec *s, int argc, char **argv, FILE *out, FILE *err) {
    char mv[128];
    // --help first, wherever it is (skipping option values), so a help request always works.
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) break;
        if (moe_args_is_help(a)) {
            moe_args_help(s, out);
            return MOE_EXIT_OK;
        }
        const moe_arg_opt *o = moe_args_is_opt(a) ? moe_args_find(s, a, strlen(a)) : NULL;
        if (o && o->kind != MOE_ARG_FLAG) i++;
    }
    const char **posv = moe_xcalloc((size_t)argc + 1, sizeof *posv);
    unsigned char *seen = moe_xcalloc((size_t)s->n_opts + 1, 1);
    int n_posv = 0, rc = MOE_ARGS_RUN, opts_done = 0;
    for (int i = 1; i < argc && rc == MOE_ARGS_RUN; i++) {
        const char *a = argv[i];
        if (opts_done || !moe_args_is_opt(a)) {
            posv[n_posv++] = a;
            continue;
        }
        if (!strcmp(a, "--")) {
            opts_done = 1;
            continue;
        }
        const char *eq = !strncmp(a, "--", 2) ? strchr(a, '=') : NULL;
        const moe_arg_opt *o = moe_args_find(s, a, eq ? (size_t)(eq - a) : strlen(a));
        if (!o) {
            fprintf(err, "%s: unknown option '%s' (see %s --help)\n", s->cmd, a, s->cmd);
            rc = moe_args_refuse(s, err);
            break;
        }
        seen[o - s->opts] = 1;
        if (o->kind == MOE_ARG_FLAG) {
            if (eq) {
                fprintf(err, "%s: %s takes no value, got '%s'\n", s->cmd, o->name, a);
                rc = moe_args_refuse(s, err);
            } else {
                *(int *)o->dst = 1;
            }
            continue;
        }
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        // "--resume --set x": the next word is another of this command's options, not a value
        // (a value that really starts with one is written --resume=--set).
        if (v && !eq && !strncmp(v, "--", 2) &&
            moe_args_find(s, v, strchr(v, '=') ? (size_t)(strchr(v, '=') - v) : strlen(v))) {
            v = NULL;
            i--;
        }
        if (!v) {
            fprintf(err, "%s: %s needs a value (%s %s)\n", s->cmd, o->name, o->name,
                    moe_args_metavar(o, mv, sizeof mv));
            rc = moe_args_refuse(s, err);
        } else if (moe_args_store(s, o, v, argc, err)) {
            rc = moe_args_refuse(s, err);
        }
    }
    for (int k = 0; k < s->n_opts && rc == MOE_ARGS_RUN; k++) {
        const moe_arg_opt *o = &s->opts[k];
        if (o->required && !seen[k]) {
            fprintf(err, "%s: missing %s %s\n", s->cmd, o->name,
                    moe_args_metavar(o, mv, sizeof mv));
            rc = moe_args_refuse(s, err);
        }
    }
    // Positionals in order; each takes what it may while leaving the later ones their minimum
    // (when there are too few, the first positional left short is named).
    int next = 0, max_total = 0;
    for (int k = 0; k < s->n_pos && rc == MOE_ARGS_RUN; k++) {
        const moe_arg_pos *p = &s->pos[k];
        int min_after = 0;
        for (int j = k + 1; j < s->n_pos; j++) min_after += s->pos[j].min;
        const int left = n_posv - next;
        const int max = p->kind == MOE_ARG_LIST ? (p->max > 0 ? p->max : INT_MAX) : 1;
        int take = left - min_after;
        take = take > max ? max : take;
        take = take < p->min && left >= p->min ? p->min : take; // a later one is the one missing
        max_total = max_total > INT_MAX - max ? INT_MAX : max_total + max;
        if (take < p->min) {
            fprintf(err, "%s: missing %s%s", s->cmd, p->name, p->help ? ": " : "");
            for (const char *h = p->help; h && *h; h++) fputc(*h == '\n' ? ' ' : *h, err);
            fputc('\n', err);
            rc = moe_args_refuse(s, err);
            break;
        }
        if (take <= 0) continue;
        if (p->kind == MOE_ARG_LIST) {
            moe_args_list *l = moe_args_list_of(p->dst, argc);
            for (int j = 0; j < take; j++) l->v[l->n++] = posv[next + j];
        } else {
            *(const char **)p->dst = posv[next];
        }
        next += take;
    }
    if (rc == MOE_ARGS_RUN && next < n_posv) {
        if (max_total == 1)
            fprintf(err, "%s: one %s only, got '%s' and '%s'\n", s->cmd, s->pos[0].name, posv[0],
                    posv[next]);
        else if (max_total == 0)
            fprintf(err, "%s: unexpected argument '%s' (this command takes options only)\n", s->cmd,
                    posv[next]);
        else
            fprintf(err, "%s: unexpected argument '%s' (at most %d positional arguments)\n", s->cmd,
                    posv[next], max_total);
        rc = moe_args_refuse(s, err);
    }
    free(posv);
    free(seen);
    if (rc != MOE_ARGS_RUN) moe_args_free(s);
    return rc;
}

int moe_args_parse(const moe_args_spec *s, int argc, char **argv) {
    return moe_args_parse_f(s, argc, argv, stdout, stderr);
}

void moe_args_free(const moe_args_spec *s) {
    if (!s) return;
    for (int i = 0; i < s->n_opts; i++)
        if (s->opts[i].kind == MOE_ARG_LIST) {
            moe_args_list *l = s->opts[i].dst;
            free((void *)l->v);
            l->v = NULL;
            l->n = 0;
        }
    for (int i = 0; i < s->n_pos; i++)
        if (s->pos[i].kind == MOE_ARG_LIST) {
            moe_args_list *l = s->pos[i].dst;
            free((void *)l->v);
            l->v = NULL;
            l->n = 0;
        }
}

int moe_args_has_flag(int argc, char **argv, const char *name) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--")) return 0;
        if (!strcmp(argv[i], name)) return 1;
    }
    return 0;
}
