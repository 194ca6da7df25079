"""factory.conf: the schema of every key, the loader with file:line errors, the labels built from
CRIC records (autoconfiguration, and the cycle's label source), and the migration from APF 2.
"""
