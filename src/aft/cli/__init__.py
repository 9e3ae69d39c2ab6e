"""The `aft` command-line interface: thin wrappers that parse arguments and call the library."""
