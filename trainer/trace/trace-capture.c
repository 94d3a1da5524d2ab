// trace-capture.c: recording a routing trace (trace.h) — the probe's validation batches through
// the model's evaluation forward, each MoE layer's routing plan read back (moe_model_route_plan),
// this rank's records packed as 32-bit words and gathered to rank 0 batch by batch, which writes
// the file atomically. Trade-off: one extra forward over the probe (the validation loss pass is
// not reused) so the trace never depends on when validation runs.
#include "trace.h"

#include <string.h>

int moe_trace_due(const Moe__TrainConfig *tc, int64_t step) {
    for (size_t i = 0; tc && i < tc->n_trace_steps; i++)
        if (tc->trace_steps[i] == step) return 1;
    return 0;
}

void moe_trace_step_path(char *buf, size_t cap, const char *out_dir, int64_t step) {
    snprintf(buf, cap, "%s/traces/step-%lld.trace", out_dir, (long long)step);
}

Moe__TraceHeader *moe_trace_header_new(const moe_model *m, const Moe__Config *cfg,
                                       const moe_trace_probe *p, int world) {
    Moe__TraceHeader *h = moe_xcalloc(1, sizeof *h);
    moe__trace_header__init(h);
    const int ec =
        cfg->router && cfg->router->strategy == MOE__ROUTER_CONFIG__STRATEGY__expert_choice;
    size_t n = moe__model_config__get_packed_size(cfg->model);
    uint8_t *buf = moe_xcalloc(n + 1, 1);
    moe__model_config__pack(cfg->model, buf);
    h->model = moe__model_config__unpack(NULL, n, buf);
    MOE_ASSERT(h->model);
    free(buf);
    h->has_format_version = 1, h->format_version = MOE_TRACE_VERSION;
    h->has_n_experts = 1, h->n_experts = m->E;
    h->has_top_k = 1, h->top_k = m->K;
    h->has_slots = 1, h->slots = ec ? m->E : m->K;
    h->strategy = moe_xstrdup(ec ? "expert_choice" : "token_choice");
    h->n_moe_layers = (size_t)m->n_moe;
    h->moe_layers = moe_xcalloc((size_t)m->n_moe + 1, sizeof *h->moe_layers);
    for (int l = 0, i = 0; l < m->L; l++)
        if (m->moe_index[l] >= 0) h->moe_layers[i++] = l;
    const int64_t B = cfg->train->global_batch;
    h->has_n_sequences = 1, h->n_sequences = (int64_t)p->batches * B;
    h->has_seq_len = 1, h->seq_len = (int32_t)m->S;
    h->has_n_tokens = 1, h->n_tokens = h->n_sequences * m->S;
    h->has_n_records = 1, h->n_records = h->n_tokens * m->n_moe;
    h->has_record_bytes = 1, h->record_bytes = 4 * moe_trace_record_words(h->slots);
    h->has_step = 1, h->step = p->step;
    h->checkpoint = moe_xstrdup(p->checkpoint ? p->checkpoint : "");
    char probe[MOE_PATH_MAX + 160];
    const char *data =
        cfg->data && cfg->data->path && cfg->data->path[0] ? cfg->data->path : "the default corpus";
    snprintf(probe, sizeof probe,
             "validation batches 0..%d (%d x %lld sequences of %d tokens) of %s", p->batches - 1,
             p->batches, (long long)B, (int)m->S, data);
    h->probe = moe_xstrdup(probe);
    h->has_probe_batches = 1, h->probe_batches = p->batches;
    h->has_global_batch = 1, h->global_batch = (int32_t)B;
    h->has_world_size = 1, h->world_size = world;
    h->has_ep_size = 1, h->ep_size = m->lay.ep;
    h->has_sequences_per_forward = 1, h->sequences_per_forward = (int32_t)m->Bl;
    h->has_config_hash = 1, h->config_hash = moe_trace_shape_hash(h);
    return h;
}

// moe_trace_header_new, refused (MOE_EINVAL, *out NULL) when a record cannot hold the slots.
static moe_status trace_header_checked(const moe_model *m, const Moe__Config *cfg,
                                       const moe_trace_probe *p, int W, const char *what,
                                       Moe__TraceHeader **out) {
    Moe__TraceHeader *h = moe_trace_header_new(m, cfg, p, W);
    *out = NULL;
    if (h->slots > 32) { // the record's dropped mask has 32 bits
        moe_status st = moe_set_error(MOE_EINVAL,
                                      "%s: a routing record holds at most 32 expert slots; %s "
                                      "with %d experts needs %d",
                                      what, h->strategy, m->E, h->slots);
        protobuf_c_message_free_unpacked(&h->base, NULL);
        return st;
    }
    *out = h;
    return MOE_OK;
}

