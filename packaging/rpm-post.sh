# The post script of the RPM (bdist_rpm post_install in setup.cfg): make systemd see the (new) units. The
# services are neither enabled nor started: configure /etc/autopyfactory/factory.conf first.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
exit 0
