"""A large synthetic bundle for the service benchmark: 1M items, quick encoder and ranker, random weights.

    python -m tools.bench.synthetic_bundle --out var/bundles/synthetic-1m [--items 1000000]

(``make bench`` builds it when it is missing.)

Latency does not depend on the weights, so the models are not trained; the encoder's item table is set to
clustered unit vectors (models.index.synthetic_vectors, as the index sweep uses) so the IVF index and its
nprobe tuning see a catalogue with structure rather than uniform noise. Takes a few minutes (IVF build).
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

import torch

from models.bundle.write import from_checkpoints, write_bundle
from models.data.loaders.synthetic import SyntheticConfig, generate_synthetic
from models.encoder.model import RetrievalEncoder
from models.encoder.serving import save_user_encoder
from models.index.synthetic_vectors import clustered_item_vectors
from models.ranker.config import preset as ranker_preset
from models.ranker.model import OnePieceRanker
from models.ranker.serving import save_ranker
from models.ranker.train import feature_sizes, fit_anchor_sources
from models.train.data import encoder_config_for, item_categories
from models.train.presets import preset as encoder_preset

logger = logging.getLogger(__name__)


def build_synthetic_bundle(
    out: Path, num_items: int = 1_000_000, num_users: int = 3_000, seed: int = 0
) -> Path:
    """Writes the bundle at ``out`` (replacing one there) and returns its path."""
    dataset = generate_synthetic(
        SyntheticConfig(
            num_users=num_users,
            num_items=num_items,
            num_events=150_000,
            num_clusters=min(1_000, num_items),
            seed=seed,
        )
    )
    work = out.parent / f".{out.name}-work"
    torch.manual_seed(seed)
    config = encoder_config_for(dataset, encoder_preset("quick", "session_encoder")[0])
    encoder = RetrievalEncoder(config).eval()
    categories = item_categories(dataset)
    encoder.set_item_category(categories)
    vectors = clustered_item_vectors(dataset.num_items, config.dim, seed=seed)
    with torch.no_grad():
        encoder.embed.item.weight.copy_(torch.from_numpy(vectors))
        if config.item_side_info:
            encoder.embed.category.weight.zero_()
    encoder_file = save_user_encoder(encoder, work / "encoder", categories, version=f"synthetic-{num_items}")
    ranker_config, _ = ranker_preset("quick")
    ranker = OnePieceRanker(
        ranker_config, feature_sizes(dataset), torch.as_tensor(dataset.catalogue.category, dtype=torch.long)
    ).eval()
    sources = fit_anchor_sources(dataset.events, dataset.events, dataset.num_items, ranker_config)
    ranker_file = save_ranker(work / "ranker.pt", ranker, sources, dataset.funnel, f"synthetic-{num_items}")
    pipeline = from_checkpoints(dataset, encoder_file, ranker_file)
    path = write_bundle(
        pipeline,
        dataset,
        out,
        training={"pipeline": "synthetic-bench", "num_items": num_items, "weights": "random"},
        overwrite=True,
    )
    shutil.rmtree(work, ignore_errors=True)
    return Path(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("var/bundles/synthetic-1m"))
    parser.add_argument("--items", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    print(build_synthetic_bundle(args.out, args.items))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
