"""The cron helpers ``mon-exiting`` and ``mon-stale``: the batch system's view of this factory's
pilots, reported to the monitor.
"""
