#!/usr/bin/env python3
"""Suite `python`: installs contrib/python with pip into a fresh venv, as an operator
would, then runs test_client.py with that venv's interpreter against a real cairnd.

Debian 12's python is "externally managed" (PEP 668): pip refuses to install outside a
venv unless told --break-system-packages, so the venv is the supported way. It is made
with --system-site-packages and pip runs with --no-build-isolation --no-index, so the
build uses Debian's python3-setuptools and the test never needs the network.
"""
import os
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
src = os.environ.get("CAIRN_SOURCE_DIR") or os.path.dirname(os.path.dirname(here))

with tempfile.TemporaryDirectory(prefix="cairn-py-") as tmp:
    venv = os.path.join(tmp, "venv")
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv], check=True)
    py = os.path.join(venv, "bin", "python")
    # A copy of the package: setuptools writes build/ and *.egg-info beside the sources,
    # which must not land in the source tree (or race with another build of it).
    pkg = os.path.join(tmp, "pkg")
    subprocess.run(["cp", "-r", os.path.join(src, "contrib", "python"), pkg], check=True)
    subprocess.run([py, "-m", "pip", "install", "--quiet", "--no-build-isolation", "--no-index", pkg],
                   check=True)
    env = dict(os.environ, CAIRN_VENV=venv, PYTHONPATH=here)
    # Run from the temp dir so `import cairn_client` can only find the installed copy.
    rc = subprocess.run([py, "-m", "unittest", "-v", "test_client"], cwd=tmp, env=env).returncode
    sys.exit(rc)
