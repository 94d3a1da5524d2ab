# args.cmake: the `args` suite — the one argument parser (common/args.c) on a table of command
# lines, and the built `moe` through it (bad numbers exit 2 naming the option, --set= everywhere,
# --help of every command and benchmark). Label `args`.
moe_add_test(test_args SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_args.c LABELS args)
add_test(NAME test_args_cli COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_args_cli.sh)
set_tests_properties(test_args_cli PROPERTIES LABELS "unit;args"
  ENVIRONMENT "MOE_SRC=${CMAKE_SOURCE_DIR};MOE_BIN=$<TARGET_FILE:moe>;${MOE_TEST_ENV}"
  TIMEOUT 300)
# moe --version (issue 17): version, git revision, dependency versions against pkg-config's.
add_test(NAME test_version COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_version.sh
  $<TARGET_FILE:moe> ${CMAKE_SOURCE_DIR} ${PROJECT_VERSION} ${OPENBLAS_VERSION} ${HWLOC_VERSION}
  ${PROTOBUFC_VERSION} ${JANSSON_VERSION})
set_tests_properties(test_version PROPERTIES LABELS "unit;args" ENVIRONMENT "${MOE_TEST_ENV}")
# Issue 17's small edges: inspect's format once, exit codes in eval/topo --help, the progress
# line explained in train --help, moe-train-<jobid>.out ignored by git.
add_test(NAME test_ux_misc COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_ux_misc.sh
  $<TARGET_FILE:moe> ${CMAKE_SOURCE_DIR})
set_tests_properties(test_ux_misc PROPERTIES LABELS "unit;args" ENVIRONMENT "${MOE_TEST_ENV}")
