# hf suite: safetensors read and written, bf16/f16 conversions (hf/hf.h). Label `hf`.
moe_add_test(test_safetensors SOURCES test_safetensors.c LABELS hf)
target_compile_definitions(test_safetensors PRIVATE MOE_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
