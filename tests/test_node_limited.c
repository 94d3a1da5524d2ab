// test_node_limited.c: node-limited routing through moe_model_create on real communicators with
// fake nodes (every f consecutive world ranks form a node). For each node shape and EP size the
// world allows: where an EP group spans n >= 2 equal nodes, the model's loss with
// router.node_limited equals, bit for bit, the loss with the fixed grouping router.n_group = n (so
// node-limited resolved to the nodes), and differs from unrestricted routing; where the EP group
// lies inside one node, or the nodes are unequal or cut it unevenly, creation is refused on every
// rank with MOE_ELAYOUT and a message that says why.
#include "comm.h"
#include "config.h"
#include "model.h"
#include "test-util.h"
#include "test-mpi.h"

#include <string.h>

static Moe__Config *config(int ep, const char *groups) {
    Moe__Config *cfg = moe_config_new_default();
    const char *sets[] = {
        "model.vocab_size=64",   "model.d_model=32",     "model.n_layers=2",
        "model.n_heads=2",       "model.d_ff=64",        "model.n_experts=8",
        "model.top_k=2",         "model.expert_d_ff=16", "model.first_dense_layers=0",
        "train.global_batch=4",  "train.seq_len=16",     "router.topk_group=1",
        "router.scoring=sigmoid"};
    for (size_t i = 0; i < sizeof sets / sizeof *sets; i++) OK(moe_config_set(cfg, sets[i]));
    char buf[64];
    snprintf(buf, sizeof buf, "parallel.ep_size=%d", ep);
    OK(moe_config_set(cfg, buf));
    if (groups) OK(moe_config_set(cfg, groups));
    return cfg;
}

// Creates the model for (cfg, comm) and returns its eval loss (ce + aux + z, global ce via the
// sum over ranks), or NAN with *st set when creation is refused.
static double model_loss(const Moe__Config *cfg, const moe_comm *c, moe_status *st) {
    const moe_model_layout lay = moe_model_layout_of(c);
    const int W = lay.world;
    const int64_t Bl = cfg->train->global_batch / W, S = cfg->train->seq_len;
    moe_model *m = NULL;
    *st = moe_model_create(cfg, &lay, c, Bl, &m);
    if (*st) return NAN;
    int32_t *tok = calloc((size_t)(Bl * (S + 1)), sizeof(int32_t));
    for (int64_t i = 0; i < Bl * (S + 1); i++) {
        uint64_t h = moe_splitmix64((uint64_t)(lay.world_rank * Bl * (S + 1) + i) + 99);
        tok[i] = (int32_t)(h % 64);
    }
    moe_model_loss loss;
    OK(moe_model_forward(m, tok, 0, 7, 0, lay.world_rank * Bl * S, &loss));
    double ce = loss.ce;
    OK(moe_comm_allreduce_f64(c, MOE_COMM_WORLD, &ce, 1, MOE_COMM_SUM));
    free(tok);
    moe_model_free(m);
    return ce / W + loss.aux + loss.z;
}

int main(int argc, char **argv) {
    const int W = test_mpi_start(&argc, &argv);
    int n_ok = 0, n_refused = 0;
    for (int f = 1; f <= W; f++)          // ranks per fake node (W % f != 0: unequal nodes)
        for (int ep = 1; ep <= W; ep++) { // every EP dividing the world and the 8 experts
            if (W % ep || 8 % ep) continue;
            moe_comm *c;
            moe_comm_params cp = {ep, 8, f, 1};
            OK(moe_comm_create(&cp, &c));
            const int equal = W % f == 0, spans = equal && ep % f == 0 && ep / f >= 2;
            Moe__Config *nl = config(ep, "router.node_limited=true");
            moe_status st;
            const double l_nl = model_loss(nl, c, &st);
            if (spans) {
                char fixed[48];
                snprintf(fixed, sizeof fixed, "router.n_group=%d", ep / f);
                Moe__Config *fx = config(ep, fixed), *off = config(ep, NULL);
                moe_status s2, s3;
                const double l_fx = model_loss(fx, c, &s2), l_off = model_loss(off, c, &s3);
                CHECK(st == MOE_OK && s2 == MOE_OK && s3 == MOE_OK,
                      "W %d, nodes of %d, EP %d: created %d %d %d: %s", W, f, ep, (int)st, (int)s2,
                      (int)s3, moe_last_error());
                CHECK(memcmp(&l_nl, &l_fx, sizeof l_nl) == 0,
                      "W %d, nodes of %d, EP %d: node-limited loss %.17g != n_group=%d loss %.17g",
                      W, f, ep, l_nl, ep / f, l_fx);
                CHECK(l_nl != l_off, "W %d, nodes of %d, EP %d: node-limited = unrestricted (%.9g)",
                      W, f, ep, l_off);
                if (g_rank == 0)
                    printf("W %d, nodes of %d ranks, EP %d: node-limited = n_group %d: loss "
                           "%.9f (unrestricted %.9f)\n",
                           W, f, ep, ep / f, l_nl, l_off);
                moe_config_free(fx);
                moe_config_free(off);
                n_ok++;
            } else {
                const char *why = !equal        ? "same number of ranks on every node"
                                  : f % ep == 0 ? "lies inside one node"
                                                : "cut EP groups unevenly";
                CHECK(st == MOE_ELAYOUT && strstr(moe_last_error(), why),
                      "W %d, nodes of %d, EP %d: expected MOE_ELAYOUT \"%s\", got %d: %s", W, f, ep,
                      why, (int)st, moe_last_error());
                if (g_rank == 0)
                    printf("W %d, nodes of %d ranks, EP %d: refused (%s)\n", W, f, ep, why);
                n_refused++;
            }
            moe_config_free(nl);
            moe_comm_free(c);
        }
    CHECK(n_refused > 0, "no refusal exercised");
    CHECK(W == 1 || n_ok > 0, "W %d: no node-limited layout exercised", W);
    moe_comm *c;
    OK(moe_comm_create(&(moe_comm_params){1, 0, 0, 1}, &c));
    const int fails = test_world_fails(c, g_fail);
    if (g_rank == 0) printf("test_node_limited: %s\n", fails ? "FAILED" : "all checks passed");
    moe_comm_finalize();
    return fails ? 1 : 0;
}
