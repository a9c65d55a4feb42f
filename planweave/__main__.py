"""`python -m planweave`: the same command line as `planweave`."""

from planweave.planner.cli.app import main

if __name__ == "__main__":
    main()
