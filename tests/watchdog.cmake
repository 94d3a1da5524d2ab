# watchdog suite: the job watchdog (comm/watchdog.h) on one node at np 2 — a stopped rank and a
# hung rank end the job with a message naming them; a healthy run is left alone. Label `watchdog`.
add_test(NAME watchdog COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_watchdog.sh)
set_tests_properties(watchdog PROPERTIES
  LABELS "watchdog;mpi;nosan"
  ENVIRONMENT "MOE_BIN=$<TARGET_FILE:moe>;MPIEXEC=${MPIEXEC_EXECUTABLE};${MOE_TEST_ENV}"
  PROCESSORS 2
  TIMEOUT 300)
