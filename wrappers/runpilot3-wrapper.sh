#!/bin/bash
#
# runpilot3-wrapper.sh - the autopyfactory pilot wrapper: what every pilot runs on a worker node.
#
# It reports to the monitor (in the background: never holding up the pilot), makes a fresh work
# dir, fetches and checks the pilot code, prints what is needed to debug a bad node, finds a python,
# sources the site set-up, runs the pilot with this script's arguments, forwards signals to it, and
# exits with the pilot's exit code.
# Every failure of the wrapper itself prints one line starting with "WRAPPER ERROR:" on stderr,
# reports "fault" to the monitor and exits with one of the codes below.
#
# Usage (as the batch system calls it; the interface of the ATLAS production wrapper,
# PanDAWMS/pilot-wrapper runpilot2-wrapper.sh):
#   runpilot3-wrapper.sh -q <queue> [-s <site>] [-r <resource>] [-j <job label>] [-i <pilot type>]
#                        [--piloturl <URL>] [--pilotversion <version>] [--pythonversion 3[.N]]
#                        [--container] [--mute] [--localpy] [-k <memory MB>] [pilot.py arguments]
#   runpilot3-wrapper.sh -h | --help
# The wrapper's own options:
#   -q QUEUE             PanDA queue (required); pilot.py gets -q QUEUE
#   -s SITE              site name for the ATLAS local site set-up (setup.sh -s SITE) [the queue]
#   -r RESOURCE          PanDA resource (logged; pilot 3 finds it from the queue)
#   -j LABEL             prodSourceLabel the pilot asks for; pilot.py gets -j LABEL [managed]
#   -i TYPE              pilot type (PR, RC, PT, ALRB); pilot.py gets -i TYPE [PR]
#   --piloturl URL       the pilot tarball (http(s):// or file://); wins over PILOT_HTTP_SOURCES
#   --pilotversion V     pilot3-V.tar.gz from CVMFS instead of pilot3.tar.gz (latest, current, 3:
#                        the current one; 1 and 2 are refused)
#   --pythonversion V    3 (default) or 3.N (python3.N is tried first); 2 is refused
#   --container          running inside a container: no DDM nor ATLAS local site set-up
#   --mute               no monitor reports
#   --localpy            use the node's python (what this wrapper always does; accepted, noted)
#   -k MB                virtual memory limit of the pilot process (ulimit -v), not of the wrapper
# Every other argument is handed to pilot.py unchanged, each as one argument (e.g. --pilot-user,
# --url, -p, -w, --resource-type, -d). APF 1 style options that pilot 3 would misread are refused
# (exit 118): "-h <queue>" (pilot 3's -h is its help), "-w <server URL>" (-w is pilot 3's
# workflow; the server goes in --url) and "-u <label>" (-u takes no value; the label is -j).
#
# Pilot sources, tried in order: --piloturl; else PILOT_HTTP_SOURCES; else the PanDA server's cache
# http://<host of --url>:25085/cache/pilot/pilot3.tar.gz (when --url is given and no --pilotversion),
# then file://$ATLAS_SW_BASE/atlas.cern.ch/repo/sw/PandaPilot/tar/pilot3[-<version>].tar.gz.
#
# Exit codes (the monitor gets the same number as rc):
#   0       the pilot ran a PanDA job (pilot exit 0 and a job id in pandaIDs.out)
#   20      the pilot asked PanDA and got no job (pilot 3 exits 0 then, without a job id)
#   119     PanDA refused the pilot's getJob (e.g. HTTP 403 "method getJob is forbidden") or gave no
#           readable answer: pilot 3 logged "fatal error in job download loop" in its pilotlog.txt
#           and exited 0 without a job id
#   1-113, 120-255 the pilot's own exit code, or the number in the STATUSCODE file it wrote. Pilot 3:
#           1 general failure (e.g. the payload failed), 2 pilot 3 rejected its arguments, 64-113
#           pilot errors (e.g. 68 no valid proxy, 69 no local space, 71 no queuedata, 78 queue not
#           active, 79 getJob/PanDA server communication failure), 128+N killed by signal N
#           (131 SIGQUIT, 137 SIGKILL, 143 SIGTERM, 144 SIGUSR1)
#   114  usage: bad or missing arguments
#   115  no usable work directory ($OSG_WN_TMP, $TMPDIR and the current dir all failed)
#   116  pilot code not fetched: no source gave a gzip tarball containing pilot.py (or no curl)
#   117  no working python (APF_PYTHON, python3, python)
#   118  an APF 1 style option pilot 3 would misread (see above); nothing was run
#   128+N  the wrapper got signal N before the pilot was started (its WRAPPER ERROR line tells
#          this apart from a pilot killed by signal N)
#
# Signals (TERM, INT, USR1, QUIT): before the pilot runs, a download or monitor call under way is
# stopped at once and the wrapper reports fault and exits. While the pilot runs, the signal is
# forwarded to it; a pilot still running APF_PILOT_GRACE seconds later is killed (SIGKILL). After a
# signal every monitor call gets at most APFMON_SIGNAL_MAX_TIME seconds and no retry. So the
# wrapper exits within APFMON_SIGNAL_MAX_TIME + 1 s of a signal before the pilot started, and within
# APF_PILOT_GRACE + APFMON_SIGNAL_MAX_TIME + 1 s while it runs (4 s and 9 s with the defaults; the
# batch system's kill grace should be at least that much).
#
# Monitor reports ride out an outage without holding up the pilot. "running" is sent in the
# background as the wrapper starts; the pilot starts at once. Each report is retried while the
# monitor does not answer, answers 5xx or 429, or answers 404 (the factory may not have announced
# this pilot yet): pauses of APFMON_RETRY_DELAY seconds, doubling up to 60 s, at most
# APFMON_RETRIES times, no attempt starting later than APFMON_RUNNING_WINDOW seconds after the
# wrapper's start (running) or APFMON_EXIT_WINDOW seconds after the pilot ended (exiting, fault).
# When the pilot ends, a running report still being retried gives way to the exiting one (which
# the monitor accepts also for a pilot it still has as CREATED); an attempt under way is finished
# first. So with a monitor that never answers the wrapper exits at most APFMON_EXIT_WINDOW +
# 2 x APFMON_MAX_TIME seconds after its pilot (340 s with the defaults); with one that answers,
# at once. Other refusals (403 a wrong pilot key, 409 an illegal move, 4xx) are not retried.
#
# Environment read (production defaults in brackets; a timeout must be > 0, a bad value is
# reported and replaced by its default):
#   APF_FORCE_<VAR>            exported as <VAR> before anything else (sites overwrite condor's env)
#   APFMON                     monitor API root, e.g. http://host:port/api [unset: no reports]
#   APFMON_API                 v2 (POST $APFMON/jobs/$APFFID:$APFCID) or v1 (GET $APFMON/rn|ex/...) [v2]
#   APFFID, APFCID             factory id and condor cluster.proc of this pilot (set by the factory)
#   APFMON_CONNECT_TIMEOUT     seconds to connect to the monitor [10]
#   APFMON_MAX_TIME            seconds for one monitor call [20]
#   APFMON_RETRIES             extra attempts after a failed monitor call, at most [20]
#   APFMON_RETRY_DELAY         seconds before the first retry, doubled for each next one up to 60 [5]
#   APFMON_RUNNING_WINDOW      seconds from the wrapper's start to retry "running" in [600]
#   APFMON_EXIT_WINDOW         seconds from the pilot's end to retry "exiting"/"fault" in [300]
#   APFMON_KEY                 this pilot's key for its own record at the monitor (apfp_..., from
#                              the factory): sent with every v2 report (Authorization: Bearer, from
#                              a private curl config file, never on a command line) and removed from
#                              the environment before anything runs [unset: reports carry no key]
#   APFMON_SIGNAL_MAX_TIME     seconds for a monitor call after a signal (no retries) [3]
#   APF_PILOT_GRACE            seconds a signalled pilot gets before SIGKILL [5]
#   PILOT_HTTP_SOURCES         space separated URLs of the pilot tarball, tried in order (file:// works);
#                              --piloturl wins over it [see "Pilot sources" above]
#   PILOT_HTTP_CONNECT_TIMEOUT seconds to connect to a pilot source [30]
#   PILOT_HTTP_MAX_TIME        seconds for one download attempt [180]
#   PILOT_HTTP_RETRIES         curl --retry for one source (transient errors only) [2]
#   PILOT_HTTP_RETRY_DELAY     whole seconds between download attempts [5]
#   ATLAS_SW_BASE              CVMFS mount point [/cvmfs]
#   OSG_WN_TMP, TMPDIR         where the work dir is made (first usable of these, then the current dir)
#   APF_KEEP_WORKDIR           non-empty: do not remove the work dir at the end
#   APF_PYTHON                 python interpreter to try first (then python3, then python)
#   VO_ATLAS_SW_DIR            ATLAS software area [$ATLAS_SW_BASE/atlas.cern.ch/repo/sw];
#                              $VO_ATLAS_SW_DIR/ddm/latest/setup.sh is sourced when present
#   ATLAS_LOCAL_AREA           site set-up area [$VO_ATLAS_SW_DIR/local]; its setup.sh is sourced
#                              with "-s <site>" when present
#   X509_USER_PROXY            shown (path only) with voms-proxy-info/arcproxy output when available
#   FACTORYQUEUE, GTAG, PANDA_JSID  set by the factory; passed to the pilot untouched
# Values of variables named like *TOKEN*, *PASSW*, *SECRET*, *CREDENTIAL*, *KEY, and any value
# holding a PEM block (proxy contents), are masked in the printed environment.
#
# Needs bash >= 4.2, curl, tar, gzip and coreutils. Functions and globals are prefixed "apf_" so
# that sourced site scripts are unlikely to clobber them.

