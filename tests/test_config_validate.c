// test_config_validate.c: moe_config_validate, table-driven. Each case starts from the defaults
// (plus a small MoE model), applies overrides, and expects either success or an error whose
// message contains the given fragments. Boundary cases that must pass sit next to the ones that
// must fail, so a check that is too strict fails the test as well as one that is missing.
// Also: every moe.Config in examples/ (argv[1]) must validate.
#include "config.h"

#include <dirent.h>
#include <string.h>

typedef struct {
    const char *sets[6];
    int world;
    const char *frag; // NULL: must validate
    const char *frag2;
} vcase;

static const vcase cases[] = {
    // The base config and boundaries that are fine.
    {{NULL}, 0, NULL, NULL},
    {{"model.top_k=8"}, 0, NULL, NULL},
    {{"model.n_experts=0", "model.top_k=0"}, 0, NULL, NULL}, // dense: top_k unused
    {{"parallel.ep_size=8"}, 8, NULL, NULL},
    {{"parallel.ep_size=2"}, 4, NULL, NULL},
    {{"model.n_kv_heads=1"}, 0, NULL, NULL},
    {{"model.n_heads=3", "model.head_dim=32"}, 0, NULL, NULL},
    {{"model.first_dense_layers=4", "model.dense_layers=[0,3]"}, 0, NULL, NULL},
    {{"model.kv_lora_rank=64", "model.qk_nope_head_dim=32", "model.qk_rope_head_dim=16",
      "model.v_head_dim=32", "model.q_lora_rank=96"},
     0,
     NULL,
     NULL},
    {{"model.positions=learned", "model.max_seq_len=64"}, 0, NULL, NULL},
    {{"train.warmup_steps=200"}, 0, NULL, NULL},
    {{"train.global_batch=12"}, 3, NULL, NULL},
    {{"data.format=u16_tokens", "model.vocab_size=65536"}, 0, NULL, NULL},
    {{"router.strategy=expert_choice"}, 0, NULL, NULL},
    {{"lora.rank=4", "lora.targets=[\"attention\",\"experts\",\"router\"]"}, 0, NULL, NULL},
    {{"train.beta1=0", "router.capacity_factor=0"}, 0, NULL, NULL},

    // Experts and routing.
    {{"model.top_k=9"}, 0, "model.top_k = 9 exceeds model.n_experts = 8", "set top_k <= 8"},
    {{"model.top_k=0"}, 0, "model.top_k = 0", "set top_k >= 1"},
    {{"model.n_experts=-1"}, 0, "model.n_experts = -1: must be 0 or more", NULL},
    {{"parallel.ep_size=3"}, 0, "parallel.ep_size = 3 does not divide model.n_experts = 8", NULL},
    {{"parallel.ep_size=0"}, 0, "parallel.ep_size = 0: must be 1 or more", NULL},
    {{"parallel.ep_size=4"}, 6, "parallel.ep_size = 4 does not divide the world size 6", NULL},
    {{"model.n_experts=0", "parallel.ep_size=2"}, 0, "a dense model has no experts to shard", NULL},
    {{"model.n_experts=0", "router.strategy=expert_choice"},
     0,
     "router.strategy = expert_choice needs experts",
     NULL},
    {{"model.n_experts=0", "model.n_shared_experts=1"},
     0,
     "model.n_shared_experts = 1 needs MoE layers",
     NULL},
    {{"router.capacity_factor=-0.5"}, 0, "router.capacity_factor = -0.5", "must be >= 0"},
    {{"router.aux_loss_coef=-1"}, 0, "router.aux_loss_coef = -1", NULL},
    {{"router.z_loss_coef=NaN"}, 0, "router.z_loss_coef = nan", NULL},
    {{"router.routed_scaling=0"}, 0, "router.routed_scaling = 0", NULL},
    {{"router.jitter=-0.1"}, 0, "router.jitter = -0.1", NULL},
    {{"router.bias_update_rate=Infinity"}, 0, "router.bias_update_rate = inf", NULL},
    // Group-limited and node-limited routing (8 experts, top_k 2).
    {{"router.n_group=4", "router.topk_group=2"}, 0, NULL, NULL},
    {{"router.n_group=4", "router.topk_group=1", "router.group_score=max"}, 0, NULL, NULL},
    {{"router.n_group=8", "router.topk_group=2", "router.group_score=max"}, 0, NULL, NULL},
    {{"router.n_group=1", "router.topk_group=1"}, 0, NULL, NULL}, // DeepSeek-V2-Lite: off
    {{"router.node_limited=true", "router.topk_group=1", "parallel.ep_size=4"}, 4, NULL, NULL},
    {{"router.n_group=-1"}, 0, "router.n_group = -1: must be 0 or more", NULL},
    {{"router.n_group=3", "router.topk_group=1"},
     0,
     "router.n_group = 3 does not divide model.n_experts = 8",
     NULL},
    {{"router.n_group=4"}, 0, "router.topk_group = 0: must be in 1..router.n_group = 4", NULL},
    {{"router.n_group=4", "router.topk_group=5"}, 0, "router.topk_group = 5", NULL},
    {{"router.n_group=4", "router.topk_group=1", "model.top_k=3"},
     0,
     "model.top_k = 3 exceeds router.topk_group × experts per group = 1 × 2 = 2",
     "raise topk_group or lower top_k"},
    {{"router.n_group=8", "router.topk_group=2"},
     0,
     "router.group_score = top2_sum sums the two best experts",
     "use group_score = max"},
    {{"router.n_group=4", "router.topk_group=2", "router.strategy=expert_choice"},
     0,
     "needs router.strategy = token_choice",
     "no per-token choice of groups"},
    {{"router.topk_group=2"}, 0, "router.topk_group = 2 has no effect without groups", NULL},
    {{"router.n_group=4", "router.topk_group=2", "model.n_experts=0", "model.top_k=0"},
     0,
     "needs experts",
     NULL},
    {{"router.node_limited=true", "router.n_group=2", "router.topk_group=1", "parallel.ep_size=4"},
     4,
     "leave router.n_group at 0 (got 2)",
     NULL},
    {{"router.node_limited=true", "parallel.ep_size=4"}, 4, "router.topk_group = 0", NULL},
    {{"router.node_limited=true", "router.topk_group=1"}, 0, "needs parallel.ep_size > 1", NULL},
    {{"router.node_limited=true", "router.topk_group=1", "router.strategy=expert_choice",
      "parallel.ep_size=2"},
     2,
     "router.node_limited = true (group-limited routing) needs router.strategy = token_choice",
     NULL},
    // Model shape.
    {{"model.n_heads=3"}, 0, "model.n_heads = 3 does not divide model.d_model = 128", "head_dim"},
    {{"model.n_kv_heads=3"}, 0, "model.n_kv_heads = 3 does not divide model.n_heads = 4", NULL},
    {{"model.n_heads=8", "model.d_model=16"}, 0, NULL, NULL},
    {{"model.n_heads=8", "model.d_model=24"}, 0, "rope needs an even head dim", "got 3"},
    {{"model.d_model=0"}, 0, "model.d_model = 0: must be positive", NULL},
    {{"model.n_layers=-2"}, 0, "model.n_layers = -2: must be positive", NULL},
    {{"model.vocab_size=0"}, 0, "model.vocab_size = 0: must be positive", NULL},
    {{"model.d_ff=-1"}, 0, "model.d_ff = -1: must be 0 or more", NULL},
    {{"model.first_dense_layers=5"},
     0,
     "model.first_dense_layers = 5 must be in [0, model.n_layers = 4]",
     NULL},
    {{"model.dense_layers=[1,4]"}, 0, "model.dense_layers[1] = 4 is not a layer index", NULL},
    {{"model.dense_layers=[-1]"}, 0, "model.dense_layers[0] = -1 is not a layer index", NULL},
    {{"model.dense_layers=[2,1,2]"},
     0,
     "model.dense_layers[2] = 2 repeats model.dense_layers[0]",
     NULL},
    {{"model.kv_lora_rank=64"}, 0, "model.kv_lora_rank = 64 enables MLA", "(got 0, 0, 0)"},
    {{"model.kv_lora_rank=64", "model.qk_nope_head_dim=32", "model.qk_rope_head_dim=15",
      "model.v_head_dim=32"},
     0,
     "model.qk_rope_head_dim = 15 must be even",
     NULL},
    {{"model.q_lora_rank=64"}, 0, "only apply to MLA", NULL},
    {{"model.positions=learned", "model.max_seq_len=32"},
     0,
     "model.max_seq_len = 32 positions, shorter than train.seq_len = 64",
     NULL},
    // Training.
    {{"train.lr=0"}, 0, "train.lr = 0", "> 0"},
    {{"train.lr=-1e-3"}, 0, "train.lr = -0.001", NULL},
    {{"train.min_lr=0.01"}, 0, "train.min_lr = 0.01 exceeds train.lr = 0.003", NULL},
    {{"train.beta1=1"}, 0, "train.beta1 = 1: must be in [0, 1)", NULL},
    {{"train.beta2=-0.1"}, 0, "train.beta2 = -0.1: must be in [0, 1)", NULL},
    {{"train.eps=0"}, 0, "train.eps = 0", NULL},
    {{"train.weight_decay=-0.1"}, 0, "train.weight_decay = -0.1", NULL},
    {{"train.grad_clip=-1"}, 0, "train.grad_clip = -1", NULL},
    {{"train.warmup_steps=201"}, 0, "train.warmup_steps = 201 exceeds train.steps = 200", NULL},
    {{"train.steps=0"}, 0, "train.steps = 0: must be positive", NULL},
    {{"train.global_batch=0"}, 0, "train.global_batch = 0: must be positive", NULL},
    {{"train.seq_len=0"}, 0, "train.seq_len = 0", NULL},
    {{"train.global_batch=16"},
     3,
     "train.global_batch = 16 is not divisible by the world size 3",
     NULL},
    // Issue 12, defect 10: keep_checkpoints <= 0 keeps all (docs/checkpoints.md), not refused.
    {{"train.keep_checkpoints=0"}, 0, NULL, NULL},
    {{"train.keep_checkpoints=-1"}, 0, NULL, NULL},
    // Issue 12, defect 9a: counts bounded (a typo must not run moe params for minutes).
    {{"model.n_layers=65536"}, 0, NULL, NULL},
    {{"model.n_layers=65537"}, 0, "model.n_layers = 65537 exceeds the limit 65536", NULL},
    {{"model.n_layers=2147483000"}, 0, "model.n_layers = 2147483000 exceeds the limit", NULL},
    {{"model.n_experts=65537"}, 0, "model.n_experts = 65537 exceeds the limit 65536", NULL},
    {{"model.n_heads=70000", "model.head_dim=8"}, 0, "model.n_heads = 70000 exceeds", NULL},
    // Issue 12, defect 8: a huge capacity factor is a valid "drop nothing".
    {{"router.capacity_factor=1e308"}, 0, NULL, NULL},
    {{"train.eval_batches=0"}, 0, "train.eval_batches = 0", NULL},
    {{"train.eval_batches=0", "train.eval_interval=0"}, 0, NULL, NULL},
    {{"parallel.overlap=true", "parallel.overlap_chunks=0"},
     0,
     "parallel.overlap_chunks = 0",
     NULL},
    // Data.
    {{"data.format=u16_tokens", "model.vocab_size=65537"}, 0, "u16_tokens", "65537 > 65536"},
    {{"model.vocab_size=100"}, 0, "data.format = text reads raw bytes", "set vocab_size >= 256"},
    {{"data.val_fraction=1"}, 0, "data.val_fraction = 1: must be in [0, 1)", NULL},
    // LoRA.
    {{"lora.rank=-1"}, 0, "lora.rank = -1: must be 0 or more", NULL},
    {{"lora.rank=4", "lora.alpha=0"}, 0, "lora.alpha = 0", NULL},
    {{"lora.targets=[\"attention\"]"}, 0, "lora.targets is set but lora.rank = 0", NULL},
    {{"lora.rank=4", "lora.targets=[\"attention\",\"attention\"]"},
     0,
     "lora.targets[1] = attention repeats lora.targets[0]",
     NULL},
    {{"lora.rank=4", "lora.targets=[\"shared_experts\"]"}, 0, "model.n_shared_experts = 0", NULL},
    {{"lora.rank=4", "lora.targets=[\"experts\"]", "model.n_experts=0"},
     0,
     "lora.targets[0] = experts, but model.n_experts = 0",
     NULL},
    // Several problems are all reported, one per line.
    {{"model.top_k=9", "train.lr=0"}, 0, "raise n_experts\ntrain.lr = 0", NULL},
};

