#!/usr/bin/env bash
# Model-checks the foreign ingress protocol (loop/model/ingress.pml) with
# Spin, exhaustively, and checks that the model can fail: every mutant (a
# broken copy of one mechanism, selected with -DMUT_...) must be caught.
#
#   tools/check_spin_model.sh            # the checks, then all mutants
#   tools/check_spin_model.sh --full     # also: no cycles at all (slower)
#   tools/check_spin_model.sh --trail M [LTL]
#       # one counterexample of mutant M (or any defines, e.g.
#       # 'MUT_RESERVE_OVERSHOOT -DCAPACITY=1') against the safety check or the named ltl
#       # property, trimmed to the model's protocol steps
#
# Each check compiles pan.c for one property and prints the states explored.
# Exits non-zero if a check finds an error, a search is incomplete (memory or
# depth bound hit), or a mutant is not caught. Needs spin and gcc (Debian
# package `spin`; tools/install_deps.sh installs it).
set -euo pipefail

cd "$(dirname "$0")/.."
MODEL="$PWD/loop/model/ingress.pml"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

for tool in spin gcc; do
  if ! command -v "$tool" >/dev/null; then
    echo "check_spin_model: $tool not found (tools/install_deps.sh)" >&2
    exit 2
  fi
done

# Exhaustive search, no approximation: COLLAPSE only compresses the stored
# states (lossless). MEMLIM makes an out-of-memory search stop (and fail
# below, as incomplete) instead of swapping a shared machine.
GCC_FLAGS=(-w -DCOLLAPSE -DMEMLIM=2048)
OPT=-O2
PAN_DEPTH=-m100000

failures=0

# build NAME SPIN_DEFINES GCC_DEFINES: pan for one check in $WORK/NAME.
build() {
  local name="$1" spin_defs="$2" gcc_defs="$3"
  mkdir -p "$WORK/$name"
  (
    cd "$WORK/$name"
    cp "$MODEL" ingress.pml  # pan writes its trail beside the model
    # shellcheck disable=SC2086
    spin $spin_defs -a ingress.pml >spin.log 2>&1 || {
      cat spin.log
      exit 1
    }
    # shellcheck disable=SC2086
    gcc "$OPT" "${GCC_FLAGS[@]}" $gcc_defs -o pan pan.c
  )
}

# check NAME SPIN_DEFINES GCC_DEFINES PAN_ARGS [BUILT]: must find no error.
# BUILT: the name of an earlier check whose pan to reuse (same defines).
check() {
  local name="$1" spin_defs="$2" gcc_defs="$3" pan_args="$4" built="${5:-}"
  local start=$SECONDS
  if [ -n "$built" ]; then
    ln -s "$WORK/$built" "$WORK/$name"
  else
    build "$name" "$spin_defs" "$gcc_defs"
  fi
  local out
  # shellcheck disable=SC2086
  out="$(cd "$WORK/$name" && ./pan $PAN_DEPTH $pan_args 2>&1)" || true
  local states errors
  states="$(grep -Eo '[0-9.e+]+ states, stored' <<<"$out" | head -1)"
  errors="$(grep -Eo 'errors: [0-9]+' <<<"$out" | head -1)"
  if [ "$errors" = "errors: 0" ] && ! grep -qE 'Search not completed|max search depth too small|reached -DMEMLIM' <<<"$out"; then
    printf 'ok    %-26s %s, %ss\n' "$name" "$states" "$((SECONDS - start))"
  else
    printf 'FAIL  %-26s %s (%s)\n' "$name" "${errors:-no result}" "$states"
    grep -E 'pan:|violated|invalid end|acceptance cycle|non-progress|Search not completed|max search depth|MEMLIM' <<<"$out" | head -5
    failures=$((failures + 1))
  fi
}

