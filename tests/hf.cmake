# hf suite: safetensors read and written, bf16/f16 conversions (hf/hf.h). Label `hf`.
moe_add_test(test_safetensors SOURCES test_safetensors.c LABELS hf)
target_compile_definitions(test_safetensors PRIVATE MOE_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
# moe export / import / train --init-from end to end (issue 15, docs/interop.md): round trips,
# eval equality, layouts, bf16 rounding, refusals (tests/test_interop.sh).
add_test(NAME test_interop COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_interop.sh)
set_tests_properties(test_interop PROPERTIES LABELS "mpi;np2;hf"
  ENVIRONMENT "MOE_BIN=$<TARGET_FILE:moe>;MPIRUN=${MPIEXEC_EXECUTABLE};MOE_SOURCE_DIR=${CMAKE_SOURCE_DIR};${MOE_TEST_ENV}"
  TIMEOUT 600 PROCESSORS 2)
