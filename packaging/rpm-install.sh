# The RPM's install section (bdist_rpm install_script in setup.cfg; rpmbuild runs it with sh in
# the unpacked sdist). The __python macro is bdist_rpm's `python` option (default: python3 from
# PATH). No percent sign except that macro: rpm expands this text, comments too, as spec text.
set -e
# These machines export PYTHONDONTWRITEBYTECODE=1; the RPM ships byte-compiled files.
unset PYTHONDONTWRITEBYTECODE
pyver=$(%{__python} -c 'import sys; print("{}.{}".format(*sys.version_info[:2]))')
# The system layout, whatever interpreter (virtualenv or not) runs the build:
# /usr/lib/pythonX.Y/site-packages, console scripts in /usr/bin run by /usr/bin/pythonX.Y.
sitelib=$(%{__python} -c 'import sysconfig; print(sysconfig.get_path("purelib", "posix_prefix", vars={"base": "/usr", "platbase": "/usr"}))')
rm -f INSTALLED_FILES INSTALLED_FILES.python INSTALLED_FILES.system
%{__python} setup.py build --executable="/usr/bin/python$pyver" \
    install -O1 --root="$RPM_BUILD_ROOT" --prefix=/usr \
    --install-lib="$sitelib" --install-scripts=/usr/bin --record=INSTALLED_FILES.python
# The host files (setup.py SYSTEM_FILES): /etc, /usr/libexec/autopyfactory, systemd units.
%{__python} setup.py install_system_files --root="$RPM_BUILD_ROOT" --record=INSTALLED_FILES.system
# The file list: config(noreplace) for /etc, directories for the Python package, owned dirs.
%{__python} packaging/rpm_files.py --root="$RPM_BUILD_ROOT" --sitelib="$sitelib" \
    INSTALLED_FILES.python INSTALLED_FILES.system > INSTALLED_FILES