set -u

apf_version="0.2.0"
apf_startdir=$PWD
apf_main_pid=$BASHPID # the EXIT trap also runs in copies of this shell (see apf_cleanup)
apf_workdir=""
apf_scratch=""      # a private temp dir: curl's HTTP status, the monitor key's curl config (removed at exit)
apf_mon_config=""   # curl config file with this pilot's monitor key (see apf_monitor_key)
apf_running_pid=""  # the background process reporting "running" (see apf_running_start)
apf_reporter=""     # in that process: "yes", then "stop" or "stop-now" when told (apf_reporter_stop)
apf_child_kind=""   # "pause" while apf_wait_child waits for a retry pause, not a monitor call
apf_start_time=""   # epoch seconds when the wrapper started
apf_pilot_pid=""
apf_child_pid=""    # the curl or sleep the wrapper is waiting for (killed at once on a signal)
apf_watchdog_pid="" # kills the pilot APF_PILOT_GRACE seconds after a signal
apf_watchdog_fd=""  # this shell's end of the pipe the watchdog reads: closing it stops the watchdog
apf_pending_signal=""
apf_pilot_done=""
apf_signalled=""    # set by the traps; never reset: after a signal, monitor calls are short
apf_wait_signalled="" # set by the traps, reset by the wait loops
apf_mute=""
# Numeric settings, filled from the environment by apf_setting.
apf_mon_connect="" apf_mon_max_time="" apf_mon_retries="" apf_mon_delay="" apf_mon_signal_time=""
apf_mon_running_window="" apf_mon_exit_window=""
apf_http_connect="" apf_http_max_time="" apf_http_retries="" apf_http_delay="" apf_pilot_grace=""

apf_log() {
    printf '%(%Y-%m-%dT%H:%M:%S%z)T [wrapper] %s\n' -1 "$*"
}

apf_section() {
    printf '\n---- %s ----\n' "$*"
}

apf_usage() {
    cat <<EOF
usage: runpilot3-wrapper.sh -q <queue> [-s <site>] [-r <resource>] [-j <job label>] [-i <pilot type>]
                            [--piloturl <URL>] [--pilotversion <version>] [--pythonversion 3[.N]]
                            [--container] [--mute] [--localpy] [-k <memory MB>] [pilot.py arguments]
       runpilot3-wrapper.sh -h | --help
pilot.py gets -q <queue> -j <job label> -i <pilot type> and every argument that is not the
wrapper's own, e.g.: --pilot-user ATLAS --url https://pandaserver.cern.ch -p 25443 -w generic
Exit codes: 0 ran a job, 20 no job, 119 getJob refused by PanDA, else the pilot's own; the
wrapper's: 114 usage, 115 no work dir, 116 pilot not fetched, 117 no python, 118 APF 1 style option
refused, 128+N signal N before the pilot started. See the header of this script for details and
the environment.
EOF
}

# Print the one error line, tell the monitor, exit (the EXIT trap removes the work dir).
apf_die() {
    local code=$1
    shift
    apf_dying=yes
    printf 'WRAPPER ERROR: %s\n' "$*" >&2
    apf_running_stop
    apf_monitor fault "$code"
    exit "$code"
}

apf_usage_error() {
    apf_usage >&2
    apf_die 114 "$*"
}

