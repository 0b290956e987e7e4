"""`python -m alexbench` (and `torchrun -m alexbench`)."""

from alexbench.cli import main

if __name__ == "__main__":
    main()
