// cmd-inspect.c: `moe inspect DIR` — prints a checkpoint's manifest (step, layout, config summary,
// tensors with shapes) and verifies every file's size and CRC32C. Local and serial: no MPI, so it
// runs on a login node; it reads every byte once.
#include "checkpoint.h"
#include "config.h"
#include "cli.h"
#include "moe-args.h"

#include <string.h>

static void moe_inspect_config(const Moe__Config *c) {
    if (!c) {
        printf("config:      (none in the manifest)\n");
        return;
    }
    Moe__Config *def = moe_config_new_default();
    const Moe__ModelConfig *m = c->model ? c->model : def->model;
    const Moe__TrainConfig *t = c->train ? c->train : def->train;
    printf("config:      name %s, out_dir %s\n", c->name ? c->name : "(unnamed)",
           c->out_dir ? c->out_dir : "(default)");
    printf("  model:     vocab %lld, d_model %lld, layers %d, heads %d (kv %d), experts %d top-%d "
           "(expert_d_ff %lld, shared %d), d_ff %lld\n",
           (long long)m->vocab_size, (long long)m->d_model, m->n_layers, m->n_heads,
           m->n_kv_heads ? m->n_kv_heads : m->n_heads, m->n_experts, m->top_k,
           (long long)m->expert_d_ff, m->n_shared_experts, (long long)m->d_ff);
    printf("  train:     global_batch %d, seq_len %d, steps %lld, lr %g, seed %llu\n",
           t->global_batch, t->seq_len, (long long)t->steps, t->lr, (unsigned long long)t->seed);
    if (c->lora && c->lora->rank > 0)
        printf("  lora:      rank %d, alpha %g, %zu target(s)%s%s (docs/lora.md)\n", c->lora->rank,
               c->lora->alpha, c->lora->n_targets ? c->lora->n_targets : 1,
               c->lora->train_router ? ", router trained" : "",
               c->lora->train_norms ? ", norms trained" : "");
    protobuf_c_message_free_unpacked(&def->base, NULL);
}

int moe_cmd_inspect(int argc, char **argv) {
    const char *where = NULL;
    int no_tensors = 0;
    const moe_arg_pos pos[] = {
        {"DIR", MOE_ARG_STRING, &where, 1, 1,
         "a checkpoint directory (.../checkpoints/step_00000100), a checkpoints\n"
         "directory or run directory (follows LATEST), or .../latest"},
    };
    const moe_arg_opt opts[] = {
        MOE_OPT_FLAG("--no-tensors", &no_tensors, "leave out the table of tensors"),
    };
    const moe_args_spec spec = {
        "moe inspect",
        "Prints the manifest (step, world, ep, config summary, tensors and shapes) and verifies\n"
        "every file (size and CRC32C).",
        pos,
        MOE_ARGS_N(pos),
        opts,
        MOE_ARGS_N(opts),
        "exit: 0 valid, 3 corrupt (the message names the file), 2 usage or no checkpoint there"};
    int pr = moe_args_parse(&spec, argc, argv);
    if (pr != MOE_ARGS_RUN) return pr;
    const int tensors = !no_tensors;
    char dir[MOE_PATH_MAX];
    moe_status st = moe_ckpt_resolve(where, dir, sizeof dir);
    if (st != MOE_OK) {
        fprintf(stderr, "moe inspect: %s\n", moe_last_error());
        return st == MOE_ECORRUPT ? MOE_EXIT_DATA : MOE_EXIT_USAGE;
    }
    Moe__CheckpointManifest *m = NULL;
    st = moe_ckpt_read_manifest(dir, &m);
    if (st != MOE_OK) {
        printf("checkpoint:  %s\nmanifest.pb: %s\nresult:      CORRUPT\n", dir, moe_last_error());
        fprintf(stderr, "moe inspect: checkpoint %s is corrupt: %s\n", dir, moe_last_error());
        return st == MOE_ECORRUPT ? MOE_EXIT_DATA : moe_exit_code(st);
    }
    printf("checkpoint:  %s\n", dir);
    if (moe_ckpt_manifest_note(m)) {
        printf("note:        %s\n", moe_ckpt_manifest_note(m));
        fprintf(stderr, "moe inspect: note: %s: %s\n", dir, moe_ckpt_manifest_note(m));
    }
    printf("step:        %lld (data cursor %llu, rng_state 0x%016llx)\n", (long long)m->step,
           (unsigned long long)m->data_cursor, (unsigned long long)m->rng_state);
    printf("layout:      world %d, ep %d\n", m->world_size, m->ep_size);
    // created_by names the format already ("moe (checkpoint format 1)"): say it once.
    char fmt[32];
    snprintf(fmt, sizeof fmt, "format %u", m->format_version);
    if (m->created_by && strstr(m->created_by, fmt))
        printf("written by:  %s\n", m->created_by);
    else
        printf("written by:  %s, %s\n", m->created_by ? m->created_by : "?", fmt);
    moe_inspect_config(m->config);
    if (m->base_checkpoint && m->base_checkpoint[0]) // a LoRA checkpoint: the frozen base's
        printf("base:        %s (manifest hash %016llx; the frozen tensors are read from it)\n",
               m->base_checkpoint, (unsigned long long)m->base_manifest_hash);
    uint64_t bytes = 0;
    size_t n_expert = 0;
    for (size_t i = 0; i < m->n_tensors; i++) {
        bytes += m->tensors[i]->bytes;
        n_expert += m->tensors[i]->expert >= 0;
    }
    printf("tensors:     %zu (%zu dense, %zu expert), %llu bytes\n", m->n_tensors,
           m->n_tensors - n_expert, n_expert, (unsigned long long)bytes);
    if (tensors) {
        printf("  %-32s %-11s %5s %6s %-20s %12s  %s\n", "name", "kind", "layer", "expert", "shape",
               "bytes", "file@offset");
        for (size_t i = 0; i < m->n_tensors; i++) {
            const Moe__TensorEntry *t = m->tensors[i];
            char shape[96] = "(";
            moe_list l; // one byte short, for the ")"
            moe_list_start(&l, shape, sizeof shape - 1, ", ");
            for (size_t k = 0; k < t->n_shape; k++)
                moe_list_add(&l, "%lld", (long long)t->shape[k]);
            moe_list_end(&l);
            shape[l.len] = ')', shape[l.len + 1] = '\0';
            printf("  %-32s %-11s %5d %6d %-20s %12llu  %s@%llu\n", t->name ? t->name : "?",
                   t->kind ? t->kind : "?", t->layer, t->expert, shape,
                   (unsigned long long)t->bytes, t->file ? t->file : "?",
                   (unsigned long long)t->offset);
        }
    }
    printf("files:       %zu\n", m->n_files);
    int bad = 0;
    for (size_t f = 0; f < m->n_files; f++) {
        const Moe__FileEntry *fe = m->files[f];
        moe_status fs = moe_ckpt_verify_file(dir, fe);
        printf("  %-24s %12llu bytes  crc32c 0x%08x  %s\n", fe->name ? fe->name : "?",
               (unsigned long long)fe->bytes, fe->crc32c, fs == MOE_OK ? "OK" : moe_last_error());
        if (fs != MOE_OK) {
            fprintf(stderr, "moe inspect: checkpoint %s is corrupt: %s\n", dir, moe_last_error());
            bad++;
        }
    }
    printf("result:      %s\n", bad ? "CORRUPT" : "OK (every file verified)");
    moe__checkpoint_manifest__free_unpacked(m, NULL);
    return bad ? MOE_EXIT_DATA : MOE_EXIT_OK;
}
