// test_enums.c: the enum tables the compiler follows — every status has its own string and the
// documented exit code; proto enum fields holding a number their enum does not name are refused
// (MOE_EINVAL naming the field and the number) by every mapping path instead of becoming a
// default; the routing-strategy traits; the checkpoint format constants and tensor-kind names.
#include "checkpoint.h"
#include "config.h"
#include "experts.h"
#include "model.h"
#include "params.h"
#include "router.h"
#include "test-util.h"

#include <string.h>

// ---------------------------------------------------------------- status codes

static void test_status_table(void) {
    // The documented exit codes (README, `moe --help`): 0 ok, 1 failure, 2 usage/invalid/layout,
    // 3 corrupt data, 75 interrupted. Values are part of the API and must not move.
    static const struct {
        moe_status s;
        int value;
        int exit;
    } want[] = {
        {MOE_OK, 0, 0},          {MOE_EINVAL, -1, 2}, {MOE_ENOMEM, -2, 1}, {MOE_EIO, -3, 1},
        {MOE_ECORRUPT, -4, 3},   {MOE_EMPI, -5, 1},   {MOE_EUSAGE, -6, 2}, {MOE_ELAYOUT, -7, 2},
        {MOE_ENONFINITE, -8, 1}, {MOE_EINTR, -9, 75},
    };
    const int nw = (int)(sizeof want / sizeof want[0]);
    // Every row of the table is in `want` (a new status needs its exit code written here).
    int n_table = 0;
#define COUNT_(name, value, str, exit) n_table++;
    MOE_STATUS_MAP(COUNT_)
#undef COUNT_
    CHECK(n_table == nw, "MOE_STATUS_MAP has %d rows, the test knows %d", n_table, nw);
    for (int i = 0; i < nw; i++) {
        const char *str = moe_status_str(want[i].s);
        CHECK((int)want[i].s == want[i].value, "status %d: value %d, expected %d", i,
              (int)want[i].s, want[i].value);
        CHECK(str && *str, "status %d: empty string", want[i].value);
        CHECK(strcmp(str, "unknown error") != 0, "status %d: no string of its own", want[i].value);
        CHECK((int)moe_exit_code(want[i].s) == want[i].exit, "status %d (%s): exit %d, expected %d",
              want[i].value, str, (int)moe_exit_code(want[i].s), want[i].exit);
        for (int j = 0; j < i; j++)
            CHECK(strcmp(str, moe_status_str(want[j].s)) != 0, "statuses %d and %d share \"%s\"",
                  want[i].value, want[j].value, str);
    }
    CHECK(MOE_EXIT_OK == 0 && MOE_EXIT_FAILURE == 1 && MOE_EXIT_USAGE == 2 && MOE_EXIT_DATA == 3 &&
              MOE_EXIT_TEMPFAIL == 75,
          "exit codes moved: %d %d %d %d %d", MOE_EXIT_OK, MOE_EXIT_FAILURE, MOE_EXIT_USAGE,
          MOE_EXIT_DATA, MOE_EXIT_TEMPFAIL);
    // A number outside the table (e.g. a corrupt status received from another rank).
    const moe_status bogus = (moe_status)-1000;
    CHECK(!strcmp(moe_status_str(bogus), "unknown error"), "got \"%s\"", moe_status_str(bogus));
    CHECK(moe_exit_code(bogus) == MOE_EXIT_FAILURE, "got %d", (int)moe_exit_code(bogus));
}

// ---------------------------------------------------------------- unknown proto enum numbers

// st is MOE_EINVAL and the last error names `field` and `value`.
static void expect_refused(moe_status st, const char *what, const char *field, const char *value) {
    const char *msg = moe_last_error();
    CHECK(st == MOE_EINVAL, "%s: status %d (%s), expected MOE_EINVAL", what, (int)st,
          moe_status_str(st));
    CHECK(strstr(msg, field) && strstr(msg, value), "%s: message \"%s\" does not name %s and %s",
          what, msg, field, value);
}

