# enums suite: the enum tables the compiler follows — status codes and exit codes
# (common/moe-common.h), refusal of unknown proto enum numbers, routing-strategy traits
# (router/router.h), checkpoint format constants and tensor kinds. Label `enums`.
moe_add_test(test_enums SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_enums.c LABELS enums)
