# params suite: parameter accounting (params/params.c), the Hugging Face config reader
# (params/hf-config.c) and the `moe params` command. Label `params`.
moe_add_test(test_params SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_params.c LABELS params)
moe_add_test(test_params_hf SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_params_hf.c LABELS params
  ARGS ${CMAKE_SOURCE_DIR}/examples)
moe_add_test(test_params_cli SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_params_cli.c LABELS params
  ARGS $<TARGET_FILE:moe> ${CMAKE_SOURCE_DIR}/examples)