# apf_setting VAR ENVNAME DEFAULT KIND: a numeric setting from the environment. KIND is count
# (integer >= 0), seconds (>= 0, decimals allowed) or timeout (seconds > 0: curl reads 0 as "none").
apf_setting() {
    local value=${!2:-} pattern='^[0-9]+$'
    case $4 in
        seconds) pattern='^[0-9]+([.][0-9]+)?$' ;;
        timeout) pattern='^([0-9]*[1-9][0-9]*([.][0-9]+)?|[0-9]+[.][0-9]*[1-9][0-9]*)$' ;;
    esac
    if [ -z "$value" ]; then
        value=$3
    elif ! [[ $value =~ $pattern ]]; then
        apf_log "WARNING: $2=$value is not a valid $4, using $3"
        value=$3
    fi
    printf -v "$1" '%s' "$value"
}

apf_apply_forced_env() {
    local var name
    for var in $(compgen -e); do
        case $var in
            APF_FORCE_?*) ;;
            *) continue ;;
        esac
        name=${var#APF_FORCE_}
        if export "$name=${!var}" 2>/dev/null; then
            apf_log "$var: exported as $name"
        else
            apf_log "WARNING: $var: cannot set $name (read-only in bash), ignored"
        fi
    done
}

# ---- monitor ------------------------------------------------------------------------------

apf_monitor_init() {
    apf_setting apf_mon_connect APFMON_CONNECT_TIMEOUT 10 timeout
    apf_setting apf_mon_max_time APFMON_MAX_TIME 20 timeout
    apf_setting apf_mon_retries APFMON_RETRIES 20 count
    apf_setting apf_mon_delay APFMON_RETRY_DELAY 5 seconds
    apf_setting apf_mon_running_window APFMON_RUNNING_WINDOW 600 count
    apf_setting apf_mon_exit_window APFMON_EXIT_WINDOW 300 count
    apf_setting apf_mon_signal_time APFMON_SIGNAL_MAX_TIME 3 timeout
    apf_setting apf_pilot_grace APF_PILOT_GRACE 5 count
    apf_mon_api=${APFMON_API:-v2}
    case $apf_mon_api in
        v1 | v2) ;;
        *)
            apf_log "WARNING: APFMON_API=$apf_mon_api is not v1 or v2, using v2"
            apf_mon_api=v2
            ;;
    esac
    apf_mon_url=${APFMON:-}
    apf_mon_url=${apf_mon_url%/}
    if [ -n "$apf_mute" ]; then
        apf_log "monitor: --mute, no reports"
        apf_mon_url=""
    elif [ -z "$apf_mon_url" ]; then
        apf_log "monitor: APFMON is not set, no reports"
    elif [ -z "${APFFID:-}" ] || [ -z "${APFCID:-}" ]; then
        apf_log "monitor: APFFID or APFCID is not set, no reports to $apf_mon_url"
        apf_mon_url=""
    else
        apf_log "monitor: $apf_mon_url (API $apf_mon_api) as $APFFID:$APFCID"
        apf_make_scratch
    fi
    apf_monitor_key
}

# The scratch dir, made before any report (the background reporter must share it, not make its own).
apf_make_scratch() {
    [ -z "$apf_scratch" ] || [ ! -d "$apf_scratch" ] || return 0
    apf_scratch=$(mktemp -d 2>/dev/null || mktemp -d /tmp/apf_wrapper.XXXXXXXX 2>/dev/null) || apf_scratch=""
    [ -n "$apf_scratch" ]
}

# APFMON_KEY: this pilot's key for its own record at the monitor (the factory gives each pilot
# one and announces its digest). It goes into a curl config file in the private scratch dir, never
# onto a command line (ps shows those to every user of the node), and leaves the environment, so
# that neither the pilot nor its payload sees it. A value that is not a pilot key is not sent.
apf_monitor_key() {
    local key=${APFMON_KEY:-}
    unset APFMON_KEY APF_FORCE_APFMON_KEY
    [ -n "$key" ] || return 0
    if [ -z "${apf_mon_url:-}" ]; then
        return 0
    elif [ "$apf_mon_api" != v2 ]; then
        apf_log "WARNING: API v1 reports cannot carry APFMON_KEY: sent without it"
    elif ! [[ $key =~ ^apfp_[A-Za-z0-9_-]{43}$ ]]; then
        apf_log "WARNING: APFMON_KEY is not a pilot key (apfp_ and 43 characters): reports sent without it"
    elif [ -n "$apf_scratch" ] && (umask 077 && printf 'header = "Authorization: Bearer %s"\n' "$key" >"$apf_scratch/monitor.curl"); then
        apf_mon_config=$apf_scratch/monitor.curl
        apf_log "monitor: reports carry this pilot's key (APFMON_KEY)"
    else
        apf_log "WARNING: no private place for APFMON_KEY: reports sent without it"
    fi
}

# apf_wait_child CMD...: run CMD in the background and wait for it, so that a trapped signal is
# handled at once (bash runs traps only between commands, and a foreground curl would delay it);
# the traps kill apf_child_pid. CMD's stdout goes to apf_child_out when that is set: redirecting
# this function's own output would also capture what a trap running inside it prints.
apf_wait_child() {
    local status
    if [ -n "${apf_child_out:-}" ]; then
        "$@" >"$apf_child_out" &
    else
        "$@" &
    fi
    apf_child_out=""
    apf_child_pid=$!
    # told to stop now between the fork and the line above: the trap could not kill this child
    if [ "$apf_reporter" = stop-now ]; then kill -KILL "$apf_child_pid" 2>/dev/null; fi
    apf_wait_signalled=""
    wait "$apf_child_pid"
    status=$?
    # a trap that returned (a late signal while the pilot runs) interrupts wait: wait again
    while [ -n "$apf_wait_signalled" ] && [ "$status" -gt 128 ] && kill -0 "$apf_child_pid" 2>/dev/null; do
        apf_wait_signalled=""
        wait "$apf_child_pid"
        status=$?
    done
    apf_child_pid=""
    return "$status"
}

# apf_http_code CURL-ARGS...: one monitor call; sets apf_http to the HTTP status and returns
# curl's exit code. No command substitution: a signal must reach this shell's trap at once.
apf_http_code() {
    local status out
    apf_http=""
    if [ -z "$apf_scratch" ] || [ ! -d "$apf_scratch" ]; then # nowhere to write: a plain call (a signal waits for it)
        apf_http=$(curl -sS -o /dev/null -w '%{http_code}' "$@")
        return
    fi
    out=$apf_scratch/http_code.$BASHPID # the background reporter has its own
    apf_child_out=$out
    apf_wait_child curl -sS -o /dev/null -w '%{http_code}' "$@"
    status=$?
    read -r apf_http <"$out" 2>/dev/null
    return "$status"
}