static int failures = 0;

static void run_case(const vcase *c) {
    Moe__Config *cfg = moe_config_new_default();
    MOE_ASSERT(moe_config_set(cfg, "model.n_experts=8") == MOE_OK);
    char label[512];
    size_t o = 0;
    label[0] = '\0';
    for (int i = 0; i < 6 && c->sets[i]; i++) {
        if (moe_config_set(cfg, c->sets[i]) != MOE_OK) {
            fprintf(stderr, "FAIL setup --set %s: %s\n", c->sets[i], moe_last_error());
            failures++;
            moe_config_free(cfg);
            return;
        }
        o += (size_t)snprintf(label + o, sizeof label - o, " --set %s", c->sets[i]);
    }
    if (c->world) snprintf(label + o, sizeof label - o, " --world %d", c->world);
    moe_status st = moe_config_validate(cfg, c->world);
    const char *msg = moe_last_error();
    if (!c->frag && st != MOE_OK) {
        fprintf(stderr, "FAIL%s:\n  expected valid\n  got: %s\n", label, msg);
        failures++;
    } else if (c->frag && st == MOE_OK) {
        fprintf(stderr, "FAIL%s:\n  expected an error containing \"%s\"\n  got: valid\n", label,
                c->frag);
        failures++;
    } else if (c->frag && (!strstr(msg, c->frag) || (c->frag2 && !strstr(msg, c->frag2)))) {
        fprintf(stderr, "FAIL%s:\n  expected an error containing \"%s\"%s%s\n  got: %s\n", label,
                c->frag, c->frag2 ? " and " : "", c->frag2 ? c->frag2 : "", msg);
        failures++;
    }
    moe_config_free(cfg);
}

