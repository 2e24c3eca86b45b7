#!/usr/bin/env bash
# Every tracked C++ file is as clang-format (with the repository's .clang-format) writes it.
# Usage: clang_format_check.sh SOURCE_DIR CLANG_FORMAT
set -euo pipefail
src="$1"
fmt="${2:-}"
if [[ -z "$fmt" || "$fmt" == *NOTFOUND ]]; then
  echo "clang-format: not installed (scripts/deps.txt installs it): the format is unchecked" >&2
  exit 1
fi
cd "$src"
if git rev-parse --git-dir >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files '*.cpp' '*.hpp' | grep -v '^tests/fuzz/corpus/')
else  # an exported tree (a source package): the same folders, found
  mapfile -t files < <(find src include cli probe bench tests -name '*.[ch]pp' \
    -not -path 'tests/fuzz/corpus/*' | sort)
fi
if ((${#files[@]} < 100)); then
  echo "clang-format: only ${#files[@]} C++ files listed: the listing is broken" >&2
  exit 1
fi
"$fmt" --dry-run -Werror "${files[@]}"
echo "clang-format: ${#files[@]} files formatted"
