// test_params_hf.c: the Hugging Face config.json reader. The shipped examples/hf files must map to
// the shapes their modeling code builds (fields checked one by one, totals equal to the hand counts
// derived in test_params.c); tiny hand-written configs check each family's layer rules and biases;
// unknown fields are listed, missing or mistyped shape fields refused.
// usage: test_params_hf EXAMPLES_DIR
#include "config.h"
#include "params.h"

#include <string.h>
#include <unistd.h>

static int failures;

static void expect_eq(int line, const char *what, int64_t got, int64_t want) {
    if (got != want) {
        fprintf(stderr, "test_params_hf.c:%d: %s: expected %lld, got %lld\n", line, what,
                (long long)want, (long long)got);
        failures++;
    }
}
#define EXPECT_EQ(what, got, want) expect_eq(__LINE__, what, (int64_t)(got), (int64_t)(want))

static void expect_true(int line, const char *what, int ok) {
    if (!ok) {
        fprintf(stderr, "test_params_hf.c:%d: %s: false\n", line, what);
        failures++;
    }
}
#define EXPECT(what, cond) expect_true(__LINE__, what, (cond))

static const char *examples;

static Moe__Config *load(int line, const char *path, moe_hf_info *info, moe_params_report *r) {
    Moe__Config *cfg = NULL;
    moe_status st = moe_hf_config_load(path, &cfg, info);
    if (st) {
        fprintf(stderr, "test_params_hf.c:%d: %s: %s\n", line, path, moe_last_error());
        exit(1);
    }
    st = moe_params_count(cfg, 1, 1, r);
    if (st) {
        fprintf(stderr, "test_params_hf.c:%d: count %s: %s\n", line, path, moe_last_error());
        exit(1);
    }
    return cfg;
}

static const char *example(const char *name) {
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/hf/%s", examples, name);
    return buf;
}

// Writes text to a fresh temporary file; returns its path (removed at exit by remove_tmp).
static char tmp_paths[32][64];
static int n_tmp;
static const char *write_tmp(const char *text) {
    MOE_ASSERT(n_tmp < 32);
    char *path = tmp_paths[n_tmp++];
    snprintf(path, 64, "/tmp/test_params_hf_XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
        perror("mkstemp/write");
        exit(1);
    }
    close(fd);
    return path;
}

static int has_ignored(const moe_hf_info *info, const char *field, const char *reason_prefix) {
    for (size_t i = 0; i < info->n_ignored; i++)
        if (!strcmp(info->ignored[i], field) &&
            !strncmp(info->ignored_reason[i], reason_prefix, strlen(reason_prefix)))
            return 1;
    return 0;
}

static int n_unknown(const moe_hf_info *info) {
    int n = 0;
    for (size_t i = 0; i < info->n_ignored; i++)
        n += !strcmp(info->ignored_reason[i], "unknown field");
    return n;
}

