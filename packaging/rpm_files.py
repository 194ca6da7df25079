"""Write the RPM's file list (the spec's ``%files -f INSTALLED_FILES``) from the install records.

Run by ``packaging/rpm-install.sh`` inside rpmbuild; standard library only. Input: the record of
``setup.py install`` (the Python package, its egg-info, the console scripts) and the record of
``setup.py install_system_files`` (host files). Output on stdout, one entry a line:

* each top-level entry of the package in site-packages (``autopyfactory/``, its egg-info) as a
  directory entry: rpm then owns the directory and everything under it, including the
  byte-compiled files that the install or rpm's byte-compile step wrote, so no ``__pycache__``
  file has to be listed (and none can be missing or unpackaged);
* other recorded files as they are; under ``/etc`` as ``%config(noreplace)``, factory.conf and
  the sysconfig file (tokens, database passwords) ``0640 root:autopyfactory``;
* ``%dir`` for the directories the package owns outside site-packages, with owner and mode for
  the writable ones.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import PurePosixPath

#: Config files that may hold secrets (tokens, database passwords): readable by the service only.
PRIVATE_CONFIG = {"/etc/autopyfactory/factory.conf", "/etc/sysconfig/autopyfactory"}

# Directories the package owns, beyond those of its files' parents that are listed here too.
OWNED_DIRS = [
    "%dir /etc/autopyfactory",
    "%dir /etc/autopyfactory/queues.d",
    "%dir /usr/libexec/autopyfactory",
    "%dir %attr(0755,autopyfactory,autopyfactory) /var/log/autopyfactory",
    "%dir %attr(0750,autopyfactory,autopyfactory) /var/lib/autopyfactory",
]


def strip_root(path: str, root: str) -> str:
    """The path as installed (records of ``install --root`` may or may not include the root)."""
    root = root.rstrip("/")
    if root and path.startswith(root + "/"):
        path = path[len(root) :]
    return path


def file_list(records: list[str], root: str, sitelib: str) -> list[str]:
    site = PurePosixPath(sitelib)
    package_entries: list[str] = []
    files: list[str] = []
    for raw in records:
        path = strip_root(raw.strip(), root)
        if not path:
            continue
        if not path.startswith("/"):
            raise SystemExit(f"rpm_files: not an absolute path in a record: {path!r}")
        if any(c.isspace() for c in path):  # rpm splits file-list lines on white space
            raise SystemExit(f"rpm_files: path with white space: {path!r}")
        pure = PurePosixPath(path)
        if site in pure.parents:
            top = str(site / pure.relative_to(site).parts[0])
            if top not in package_entries:
                package_entries.append(top)
        elif path in PRIVATE_CONFIG:
            files.append(f"%config(noreplace) %attr(0640,root,autopyfactory) {path}")
        elif path.startswith("/etc/"):
            files.append(f"%config(noreplace) {path}")
        else:
            files.append(path)
    if not package_entries:
        raise SystemExit(f"rpm_files: nothing recorded under {sitelib}")
    return [*package_entries, *files, *OWNED_DIRS]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="the install root ($RPM_BUILD_ROOT)")
    parser.add_argument(
        "--sitelib", required=True, help="site-packages as installed, e.g. /usr/lib/python3.11/site-packages"
    )
    parser.add_argument("records", nargs="+", help="install records (one path a line)")
    args = parser.parse_args(argv)
    lines: list[str] = []
    for record in args.records:
        with open(record) as f:
            lines.extend(f.read().splitlines())
    sys.stdout.write("".join(entry + "\n" for entry in file_list(lines, args.root, args.sitelib)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
