"""One module per `aft` sub-command; each defines `register(subparsers)` and is discovered automatically."""
