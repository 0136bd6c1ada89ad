"""The recipe: trains the served pipeline (sources, session encoder, merge, ranker and its gate) into a
``TrainedPipeline`` (``train``), with its typed settings (``settings``) and periods (``periods``)."""
