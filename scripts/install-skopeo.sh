#!/usr/bin/env bash
# Installs skopeo from the Debian archive for `make bench` (idempotent).
# Exits 0 without installing when it cannot (no root, no apt-get): the benchmark then
# reports skopeo as unavailable instead of failing.
set -u
if command -v skopeo >/dev/null 2>&1; then
	exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
	if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
		SUDO="sudo -n"
	else
		echo "install-skopeo: not root and no passwordless sudo; skopeo will be reported unavailable" >&2
		exit 0
	fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "install-skopeo: no apt-get; skopeo will be reported unavailable" >&2
	exit 0
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q || { echo "install-skopeo: apt-get update failed" >&2; exit 0; }
$SUDO apt-get install -y -q --no-install-recommends skopeo || { echo "install-skopeo: install failed; skopeo will be reported unavailable" >&2; exit 0; }
skopeo --version