static void test_unknown_proto_values(void) {
    Moe__ModelConfig mc = MOE__MODEL_CONFIG__INIT;
    mc.n_experts = 4, mc.top_k = 2, mc.d_model = 8, mc.d_ff = 16;
    Moe__RouterConfig rc = MOE__ROUTER_CONFIG__INIT;
    moe_layer_params lp;

    // The good config maps (so the refusals below are about the enum only).
    CHECK(moe_layer_params_from_config(&lp, &mc, &rc, 16) == MOE_OK, "%s", moe_last_error());
    CHECK(lp.router.strategy == MOE_ROUTE_TOKEN_CHOICE, "strategy %d", (int)lp.router.strategy);
    rc.strategy = MOE__ROUTER_CONFIG__STRATEGY__expert_choice;
    CHECK(moe_layer_params_from_config(&lp, &mc, &rc, 16) == MOE_OK, "%s", moe_last_error());
    CHECK(lp.router.strategy == MOE_ROUTE_EXPERT_CHOICE, "strategy %d", (int)lp.router.strategy);

    // strategy = 99 set in C: refused, not token choice.
    rc.strategy = (Moe__RouterConfig__Strategy)99;
    expect_refused(moe_layer_params_from_config(&lp, &mc, &rc, 16), "layer params, strategy 99",
                   "router.strategy", "99");
    moe_route_strategy rs = MOE_ROUTE_EXPERT_CHOICE;
    expect_refused(moe_layer_strategy_from_config(&rc, &rs), "strategy mapping", "router.strategy",
                   "99");
    rc.strategy = MOE__ROUTER_CONFIG__STRATEGY__token_choice;
    rc.scoring = (Moe__RouterConfig__Scoring)7;
    expect_refused(moe_layer_params_from_config(&lp, &mc, &rc, 16), "layer params, scoring 7",
                   "router.scoring", "7");
    rc.scoring = MOE__ROUTER_CONFIG__SCORING__softmax;
    mc.activation = (Moe__ModelConfig__Activation)-3;
    expect_refused(moe_layer_params_from_config(&lp, &mc, &rc, 16), "layer params, activation -3",
                   "model.activation", "-3");
    mc.activation = MOE__MODEL_CONFIG__ACTIVATION__swiglu;

    // Params filled by hand: the layer and the router refuse them at creation.
    CHECK(moe_layer_params_from_config(&lp, &mc, &rc, 16) == MOE_OK, "%s", moe_last_error());
    lp.router.strategy = (moe_route_strategy)99;
    moe_layer *L = (moe_layer *)0x1;
    expect_refused(moe_layer_create(&lp, &L), "moe_layer_create, strategy 99", "strategy", "99");
    CHECK(L == NULL, "moe_layer_create left %p", (void *)L);
    moe_route_plan *plan = (moe_route_plan *)0x1;
    expect_refused(moe_route_plan_create(&lp.router, 16, &plan), "plan, strategy 99", "strategy",
                   "99");
    CHECK(plan == NULL, "moe_route_plan_create left %p", (void *)plan);
    lp.router.strategy = MOE_ROUTE_TOKEN_CHOICE;
    lp.router.scoring = (moe_scoring)5;
    expect_refused(moe_route_plan_create(&lp.router, 16, &plan), "plan, scoring 5", "scoring", "5");

    // Whole configs: validation walks every enum field; model check and params count refuse the
    // fields they read.
    Moe__Config *cfg = moe_config_new_default();
    MOE_ASSERT(cfg);
    cfg->model->n_experts = 4;
    CHECK(moe_config_validate(cfg, 1) == MOE_OK, "default config: %s", moe_last_error());
    cfg->router->strategy = (Moe__RouterConfig__Strategy)99;
    expect_refused(moe_config_validate(cfg, 1), "validate, strategy 99", "router.strategy", "99");
    CHECK(strstr(moe_last_error(), "token_choice") && strstr(moe_last_error(), "expert_choice"),
          "message lists the values: %s", moe_last_error());
    cfg->router->strategy = MOE__ROUTER_CONFIG__STRATEGY__token_choice;
    if (!cfg->parallel) { // freed with the config (protobuf-c's default allocator: malloc)
        cfg->parallel = malloc(sizeof *cfg->parallel);
        MOE_ASSERT(cfg->parallel);
        moe__parallel_config__init(cfg->parallel);
    }
    { // the exchange payload type (bf16 payloads)
        cfg->parallel->exchange_dtype = (Moe__ParallelConfig__ExchangeDtype)7;
        expect_refused(moe_config_validate(cfg, 1), "validate, exchange_dtype 7",
                       "parallel.exchange_dtype", "7");
        CHECK(strstr(moe_last_error(), "bf16"), "message lists bf16: %s", moe_last_error());
        cfg->parallel->exchange_dtype = MOE__PARALLEL_CONFIG__EXCHANGE_DTYPE__bf16;
        CHECK(moe_config_validate(cfg, 1) == MOE_OK, "bf16: %s", moe_last_error());
    }
    { // exchange dedup: an unknown value, and rank with bf16 refused with the reason
        cfg->parallel->dedup = (Moe__ParallelConfig__Dedup)5;
        expect_refused(moe_config_validate(cfg, 1), "validate, dedup 5", "parallel.dedup", "5");
        cfg->parallel->dedup = MOE__PARALLEL_CONFIG__DEDUP__rank;
        expect_refused(moe_config_validate(cfg, 1), "validate, dedup rank + bf16",
                       "parallel.dedup = rank", "bf16");
        CHECK(strstr(moe_last_error(), "layout invariance"), "message says why: %s",
              moe_last_error());
        cfg->parallel->dedup = MOE__PARALLEL_CONFIG__DEDUP__node;
        expect_refused(moe_config_validate(cfg, 1), "validate, dedup node + bf16",
                       "parallel.dedup = node", "bf16");
        cfg->parallel->exchange_dtype = MOE__PARALLEL_CONFIG__EXCHANGE_DTYPE__f32;
        CHECK(moe_config_validate(cfg, 1) == MOE_OK, "dedup node: %s", moe_last_error());
        cfg->parallel->dedup = MOE__PARALLEL_CONFIG__DEDUP__rank;
        CHECK(moe_config_validate(cfg, 1) == MOE_OK, "dedup rank: %s", moe_last_error());
        cfg->parallel->dedup = MOE__PARALLEL_CONFIG__DEDUP__none;
    }
    cfg->model->norm = (Moe__ModelConfig__Norm)42;
    expect_refused(moe_config_validate(cfg, 1), "validate, norm 42", "model.norm", "42");
    expect_refused(moe_model_check(cfg), "model check, norm 42", "model.norm", "42");
    moe_params_report pr;
    expect_refused(moe_params_count(cfg, 1, 1, &pr), "params, norm 42", "model.norm", "42");
    cfg->model->norm = MOE__MODEL_CONFIG__NORM__rmsnorm;
    cfg->model->positions = (Moe__ModelConfig__Positions)9;
    expect_refused(moe_model_check(cfg), "model check, positions 9", "model.positions", "9");
    expect_refused(moe_params_count(cfg, 1, 1, &pr), "params, positions 9", "model.positions", "9");
    cfg->model->positions = MOE__MODEL_CONFIG__POSITIONS__rope;
    cfg->model->qk_norm = (Moe__ModelConfig__QkNorm)8;
    expect_refused(moe_model_check(cfg), "model check, qk_norm 8", "model.qk_norm", "8");
    expect_refused(moe_params_count(cfg, 1, 1, &pr), "params, qk_norm 8", "model.qk_norm", "8");
    cfg->model->qk_norm = MOE__MODEL_CONFIG__QK_NORM__none;
    cfg->model->activation = (Moe__ModelConfig__Activation)6;
    expect_refused(moe_model_check(cfg), "model check, activation 6", "model.activation", "6");
    expect_refused(moe_params_count(cfg, 1, 1, &pr), "params, activation 6", "model.activation",
                   "6");
    cfg->model->activation = MOE__MODEL_CONFIG__ACTIVATION__swiglu;
    cfg->train->schedule = (Moe__TrainConfig__Schedule)11;
    expect_refused(moe_config_validate(cfg, 1), "validate, schedule 11", "train.schedule", "11");
    expect_refused(moe_model_check(cfg), "model check, schedule 11", "train.schedule", "11");
    cfg->train->schedule = MOE__TRAIN_CONFIG__SCHEDULE__linear;
    cfg->data->format = (Moe__DataConfig__Format)3;
    expect_refused(moe_config_validate(cfg, 1), "validate, data.format 3", "data.format", "3");
    cfg->data->format = MOE__DATA_CONFIG__FORMAT__text;
    CHECK(moe_config_validate(cfg, 1) == MOE_OK, "restored config: %s", moe_last_error());
    CHECK(moe_model_check(cfg) == MOE_OK, "restored config: %s", moe_last_error());
    moe_config_free(cfg);
}

