"""``python -m generative_bench`` is the same as the ``gbench`` console script."""

from generative_bench.cli.main import main

if __name__ == "__main__":
    main()