# mutant NAME MACRO GCC_DEFINES PAN_ARGS: the check must find an error.
# Built without optimization: the search stops at the first error, so the
# compile dominates.
mutant() {
  local name="$1" macro="$2" gcc_defs="$3" pan_args="$4"
  OPT=-O0 build "$name" "-D$macro" "$gcc_defs"
  local out
  # shellcheck disable=SC2086
  out="$(cd "$WORK/$name" && ./pan $PAN_DEPTH $pan_args 2>&1)" || true
  local what
  what="$(grep -Eo 'pan:1: .*' <<<"$out" | head -1 | sed 's/ (at depth.*//')" || true
  if [ -n "$what" ]; then
    # A violated safety claim shows as its negated formula: name it instead.
    if [[ "$pan_args" == *"-N "* && "$what" == *"assertion violated  !("* ]]; then
      what="ltl ${pan_args##*-N } violated"
    fi
    printf 'ok    %-26s caught: %s\n' "$name" "${what#pan:1: }"
  else
    printf 'FAIL  %-26s NOT caught by %s\n' "$name" "${pan_args:-safety}"
    failures=$((failures + 1))
  fi
}

SAFETY="-DSAFETY -DNOCLAIM"

if [ "${1:-}" = "--trail" ]; then
  # --trail MACRO [LTL]: MACRO is a mutant (MUT_...) or any defines without
  # the first -D, e.g. 'CAPACITY=1' or 'MUT_NO_RELEASE -DCAPACITY=1'.
  macro="${2:?--trail needs a mutant macro, e.g. MUT_NO_WAKE_WRITE}"
  ltl="${3:-}"  # An ltl block's name, or the safety check.
  if [ -n "$ltl" ]; then
    build trail "-D$macro" ""
    pan_args=(-a -N "$ltl")
  else
    build trail "-D$macro" "$SAFETY"
    pan_args=(-i)  # The shortest counterexample (iterative deepening).
  fi
  (cd "$WORK/trail" && ./pan $PAN_DEPTH "${pan_args[@]}" >/dev/null 2>&1 || true)
  cd "$WORK/trail"
  [ -f ingress.pml.trail ] || { echo "no counterexample for $macro"; exit 1; }
  # The protocol steps only: each executed statement whose model line names a
  # step (P.., W.., X.., L-..) in a comment, printed once per source line
  # and step number, with that comment; then the violation.
  # shellcheck disable=SC2086
  spin -D$macro -t -p ingress.pml 2>&1 |
    awk 'FNR == NR { src[FNR] = $0; next }
         /violated|invalid end|acceptance cycle/ { print; next }
         match($0, /ingress\.pml:[0-9]+/) {
           ln = substr($0, RSTART + 12, RLENGTH - 12)
           c = src[ln]
           if (c !~ /\/\* *(P[0-9]|W[0-9]|X[0-9]|L-[A-Z]+[0-9]*|mutant|refused|reserved|PostNeverFull)/) next
           split($0, f, ":"); step = f[1] + 0
           if (ln == last_ln && step == last_step) next
           last_ln = ln; last_step = step
           sub(/.*\/\* */, "", c); sub(/ *\*\/.*/, "", c)
           proc = $0; sub(/^ *[0-9]+:[ \t]*proc +/, "", proc); sub(/\).*/, ")", proc)
           printf "%5d  %-16s %s\n", step, proc, c
           next
         }' ingress.pml -
  exit 0
fi

echo "== spin: the C++ step comments name steps of the model"
# Every `// ingress.pml: <steps>` comment in loop/ names steps (P.., W..,
# X.., L-..) that the model labels.
steps_missing=0
while IFS= read -r step; do
  if ! grep -qE "(^|[^A-Za-z0-9-])${step}([^0-9]|$)" "$MODEL"; then
    echo "FAIL  step comment names $step, which the model does not label"
    steps_missing=$((steps_missing + 1))
  fi
done < <(grep -rhoE --include='*.cc' --include='*.h' 'ingress\.pml: .*' loop |
  grep -oE '(^|[^A-Za-z0-9-])(P[0-9]+|W[0-9]+|X[0-9]+|L-[A-Z]+[0-9]*)' |
  sed 's/^[^A-Z]*//' | sort -u)
if [ "$steps_missing" -eq 0 ]; then
  printf 'ok    %-26s %s\n' step_comments "$(grep -rlE --include='*.cc' --include='*.h' 'ingress\.pml: ' loop | wc -l) files"
fi
failures=$((failures + steps_missing))