# apf_monitor running | exiting RC [IDS] | fault RC. Retried while the monitor does not answer,
# answers 5xx, 429 or 404 (the factory's announcement of this pilot may still be on its way):
# pauses of APFMON_RETRY_DELAY, doubling up to 60 s, at most APFMON_RETRIES times, and no attempt
# starts after the window (APFMON_RUNNING_WINDOW for running, from the wrapper's start; else
# APFMON_EXIT_WINDOW from now). After a signal: one short attempt. A monitor failure is logged and
# never changes what the wrapper does.
apf_monitor() {
    local state=$1 rc=${2:-} ids=${3:-} url attempt=0 http status connect=$apf_mon_connect
    local max_time=$apf_mon_max_time retries=$apf_mon_retries delay_ms deadline now pause
    local -a args
    [ -n "${apf_mon_url:-}" ] || return 0
    if [ -n "$apf_signalled" ]; then
        max_time=$apf_mon_signal_time retries=0
        connect=$max_time
    fi
    printf -v now '%(%s)T' -1
    deadline=$((now + apf_mon_exit_window))
    [ "$state" != running ] || deadline=$((apf_start_time + apf_mon_running_window))
    apf_milliseconds delay_ms "$apf_mon_delay"
    if [ "$apf_mon_api" = v1 ]; then
        # v1 has no fault state: a failing wrapper reports "exiting" with its own non-zero code.
        case $state in
            running) url="$apf_mon_url/rn/$APFFID/$APFCID/" ;;
            *) url="$apf_mon_url/ex/$APFFID/$APFCID/$rc/" ;;
        esac
        args=(--get)
    else
        url="$apf_mon_url/jobs/$APFFID:$APFCID"
        args=(--data "state=$state")
        [ -n "$rc" ] && args+=(--data "rc=$rc")
        [ -n "$ids" ] && args+=(--data-urlencode "ids=$ids")
        [ -n "$apf_mon_config" ] && args=(-K "$apf_mon_config" "${args[@]}")
    fi
    while :; do
        attempt=$((attempt + 1))
        apf_http_code --connect-timeout "$connect" --max-time "$max_time" "${args[@]}" "$url"
        status=$?
        http=$apf_http
        if [ "$status" -eq 0 ] && [[ $http == 2[0-9][0-9] ]]; then
            apf_log "monitor: $state reported (HTTP $http)"
            return 0
        fi
        if [ "$status" -eq 0 ] && [[ $http == 4[0-9][0-9] ]] && [ "$http" != 404 ] && [ "$http" != 429 ]; then
            apf_log "WARNING: monitor refused $state (HTTP $http), not retrying"
            return 0
        fi
        apf_log "WARNING: monitor: $state attempt $attempt failed (curl exit $status, HTTP ${http:-none})"
        printf -v now '%(%s)T' -1
        if [ "$attempt" -gt "$retries" ] || [ -n "$apf_signalled" ] || [[ $apf_reporter == stop* ]] ||
            [ $((now * 1000 + delay_ms)) -gt $((deadline * 1000)) ]; then
            apf_log "WARNING: monitor: giving up on $state after $attempt attempts; the pilot is not affected"
            return 0
        fi
        printf -v pause '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000))
        apf_child_kind=pause
        apf_wait_child sleep "$pause"
        apf_child_kind=""
        [[ $apf_reporter != stop* ]] || return 0
        delay_ms=$((delay_ms * 2 > 60000 ? 60000 : delay_ms * 2))
    done
}

# apf_milliseconds VAR SECONDS: "5" or "0.25" as whole milliseconds in VAR (bash has integers only).
apf_milliseconds() {
    local whole=${2%%.*} fraction=000
    [[ $2 == *.* ]] && fraction=${2#*.}000
    printf -v "$1" '%d' $((10#$whole * 1000 + 10#${fraction:0:3}))
}

# The running report goes out in the background: the pilot starts at once, whatever the monitor
# does, and the report may be retried while the pilot runs (a monitor outage, or a 404 while the
# factory's announcement is on its way) for APFMON_RUNNING_WINDOW seconds from the wrapper's start.
apf_running_start() {
    [ -n "${apf_mon_url:-}" ] || return 0
    (
        apf_reporter=yes
        trap 'apf_reporter_stop finish' USR2
        trap 'apf_reporter_stop now' TERM INT USR1 QUIT
        apf_monitor running
    ) &
    apf_running_pid=$!
}

# In the background reporter. "finish" (the pilot has ended): an attempt under way is finished, a
# pause is cut short, no more attempts. "now" (a signal): the attempt under way is stopped too.
# shellcheck disable=SC2317 # called from a trap
apf_reporter_stop() {
    apf_wait_signalled=yes
    if [ "$1" = now ] || [ "${apf_child_kind:-}" = pause ]; then
        apf_reporter=stop-now
        apf_kill_child
    else
        apf_reporter=stop
    fi
    if [ "$1" = now ]; then exit 0; fi
}

# apf_running_stop [now]: the pilot has ended (or the wrapper is failing): the running report
# gives way to the exiting (or fault) report, which supersedes it. An attempt under way is awaited
# (at most APFMON_MAX_TIME), unless the wrapper was signalled (or "now"): then it stops at once.
apf_running_stop() {
    [ -n "$apf_running_pid" ] || return 0
    if [ -n "$apf_signalled" ] || [ "${1:-}" = now ]; then
        kill -TERM "$apf_running_pid" 2>/dev/null
    else
        kill -USR2 "$apf_running_pid" 2>/dev/null
    fi
    # a trap (a signal meanwhile, which also stops the reporter at once) interrupts wait: again
    while kill -0 "$apf_running_pid" 2>/dev/null; do wait "$apf_running_pid" 2>/dev/null; done
    apf_running_pid=""
}

# ---- arguments ----------------------------------------------------------------------------

# Pilot 3's workflows (pilot.py -w choices): any other -w value is APF 1's PanDA server URL.
apf_workflows=" generic generic_hpc production production_hpc analysis analysis_hpc eventservice_hpc stager payload_stageout "

apf_old_option() {
    apf_usage >&2
    apf_die 118 "$* (an APF 1 style option that pilot 3 would misread; nothing was run)"
}

# apf_need_value OPTION ARGS...: the option's value must follow and must not look like an option.
apf_need_value() {
    if [ $# -lt 2 ] || [ -z "$2" ] || [[ $2 == -* ]]; then
        apf_usage_error "option $1 needs a value"
    fi
}

# apf_followed_by_word ARGS...: the option $1 is followed by a value that is not an option.
apf_followed_by_word() {
    [ $# -ge 2 ] && [ -n "$2" ] && [[ $2 != -* ]]
}

apf_parse_args() {
    apf_queue="" apf_site="" apf_resource="" apf_job_label=managed apf_pilot_type=PR apf_memory_mb=""
    apf_piloturl="" apf_pilotversion="" apf_pythonversion=3 apf_container="" apf_localpy=""
    apf_panda_url=""
    apf_pilot_args=()
    while [ $# -gt 0 ]; do
        case $1 in
            --help)
                apf_usage
                exit 0
                ;;
            -h)
                if apf_followed_by_word "$@"; then
                    apf_old_option "-h $2: the queue is -q <queue> (-h is help)"
                fi
                apf_usage
                exit 0
                ;;
            -q | -s | -r | -j | -i | -k | --piloturl | --pilotversion | --pythonversion)
                apf_need_value "$@"
                case $1 in
                    -q) apf_queue=$2 ;;
                    -s) apf_site=$2 ;;
                    -r) apf_resource=$2 ;;
                    -j) apf_job_label=$2 ;;
                    -i) apf_pilot_type=$2 ;;
                    -k) apf_memory_mb=$2 ;;
                    --piloturl) apf_piloturl=$2 ;;
                    --pilotversion) apf_pilotversion=$2 ;;
                    --pythonversion) apf_pythonversion=$2 ;;
                esac
                shift 2
                ;;
            --container) apf_container=yes && shift ;;
            --mute) apf_mute=yes && shift ;;
            --localpy) apf_localpy=yes && shift ;;
            -w)
                if [ $# -ge 2 ] && [[ $apf_workflows != *" $2 "* ]]; then
                    apf_old_option "-w $2: -w is pilot 3's workflow (generic, ...); the PanDA server goes in --url"
                fi
                apf_pilot_args+=("$1")
                shift
                ;;
            -u)
                if apf_followed_by_word "$@"; then
                    apf_old_option "-u $2: pilot 3's -u takes no value; the job label is -j <label>"
                fi
                apf_pilot_args+=("$1")
                shift
                ;;
            --url)
                [ $# -ge 2 ] && apf_panda_url=$2
                apf_pilot_args+=("$1")
                shift
                ;;
            *)
                [[ $1 == --url=* ]] && apf_panda_url=${1#--url=}
                apf_pilot_args+=("$1")
                shift
                ;;
        esac
    done
    apf_check_args
    apf_choose_sources
}

