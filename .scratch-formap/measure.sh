#!/bin/bash
# usage: measure.sh N [limit] [pages]
N=$1; LIMIT=${2:-128M}
rm -rf /tmp/ms-$N /tmp/ms-$N.events; 
[ -n "$3" ] && export BPFTRACE_PERF_RB_PAGES=$3
STACKS=$N /work/main/dist/oomprof run --limit $LIMIT --out /tmp/ms-$N --events /tmp/ms-$N.events -- /tmp/manystacks > /tmp/ms-$N.log 2>&1
echo rc=$?
grep -o 'manystacks: .*' /tmp/ms-$N.log
python3 - "$N" <<'PY' 2>/dev/null || (grep -E '"armed"|"oom_kill"' /tmp/ms-$1.events | cut -c1-400)
PY
grep -E '"armed"' /tmp/ms-$N.events | grep -oE '"(walk|armed_ms)":[^,]*' | tr '\n' ' '
grep -E '"oom_kill"' /tmp/ms-$N.events | grep -oE '"(buckets|complete|lost_events|capture_ms|reason)":[^,]*' | tr '\n' ' '; echo
grep -E 'warning|gaps' /tmp/ms-$N.log | head -5
