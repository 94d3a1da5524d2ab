# bench-experts: `moe bench experts` prints each expert count's times with the small-row kernels
# and with cblas, the speedup and the growth over the first count, in text and JSON, consistent;
# bad lists refused (bench/bench-experts.c). Format and consistency only, never speed.
add_test(NAME test_bench_experts COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_bench_experts.sh)
set_tests_properties(test_bench_experts PROPERTIES
  LABELS "bench"
  ENVIRONMENT "MOE_BIN=$<TARGET_FILE:moe>;${MOE_TEST_ENV}"
  TIMEOUT 300)
