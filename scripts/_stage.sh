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
