"""What every results file carries: the commit and machine it came from (``provenance``), and the
markdown + JSON + PNG triple it is written as (``files``)."""
