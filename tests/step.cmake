# tests/step.cmake: the one training step (label `train`): `moe bench step`'s path and the
# trainer's moe_train_step give bit-identical losses and parameters on the same synthetic batch.
# At np1 it also checks that moe_train_step allocates nothing (test-noalloc.c).
moe_add_mpi_test(test_train_step SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_train_step.c
  ${CMAKE_CURRENT_SOURCE_DIR}/test-noalloc.c NP 1 2 LABELS train)