static void test_examples(void) {
    moe_hf_info info;
    moe_params_report r;
    Moe__Config *c;

    c = load(__LINE__, example("mixtral-8x7b.json"), &info, &r);
    EXPECT("mixtral family", !strcmp(info.family, "mixtral"));
    EXPECT_EQ("mixtral n_kv_heads", c->model->n_kv_heads, 8);
    EXPECT_EQ("mixtral n_experts", c->model->n_experts, 8);
    EXPECT_EQ("mixtral top_k", c->model->top_k, 2);
    EXPECT_EQ("mixtral expert_d_ff", c->model->expert_d_ff, 14336);
    EXPECT_EQ("mixtral untied", c->model->tie_embeddings, 0);
    EXPECT_EQ("mixtral renormalize", c->router->renormalize, 1);
    EXPECT_EQ("mixtral total", r.total, 46702792704LL);
    EXPECT_EQ("mixtral active", r.active, 12879925248LL);
    EXPECT_EQ("mixtral: no unknown fields", n_unknown(&info), 0);
    EXPECT("mixtral rope_theta mapped", c->model->rope_theta == 1e6 && !has_ignored(&info, "rope_theta", "known"));
    EXPECT("mixtral rms_norm_eps mapped", c->model->norm_eps == 1e-5);
    EXPECT("mixtral torch_dtype listed", has_ignored(&info, "torch_dtype", "known"));
    EXPECT("mixtral sliding_window (null) listed", has_ignored(&info, "sliding_window", "known"));
    moe_config_free(c);
    moe_hf_info_free(&info);

    c = load(__LINE__, example("qwen1.5-moe-a2.7b.json"), &info, &r);
    EXPECT("qwen rms_norm_eps 1e-6, rope_theta 1e6", c->model->norm_eps == 1e-6 && c->model->rope_theta == 1e6);
    EXPECT("qwen family", !strcmp(info.family, "qwen2_moe"));
    EXPECT_EQ("qwen qkv bias", c->model->attn_qkv_bias, 1);
    EXPECT_EQ("qwen no o bias", c->model->attn_out_bias, 0);
    EXPECT_EQ("qwen shared experts", c->model->n_shared_experts, 1);
    EXPECT_EQ("qwen shared width", c->model->shared_expert_d_ff, 5632);
    EXPECT_EQ("qwen shared gate", c->model->shared_expert_gate, 1);
    EXPECT_EQ("qwen expert width", c->model->expert_d_ff, 1408);
    EXPECT_EQ("qwen no dense layers", c->model->n_dense_layers, 0);
    EXPECT_EQ("qwen renormalize", c->router->renormalize, 0);
    EXPECT_EQ("qwen total", r.total, 14315784192LL);
    EXPECT_EQ("qwen active", r.active, 2689173504LL);
    EXPECT_EQ("qwen: no unknown fields", n_unknown(&info), 0);
    moe_config_free(c);
    moe_hf_info_free(&info);

    c = load(__LINE__, example("deepseek-v2-lite.json"), &info, &r);
    EXPECT("v2-lite family", !strcmp(info.family, "deepseek_v2"));
    EXPECT_EQ("v2-lite q_lora_rank null", c->model->q_lora_rank, 0);
    EXPECT_EQ("v2-lite kv_lora_rank", c->model->kv_lora_rank, 512);
    EXPECT_EQ("v2-lite first dense", c->model->first_dense_layers, 1);
    EXPECT_EQ("v2-lite shared", c->model->n_shared_experts, 2);
    EXPECT_EQ("v2-lite shared width", c->model->shared_expert_d_ff, 1408);
    EXPECT_EQ("v2-lite softmax", c->router->scoring, MOE__ROUTER_CONFIG__SCORING__softmax);
    EXPECT_EQ("v2-lite no balancing bias", r.untrained, 0);
    EXPECT_EQ("v2-lite total", r.total, 15706484224LL);
    EXPECT_EQ("v2-lite active w/o embedding", r.active_nonembedding, 2451435008LL);
    EXPECT_EQ("v2-lite: no unknown fields", n_unknown(&info), 0);
    EXPECT("v2-lite n_group read (1: no groups)", !has_ignored(&info, "n_group", "known"));
    EXPECT_EQ("v2-lite no groups", c->router->n_group, 0);
    moe_config_free(c);
    moe_hf_info_free(&info);

    c = load(__LINE__, example("deepseek-v3.json"), &info, &r);
    EXPECT("v3 family", !strcmp(info.family, "deepseek_v3"));
    EXPECT_EQ("v3 q_lora_rank", c->model->q_lora_rank, 1536);
    EXPECT_EQ("v3 first dense", c->model->first_dense_layers, 3);
    EXPECT_EQ("v3 sigmoid", c->router->scoring, MOE__ROUTER_CONFIG__SCORING__sigmoid);
    EXPECT_EQ("v3 renormalize", c->router->renormalize, 1);
    EXPECT("v3 routed scaling 2.5", c->router->routed_scaling == 2.5);
    EXPECT("v3 balancing on", c->router->bias_update_rate > 0);
    // seq_aux true, aux_loss_alpha 0.001: DeepSeek's sequence-wise loss (issue 14).
    EXPECT_EQ("v3 seq_aux: sequence scope", c->router->balance_scope,
              MOE__ROUTER_CONFIG__BALANCE_SCOPE__sequence);
    EXPECT("v3 aux_loss_alpha", c->router->aux_loss_coef == 0.001);
    EXPECT("v3 seq_aux read", !has_ignored(&info, "seq_aux", "known"));
    EXPECT_EQ("v3 total", r.total, 671026419200LL);
    EXPECT_EQ("v3 active w/o embedding", r.active_nonembedding, 36625618432LL);
    EXPECT_EQ("v3: no unknown fields", n_unknown(&info), 0);
    EXPECT("v3 MTP listed", has_ignored(&info, "num_nextn_predict_layers", "known"));
    // n_group 8, topk_group 4, noaux_tc: group-limited, V3's group score; counts unchanged.
    EXPECT_EQ("v3 n_group", c->router->n_group, 8);
    EXPECT_EQ("v3 topk_group", c->router->topk_group, 4);
    EXPECT_EQ("v3 group score", c->router->group_score, MOE__ROUTER_CONFIG__GROUP_SCORE__top2_sum);
    EXPECT_EQ("v3 report n_group", r.n_group, 8);
    EXPECT_EQ("v3 reachable experts", r.reachable_experts, 128);
    EXPECT("v3 validates with groups", moe_config_validate(c, 0) == MOE_OK);
    moe_config_free(c);
    moe_hf_info_free(&info);

    c = load(__LINE__, example("olmoe-1b-7b.json"), &info, &r);
    EXPECT("olmoe family", !strcmp(info.family, "olmoe"));
    EXPECT_EQ("olmoe qk norm full", c->model->qk_norm, MOE__MODEL_CONFIG__QK_NORM__full);
    EXPECT_EQ("olmoe total", r.total, 6919161856LL);
    EXPECT_EQ("olmoe active", r.active, 1282017280LL);
    EXPECT_EQ("olmoe: no unknown fields", n_unknown(&info), 0);
    moe_config_free(c);
    moe_hf_info_free(&info);
}

