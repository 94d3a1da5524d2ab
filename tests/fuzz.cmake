# fuzz suite: the parsers of outside input under libFuzzer (tests/fuzz/, docs/fuzzing.md).
# Every build: replay_<target> runs a target's LLVMFuzzerTestOneInput over its seed corpus and
# its regression inputs (every crash ever found), as the test fuzz_replay_<target> (label fuzz).
# MOE_FUZZ=ON (clang, a separate build directory): also fuzz_<target>, the libFuzzer binaries,
# built by the target `fuzz`; tests/fuzz/run.sh builds and runs them.
set(MOE_FUZZ_TARGETS config hf_config sweep manifest latest data safetensors trace)
set(MOE_FUZZ_SRC ${CMAKE_CURRENT_SOURCE_DIR}/fuzz)

add_executable(fuzz_make_seeds ${MOE_FUZZ_SRC}/make-seeds.c)
target_link_libraries(fuzz_make_seeds PRIVATE libmoe)
target_include_directories(fuzz_make_seeds PRIVATE ${MOE_FUZZ_SRC})

if(MOE_FUZZ)
  add_custom_target(fuzz)
endif()
foreach(t ${MOE_FUZZ_TARGETS})
  add_executable(replay_${t} ${MOE_FUZZ_SRC}/replay.c ${MOE_FUZZ_SRC}/fuzz_${t}.c)
  target_link_libraries(replay_${t} PRIVATE libmoe)
  target_include_directories(replay_${t} PRIVATE ${MOE_FUZZ_SRC})
  target_compile_definitions(replay_${t} PRIVATE MOE_FUZZ_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
  add_test(NAME fuzz_replay_${t}
    COMMAND replay_${t} ${MOE_FUZZ_SRC}/corpus/${t} ${MOE_FUZZ_SRC}/regress/${t})
  set_tests_properties(fuzz_replay_${t} PROPERTIES LABELS "unit;fuzz"
    ENVIRONMENT "${MOE_TEST_ENV}" TIMEOUT 300)
  if(MOE_FUZZ)
    add_executable(fuzz_${t} EXCLUDE_FROM_ALL ${MOE_FUZZ_SRC}/fuzz_${t}.c)
    target_link_libraries(fuzz_${t} PRIVATE libmoe)
    target_include_directories(fuzz_${t} PRIVATE ${MOE_FUZZ_SRC})
    target_compile_definitions(fuzz_${t} PRIVATE MOE_FUZZ_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
    target_link_options(fuzz_${t} PRIVATE -fsanitize=fuzzer)
    add_dependencies(fuzz fuzz_${t})
  endif()
endforeach()
