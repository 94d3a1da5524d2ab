// test_exchange_auto.c: exchange settings as values and the auto tuner's decision
// (trainer/exchange-auto.h), without MPI: names round-trip through parse, bad names are refused
// with the part named, the config mapping is the inverse of moe_xsetting_of, the trial walks the
// candidates in blocks of 1 + 3 steps, the median decides, flat stays within the 2 % margin, and a
// recorded choice is taken on resume only when it is one of this layout's candidates.
#include "exchange-auto.h"
#include "config.h"
#include "test-util.h"

#include <string.h>

// A tuner in the TRYING state over the given candidates (as init makes it on a spanning layout).
static moe_xauto trying(const char *const *names, int n) {
    moe_xauto a;
    memset(&a, 0, sizeof a);
    a.state = MOE_XAUTO_TRYING;
    a.current = (moe_xsetting){.n_chunks = 1};
    a.n = n;
    for (int i = 0; i < n; i++) OK(moe_xsetting_parse(names[i], &a.cand[i]));
    return a;
}

// Runs the whole trial with per-candidate step seconds sec[i] (warm steps 10x slower, one timed
// step of each candidate an outlier at 5x): returns the chosen name. Checks the schedule against
// its written-out form: 2 lead steps on the running setting, then the candidates in order, then
// in reverse, each block 1 untimed + 2 timed steps, switching exactly when a block begins.
static void run_trial(moe_xauto *a, const double *sec, char out[MOE_XSETTING_NAME_MAX]) {
    int seq[64], timed[64], n_seq = 0;
    seq[n_seq] = -1, timed[n_seq++] = 0;
    seq[n_seq] = -1, timed[n_seq++] = 0;
    for (int r = 0; r < 2; r++)
        for (int b = 0; b < a->n; b++)
            for (int j = 0; j < 3; j++)
                seq[n_seq] = r ? a->n - 1 - b : b, timed[n_seq++] = j > 0;
    CHECK(n_seq == moe_xauto_trial_steps(a->n), "trial of %d steps, expected %d",
          moe_xauto_trial_steps(a->n), n_seq);
    int outlier[MOE_XAUTO_MAX] = {0}, ended = 0;
    moe_xsetting prev = a->current;
    for (int s = 0; s < n_seq; s++) {
        moe_xsetting x;
        const int sw = moe_xauto_before_step(a, &x);
        const moe_xsetting want = seq[s] < 0 ? prev : a->cand[seq[s]];
        const moe_xsetting was = s ? (seq[s - 1] < 0 ? prev : a->cand[seq[s - 1]]) : prev;
        CHECK(sw == !moe_xsetting_equal(&want, &was), "step %d: switch %d", s, sw);
        CHECK(moe_xsetting_equal(&a->current, &want), "step %d runs the wrong setting", s);
        const int i = seq[s] < 0 ? 0 : seq[s];
        double t = 10 * sec[i];
        if (timed[s]) t = outlier[i]++ == 1 ? 5 * sec[i] : sec[i];
        ended = moe_xauto_after_step(a, t);
        CHECK(ended == (s == n_seq - 1), "step %d: ended %d", s, ended);
    }
    CHECK(a->state == MOE_XAUTO_CHOSEN, "state %d after the trial", (int)a->state);
    moe_xsetting_name(&a->chosen, out);
    moe_xsetting x;
    const int sw = moe_xauto_before_step(a, &x);
    CHECK(sw == !moe_xsetting_equal(&a->chosen, &a->cand[0]), "switch to the choice %d", sw);
    CHECK(!moe_xauto_before_step(a, &x), "no second switch");
    CHECK(!moe_xauto_after_step(a, 1.0), "after the trial, steps do not count");
}