apf_check_args() {
    [ -n "$apf_queue" ] || apf_usage_error "missing -q <queue>"
    [ -n "$apf_site" ] || apf_site=$apf_queue
    if [ -n "$apf_memory_mb" ] && ! [[ $apf_memory_mb =~ ^[1-9][0-9]{0,8}$ ]]; then
        apf_usage_error "-k $apf_memory_mb is not a memory size in MB"
    fi
    if ! [[ $apf_pythonversion =~ ^3(\.[0-9]+)?$ ]]; then
        apf_usage_error "--pythonversion $apf_pythonversion: pilot 3 needs python 3 (3 or 3.N)"
    fi
    case $apf_pilotversion in
        1 | 2) apf_usage_error "--pilotversion $apf_pilotversion: pilot $apf_pilotversion is not supported, only pilot 3" ;;
        latest | current | 3) apf_pilotversion="" ;;
    esac
    if [ -n "$apf_pilotversion" ] && ! [[ $apf_pilotversion =~ ^[A-Za-z0-9._-]+$ ]]; then
        apf_usage_error "--pilotversion $apf_pilotversion is not a version"
    fi
    case $apf_piloturl in
        "" | http://?* | https://?* | file:///*) ;;
        *) apf_usage_error "--piloturl $apf_piloturl: expected an http(s):// or file:/// URL" ;;
    esac
}

