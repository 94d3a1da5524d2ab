# bench-step-mem: `moe bench step --steps 1` at np 1 prints the step's O(total parameters) part —
# the triad reference, the optimizer's and gradient zeroing's GB/s and their % of the triad — in
# text and JSON, finite and positive (bench/bench-step-mem.c). Format and sanity only, never speed.
add_test(NAME test_bench_step_mem_np1 COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_bench_step_mem.sh)
set_tests_properties(test_bench_step_mem_np1 PROPERTIES
  LABELS "mpi;np1;bench"
  ENVIRONMENT "MOE_BIN=$<TARGET_FILE:moe>;MPIEXEC=${MPIEXEC_EXECUTABLE};${MOE_TEST_ENV}"
  PROCESSORS 1
  TIMEOUT 300)
