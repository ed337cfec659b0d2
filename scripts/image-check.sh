#!/usr/bin/env bash
# Build the image and run it once (`payfirst --help`, as the unprivileged user), when a
# container engine can run here; otherwise say why and stop (CI calls this).
set -euo pipefail
cd "$(dirname "$0")/.."
for engine in docker podman; do
    if command -v "$engine" >/dev/null 2>&1; then
        if "$engine" info >/dev/null 2>&1; then
            "$engine" build -t payfirst:latest .
            user=$("$engine" run --rm --entrypoint id payfirst:latest -u)
            if [ "$user" = "0" ]; then
                echo "image-check: the image runs as root" >&2
                exit 1
            fi
            "$engine" run --rm payfirst:latest --help >/dev/null
            echo "image-check: built with $engine, runs as uid $user"
            exit 0
        fi
        echo "image-check: skipped: $engine is installed but its engine cannot run here ($engine info failed)"
        exit 0
    fi
done
echo "image-check: skipped: neither docker nor podman is installed"
