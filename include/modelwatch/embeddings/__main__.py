"""``python -m modelwatch.embeddings export [--dir DIR]``: write the int8 ONNX export of the bundled model (``make install`` runs it)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelwatch.embeddings", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="export and quantize the bundled model once (skipped when the file for its hash exists)")
    export.add_argument("--dir", type=Path, default=None, help="directory of the exported file (default: $MODELWATCH_EMBEDDINGS_DIR or the environment's share/)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
    from modelwatch.embeddings.onnx_export import ensure_exported, onnx_file

    existed = onnx_file(args.dir).is_file()
    path = ensure_exported(args.dir)
    print(f"{'already exported' if existed else 'exported'}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