int main(int argc, char **argv) {
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i]);

    // A Config whose sub-messages are absent validates as the defaults.
    ProtobufCMessage *bare;
    MOE_ASSERT(moe_json_parse_message("bare", "{}", 2, &moe__config__descriptor, &bare) == MOE_OK);
    if (moe_config_validate((Moe__Config *)bare, 1) != MOE_OK) {
        fprintf(stderr, "FAIL {} (no sub-messages): expected valid, got: %s\n", moe_last_error());
        failures++;
    }
    protobuf_c_message_free_unpacked(bare, NULL);

    // Every moe.Config in examples/ validates (a file that does not parse as one is skipped).
    int n_examples = 0;
    DIR *d = argc > 1 ? opendir(argv[1]) : NULL;
    for (struct dirent *e; d && (e = readdir(d));) {
        size_t l = strlen(e->d_name);
        if (l < 6 || strcmp(e->d_name + l - 5, ".json")) continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", argv[1], e->d_name);
        Moe__Config *cfg;
        if (moe_config_load(path, &cfg) != MOE_OK) continue;
        n_examples++;
        if (moe_config_validate(cfg, 0) != MOE_OK) {
            fprintf(stderr, "FAIL example %s: expected valid, got: %s\n", path, moe_last_error());
            failures++;
        }
        moe_config_free(cfg);
    }
    if (d) closedir(d);

    printf("%zu cases, %d examples, %d failed\n", sizeof cases / sizeof cases[0], n_examples,
           failures);
    return failures ? 1 : 0;
}
