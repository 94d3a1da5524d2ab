// test_params.c: moe_params_count against hand arithmetic. One tiny shape per architecture feature
// (expected values written out as the formula for that shape, never computed by the code under
// test), the published models at full size, per-rank bytes at world 4 / ep 2, and the refusals.
#include "params.h"

#include <math.h>
#include <string.h>

static int failures;

static void expect_eq(int line, const char *what, int64_t got, int64_t want) {
    if (got != want) {
        fprintf(stderr, "test_params.c:%d: %s: expected %lld, got %lld\n", line, what,
                (long long)want, (long long)got);
        failures++;
    }
}
#define EXPECT_EQ(what, got, want) expect_eq(__LINE__, what, (int64_t)(got), (int64_t)(want))

// A Config whose sub-messages live inside one struct, initialised with the schema defaults.
typedef struct {
    Moe__Config c;
    Moe__ModelConfig m;
    Moe__RouterConfig r;
    Moe__TrainConfig t;
    Moe__ParallelConfig p;
    Moe__LoraConfig l;
    Moe__LoraConfig__Target targets[5];
    int32_t dense[8];
} tcfg;

// The base shape B: V=16, D=8, L=2, H=2 (Dh=4), F=12, SwiGLU, RMSNorm, RoPE, untied, dense.
static void base(tcfg *x) {
    memset(x, 0, sizeof *x);
    moe__config__init(&x->c);
    moe__model_config__init(&x->m);
    moe__router_config__init(&x->r);
    moe__train_config__init(&x->t);
    moe__parallel_config__init(&x->p);
    moe__lora_config__init(&x->l);
    x->c.model = &x->m;
    x->c.router = &x->r;
    x->c.train = &x->t;
    x->c.parallel = &x->p;
    x->c.lora = &x->l;
    x->m.vocab_size = 16;
    x->m.d_model = 8;
    x->m.n_layers = 2;
    x->m.n_heads = 2;
    x->m.d_ff = 12;
}

// M: B with L=4, E=4 experts top-2 of width 6, layer 0 dense (first_dense_layers) and layer 3
// dense (dense_layers): MoE layers 1 and 2.
static void moe_shape(tcfg *x) {
    base(x);
    x->m.n_layers = 4;
    x->m.n_experts = 4;
    x->m.top_k = 2;
    x->m.expert_d_ff = 6;
    x->m.first_dense_layers = 1;
    x->dense[0] = 3;
    x->m.dense_layers = x->dense;
    x->m.n_dense_layers = 1;
}

// MLA on B: H=2, q_lora_rank 4, kv_lora_rank 3, qk_nope 2, qk_rope 1, v 3.
static void mla_shape(tcfg *x) {
    base(x);
    x->m.kv_lora_rank = 3;
    x->m.q_lora_rank = 4;
    x->m.qk_nope_head_dim = 2;
    x->m.qk_rope_head_dim = 1;
    x->m.v_head_dim = 3;
}

static void lora(tcfg *x, int rank, int n, const Moe__LoraConfig__Target *t) {
    x->l.rank = rank;
    for (int i = 0; i < n; i++) x->targets[i] = t[i];
    x->l.targets = x->targets;
    x->l.n_targets = (size_t)n;
}

static moe_params_report count(int line, tcfg *x, int world, int ep) {
    moe_params_report r;
    moe_status st = moe_params_count(&x->c, world, ep, &r);
    if (st) {
        fprintf(stderr, "test_params.c:%d: moe_params_count failed: %s\n", line, moe_last_error());
        exit(1);
    }
    return r;
}
#define COUNT(x, w, e) count(__LINE__, x, w, e)

// The sum of the parts must equal the totals: checked on every report the tests look at.
static void check_sums(int line, const moe_params_report *r) {
    int64_t t = 0, a = 0;
    for (int i = 0; i < MOE_PARAMS_N_PARTS; i++) {
        t += r->part[i].total;
        a += r->part[i].active;
    }
    expect_eq(line, "sum of part totals", t, r->total);
    expect_eq(line, "sum of part actives", a, r->active);
}

