# ckpt suite: CRC32C, atomic save / verified load, corruption, keep-last-K, `moe inspect`, and
# distributed save/load with resharding across EP sizes and world sizes (label ckpt).
moe_add_test(test_ckpt SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_ckpt.c LABELS ckpt
  ARGS $<TARGET_FILE:moe>)
moe_add_mpi_test(test_ckpt_dist SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_ckpt_dist.c
  NP 1 2 4 LABELS ckpt)
# Cross-np resharding: written by 4 ranks at EP 4, read by 2 ranks at EP 2 and by 1 rank.
set(_moe_ckpt_mpi "${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG}")
set(_moe_ckpt_dir "${CMAKE_CURRENT_BINARY_DIR}/ckpt-cross-np")
add_test(NAME test_ckpt_cross_np
  COMMAND sh -c "rm -rf '${_moe_ckpt_dir}' && \
${_moe_ckpt_mpi} 4 --allow-run-as-root --oversubscribe '$<TARGET_FILE:test_ckpt_dist>' write '${_moe_ckpt_dir}' 4 && \
${_moe_ckpt_mpi} 2 --allow-run-as-root --oversubscribe '$<TARGET_FILE:test_ckpt_dist>' read '${_moe_ckpt_dir}' 2 && \
${_moe_ckpt_mpi} 1 --allow-run-as-root --oversubscribe '$<TARGET_FILE:test_ckpt_dist>' read '${_moe_ckpt_dir}' 1 && \
'$<TARGET_FILE:moe>' inspect '${_moe_ckpt_dir}/checkpoints/latest' && rm -rf '${_moe_ckpt_dir}'")
set_tests_properties(test_ckpt_cross_np PROPERTIES LABELS "mpi;np4;ckpt" ENVIRONMENT "${MOE_TEST_ENV}"
  TIMEOUT 300 PROCESSORS 4 PASS_REGULAR_EXPRESSION "read .* at W=1 ep=1: ok.*result: +OK")
# Issue 12: every single-bit flip of manifest.pb refused (defect 4); a step_N directory holding
# another step's checkpoint refused by load and `moe inspect` (defect 9e).
moe_add_test(test_ckpt_manifest_flips SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_ckpt_manifest.c
  LABELS ckpt ARGS flips)
add_test(NAME test_ckpt_stepname COMMAND test_ckpt_manifest_flips stepname $<TARGET_FILE:moe>)
set_tests_properties(test_ckpt_stepname PROPERTIES LABELS "unit;ckpt" ENVIRONMENT "${MOE_TEST_ENV}"
  TIMEOUT 300)
# Issue 12 defect 10: LATEST naming a missing directory, a LATEST symlink loop.
add_test(NAME test_ckpt_latest_messages COMMAND test_ckpt_manifest_flips latest)
set_tests_properties(test_ckpt_latest_messages PROPERTIES LABELS "unit;ckpt"
  ENVIRONMENT "${MOE_TEST_ENV}" TIMEOUT 300)
