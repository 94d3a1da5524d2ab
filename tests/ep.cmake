# tests/ep.cmake: the expert-parallel layer — layout invariance against the one-rank layer for
# every EP dividing the world, all routing strategies and exchange options; routing groups at one
# rank; `moe bench layer --ep` on a small shape. Label `ep`.
moe_add_mpi_test(test_ep_layer SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_ep_layer.c NP 1 2 4 LABELS ep)
moe_add_test(test_ep_groups SOURCES test_ep_groups.c LABELS ep)
foreach(np 1 2)
  add_test(NAME test_ep_bench_np${np}
    COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${np} --allow-run-as-root --oversubscribe
            $<TARGET_FILE:moe> bench layer --ep --json --tokens 256 --dim 64 --ffn 128 --iters 1)
  set_tests_properties(test_ep_bench_np${np} PROPERTIES LABELS "mpi;np${np};ep"
    ENVIRONMENT "${MOE_TEST_ENV}" TIMEOUT 120 PROCESSORS ${np}
    PASS_REGULAR_EXPRESSION "\"hidden_fraction\":-?[0-9]")
endforeach()
# No allocation in forward/backward (one rank: MPI's nonblocking collectives allocate themselves).
moe_add_mpi_test(test_ep_noalloc SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_ep_noalloc.c
  ${CMAKE_CURRENT_SOURCE_DIR}/test-noalloc.c NP 1 LABELS ep)
# Node-limited routing (router.node_limited) on fake nodes: equal to the fixed n_group of the
# nodes an EP group spans, refused where an EP group lies inside one node or nodes are unequal.
moe_add_mpi_test(test_node_limited SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_node_limited.c
  NP 1 2 4 LABELS ep)
# bf16 payloads with fake one-rank nodes: the counted inter-node bytes appear in the output.
add_test(NAME test_ep_bench_bf16_np2
  COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 --allow-run-as-root --oversubscribe
          $<TARGET_FILE:moe> bench layer --ep --json --tokens 256 --dim 64 --ffn 128 --iters 1
          --bf16 --node-size 1)
set_tests_properties(test_ep_bench_bf16_np2 PROPERTIES LABELS "mpi;np2;ep"
  ENVIRONMENT "${MOE_TEST_ENV}" TIMEOUT 120 PROCESSORS 2
  PASS_REGULAR_EXPRESSION "\"dtype\":\"bf16\",\"node_size\":1,.*\"internode_bytes_per_token\":[1-9]")
# Node-level dedup's relay (trainer/ep/ep-node.h) on a hand-computable routing with fake nodes:
# exact inter-node bytes (fewer than per-rank dedup) and the values of its four hops.
moe_add_mpi_test(test_ep_node SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_ep_node.c NP 1 2 4 LABELS ep)
