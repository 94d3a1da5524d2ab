# sweep.cmake: the `sweep` suite — `moe report` on synthetic run directories (figures recomputed,
# PNGs checked, the no-gnuplot path), `moe sweep` config errors and --dry-run, resume and failure
# handling with a stand-in launcher (tests/test_sweep_standin.sh in place of mpirun), and one end
# to end sweep with the real `moe train` at np 2 (label nosan as well: it trains two tiny models);
# stale runs (a changed point refused or rerun with --rerun-changed) and report overwrites.
moe_add_test(test_report SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_report.c LABELS sweep
  ARGS $<TARGET_FILE:moe>)

foreach(t cli resume stale e2e)
  add_test(NAME sweep_${t} COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_sweep_${t}.sh)
  set_tests_properties(sweep_${t} PROPERTIES
    LABELS "sweep"
    ENVIRONMENT "MOE_SRC=${CMAKE_SOURCE_DIR};MOE_BIN=$<TARGET_FILE:moe>;${MOE_TEST_ENV}"
    TIMEOUT 300)
endforeach()
set_tests_properties(sweep_e2e PROPERTIES LABELS "sweep;nosan" PROCESSORS 2)
# moe report on real runs (issue 17): the one-run report's PNGs and report.md, the config
# difference of two runs, the load/drops/heatmap plot labels.
add_test(NAME test_report_run COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_report_run.sh)
set_tests_properties(test_report_run PROPERTIES LABELS "sweep"
  ENVIRONMENT "MOE_BIN=$<TARGET_FILE:moe>;${MOE_TEST_ENV}" TIMEOUT 300)
# moe sweep as root (issue 17): the launches get Open MPI's run-as-root variables.
add_test(NAME sweep_root COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_sweep_root.sh)
set_tests_properties(sweep_root PROPERTIES LABELS "sweep"
  ENVIRONMENT "MOE_SRC=${CMAKE_SOURCE_DIR};MOE_BIN=$<TARGET_FILE:moe>;${MOE_TEST_ENV}" TIMEOUT 120)
