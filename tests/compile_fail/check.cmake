# Compiles SRC and passes only if compilation fails with one error, which carries every message listed
# on its `// expect: ...` lines: a mistake is reported once, by the dp: static_assert that says how to
# fix it, without errors that follow from it. Run as: cmake -DCXX=... -DSRC=... -DINCLUDE=... -P check.cmake,
# with -DFLAGS=... the compiler's options separated by | (default -fsyntax-only).
file(STRINGS ${SRC} expect_lines REGEX "^// expect: ")
if(NOT expect_lines)
  message(FATAL_ERROR "${SRC} has no '// expect:' line")
endif()
if(NOT DEFINED FLAGS)
  set(FLAGS -fsyntax-only)
endif()
string(REPLACE "|" ";" FLAGS "${FLAGS}")
execute_process(COMMAND ${CXX} -std=c++20 ${FLAGS} -I${INCLUDE} ${SRC}
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
string(REPLACE ";" "," said "${err}${out}")  # a message's ";" would split CMake's list
string(REGEX MATCHALL "[^\n]*: error: [^\n]*" errors "${said}")
list(LENGTH errors count)
if(NOT count EQUAL 1)
  list(JOIN errors "\n  " listed)
  message(FATAL_ERROR "${SRC} failed to compile with ${count} errors, where one (its dp: message) must say it all:\n  ${listed}")
endif()
message(STATUS "${SRC}: fails to compile with the expected message, and nothing else")
