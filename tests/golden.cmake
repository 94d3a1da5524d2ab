# golden.cmake: the one-rank MoE layer against PyTorch golden fixtures (tests/fixtures, written by
# tests/torch_fixtures.py; PyTorch is not needed to run the test).
moe_add_test(test_layer_golden SOURCES test_layer_golden.c LABELS layer golden
  ARGS ${CMAKE_CURRENT_SOURCE_DIR}/fixtures)