// Packs this rank's records of the last forward (local tokens T in (seq, pos) order, then layer)
// into w: the trace's word layout, seq numbers from first_seq.
static void trace_pack_local(const moe_model *m, const moe_trace *t, const int32_t *tokens,
                             int64_t first_seq, uint32_t *w) {
    const int S = t->slots, words = moe_trace_record_words(S);
    const int ec = !strcmp(t->h->strategy, "expert_choice");
    const int64_t Sq = m->S;
    for (int64_t tk = 0; tk < m->T; tk++) {
        const int64_t b = tk / Sq, pos = tk % Sq;
        for (int l = 0; l < m->n_moe; l++, w += words) {
            const moe_route_plan *pl = moe_model_route_plan(m, l);
            memset(w, 0, sizeof *w * (size_t)words);
            w[0] = (uint32_t)(first_seq + b), w[1] = (uint32_t)pos;
            w[2] = (uint32_t)tokens[b * (Sq + 1) + pos], w[3] = (uint32_t)l;
            int32_t *ex = (int32_t *)(w + 4);
            float *wt = (float *)(w + 4 + S);
            for (int j = 0; j < S; j++) ex[j] = -1;
            if (!ec) {
                for (int j = 0; j < S; j++) {
                    ex[j] = pl->sel_expert[tk * pl->K + j];
                    wt[j] = pl->sel_weight[tk * pl->K + j];
                    if (pl->sel_row[tk * pl->K + j] < 0) w[4 + 2 * S] |= 1u << j;
                }
                continue;
            }
            int n = 0; // expert choice: the experts whose blocks hold one of this token's rows
            for (int64_t q = pl->tok_offsets[tk]; q < pl->tok_offsets[tk + 1] && n < S; q++) {
                const int64_t r = pl->tok_rows[q];
                int e = 0;
                while (e + 1 < pl->E && pl->offsets[e + 1] <= r) e++;
                ex[n] = e, wt[n++] = pl->row_weight[r];
            }
        }
    }
}

// Gathers every rank's packed words of one batch to rank 0 and unpacks them at record `at`.
static moe_status trace_gather(const moe_comm *c, moe_trace *t, const uint32_t *local,
                               int64_t n_words, uint32_t *all, int64_t all_cap, int64_t at,
                               int rank, int W) {
    const uint32_t *src = local;
    int64_t got = n_words;
    if (W > 1) {
        // Floats as carriers of 32-bit words: MPI copies them bit for bit (one machine's format).
        moe_status st =
            moe_comm_gatherv_f32(c, MOE_COMM_WORLD, (const float *)local, n_words,
                                 rank == 0 ? (float *)all : NULL, rank == 0 ? all_cap : 0, NULL);
        if (st) return st;
        src = all, got = n_words * W;
    }
    if (rank != 0) return MOE_OK;
    const int words = moe_trace_record_words(t->slots);
    for (int64_t i = 0; i < got / words; i++) moe_trace_unpack_record(t, at + i, src + i * words);
    return MOE_OK;
}

// Probe hash over the records' (seq, pos, token) of MoE layer 0.
static uint64_t trace_probe_hash(const moe_trace *t) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (int64_t i = 0; i < t->n; i++) {
        if (t->layer[i] != 0) continue;
        uint32_t v[3] = {t->seq[i], t->pos[i], t->token[i]};
        const unsigned char *b = (const unsigned char *)v;
        for (size_t k = 0; k < sizeof v; k++) h = (h ^ b[k]) * 0x100000001b3ull;
    }
    return h;
}