// ---------------------------------------------------------------- routing-strategy traits

static void test_strategy_traits(void) {
    const moe_route_traits tc = moe_router_strategy_traits(MOE_ROUTE_TOKEN_CHOICE);
    const moe_route_traits ec = moe_router_strategy_traits(MOE_ROUTE_EXPERT_CHOICE);
    CHECK(!strcmp(tc.name, "token_choice") && tc.by_token == 1 && tc.softmax_only == 0 &&
              tc.aux_loss == 1 && tc.balanced == 0,
          "token choice: %s by_token %d softmax_only %d aux %d balanced %d", tc.name, tc.by_token,
          tc.softmax_only, tc.aux_loss, tc.balanced);
    CHECK(!strcmp(ec.name, "expert_choice") && ec.by_token == 0 && ec.softmax_only == 1 &&
              ec.aux_loss == 0 && ec.balanced == 1,
          "expert choice: %s by_token %d softmax_only %d aux %d balanced %d", ec.name, ec.by_token,
          ec.softmax_only, ec.aux_loss, ec.balanced);
    // The C enum and its names match the proto enum value for value.
    const moe_route_strategy all[] = {MOE_ROUTE_TOKEN_CHOICE, MOE_ROUTE_EXPERT_CHOICE};
    for (int i = 0; i < 2; i++) {
        const ProtobufCEnumValue *v =
            protobuf_c_enum_descriptor_get_value(&moe__router_config__strategy__descriptor, all[i]);
        const char *name = moe_router_strategy_traits(all[i]).name;
        CHECK(v && !strcmp(v->name, name), "strategy %d: proto name %s, traits name %s",
              (int)all[i], v ? v->name : "(none)", name);
        Moe__RouterConfig rc = MOE__ROUTER_CONFIG__INIT;
        rc.strategy = (Moe__RouterConfig__Strategy)all[i];
        moe_route_strategy got = (moe_route_strategy)-1;
        CHECK(moe_layer_strategy_from_config(&rc, &got) == MOE_OK && got == all[i],
              "strategy %d maps to %d", (int)all[i], (int)got);
    }
    CHECK(moe__router_config__strategy__descriptor.n_values == 2,
          "the proto has %u strategies; add the new one here and to moe_router_strategy_traits",
          moe__router_config__strategy__descriptor.n_values);
    // What the traits promise, on the router itself: T = 8, E = 4, K = 2, cf = 0.
    moe_router_params p = {.D = 4, .E = 4, .K = 2, .capacity_factor = 0, .routed_scaling = 1};
    p.strategy = MOE_ROUTE_TOKEN_CHOICE;
    CHECK(moe_router_capacity(&p, 8) == 0 && moe_router_max_rows(&p, 8) == 16,
          "token choice: C %lld rows %lld (expected 0, 16)", (long long)moe_router_capacity(&p, 8),
          (long long)moe_router_max_rows(&p, 8));
    p.strategy = MOE_ROUTE_EXPERT_CHOICE;
    CHECK(moe_router_capacity(&p, 8) == 4 && moe_router_max_rows(&p, 8) == 16,
          "expert choice: C %lld rows %lld (expected 4, 16)", (long long)moe_router_capacity(&p, 8),
          (long long)moe_router_max_rows(&p, 8));
}

