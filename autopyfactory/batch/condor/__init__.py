"""HTCondor: status (condor_q), submission (one cluster per label) and the backend that joins them."""
