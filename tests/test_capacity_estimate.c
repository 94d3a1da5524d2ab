// test_capacity_estimate.c: issue 12 defect 8 — a large router.capacity_factor (1e4, 1e308) is a
// valid "drop nothing": the capacity is capped at the token count (no int64 overflow), and the
// model's memory estimate counts the rows the layer really holds (T·k for token choice, at most
// E·T for expert choice) instead of multiplying by the factor ("needs 547 GiB", "inf GiB").
#include "config.h"
#include "model.h"
#include "router.h"
#include "test-util.h"

#include <string.h>

static Moe__Config *cfg_of(double cf, int expert_choice) {
    Moe__Config *c = moe_config_new_default();
    Moe__ModelConfig *m = c->model;
    m->vocab_size = 256, m->d_model = 256, m->n_layers = 2, m->n_heads = 4, m->d_ff = 512;
    m->n_experts = 4, m->top_k = 2, m->expert_d_ff = 1024;
    m->has_vocab_size = m->has_d_model = m->has_n_layers = m->has_n_heads = m->has_d_ff = 1;
    m->has_n_experts = m->has_top_k = m->has_expert_d_ff = 1;
    c->train->seq_len = 16, c->train->has_seq_len = 1;
    c->router->capacity_factor = cf, c->router->has_capacity_factor = 1;
    c->router->strategy = expert_choice ? MOE__ROUTER_CONFIG__STRATEGY__expert_choice
                                        : MOE__ROUTER_CONFIG__STRATEGY__token_choice;
    c->router->has_strategy = 1;
    return c;
}

int main(void) {
    // The capacity itself: capped at T for both strategies, for any finite factor.
    moe_router_params p;
    memset(&p, 0, sizeof p);
    p.E = 4, p.K = 2, p.D = 8;
    const double cfs[] = {1.25, 2, 1e4, 1e18, 1e308};
    for (int ec = 0; ec < 2; ec++)
        for (size_t i = 0; i < sizeof cfs / sizeof cfs[0]; i++) {
            p.strategy = ec ? MOE_ROUTE_EXPERT_CHOICE : MOE_ROUTE_TOKEN_CHOICE;
            p.capacity_factor = cfs[i];
            int64_t C = moe_router_capacity(&p, 10);
            int64_t want = cfs[i] == 1.25 ? 7 : 10;
            CHECK(C == want, "%s cf %g: capacity %lld, expected %lld", ec ? "EC" : "TC", cfs[i],
                  (long long)C, (long long)want);
            CHECK(moe_router_max_rows(&p, 10) <= 40, "%s cf %g: max rows %lld > E*T",
                  ec ? "EC" : "TC", cfs[i], (long long)moe_router_max_rows(&p, 10));
        }
    // The memory estimate: a small model with a huge factor fits (8 sequences of 16 tokens).
    moe_model_layout one = {1, 0, 1, 0, 0};
    for (int ec = 0; ec < 2; ec++)
        for (size_t i = 0; i < sizeof cfs / sizeof cfs[0]; i++) {
            Moe__Config *cfg = cfg_of(cfs[i], ec);
            OK(moe_config_validate(cfg, 1));
            moe_model *m = NULL;
            moe_status st = moe_model_create(cfg, &one, NULL, 8, &m);
            CHECK(st == MOE_OK, "%s capacity_factor %g: refused: %s", ec ? "EC" : "TC", cfs[i],
                  moe_last_error());
            moe_model_free(m);
            moe_config_free(cfg);
        }
    // A model truly too big is still refused, with a finite figure.
    Moe__Config *cfg = cfg_of(1e308, 0);
    moe_model *m = NULL;
    moe_status st = moe_model_create(cfg, &one, NULL, 1 << 24, &m);
    CHECK(st == MOE_EINVAL && strstr(moe_last_error(), "GiB") && !strstr(moe_last_error(), "inf"),
          "2^24 sequences: %s (%s)", moe_status_str(st), moe_last_error());
    moe_model_free(m);
    moe_config_free(cfg);
    return test_summary("test_capacity_estimate");
}
