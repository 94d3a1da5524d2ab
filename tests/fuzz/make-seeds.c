// make-seeds.c: the binary seeds of the fuzz corpus (tests/fuzz/make-corpus.sh runs it) — manifests
// of the tiny checkpoint fuzz_manifest.c verifies against (fuzz-util.h), and llm.c token shards.
// Written by the production writers (moe_ckpt_save, moe_data_write_u16), so a seed is what a real
// run leaves on disk; and routing traces (moe_trace_write). Usage: fuzz_make_seeds CORPUS_DIR
// (its manifest/, data/ and trace/ must exist).
#include "checkpoint-impl.h"
#include "data.h"
#include "fuzz-util.h"
#include "trace.h"

// A manifest seed: mode byte, then the manifest.pb bytes of dir.
static void seed_manifest(const char *out, int mode, const char *dir) {
    char p[MOE_PATH_MAX];
    snprintf(p, sizeof p, "%s/manifest.pb", dir);
    char *pb = NULL;
    size_t len = 0;
    MOE_ASSERT(moe_read_file(p, 0, &pb, &len) == MOE_OK);
    uint8_t *buf = moe_xcalloc(len + 1, 1);
    buf[0] = (uint8_t)mode;
    memcpy(buf + 1, pb, len);
    moe_fuzz_write_file(out, buf, len + 1);
    free(buf);
    free(pb);
}

// A routing trace seed (trace.h): 2 sequences of 4 tokens, 4 experts, 2 MoE layers, `slots`
// slots (2: token choice top-2 with a dropped pair; 4: expert choice, some slots empty).
static void seed_trace(const char *out, int slots) {
    Moe__TraceHeader *h = moe_xcalloc(1, sizeof *h);
    moe__trace_header__init(h);
    h->has_format_version = 1, h->format_version = MOE_TRACE_VERSION;
    h->has_n_experts = 1, h->n_experts = 4;
    h->has_top_k = 1, h->top_k = 2;
    h->has_slots = 1, h->slots = slots;
    h->strategy = moe_xstrdup(slots == 2 ? "token_choice" : "expert_choice");
    h->n_moe_layers = 2;
    h->moe_layers = moe_xcalloc(2, sizeof *h->moe_layers);
    h->moe_layers[0] = 1, h->moe_layers[1] = 2;
    h->has_n_tokens = 1, h->n_tokens = 8;
    h->has_n_sequences = 1, h->n_sequences = 2;
    h->has_seq_len = 1, h->seq_len = 4;
    h->has_n_records = 1, h->n_records = 16;
    h->has_record_bytes = 1, h->record_bytes = 4 * moe_trace_record_words(slots);
    h->probe = moe_xstrdup("fuzz seed");
    h->has_config_hash = 1, h->config_hash = moe_trace_shape_hash(h);
    moe_trace *t = moe_trace_alloc(h);
    for (int64_t i = 0; i < 16; i++) {
        t->seq[i] = (uint32_t)(i / 8), t->pos[i] = (uint32_t)(i / 2 % 4);
        t->token[i] = (uint32_t)(97 + i / 2), t->layer[i] = (uint32_t)(i % 2);
        for (int j = 0; j < slots && j < 2 + (int)(i % 2); j++)
            t->expert[i * slots + j] = (int32_t)((i + j) % 4), t->weight[i * slots + j] = 0.5f;
    }
    if (slots == 2) t->dropped[3] = 2u;
    MOE_ASSERT(moe_trace_write(t, out) == MOE_OK);
    moe_trace_free(t);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) { return (void)argc, (void)argv, 0; }
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return (void)data, (void)size, 0; }

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_make_seeds CORPUS_DIR\n");
        return 2;
    }
    char out[MOE_PATH_MAX], dir[MOE_PATH_MAX];
    // Manifests: the tiny checkpoint as written, with and without a config, each in both modes.
    moe_fuzz_ckpt t;
    moe_fuzz_ckpt_init(&t);
    moe_fuzz_ckpt_save(&t, moe_fuzz_dir(), 1, dir, sizeof dir);
    for (int mode = 0; mode < 2; mode++) {
        snprintf(out, sizeof out, "%s/manifest/tiny-%s.bin", argv[1], mode ? "fixcrc" : "raw");
        seed_manifest(out, mode, dir);
    }
    Moe__Config *cfg = t.cfg;
    t.cfg = NULL; // a checkpoint without a config (tools and tests save these)
    moe_fuzz_ckpt_save(&t, moe_fuzz_dir(), 2, dir, sizeof dir);
    t.cfg = cfg;
    snprintf(out, sizeof out, "%s/manifest/noconfig-fixcrc.bin", argv[1]);
    seed_manifest(out, 1, dir);
    moe_fuzz_ckpt_free(&t);
    // Token shards: a short and a longer valid one (every token < 50257), and one empty shard.
    uint16_t tok[64];
    for (int i = 0; i < 64; i++) tok[i] = (uint16_t)(i * 797 % 50257);
    const int64_t sizes[3] = {12, 64, 0};
    for (int k = 0; k < 3; k++) {
        snprintf(out, sizeof out, "%s/data/u16-%lld.bin", argv[1], (long long)sizes[k]);
        MOE_ASSERT(moe_data_write_u16(out, tok, sizes[k]) == MOE_OK);
    }
    // Routing traces: token choice and expert choice.
    for (int slots = 2; slots <= 4; slots += 2) {
        snprintf(out, sizeof out, "%s/trace/seed-%d-slots.trace", argv[1], slots);
        seed_trace(out, slots);
    }
    return 0;
}