static void test_dense_features(void) {
    tcfg x;
    moe_params_report r;
    const int64_t S = 64; // train.seq_len default

    // B: emb 16·8 = 128; attention 2·(4·8·8) = 512; norms 2·2·8 + 8 = 40; FFN 2·3·8·12 = 576;
    // head 128. Total 1384, all active. Matmul: attention 512 + FFN 576 + head 128 = 1216.
    base(&x);
    r = COUNT(&x, 1, 1);
    check_sums(__LINE__, &r);
    EXPECT_EQ("B embeddings", r.part[MOE_PARAMS_EMBEDDINGS].total, 16 * 8);
    EXPECT_EQ("B attention", r.part[MOE_PARAMS_ATTENTION].total, 2 * (4 * 8 * 8));
    EXPECT_EQ("B norms", r.part[MOE_PARAMS_NORMS].total, 2 * 2 * 8 + 8);
    EXPECT_EQ("B dense_ffn", r.part[MOE_PARAMS_DENSE_FFN].total, 2 * 3 * 8 * 12);
    EXPECT_EQ("B head", r.part[MOE_PARAMS_HEAD].total, 16 * 8);
    EXPECT_EQ("B total", r.total, 1384);
    EXPECT_EQ("B active", r.active, 1384);
    EXPECT_EQ("B trainable", r.trainable, 1384);
    EXPECT_EQ("B frozen", r.frozen, 0);
    EXPECT_EQ("B moe layers", r.n_moe_layers, 0);
    EXPECT_EQ("B flops", r.flops_per_token, 2 * (512 + 576 + 128));
    // Attention at S: L·2·S·H·(Dh + Dh) full context; causal L·(S+1)·H·(Dh + Dh).
    EXPECT_EQ("B attn flops", r.attn_flops_per_token, 2 * 2 * S * 2 * (4 + 4));
    EXPECT_EQ("B attn flops causal", r.attn_flops_per_token_causal, 2 * (S + 1) * 2 * (4 + 4));
    EXPECT_EQ("B active w/o embeddings", r.active_nonembedding, 1384 - 128);
    x.t.seq_len = 10;
    r = COUNT(&x, 1, 1);
    EXPECT_EQ("B attn flops S=10", r.attn_flops_per_token, 2 * 2 * 10 * 2 * 8);
    EXPECT_EQ("B attn flops causal S=10", r.attn_flops_per_token_causal, 2 * 11 * 2 * 8);

    // GQA, n_kv_heads 1: per layer q 8·8 + k 8·4 + v 8·4 + o 8·8 = 192.
    base(&x);
    x.m.n_kv_heads = 1;
    r = COUNT(&x, 1, 1);
    EXPECT_EQ("GQA attention", r.part[MOE_PARAMS_ATTENTION].total, 2 * (64 + 32 + 32 + 64));
    EXPECT_EQ("GQA total", r.total, 1384 - 512 + 384);

    // head_dim 6 (H·Dh = 12 ≠ D): per layer q 8·12, k 8·12, v 8·12, o 12·8 = 384.
    base(&x);
    x.m.head_dim = 6;
    r = COUNT(&x, 1, 1);
    EXPECT_EQ("head_dim attention", r.part[MOE_PARAMS_ATTENTION].total, 2 * 4 * 96);
    EXPECT_EQ("head_dim attn flops", r.attn_flops_per_token, 2 * 2 * S * 2 * (6 + 6));

    // d_ff 0 -> 4·D = 32: FFN 2·3·8·32.
    base(&x);
    x.m.d_ff = 0;
    r = COUNT(&x, 1, 1);
    EXPECT_EQ("d_ff default", r.part[MOE_PARAMS_DENSE_FFN].total, 2 * 3 * 8 * 32);

    // GELU: 2 matrices, 2·2·8·12 = 384.
    base(&x);
    x.m.activation = MOE__MODEL_CONFIG__ACTIVATION__gelu;
    r = COUNT(&x, 1, 1);
    EXPECT_EQ("gelu dense_ffn", r.part[MOE_PARAMS_DENSE_FFN].total, 2 * 2 * 8 * 12);
    EXPECT_EQ("gelu flops", r.flops_per_token, 2 * (512 + 384 + 128));

    // ffn_bias: SwiGLU + F + F + D per layer; GELU + F + D.
    base(&x);
    x.m.ffn_bias = 1;
    r = COUNT(&x, 1, 1);
    EXPECT_EQ("swiglu bias", r.part[MOE_PARAMS_DENSE_FFN].total, 2 * (3 * 8 * 12 + 12 + 12 + 8));
    EXPECT_EQ("bias not in flops", r.flops_per_token, 2 * (512 + 576 + 128));
    x.m.activation = MOE__MODEL_CONFIG__ACTIVATION__gelu;
    r = COUNT(&x, 1, 1);
    EXPECT_EQ("gelu bias", r.part[MOE_PARAMS_DENSE_FFN].total, 2 * (2 * 8 * 12 + 12 + 8));

    // Attention biases: q H·Dh + k, v Hkv·Dh; o D.
    base(&x);
    x.m.attn_qkv_bias = 1;
    r = COUNT(&x, 1, 1);
    EXPECT_EQ("qkv bias", r.part[MOE_PARAMS_ATTENTION].total, 512 + 2 * (8 + 8 + 8));
    x.m.attn_out_bias = 1;
    r = COUNT(&x, 1, 1);
    EXPECT_EQ("qkv+o bias", r.part[MOE_PARAMS_ATTENTION].total, 512 + 2 * (8 + 8 + 8 + 8));
    x.m.n_kv_heads = 1;
    r = COUNT(&x, 1, 1);
    EXPECT_EQ("qkv+o bias GQA", r.part[MOE_PARAMS_ATTENTION].total, 384 + 2 * (8 + 4 + 4 + 8));

    // q/k norm: per_head 2·Dh per layer; full H·Dh + Hkv·Dh; layernorm doubles each.
    base(&x);
    x.m.qk_norm = MOE__MODEL_CONFIG__QK_NORM__per_head;
    r = COUNT(&x, 1, 1);
    EXPECT_EQ("qk_norm per_head", r.part[MOE_PARAMS_ATTENTION].total, 512 + 2 * (4 + 4));
    x.m.qk_norm = MOE__MODEL_CONFIG__QK_NORM__full;
    r = COUNT(&x, 1, 1);
    EXPECT_EQ("qk_norm full", r.part[MOE_PARAMS_ATTENTION].total, 512 + 2 * (8 + 8));
    x.m.n_kv_heads = 1;
    r = COUNT(&x, 1, 1);
    EXPECT_EQ("qk_norm full GQA", r.part[MOE_PARAMS_ATTENTION].total, 384 + 2 * (8 + 4));
    x.m.n_kv_heads = 0;
    x.m.qk_norm = MOE__MODEL_CONFIG__QK_NORM__per_head;
    x.m.norm = MOE__MODEL_CONFIG__NORM__layernorm;
    r = COUNT(&x, 1, 1);
    EXPECT_EQ("qk_norm per_head layernorm", r.part[MOE_PARAMS_ATTENTION].total,
              512 + 2 * 2 * (4 + 4));
    EXPECT_EQ("layernorm norms", r.part[MOE_PARAMS_NORMS].total, 2 * (2 * 2 * 8 + 8));

    // Learned positions: (max_seq_len, D) table, counted as active like the token table.
    base(&x);
    x.m.positions = MOE__MODEL_CONFIG__POSITIONS__learned;
    x.m.max_seq_len = 10;
    r = COUNT(&x, 1, 1);
    EXPECT_EQ("learned positions", r.part[MOE_PARAMS_EMBEDDINGS].total, 16 * 8 + 10 * 8);
    EXPECT_EQ("learned positions active", r.active, 1384 + 80);
    EXPECT_EQ("positions not in flops", r.flops_per_token, 2 * (512 + 576 + 128));

    // Tied: no head parameters, the head matmul still costs 2·V·D.
    base(&x);
    x.m.tie_embeddings = 1;
    r = COUNT(&x, 1, 1);
    EXPECT_EQ("tied head", r.part[MOE_PARAMS_HEAD].total, 0);
    EXPECT_EQ("tied total", r.total, 1384 - 128);
    EXPECT_EQ("tied flops", r.flops_per_token, 2 * (512 + 576 + 128));
}

