"""Packaging for autopyfactory (setuptools; see README "Install")."""

from pathlib import Path

from setuptools import find_packages, setup


def read_version() -> str:
    """Read ``__version__`` without importing the package (its dependencies may be missing)."""
    for line in Path("autopyfactory/__init__.py").read_text().splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip('"')
    raise RuntimeError("no __version__ in autopyfactory/__init__.py")


MONITOR = [
    "fastapi>=0.110",
    "sqlalchemy>=2.0",
    "alembic>=1.13",
    "uvicorn>=0.29",
    "jinja2>=3.1",
    "python-multipart>=0.0.9",
    "psycopg[binary]>=3.1",
]

TEST = MONITOR + [
    "pytest>=8",
    "pytest-timeout>=2.3",
    "hypothesis>=6.100",
    "pytest-httpserver>=1.0",
    "mypy>=1.10",
    "ruff>=0.5",
    "types-requests",
]

setup(
    name="autopyfactory",
    version=read_version(),
    description="Pilot factory for the PanDA workload system",
    long_description=Path("README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11",
    packages=find_packages(include=["autopyfactory", "autopyfactory.*"]),
    package_data={"autopyfactory": ["data/*", "data/**/*", "py.typed"]},
    include_package_data=True,
    install_requires=[
        "htcondor>=24.0",
        "requests>=2.31",
        "urllib3>=2.0",
        "python-daemon>=3.0",
        "cryptography>=42",
        "prometheus-client>=0.20",
    ],
    extras_require={"monitor": MONITOR, "test": TEST},
    entry_points={
        "console_scripts": [
            "autopyfactory=autopyfactory.cli:main",
            "autopyfactory-monitor=autopyfactory.monitor_service.cli:main",
        ]
    },
    scripts=[],
)
