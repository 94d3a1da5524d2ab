// test_comm_agree.c: moe_comm_agree — every rank ends with the worst status and the message of the
// lowest rank that has it, as "rank R: <message>"; all OK leaves messages alone; NULL comm and a
// world of one return the status unchanged. Run at np 1, 2 and 4.
#include "comm.h"
#include "test-util.h"

#include <string.h>

static void expect(const char *what, moe_status got, moe_status want, const char *want_msg) {
    CHECK(got == want, "%s: expected status %d (%s), got %d (%s)", what, want, moe_status_str(want),
          got, moe_status_str(got));
    CHECK(!strcmp(moe_last_error(), want_msg), "%s: expected message '%s', got '%s'", what,
          want_msg, moe_last_error());
    if (got == want && !strcmp(moe_last_error(), want_msg))
        printf("[rank %d] ok   %s: %d '%.60s'\n", g_rank, what, got, moe_last_error());
}

int main(int argc, char **argv) {
    OK(moe_comm_init(&argc, &argv));
    moe_comm *c;
    moe_comm_params p = {1, 0, 0, 1};
    OK(moe_comm_create(&p, &c));
    const int W = moe_comm_size(c, MOE_COMM_WORLD), me = moe_comm_rank(c, MOE_COMM_WORLD);
    g_rank = me;
    char want[2048], mine[2048];

    // All OK: MOE_OK, every rank keeps its own (stale) message.
    snprintf(mine, sizeof mine, "stale message of rank %d", me);
    moe_set_error(MOE_OK, "%s", mine);
    expect("all ok", moe_comm_agree(c, MOE_OK), MOE_OK, mine);

    // NULL comm: the status and message unchanged, no MPI.
    snprintf(mine, sizeof mine, "local failure of rank %d", me);
    moe_set_error(MOE_EIO, "%s", mine);
    expect("NULL comm", moe_comm_agree(NULL, MOE_EIO), MOE_EIO, mine);

    if (W == 1) { // a world of one: unchanged too
        expect("world of one", moe_comm_agree(c, MOE_EIO), MOE_EIO, mine);
        moe_comm_free(c);
        moe_comm_finalize();
        return test_summary("test_comm_agree");
    }

    // One rank (the last) fails with a message: everyone gets it, named by rank.
    moe_status st = MOE_OK;
    moe_set_error(MOE_OK, "nothing wrong on rank %d", me);
    if (me == W - 1) st = moe_set_error(MOE_EIO, "out_dir /x/y: cannot write there (disk full)");
    snprintf(want, sizeof want, "rank %d: out_dir /x/y: cannot write there (disk full)", W - 1);
    expect("last rank fails", moe_comm_agree(c, st), MOE_EIO, want);

    // Two ranks fail with the same status: the lowest one's message wins.
    st = moe_set_error(MOE_OK, "ok");
    if (me == 1 || me == W - 1) st = moe_set_error(MOE_EINVAL, "bad input on rank %d", me);
    snprintf(want, sizeof want, "rank 1: bad input on rank 1");
    expect("two fail, same status", moe_comm_agree(c, st), MOE_EINVAL, want);

    // Different statuses: the worst (most negative) wins, with its rank's message, even when a
    // lower rank failed less badly.
    st = moe_set_error(MOE_OK, "ok");
    if (me == 0) st = moe_set_error(MOE_EINVAL, "mild on rank 0");
    if (me == W - 1) st = moe_set_error(MOE_ECORRUPT, "checkpoint CRC32C mismatch on rank %d", me);
    snprintf(want, sizeof want, "rank %d: checkpoint CRC32C mismatch on rank %d", W - 1, W - 1);
    expect("worst status wins", moe_comm_agree(c, st), MOE_ECORRUPT, want);

    // A message that already names its rank is not named twice; a long list of problems loses
    // whole lines, never half of one, and says how many: "... and N more".
    st = MOE_OK;
    if (me == 1) st = moe_set_error(MOE_EMPI, "rank 1: MPI_Alltoall failed (x.c:1): broken");
    expect("already prefixed", moe_comm_agree(c, st), MOE_EMPI,
           "rank 1: MPI_Alltoall failed (x.c:1): broken");
    enum { N_LINES = 80 };
    static char longmsg[N_LINES * 96];
    size_t u = 0;
    for (int i = 0; i < N_LINES; i++)
        u += (size_t)snprintf(longmsg + u, sizeof longmsg - u,
                              "%slora.targets[%d] = experts, "
                              "but the model has no such layer; remove it",
                              i ? "\n" : "", i);
    st = MOE_OK;
    if (me == W - 1) st = moe_set_error(MOE_EINVAL, "%s", longmsg);
    moe_status got = moe_comm_agree(c, st);
    const char *e = moe_last_error();
    snprintf(want, sizeof want, "rank %d: ", W - 1);
    const char *tail = strrchr(e, '\n'), *l = e + strlen(want);
    int kept = 0; // whole lines of longmsg, in order, up to the tail
    while (tail && l <= tail) {
        char line[96];
        snprintf(line, sizeof line,
                 "lora.targets[%d] = experts, but the model has no such layer; remove it\n", kept);
        if (strncmp(l, line, strlen(line))) break;
        l += strlen(line);
        kept++;
    }
    int more = -1;
    CHECK(got == MOE_EINVAL && !strncmp(e, want, strlen(want)) && strlen(e) < MOE_ERROR_MAX &&
              tail && l == tail + 1 && sscanf(tail, "\n... and %d more", &more) == 1 && kept > 0 &&
              kept + more == N_LINES,
          "long message: status %d, length %zu, %d whole lines then '%s' (expected %d lines in "
          "all, under %d bytes)",
          got, strlen(e), kept, tail ? tail + 1 : "(no tail)", N_LINES, MOE_ERROR_MAX);

    // And it still agrees on success afterwards.
    moe_set_error(MOE_OK, "after");
    expect("ok again", moe_comm_agree(c, MOE_OK), MOE_OK, "after");

    // Collective: every rank learns whether any rank failed a check.
    int64_t f = g_fail;
    OK(moe_comm_allreduce_i64(c, MOE_COMM_WORLD, &f, 1, MOE_COMM_SUM));
    if (f && !g_fail) g_fail = 1;
    moe_comm_free(c);
    moe_comm_finalize();
    if (me == 0) return test_summary("test_comm_agree");
    return g_fail ? 1 : 0;
}