static void test_moe_features(void) {
    tcfg x;
    moe_params_report r;
    const int64_t expert = 3 * 8 * 6; // one SwiGLU expert (D=8, Fe=6) = 144

    // M: emb 128, attention 4·256 = 1024, norms 4·2·8 + 8 = 72, dense FFN 2·3·8·12 = 576,
    // router 2·8·4 = 64, routed 2·4·144 = 1152 (active 2·2·144 = 576), head 128.
    moe_shape(&x);
    r = COUNT(&x, 1, 1);
    check_sums(__LINE__, &r);
    EXPECT_EQ("M moe layers", r.n_moe_layers, 2);
    EXPECT_EQ("M dense layers", r.n_dense_layers, 2);
    EXPECT_EQ("M dense_ffn", r.part[MOE_PARAMS_DENSE_FFN].total, 2 * 3 * 8 * 12);
    EXPECT_EQ("M router", r.part[MOE_PARAMS_ROUTER].total, 2 * 8 * 4);
    EXPECT_EQ("M routed", r.part[MOE_PARAMS_ROUTED_EXPERTS].total, 2 * 4 * expert);
    EXPECT_EQ("M routed active", r.part[MOE_PARAMS_ROUTED_EXPERTS].active, 2 * 2 * expert);
    EXPECT_EQ("M total", r.total, 128 + 1024 + 72 + 576 + 64 + 1152 + 128);
    EXPECT_EQ("M active", r.active, 128 + 1024 + 72 + 576 + 64 + 576 + 128);
    EXPECT_EQ("M flops", r.flops_per_token, 2 * (1024 + 576 + 64 + 576 + 128));
    if (fabs(r.active_ratio - 2568.0 / 3144.0) > 1e-12) {
        fprintf(stderr, "M active_ratio: expected %.15g, got %.15g\n", 2568.0 / 3144.0,
                r.active_ratio);
        failures++;
    }
    x.m.top_k = 3;
    r = COUNT(&x, 1, 1);
    EXPECT_EQ("M top-3 routed active", r.part[MOE_PARAMS_ROUTED_EXPERTS].active, 2 * 3 * expert);

    // expert_d_ff 0 -> d_ff 12.
    moe_shape(&x);
    x.m.expert_d_ff = 0;
    r = COUNT(&x, 1, 1);
    EXPECT_EQ("expert_d_ff default", r.part[MOE_PARAMS_ROUTED_EXPERTS].total, 2 * 4 * (3 * 8 * 12));

    // ffn_bias in experts: each expert 144 + 6 + 6 + 8.
    moe_shape(&x);
    x.m.ffn_bias = 1;
    r = COUNT(&x, 1, 1);
    EXPECT_EQ("expert bias", r.part[MOE_PARAMS_ROUTED_EXPERTS].total, 2 * 4 * (144 + 20));
    EXPECT_EQ("expert bias active", r.part[MOE_PARAMS_ROUTED_EXPERTS].active, 2 * 2 * (144 + 20));

    // first_dense_layers alone (no dense_layers): layers 1..3 MoE.
    moe_shape(&x);
    x.m.n_dense_layers = 0;
    r = COUNT(&x, 1, 1);
    EXPECT_EQ("first_dense only moe layers", r.n_moe_layers, 3);
    EXPECT_EQ("first_dense only routed", r.part[MOE_PARAMS_ROUTED_EXPERTS].total, 3 * 4 * expert);
    EXPECT_EQ("first_dense only dense", r.part[MOE_PARAMS_DENSE_FFN].total, 1 * 3 * 8 * 12);

    // Shared experts: 2 of width 5 per MoE layer, 2·(3·8·5) = 240, and the gate (D, 1) = 8.
    moe_shape(&x);
    x.m.n_shared_experts = 2;
    x.m.shared_expert_d_ff = 5;
    r = COUNT(&x, 1, 1);
    EXPECT_EQ("shared", r.part[MOE_PARAMS_SHARED_EXPERTS].total, 2 * (2 * 3 * 8 * 5));
    EXPECT_EQ("shared active", r.part[MOE_PARAMS_SHARED_EXPERTS].active, 2 * (2 * 3 * 8 * 5));
    x.m.shared_expert_gate = 1;
    r = COUNT(&x, 1, 1);
    EXPECT_EQ("shared + gate", r.part[MOE_PARAMS_SHARED_EXPERTS].total, 2 * (240 + 8));
    EXPECT_EQ("shared + gate total", r.total, 3144 + 496);
    EXPECT_EQ("shared + gate flops", r.flops_per_token, 2 * (1024 + 576 + 64 + 576 + 128 + 496));
    x.m.shared_expert_d_ff = 0; // -> expert_d_ff 6
    r = COUNT(&x, 1, 1);
    EXPECT_EQ("shared width default", r.part[MOE_PARAMS_SHARED_EXPERTS].total,
              2 * (2 * expert + 8));

    // Router bias: E per MoE layer, trained.
    moe_shape(&x);
    x.m.router_bias = 1;
    r = COUNT(&x, 1, 1);
    EXPECT_EQ("router bias", r.part[MOE_PARAMS_ROUTER].total, 2 * (8 * 4 + 4));
    EXPECT_EQ("router bias trainable", r.trainable, 3144 + 8);
    // Aux-free balancing bias: E per MoE layer, in total and active, not trainable, no FLOPs.
    moe_shape(&x);
    x.r.bias_update_rate = 1e-3;
    r = COUNT(&x, 1, 1);
    EXPECT_EQ("balance bias", r.part[MOE_PARAMS_ROUTER].total, 2 * (8 * 4 + 4));
    EXPECT_EQ("balance bias untrained", r.untrained, 2 * 4);
    EXPECT_EQ("balance bias total", r.total, 3144 + 8);
    EXPECT_EQ("balance bias trainable", r.trainable, 3144);
    EXPECT_EQ("balance bias flops", r.flops_per_token, 2 * (1024 + 576 + 64 + 576 + 128));
}

