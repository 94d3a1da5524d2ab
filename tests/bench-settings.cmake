# bench-settings: the exchange settings side by side at np 2 (`moe bench step --settings`,
# `moe bench layer --ep --settings`, JSON): flat's speedup is exactly 1, every other default
# setting measured (> 0) or skipped with a reason, bf16 moves <= 0.55 x flat's payload bytes.
# Format and sanity only, never speed.
foreach(what step layer)
  add_test(NAME test_bench_settings_${what}_np2
    COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_bench_settings.sh)
  set_tests_properties(test_bench_settings_${what}_np2 PROPERTIES
    LABELS "mpi;np2;bench"
    ENVIRONMENT "MOE_BIN=$<TARGET_FILE:moe>;MPIEXEC=${MPIEXEC_EXECUTABLE};WHAT=${what};${MOE_TEST_ENV}"
    PROCESSORS 2
    TIMEOUT 300)
endforeach()
