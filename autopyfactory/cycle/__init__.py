"""The factory's cycle: read the edges, decide (the domain's planning), submit, tidy up, report."""