static void test_mla(void) {
    tcfg x;
    moe_params_report r;
    // With q_lora_rank 4, per layer: q_a 8·4 = 32, q_a norm 4, q_b 4·(2·3) = 24,
    // kv_a 8·(3+1) = 32, kv_a norm 3, kv_b 3·(2·(2+3)) = 30, o (2·3)·8 = 48 -> 173.
    mla_shape(&x);
    r = COUNT(&x, 1, 1);
    EXPECT_EQ("MLA q_lora attention", r.part[MOE_PARAMS_ATTENTION].total, 2 * 173);
    EXPECT_EQ("MLA q_lora total", r.total, 1384 - 512 + 346);
    EXPECT_EQ("MLA q_lora flops", r.flops_per_token,
              2 * (2 * (32 + 24 + 32 + 30 + 48) + 576 + 128));
    // Scores: Dqk = 2 + 1, Dv = 3.
    EXPECT_EQ("MLA attn flops", r.attn_flops_per_token, 2 * 2 * 64 * 2 * (3 + 3));
    // Biases on q_a (4), kv_a (3+1) and o (8).
    x.m.attn_qkv_bias = 1;
    x.m.attn_out_bias = 1;
    r = COUNT(&x, 1, 1);
    EXPECT_EQ("MLA q_lora biases", r.part[MOE_PARAMS_ATTENTION].total, 2 * (173 + 4 + 4 + 8));
    // Layernorm: the two latent norms get biases too.
    x.m.attn_qkv_bias = x.m.attn_out_bias = 0;
    x.m.norm = MOE__MODEL_CONFIG__NORM__layernorm;
    r = COUNT(&x, 1, 1);
    EXPECT_EQ("MLA layernorm", r.part[MOE_PARAMS_ATTENTION].total, 2 * (173 + 4 + 3));

    // Without q_lora_rank: q 8·(2·3) = 48, kv_a 32, norm 3, kv_b 30, o 48 -> 161.
    mla_shape(&x);
    x.m.q_lora_rank = 0;
    r = COUNT(&x, 1, 1);
    EXPECT_EQ("MLA full q attention", r.part[MOE_PARAMS_ATTENTION].total, 2 * 161);
    x.m.attn_qkv_bias = 1;
    x.m.attn_out_bias = 1;
    r = COUNT(&x, 1, 1);
    EXPECT_EQ("MLA full q biases", r.part[MOE_PARAMS_ATTENTION].total, 2 * (161 + 4 + 8));

    mla_shape(&x);
    x.m.qk_norm = MOE__MODEL_CONFIG__QK_NORM__full;
    moe_params_report rr;
    EXPECT_EQ("MLA with qk_norm refused", moe_params_count(&x.c, 1, 1, &rr), MOE_EINVAL);
}

