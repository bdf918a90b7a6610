#!/bin/sh
# runc, less `process.rlimits`: this sandbox refuses setrlimit(2), so runc
# fails to start any container whose bundle asks for limits (podman's
# always do). Given to podman as `--runtime`; everything else is runc's.
# `create`/`run` read the bundle's config.json, `exec` a process file.
bundle=
process=
prev=
for a in "$@"; do
    case "$prev" in --bundle | -b) bundle=$a ;; --process | -p) process=$a ;; esac
    case "$a" in --bundle=*) bundle=${a#--bundle=} ;; --process=*) process=${a#--process=} ;; esac
    prev=$a
done
drop() { jq "$1" "$2" >"$2.tmp" && mv "$2.tmp" "$2"; }
if [ -n "$bundle" ] && [ -f "$bundle/config.json" ]; then
    drop 'del(.process.rlimits)' "$bundle/config.json"
fi
if [ -n "$process" ] && [ -f "$process" ]; then
    drop 'del(.rlimits)' "$process"
fi
exec runc "$@"
