#!/bin/sh
# Health check of the deployed demo: the package imports and its functions answer.
set -eu
cd "$1"
python3 -c "import mathkit.core as m; assert m.add(1, 1) == 2"