static void test_lora(void) {
    tcfg x;
    moe_params_report r;
    const Moe__LoraConfig__Target attn = MOE__LORA_CONFIG__TARGET__attention,
                                  exp = MOE__LORA_CONFIG__TARGET__experts,
                                  shared = MOE__LORA_CONFIG__TARGET__shared_experts,
                                  dense = MOE__LORA_CONFIG__TARGET__dense_ffn,
                                  router = MOE__LORA_CONFIG__TARGET__router;

    // Attention, r = 2: 4 matrices (8, 8) per layer, 2·(8+8) each -> 2·4·32 = 256 adapters.
    base(&x);
    lora(&x, 2, 1, &attn);
    r = COUNT(&x, 1, 1);
    EXPECT_EQ("lora attention", r.part[MOE_PARAMS_ATTENTION].lora_total, 256);
    EXPECT_EQ("lora attention total unchanged", r.total, 1384);
    EXPECT_EQ("lora trainable", r.trainable, 256);
    EXPECT_EQ("lora frozen", r.frozen, 1384);
    EXPECT_EQ("lora flops", r.flops_per_token, 2 * (512 + 576 + 128) + 2 * 256);
    // Bytes: every entry 4 bytes; grads 4 and Adam 8 for the adapters only.
    EXPECT_EQ("lora rank bytes", r.rank_bytes, 4 * (1384 + 256) + 12 * 256);
    // Empty targets with rank > 0 mean attention.
    base(&x);
    lora(&x, 2, 0, NULL);
    r = COUNT(&x, 1, 1);
    EXPECT_EQ("lora default target", r.lora_total, 256);

    // Experts on M: per expert 3 matrices, 2·(8+6) each = 84; 2 layers · 4 experts; active 2 of 4.
    moe_shape(&x);
    lora(&x, 2, 1, &exp);
    r = COUNT(&x, 1, 1);
    EXPECT_EQ("lora experts", r.part[MOE_PARAMS_ROUTED_EXPERTS].lora_total, 2 * 4 * 84);
    EXPECT_EQ("lora experts active", r.part[MOE_PARAMS_ROUTED_EXPERTS].lora_active, 2 * 2 * 84);
    EXPECT_EQ("lora experts only", r.lora_total, 672);
    // GELU experts: 2 matrices, 2·(8+6) each.
    x.m.activation = MOE__MODEL_CONFIG__ACTIVATION__gelu;
    r = COUNT(&x, 1, 1);
    EXPECT_EQ("lora gelu experts", r.lora_total, 2 * 4 * (2 * 2 * 14));

    // Shared experts (2 of width 5, gated): 3·2·(8+5) = 78 each, no adapter on the gate.
    moe_shape(&x);
    x.m.n_shared_experts = 2;
    x.m.shared_expert_d_ff = 5;
    x.m.shared_expert_gate = 1;
    lora(&x, 2, 1, &shared);
    r = COUNT(&x, 1, 1);
    EXPECT_EQ("lora shared", r.lora_total, 2 * 2 * 78);

    // Dense FFN on M (layers 0, 3): 3·2·(8+12) = 120 each.
    moe_shape(&x);
    lora(&x, 2, 1, &dense);
    r = COUNT(&x, 1, 1);
    EXPECT_EQ("lora dense_ffn", r.lora_total, 2 * 120);

    // Router on M: 2·(8+4) per MoE layer.
    moe_shape(&x);
    lora(&x, 2, 1, &router);
    r = COUNT(&x, 1, 1);
    EXPECT_EQ("lora router", r.lora_total, 2 * 24);

    // MLA attention: q_a 2·(8+4) + q_b 2·(4+6) + kv_a 2·(8+4) + kv_b 2·(3+10) + o 2·(6+8) = 122.
    mla_shape(&x);
    lora(&x, 2, 1, &attn);
    r = COUNT(&x, 1, 1);
    EXPECT_EQ("lora MLA", r.lora_total, 2 * 122);

    // All five targets on M with shared experts: the sum of the above.
    moe_shape(&x);
    x.m.n_shared_experts = 2;
    x.m.shared_expert_d_ff = 5;
    const Moe__LoraConfig__Target all[5] = {attn, exp, shared, dense, router};
    lora(&x, 2, 5, all);
    r = COUNT(&x, 1, 1);
    EXPECT_EQ("lora all", r.lora_total, 4 * 128 + 672 + 312 + 240 + 48);
    EXPECT_EQ("lora all active", r.lora_active, 4 * 128 + 336 + 312 + 240 + 48);
}