// topk_method → group score: group_limited_greedy (V2) max, noaux_tc (V3) top2_sum, greedy off.
static void test_deepseek_groups(void) {
    static const char *fmt =
        "{\"model_type\": \"%s\", \"vocab_size\": 256, \"hidden_size\": 8, "
        "\"num_hidden_layers\": 2, \"num_attention_heads\": 2, \"intermediate_size\": 12, "
        "\"moe_intermediate_size\": 6, \"n_routed_experts\": 8, \"num_experts_per_tok\": 2, "
        "\"first_k_dense_replace\": 1, \"q_lora_rank\": null, \"kv_lora_rank\": 3, "
        "\"qk_nope_head_dim\": 2, \"qk_rope_head_dim\": 2, \"v_head_dim\": 3, "
        "\"n_group\": 4, \"topk_group\": %d, \"topk_method\": \"%s\"}";
    const struct {
        const char *family, *method;
        int topk_group, n_group, score;
    } cases[] = {
        {"deepseek_v2", "group_limited_greedy", 2, 4, MOE__ROUTER_CONFIG__GROUP_SCORE__max},
        {"deepseek_v3", "noaux_tc", 1, 4, MOE__ROUTER_CONFIG__GROUP_SCORE__top2_sum},
        {"deepseek_v2", "greedy", 2, 0, MOE__ROUTER_CONFIG__GROUP_SCORE__top2_sum},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[1024];
        snprintf(text, sizeof text, fmt, cases[i].family, cases[i].topk_group, cases[i].method);
        moe_hf_info info;
        moe_params_report r, r0;
        Moe__Config *c = load(__LINE__, write_tmp(text), &info, &r);
        EXPECT_EQ(cases[i].method, c->router->n_group, cases[i].n_group);
        EXPECT_EQ(cases[i].method, r.n_group, cases[i].n_group);
        EXPECT_EQ(cases[i].method, c->router->group_score, cases[i].score);
        if (cases[i].n_group)
            EXPECT_EQ(cases[i].method, c->router->topk_group, cases[i].topk_group);
        EXPECT(cases[i].method, moe_config_validate(c, 0) == MOE_OK);
        // Groups restrict the choice, not the counts: the same totals without them.
        c->router->n_group = 0;
        EXPECT(cases[i].method, moe_params_count(c, 1, 1, &r0) == MOE_OK);
        EXPECT_EQ(cases[i].method, r0.active, r.active);
        EXPECT_EQ(cases[i].method, r0.total, r.total);
        moe_config_free(c);
        moe_hf_info_free(&info);
    }
}

