// routes-report.c: the routing section `moe report` writes for a run with traces
// (RUN/traces/step-N.trace): the newest trace's per-layer figures and the stability between the
// first and the last trace, as Markdown. Trade-off: a bad trace is named in the report with the
// reader's message instead of failing the whole report (the training figures stand on their own).
#include "routes.h"

#include <dirent.h>
#include <math.h>
#include <string.h>

// The steps of RUN/traces/step-N.trace, sorted; returns how many (at most cap).
static int trace_steps(const char *run_dir, int64_t *steps, int cap) {
    char dir[MOE_PATH_MAX + 16];
    snprintf(dir, sizeof dir, "%s/traces", run_dir);
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) && n < cap;) {
        long long s;
        int end = 0;
        if (sscanf(e->d_name, "step-%lld.trace%n", &s, &end) == 1 && end > 0 &&
            e->d_name[end] == 0 && s >= 0)
            steps[n++] = s;
    }
    closedir(d);
    for (int i = 1; i < n; i++) // insertion sort: a few traces per run
        for (int j = i; j > 0 && steps[j] < steps[j - 1]; j--) {
            int64_t x = steps[j];
            steps[j] = steps[j - 1], steps[j - 1] = x;
        }
    return n;
}

static void md_layers(FILE *md, const moe_trace *t, const moe_routes_stats *s) {
    fprintf(md,
            "| MoE layer | block | max/mean load | entropy (bits, max %.2f) | MI(token; expert) "
            "(bits) | dropped | top-1 → next layer | most co-activated |\n"
            "|---:|---:|---:|---:|---:|---:|---:|---|\n",
            log2((double)s->E));
    for (int l = 0; l < s->n_moe; l++) {
        const moe_routes_layer *L = &s->layers[l];
        int bi = -1, bj = -1;
        int64_t bn = 0;
        for (int i = 0; i < s->E; i++)
            for (int j = i + 1; j < s->E; j++)
                if (L->coact[(size_t)i * s->E + j] > bn)
                    bn = L->coact[(size_t)i * s->E + j], bi = i, bj = j;
        fprintf(md, "| %d | %d | %.3f | %.3f | %.3f | %.2f%% | ", l, t->h->moe_layers[l],
                L->max_over_mean, L->entropy, L->mi,
                L->pairs ? 100.0 * (double)L->dropped / (double)L->pairs : 0.0);
        if (l + 1 < s->n_moe)
            fprintf(md, "%.1f%% (H %.2f of %.2f bits) | ", 100 * L->pred_acc, L->pred_h_cond,
                    L->pred_h_next);
        else
            fprintf(md, "– | ");
        if (bi >= 0)
            fprintf(md, "e%d+e%d, %.1f%% of tokens |\n", bi, bj, 100.0 * bn / (double)s->tokens);
        else
            fprintf(md, "– |\n");
    }
}

int moe_routes_report_run(FILE *md, const char *run_dir, const char *run_name, int heading) {
    int64_t steps[256];
    const int n = trace_steps(run_dir, steps, 256);
    if (n == 0) return 0;
    if (heading)
        fprintf(md, "\n## Routing\n\nFrom the routing traces of each run (RUN/traces, "
                    "train.trace_steps; `moe routes` gives every table; definitions in "
                    "docs/routes.md). Entropy and MI in bits.\n");
    char first[MOE_PATH_MAX + 64], last[MOE_PATH_MAX + 64];
    snprintf(first, sizeof first, "%s/traces/step-%lld.trace", run_dir, (long long)steps[0]);
    snprintf(last, sizeof last, "%s/traces/step-%lld.trace", run_dir, (long long)steps[n - 1]);
    fprintf(md, "\n### Routing: %s\n\n", run_name);
    moe_trace *a = NULL, *b = NULL;
    if (moe_trace_read(last, &b)) {
        fprintf(md, "Trace not read: %s\n", moe_last_error());
        return 1;
    }
    moe_routes_stats *s = moe_routes_analyse(b);
    fprintf(md, "%d trace%s; the newest, step %lld (%lld tokens: %s):\n\n", n, n > 1 ? "s" : "",
            (long long)steps[n - 1], (long long)s->tokens, b->h->probe ? b->h->probe : "");
    md_layers(md, b, s);
    moe_routes_stats_free(s);
    if (n > 1 && moe_trace_read(first, &a) == MOE_OK) {
        double *ch = moe_xcalloc((size_t)b->n_moe, sizeof *ch);
        double *jc = moe_xcalloc((size_t)b->n_moe, sizeof *jc);
        if (moe_routes_stability(a, first, b, last, ch, jc) == MOE_OK) {
            fprintf(md,
                    "\nRouting stability from step %lld to step %lld (tokens whose expert set "
                    "changed, mean Jaccard of the sets):\n\n| MoE layer | block | changed | "
                    "Jaccard |\n|---:|---:|---:|---:|\n",
                    (long long)steps[0], (long long)steps[n - 1]);
            for (int l = 0; l < b->n_moe; l++)
                fprintf(md, "| %d | %d | %.1f%% | %.4f |\n", l, b->h->moe_layers[l], 100 * ch[l],
                        jc[l]);
        } else {
            fprintf(md, "\nNo stability figures: %s\n", moe_last_error());
        }
        free(ch);
        free(jc);
    } else if (n > 1) {
        fprintf(md, "\nNo stability figures: %s\n", moe_last_error());
    }
    moe_trace_free(a);
    moe_trace_free(b);
    return 1;
}

int moe_routes_report_run_html(FILE *html, const char *run_dir, const char *run_name, int first) {
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    if (!m) return 0;
    const int wrote = moe_routes_report_run(m, run_dir, run_name, 0);
    fclose(m);
    if (wrote) {
        fputs(first ? "<h2>Routing</h2>\n<p>From the routing traces of each run (docs/routes.md; "
                      "<code>moe routes</code> gives every table).</p>\n<pre>"
                    : "<pre>",
              html);
        for (size_t i = 0; i < len; i++) {
            const char c = text[i];
            if (c == '<')
                fputs("&lt;", html);
            else if (c == '>')
                fputs("&gt;", html);
            else if (c == '&')
                fputs("&amp;", html);
            else
                fputc(c, html);
        }
        fputs("</pre>\n", html);
    }
    free(text);
    return wrote;
}
