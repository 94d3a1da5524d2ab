# tests/trace.cmake: routing traces and their analysis (label `trace`; docs/routes.md).
# test_trace: the file format (round trip, every refusal of the reader, a failed write leaves
# nothing). test_routes: every statistic of routes.h against a naive reference and known answers.
moe_add_test(test_trace SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_trace.c LABELS trace)
moe_add_test(test_routes SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_routes.c LABELS trace)
# End to end through mpirun (docs/routes.md): e2e at np 2 (train with traces → moe routes, checked
# against the files parsed in Python → moe report's routing section; refusals), layout at np 4
# (moe eval --trace from one checkpoint at np 1, 2, 4: the same record bytes), replay at np 2
# (router.replay of a recorded run: exact reproduction, resume, np 1, another lr; refusals).
foreach(entry e2e:2 layout:4 replay:2)
  string(REPLACE ":" ";" _parts ${entry})
  list(GET _parts 0 scenario)
  list(GET _parts 1 np)
  add_test(NAME test_trace_${scenario}
    COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_trace_runs.py ${scenario}
            --moe $<TARGET_FILE:moe> --mpirun ${MPIEXEC_EXECUTABLE}
            --work ${CMAKE_CURRENT_BINARY_DIR}/trace-runs
            --ckcmp $<TARGET_FILE:test_train_ckcmp>)
  set_tests_properties(test_trace_${scenario} PROPERTIES LABELS "mpi;np${np};trace"
    ENVIRONMENT "${MOE_TEST_ENV}" TIMEOUT 300 PROCESSORS ${np})
endforeach()
