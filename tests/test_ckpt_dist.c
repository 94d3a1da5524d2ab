// test_ckpt_dist.c: distributed checkpoints under mpirun. Dense tensors are written by world rank
// 0, expert tensors (param, adam_m, adam_v) by EDP rank 0 of their holders, as the trainer does.
//   (no args)       for W ranks: write at EP = W and at EP = 1, load back at every valid EP
//                   (a re-index) and compare bitwise with the generator; then corrupt one file
//                   and check that every rank gets the same MOE_ECORRUPT naming it.
//   write DIR EP    write step 100 into run dir DIR at expert-parallel size EP
//   read DIR EP     load DIR's latest at EP and compare bitwise (cross-np resharding)
#include "checkpoint.h"
#include "config.h"

#include <string.h>
#include <unistd.h>

enum { L = 2, E = 8, D = 6, F = 4, V = 12 };
static const char *const g_kinds[3] = {"param", "adam_m", "adam_v"};
static int g_rank;

static float gen(int kind, int layer, int expert, int i) {
    uint32_t h = (uint32_t)(kind * 7919 + (layer + 1) * 104729 + (expert + 2) * 1299709 + i * 31);
    h ^= h >> 13;
    h *= 0x5bd1e995u;
    h ^= h >> 15;
    return (float)(h % 100000) / 1000.0f - 50.0f;
}

typedef struct {
    moe_ckpt *ck;
    float *dense;   // (3, V*D + L*D): embed and ln per kind
    float *experts; // (3, L, El, D*F)
    int El;
} holder;

// Registers what a rank holds at expert-parallel size ep; `fill` 1 = generator values, 0 = NaN-ish sentinel.
static void hold(holder *h, const moe_comm *c, int fill) {
    moe_comm_info in = moe_comm_get_info(c);
    h->El = in.n_local_experts;
    const int nd = V * D + L * D;
    h->dense = moe_xcalloc(3 * (size_t)nd, sizeof(float));
    h->experts = moe_xcalloc(3 * (size_t)L * h->El * D * F, sizeof(float));
    h->ck = moe_ckpt_create();
    for (int k = 0; k < 3; k++) {
        float *emb = h->dense + k * nd;
        moe_ckpt_tensor t = {"embed", g_kinds[k], -1, -1, 2, {V, D}, emb, in.world_rank == 0};
        moe_ckpt_add(h->ck, &t);
        for (int i = 0; i < V * D; i++) emb[i] = fill ? gen(k, -1, -1, i) : -1e30f;
        for (int l = 0; l < L; l++) {
            float *ln = emb + V * D + l * D;
            moe_ckpt_tensor n = {"ln", g_kinds[k], l, -1, 1, {D}, ln, in.world_rank == 0};
            moe_ckpt_add(h->ck, &n);
            for (int i = 0; i < D; i++) ln[i] = fill ? gen(k, l, -1, i) : -1e30f;
            for (int j = 0; j < h->El; j++) {
                int g = in.first_expert + j;
                float *w = h->experts + (((size_t)k * L + l) * h->El + j) * D * F;
                moe_ckpt_tensor x = {"experts.w1",    g_kinds[k], l, g, 2, {D, F}, w,
                                     in.edp_rank == 0};
                moe_ckpt_add(h->ck, &x);
                for (int i = 0; i < D * F; i++) w[i] = fill ? gen(k, l, g, i) : -1e30f;
            }
        }
    }
}

static void unhold(holder *h) {
    moe_ckpt_free(h->ck);
    free(h->dense);
    free(h->experts);
}

// Mismatches against the generator on this rank.
static int compare(const holder *h, const moe_comm *c) {
    moe_comm_info in = moe_comm_get_info(c);
    const int nd = V * D + L * D;
    int bad = 0;
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < V * D; i++) bad += h->dense[k * nd + i] != gen(k, -1, -1, i);
        for (int l = 0; l < L; l++) {
            for (int i = 0; i < D; i++)
                bad += h->dense[k * nd + V * D + l * D + i] != gen(k, l, -1, i);
            for (int j = 0; j < h->El; j++)
                for (int i = 0; i < D * F; i++) {
                    float got = h->experts[(((size_t)k * L + l) * h->El + j) * D * F + i];
                    float want = gen(k, l, in.first_expert + j, i);
                    if (got != want && bad++ < 3)
                        fprintf(stderr,
                                "[rank %d] ep %d: %s layer %d expert %d [%d]: got %g expected %g\n",
                                g_rank, in.ep_size, g_kinds[k], l, in.first_expert + j, i, got,
                                want);
                }
        }
    }
    return bad;
}

static moe_comm *make(int ep) {
    moe_comm *c;
    moe_comm_params p = {ep, E, 0, 1};
    if (moe_comm_create(&p, &c) != MOE_OK) {
        fprintf(stderr, "[rank %d] %s\n", g_rank, moe_last_error());
        moe_comm_abort(1);
    }
    return c;
}

static Moe__Config *config(void) {
    Moe__Config *cfg = moe_config_new_default();
    cfg->model->has_n_experts = 1;
    cfg->model->n_experts = E;
    cfg->model->has_n_layers = 1;
    cfg->model->n_layers = L;
    return cfg;
}

