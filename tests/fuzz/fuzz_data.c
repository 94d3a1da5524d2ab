// fuzz_data.c: the llm.c token-file header (trainer/data/data.c: moe_data_open on a u16_tokens
// shard — magic, version, token count against the file size, every token against vocab_size).
// Input: the file's bytes. An opened file also splits into train/validation and serves one
// training and one validation batch, whose bounds come from the header's count.
#include "data.h"
#include "fuzz-util.h"

static char *tok_path;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    tok_path = moe_fuzz_path("tokens.bin");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    moe_fuzz_write_file(tok_path, data, size);
    for (int v = 0; v < 2; v++) { // vocab below 2^16 (every token checked) and at it (none)
        const moe_data_params p = {
            .path = tok_path,
            .format = MOE__DATA_CONFIG__FORMAT__u16_tokens,
            .val_fraction = 0.25,
            .vocab_size = v ? 65536 : 50257,
            .seq_len = 4,
            .seed = 7,
        };
        moe_data *d = NULL;
        if (moe_data_open(&p, &d) != MOE_OK) continue;
        int32_t tokens[2 * 5];
        moe_data_train_batch(d, 3, 0, 2, tokens);
        if (moe_data_val_tokens(d) > 0) moe_data_val_batch(d, 1, 2, 0, 2, tokens);
        for (int i = 0; i < 2 * 5; i++) MOE_ASSERT(tokens[i] >= 0 && tokens[i] < p.vocab_size);
        moe_data_free(d);
    }
    return 0;
}
