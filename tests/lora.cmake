# tests/lora.cmake: LoRA fine-tuning (issue 16, docs/lora.md; label `lora`). test_lora: counting
# against moe params, step 0 = base, adapter gradients by finite differences, frozen base after
# training (one process). test_lora_dist: expert adapters at np 1, 2, 4 against the one-rank model.
moe_add_test(test_lora SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_lora.c
  ${CMAKE_CURRENT_SOURCE_DIR}/test-noalloc.c LABELS lora)
moe_add_mpi_test(test_lora_dist SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_lora_dist.c
  NP 1 2 4 LABELS lora)