static moe_status trace_write_file(moe_trace *t, const char *path) {
    t->h->has_probe_hash = 1, t->h->probe_hash = trace_probe_hash(t);
    char dir[MOE_PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *sl = strrchr(dir, '/');
    if (sl && sl != dir) {
        *sl = 0;
        if (moe_mkdir_p(dir) != 0)
            return moe_set_error(MOE_EIO, "cannot create the directory %s for trace %s", dir, path);
    }
    return moe_trace_write(t, path);
}

moe_status moe_trace_capture(moe_model *m, const moe_data *d, const moe_comm *c,
                             const Moe__Config *cfg, const moe_trace_probe *p, int32_t *tokens,
                             const char *path) {
    const int rank = m->lay.world_rank, W = m->lay.world;
    if (m->n_moe == 0 || p->batches < 1)
        return moe_set_error(MOE_EINVAL,
                             "a routing trace needs MoE layers (model.n_experts > 0) and at least "
                             "one probe batch (got %d)",
                             p->batches);
    Moe__TraceHeader *h = NULL;
    moe_status st0 = trace_header_checked(m, cfg, p, W, "a routing trace", &h);
    if (st0) return st0;
    moe_trace *t = moe_trace_alloc(h);
    const int words = moe_trace_record_words(t->slots);
    const int64_t B = cfg->train->global_batch, n_loc = B / W; // this rank's sequences per batch
    MOE_ASSERT(B % W == 0 && m->Bl >= 1 && n_loc % m->Bl == 0);
    const int64_t seq_words = m->S * m->n_moe * words, n_words = n_loc * seq_words;
    const int64_t all_cap = rank == 0 ? n_words * W : 0;
    uint32_t *local = moe_xcalloc((size_t)n_words + 1, sizeof *local);
    uint32_t *all = rank == 0 ? moe_xcalloc((size_t)all_cap + 1, sizeof *all) : NULL;
    moe_status st = MOE_OK;
    for (int j = 0; j < p->batches && !st; j++) {
        for (int64_t s0 = 0; s0 < n_loc && !st; s0 += m->Bl) { // m->Bl sequences per forward
            const int64_t first = (int64_t)rank * n_loc + s0;
            moe_data_val_batch(d, j, B, first, m->Bl, tokens);
            moe_model_loss l;
            st = moe_model_forward(m, tokens, 0, 0, 0, first * m->S, &l);
            if (!st) trace_pack_local(m, t, tokens, (int64_t)j * B + first, local + s0 * seq_words);
            st = moe_comm_agree(c, st);
        }
        if (!st)
            st = trace_gather(c, t, local, n_words, all, all_cap, j * B * m->S * m->n_moe, rank, W);
    }
    if (!st && rank == 0) st = trace_write_file(t, path);
    free(local);
    free(all);
    moe_trace_free(t);
    return moe_comm_agree(c, st);
}

moe_status moe_trace_train_step(moe_model *m, const moe_data *d, const moe_comm *c,
                                const Moe__Config *cfg, int64_t step, int32_t *tokens) {
    if (!moe_trace_due(cfg->train, step)) return MOE_OK;
    if (moe_data_val_tokens(d) == 0) {
        moe_comm_printf(c, "moe train: note: step %lld: no validation split, no routing trace\n",
                        (long long)step);
        return MOE_OK;
    }
    if (m->n_moe == 0) { // a dense model (a sweep's dense baseline) has no routing to record
        moe_comm_printf(c, "moe train: note: step %lld: no MoE layers, no routing trace\n",
                        (long long)step);
        return MOE_OK;
    }
    char path[MOE_PATH_MAX + 64];
    moe_trace_step_path(path, sizeof path, cfg->out_dir, step);
    moe_trace_probe p = {.batches = cfg->train->trace_batches, .step = step, .checkpoint = NULL};
    moe_status st = moe_trace_capture(m, d, c, cfg, &p, tokens, path);
    if (!st) moe_comm_printf(c, "routing trace: %s\n", path);
    return st;
}

// ---------------------------------------------------------------- the routing log

void moe_trace_routing_path(char *buf, size_t cap, const char *dir, int64_t step) {
    snprintf(buf, cap, "%s/step-%lld.trace", dir, (long long)step);
}

moe_status moe_trace_record_step(const moe_model *m, const moe_comm *c, const Moe__Config *cfg,
                                 int64_t step, const int32_t *tokens) {
    if (!cfg->train->record_routing || m->n_moe == 0) return MOE_OK;
    const int rank = m->lay.world_rank, W = m->lay.world;
    moe_trace_probe p = {.batches = 1, .step = step - 1, .checkpoint = NULL};
    Moe__TraceHeader *h = NULL;
    moe_status st0 = trace_header_checked(m, cfg, &p, W, "train.record_routing", &h);
    if (st0) return moe_comm_agree(c, st0);
    char probe[MOE_PATH_MAX + 160];
    const char *data =
        cfg->data && cfg->data->path && cfg->data->path[0] ? cfg->data->path : "the default corpus";
    snprintf(probe, sizeof probe, "training batch of step %lld (%d sequences of %d tokens) of %s",
             (long long)step, (int)cfg->train->global_batch, (int)m->S, data);
    free(h->probe);
    h->probe = moe_xstrdup(probe);
    moe_trace *t = moe_trace_alloc(h);
    const int64_t n_words = m->T * m->n_moe * moe_trace_record_words(t->slots);
    const int64_t all_cap = rank == 0 ? n_words * W : 0;
    uint32_t *local = moe_xcalloc((size_t)n_words + 1, sizeof *local);
    uint32_t *all = rank == 0 ? moe_xcalloc((size_t)all_cap + 1, sizeof *all) : NULL;
    trace_pack_local(m, t, tokens, (int64_t)rank * m->Bl, local);
    moe_status st = trace_gather(c, t, local, n_words, all, all_cap, 0, rank, W);
    char path[MOE_PATH_MAX + 64];
    char dir[MOE_PATH_MAX + 16];
    snprintf(dir, sizeof dir, "%s/routing", cfg->out_dir);
    moe_trace_routing_path(path, sizeof path, dir, step);
    if (!st && rank == 0) st = trace_write_file(t, path);
    free(local);
    free(all);
    moe_trace_free(t);
    return moe_comm_agree(c, st);
}
