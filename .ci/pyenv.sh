#!/usr/bin/env bash
# Creates (or reuses) the Python virtual environment the tests use to check
# our formats and protocols against their official clients: huggingface_hub
# reading the cache we write, hf_xet against our mock Xet CAS, pip installing
# our wheel. Prints the interpreter's path on stdout; tests find it through
# HFD_TEST_PYTHON and print "SKIPPED: ..." without it.
#
# Pinned so that a new release upstream cannot change a test's meaning
# between two runs; raise the pins on purpose.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/pyenv
pins=(huggingface_hub==2.4.0 hf_xet==1.8.0 twine==7.0.0 maturin==1.16.0)

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import huggingface_hub, hf_xet' 2>/dev/null; then
    python3 -m venv "$venv" >&2
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "${pins[@]}" >&2
fi
echo "$PWD/$venv/bin/python"
