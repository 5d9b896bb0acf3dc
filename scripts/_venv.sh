# Sourced by scripts/demo and scripts/test: create .venv and install diffris into it, once.
# torch is pinned in the same pip command as the project: asked for alone, a plain `torch`
# requirement would pull a multi-GB CUDA build. Set DIFFRIS_TORCH to choose another build.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${DIFFRIS_VENV:-$root/.venv}
extras=${1:-}
stamp=$venv/.installed${extras:+-$extras}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "${DIFFRIS_TORCH:-torch==2.13.0}" -e "$root${extras:+[$extras]}"
  touch "$stamp"
fi
export PATH=$venv/bin:$PATH
cd "$root"
