#!/usr/bin/env bash
# Drift check: install the NEWEST versions that pyproject.toml allows (ignoring the
# lock in constraints.txt) into a throw-away virtual environment and run the suite.
# Run it on purpose now and then; it is not part of CI. When it passes, refresh the
# lock with `scripts/drift.sh --relock`, which rewrites constraints.txt from that env.
set -euo pipefail
cd "$(dirname "$0")/.."
export LITELLM_LOCAL_MODEL_COST_MAP=True
venv="${DRIFT_VENV:-/tmp/planweave-drift}"
rm -rf "$venv"
python3 -m venv "$venv"
. "$venv/bin/activate"
python -m pip install --quiet --upgrade pip
python -m pip install --quiet --upgrade -e '.[dev,bench,png]'
python -m pip list --format=freeze --exclude-editable --exclude pip > "$venv/versions.txt"
echo "newest allowed versions: $venv/versions.txt"
diff <(grep -v '^#' constraints.txt | sort -f) <(sort -f "$venv/versions.txt") || true
python -m mypy
python -m pytest -q
if [[ "${1:-}" == "--relock" ]]; then
  {
    sed -n '1,/^# litellm 1.82.7/p' constraints.txt
    cat "$venv/versions.txt"
  } > constraints.txt.new
  mv constraints.txt.new constraints.txt
  echo "constraints.txt rewritten from the drift environment"
fi
