#!/bin/bash
# Cron wrapper for `autopyfactory mon-stale`: one run at a time. When the previous run still
# holds the lock, this one exits 0 at once (flock -n -E 0), so cron mail stays quiet.
# Environment: FACTORY_CONFIG (default /etc/autopyfactory/factory.conf), APF_LOCK_DIR (default
# /var/lib/autopyfactory), AUTOPYFACTORY (the command, default autopyfactory).
set -u
config=${FACTORY_CONFIG:-/etc/autopyfactory/factory.conf}
lock=${APF_LOCK_DIR:-/var/lib/autopyfactory}/mon-stale.lock
exec flock -n -E 0 "$lock" "${AUTOPYFACTORY:-autopyfactory}" mon-stale -c "$config" "$@"
