"""The ``tandem`` command line (``cli.main``): one module per command, argparse helpers in ``cli.options``.

Commands import ``app`` and ``models``; neither of those imports this package.
"""
