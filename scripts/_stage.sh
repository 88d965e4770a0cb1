# Sourced by the pipeline scripts. stage OUT COMMAND...: run COMMAND unless OUT is already a finished
# artifact (it has a manifest), so that rerunning a pipeline skips what is done; print its wall time.
stage() {
    local out="$1" began
    shift
    if [ -f "$out/manifest.json" ]; then
        echo "finished already: $out" >&2
    else
        echo "+ $*" >&2
        began=$SECONDS
        "$@"
        echo "= $out in $((SECONDS - began)) s" >&2
    fi
}

# lanes FUNCTION ARG...: FUNCTION ARG for every ARG, as many at once as the machine has cores (LANES
# overrides), each run with an equal share of the cores as its threads and its lines prefixed [ARG];
# returns non-zero, starting nothing more, once one has failed. A small model's matrix products gain little from a second thread
# (1.37x on 2 cores for the demo's), so two runs of one thread each get through ~1.45x the work.
lanes() {
    # Bash scopes dynamically: a job's function sees these locals, so their names are ones no job reads.
    local lane_job="$1" lane_cores lane_width lane_threads lane_arg lane_pid lane_pids lane_failed=0
    shift
    lane_cores="$(nproc)"
    lane_width="${LANES:-$lane_cores}"
    lane_threads=$((lane_cores / lane_width > 0 ? lane_cores / lane_width : 1))
    while [ $# -gt 0 ]; do
        lane_pids=()
        for lane_arg in "${@:1:$lane_width}"; do
            (OMP_NUM_THREADS="$lane_threads" "$lane_job" "$lane_arg" 2>&1 | sed -u "s/^/[$lane_arg] /") &
            lane_pids+=("$!")
        done
        for lane_pid in "${lane_pids[@]}"; do
            wait "$lane_pid" || lane_failed=1
        done
        [ "$lane_failed" = 0 ] || return 1  # nothing more starts after a failure
        shift $(($# < lane_width ? $# : lane_width))
    done
}
