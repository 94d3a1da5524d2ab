// router-group.c: group-limited routing (DeepSeek-V2 "group_limited_greedy", DeepSeek-V3
// "noaux_tc"): the per-token group mask in front of top-K, the checks of the group fields, and
// node-limited routing's resolution of the groups from the EP layout. The mask is applied by
// setting masked selection values to -inf and reusing moe_router_topk, so the tie rule (lower
// index wins) is the plain top-K's, for groups and for experts alike.
#include "router.h"

#include <math.h>

moe_status moe_router_check_groups(const moe_router_params *p) {
    const int N = p->n_group;
    if (N < 0)
        return moe_set_error(MOE_EINVAL,
                             "router.n_group = %d: must be 0 or more (0 or 1: no groups)", N);
    if (p->node_limited && N <= 1)
        return moe_set_error(MOE_EINVAL,
                             "router.node_limited = true: the groups come from the EP layout and "
                             "were not resolved (moe_router_node_groups at setup); node-limited "
                             "routing needs the run's layout (moe train, moe bench step)");
    if (N <= 1) return MOE_OK;
    if (!moe_router_strategy_traits(p->strategy).by_token)
        return moe_set_error(MOE_EINVAL,
                             "router.n_group = %d (group-limited routing) needs router.strategy = "
                             "token_choice: with %s each expert picks its tokens, so there is no "
                             "per-token choice of groups to limit",
                             N, moe_router_strategy_traits(p->strategy).name);
    if (p->E % N)
        return moe_set_error(MOE_EINVAL,
                             "router.n_group = %d does not divide model.n_experts = %d: the groups "
                             "are equal and contiguous; use a divisor of %d",
                             N, p->E, p->E);
    const int S = p->E / N;
    if (p->topk_group < 1 || p->topk_group > N)
        return moe_set_error(MOE_EINVAL,
                             "router.topk_group = %d: must be in 1..router.n_group = %d (the "
                             "groups each token keeps)",
                             p->topk_group, N);
    if ((int64_t)p->K > (int64_t)p->topk_group * S)
        return moe_set_error(MOE_EINVAL,
                             "model.top_k = %d exceeds router.topk_group × experts per group = "
                             "%d × %d = %d: a token can reach only that many experts; raise "
                             "topk_group or lower top_k",
                             p->K, p->topk_group, S, p->topk_group * S);
    switch (p->group_score) {
    case MOE_GROUP_SCORE_TOP2_SUM:
        if (S < 2)
            return moe_set_error(MOE_EINVAL,
                                 "router.group_score = top2_sum sums the two best experts of a "
                                 "group, but groups of model.n_experts / router.n_group = %d / %d "
                                 "= 1 expert have one; use group_score = max or fewer groups",
                                 p->E, N);
        return MOE_OK;
    case MOE_GROUP_SCORE_MAX: return MOE_OK;
    }
    return moe_set_error(MOE_EINVAL,
                         "router.group_score = %d is not a known group score; use top2_sum or max",
                         (int)p->group_score);
}

moe_status moe_router_node_groups(moe_router_params *p, int ep, int q, int n_nodes) {
    if (!p->node_limited) return MOE_OK;
    MOE_ASSERT(ep >= 1 && n_nodes >= 1 && q >= 0);
    if (q == 0)
        return moe_set_error(MOE_ELAYOUT,
                             "router.node_limited = true needs the same number of ranks on "
                             "every node, but the %d nodes of this run differ; launch as many "
                             "ranks on each node, or use a fixed router.n_group",
                             n_nodes);
    if (q % ep == 0)
        return moe_set_error(MOE_ELAYOUT,
                             "router.node_limited = true: every EP group (parallel.ep_size = %d) "
                             "lies inside one node of %d rank(s) (%d node(s)), so all of a "
                             "token's experts are on its own node and there is nothing to "
                             "limit; set parallel.ep_size to a multiple of %d that spans nodes, "
                             "or use a fixed router.n_group",
                             ep, q, n_nodes, q);
    if (ep % q)
        return moe_set_error(MOE_ELAYOUT,
                             "router.node_limited = true: parallel.ep_size = %d is not a multiple "
                             "of the %d ranks per node, so the nodes cut EP groups unevenly; use "
                             "an ep_size that is a multiple of %d, or a fixed router.n_group",
                             ep, q, q);
    p->n_group = ep / q;
    moe_status st = moe_router_check_groups(p);
    if (st) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", moe_last_error());
        p->n_group = 0;
        return moe_set_error(st,
                             "router.node_limited = true: an EP group of %d ranks spans %d "
                             "nodes of %d, so router.n_group = %d: %s",
                             ep, ep / q, q, ep / q, msg);
    }
    return MOE_OK;
}

void moe_router_group_topk(const moe_router_params *p, float *v, float *gscore, int32_t *gidx,
                           int32_t *idx) {
    const int N = p->n_group, S = p->E / N, M = p->topk_group;
    for (int g = 0; g < N; g++) {
        const float *vg = v + (int64_t)g * S;
        // The two largest of the group (b2 = -inf when S = 1; max only reads b1).
        float b1 = vg[0], b2 = -INFINITY;
        for (int j = 1; j < S; j++) {
            if (vg[j] > b1) {
                b2 = b1;
                b1 = vg[j];
            } else if (vg[j] > b2) {
                b2 = vg[j];
            }
        }
        switch (p->group_score) {
        case MOE_GROUP_SCORE_TOP2_SUM: gscore[g] = b1 + b2; break;
        case MOE_GROUP_SCORE_MAX: gscore[g] = b1; break;
        }
    }
    moe_router_topk(gscore, N, M, gidx);
    // Mask every group not among the kept ones (M and N are small: a scan per group is fine).
    for (int g = 0; g < N; g++) {
        int kept = 0;
        for (int m = 0; m < M; m++) kept |= gidx[m] == g;
        if (kept) continue;
        for (int j = 0; j < S; j++) v[(int64_t)g * S + j] = -INFINITY;
    }
    moe_router_topk(v, p->E, p->K, idx);
}
