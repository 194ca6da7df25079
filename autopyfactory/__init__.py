"""autopyfactory: a pilot factory for the PanDA workload system."""

__version__ = "0.1.0"
