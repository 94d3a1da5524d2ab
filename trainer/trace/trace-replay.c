// trace-replay.c: router.replay — training with every token's experts taken from a routing log
// (train.record_routing) while the live router supplies the weights and keeps learning
// (trace.h; docs/routes.md "Replay"). Each rank reads the step's file and keeps only its own
// tokens' selections: no exchange, and the file is checked before anything uses it.
#include "trace.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct moe_replay {
    char dir[MOE_PATH_MAX + 16];
    uint64_t config_hash; // the live model's shape hash (moe_trace_shape_hash)
    int32_t *sel;         // (n_moe, T, K) this rank's selections of the current step
};

static int is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

moe_status moe_replay_open(const Moe__Config *cfg, const moe_model *m, const moe_comm *c,
                           int64_t first, int64_t last, moe_replay **out) {
    *out = NULL;
    const char *src = cfg->router ? cfg->router->replay : NULL;
    MOE_ASSERT(src && src[0]);
    moe_replay *r = moe_xcalloc(1, sizeof *r);
    moe_status st = MOE_OK;
    char sub[MOE_PATH_MAX + 16];
    snprintf(sub, sizeof sub, "%s/routing", src);
    if (strlen(src) + 40 >= MOE_PATH_MAX)
        st = moe_set_error(MOE_EINVAL, "router.replay: the path is too long (%zu bytes)",
                           strlen(src));
    else if (is_dir(sub))
        snprintf(r->dir, sizeof r->dir, "%s", sub);
    else if (is_dir(src))
        snprintf(r->dir, sizeof r->dir, "%s", src);
    else
        st = moe_set_error(MOE_EINVAL,
                           "router.replay = %s: %s; name a run directory trained with "
                           "train.record_routing = true (or its routing/ directory)",
                           src, access(src, F_OK) == 0 ? "not a directory" : strerror(errno));
    for (int64_t s = first; !st && s <= last; s++) {
        char path[MOE_PATH_MAX + 96];
        moe_trace_routing_path(path, sizeof path, r->dir, s);
        if (access(path, R_OK) != 0)
            st = moe_set_error(MOE_EINVAL,
                               "router.replay: %s: %s — this run trains steps %lld..%lld and "
                               "replays each from its recording; record a run of at least "
                               "%lld steps with train.record_routing = true, or lower train.steps",
                               path, strerror(errno), (long long)first, (long long)last,
                               (long long)last);
    }
    if (!st) {
        moe_trace_probe p = {.batches = 1, .step = 0, .checkpoint = NULL};
        Moe__TraceHeader *h = moe_trace_header_new(m, cfg, &p, m->lay.world);
        r->config_hash = h->config_hash;
        protobuf_c_message_free_unpacked(&h->base, NULL);
        r->sel = moe_xcalloc((size_t)(m->n_moe * m->T * m->K) + 1, sizeof *r->sel);
    }
    st = moe_comm_agree(c, st);
    if (st) {
        moe_replay_free(r);
        return st;
    }
    *out = r;
    return MOE_OK;
}

// The first way the file's header differs from this run, or NULL.
static const char *replay_mismatch(const moe_trace *t, const moe_replay *r, const moe_model *m,
                                   int64_t B, char *buf, size_t cap) {
    const Moe__TraceHeader *h = t->h;
    if (strcmp(h->strategy, "token_choice"))
        snprintf(buf, cap, "it records %s routing; replay needs token_choice", h->strategy);
    else if (h->n_experts != m->E || h->top_k != m->K || (int)h->n_moe_layers != m->n_moe)
        snprintf(buf, cap,
                 "it records %d experts, top-%d, %zu MoE layers; this model has %d experts, "
                 "top-%d, %d MoE layers",
                 h->n_experts, h->top_k, h->n_moe_layers, m->E, m->K, m->n_moe);
    else if (h->config_hash != r->config_hash)
        snprintf(buf, cap,
                 "it was recorded from a model of another shape (model.* differs: d_model, "
                 "layers, heads, FFN widths or the MoE layers; compare the runs with moe "
                 "report A B)");
    else if (h->n_sequences != B || h->seq_len != m->S || h->probe_batches != 1)
        snprintf(buf, cap,
                 "it holds %lld sequences of %d tokens; this run's step has %lld of %lld "
                 "(train.global_batch, train.seq_len)",
                 (long long)h->n_sequences, h->seq_len, (long long)B, (long long)m->S);
    else
        return NULL;
    return buf;
}

moe_status moe_replay_step(moe_replay *r, moe_model *m, const moe_comm *c, int64_t step,
                           const int32_t *tokens) {
    char path[MOE_PATH_MAX + 96];
    moe_trace_routing_path(path, sizeof path, r->dir, step);
    m->replay = NULL;
    moe_trace *t = NULL;
    moe_status st = moe_trace_read(path, &t);
    const int64_t S = m->S, T = m->T, K = m->K, L = m->n_moe;
    const int64_t B = (int64_t)m->Bl * m->lay.world, seq0 = (int64_t)m->lay.world_rank * m->Bl;
    char why[256];
    const char *bad = st ? NULL : replay_mismatch(t, r, m, B, why, sizeof why);
    if (bad)
        st = moe_set_error(MOE_EINVAL, "router.replay: step %lld: %s: %s", (long long)step, path,
                           bad);
    for (int64_t tk = 0; !st && tk < T; tk++) {
        const int64_t b = tk / S, pos = tk % S, seq = seq0 + b;
        const int32_t token = tokens[b * (S + 1) + pos];
        for (int64_t l = 0; !st && l < L; l++) {
            const int64_t i = (seq * S + pos) * L + l;
            MOE_ASSERT(t->seq[i] == (uint32_t)seq && t->pos[i] == (uint32_t)pos &&
                       t->layer[i] == (uint32_t)l); // the reader checked order and count
            if (t->token[i] != (uint32_t)token) {
                st = moe_set_error(MOE_EINVAL,
                                   "router.replay: step %lld: %s holds token %u at sequence "
                                   "%lld, position %lld, where this run's batch has %d: it was "
                                   "recorded on other data or another batch order (data.*, "
                                   "train.seed, train.global_batch must match the recording)",
                                   (long long)step, path, t->token[i], (long long)seq,
                                   (long long)pos, token);
                break;
            }
            const int32_t *ex = t->expert + i * t->slots;
            int32_t *dst = r->sel + (l * T + tk) * K;
            for (int64_t j = 0; j < K && !st; j++) {
                for (int64_t q = 0; q < j && !st; q++)
                    if (ex[q] == ex[j]) st = MOE_ECORRUPT;
                if (ex[j] < 0) st = MOE_ECORRUPT;
                dst[j] = ex[j];
            }
            if (st)
                st = moe_set_error(MOE_ECORRUPT,
                                   "router.replay: step %lld: %s: sequence %lld, position %lld, "
                                   "MoE layer %lld records an empty or repeated expert slot; a "
                                   "token-choice recording has top_k distinct experts per token",
                                   (long long)step, path, (long long)seq, (long long)pos,
                                   (long long)l);
        }
    }
    moe_trace_free(t);
    st = moe_comm_agree(c, st);
    if (!st) m->replay = r->sel;
    return st;
}

void moe_replay_free(moe_replay *r) {
    if (!r) return;
    free(r->sel);
    free(r);
}
