#!/usr/bin/env bash
# baseline.sh — the baseline of `baton bench pipeline`: the same git and process work Baton
# orchestrates for N tickets (worktree; five stages, each one process writing its file and a
# commit; the test after development; then, one at a time: the branch squashed onto main (one
# three-way merge and a commit, as Baton's merge gate), re-test, fast-forward main, deploy,
# health; worktree removed), with the same parallelism and no orchestration at all: no database,
# no supervisor, no agents, no retries.
# The git reads Baton makes for what it reports are part of that work: after every stage the
# branch's diff stat against main (the dashboard's "changes"), and after the merge the hand-off's
# commit list, diff stat and the ticket's documents read from the merged commit; main moves by
# `merge --ff-only` in the repository's checkout, so its files follow. `--minimal` leaves those
# out (the bare work: no reports, main moved by `update-ref` with its checkout left behind).
# `--sandbox` runs each agent stage's process confined as Baton's default sandbox confines an
# agent (bubblewrap: the system read-only, a private /tmp, its own pid and IPC namespaces, no
# capabilities, only the worktree writable), so the comparison leaves out the sandbox's cost.
# Usage: bash bench/baseline.sh [--tickets N] [--parallel P] [--test-sleep-ms MS] [--queue] [--minimal] [--sandbox] [--dir DIR]
# With --queue, every ticket's stages are done first; then the merges run one after another: the
# serial floor of the merge work (squash onto main, re-test, fast-forward, deploy, health).
# Prints one JSON line: {"tickets":N,"seconds":S,"merges_per_s":M} (docs/bench.md).
set -euo pipefail
export LC_ALL=C

tickets=50 parallel=4 test_sleep_ms=0 dir="" queue=0 minimal=0 sandbox=0
while [ $# -gt 0 ]; do
  case "$1" in
    --tickets) tickets=$2; shift 2 ;;
    --parallel) parallel=$2; shift 2 ;;
    --test-sleep-ms) test_sleep_ms=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --queue) queue=1; shift ;;
    --minimal) minimal=1; shift ;;
    --sandbox) sandbox=1; shift ;;
    *) echo "baseline.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$dir" ] || { dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT; }
mkdir -p "$dir"
repo="$dir/repo" merges="$dir/merges" lock="$dir/merge.lock"

if [ "$sandbox" -eq 1 ]; then
  command -v bwrap > /dev/null || { echo "baseline.sh: --sandbox needs bwrap (bubblewrap) on PATH" >&2; exit 2; }
fi

# Baton runs `true` as a process (through its shim); so does the baseline, not as a builtin.
enable -n true
if [ "$test_sleep_ms" -gt 0 ]; then
  test_cmd=(sleep "$(printf '%d.%03d' $((test_sleep_ms / 1000)) $((test_sleep_ms % 1000)))")
else
  test_cmd=(true)
fi
# A fixed identity and no user or system git configuration, so the figures do not depend on them.
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
# No automatic gc or maintenance after commits, as Baton runs git (at a few hundred tickets the
# loose objects would otherwise set off `git gc --auto` in the middle of the run).
export GIT_CONFIG_COUNT=2 GIT_CONFIG_KEY_0=gc.auto GIT_CONFIG_VALUE_0=0
export GIT_CONFIG_KEY_1=maintenance.auto GIT_CONFIG_VALUE_1=false
export GIT_AUTHOR_NAME=baseline GIT_AUTHOR_EMAIL=baseline@localhost
export GIT_COMMITTER_NAME=baseline GIT_COMMITTER_EMAIL=baseline@localhost

git init -q -b main "$repo"
# The same first commit as Baton's benchmark repository.
echo 'The repository of `baton bench pipeline`.' > "$repo/README.md"
mkdir "$repo/tickets" && : > "$repo/tickets/.keep"
git -C "$repo" add -A && git -C "$repo" commit -q -m "Initial commit"
: > "$merges"

# What one agent stage writes: the same files, with the same contents, as the agents of
# `baton bench pipeline` (its shell agent runs this very `case`), so both commit the same trees.
agent='d="docs/baton/$BATON_WORK_ITEM"
case "$BATON_STAGE" in
  analysis) mkdir -p "$d" && printf '"'"'# %s\n'"'"' "$BATON_WORK_ITEM" > "$d/01-analysis.md" ;;
  architecture) mkdir -p "$d" && printf '"'"'# %s\n'"'"' "$BATON_WORK_ITEM" > "$d/02-architecture.md" ;;
  development) printf '"'"'%s\n'"'"' "$BATON_TASK_TITLE" > "tickets/$BATON_WORK_ITEM.txt" ;;
  review) mkdir -p "$d" && printf -- '"'"'---\nverdict: approve\n---\n'"'"' > "$d/04-review.md" ;;
  testing) mkdir -p "$d" && printf -- '"'"'---\nverdict: pass\n---\n'"'"' > "$d/05-test-report.md" ;;
