# data suite: token data formats, split, deterministic layout-invariant batches, bad-data errors,
# the default corpus (label data).
moe_add_test(test_data SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_data.c LABELS data)
moe_add_mpi_test(test_data_dist SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_data_dist.c
  NP 1 2 4 LABELS data)
# Issue 12: a FIFO/directory/device as data.path or data.val_path refused at once (defect 5), an
# llm.c shard read as text refused (9c), a missing val_path named as such (10).
moe_add_test(test_data_input SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_data_input.c LABELS data)
# Issue 14: the GCIDE corpus (examples/corpus/gcide.sh) is deterministic, clean prose moe trains on.
add_test(NAME test_corpus_gcide COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_corpus_gcide.sh)
set_tests_properties(test_corpus_gcide PROPERTIES LABELS "data"
  ENVIRONMENT "MOE_BIN=$<TARGET_FILE:moe>;${MOE_TEST_ENV}" TIMEOUT 300)
