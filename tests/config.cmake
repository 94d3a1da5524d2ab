# tests/config.cmake: the config suite (label `config`) — the JSON reader against python's
# json_format (oracle), the writer's round trip, `--set`, validation, and `moe config` on bad
# configs (exit code 2, file:line:column and message on stderr).

# python's protobuf classes for the oracle, generated from the one schema into the build tree.
find_program(MOE_PROTOC NAMES protoc)
set(MOE_PYTHON3 /usr/bin/python3) # Debian's python, which has python3-protobuf
set(MOE_PB2_DIR ${CMAKE_BINARY_DIR}/pyproto)
if(MOE_PROTOC)
  add_custom_command(
    OUTPUT ${MOE_PB2_DIR}/moe_pb2.py
    COMMAND ${CMAKE_COMMAND} -E make_directory ${MOE_PB2_DIR}
    COMMAND ${MOE_PROTOC} --proto_path=${CMAKE_SOURCE_DIR}/proto --python_out=${MOE_PB2_DIR}
            ${CMAKE_SOURCE_DIR}/proto/moe.proto
    DEPENDS ${CMAKE_SOURCE_DIR}/proto/moe.proto
    COMMENT "protoc --python_out proto/moe.proto (config oracle)")
  add_custom_target(moe_pb2_py ALL DEPENDS ${MOE_PB2_DIR}/moe_pb2.py)
else()
  message(WARNING "protoc not found: the config oracle test will fail; "
                  "apt-get install protobuf-compiler python3-protobuf")
endif()

set(MOE_ORACLE_OUT ${CMAKE_CURRENT_BINARY_DIR}/config-oracle-out)
file(MAKE_DIRECTORY ${MOE_ORACLE_OUT})
moe_add_test(test_config_oracle SOURCES test_config_oracle.c LABELS config
  ARGS ${MOE_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/config_oracle.py ${MOE_PB2_DIR} ${MOE_ORACLE_OUT}
       --strict ${CMAKE_CURRENT_SOURCE_DIR}/configs/good
       --lenient ${CMAKE_SOURCE_DIR}/examples
       --reject ${CMAKE_CURRENT_SOURCE_DIR}/configs/bad)

moe_add_test(test_config_set SOURCES test_config_set.c LABELS config)
moe_add_test(test_config_validate SOURCES test_config_validate.c LABELS config
  ARGS ${CMAKE_SOURCE_DIR}/examples)
moe_add_test(test_config_cli SOURCES test_config_cli.c LABELS config
  ARGS $<TARGET_FILE:moe> ${CMAKE_CURRENT_SOURCE_DIR}/configs)
# Long lists in messages (problems, known fields, differing fields) end "... and N more" at an item
# boundary, never mid-word (common/list.c and its users).
moe_add_test(test_error_lists SOURCES test_error_lists.c LABELS config)
# moe config --from-hf (issue 17): every examples/hf config through it and back, counts equal.
add_test(NAME test_config_from_hf COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_config_from_hf.sh)
set_tests_properties(test_config_from_hf PROPERTIES LABELS "unit;config"
  ENVIRONMENT "MOE_BIN=$<TARGET_FILE:moe>;MOE_SRC=${CMAKE_SOURCE_DIR};${MOE_TEST_ENV}" TIMEOUT 300)
