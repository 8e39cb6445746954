#!/usr/bin/env bash
# Build the Amazon Linux 2023 RPM (and its SRPM) from packaging/rpm/vpce-doctor.spec, then lint it.
#   scripts/build-rpm.sh [OUTDIR]      (default: dist/; `make rpm` runs this)
# 1. the sdist and the wheel with `python -m build` (setuptools >= 77 in an isolated build env:
#    AL2023's own python3-setuptools cannot read [project]); they are the spec's Source0/Source1;
# 2. rpmbuild in a throw-away _topdir; 3. rpmlint with packaging/rpm/vpce-doctor.rpmlintrc: any
#    error fails the build. Works on AL2023/Fedora (dnf) and on Debian/Ubuntu (apt), as root or
#    with rpmbuild and rpmlint already installed. Prints the rpmlint summary and the build time.
set -euo pipefail
cd "$(dirname "$0")/.."
started_ns=$(date +%s%N)
OUT=$(mkdir -p "${1:-dist}" && cd "${1:-dist}" && pwd)

need_tools() { ! command -v rpmbuild >/dev/null 2>&1 || ! command -v rpmlint >/dev/null 2>&1; }
if need_tools; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "build-rpm: rpmbuild/rpmlint missing; as root this script installs them (apt: rpm rpmlint python3-packaging; dnf: rpm-build rpmlint)" >&2
    exit 3
  elif command -v dnf >/dev/null 2>&1; then
    dnf install -y -q rpm-build rpmlint python3 python3-rpm-macros systemd-rpm-macros >/dev/null
  elif command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # python3-packaging: rpm's pythondistdeps.py (the python3.9dist(vpce-doctor) Provides) needs it.
    apt-get install -y -qq rpm rpmlint python3-packaging >/dev/null
  fi
  need_tools && { echo "build-rpm: could not install rpmbuild and rpmlint" >&2; exit 3; }
fi

# A Python with `build`: the project's .venv when it has it, else a small venv of its own.
BUILD_PY=${BUILD_PYTHON:-}
if [ -z "$BUILD_PY" ]; then
  if [ -x .venv/bin/python ] && .venv/bin/python -c 'import build' 2>/dev/null; then
    BUILD_PY=.venv/bin/python
  else
    [ -x build/venv/bin/python ] || "${PYTHON:-python3}" -m venv build/venv  # build/ is git-ignored
    build/venv/bin/python -m pip install -q 'build>=1.0' 2>&1 | grep -v '^WARNING: Location' || true
    BUILD_PY=build/venv/bin/python
  fi
fi

topdir=$(mktemp -d /tmp/vpce-doctor-rpm.XXXXXX)
trap 'rm -rf "$topdir"' EXIT
mkdir -p "$topdir/SOURCES"
# No --sdist/--wheel: the wheel is built from the sdist, which proves the sdist is complete.
"$BUILD_PY" -m build --outdir "$topdir/SOURCES" . >"$topdir/build.log" 2>&1 \
  || { tail -30 "$topdir/build.log" >&2; echo "build-rpm: python -m build failed" >&2; exit 1; }

spec=packaging/rpm/vpce-doctor.spec
args=(--define "_topdir $topdir")
# Not an rpm-based host (Debian): its rpm database knows none of the BuildRequires.
rpm -q rpm >/dev/null 2>&1 || args+=(--nodeps)
# Name it like an AL2023 build where the host's rpm has no %dist.
[ -n "$(rpm --eval '%{?dist}')" ] || args+=(--define "dist .amzn2023")
# Debian's rpm byte-compiles nothing: hand the spec a Python 3.9 (AL2023's) to compile with.
if [ -z "$(rpm --eval '%{?py_byte_compile}')" ]; then
  py39=${PYTHON39:-}
  for c in "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/3.9*/bin/python3.9 python3.9; do
    [ -n "$py39" ] && break
    command -v "$c" >/dev/null 2>&1 && py39=$(command -v "$c")
  done
  if [ -n "$py39" ]; then args+=(--define "__python3 $py39")
  else echo "build-rpm: no python3.9 here: the RPM ships no byte-code (AL2023 compiles it at first use)"; fi
fi
rpmbuild -ba "${args[@]}" "$spec" >"$topdir/rpmbuild.log" 2>&1 \
  || { tail -40 "$topdir/rpmbuild.log" >&2; echo "build-rpm: rpmbuild failed" >&2; exit 1; }
rpm_file=$(ls "$topdir"/RPMS/noarch/*.rpm)
srpm_file=$(ls "$topdir"/SRPMS/*.src.rpm)
cp "$rpm_file" "$srpm_file" "$OUT"/
cp "$topdir"/SOURCES/*.whl "$topdir"/SOURCES/*.tar.gz "$OUT"/

echo "== rpmlint =="
lint_status=0
rpmlint -r packaging/rpm/vpce-doctor.rpmlintrc "$spec" "$OUT/$(basename "$rpm_file")" \
  "$OUT/$(basename "$srpm_file")" || lint_status=$?
ms=$(( ($(date +%s%N) - started_ns) / 1000000 ))
echo "build-rpm: $OUT/$(basename "$rpm_file") ($(du -k "$rpm_file" | cut -f1) KiB) in $((ms / 1000)).$(printf %03d $((ms % 1000))) s"
# rpmlint 2.x: 0 = clean or warnings only; 64 = errors; 66 = badness over the threshold.
if [ "$lint_status" -ne 0 ]; then echo "build-rpm: rpmlint found errors (exit $lint_status)" >&2; exit 1; fi
