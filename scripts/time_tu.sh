#!/usr/bin/env bash
# Compiler launcher (CMAKE_CXX_COMPILER_LAUNCHER): runs the compile and appends "seconds source"
# to the file named by the first argument, so CI can print where compile time goes.
log="$1"
shift
src=""
prev=""
for a in "$@"; do
  [ "$prev" = "-c" ] && src="$a"
  prev="$a"
done
start=${EPOCHREALTIME/./}
"$@"
rc=$?
end=${EPOCHREALTIME/./}
printf '%d.%06d %s\n' $(((end - start) / 1000000)) $(((end - start) % 1000000)) "${src:-link}" >>"$log"
exit $rc
