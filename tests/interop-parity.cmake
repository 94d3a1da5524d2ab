# tests/interop-parity.cmake: `moe export` and `moe import` against an independent PyTorch
# implementation (issue 15; docs/hf.md, "PyTorch parity"). test_hf_parity trains tiny Mixtral,
# Qwen2-MoE, Qwen3-MoE and OLMoE models at np 2, exports them, and compares `moe eval --logits`
# with tests/hf_torch_reference.py (PyTorch, from transformers' published architectures) within 1e-4
# relative; and imports HF directories it writes itself. Needs python3-torch (install-deps.sh):
# without it the test FAILS, it does not skip. Label `hf`.
add_test(NAME test_hf_parity
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_hf_parity.py
          --moe $<TARGET_FILE:moe> --mpirun ${MPIEXEC_EXECUTABLE}
          --work ${CMAKE_CURRENT_BINARY_DIR}/hf-parity)
set_tests_properties(test_hf_parity PROPERTIES LABELS "mpi;np2;hf"
  ENVIRONMENT "${MOE_TEST_ENV}" TIMEOUT 300 PROCESSORS 2)
