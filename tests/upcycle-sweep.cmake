# upcycle-sweep.cmake: train.init_from (the config form of --init-from) and the sweep that
# compares upcycled, from-scratch and dense-continued training (issue 15, docs/upcycling.md):
# first-step loss equal to --init-from's (np 1, np 2 / EP 2), resume wins over init_from, bad
# paths exit 2, a three-point sweep with the real moe train at np 2 (init checkpoints recorded,
# a moved dense LATEST makes its run stale), examples/sweep-upcycle.json --dry-run.
add_test(NAME test_upcycle_sweep COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_upcycle_sweep.sh)
set_tests_properties(test_upcycle_sweep PROPERTIES LABELS "mpi;np2;sweep;upcycle;train"
  ENVIRONMENT "MOE_SRC=${CMAKE_SOURCE_DIR};MOE_BIN=$<TARGET_FILE:moe>;MPIRUN=${MPIEXEC_EXECUTABLE};${MOE_TEST_ENV}"
  TIMEOUT 300 PROCESSORS 2)