static void test_family_rules(void) {
    moe_hf_info info;
    moe_params_report r;
    Moe__Config *c;

    // qwen2_moe layer rule, L=4: sparse iff (l+1) % 2 == 0 and l not in mlp_only_layers [1] -> {3}.
    c = load(__LINE__,
             write_tmp("{\"model_type\": \"qwen2_moe\", \"vocab_size\": 10, "
                       "\"hidden_size\": 8, \"num_hidden_layers\": 4, "
                       "\"num_attention_heads\": 2, \"intermediate_size\": 12, "
                       "\"moe_intermediate_size\": 6, \"num_experts\": 4, "
                       "\"num_experts_per_tok\": 2, \"decoder_sparse_step\": 2, "
                       "\"mlp_only_layers\": [1], "
                       "\"shared_expert_intermediate_size\": 0}"),
             &info, &r);
    EXPECT_EQ("qwen step: moe layers", r.n_moe_layers, 1);
    EXPECT_EQ("qwen step: dense layers", c->model->n_dense_layers, 3);
    EXPECT("qwen step: layer 3 sparse",
           c->model->n_dense_layers == 3 && c->model->dense_layers[0] == 0 &&
               c->model->dense_layers[1] == 1 && c->model->dense_layers[2] == 2);
    EXPECT_EQ("qwen no shared expert when width 0", c->model->n_shared_experts, 0);
    moe_config_free(c);
    moe_hf_info_free(&info);

    // deepseek layer rule, L=5: MoE iff l >= first_k_dense_replace (1) and l % moe_layer_freq (2)
    // == 0 -> {2, 4}.
    c = load(__LINE__,
             write_tmp("{\"model_type\": \"deepseek_v2\", \"vocab_size\": 10, "
                       "\"hidden_size\": 8, \"num_hidden_layers\": 5, "
                       "\"num_attention_heads\": 2, \"intermediate_size\": 12, "
                       "\"moe_intermediate_size\": 6, \"n_routed_experts\": 4, "
                       "\"num_experts_per_tok\": 2, \"first_k_dense_replace\": 1, "
                       "\"moe_layer_freq\": 2, \"q_lora_rank\": null, \"kv_lora_rank\": 3, "
                       "\"qk_nope_head_dim\": 2, \"qk_rope_head_dim\": 2, \"v_head_dim\": 3}"),
             &info, &r);
    EXPECT_EQ("deepseek freq: moe layers", r.n_moe_layers, 2);
    EXPECT_EQ("deepseek freq: dense layers", r.n_dense_layers, 3);
    moe_config_free(c);
    moe_hf_info_free(&info);

    // deepseek_v3, tiny, V=10, D=8, L=2 (layer 0 dense), H=2, q rank 4, kv rank 3, nope 2, rope 2,
    // v 3, attention_bias true (biases on q_a, kv_a and o only), 4 experts of 6 top-2, 1 shared,
    // noaux_tc (balancing bias E=4).
    //   attention/layer: q_a 8·4 + 4, q_a norm 4, q_b 4·(2·4), kv_a 8·(3+2) + 5, kv_a norm 3,
    //                    kv_b 3·(2·(2+3)), o (2·3)·8 + 8  = 36 + 4 + 32 + 45 + 3 + 30 + 56 = 206
    //   emb 80, attention 412, norms 2·16 + 8 = 40, dense 3·8·12 = 288,
    //   MoE layer: router 32 + bias 4, experts 4·144 = 576 (active 288), shared 144, head 80
    //   total 1656, active 1368
    c = load(__LINE__,
             write_tmp("{\"architectures\": [\"DeepseekV3ForCausalLM\"], \"vocab_size\": 10, "
                       "\"hidden_size\": 8, \"num_hidden_layers\": 2, "
                       "\"num_attention_heads\": 2, \"num_key_value_heads\": 2, "
                       "\"intermediate_size\": 12, \"moe_intermediate_size\": 6, "
                       "\"n_routed_experts\": 4, \"n_shared_experts\": 1, "
                       "\"num_experts_per_tok\": 2, \"first_k_dense_replace\": 1, "
                       "\"q_lora_rank\": 4, \"kv_lora_rank\": 3, \"qk_nope_head_dim\": 2, "
                       "\"qk_rope_head_dim\": 2, \"v_head_dim\": 3, \"attention_bias\": true, "
                       "\"topk_method\": \"noaux_tc\", \"scoring_func\": \"sigmoid\", "
                       "\"tie_word_embeddings\": false}"),
             &info, &r);
    EXPECT("v3 by architectures", !strcmp(info.family, "deepseek_v3"));
    EXPECT_EQ("tiny v3 attention", r.part[MOE_PARAMS_ATTENTION].total, 2 * 206);
    EXPECT_EQ("tiny v3 total", r.total, 1656);
    EXPECT_EQ("tiny v3 active", r.active, 1368);
    moe_config_free(c);
    moe_hf_info_free(&info);

    // deepseek_v3 with the optional fields absent: transformers' DeepseekV3Config defaults apply
    // and are noted (first_k_dense_replace 3, n_shared_experts 1, q_lora_rank 1536, sigmoid,
    // the balancing bias); an explicit null q_lora_rank is the full-rank q.
    c = load(__LINE__,
             write_tmp("{\"model_type\": \"deepseek_v3\", \"vocab_size\": 10, "
                       "\"hidden_size\": 8, \"num_hidden_layers\": 4, "
                       "\"num_attention_heads\": 2, \"intermediate_size\": 12, "
                       "\"moe_intermediate_size\": 6, \"n_routed_experts\": 4, "
                       "\"num_experts_per_tok\": 2, \"kv_lora_rank\": 3, "
                       "\"qk_nope_head_dim\": 2, \"qk_rope_head_dim\": 2, \"v_head_dim\": 3}"),
             &info, &r);
    EXPECT_EQ("v3 default first dense", c->model->first_dense_layers, 3);
    EXPECT_EQ("v3 default moe layers", r.n_moe_layers, 1);
    EXPECT_EQ("v3 default shared", c->model->n_shared_experts, 1);
    EXPECT_EQ("v3 default q_lora_rank", c->model->q_lora_rank, 1536);
    EXPECT_EQ("v3 default sigmoid", c->router->scoring, MOE__ROUTER_CONFIG__SCORING__sigmoid);
    EXPECT_EQ("v3 default balancing bias", r.untrained, 4);
    int noted = 0;
    for (size_t i = 0; i < info.n_notes; i++)
        noted += strstr(info.notes[i], "first_k_dense_replace") != NULL ||
                 strstr(info.notes[i], "q_lora_rank") != NULL;
    EXPECT_EQ("v3 defaults noted", noted, 2);
    // n_group / topk_group absent: transformers' 8 / 4 cannot split 4 experts: no groups, noted.
    EXPECT_EQ("v3 default groups do not fit 4 experts", c->router->n_group, 0);
    int gnote = 0;
    for (size_t i = 0; i < info.n_notes; i++) gnote += strstr(info.notes[i], "do not fit") != NULL;
    EXPECT_EQ("v3 unfit default groups noted", gnote, 1);
    moe_config_free(c);
    moe_hf_info_free(&info);
    c = load(__LINE__,
             write_tmp("{\"model_type\": \"deepseek_v2\", \"vocab_size\": 10, "
                       "\"hidden_size\": 8, \"num_hidden_layers\": 2, "
                       "\"num_attention_heads\": 2, \"intermediate_size\": 12, "
                       "\"n_routed_experts\": null, \"q_lora_rank\": null, \"kv_lora_rank\": 3, "
                       "\"qk_nope_head_dim\": 2, \"qk_rope_head_dim\": 2, \"v_head_dim\": 3}"),
             &info, &r);
    EXPECT_EQ("v2 null q_lora_rank", c->model->q_lora_rank, 0);
    EXPECT_EQ("v2 null experts: dense", r.n_moe_layers, 0);
    moe_config_free(c);
    moe_hf_info_free(&info);

    // qwen3_moe, tiny: V=10, D=8, L=1, H=2, Hkv=1, head_dim 4, per-head q/k norm, tied.
    //   emb 80; attention q 8·8 + k 8·4 + v 8·4 + o 8·8 + norms 2·4 = 200; norms 2·8 + 8 = 24;
    //   router 8·4 = 32; experts 4·3·8·6 = 576; head 0 -> total 912
    c = load(__LINE__,
             write_tmp("{\"model_type\": \"qwen3_moe\", \"vocab_size\": 10, "
                       "\"hidden_size\": 8, \"num_hidden_layers\": 1, "
                       "\"num_attention_heads\": 2, \"num_key_value_heads\": 1, "
                       "\"head_dim\": 4, \"intermediate_size\": 12, "
                       "\"moe_intermediate_size\": 6, \"num_experts\": 4, "
                       "\"num_experts_per_tok\": 2, \"attention_bias\": false, "
                       "\"norm_topk_prob\": true, \"tie_word_embeddings\": true}"),
             &info, &r);
    EXPECT_EQ("tiny qwen3 total", r.total, 912);
    EXPECT_EQ("tiny qwen3 renormalize", c->router->renormalize, 1);
    moe_config_free(c);
    moe_hf_info_free(&info);

    // An unknown field is listed as such, in file order with the known ones.
    c = load(__LINE__,
             write_tmp("{\"model_type\": \"mixtral\", \"vocab_size\": 10, "
                       "\"hidden_size\": 8, \"num_hidden_layers\": 1, "
                       "\"num_attention_heads\": 2, \"intermediate_size\": 12, "
                       "\"num_local_experts\": 4, \"num_experts_per_tok\": 2, "
                       "\"torch_dtype\": \"bfloat16\", \"my_new_field\": 3}"),
             &info, &r);
    EXPECT("unknown field listed", has_ignored(&info, "my_new_field", "unknown field"));
    EXPECT_EQ("only one unknown", n_unknown(&info), 1);
    EXPECT("torch_dtype before it", info.n_ignored == 2 && !strcmp(info.ignored[0], "torch_dtype"));
    EXPECT("rope_theta absent: Mixtral's default 1e6", c->model->rope_theta == 1e6);
    moe_config_free(c);
    moe_hf_info_free(&info);
}

