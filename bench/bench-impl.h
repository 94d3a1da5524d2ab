// bench-impl.h: internals of the benchmark room — the sub-benchmarks the table of cmd-bench.c
// dispatches to, and the helpers they share (bench-util.c).
#ifndef MOE_BENCH_IMPL_H
#define MOE_BENCH_IMPL_H

#include "bench.h"
#include "comm.h"
#include "exchange-auto.h"
#include "train.h"
#include "watchdog.h"

int moe_bench_layer(int argc, char **argv);   // bench/bench-layer.c: `moe bench layer`
int moe_bench_a2a(int argc, char **argv);     // bench/bench-a2a.c: engine vs raw MPI_Alltoallv
int moe_bench_step(int argc, char **argv);    // bench/bench-step.c: whole training steps
int moe_bench_experts(int argc, char **argv); // bench/bench-experts.c: the expert part, E vs E
// The config of `moe bench step` / `experts` (bench-step.c): CONFIG at path with the --set
// overrides, or (path NULL) the examples/tiny-moe.json shape built in, ep_size = W when W divides
// its experts, then the overrides. *out for moe_config_free; a failure leaves the message.
moe_status moe_bench_config(const char *path, const char **sets, int n_sets, int W,
                            Moe__Config **out);
// `moe bench layer --ep` (bench/bench-layer-ep.c); argv as for `moe bench layer`.
int moe_bench_layer_ep(int argc, char **argv);
// `moe bench step --watchdog` (bench/bench-step-watchdog.c): the step timed with the job watchdog
// off and on in interleaved blocks (ABBA), both figures and the overhead printed (rank 0).
// Collective; refuses (MOE_ELAYOUT) a world of one rank or watchdog.enabled = false.
moe_status moe_bench_step_watchdog(const Moe__Config *cfg, const moe_comm *c, int steps_per_block,
                                   int blocks, int json);

// The step sessions of `moe bench step` (bench/bench-step-run.c): the model of cfg at c's layout
// (train.global_batch / W sequences per rank), its moe_train_step state and this rank's synthetic
// tokens (moe_bench_step_tokens). Steps run with consecutive indices 0, 1, … across calls.
typedef struct moe_bench_stepper moe_bench_stepper;
moe_status moe_bench_stepper_create(const Moe__Config *cfg, const moe_comm *c,
                                    moe_bench_stepper **out); // collective
void moe_bench_stepper_free(moe_bench_stepper *s);            // NULL-safe
// n steps, each: a world barrier, then moe_watchdog_enter(w, MOE_WATCH_STEP, index + 1),
// moe_train_step, moe_watchdog_leave(w) — the trainer's bracket (w NULL: no watchdog, the calls
// are no-ops). Adds to acc (NULL: not kept) the steps' own seconds and shares. watched (n) or
// NULL: each step's wall clock from before enter to after leave, this rank; losses (n) or NULL:
// each step's global loss. Collective.
moe_status moe_bench_stepper_run(moe_bench_stepper *s, int n, moe_watchdog *w, double *losses,
                                 moe_bench_step_times *acc, double *watched);
// The session's model (owned by s), for what bench-step-mem.c times after the last step.
moe_model *moe_bench_stepper_model(moe_bench_stepper *s);

// The step's O(total parameters) part (bench/bench-step-mem.c), in GB/s of this rank.
typedef struct {
    int64_t n_params; // this rank's parameters (floats in each of w, m, v, g)
    double adamw_gbs; // moe_optim_adamw_step over all of them: 28 bytes per parameter
    double zero_gbs;  // moe_model_zero_grads: 4 bytes per gradient it zeroes
    int64_t zeroed;   // of which floats (the routed experts' of EP layers are written by backward)
} moe_bench_mem;
// After s's last timed step (it overwrites the model's w, m, v and g: call nothing on s after it
// but moe_bench_stepper_free): AdamW, then zeroing, each after a world barrier and run reps + 1
// times on the model's own buffers, the first a warmup, the best kept. c NULL: no barrier.
moe_status moe_bench_step_mem(moe_bench_stepper *s, const Moe__Config *cfg, const moe_comm *c,
                              int reps, moe_bench_mem *out);
// STREAM-style triad a = b + s·c over 3 x 64 MiB of float: GB/s at 12 bytes per element, best of
// reps after a warmup pass. Allocates and frees its 192 MiB.
double moe_bench_triad_gbs(int reps);

// ---------------------------------------------------------------- exchange settings side by side
// (bench/bench-settings.c) for `moe bench step --settings` (bench/bench-step-settings.c) and
// `moe bench layer --ep --settings`. Settings are exchange-auto.h's values.
#define MOE_BENCH_SETTINGS_MAX 24
typedef struct {
    moe_xsetting s;
    char name[MOE_XSETTING_NAME_MAX];
} moe_bench_setting;
// list: comma-separated names (moe_xsetting_parse) or NULL for the default (flat, chunks2,
// chunks4, chunks8, hier, dedup-rank, dedup-node, bf16, chunks4+bf16, hier+bf16). out[0] is
// always flat (the reference); repeats are dropped. MOE_EINVAL naming a bad name.
moe_status moe_bench_settings_list(const char *list, moe_bench_setting *out, int max, int *n);
// Why s is not measured at c's layout (the same thing as another setting, or refused), static
// text; NULL: measure it.
const char *moe_bench_setting_skip(const moe_xsetting *s, const moe_comm *c);
// `--settings [LIST]` for a table that knows `--settings` as a flag: rewrites argv in place
// ("--settings=LIST" → "--settings"; "--settings LIST" drops LIST when every comma part of it is
// a setting's name) and returns the new argc; *list = LIST or NULL (the default).
int moe_bench_settings_argv(int argc, char **argv, const char **list);
// Median of v (n >= 1; v is sorted in place).
double moe_bench_settings_median(double *v, int n);
// `moe bench step --settings` (bench/bench-step-settings.c): every setting of list at cfg's
// layout, `rounds` rounds of (1 untimed + steps timed) steps per setting, order rotated per
// round; the table or one JSON object (rank 0). Collective over c's world.
moe_status moe_bench_step_settings(const Moe__Config *cfg, const moe_comm *c, const char *list,
                                   int steps, int rounds, int json);

// Helpers of the benchmarks (bench/bench-util.c). cblas_sgemm 1024³ GFLOP/s, best of reps after
// a warmup.
double moe_sgemm_peak(int reps);
// Collective: a communicator whose one EP group is the whole world, for n_experts experts (the
// world size is asked of a layout-free handle first); *W = the world size.
moe_status moe_bench_comm_world_ep(int n_experts, moe_comm **out, int *W);
// One BLAS thread per rank unless OPENBLAS_NUM_THREADS says otherwise.
void moe_bench_threads(void);

#endif
