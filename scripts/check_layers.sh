#!/usr/bin/env bash
# Include direction: every header under include/dp/<layer>/ includes headers of its own folder or of
# lower layers only, in the order docs/design/architecture.md states on its "Layers, bottom to top:"
# line (levels separated by "->", folders on one level by ","). dp/config.hpp is below every layer;
# the umbrella headers (dp/dp.hpp, dp/nn.hpp, ...) are above all of them. Prints every violation and
# fails on any. `--self-test` checks that an upward include is caught.
set -euo pipefail
cd "$(dirname "$0")/.."

# check_layers ROOT: ROOT is a copy of include/dp.
check_layers() {
  local root=$1 order level=0 part name bad=0
  order=$(grep -m1 '^Layers, bottom to top:' docs/design/architecture.md | sed 's/^Layers, bottom to top: *//')
  [[ -n $order ]] || { echo "check_layers: no 'Layers, bottom to top:' line in docs/design/architecture.md"; return 1; }
  local -A rank=()
  while IFS= read -r part; do
    for name in ${part//,/ }; do
      rank[$name]=$level
    done
    level=$((level + 1))
  done < <(sed 's/ *-> */\n/g' <<<"$order")

  local dir
  for dir in "$root"/*/; do
    name=$(basename "$dir")
    if [[ -z ${rank[$name]+x} ]]; then
      echo "include/dp/$name/ is in no layer: add it to the layer line of docs/design/architecture.md"
      bad=1
    fi
  done

  local file lineno text from target path
  while IFS=: read -r file lineno text; do
    path=${file#"$root"/}
    from=${path%%/*}
    [[ -n ${rank[$from]+x} ]] || continue  # reported above
    if [[ $text =~ ^#include\ *\" ]]; then
      echo "include/dp/$path:$lineno: $text: include dp's headers as <dp/...>"
      bad=1
    elif [[ $text =~ ^#include\ *\<dp/([a-z_]+)/ ]]; then
      target=${BASH_REMATCH[1]}
      if [[ -z ${rank[$target]+x} ]]; then
        echo "include/dp/$path:$lineno: $text: dp/$target/ is in no layer"
        bad=1
      elif [[ $target != "$from" && ${rank[$target]} -ge ${rank[$from]} ]]; then
        local where="above"
        [[ ${rank[$target]} -eq ${rank[$from]} ]] && where="beside"
        echo "include/dp/$path:$lineno: $text: $target is $where $from (layers: $order); move the code to the" \
          "lower layer, or declare it there and define it above"
        bad=1
      fi
    elif [[ $text =~ ^#include\ *\<dp/([a-z_]+)\.hpp\> && ${BASH_REMATCH[1]} != config ]]; then
      echo "include/dp/$path:$lineno: $text: a layer does not include an umbrella header; include what it uses"
      bad=1
    fi
  done < <(grep -rn --include='*.hpp' '^#include' "$root"/*/)
  return $bad
}

if [[ ${1:-} == --self-test ]]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  cp -r include/dp "$tmp/dp"
  echo '#include <dp/exec/assign.hpp>' >>"$tmp/dp/core/shape.hpp"
  if out=$(check_layers "$tmp/dp"); then
    echo "check_layers self-test: an upward include (core -> exec) was not caught"
    exit 1
  fi
  grep -q 'core/shape.hpp:.*exec is above core' <<<"$out" || {
    echo "check_layers self-test: unexpected report: $out"
    exit 1
  }
  echo "check_layers self-test: an upward include is caught"
  exit 0
fi

check_layers include/dp
echo "lint: includes point down the layers ($(grep -m1 '^Layers, bottom to top:' docs/design/architecture.md))"
