// exchange-auto.h: the expert exchange's setting as one value (overlap chunks, hierarchical,
// dedup level, bf16 payloads), its names, the candidates a layout offers, and
// `parallel.exchange = auto` — the trainer's timed trial of the candidates on the first steps of
// a run, the choice every rank makes from the same agreed timings, and its record for the
// progress header, the metrics and the checkpoints. docs/expert-parallel.md, "auto".
//
// The trial: MOE_XAUTO_LEAD untimed steps with the config's setting (the run's own warm-up: first
// touches, caches — it would count against whichever candidate went first), then
// MOE_XAUTO_ROUNDS rounds over the candidates, in order, then in reverse (ABBA: a drift during the
// trial falls evenly on all); in each, candidate i runs MOE_XAUTO_WARM untimed steps (its buffers
// are fresh) then MOE_XAUTO_TIMED timed steps. A step's time is the slowest rank's compute + wait seconds of the
// step (moe_train_step_result's agreed per-rank arrays, identical on every rank: no collective
// is added and every rank picks the same). After the last candidate the one with the lowest
// median wins; plain flat (candidate 0) is kept unless another is faster by more than
// MOE_XAUTO_MARGIN (a tie is not worth a setting the user did not ask for). The trial steps are
// ordinary training steps: the candidates differ from flat by float summation order only.
#ifndef MOE_EXCHANGE_AUTO_H
#define MOE_EXCHANGE_AUTO_H

#include "comm.h"
#include "model.h"
#include "moe-common.h"
#include "moe.pb-c.h"

typedef struct {
    int dedup;        // 0 none, 1 rank, 2 node (moe_ep_options.dedup)
    int n_chunks;     // 1: one blocking exchange; > 1: overlapped with the expert compute in chunks
    int hierarchical; // 1: node-leader exchange (comm/ hierarchical mode)
    int bf16;         // 1: payloads rounded to bf16 (changes results: never an auto candidate)
} moe_xsetting;

// Names: "flat" (the plain exchange), else the parts joined by '+': "chunksN", "hier",
// "dedup-rank" / "dedup-node", "bf16" — e.g. "hier+dedup-rank", "chunks4+bf16". Never longer
// than MOE_XSETTING_NAME_MAX - 1 characters.
#define MOE_XSETTING_NAME_MAX 48
void moe_xsetting_name(const moe_xsetting *s, char buf[MOE_XSETTING_NAME_MAX]);
// The inverse of moe_xsetting_name; MOE_EINVAL (naming the part not understood) otherwise.
moe_status moe_xsetting_parse(const char *name, moe_xsetting *out);
// The setting parallel.* describes (pc NULL: flat) and the reverse: writes overlap,
// overlap_chunks, hierarchical, dedup and exchange_dtype of pc (with their has_ flags).
moe_xsetting moe_xsetting_of(const Moe__ParallelConfig *pc);
void moe_xsetting_to_config(const moe_xsetting *s, Moe__ParallelConfig *pc);
int moe_xsetting_equal(const moe_xsetting *a, const moe_xsetting *b);

// The settings auto tries at c's layout, flat first: chunks4; and where an EP group spans two or
// more nodes with more than one rank on a node, hier and dedup-node; dedup-rank where the EP
// group has more than one rank. Settings that are the same thing at this layout are left out
// (dedup-node with one rank per node is dedup-rank; hier on one node is flat). Returns the count
// (<= max). c NULL or EP 1: flat only.
int moe_xsetting_candidates(const moe_comm *c, moe_xsetting *out, int max);
// 1 when some EP group of c spans two or more nodes (where the exchange crosses links).
int moe_xsetting_spans_nodes(const moe_comm *c);

// ---------------------------------------------------------------- the tuner
#define MOE_XAUTO_MAX 8
#define MOE_XAUTO_LEAD 2
#define MOE_XAUTO_ROUNDS 2
#define MOE_XAUTO_WARM 1
#define MOE_XAUTO_TIMED 2
#define MOE_XAUTO_MARGIN 0.02

typedef enum {
    MOE_XAUTO_FIXED = 0, // the setting is the config's (exchange = fixed, a field given, or a
                         // layout with nothing to choose)
    MOE_XAUTO_TRYING,    // the trial is running
    MOE_XAUTO_CHOSEN,    // the trial chose (this run)
    MOE_XAUTO_RESUMED,   // the choice was read from the checkpoint resumed from
} moe_xauto_state;

typedef struct {
    moe_xauto_state state;
    const char *why;        // FIXED: why there is no trial (static text)
    moe_xsetting current;   // the setting the model runs now
    moe_xsetting chosen;    // CHOSEN / RESUMED: the choice (FIXED: the config's setting)
    int n;                  // candidates
    moe_xsetting cand[MOE_XAUTO_MAX];
    double seconds[MOE_XAUTO_MAX][MOE_XAUTO_ROUNDS * MOE_XAUTO_TIMED]; // timed steps
    double median[MOE_XAUTO_MAX];                   // after the trial (0 before)
    int pos;                // trial steps done
    // Storage of moe_xauto_record's fields (valid until the next call).
    char names[MOE_XAUTO_MAX][MOE_XSETTING_NAME_MAX], current_name[MOE_XSETTING_NAME_MAX];
    Moe__ExchangeTrial trial[MOE_XAUTO_MAX], *trialp[MOE_XAUTO_MAX];
} moe_xauto;

// What the run starts with, from cfg (parallel.*) and c. Local; every rank decides the same.
void moe_xauto_init(moe_xauto *a, const Moe__Config *cfg, const moe_comm *c);
// Resume: the choice recorded in the checkpoint (a name; NULL or "" = none recorded, e.g. the
// checkpoint was written during the trial: the trial starts over). Only when state is TRYING; a
// name that is not one of this layout's candidates (the checkpoint came from another layout)
// is ignored and the trial runs (returns 0); returns 1 when the choice was taken.
int moe_xauto_resume(moe_xauto *a, const char *choice);
// Steps the trial takes with n candidates; and, for trial step `pos` (0-based), the candidate it
// runs (-1: a lead step, run with the config's setting) and its timed slot (-1: not timed).
int moe_xauto_trial_steps(int n);
int moe_xauto_slot(int n, int pos, int *timed);
// Before a step: 1 when the model must switch to *s (a candidate's block begins, or the choice
// was just made), 0 otherwise.
int moe_xauto_before_step(moe_xauto *a, moe_xsetting *s);
// After a step that ran with a->current: its agreed seconds (the same value on every rank).
// Returns 1 when this step ended the trial (a->chosen is set; the next before_step switches).
int moe_xauto_after_step(moe_xauto *a, double seconds);
// The trainer's two calls around a step (trainer/train.c). Before: moe_xauto_before_step and,
// when due, moe_model_set_exchange with cfg->parallel changed to the setting (collective,
// agreed). After: the step's agreed seconds, max over ranks of compute[r] + wait[r] (the step
// result's agreed per-rank arrays: every rank computes the same value); returns 1 when the trial
// ended with this step.
moe_status moe_xauto_prepare(moe_xauto *a, moe_model *m, const Moe__Config *cfg);
int moe_xauto_step_done(moe_xauto *a, const double *compute, const double *wait, int world);
// Fills rec's exchange_setting / exchange_state (the setting the step ran with) and, when
// `ended` (the step ended the trial), exchange_trial. Pointers into a: valid until the next call.
void moe_xauto_record(moe_xauto *a, int ended, Moe__MetricsRecord *rec);
// One line for the progress header (no newline).
void moe_xauto_describe(const moe_xauto *a, char *buf, size_t n);

#endif
