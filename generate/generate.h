// generate.h: the manual of sampling from a trained model (generate/generate.c) — `moe generate`.
// Trade-off: every new token recomputes the model's forward over the whole context window (no
// key/value cache): at the sizes moe trains (a window of a few hundred tokens) that is a few ms per
// token, and it reuses the one forward of training and evaluation (model.h) unchanged.
//
// Layout invariance: every rank holds the same one sequence (B_local = 1), so each rank routes the
// same tokens the same way at any world size and EP size (capacity and expert choice act per
// sequence, model.c); rank 0 samples and broadcasts the token, so all ranks extend the same
// context. Letters: V vocabulary, S the context window (positions per forward).
#ifndef MOE_GENERATE_H
#define MOE_GENERATE_H

#include "comm.h"
#include "moe-common.h"
#include "moe.pb-c.h"

#include <stdio.h>

// ---------------------------------------------------------------- sampling (pure, no state)
typedef struct {
    double temperature; // 0: greedy (argmax); > 0: softmax(logits / temperature)
    int top_k;          // sample among the k largest logits; 0 or >= V: all of them
} moe_sample_params;

// The token drawn from logits (V) with the uniform u in [0, 1): the candidates (top_k largest,
// ties to the lower id) in descending order, softmax in double, the first whose cumulative
// probability exceeds u · total. temperature 0 returns the argmax (lowest id on a tie) and ignores
// u. idx (V) is scratch.
int32_t moe_sample(const float *logits, int64_t V, const moe_sample_params *p, double u,
                   int32_t *idx);
// The uniform draw of the i-th generated token for a seed: counter-based (splitmix64), so the
// sequence of draws does not depend on anything but (seed, i). In [0, 1), 53 bits.
double moe_sample_uniform(uint64_t seed, int64_t i);

// ---------------------------------------------------------------- generation (collective)
typedef struct {
    const char *prompt; // text (byte vocabulary) or whitespace-separated ids (token files);
                        // NULL: a newline (bytes) or id 0 (token files)
    int64_t tokens;     // tokens to generate, >= 1
    int context;        // the window S; 0: the checkpoint's train.seq_len (at most max_seq_len)
    moe_sample_params sample;
    uint64_t seed;
} moe_generate_params;

// The checkpoint's config for generation: `where` resolved as moe_ckpt_load does (a checkpoint,
// checkpoints or run directory, or RUN/latest) into dir (cap bytes), its manifest's config with
// absent sections at their defaults and parallel.ep_size 1 (every expert on every rank), then the
// overrides `sets` (as `moe config --set`; e.g.
// parallel.ep_size=2). Local (no MPI). Free *out with moe_config_free.
moe_status moe_generate_config(const char *where, const char **sets, int n_sets, char *dir,
                               size_t cap, Moe__Config **out);
// Loads the checkpoint dir (its config cfg, from moe_generate_config) at c's layout and writes the
// prompt and then each sampled token to `out` on rank 0 as it is drawn (bytes for a text data
// format, else ids separated by spaces), then a newline. Collective over c's world (c NULL: one
// process). Refuses (MOE_EUSAGE) a prompt that is not ids below V for token files, top_k > V, a
// context above model.max_seq_len; checkpoint failures are moe_ckpt_load's.
moe_status moe_generate_run(const Moe__Config *cfg, const char *dir, const moe_comm *c,
                            const moe_generate_params *p, FILE *out);

// The routing of one text (`moe routes CHECKPOINT --text`): text (bytes, or ids for token
// files, as a prompt) through the model of the checkpoint dir (config cfg from
// moe_generate_config) in one forward of exactly its length, dropless as for generation; rank 0
// prints, for every MoE layer and token, the experts it goes to with their combine weights,
// heaviest first — a table, or one JSON object {checkpoint, n_experts, top_k, tokens[],
// layers[{layer, routes[{experts[], weights[]}]}]}. Collective; the same at any world size and
// ep_size. Refuses (MOE_EUSAGE) an empty text, one longer than model.max_seq_len, a model
// without MoE layers.
moe_status moe_generate_routes(const Moe__Config *cfg, const char *dir, const moe_comm *c,
                               const char *text, int json, FILE *out);

#endif
