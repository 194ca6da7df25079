"""HTCondor: status (condor_q), submission (one cluster per label, submitter.py) and the backend that joins them."""
