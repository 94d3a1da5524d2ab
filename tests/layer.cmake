# tests/layer.cmake: the one-rank MoE layer — router pieces and golden masks, the layer against
# the plain double reference and finite differences. Label `layer`.
moe_add_test(test_layer SOURCES test_layer.c test_layer_ref.c LABELS layer)
moe_add_test(test_router SOURCES test_router.c LABELS layer)
moe_add_test(test_router_group SOURCES test_router_group.c LABELS layer)
moe_add_test(test_experts SOURCES test_experts.c test_layer_ref.c LABELS layer)
moe_add_test(test_layer_noalloc SOURCES test_layer_noalloc.c test-noalloc.c LABELS layer)
moe_add_test(test_router_seq SOURCES test_router_seq.c LABELS layer)
moe_add_test(test_gemm_rows SOURCES test_gemm_rows.c LABELS layer)
