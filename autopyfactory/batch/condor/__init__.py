"""HTCondor: status (condor_q), submission (condor_submit) and the backend that joins them."""