static int do_write(const char *run, int ep, int64_t step) {
    moe_comm *c = make(ep);
    holder h;
    hold(&h, c, 1);
    Moe__Config *cfg = config();
    moe_comm_info in = moe_comm_get_info(c);
    moe_ckpt_state st = {step, 42, (uint64_t)step, in.world_size, ep, "", "", 0};
    moe_status rc = moe_ckpt_save(h.ck, c, run, cfg, &st, 0, NULL, 0);
    if (rc != MOE_OK)
        fprintf(stderr, "[rank %d] save at ep %d: %s\n", g_rank, ep, moe_last_error());
    moe_config_free(cfg);
    unhold(&h);
    moe_comm_free(c);
    return rc != MOE_OK;
}

static int do_read(const char *run, int ep, int64_t step) {
    moe_comm *c = make(ep);
    holder h;
    hold(&h, c, 0);
    Moe__Config *cfg = config();
    moe_ckpt_state st;
    int bad = 0;
    moe_status rc = moe_ckpt_load(h.ck, c, run, cfg, &st);
    if (rc != MOE_OK) {
        fprintf(stderr, "[rank %d] load at ep %d: %s\n", g_rank, ep, moe_last_error());
        bad = 1;
    } else {
        bad = compare(&h, c) + (st.step != step);
    }
    moe_config_free(cfg);
    unhold(&h);
    moe_comm_free(c);
    return bad;
}

static int64_t sum(int64_t v) {
    moe_comm *c = make(1);
    moe_comm_allreduce_i64(c, MOE_COMM_WORLD, &v, 1, MOE_COMM_SUM);
    moe_comm_free(c);
    return v;
}

int main(int argc, char **argv) {
    if (moe_comm_init(&argc, &argv) != MOE_OK) return 1;
    moe_comm *w = make(1);
    g_rank = moe_comm_rank(w, MOE_COMM_WORLD);
    const int W = moe_comm_size(w, MOE_COMM_WORLD);
    int64_t bad = 0;
    if (argc == 4 && (!strcmp(argv[1], "write") || !strcmp(argv[1], "read"))) {
        int ep = atoi(argv[3]);
        bad = !strcmp(argv[1], "write") ? do_write(argv[2], ep, 100) : do_read(argv[2], ep, 100);
        bad = sum(bad);
        if (g_rank == 0)
            printf("%s %s at W=%d ep=%d: %s\n", argv[1], argv[2], W, ep, bad ? "FAILED" : "ok");
    } else {
        char run[256] = "/tmp/moe-test-ckpt-dist-XXXXXX";
        if (g_rank == 0) MOE_ASSERT(mkdtemp(run));
        moe_comm_bcast(w, MOE_COMM_WORLD, run, sizeof run);
        int64_t step = 1;
        for (int ew = W; ew >= 1; ew = ew == 1 ? 0 : 1) { // write at EP = W, then at EP = 1
            bad += do_write(run, ew, step);
            for (int er = 1; er <= W; er *= 2)
                if (W % er == 0 && E % er == 0) {
                    int b = do_read(run, er, step);
                    if (b)
                        fprintf(stderr,
                                "[rank %d] written at ep %d, read at ep %d: %d mismatches\n",
                                g_rank, ew, er, b);
                    bad += b;
                }
            step++;
        }
        // Corrupt the last file (verified by rank (n_files-1) % W): every rank must refuse alike.
        moe_comm_barrier(w, MOE_COMM_WORLD);
        char dir[4096], fname[256] = "";
        if (g_rank == 0) {
            Moe__CheckpointManifest *m;
            MOE_ASSERT(moe_ckpt_resolve(run, dir, sizeof dir) == MOE_OK);
            MOE_ASSERT(moe_ckpt_read_manifest(dir, &m) == MOE_OK);
            snprintf(fname, sizeof fname, "%s", m->files[m->n_files - 1]->name);
            char path[4400];
            snprintf(path, sizeof path, "%s/%s", dir, fname);
            FILE *f = fopen(path, "r+b");
            MOE_ASSERT(f);
            fseek(f, 5, SEEK_SET);
            int ch = fgetc(f);
            fseek(f, 5, SEEK_SET);
            fputc(ch ^ 0x40, f);
            fclose(f);
            moe__checkpoint_manifest__free_unpacked(m, NULL);
        }
        moe_comm_bcast(w, MOE_COMM_WORLD, fname, sizeof fname);
        {
            moe_comm *c = make(W);
            holder h;
            hold(&h, c, 0);
            moe_status rc = moe_ckpt_load(h.ck, c, run, NULL, NULL);
            int ok = rc == MOE_ECORRUPT && strstr(moe_last_error(), fname) &&
                     strstr(moe_last_error(), "step_00000001") &&
                     strstr(moe_last_error(), "CRC32C");
            holder s;
            hold(&s, c, 0);
            ok = ok && !memcmp(h.dense, s.dense, 3 * (V * D + L * D) * sizeof(float)) &&
                 !memcmp(h.experts, s.experts, 3 * (size_t)L * h.El * D * F * sizeof(float));
            if (!ok) {
                fprintf(stderr, "[rank %d] corrupt %s: got %s '%s' (or tensors modified)\n", g_rank,
                        fname, moe_status_str(rc), moe_last_error());
                bad++;
            }
            unhold(&s);
            unhold(&h);
            moe_comm_free(c);
        }
        bad = sum(bad);
        if (g_rank == 0) {
            char cmd[400];
            snprintf(cmd, sizeof cmd, "rm -rf '%s'", run);
            if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", run);
            printf("test_ckpt_dist (W=%d): %s\n", W,
                   bad ? "FAILED" : "all layouts load bitwise; corruption refused on every rank");
        }
    }
    moe_comm_free(w);
    moe_comm_finalize();
    return bad ? 1 : 0;
}
