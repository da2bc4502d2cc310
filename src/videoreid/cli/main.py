"""The ``videoreid`` command: a thin dispatcher over one module per subcommand.

Each subcommand module defines ``add_arguments(parser)`` and ``run(args) -> int``. Modules are
imported only when their subcommand runs, so ``videoreid --help`` stays fast.

Errors for people: a :class:`~videoreid.utils.errors.UserError` (bad config, missing or
damaged file, bad checkpoint, busy run folder), a missing path or a full disk is printed as
one line ``videoreid <command>: error: <message>`` on stderr with exit code 2, without a
traceback; ``--debug`` (anywhere on the command line) shows the traceback instead. Options
and ``key=value`` overrides may be mixed in any order
(``videoreid evaluate CFG --checkpoint X key=val``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name → (module, one-line help). A plain table: no import-time registration.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("videoreid.cli.demo", "synthetic data → train → evaluate → report, on CPU, minutes"),
    "synth": ("videoreid.cli.synth", "write a synthetic dataset in an official layout"),
    "data": ("videoreid.cli.data", "dataset utilities (stats)"),
    "train": ("videoreid.cli.train", "train a model from a YAML config"),
    "evaluate": ("videoreid.cli.evaluate", "evaluate a checkpoint on a dataset"),
    "extract": ("videoreid.cli.extract", "extract tracklet features to a feature file"),
    "evaluate-features": ("videoreid.cli.evaluate_features", "evaluate a feature file"),
    "flow": ("videoreid.cli.flow", "precompute optical flow for a dataset"),
    "pose": ("videoreid.cli.pose", "precompute pose keypoints/maps for a dataset"),
    "ablate": ("videoreid.cli.ablate", "run the rows of a paper table over seeds: intervals, deltas"),
    "package": ("videoreid.cli.package", "write a self-describing model package from a run"),
    "embed": ("videoreid.cli.embed", "embed tracks (video + MOT file, crop folders, datasets)"),
    "index": ("videoreid.cli.index", "build / search a gallery index"),
    "export": ("videoreid.cli.export", "export a model package to ONNX or TorchScript"),
    "visualize": ("videoreid.cli.visualize", "write report.html for a run: metrics, CMC, attention"),
}


def build_parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    parser = argparse.ArgumentParser(prog="videoreid", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of user errors (config, files, checkpoints)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser, sub


def _parse(sub: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """Options and positionals in any order (overrides after options too) for every
    subcommand; parsers that argparse cannot intermix (sub-commands) parse plainly. (A
    module's ``INTERMIXED`` flag is no longer needed.)"""
    try:
        return sub.parse_intermixed_args(argv)
    except TypeError:  # parsers with sub-commands cannot be intermixed
        return sub.parse_args(argv)


def _run(name: str, module: object, args: argparse.Namespace, debug: bool) -> int:
    from videoreid.utils.errors import is_user_error

    try:
        return int(module.run(args) or 0)
    except Exception as e:
        if debug or not is_user_error(e):
            raise
        print(f"videoreid {name}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"videoreid {name}: interrupted", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    parser, _ = build_parser()
    if argv[:1] == ["--version"]:
        from videoreid import __version__

        print(f"videoreid {__version__}")
        return 0
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        if argv and argv[0] not in ("-h", "--help"):
            parser.error(f"unknown command {argv[0]!r}; choose from {', '.join(COMMANDS)}")
        parser.print_help()
        return 0 if argv else 2
    name = argv[0]
    module_name, help_text = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name == module_name:
            print(f"videoreid {name}: not available in this version", file=sys.stderr)
            return 2
        raise
    sub = argparse.ArgumentParser(prog=f"videoreid {name}", description=help_text)
    module.add_arguments(sub)
    sub.add_argument("--debug", action="store_true", help="show tracebacks of user errors")
    args = _parse(sub, argv[1:])
    return _run(name, module, args, debug)


if __name__ == "__main__":
    sys.exit(main())
