"""Running the factory as a service: composition of its parts, signals, daemonising, systemd, logs."""
