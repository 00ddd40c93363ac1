"""What every stage shares: errors, atomic writes, locks, the device, output-path checks, configs and their `--set` rules."""
