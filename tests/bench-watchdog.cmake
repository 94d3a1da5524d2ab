# bench-watchdog: `moe bench step --watchdog` (bench/bench-step-watchdog.c) at np 2 on a few steps —
# both figures (watchdog off and on) and the overhead line are printed, in text and JSON, finite and
# positive; at np 1 it refuses with exit 2. Format and sanity only, never speed. Label `watchdog`.
add_test(NAME test_bench_watchdog_np2 COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_bench_watchdog.sh)
set_tests_properties(test_bench_watchdog_np2 PROPERTIES
  LABELS "mpi;np2;watchdog"
  ENVIRONMENT "MOE_BIN=$<TARGET_FILE:moe>;MPIEXEC=${MPIEXEC_EXECUTABLE};${MOE_TEST_ENV}"
  PROCESSORS 2
  TIMEOUT 300)
