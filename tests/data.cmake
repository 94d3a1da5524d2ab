# data suite: token data formats, split, deterministic layout-invariant batches, bad-data errors,
# the default corpus (label data).
moe_add_test(test_data SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_data.c LABELS data)
moe_add_mpi_test(test_data_dist SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_data_dist.c
  NP 1 2 4 LABELS data)
