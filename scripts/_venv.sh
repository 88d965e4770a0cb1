# Sourced by the quickstart scripts: create or reuse the virtual environment and install famevil
# into it. Reinstalls only when pyproject.toml changed since the last install.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${FAMEVIL_VENV:-$root/.venv}"
extras="${1:-}"
if [ ! -x "$venv/bin/python" ]; then
    echo "creating virtual environment $venv" >&2
    python3 -m venv "$venv"
fi
stamp="$venv/.famevil-installed"
want="$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1) $root $extras"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "installing famevil$extras into $venv (torch is large: a minute or two the first time)" >&2
    "$venv/bin/python" -m pip install -qq --upgrade pip
    "$venv/bin/python" -m pip install -qq --editable "$root$extras"
    echo "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
cd "$root"
