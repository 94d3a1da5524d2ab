// routes.h: the manual of the routing-analysis room — statistics over routing traces
// (trainer/trace/trace.h) and their tables, JSON and gnuplot heatmaps: `moe routes TRACE...`
// (cli/cmd-routes.c) and the routing section `moe report` adds to each run with traces. The
// definitions (docs/routes.md) in one place:
//
//   pair        one (token, slot) of a record with an expert (dropped pairs included: the routing
//               decision, not the compute). A token's expert set = the experts of its pairs.
//   load        pairs per expert and layer; kept = load minus dropped pairs.
//   entropy     H of the layer's load shares q_e = load_e / Σ load, in bits (log2 E at balance).
//   MI          I(token id; expert) in bits over the layer's pairs: H(expert) − H(expert | token id)
//               (a deterministic id → expert map over E equally used experts with k = 1 gives
//               log2 E; routing independent of the id gives ≈ 0, plus the estimator's small bias).
//   top tokens  per expert, the token ids with the most pairs and their share of its load.
//   co-activation C[i][j] (i ≠ j): tokens whose set holds both i and j; C[i][i]: tokens with i.
//   predictability from layer l to l+1, over tokens with a top-1 (slot 0) expert in both:
//               accuracy of the best predictor (each top-1 expert a of layer l mapped to the most
//               frequent top-1 of l+1 after it) and H(top1_{l+1} | top1_l) in bits, beside the
//               baseline H(top1_{l+1}).
//   stability   two traces of the same probe and model shape: per layer the share of tokens whose
//               expert set differs and the mean Jaccard |A∩B| / |A∪B| (two empty sets: 1).
// Letters: E experts, Lm MoE layers, N tokens of the probe.
#ifndef MOE_ROUTES_H
#define MOE_ROUTES_H

#include <stdio.h>

#include "moe-common.h"
#include "trace.h"

#define MOE_ROUTES_TOP 3 // top tokens listed per expert

typedef struct {
    int64_t pairs;                        // pairs of the layer
    int64_t *load, *kept;                 // (E)
    int64_t dropped;                      // pairs dropped by capacity
    double entropy, mi;                   // bits
    double max_over_mean;                 // max_e load_e / mean_e load_e (0 without pairs)
    int32_t (*top_token)[MOE_ROUTES_TOP]; // (E) token ids, most pairs first; -1: none
    double (*top_share)[MOE_ROUTES_TOP];  // (E) their share of the expert's load
    int64_t *coact;                       // (E, E) see above
    // to the next MoE layer (unset for the last): accuracy, H(next | this), H(next), tokens
    double pred_acc, pred_h_cond, pred_h_next;
    int64_t pred_tokens;
} moe_routes_layer;

typedef struct {
    int E, n_moe;
    int64_t tokens;           // N
    moe_routes_layer *layers; // (n_moe)
} moe_routes_stats;

// All statistics of one trace (pure; allocates). Free with moe_routes_stats_free (NULL-safe).
moe_routes_stats *moe_routes_analyse(const moe_trace *t);
void moe_routes_stats_free(moe_routes_stats *s);

// Stability between two traces: per layer, changed (share of tokens whose set differs) and
// jaccard (mean). MOE_EINVAL (exit 2) with a message naming both files and what differs when they
// are not comparable: another model shape (config_hash, slots), another probe (probe_hash, token
// count) — nothing is written then. changed, jaccard: (n_moe) each, caller-allocated.
moe_status moe_routes_stability(const moe_trace *a, const char *name_a, const moe_trace *b,
                                const char *name_b, double *changed, double *jaccard);

// Text tables of one trace's statistics (name: how the trace is called in the heading).
void moe_routes_print(FILE *f, const char *name, const moe_trace *t, const moe_routes_stats *s);
// The stability table of two traces.
void moe_routes_print_stability(FILE *f, const char *a, const char *b, int n_moe,
                                const int32_t *moe_layers, const double *changed,
                                const double *jaccard);
// One JSON document of every trace's statistics and of the stability of each trace against the
// first one (traces[1..n), when n > 1; comparability was checked before). Returns 0 or -1 (out of
// memory / write failure).
int moe_routes_json(FILE *f, const char *const *names, moe_trace *const *traces,
                    moe_routes_stats *const *stats, int n, const double *const *changed,
                    const double *const *jaccard);

// PNGs into out_dir (created) through gnuplot: <stem>-load.png (layer × expert load share) and
// <stem>-coact-L<l>.png (the co-activation heatmap of MoE layer l, by block index), data files
// under out_dir/data/. gnuplot from MOE_GNUPLOT or PATH; absent (or MOE_GNUPLOT=none): nothing
// written and *note says why (MOE_OK). MOE_EIO when files cannot be written or gnuplot fails.
moe_status moe_routes_plot(const char *out_dir, const char *stem, const moe_trace *t,
                           const moe_routes_stats *s, char *note, size_t note_cap);

// moe report's routing section of one run directory, in Markdown: when RUN/traces holds
// step-N.trace files, the newest trace's per-layer table (load max/mean, entropy, MI, drops,
// top-1 predictability, the most co-activated pair) and the stability between the first and the
// last trace. first = 1: the "## Routing" heading goes before it. Returns 1 when it wrote
// something, 0 for a run without traces. A trace that cannot be read is named in the section
// with the reader's message (the report goes on).
int moe_routes_report_run(FILE *md, const char *run_dir, const char *run_name, int first);
// The same section for index.html: an <h2>Routing</h2> heading when first, then the Markdown
// above as preformatted text (HTML-escaped). Returns 1 when it wrote something.
int moe_routes_report_run_html(FILE *html, const char *run_dir, const char *run_name, int first);

#endif
