"""The artifact bundle, the only thing that crosses from training to serving: ``format`` (layout, typed
manifest, hashes), ``sources_io`` (fitted sources on disk), ``write`` (a ``TrainedPipeline`` saved as
fitted), ``load`` (``Bundle.load(dir)`` then ``bundle.served_pipeline(total)``), ``default`` (the first-run
bundle) and ``upgrade`` (its background build)."""
