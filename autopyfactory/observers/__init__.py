"""Who hears of each cycle: the state file (``autopyfactory status``) and the Prometheus metrics."""
