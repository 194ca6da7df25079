# The pre script of the RPM (bdist_rpm pre_install in setup.cfg): the system user the factory, the monitor
# and the cron helpers run as. Kept on erase (files it owned may remain).
getent group autopyfactory >/dev/null || groupadd -r autopyfactory
getent passwd autopyfactory >/dev/null || \
    useradd -r -g autopyfactory -d /var/lib/autopyfactory -s /sbin/nologin \
        -c "autopyfactory pilot factory" autopyfactory
exit 0
