"""``tandem bundle pack DIR``: a bundle as one ``.tar.gz`` for replicas without a shared disk.

    tandem bundle pack var/bundles/ml-1m-...-pipeline            # -> var/bundles/ml-1m-...-pipeline.tar.gz

Prints the archive's path, its sha256 and the reload body that makes every process fetch it
(``POST /v1/admin/reload`` with ``bundle_url`` and ``sha256``; or ``TANDEM_BUNDLE_URL`` and
``TANDEM_BUNDLE_SHA256`` at start). The bundle is verified before it is packed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from models.bundle.format import BundleIntegrityError
from models.bundle.pack import BundleFetchError, pack_bundle


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="the bundle directory")
    parser.add_argument("--out", type=Path, default=None, help="the archive (default <bundle>.tar.gz)")


def run(args: argparse.Namespace) -> int:
    try:
        archive, digest = pack_bundle(args.bundle, args.out)
    except (OSError, BundleIntegrityError, BundleFetchError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({"archive": str(archive), "sha256": digest, "bytes": archive.stat().st_size}, indent=2))
    print(
        "every process fetches it on: POST /v1/admin/reload "
        + json.dumps({"bundle_url": f"<url of {archive.name}>", "sha256": digest})
    )
    return 0
