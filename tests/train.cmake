# tests/train.cmake: `moe train` end to end (label `train`). test_train_model: accounting equals
# allocation, layout-independent init, whole-model gradient check (no MPI launch). The scenario
# tests run mpirun several times each through tests/test_train_runs.py (label `nosan` on the long
# multi-run ones, which the sanitizer pass skips).
moe_add_test(test_train_model SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_train_model.c LABELS train
  ARGS ${CMAKE_SOURCE_DIR}/examples/tiny-moe.json)
add_executable(test_train_ckcmp ${CMAKE_CURRENT_SOURCE_DIR}/test_train_ckcmp.c)
target_link_libraries(test_train_ckcmp PRIVATE libmoe)
# scenario:max ranks (labels np2/np4; the sanitizer pass runs the np2 ones not marked nosan)
foreach(entry layout:4 grouped:4 gradnorm:4 resume:2 reshard:4 preempt:2 nonfinite:2 errors:4 learn:2 robust:2
    metricslog:2 signals:2 inputs:1 straggler:2 rankload:4 scopes:4 lora:4)
  string(REPLACE ":" ";" _parts ${entry})
  list(GET _parts 0 scenario)
  list(GET _parts 1 np)
  add_test(NAME test_train_${scenario}
    COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_train_runs.py ${scenario}
            --moe $<TARGET_FILE:moe> --ckcmp $<TARGET_FILE:test_train_ckcmp>
            --mpirun ${MPIEXEC_EXECUTABLE} --work ${CMAKE_CURRENT_BINARY_DIR}/train-runs)
  set(_labels "mpi;np${np};train")
  if(scenario MATCHES "^(layout|reshard|preempt|learn|errors|robust|signals)$")
    set(_labels "${_labels};nosan")
  endif()
  set_tests_properties(test_train_${scenario} PROPERTIES LABELS "${_labels}"
    ENVIRONMENT "${MOE_TEST_ENV}" TIMEOUT 300 PROCESSORS ${np})
endforeach()
# Issue 12 defect 8: router.capacity_factor 1e4 / 1e308 accepted; the memory estimate counts the
# rows the MoE layer holds (capped at the token count), not the factor.
moe_add_test(test_capacity_estimate SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_capacity_estimate.c
  LABELS train)
# parallel.exchange = auto (issue 13): the trial, its record, the choice kept on resume, no trial
# where there is nothing to choose; fake nodes (MOE_TRAIN_TEST_NODE_SIZE) so EP spans nodes.
foreach(np 2 4)
  add_test(NAME test_train_xauto_np${np}
    COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_train_xauto.py --np ${np}
            --moe $<TARGET_FILE:moe> --ckcmp $<TARGET_FILE:test_train_ckcmp>
            --mpirun ${MPIEXEC_EXECUTABLE} --work ${CMAKE_CURRENT_BINARY_DIR}/train-runs)
  set_tests_properties(test_train_xauto_np${np} PROPERTIES LABELS "mpi;np${np};train;nosan"
    ENVIRONMENT "${MOE_TEST_ENV}" TIMEOUT 300 PROCESSORS ${np})
endforeach()
moe_add_test(test_exchange_auto SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_exchange_auto.c
  LABELS train)
# moe generate (issue 17): the sampling kernel against its definition, and end to end: the same
# text at np 1, np 2 and np 2 EP 2, greedy, the sliding window, refused arguments.
moe_add_test(test_sample SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_sample.c LABELS generate)
add_test(NAME test_generate COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_generate.sh)
set_tests_properties(test_generate PROPERTIES LABELS "mpi;np2;generate"
  ENVIRONMENT "MOE_BIN=$<TARGET_FILE:moe>;MPIRUN=${MPIEXEC_EXECUTABLE};${MOE_TEST_ENV}"
  TIMEOUT 300 PROCESSORS 2)
# Issue 17: moe train --dry-run, and the rough edges a new user met (test_train_ux.py).
foreach(scenario dryrun edges)
  add_test(NAME test_train_ux_${scenario}
    COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_train_ux.py ${scenario}
            --moe $<TARGET_FILE:moe> --ckcmp $<TARGET_FILE:test_train_ckcmp>
            --mpirun ${MPIEXEC_EXECUTABLE} --work ${CMAKE_CURRENT_BINARY_DIR}/train-runs)
  set_tests_properties(test_train_ux_${scenario} PROPERTIES LABELS "mpi;np2;train"
    ENVIRONMENT "${MOE_TEST_ENV}" TIMEOUT 300 PROCESSORS 2)
endforeach()
# Issue 17: moe routes CHECKPOINT --text — the same routes at np 1, 2 and EP 2, refusals.
add_test(NAME test_routes_text COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_routes_text.sh)
set_tests_properties(test_routes_text PROPERTIES LABELS "mpi;np2;generate"
  ENVIRONMENT "MOE_BIN=$<TARGET_FILE:moe>;MPIEXEC=${MPIEXEC_EXECUTABLE};${MOE_TEST_ENV}"
  PROCESSORS 2 TIMEOUT 400)
# Upcycling (trainer/upcycle.h, docs/upcycling.md): function preservation and the slices in one
# process; the command end to end (eval of the dense and upcycled checkpoints at np 1 and np 2,
# EP 2; training on; refusals) in test_upcycle_cli.sh.
moe_add_test(test_upcycle SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_upcycle.c LABELS train)
add_test(NAME test_upcycle_cli COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_upcycle_cli.sh)
set_tests_properties(test_upcycle_cli PROPERTIES LABELS "mpi;np2;train"
  ENVIRONMENT "MOE_BIN=$<TARGET_FILE:moe>;MPIRUN=${MPIEXEC_EXECUTABLE};${MOE_TEST_ENV}"
  TIMEOUT 300 PROCESSORS 2)
