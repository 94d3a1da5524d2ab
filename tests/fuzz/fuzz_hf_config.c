// fuzz_hf_config.c: the Hugging Face config.json reader (params/hf-config.c). Input: the file's
// bytes, written to a scratch file (the reader takes a path). Runs the detection, the plain import
// (with its list of ignored fields) and the path `moe params` takes (detect, import, validate),
// then the parameter count of an imported model, whose products come straight from the file.
#include "fuzz-util.h"
#include "params.h"

static char *hf_path;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    hf_path = moe_fuzz_path("config.json");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    moe_fuzz_write_file(hf_path, data, size);
    int is_hf = 0;
    (void)moe_hf_config_detect(hf_path, &is_hf);
    Moe__Config *cfg = NULL;
    moe_hf_info info;
    if (moe_hf_config_load(hf_path, &cfg, &info) == MOE_OK) {
        moe_config_free(cfg);
        moe_hf_info_free(&info);
    }
    cfg = NULL;
    if (moe_model_config_load(hf_path, NULL, 0, &cfg, &info, &is_hf) == MOE_OK) {
        moe_params_report pr;
        (void)moe_params_count(cfg, 1, 0, &pr);
        moe_config_free(cfg);
        moe_hf_info_free(&info);
    }
    return 0;
}