// ---------------------------------------------------------------- checkpoint names

static void test_checkpoint_names(void) {
    CHECK(!strcmp(moe_ckpt_kind_name(MOE_CKPT_KIND_PARAM), "param") &&
              !strcmp(moe_ckpt_kind_name(MOE_CKPT_KIND_ADAM_M), "adam_m") &&
              !strcmp(moe_ckpt_kind_name(MOE_CKPT_KIND_ADAM_V), "adam_v") &&
              !strcmp(moe_ckpt_kind_name(MOE_CKPT_KIND_ROUTER_BIAS), "router_bias"),
          "tensor-kind strings on disk changed: %s %s %s %s",
          moe_ckpt_kind_name(MOE_CKPT_KIND_PARAM), moe_ckpt_kind_name(MOE_CKPT_KIND_ADAM_M),
          moe_ckpt_kind_name(MOE_CKPT_KIND_ADAM_V), moe_ckpt_kind_name(MOE_CKPT_KIND_ROUTER_BIAS));
    CHECK(moe_ckpt_kind_name((moe_ckpt_kind)77) == NULL, "a kind outside the enum has a name");
    const Moe__CheckpointManifest m = MOE__CHECKPOINT_MANIFEST__INIT;
    CHECK(MOE_CKPT_FORMAT_VERSION == 1 && m.format_version == MOE_CKPT_FORMAT_VERSION,
          "format version %u, proto default %u (expected 1)", MOE_CKPT_FORMAT_VERSION,
          m.format_version);
    CHECK(MOE_CKPT_ELEM_BYTES == 4, "element size %d", MOE_CKPT_ELEM_BYTES);
}

int main(void) {
    test_status_table();
    test_unknown_proto_values();
    test_strategy_traits();
    test_checkpoint_names();
    return test_summary("test_enums");
}
