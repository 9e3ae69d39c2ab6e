"""`python -m aft` runs the command-line interface."""

from aft.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