static void test_per_rank(void) {
    tcfg x;
    moe_params_report r1, r4;
    // M at world 1: everything on one rank, 4 + 4 + 8 bytes per trainable entry.
    moe_shape(&x);
    r1 = COUNT(&x, 1, 1);
    EXPECT_EQ("rank params w1", r1.rank_params, 3144);
    EXPECT_EQ("rank param bytes w1", r1.rank_param_bytes, 4 * 3144);
    EXPECT_EQ("rank grad bytes w1", r1.rank_grad_bytes, 4 * 3144);
    EXPECT_EQ("rank adam bytes w1", r1.rank_adam_bytes, 8 * 3144);
    EXPECT_EQ("rank bytes w1", r1.rank_bytes, 16 * 3144);
    // World 4, EP 2 (EDP 2): each rank holds 2 of the 4 experts of each MoE layer:
    // 3144 - 1152 + 1152/2 = 2568 entries.
    r4 = COUNT(&x, 4, 2);
    EXPECT_EQ("edp", r4.edp, 2);
    EXPECT_EQ("rank params w4 ep2", r4.rank_params, 3144 - 1152 + 576);
    EXPECT_EQ("rank experts w4 ep2", r4.part[MOE_PARAMS_ROUTED_EXPERTS].per_rank, 576);
    EXPECT_EQ("rank bytes w4 ep2", r4.rank_bytes, 16 * 2568);
    // ep from parallel.ep_size when not given; world defaults to ep.
    x.p.ep_size = 2;
    r4 = COUNT(&x, 0, 0);
    EXPECT_EQ("ep from config", r4.ep, 2);
    EXPECT_EQ("world defaults to ep", r4.world, 2);
    EXPECT_EQ("rank params ep from config", r4.rank_params, 2568);
    // Balancing bias (2·4 entries) is held, not trained: 4·3152 + 12·3144.
    moe_shape(&x);
    x.r.bias_update_rate = 1e-3;
    r1 = COUNT(&x, 1, 1);
    EXPECT_EQ("rank bytes balance bias", r1.rank_bytes, 4 * 3152 + 12 * 3144);
    // LoRA on experts at world 4 / ep 2: adapters split with their experts: 672/2 = 336 held,
    // all of them trainable; base 2568 held, frozen.
    moe_shape(&x);
    const Moe__LoraConfig__Target exp = MOE__LORA_CONFIG__TARGET__experts;
    lora(&x, 2, 1, &exp);
    r4 = COUNT(&x, 4, 2);
    EXPECT_EQ("lora rank params", r4.rank_params, 2568 + 336);
    EXPECT_EQ("lora rank trainable", r4.rank_trainable, 336);
    EXPECT_EQ("lora rank bytes", r4.rank_bytes, 4 * (2568 + 336) + 12 * 336);
    // LoRA on attention at world 4 / ep 2: 4 layers · 128 adapters, replicated.
    moe_shape(&x);
    const Moe__LoraConfig__Target attn = MOE__LORA_CONFIG__TARGET__attention;
    lora(&x, 2, 1, &attn);
    r4 = COUNT(&x, 4, 2);
    EXPECT_EQ("lora attn rank bytes", r4.rank_bytes, 4 * (2568 + 512) + 12 * 512);
}

static void test_refusals(void) {
    tcfg x;
    moe_params_report r;
    moe_shape(&x);
    EXPECT_EQ("ep 3 does not divide 4 experts", moe_params_count(&x.c, 3, 3, &r), MOE_ELAYOUT);
    EXPECT_EQ("ep 4 does not divide world 6", moe_params_count(&x.c, 6, 4, &r), MOE_ELAYOUT);
    base(&x);
    EXPECT_EQ("ep 2 on a dense model", moe_params_count(&x.c, 2, 2, &r), MOE_ELAYOUT);
    base(&x);
    x.m.n_kv_heads = 3;
    EXPECT_EQ("kv heads not dividing heads", moe_params_count(&x.c, 1, 1, &r), MOE_EINVAL);
    base(&x);
    x.m.d_model = 9;
    EXPECT_EQ("heads not dividing d_model", moe_params_count(&x.c, 1, 1, &r), MOE_EINVAL);
    moe_shape(&x);
    x.m.top_k = 5;
    EXPECT_EQ("top_k > n_experts", moe_params_count(&x.c, 1, 1, &r), MOE_EINVAL);
    moe_shape(&x);
    x.dense[0] = 9;
    EXPECT_EQ("dense layer out of range", moe_params_count(&x.c, 1, 1, &r), MOE_EINVAL);
    moe_shape(&x);
    x.m.shared_expert_gate = 1;
    EXPECT_EQ("gate without shared experts", moe_params_count(&x.c, 1, 1, &r), MOE_EINVAL);
    base(&x);
    x.m.vocab_size = (int64_t)1 << 61;
    EXPECT_EQ("overflow refused", moe_params_count(&x.c, 1, 1, &r), MOE_EINVAL);
    if (!strstr(moe_last_error(), "overflow")) {
        fprintf(stderr, "overflow message does not say so: %s\n", moe_last_error());
        failures++;
    }
    // A NULL sub-message counts as the schema defaults: V=256, D=128, L=4, H=4, F=512, dense.
    Moe__Config empty;
    moe__config__init(&empty);
    EXPECT_EQ("defaults counted", moe_params_count(&empty, 1, 1, &r), MOE_OK);
    EXPECT_EQ("defaults total", r.total,
              2 * 256 * 128 + 4 * (4 * 128 * 128 + 2 * 128 + 3 * 128 * 512) + 128);
}

// The published value (in billions, as printed with `decimals` decimals) must be what `v` rounds to.
static void expect_rounds_to(int line, const char *what, int64_t v, double published,
                             int decimals) {
    double scale = pow(10.0, decimals), x = (double)v / 1e9;
    if (fabs(round(x * scale) / scale - published) > 1e-9) {
        fprintf(stderr, "test_params.c:%d: %s: %.4fB does not round to the published %.*fB\n", line,
                what, x, decimals, published);
        failures++;
    }
}
static void expect_within(int line, const char *what, int64_t v, double published_b, double rel) {
    double x = (double)v / 1e9;
    if (fabs(x - published_b) > rel * published_b) {
        fprintf(stderr, "test_params.c:%d: %s: %.4fB is not within %.2f%% of the published %.4gB\n",
                line, what, x, 100 * rel, published_b);
        failures++;
    }
}