int main(void) {
    // Names and parse.
    const char *good[] = {"flat", "chunks4", "hier", "dedup-rank", "dedup-node", "bf16",
                          "chunks8+bf16", "hier+dedup-rank", "chunks2+hier+dedup-node"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        moe_xsetting s;
        char nm[MOE_XSETTING_NAME_MAX];
        OK(moe_xsetting_parse(good[i], &s));
        moe_xsetting_name(&s, nm);
        CHECK(!strcmp(nm, good[i]), "%s -> %s", good[i], nm);
        Moe__Config *cfg = moe_config_new_default();
        moe_xsetting_to_config(&s, cfg->parallel);
        const moe_xsetting back = moe_xsetting_of(cfg->parallel);
        CHECK(moe_xsetting_equal(&s, &back), "%s: config round trip", good[i]);
        moe_config_free(cfg);
    }
    const char *bad[][2] = {{"", "empty"},           {"chunks1", "needs 2..9999"},
                            {"chunks4x", "needs 2..9999"}, {"hier+", "empty or overlong"},
                            {"flat+hier", "unknown part \"flat\""}, {"dedup", "unknown part"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        moe_xsetting s;
        CHECK(moe_xsetting_parse(bad[i][0], &s) == MOE_EINVAL, "\"%s\" accepted", bad[i][0]);
        CHECK(strstr(moe_last_error(), bad[i][1]), "\"%s\": %s", bad[i][0], moe_last_error());
    }
    // One process: nothing to choose.
    moe_xsetting c[MOE_XAUTO_MAX];
    CHECK(moe_xsetting_candidates(NULL, c, MOE_XAUTO_MAX) == 1 && c[0].n_chunks == 1 &&
              !c[0].dedup && !c[0].hierarchical,
          "one process: flat only");
    Moe__Config *cfg = moe_config_new_default();
    moe_xauto a;
    moe_xauto_init(&a, cfg, NULL);
    CHECK(a.state == MOE_XAUTO_FIXED && a.why && strstr(a.why, "no EP group spans nodes"),
          "one process: fixed (%s)", a.why ? a.why : "");
    cfg->parallel->has_dedup = 1;
    moe_xauto_init(&a, cfg, NULL);
    CHECK(a.state == MOE_XAUTO_FIXED && strstr(a.why, "set in the config"), "dedup given: %s",
          a.why);
    moe_config_free(cfg);

    // The decision: the median, not the mean (one outlier per candidate), flat within 2 % stays.
    const char *names[] = {"flat", "chunks4", "dedup-rank"};
    char got[MOE_XSETTING_NAME_MAX];
    const double faster[] = {1.0, 0.7, 0.9};
    a = trying(names, 3);
    run_trial(&a, faster, got);
    CHECK(!strcmp(got, "chunks4"), "chose %s, expected chunks4", got);
    CHECK(fabs(a.median[1] - 0.7) < 1e-12, "median of chunks4 %.17g", a.median[1]);
    const double tie[] = {1.0, 0.985, 1.2};
    a = trying(names, 3);
    run_trial(&a, tie, got);
    CHECK(!strcmp(got, "flat"), "1.5 %% faster is within the margin: chose %s", got);
    const double last[] = {1.0, 1.1, 0.5};
    a = trying(names, 3);
    run_trial(&a, last, got);
    CHECK(!strcmp(got, "dedup-rank"), "chose %s, expected dedup-rank", got);
    char line[1024];
    moe_xauto_describe(&a, line, sizeof line);
    CHECK(a.state == MOE_XAUTO_CHOSEN && a.median[2] == 0.5 &&
              strstr(line, "exchange auto chose dedup-rank") && strstr(line, "dedup-rank 500.0"),
          "state %d, median %.17g, line %s", (int)a.state, a.median[2], line);

    // Resume: a recorded candidate is taken; another layout's or a bad name starts the trial.
    a = trying(names, 3);
    CHECK(moe_xauto_resume(&a, "dedup-rank") == 1 && a.state == MOE_XAUTO_RESUMED, "resume");
    moe_xsetting x;
    CHECK(moe_xauto_before_step(&a, &x) == 1 && x.dedup == 1, "resumed: switches at once");
    CHECK(!moe_xauto_after_step(&a, 1.0), "resumed: no trial");
    const char *other[] = {"hier", "nonsense", "", NULL};
    for (int i = 0; i < 4; i++) {
        a = trying(names, 3);
        CHECK(moe_xauto_resume(&a, other[i]) == 0 && a.state == MOE_XAUTO_TRYING,
              "resume with \"%s\" must start the trial", other[i] ? other[i] : "(null)");
    }
    return test_summary("test_exchange_auto");
}
