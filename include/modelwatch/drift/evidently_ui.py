"""``python -m modelwatch.drift.evidently_ui [evidently ui options]``: Evidently's own UI service (``evidently ui``)
on a workspace that may be an ``s3://`` URI.

It is the same command with one addition: ``s3://`` is made readable first (``evidently_workspace.configure_s3``: s3fs if
installed, else pyarrow's S3 client behind fsspec), configured by fsspec's environment variables
``FSSPEC_S3_ENDPOINT_URL``, ``FSSPEC_S3_KEY`` and ``FSSPEC_S3_SECRET``. Example::

    python -m modelwatch.drift.evidently_ui --host 127.0.0.1 --port 8000 --workspace s3://ml-monitoring/evidently
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    """Run ``evidently ui`` with ``argv`` (default: this process's arguments) after enabling ``s3://`` workspaces."""
    from modelwatch.drift.evidently_workspace import configure_s3

    configure_s3()
    from evidently.cli import app

    app(args=["ui", *(sys.argv[1:] if argv is None else argv)], prog_name="evidently")


if __name__ == "__main__":
    main()
