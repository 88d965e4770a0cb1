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
    local run="$1" cores width threads pids=() failed=0
    shift
    cores="$(nproc)"
    width="${LANES:-$cores}"
    threads=$((cores / width > 0 ? cores / width : 1))
    while [ $# -gt 0 ]; do
        pids=()
        for arg in "${@:1:$width}"; do
            (OMP_NUM_THREADS="$threads" "$run" "$arg" 2>&1 | sed -u "s/^/[$arg] /") &
            pids+=("$!")
        done
        for pid in "${pids[@]}"; do
            wait "$pid" || failed=1
        done
        [ "$failed" = 0 ] || return 1  # nothing more starts after a failure
        shift $(($# < width ? $# : width))
    done
}