static void test_refusals(void) {
    Moe__Config *c = NULL;
    moe_hf_info info;
    const char *p;
    p = write_tmp(
        "{\"model_type\": \"mixtral\", \"vocab_size\": 10, \"num_hidden_layers\": 1, "
        "\"num_attention_heads\": 2, \"intermediate_size\": 12, \"num_local_experts\": 4, "
        "\"num_experts_per_tok\": 2}");
    EXPECT_EQ("missing hidden_size", moe_hf_config_load(p, &c, &info), MOE_EINVAL);
    EXPECT("message names hidden_size", strstr(moe_last_error(), "hidden_size") != NULL);
    EXPECT("no config on error", c == NULL);
    p = write_tmp(
        "{\"model_type\": \"mixtral\", \"vocab_size\": 10, \"hidden_size\": 8, "
        "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"intermediate_size\": 12, "
        "\"num_local_experts\": \"4\", \"num_experts_per_tok\": 2}");
    EXPECT_EQ("string expert count", moe_hf_config_load(p, &c, &info), MOE_EINVAL);
    EXPECT("message names num_local_experts",
           strstr(moe_last_error(), "num_local_experts") != NULL);
    p = write_tmp(
        "{\"model_type\": \"mixtral\", \"vocab_size\": 10, \"hidden_size\": 8, "
        "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"intermediate_size\": 12, "
        "\"num_local_experts\": 4}");
    EXPECT_EQ("missing top-k", moe_hf_config_load(p, &c, &info), MOE_EINVAL);
    p = write_tmp("{\"model_type\": \"llama\", \"hidden_size\": 8}");
    EXPECT_EQ("unsupported family", moe_hf_config_load(p, &c, &info), MOE_EINVAL);
    EXPECT("message names llama", strstr(moe_last_error(), "llama") != NULL);
    p = write_tmp("{\"model_type\": \"mixtral\",");
    EXPECT_EQ("bad JSON", moe_hf_config_load(p, &c, &info), MOE_EINVAL);
    EXPECT_EQ("missing file", moe_hf_config_load("/nonexistent/config.json", &c, &info), MOE_EIO);
    // OlmoeConfig has no head_dim (q_norm's width is hidden_size): one other than D / H is refused,
    // one equal to it read.
    const char *olmoe = "{\"model_type\": \"olmoe\", \"vocab_size\": 10, \"hidden_size\": 8, "
                        "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, "
                        "\"intermediate_size\": 12, \"num_experts\": 4, "
                        "\"num_experts_per_tok\": 2, \"head_dim\": %d}";
    char text[512];
    snprintf(text, sizeof text, olmoe, 2);
    EXPECT_EQ("olmoe head_dim 2 != 8 / 2", moe_hf_config_load(write_tmp(text), &c, &info),
              MOE_EINVAL);
    EXPECT("message names head_dim", strstr(moe_last_error(), "head_dim 2") != NULL);
    snprintf(text, sizeof text, olmoe, 4);
    EXPECT_EQ("olmoe head_dim 4 = 8 / 2", moe_hf_config_load(write_tmp(text), &c, &info), MOE_OK);
    moe_config_free(c);
    moe_hf_info_free(&info);

    int is_hf = -1;
    char ours[4096];
    snprintf(ours, sizeof ours, "%s/mixtral-8x7b.json", examples);
    EXPECT_EQ("detect ours", moe_hf_config_detect(ours, &is_hf), MOE_OK);
    EXPECT_EQ("ours is not HF", is_hf, 0);
    EXPECT_EQ("detect HF", moe_hf_config_detect(example("olmoe-1b-7b.json"), &is_hf), MOE_OK);
    EXPECT_EQ("HF is HF", is_hf, 1);
}

static void remove_tmp(void) {
    for (int i = 0; i < n_tmp; i++) unlink(tmp_paths[i]);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_params_hf EXAMPLES_DIR\n");
        return 2;
    }
    examples = argv[1];
    test_examples();
    test_family_rules();
    test_deepseek_groups();
    test_refusals();
    remove_tmp();
    if (failures) {
        fprintf(stderr, "test_params_hf: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_params_hf: all checks passed\n");
    return 0;
}
