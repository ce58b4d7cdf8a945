#!/bin/sh
# Deploys the demo project by copying the package to the target directory given as $1.
set -eu
target="$1"
mkdir -p "$target"
rm -rf "$target/mathkit"
cp -R mathkit "$target/mathkit"
git rev-parse HEAD > "$target/REVISION"
