# Compiles SRC and passes only if compilation fails with every message listed on its
# `// expect: ...` lines. Run as: cmake -DCXX=... -DSRC=... -DINCLUDE=... -P check.cmake
file(STRINGS ${SRC} expect_lines REGEX "^// expect: ")
if(NOT expect_lines)
  message(FATAL_ERROR "${SRC} has no '// expect:' line")
endif()
execute_process(COMMAND ${CXX} -std=c++20 -fsyntax-only -I${INCLUDE} ${SRC}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0)
  message(FATAL_ERROR "${SRC} compiled, but it must not")
endif()
foreach(line IN LISTS expect_lines)
  string(REGEX REPLACE "^// expect: " "" want "${line}")
  string(FIND "${err}${out}" "${want}" pos)
  if(pos EQUAL -1)
    message(FATAL_ERROR "${SRC} failed to compile, but without the message:\n  ${want}\nCompiler said:\n${err}")
  endif()
endforeach()
message(STATUS "${SRC}: fails to compile with the expected message")
