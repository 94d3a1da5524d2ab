# bench-step-phases: `moe bench step` at np 1 and 2 splits the step into phases (JSON "phases",
# the text table): all present, >= 0, disjoint (sum <= step); at np 2 dispatch + combine > 0.
# Format and sanity only, never speed.
foreach(np 1 2)
  add_test(NAME test_bench_step_phases_np${np}
    COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_bench_step_phases.sh)
  set_tests_properties(test_bench_step_phases_np${np} PROPERTIES
    LABELS "mpi;np${np};bench"
    ENVIRONMENT "MOE_BIN=$<TARGET_FILE:moe>;MPIEXEC=${MPIEXEC_EXECUTABLE};NP=${np};${MOE_TEST_ENV}"
    PROCESSORS ${np}
    TIMEOUT 300)
endforeach()
