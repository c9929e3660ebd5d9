"""The CLI's subcommands that sit beside a library package: ``init``/``train`` (training), ``eval``
(evaluation), ``data`` (the GeoQA benchmark). ``ragmodels.cli`` registers them; argparse lives only here and
in ``cli.py``."""