echo "== spin: the model (loop, two posters, a destroyer), exhaustive"
# Assertions (each accepted post runs once, in FIFO order per poster, never
# after its context's FreeContext; a pinned push never finds the ingress
# closed; no poster touches a destroyed loop; the final state) and invalid
# end states (a lost stop or a lost wake-up that strands the loop asleep, a
# shutdown that waits forever).
check safety "" "$SAFETY" ""
# The same with the pending-work bound (the code's: reserve before the push,
# release after the tasks ran) and a WaitForRoom caller: the reserved tasks
# not yet run never exceed the bound, a refused post never runs, Stop() and
# PostNeverFull are exempt, a waiter is woken at shutdown at the latest.
check safety_capacity "-DCAPACITY=1" "$SAFETY" ""
# LTL: never asleep with nodes queued and no wake-up owed.
check ltl_no_lost_wake "" "" "-a -N no_lost_wake"
# LTL: a foreign Stop() that pushed its node makes Run() return (weak
# fairness; Spin extends terminal states by stuttering, so a loop asleep
# forever is an accepting cycle).
check ltl_no_lost_stop "" "" "-a -f -N no_lost_stop" ltl_no_lost_wake
# LTL: no waiter blocked while pending <= limit/2 and the loop idle (the
# model found this violated by a Reserve that overshoots the limit for a
# moment; the code reserves with a compare-and-swap now, and the old form is
# the mutant reserve_overshoot below).
check ltl_no_stuck_waiter "-DCAPACITY=1" "" "-a -N no_stuck_waiter"
if [ "${1:-}" = "--full" ]; then
  # No cycles at all (no progress labels: every cycle would be reported), so
  # every execution ends, which the invalid end state check above judges.
  check no_cycles "" "-DNP -DNOCLAIM" "-l"
fi

echo "== spin: mutants (each must be caught)"
mutant no_wake_write MUT_NO_WAKE_WRITE "" "-a -N no_lost_wake"
mutant no_batch_end_take MUT_NO_BATCH_END_TAKE "" "-a -N no_lost_wake"
mutant take_before_read MUT_TAKE_BEFORE_READ "" "-a -N no_lost_wake"
mutant stop_flag_after_push MUT_STOP_FLAG_AFTER_PUSH "" "-a -f -N no_lost_stop"
mutant arm_with_store MUT_ARM_STORE "$SAFETY" ""
mutant no_reverse MUT_NO_REVERSE "$SAFETY" ""
mutant unpin_before_push MUT_UNPIN_BEFORE_PUSH "$SAFETY" ""
mutant close_before_pins MUT_CLOSE_BEFORE_PINS "$SAFETY" ""
mutant close_no_drain MUT_CLOSE_NO_DRAIN "$SAFETY" ""
mutant no_wait_earlier_pins MUT_NO_WAIT_EARLIER_PINS "$SAFETY" ""
mutant release_on_take "MUT_RELEASE_ON_TAKE -DCAPACITY=1" "$SAFETY" ""
mutant no_release "MUT_NO_RELEASE -DCAPACITY=1" "$SAFETY" ""
mutant stop_counted "MUT_STOP_COUNTED -DCAPACITY=1" "$SAFETY" ""
# With the compare-and-swap Reserve every waiter in this model is woken by a
# release before shutdown, so shutdown's wake-up (L-SR) is exercised where a
# release is missed: on the overshooting Reserve (which lets one be missed).
mutant no_room_close "MUT_NO_ROOM_CLOSE -DMUT_RESERVE_OVERSHOOT -DCAPACITY=1" "$SAFETY" ""
mutant wait_read_before_register "MUT_WAIT_READ_BEFORE_REGISTER -DCAPACITY=1" "" "-a -N no_stuck_waiter"
mutant waiters_before_release "MUT_WAITERS_BEFORE_RELEASE -DCAPACITY=1" "" "-a -N no_stuck_waiter"
mutant reserve_overshoot "MUT_RESERVE_OVERSHOOT -DCAPACITY=1" "" "-a -N no_stuck_waiter"

if [ "$failures" -ne 0 ]; then
  echo "check_spin_model: $failures FAILED"
  exit 1
fi
echo "check_spin_model: all passed"
