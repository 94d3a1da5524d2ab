# comm suite: the exchange engine, groups and layout, collectives and gradient scaling (label comm).
moe_add_mpi_test(test_comm_exchange SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_comm_exchange.c
  NP 1 2 4 LABELS comm)
moe_add_mpi_test(test_comm_layout SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_comm_layout.c
  NP 1 2 4 LABELS comm)
moe_add_mpi_test(test_comm_grad SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_comm_grad.c
  NP 1 2 4 LABELS comm)
# The commands on a small shape: `moe topo` (a refused layout exits 2) and `moe bench a2a --json`.
foreach(np 1 2)
  add_test(NAME test_comm_topo_cli_np${np}
    COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${np} --allow-run-as-root --oversubscribe
            $<TARGET_FILE:moe> topo --ep ${np} --experts 8)
  set_tests_properties(test_comm_topo_cli_np${np} PROPERTIES LABELS "mpi;np${np};comm"
    ENVIRONMENT "${MOE_TEST_ENV}" TIMEOUT 120 PROCESSORS ${np}
    PASS_REGULAR_EXPRESSION "ep group 0:( [0-9])+.*edp group 0:")
  add_test(NAME test_comm_bench_a2a_np${np}
    COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${np} --allow-run-as-root --oversubscribe
            $<TARGET_FILE:moe> bench a2a --json --tokens 128 --dim 64 --iters 2 --dedup --chunks 2)
  set_tests_properties(test_comm_bench_a2a_np${np} PROPERTIES LABELS "mpi;np${np};comm"
    ENVIRONMENT "${MOE_TEST_ENV}" TIMEOUT 120 PROCESSORS ${np}
    PASS_REGULAR_EXPRESSION "\"ratio_to_raw\":[0-9]")
endforeach()
add_test(NAME test_comm_topo_refused_np2
  COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 --allow-run-as-root --oversubscribe
          $<TARGET_FILE:moe> topo --ep 3)
set_tests_properties(test_comm_topo_refused_np2 PROPERTIES LABELS "mpi;np2;comm"
  ENVIRONMENT "${MOE_TEST_ENV}" TIMEOUT 120 PROCESSORS 2
  PASS_REGULAR_EXPRESSION "expert-parallel size 3 does not divide the world size 2")
# moe_comm_agree: worst status and the failing rank's message on every rank.
moe_add_mpi_test(test_comm_agree SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_comm_agree.c
  NP 1 2 4 LABELS comm)
# bf16 payload conversion: hand-made patterns and a reference (no MPI).
moe_add_test(test_comm_bf16 SOURCES test_comm_bf16.c LABELS comm)
# Payload byte counters (intra/inter node, every exchange mode, fp32 and bf16) on known routing.
moe_add_mpi_test(test_comm_bytes SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_comm_bytes.c
  NP 1 2 4 LABELS comm)
