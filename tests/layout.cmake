# layout suite: the rules of docs/architecture.md checked on the real build — no file-level call
# cycle between the objects of libmoe, no file over 800 lines, no room over 3000, a manual header
# per room, MPI and hwloc included only in comm/. Label `layout`.
find_program(MOE_PYTHON3 python3 REQUIRED)
add_test(NAME check_layout
  COMMAND ${MOE_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/check_layout.py ${CMAKE_SOURCE_DIR}
          $<TARGET_FILE:libmoe>)
set_tests_properties(check_layout PROPERTIES LABELS "unit;layout" TIMEOUT 60)
