#!/usr/bin/env bash
# watchdog.sh SECONDS COMMAND...: runs COMMAND; if it is still running after SECONDS, names the
# tests that started and never ended, prints every thread's backtrace of the test processes
# (gdb: scripts/install-deps.sh --test installs it), then stops it and exits 124 as timeout(1)
# does. A hung test then says where it hung instead of leaving only a killed log.
set -uo pipefail
limit=$1; shift
log=$(mktemp /tmp/mediagate-watchdog-XXXXXX.log)
trap 'rm -f "$log"' EXIT
# A session of its own: only its processes are looked at and stopped.
setsid "$@" > >(tee "$log") 2>&1 &
child=$!
waited=0
while kill -0 "$child" 2>/dev/null; do
    sleep 5
    waited=$((waited + 5))
    if [ "$waited" -ge "$limit" ]; then
        echo "watchdog: still running after ${limit}s" >&2
        # Swift Testing prints `◇ Test "name" started.` and `✔/✘ Test "name" … after`.
        python3 - "$log" >&2 <<'PY'
import re, sys
started, ended = [], set()
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    if m := re.match(r'^\S+ Test "(.*)" started\.$', line.rstrip()):
        started.append(m.group(1))
    elif m := re.match(r'^\S+ Test "(.*?)" (?:with \d+ test cases? )?(?:passed|failed)', line):
        ended.add(m.group(1))
for name in started:
    if name not in ended:
        print(f"watchdog: started, never ended: {name}")
PY
        for pid in $(pgrep -s "$child" -f 'PackageTests.xctest'); do
            echo "=== process $pid: $(tr '\0' ' ' < /proc/$pid/cmdline 2>/dev/null | cut -c1-200)" >&2
            timeout 180 gdb -p "$pid" -batch -ex 'set pagination off' -ex 'thread apply all bt 40' >&2 2>&1 || true
        done
        kill -TERM -- -"$child" 2>/dev/null
        sleep 30
        kill -KILL -- -"$child" 2>/dev/null
        wait "$child" 2>/dev/null
        exit 124
    fi
done
wait "$child"
