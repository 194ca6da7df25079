# The preun script of the RPM (bdist_rpm pre_uninstall in setup.cfg): on erase ($1 = 0, not on upgrade)
# stop and disable the services and the monitor's timers.
if [ "$1" = 0 ] && [ -d /run/systemd/system ]; then
    systemctl disable --now autopyfactory.service autopyfactory-monitor.service \
        autopyfactory-monitor-expire.timer autopyfactory-monitor-clean.timer >/dev/null 2>&1 || :
fi
exit 0
