"""``python -m tether.cli``: the same as the ``tether`` console script."""

from tether.cli import main

if __name__ == "__main__":
    main()
