"""`python -m dsedge` is the same as the `dsedge` console script."""

from dsedge.cli import main

if __name__ == "__main__":
    main()