esac'

# One ticket's stages: the work of Baton's five agent stages in its own worktree.
stages() {
  local id=$1 wt="$dir/wt/$1" branch="baton/$1"
  # Git's worktree bookkeeping is not safe under a concurrent add and remove: a short lock of its own.
  flock "$dir/worktree.lock" git -C "$repo" worktree add -q -b "$branch" "$wt" main
  # The five agent stages: one process each writes its file, then a commit (as Baton's agents and
  # its commit after every stage); the development stage's test gate runs once.
  local stage confine=()
  if [ "$sandbox" -eq 1 ]; then
    confine=(bwrap --ro-bind / / --dev /dev --unshare-pid --proc /proc --unshare-ipc --cap-drop ALL
      --tmpfs /tmp --bind "$wt" "$wt" --chdir "$wt")
  fi
  for stage in analysis architecture development review testing; do
    (cd "$wt" && BATON_STAGE=$stage BATON_WORK_ITEM=$id BATON_TASK_TITLE="Bench ticket $((10#${id#BENCH-}))" \
      "${confine[@]}" sh -c "$agent")
    git -C "$wt" add -A && git -C "$wt" commit -q -m "$id $stage"
    if [ "$stage" = development ]; then (cd "$wt" && "${test_cmd[@]}"); fi
    # What the branch changes so far, for the report.
    [ "$minimal" -eq 1 ] || git -C "$wt" diff --shortstat main...HEAD > /dev/null
  done
}

# One ticket's merge, one at a time: the merge gate's and the deploy stage's work.
merge() {
  local id=$1 wt="$dir/wt/$1"
  {
    flock 9
    # The branch as one commit on main, as Baton's merge gate builds it: one three-way merge of
    # the branch's changes onto main, a commit of that tree, the worktree moved to it.
    local old head tree
    old=$(git -C "$repo" rev-parse refs/heads/main)
    tree=$(git -C "$wt" merge-tree --write-tree "$old" HEAD)
    head=$(git -C "$wt" commit-tree "$tree" -p "$old" -m "$id")
    git -C "$wt" reset -q --hard "$head"
    (cd "$wt" && "${test_cmd[@]}")
    if [ "$minimal" -eq 1 ]; then
      git -C "$repo" update-ref refs/heads/main "$head" "$old"
    else
      git -C "$repo" merge -q --ff-only "$head"
    fi
    echo "$EPOCHREALTIME" >> "$merges"
    (cd "$repo" && true && true) # deploy, then health
  } 9> "$lock"
  if [ "$minimal" -eq 0 ]; then
    # The hand-off: the commits and the diff stat it landed, and the ticket's documents.
    git -C "$repo" log --no-color --format='%h %s' --max-count=50 "$old..$head" -- > /dev/null
    git -C "$repo" diff --no-color --stat=100 "$old" "$head" -- > /dev/null
    local names
    names=$(git -C "$repo" ls-tree --name-only "$head:docs/baton/$id")
    printf "$head:docs/baton/$id/%s\n" $names | git -C "$repo" cat-file --batch > /dev/null
  fi
  # The branch stays, as Baton keeps a local repository's task branch (its history before the squash).
  flock "$dir/worktree.lock" git -C "$repo" worktree remove --force "$wt"
}

# One ticket, start to end.
ticket() {
  stages "$1"
  merge "$1"
}

# Runs "$1" for every ticket, P at a time.
each() {
  local running=0 n
  for n in $(seq 1 "$tickets"); do
    if [ "$running" -ge "$parallel" ]; then
      wait -n
      running=$((running - 1))
    fi
    "$1" "$(printf 'BENCH-%03d' "$n")" &
    running=$((running + 1))
  done
  while [ "$running" -gt 0 ]; do
    wait -n
    running=$((running - 1))
  done
}

started=$EPOCHREALTIME
if [ "$queue" -eq 1 ]; then
  each stages
  for n in $(seq 1 "$tickets"); do merge "$(printf 'BENCH-%03d' "$n")"; done
else
  each ticket
fi
ended=$EPOCHREALTIME

done_count=$(wc -l < "$merges")
[ "$done_count" -eq "$tickets" ] || { echo "baseline.sh: $done_count of $tickets tickets merged" >&2; exit 1; }
# Merges per second over the merge phase: merges after the first, over first-to-last merge time.
sort -n "$merges" | awk -v n="$tickets" -v s="$started" -v e="$ended" '
  NR == 1 { first = $1 } { last = $1 }
  END {
    phase = last - first
    rate = (n > 1 && phase > 0) ? (n - 1) / phase : n / (e - s)
    printf "{\"tickets\":%d,\"seconds\":%.3f,\"merges_per_s\":%.3f}\n", n, e - s, rate
  }'
