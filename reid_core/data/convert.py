"""``python -m reid_core.data.convert FORMAT ...``: the older spelling of ``reid convert`` (reid_core/cli/convert.py),
kept for the scripts and messages that use it."""

if __name__ == "__main__":
    import sys

    from reid_core.cli.app import main

    sys.exit(main(["convert", *sys.argv[1:]]))