static void test_published(void) {
    tcfg x;
    moe_params_report r;

    // Mixtral-8x7B: V=32000, D=4096, L=32, H=32, Hkv=8 (Dh=128), 8 SwiGLU experts of 14336, top-2.
    //   embeddings 32000·4096                = 131,072,000; head the same
    //   attention  32·(2·4096·4096 + 2·4096·1024) = 32·41,943,040 = 1,342,177,280
    //   norms      32·2·4096 + 4096          = 266,240
    //   router     32·8·4096                 = 1,048,576
    //   experts    32·8·3·4096·14336         = 45,097,156,608 (active 32·2·… = 11,274,289,152)
    //   total  = 46,702,792,704;  active = 12,879,925,248
    base(&x);
    x.m.vocab_size = 32000;
    x.m.d_model = 4096;
    x.m.n_layers = 32;
    x.m.n_heads = 32;
    x.m.n_kv_heads = 8;
    x.m.d_ff = 14336;
    x.m.n_experts = 8;
    x.m.top_k = 2;
    r = COUNT(&x, 1, 1);
    check_sums(__LINE__, &r);
    int64_t mx_total = 2LL * 32000 * 4096 + 32LL * (2 * 4096 * 4096 + 2 * 4096 * 1024) +
                       32LL * 2 * 4096 + 4096 + 32LL * 8 * 4096 + 32LL * 8 * 3 * 4096 * 14336;
    int64_t mx_active = mx_total - 32LL * 6 * 3 * 4096 * 14336;
    EXPECT_EQ("Mixtral formula (hand check)", mx_total, 46702792704LL);
    EXPECT_EQ("Mixtral active formula (hand check)", mx_active, 12879925248LL);
    EXPECT_EQ("Mixtral total", r.total, 46702792704LL);
    EXPECT_EQ("Mixtral active", r.active, 12879925248LL);
    expect_within(__LINE__, "Mixtral total vs 46.7B", r.total, 46.7, 0.005);
    expect_within(__LINE__, "Mixtral active vs 12.9B", r.active, 12.9, 0.005);

    // Qwen1.5-MoE-A2.7B: V=151936, D=2048, L=24, H=16 (Dh=128), q/k/v biases, 60 experts of 1408
    // top-4, one shared expert of 5632 with a (D, 1) gate, all layers MoE.
    //   attention/layer 4·2048·2048 + 3·2048 = 16,783,360
    //   shared/layer    3·2048·5632 + 2048   = 34,605,056
    //   total = 14,315,784,192; active = 2,689,173,504 (Qwen: 14.3B, 2.7B)
    base(&x);
    x.m.vocab_size = 151936;
    x.m.d_model = 2048;
    x.m.n_layers = 24;
    x.m.n_heads = 16;
    x.m.d_ff = 5632;
    x.m.attn_qkv_bias = 1;
    x.m.n_experts = 60;
    x.m.top_k = 4;
    x.m.expert_d_ff = 1408;
    x.m.n_shared_experts = 1;
    x.m.shared_expert_d_ff = 5632;
    x.m.shared_expert_gate = 1;
    r = COUNT(&x, 1, 1);
    int64_t qw_common =
        2LL * 151936 * 2048 + 2048 + 24LL * (16783360 + 2 * 2048 + 60 * 2048 + 34605056);
    EXPECT_EQ("Qwen total", r.total, qw_common + 24LL * 60 * 3 * 2048 * 1408);
    EXPECT_EQ("Qwen active", r.active, qw_common + 24LL * 4 * 3 * 2048 * 1408);
    EXPECT_EQ("Qwen total (hand check)", r.total, 14315784192LL);
    EXPECT_EQ("Qwen active (hand check)", r.active, 2689173504LL);
    expect_within(__LINE__, "Qwen total vs 14.3B", r.total, 14.3, 0.005);
    expect_within(__LINE__, "Qwen active vs 2.7B", r.active, 2.7, 0.005);

    // DeepSeek-V2-Lite: V=102400, D=2048, L=27 (layer 0 dense, FFN 10944), H=16, MLA without q
    // LoRA (kv rank 512, nope 128, rope 64, v 128), 64 experts of 1408 top-6, 2 shared of 1408.
    //   attention/layer q 2048·16·192 + kv_a 2048·576 + norm 512 + kv_b 512·16·256 + o 2048·2048
    //                 = 6,291,456 + 1,179,648 + 512 + 2,097,152 + 4,194,304 = 13,763,072
    //   MoE layer: router 64·2048, experts 64·3·2048·1408, shared 2·3·2048·1408
    //   total 15,706,484,224 (15.7B). Active 2,661,150,208 with the embedding table and
    //   2,451,435,008 without: DeepSeek quotes activated parameters without the input embedding
    //   (V3's 37B below only rounds that way) and "2.4B" is this 2.45B cut to one decimal, so the
    //   check is the exact count, and that the non-embedding count is within 2.5% of 2.4B.
    base(&x);
    x.m.vocab_size = 102400;
    x.m.d_model = 2048;
    x.m.n_layers = 27;
    x.m.n_heads = 16;
    x.m.d_ff = 10944;
    x.m.kv_lora_rank = 512;
    x.m.qk_nope_head_dim = 128;
    x.m.qk_rope_head_dim = 64;
    x.m.v_head_dim = 128;
    x.m.n_experts = 64;
    x.m.top_k = 6;
    x.m.expert_d_ff = 1408;
    x.m.n_shared_experts = 2;
    x.m.first_dense_layers = 1;
    r = COUNT(&x, 1, 1);
    int64_t dl_common = 2LL * 102400 * 2048 + 2048 + 27LL * (13763072 + 2 * 2048) +
                        3LL * 2048 * 10944 + 26LL * (64 * 2048 + 2 * 3 * 2048 * 1408);
    EXPECT_EQ("DeepSeek-V2-Lite total", r.total, dl_common + 26LL * 64 * 3 * 2048 * 1408);
    EXPECT_EQ("DeepSeek-V2-Lite active", r.active, dl_common + 26LL * 6 * 3 * 2048 * 1408);
    EXPECT_EQ("DeepSeek-V2-Lite total (hand check)", r.total, 15706484224LL);
    EXPECT_EQ("DeepSeek-V2-Lite active w/o embedding", r.active_nonembedding, 2451435008LL);
    expect_within(__LINE__, "DeepSeek-V2-Lite total vs 15.7B", r.total, 15.7, 0.005);
    expect_within(__LINE__, "DeepSeek-V2-Lite active w/o embedding vs 2.4B", r.active_nonembedding,
                  2.4, 0.025);

    // DeepSeek-V3 (main model, no MTP): V=129280, D=7168, L=61 (3 dense, FFN 18432), H=128,
    // MLA q rank 1536, kv rank 512, nope 128, rope 64, v 128; 256 experts of 2048 top-8, 1 shared;
    // sigmoid gate with the aux-free balancing bias (256 per MoE layer, in the checkpoint).
    //   attention/layer q_a 7168·1536 + 1536 + q_b 1536·128·192 + kv_a 7168·576 + 512
    //                 + kv_b 512·128·256 + o 128·128·7168 = 187,107,328
    //   total 671,026,404,352 + 58·256 bias = 671,026,419,200 (671B)
    //   active 37,552,297,472 with the embedding, 36,625,618,432 without: DeepSeek's "37B" is the
    //   latter rounded (the former would round to 38B).
    base(&x);
    x.m.vocab_size = 129280;
    x.m.d_model = 7168;
    x.m.n_layers = 61;
    x.m.n_heads = 128;
    x.m.d_ff = 18432;
    x.m.q_lora_rank = 1536;
    x.m.kv_lora_rank = 512;
    x.m.qk_nope_head_dim = 128;
    x.m.qk_rope_head_dim = 64;
    x.m.v_head_dim = 128;
    x.m.n_experts = 256;
    x.m.top_k = 8;
    x.m.expert_d_ff = 2048;
    x.m.n_shared_experts = 1;
    x.m.first_dense_layers = 3;
    x.r.bias_update_rate = 1e-3;
    r = COUNT(&x, 1, 1);
    int64_t v3_common = 2LL * 129280 * 7168 + 7168 + 61LL * (187107328 + 2 * 7168) +
                        3LL * 3 * 7168 * 18432 + 58LL * (256 * 7168 + 256 + 3 * 7168 * 2048);
    EXPECT_EQ("DeepSeek-V3 total", r.total, v3_common + 58LL * 256 * 3 * 7168 * 2048);
    EXPECT_EQ("DeepSeek-V3 active", r.active, v3_common + 58LL * 8 * 3 * 7168 * 2048);
    EXPECT_EQ("DeepSeek-V3 total (hand check)", r.total, 671026419200LL);
    EXPECT_EQ("DeepSeek-V3 active w/o embedding (hand check)", r.active_nonembedding,
              36625618432LL);
    EXPECT_EQ("DeepSeek-V3 balancing bias", r.untrained, 58 * 256);
    expect_within(__LINE__, "DeepSeek-V3 total vs 671B", r.total, 671, 0.005);
    expect_rounds_to(__LINE__, "DeepSeek-V3 active w/o embedding", r.active_nonembedding, 37, 0);

    // OLMoE-1B-7B: V=50304, D=2048, L=16, H=16, q/k RMSNorm over the full projections (2048 each),
    // 64 experts of 1024 top-8.
    //   total 6,919,161,856 (6.9B). Active 1,282,017,280 with the embedding: OLMoE's "1.3B" counts
    //   it (without, 1.18B would be 1.2B) and rounds to one decimal, which 0.5% cannot express.
    base(&x);
    x.m.vocab_size = 50304;
    x.m.d_model = 2048;
    x.m.n_layers = 16;
    x.m.n_heads = 16;
    x.m.d_ff = 1024;
    x.m.qk_norm = MOE__MODEL_CONFIG__QK_NORM__full;
    x.m.n_experts = 64;
    x.m.top_k = 8;
    r = COUNT(&x, 1, 1);
    int64_t ol_common =
        2LL * 50304 * 2048 + 2048 + 16LL * (4 * 2048 * 2048 + 2 * 2048 + 2 * 2048 + 64 * 2048);
    EXPECT_EQ("OLMoE total", r.total, ol_common + 16LL * 64 * 3 * 2048 * 1024);
    EXPECT_EQ("OLMoE active", r.active, ol_common + 16LL * 8 * 3 * 2048 * 1024);
    EXPECT_EQ("OLMoE total (hand check)", r.total, 6919161856LL);
    EXPECT_EQ("OLMoE active (hand check)", r.active, 1282017280LL);
    expect_within(__LINE__, "OLMoE total vs 6.9B", r.total, 6.9, 0.005);
    expect_rounds_to(__LINE__, "OLMoE active", r.active, 1.3, 1);
}

int main(void) {
    test_dense_features();
    test_moe_features();
    test_mla();
    test_lora();
    test_per_rank();
    test_refusals();
    test_published();
    if (failures) {
        fprintf(stderr, "test_params: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_params: all checks passed\n");
    return 0;
}
