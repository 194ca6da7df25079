# The postun script of the RPM (bdist_rpm post_uninstall in setup.cfg): forget removed units; on upgrade
# ($1 >= 1) restart the services that were running so they run the new code.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart autopyfactory.service autopyfactory-monitor.service >/dev/null 2>&1 || :
    fi
fi
exit 0
