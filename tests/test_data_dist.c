// test_data_dist.c: under mpirun, every rank reads its slice [r·B/W, (r+1)·B/W) of each step's
// global batch from a shared u16 shard; gathered on rank 0 the slices must equal the world-1
// batch, and every sequence must equal the file's bytes (read with stdio, not the mmap) at its start.
#include "comm.h"
#include "data.h"

#include <string.h>
#include <unistd.h>

enum { N = 30000, S = 24, B = 16, STEPS = 12 };

int main(int argc, char **argv) {
    if (moe_comm_init(&argc, &argv) != MOE_OK) {
        fprintf(stderr, "%s\n", moe_last_error());
        return 1;
    }
    moe_comm *c;
    moe_comm_params cp = {1, 0, 0, 1};
    MOE_ASSERT(moe_comm_create(&cp, &c) == MOE_OK);
    const int W = moe_comm_size(c, MOE_COMM_WORLD), r = moe_comm_rank(c, MOE_COMM_WORLD);
    char dir[256] = "/tmp/moe-test-data-dist-XXXXXX", path[300];
    static uint16_t tok[N];
    for (int i = 0; i < N; i++) tok[i] = (uint16_t)((i * 2654435761u) >> 20) % 1000;
    if (r == 0) {
        MOE_ASSERT(mkdtemp(dir));
        snprintf(path, sizeof path, "%s/shard.bin", dir);
        MOE_ASSERT(moe_data_write_u16(path, tok, N) == MOE_OK);
    }
    MOE_ASSERT(moe_comm_bcast(c, MOE_COMM_WORLD, dir, sizeof dir) == MOE_OK);
    snprintf(path, sizeof path, "%s/shard.bin", dir);
    moe_data_params p = {path, NULL, MOE__DATA_CONFIG__FORMAT__u16_tokens, 0.1, 1000, S, 7};
    moe_data *d;
    moe_status st = moe_data_open(&p, &d);
    if (st != MOE_OK) {
        fprintf(stderr, "[rank %d] %s\n", r, moe_last_error());
        moe_comm_abort(1);
    }
    int fails = 0;
    const int Bl = B / W;
    static int32_t mine[B * (S + 1)], all[B * (S + 1)], ref[B * (S + 1)];
    int64_t counts[8];
    for (int step = 0; step < STEPS; step++) {
        for (int val = 0; val < 2; val++) {
            if (val)
                moe_data_val_batch(d, step, B, (int64_t)r * Bl, Bl, mine);
            else
                moe_data_train_batch(d, 1000 + step, (int64_t)r * Bl, Bl, mine);
            MOE_ASSERT(moe_comm_gatherv_f32(c, MOE_COMM_WORLD, (const float *)mine, Bl * (S + 1),
                                            r == 0 ? (float *)all : NULL, r == 0 ? B * (S + 1) : 0,
                                            counts) == MOE_OK);
            if (r != 0) continue;
            if (val)
                moe_data_val_batch(d, step, B, 0, B, ref);
            else
                moe_data_train_batch(d, 1000 + step, 0, B, ref);
            if (memcmp(all, ref, sizeof ref)) {
                fprintf(stderr,
                        "step %d (%s): the %d ranks' slices differ from the world-1 batch\n", step,
                        val ? "val" : "train", W);
                fails++;
            }
            // Oracle: the shard's tokens via stdio at the starts the API documents.
            FILE *f = fopen(path, "rb");
            MOE_ASSERT(f);
            const int64_t nt = moe_data_train_tokens(d), nw = moe_data_val_windows(d);
            for (int i = 0; i < B; i++) {
                int64_t s0 = val ? nt + (((int64_t)step * B + i) % nw) * S
                                 : moe_data_train_start(d, 1000 + step, i);
                uint16_t buf[S + 1];
                fseek(f, 1024 + 2 * s0, SEEK_SET);
                MOE_ASSERT(fread(buf, 2, S + 1, f) == S + 1);
                for (int t = 0; t <= S; t++)
                    if (all[i * (S + 1) + t] != buf[t]) {
                        if (fails < 10)
                            fprintf(stderr, "step %d seq %d pos %d: got %d, file has %d\n", step, i,
                                    t, all[i * (S + 1) + t], buf[t]);
                        fails++;
                    }
            }
            fclose(f);
        }
    }
    int64_t total = fails;
    MOE_ASSERT(moe_comm_allreduce_i64(c, MOE_COMM_WORLD, &total, 1, MOE_COMM_SUM) == MOE_OK);
    moe_data_free(d);
    moe_comm_barrier(c, MOE_COMM_WORLD);
    if (r == 0) {
        unlink(path);
        rmdir(dir);
        printf("test_data_dist (W=%d): %s\n", W,
               total ? "FAILED" : "slices concatenate to the world-1 batch");
    }
    moe_comm_free(c);
    moe_comm_finalize();
    return total ? 1 : 0;
}
