"""Developer tools (a local control plane). I/O on purpose; never imported by the operator."""
