# Sourced by scripts/demo, scripts/test and scripts/lock: create .venv and install diffris into
# it, once, at the exact versions of requirements/constraints.txt (what the suite passed with).
# torch is pinned in the same pip command as the project: asked for alone, a plain `torch`
# requirement would pull a multi-GB CUDA build. Set DIFFRIS_TORCH to choose another build.
# DIFFRIS_VENV puts the environment elsewhere; DIFFRIS_CONSTRAINTS=none resolves from
# pyproject.toml's ranges instead of the lock (scripts/lock does this).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${DIFFRIS_VENV:-$root/.venv}
extras=${1:-}
torch_requirement=${DIFFRIS_TORCH:-torch==2.13.0}
constraints=${DIFFRIS_CONSTRAINTS:-$root/requirements/constraints.txt}
pip_args=()
if [ "$constraints" != none ]; then
  pip_args+=(--constraint "$constraints")
fi
stamp=$venv/.installed${extras:+-$extras}
# Reinstall whenever what decides the installed set changes: the project's requirements, the
# lock, the torch build or the constraints choice.
wanted=$(
  {
    echo "$torch_requirement $constraints"
    cat "$root/pyproject.toml"
    if [ "$constraints" != none ]; then cat "$constraints"; fi
  } | sha256sum | cut -d' ' -f1
)
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${pip_args[@]}" \
    "$torch_requirement" -e "$root${extras:+[$extras]}"
  echo "$wanted" >"$stamp"
fi
export PATH=$venv/bin:$PATH
cd "$root"
