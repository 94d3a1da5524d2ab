// model-table.c: the parameter table's builder (model-impl.h) — a tensor or a family block of
// floats reserved at 64-byte boundaries, with its table entry. Apart from model-build.c so that
// the base table (model-build.c) and the adapters' (lora.c) share it without a file-level cycle.
#include "model-impl.h"

#include <stdio.h>
#include <string.h>

// Reserves n floats; adds a table entry (unless name is NULL) covering them.
int64_t moe_table_add(moe_builder *b, const char *name, int layer, int expert, int group,
                      int decay, int64_t d0, int64_t d1) {
    moe_model *m = b->m;
    int64_t n = d0 * (d1 > 0 ? d1 : 1), off = b->cur;
    b->cur += moe_round16(n);
    MOE_ASSERT(m->n_tensors < b->cap);
    moe_model_tensor *t = &m->tensors[m->n_tensors++];
    memset(t, 0, sizeof *t);
    if (layer >= 0)
        snprintf(t->name, sizeof t->name, "layers.%d.%s", layer, name);
    else
        snprintf(t->name, sizeof t->name, "%s", name);
    t->layer = layer, t->expert = expert, t->group = group, t->decay = decay;
    t->ndim = d1 > 0 ? 2 : 1;
    t->shape[0] = d0, t->shape[1] = d1 > 0 ? d1 : 0;
    t->offset = off, t->n = n;
    return off;
}

// A family tensor (count, d0, d1) in one contiguous block, one table entry per member: routed
// experts "experts.<name>" keyed by global expert id, or shared experts "shared.<s>.<name>".
int64_t moe_table_add_family(moe_builder *b, const char *name, int layer, int count, int shared,
                             int group, int decay, int64_t d0, int64_t d1) {
    moe_model *m = b->m;
    const int64_t n = d0 * (d1 > 0 ? d1 : 1), base = b->cur;
    for (int j = 0; j < count; j++) {
        char nm[40];
        if (shared)
            snprintf(nm, sizeof nm, "shared.%d.%s", j, name);
        else
            snprintf(nm, sizeof nm, "experts.%s", name);
        moe_table_add(b, nm, layer, shared ? -1 : m->first_expert + j, group, decay, d0, d1);
        m->tensors[m->n_tensors - 1].offset = base + j * n; // contiguous (count, ...) block
    }
    b->cur = base + moe_round16(n * count);
    return base;
}
