"""The shell: the `centre` command, the demo, the end-to-end and chaos benches, `centre stats`;
it assembles the kernel (`centre/`) and the domains, and nothing imports it."""
