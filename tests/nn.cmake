# tests/nn.cmake: the dense transformer kernels and the optimizer (trainer/model/nn.h). Label `nn`.
moe_add_test(test_nn SOURCES test_nn.c test_nn_ref.c LABELS nn)
moe_add_test(test_nn_block SOURCES test_nn_block.c test_nn_ref.c LABELS nn)
moe_add_test(test_optim SOURCES test_optim.c test_nn_ref.c LABELS nn)
moe_add_test(test_nn_init SOURCES test_nn_init.c LABELS nn)
