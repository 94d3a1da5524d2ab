# tests/trace.cmake: routing traces and their analysis (label `trace`; docs/routes.md).
# test_trace: the file format (round trip, every refusal of the reader, a failed write leaves
# nothing). test_routes: every statistic of routes.h against a naive reference and known answers.
moe_add_test(test_trace SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_trace.c LABELS trace)
moe_add_test(test_routes SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_routes.c LABELS trace)
