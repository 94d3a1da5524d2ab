// fuzz_trace.c: the routing trace reader (trainer/trace/trace.c: moe_trace_read — magic, header
// length, the protobuf header and its consistency, record count against the file size, every
// record's expert ids, order and dropped bits). Input: the file's bytes. A trace the reader
// accepts is analysed (routes/routes.h) and compared with itself: every statistic must be finite
// and a trace must be stable against itself.
#include "fuzz-util.h"
#include "routes.h"

#include <math.h>

static char *trace_path;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    trace_path = moe_fuzz_path("t.trace");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    moe_fuzz_write_file(trace_path, data, size);
    moe_trace *t = NULL;
    moe_status st = moe_trace_read(trace_path, &t);
    MOE_ASSERT(st == MOE_OK || st == MOE_ECORRUPT); // never an I/O error on a readable file
    if (st) return 0;
    moe_routes_stats *s = moe_routes_analyse(t);
    for (int l = 0; l < s->n_moe; l++)
        MOE_ASSERT(isfinite(s->layers[l].entropy) && isfinite(s->layers[l].mi) &&
                   s->layers[l].mi >= 0);
    double *ch = moe_xcalloc((size_t)t->n_moe, sizeof *ch),
           *jc = moe_xcalloc((size_t)t->n_moe, sizeof *jc);
    MOE_ASSERT(moe_routes_stability(t, "a", t, "a", ch, jc) == MOE_OK);
    for (int l = 0; l < t->n_moe; l++) MOE_ASSERT(ch[l] == 0 && jc[l] == 1);
    free(ch), free(jc);
    moe_routes_stats_free(s);
    moe_trace_free(t);
    return 0;
}