# The pilot tarball's sources: --piloturl, else PILOT_HTTP_SOURCES, else the PanDA server's cache
# (host of --url, port 25085, as ATLAS wrappers use it) and CVMFS.
apf_choose_sources() {
    local hostport tarball=pilot3.tar.gz
    if [ -n "$apf_piloturl" ]; then
        apf_sources=("$apf_piloturl")
        return
    fi
    if [[ ${PILOT_HTTP_SOURCES:-} =~ [^[:space:]] ]]; then
        read -r -a apf_sources <<<"$PILOT_HTTP_SOURCES"
        return
    fi
    apf_sources=()
    [ -n "$apf_pilotversion" ] && tarball=pilot3-$apf_pilotversion.tar.gz
    if [ -n "$apf_panda_url" ] && [ -z "$apf_pilotversion" ]; then
        hostport=${apf_panda_url#*://}
        hostport=${hostport%%/*}
        if [[ $hostport =~ ^(\[[^]]+\]|[^:/]+)(:[0-9]+)?$ ]]; then
            apf_sources+=("http://${BASH_REMATCH[1]}:25085/cache/pilot/pilot3.tar.gz")
        else
            apf_log "WARNING: --url $apf_panda_url: no host name in it, not using the PanDA server's cache"
        fi
    fi
    apf_sources+=("file://${ATLAS_SW_BASE:-/cvmfs}/atlas.cern.ch/repo/sw/PandaPilot/tar/$tarball")
}

# ---- signals and cleanup ------------------------------------------------------------------

# SIGKILL, not TERM: a child signalled in the instant between its fork and its exec can drop a
# catchable signal (bash resets the traps only at exec), and the wrapper would then wait for a
# curl's whole --max-time. The children are curl, sleep and `timeout 60 voms-proxy-info`/arcproxy
# (whose proxy tool, left alone by a killed timeout, ends by itself): none needs a clean stop.
# shellcheck disable=SC2317 # called from a trap
apf_kill_child() {
    if [ -n "$apf_child_pid" ]; then kill -KILL "$apf_child_pid" 2>/dev/null; fi
}

# shellcheck disable=SC2317 # called from a trap
apf_early_signal() {
    apf_signalled=yes
    apf_wait_signalled=yes
    apf_kill_child # a download, monitor call or retry pause under way ends now
    apf_stop_reporter_now
    [ -z "${apf_dying:-}" ] || return 0
    apf_die $((128 + $2)) "got SIG$1 before the pilot was started"
}

# shellcheck disable=SC2317 # called from a trap
apf_forward_signal() {
    apf_signalled=yes
    apf_wait_signalled=yes
    if [ -n "$apf_pilot_done" ]; then # the pilot has ended: stop the report under way, exit
        apf_log "got SIG$1 after the pilot ended"
        apf_kill_child
        apf_stop_reporter_now
        return
    fi
    if [ -z "$apf_pilot_pid" ]; then
        apf_pending_signal=$1
        return
    fi
    apf_log "got SIG$1: forwarding it to the pilot (pid $apf_pilot_pid)"
    kill -s "$1" "$apf_pilot_pid" 2>/dev/null || apf_log "WARNING: could not signal pid $apf_pilot_pid"
    apf_start_watchdog
}

# A signal ends the background running report at once (its attempt under way too).
# shellcheck disable=SC2317 # called from a trap
apf_stop_reporter_now() {
    if [ -n "$apf_running_pid" ]; then kill -TERM "$apf_running_pid" 2>/dev/null; fi
}

# After the first forwarded signal the pilot has APF_PILOT_GRACE seconds, then it is killed. The
# watchdog is a fresh bash (a subshell forked inside a trap handler would inherit this shell's state)
# that waits on a pipe from this shell: closing it when the pilot has ended stops the watchdog (EOF).
# No signal is sent to it: that one often landed before its exec, while it was still a copy of this
# shell, where bash runs this shell's EXIT trap and can also drop the signal (the watchdog then slept
# out the grace and the wrapper waited for it).
apf_start_watchdog() {
    [ -z "$apf_watchdog_fd" ] || return 0
    # shellcheck disable=SC2016 # the inner script expands its own arguments
    exec {apf_watchdog_fd}> >(exec bash -c 'status=142 # what read returns on its timeout
        if [ "$1" -gt 0 ]; then read -r -t "$1" _; status=$?; fi
        [ "$status" -gt 128 ] || exit 0 # EOF: the wrapper is done with the pilot
        if kill -0 "$2" 2>/dev/null; then
            printf "%(%Y-%m-%dT%H:%M:%S%z)T [wrapper] %s\n" -1 \
                "WARNING: the pilot still runs $1 s after the signal: SIGKILL"
            kill -KILL "$2" 2>/dev/null
        fi' apf_watchdog "$apf_pilot_grace" "$apf_pilot_pid")
    apf_watchdog_pid=$!
}

# Closes the pipe and waits for the watchdog (a bash that cannot wait for a process substitution
# goes on at once; the watchdog ends by itself at the EOF).
apf_stop_watchdog() {
    [ -n "$apf_watchdog_fd" ] || return 0
    exec {apf_watchdog_fd}>&-
    apf_watchdog_fd=""
    wait "$apf_watchdog_pid" 2>/dev/null
    apf_watchdog_pid=""
}

# A child this shell forks (curl, sleep, the watchdog, a site script's command) is a copy of it
# until its exec, and bash runs this EXIT trap there when a fatal signal lands in that window: it
# removed the work dir before the wrapper read the pilot's pandaIDs.out. In that copy even the
# exit status of [ ] can be wrong (bash 5.2 prints "wait_for: No record of process N" and a test
# of $BASHPID fails), so a case decides: a copy leaves everything to this shell, silently.
# shellcheck disable=SC2317 # called from a trap
apf_cleanup() {
    case $BASHPID in
        "$apf_main_pid") ;;
        *)
            exec 2>/dev/null # the copy is exiting; it would only repeat that wait_for message
            return 0
            ;;
    esac
    apf_kill_child
    apf_stop_watchdog
    apf_running_stop now
    if [ -n "$apf_scratch" ]; then rm -rf -- "$apf_scratch"; fi
    [ -n "$apf_workdir" ] && [ -d "$apf_workdir" ] || return 0
    if [ -n "${APF_KEEP_WORKDIR:-}" ]; then
        apf_log "APF_KEEP_WORKDIR is set: keeping $apf_workdir"
        return 0
    fi
    cd "$apf_startdir" 2>/dev/null || cd / || return 0
    chmod -R u+rwX "$apf_workdir" 2>/dev/null
    if rm -rf -- "$apf_workdir"; then
        apf_log "removed work dir $apf_workdir"
    else
        apf_log "WARNING: could not remove work dir $apf_workdir"
    fi
}

# ---- steps ----------------------------------------------------------------------------------

apf_host_info() {
    apf_section "host"
    apf_log "runpilot3-wrapper version $apf_version"
    apf_log "date: $(date -u 2>/dev/null)"
    apf_log "host: $(hostname -f 2>/dev/null || hostname 2>/dev/null || uname -n)"
    apf_log "uname -a: $(uname -a)"
    apf_log "id: $(id 2>/dev/null)"
    apf_log "start dir: $apf_startdir"
}

apf_make_workdir() {
    local base label dir
    apf_section "work dir"
    for label in OSG_WN_TMP TMPDIR PWD; do
        if [ "$label" = PWD ]; then base=$apf_startdir; else base=${!label:-}; fi
        [ -n "$base" ] || continue
        if dir=$(mktemp -d "$base/apf_pilot.XXXXXXXX" 2>&1); then
            apf_workdir=$dir
            break
        fi
        apf_log "WARNING: cannot make a work dir in $label=$base: $dir"
    done
    [ -n "$apf_workdir" ] || apf_die 115 "no usable work directory (tried OSG_WN_TMP, TMPDIR, current dir)"
    cd "$apf_workdir" || apf_die 115 "cannot enter work directory $apf_workdir"
    apf_log "work dir: $apf_workdir"
    if command -v df >/dev/null 2>&1; then df -hP . 2>&1; fi
}

# apf_check_tarball FILE: sets apf_entry to the tarball's pilot.py member, or says what is wrong.
apf_check_tarball() {
    local magic listing line
    apf_entry=""
    magic=$(od -An -tx1 -N2 "$1" 2>/dev/null)
    if [ "${magic//[[:space:]]/}" != 1f8b ]; then
        apf_problem="not a gzip file, it starts with: $(head -c 80 "$1" | tr -c '[:print:]' ' ')"
        return 1
    fi
    if ! listing=$(tar -tzf "$1" 2>&1); then
        apf_problem="not a readable gzip tarball: $(printf '%s' "$listing" | head -n 1)"
        return 1
    fi
    while IFS= read -r line; do
        case $line in
            pilot.py | ./pilot.py)
                apf_entry=$line
                break
                ;;
        esac
        if [ -z "$apf_entry" ] && [[ $line =~ ^(\./)?[^/]+/pilot\.py$ ]]; then apf_entry=$line; fi
    done <<<"$listing"
    if [ -z "$apf_entry" ]; then
        apf_problem="the tarball holds no pilot.py"
        return 1
    fi
}

apf_fetch_pilot() {
    local url status tarball=$apf_workdir/.pilot-download.tar.gz pilot_dir
    apf_section "pilot code"
    command -v curl >/dev/null 2>&1 || apf_die 116 "curl not found in PATH, cannot fetch the pilot"
    apf_setting apf_http_connect PILOT_HTTP_CONNECT_TIMEOUT 30 timeout
    apf_setting apf_http_max_time PILOT_HTTP_MAX_TIME 180 timeout
    apf_setting apf_http_retries PILOT_HTTP_RETRIES 2 count
    apf_setting apf_http_delay PILOT_HTTP_RETRY_DELAY 5 count
    apf_log "pilot sources: ${apf_sources[*]}"
    for url in "${apf_sources[@]}"; do
        rm -f "$tarball"
        apf_log "fetching $url"
        apf_wait_child curl -fsSL --connect-timeout "$apf_http_connect" --max-time "$apf_http_max_time" \
            --retry "$apf_http_retries" --retry-delay "$apf_http_delay" -o "$tarball" "$url"
        status=$?
        if [ "$status" -ne 0 ]; then
            apf_log "WARNING: source failed: $url: download failed (curl exit $status)"
            continue
        fi
        if ! apf_check_tarball "$tarball"; then
            apf_log "WARNING: source failed: $url: $apf_problem"
            continue
        fi
        if ! tar -xzf "$tarball" -C "$apf_workdir" || [ ! -f "$apf_workdir/${apf_entry#./}" ]; then
            apf_log "WARNING: source failed: $url: could not unpack the tarball"
            continue
        fi
        rm -f "$tarball"
        apf_pilot_py=$apf_workdir/${apf_entry#./}
        apf_log "pilot fetched from $url: $apf_pilot_py"
        pilot_dir=${apf_pilot_py%/*}
        if [ -f "$pilot_dir/PILOTVERSION" ]; then apf_log "PILOTVERSION: $(head -n 1 "$pilot_dir/PILOTVERSION")"; fi
        return 0
    done
    rm -f "$tarball"
    apf_die 116 "pilot code not fetched: no source gave a gzip tarball with pilot.py (${apf_sources[*]})"
}

# apf_source LABEL FILE [ARGS]: source a site script if present; its absence is only noted.
apf_source() {
    local label=$1 file=$2 status
    shift 2
    if [ ! -f "$file" ]; then
        apf_log "note: no $label ($file), continuing without it"
        return 0
    fi
    apf_log "sourcing $label: $file $*"
    set +u # site scripts are not written for nounset
    # shellcheck disable=SC1090
    source "$file" "$@"
    status=$?
    set -u
    cd "$apf_workdir" || apf_die 115 "cannot return to work directory $apf_workdir after $file"
    apf_log "$label returned $status"
}

apf_site_setup() {
    local sw_dir=${VO_ATLAS_SW_DIR:-${ATLAS_SW_BASE:-/cvmfs}/atlas.cern.ch/repo/sw}
    apf_section "site set-up"
    if [ -n "$apf_container" ]; then
        apf_log "--container: no DDM nor ATLAS local site set-up"
        return 0
    fi
    apf_source "DDM set-up" "$sw_dir/ddm/latest/setup.sh"
    apf_source "ATLAS local site set-up" "${ATLAS_LOCAL_AREA:-$sw_dir/local}/setup.sh" -s "$apf_site"
}

apf_find_python() {
    local candidate version fallback="" fallback_version=""
    local -a candidates=(python3 python)
    apf_section "python"
    if [ "$apf_pythonversion" != 3 ]; then candidates=("python$apf_pythonversion" "${candidates[@]}"); fi
    if [ -n "$apf_localpy" ]; then apf_log "--localpy: using the node's python"; fi
    [ -n "${APF_PYTHON:-}" ] && candidates=("$APF_PYTHON" "${candidates[@]}")
    for candidate in "${candidates[@]}"; do
        if ! command -v "$candidate" >/dev/null 2>&1; then
            apf_log "python: $candidate not found"
            continue
        fi
        if ! version=$("$candidate" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null); then
            apf_log "WARNING: python: $candidate does not run ('$candidate -c \"import sys\"' failed)"
            continue
        fi
        if [[ $version =~ ^([3-9]|[1-9][0-9])\.([0-9]+)\. ]] &&
            { [ "${BASH_REMATCH[1]}" -gt 3 ] || [ "${BASH_REMATCH[2]}" -ge 6 ]; }; then
            apf_python=$(command -v "$candidate")
            apf_log "using python $apf_python ($version)"
            return 0
        fi
        apf_log "python: $candidate is $version, older than 3.6"
        if [ -z "$fallback" ]; then fallback=$(command -v "$candidate") fallback_version=$version; fi
    done
    if [ -n "$fallback" ]; then
        apf_python=$fallback
        apf_log "WARNING: no python >= 3.6, using $apf_python ($fallback_version)"
        return 0
    fi
    apf_die 117 "no working python (tried ${candidates[*]}; PATH=$PATH)"
}

apf_print_env() {
    local name value
    apf_section "environment (secrets masked)"
    while IFS= read -r name; do
        value=${!name-}
        case ${name^^} in
            *TOKEN* | *PASSW* | *SECRET* | *CREDENTIAL* | *KEY) value="<masked>" ;;
        esac
        case $value in
            *-----BEGIN*) value="<masked>" ;;
        esac
        printf '%s=%s\n' "$name" "$value"
    done < <(compgen -e | LC_ALL=C sort)
}

apf_proxy_info() {
    local -a limit=()
    apf_section "proxy"
    apf_log "X509_USER_PROXY=${X509_USER_PROXY:-<unset>}"
    command -v timeout >/dev/null 2>&1 && limit=(timeout 60)
    if command -v voms-proxy-info >/dev/null 2>&1; then
        apf_wait_child "${limit[@]}" voms-proxy-info -all 2>&1 || apf_log "WARNING: voms-proxy-info -all failed"
    elif command -v arcproxy >/dev/null 2>&1; then
        apf_wait_child "${limit[@]}" arcproxy -I 2>&1 || apf_log "WARNING: arcproxy -I failed"
    else
        apf_log "note: neither voms-proxy-info nor arcproxy found, no proxy info"
    fi
}

# apf_pilot_file NAME: path of a file the pilot left in the work dir or in its own dir.
apf_pilot_file() {
    local dir
    for dir in "$apf_workdir" "${apf_pilot_py%/*}"; do
        if [ -f "$dir/$1" ]; then
            printf '%s\n' "$dir/$1"
            return 0
        fi
    done
    return 1
}

# apf_run_pilot ARGS: run the pilot, forward signals, set apf_rc and apf_ids.
apf_run_pilot() {
    local sig status file code
    local -a ids
    apf_section "limits for the pilot (ulimit -a)"
    for sig in TERM INT USR1 QUIT; do
        # shellcheck disable=SC2064
        trap "apf_forward_signal $sig" "$sig"
    done
    (
        # Background jobs of a non-interactive shell may start with SIGINT/SIGQUIT ignored.
        trap - INT QUIT
        if [ -n "$apf_memory_mb" ]; then
            ulimit -v $((apf_memory_mb * 1024)) ||
                apf_log "WARNING: could not set ulimit -v for -k $apf_memory_mb MB, pilot runs without it"
        fi
        ulimit -a
        apf_log "==== pilot BEGIN: $apf_python $apf_pilot_py $(apf_quoted "$@") ===="
        exec "$apf_python" "$apf_pilot_py" "$@"
    ) &
    apf_pilot_pid=$!
    if [ -n "$apf_pending_signal" ]; then apf_forward_signal "$apf_pending_signal"; fi
    # wait returns early (>128) when a trapped signal arrives; then wait again for the real end.
    apf_rc=""
    while :; do
        apf_wait_signalled=""
        wait "$apf_pilot_pid" 2>/dev/null # "no record of process" once reaped: status 127
        status=$?
        if [ -n "$apf_rc" ] && [ "$status" -eq 127 ]; then break; fi # already reaped
        apf_rc=$status
        if [ -z "$apf_wait_signalled" ] || [ "$status" -le 128 ]; then break; fi
    done
    apf_stop_watchdog
    apf_pilot_done=yes
    apf_log "==== pilot END: exit code $apf_rc ===="
    if file=$(apf_pilot_file STATUSCODE); then
        read -r code <"$file"
        code=${code//[[:space:]]/}
        if [[ $code =~ ^[0-9]{1,3}$ ]] && [ "$code" -le 255 ]; then
            apf_log "STATUSCODE file says $code (pilot exit code was $apf_rc)"
            apf_rc=$code
        else
            apf_log "WARNING: ignoring STATUSCODE file with '$code', not an exit code"
        fi
    fi
    apf_ids=""
    if file=$(apf_pilot_file pandaIDs.out); then
        apf_ids=$(tr -cs '0-9' ',' <"$file")
        apf_ids=${apf_ids#,}
        apf_ids=${apf_ids%,}
        apf_log "PanDA job ids: ${apf_ids:-none}"
        # The monitor takes at most 100 ids; more would get the whole exiting report refused.
        IFS=, read -r -a ids <<<"$apf_ids"
        if [ "${#ids[@]}" -gt 100 ]; then
            apf_ids=$(IFS=,; printf '%s' "${ids[*]:0:100}")
            apf_log "reporting the first 100 of ${#ids[@]} PanDA job ids to the monitor"
        fi
    fi
    apf_outcome
}

# The pilot's outcome for the monitor and the batch system. Pilot 3 exits 0 also when PanDA had no
# job for it, and also when its getJob was refused (HTTP 403, e.g. "method getJob is forbidden")
# or got no readable answer: it then logs "fatal error in job download loop" and gives up. Only its
# pandaIDs.out and its log (pilotlog.txt) tell these apart: 0 without a job id becomes 119 when
# the log has that line, else 20.
apf_outcome() {
    local what
    if [ "$apf_rc" -eq 0 ] && [ -z "$apf_ids" ]; then
        if apf_getjob_refused; then
            apf_log "the pilot exited 0 without a PanDA job id after 'fatal error in job download loop': getJob refused, reporting 119"
            [ -z "$apf_refusal" ] || apf_log "pilot log: $apf_refusal"
            apf_rc=119
        else
            apf_log "the pilot exited 0 without a PanDA job id (no pandaIDs.out): no job, reporting 20"
            apf_rc=20
        fi
    fi
    case $apf_rc in
        0) what="ran PanDA job(s) $apf_ids" ;;
        20) what="no job: PanDA had none for this queue and label" ;;
        119) what="getJob refused: PanDA's dispatcher refused the job request or gave no readable answer (see the pilot log)" ;;
        1) what="pilot failure (e.g. the payload failed), see the pilot log" ;;
        2) what="pilot 3 rejected its arguments (see its usage message above)" ;;
        79) what="getJob failed: PanDA server communication failure" ;;
        71 | 72) what="no usable queuedata for the queue" ;;
        78) what="PanDA queue is not active" ;;
        68) what="no valid proxy" ;;
        6[4-9] | [7-9][0-9] | 10[0-9] | 11[0-3]) what="pilot error $apf_rc, see the pilot log" ;;
        129 | 1[3-9][0-9] | 2[0-5][0-9]) what="killed by signal $((apf_rc - 128))" ;;
        *) what="pilot exit code $apf_rc" ;;
    esac
    apf_log "pilot outcome: $apf_rc, $what"
}

# Did pilot 3 give up on getJob? Its log has "fatal error in job download loop"; apf_refusal is
# then the log's last line that quotes the server's answer or curl's failure, if any.
apf_getjob_refused() {
    local log line
    apf_refusal=""
    log=$(apf_pilot_file pilotlog.txt) || return 1
    grep -q 'fatal error in job download loop' "$log" 2>/dev/null || return 1
    line=$(grep -E 'failed to parse output=|request failed for IPv' "$log" 2>/dev/null | tail -n 1)
    apf_refusal=${line:0:300}
    return 0
}

# apf_quoted ARGS: the arguments as one shell-quoted line, for the log.
apf_quoted() {
    local line
    printf -v line '%q ' "$@"
    printf '%s' "${line% }"
}

apf_main() {
    printf -v apf_start_time '%(%s)T' -1
    trap apf_cleanup EXIT
    trap 'apf_early_signal TERM 15' TERM
    trap 'apf_early_signal INT 2' INT
    trap 'apf_early_signal USR1 10' USR1
    trap 'apf_early_signal QUIT 3' QUIT
    apf_apply_forced_env
    apf_host_info
    apf_log "arguments: $(apf_quoted "$@")"
    apf_mute=""
    case " $* " in *" --mute "*) apf_mute=yes ;; esac
    apf_monitor_init
    apf_parse_args "$@"
    apf_running_start
    apf_make_workdir
    apf_fetch_pilot
    apf_site_setup
    apf_find_python
    apf_print_env
    apf_proxy_info
    apf_log "queue $apf_queue, site $apf_site, resource ${apf_resource:-<none>}, job label $apf_job_label, pilot type $apf_pilot_type"
    apf_run_pilot -q "$apf_queue" -j "$apf_job_label" -i "$apf_pilot_type" \
        ${apf_pilot_args[@]+"${apf_pilot_args[@]}"}
    apf_running_stop
    apf_monitor exiting "$apf_rc" "$apf_ids"
    apf_log "wrapper exiting with code $apf_rc"
    exit "$apf_rc"
}

apf_main "$@"
